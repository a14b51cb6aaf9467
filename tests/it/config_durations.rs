//! Durations in configurations never overflow: what `topics.meta` stores comes back exactly (or
//! is refused with `InvalidConfig` naming the field), and no configured or call-time duration,
//! however large, makes annals panic when it schedules a deadline.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use annals::storage::SimStorage;
use annals::{ConsumerConfig, Error, Log, ProducerConfig, Record, TopicConfig, TopicPartition};
use common::*;

const DIR: &str = "/sim/log";
const T: &str = "t";
const OLD: i64 = 1_000_000_000_000; // 2001: older than any retention of a few seconds
/// The retention of the bug report: its milliseconds, cast to `u64`, wrap to 384.
const WRAPS_TO_384_MS: Duration = Duration::from_secs(18_446_744_073_709_552);
/// The largest duration annals accepts in a configuration.
const MAX_MS: Duration = Duration::from_millis(i64::MAX as u64);

fn open(sim: &Arc<SimStorage>) -> Log {
    TestLog::sim(sim, DIR).no_maintenance().open()
}

/// Appends `n` records of ~100 bytes, all of them long past any short retention.
fn fill_old(log: &Log, n: u64) {
    let p = log.partition(T, 0).unwrap();
    for i in 0..n {
        p.append(&[Record::new(format!("{i:0>100}")).timestamp(OLD + i as i64)])
            .unwrap();
    }
    assert!(p.segment_count() > 2, "the test needs sealed segments");
}

fn assert_invalid(result: annals::Result<impl std::fmt::Debug>, field: &str) {
    match result {
        Err(Error::InvalidConfig { field: f, .. }) if f == field => {}
        other => panic!("expected InvalidConfig naming {field}, got {other:?}"),
    }
}

#[test]
fn a_retention_too_large_for_topics_meta_is_refused_not_wrapped() {
    let sim = SimStorage::new();
    let log = open(&sim);
    let huge = small_segments().retention_ms(WRAPS_TO_384_MS);
    assert_invalid(log.create_topic(T, huge.clone()), "retention_ms");
    // Nor can an existing topic be altered to it: its data must survive a reopen and a
    // maintenance run, which a wrapped 384 ms retention would delete.
    log.create_topic(T, small_segments()).unwrap();
    fill_old(&log, 60);
    assert_invalid(log.alter_topic(T, huge), "retention_ms");
    log.close().unwrap();
    let log = open(&sim);
    assert_eq!(log.topic_config(T).unwrap().retention_ms, None);
    log.run_maintenance().unwrap();
    let p = log.partition(T, 0).unwrap();
    assert_eq!(p.log_start_offset(), 0);
    assert_eq!(read_all(&p, 4096).unwrap().len(), 60);
}

#[test]
fn the_largest_retention_survives_reopen_and_keeps_the_data() {
    let sim = SimStorage::new();
    let log = open(&sim);
    let cfg = small_segments()
        .retention_ms(MAX_MS)
        .max_retention_ms(MAX_MS)
        .segment_ms(MAX_MS);
    log.create_topic(T, cfg.clone()).unwrap();
    fill_old(&log, 60);
    log.close().unwrap();
    let log = open(&sim);
    assert_eq!(log.topic_config(T).unwrap(), cfg);
    log.run_maintenance().unwrap();
    let p = log.partition(T, 0).unwrap();
    assert_eq!(p.log_start_offset(), 0);
    assert_eq!(read_all(&p, 4096).unwrap().len(), 60);
}

#[test]
fn every_stored_duration_is_bounded_and_whole_milliseconds() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic(T, TopicConfig::default()).unwrap();
    let base = TopicConfig::default;
    let cases: Vec<(&str, TopicConfig)> = vec![
        ("segment_ms", base().segment_ms(Duration::MAX)),
        ("segment_ms", base().segment_ms(WRAPS_TO_384_MS)),
        ("segment_ms", base().segment_ms(Duration::from_micros(1500))),
        // Below one millisecond: stored as 0, which the next open would refuse.
        ("segment_ms", base().segment_ms(Duration::from_micros(500))),
        (
            "retention_ms",
            base().retention_ms(MAX_MS + Duration::from_millis(1)),
        ),
        ("retention_ms", base().retention_ms(Duration::from_nanos(1))),
        (
            "min_compaction_lag_ms",
            base().min_compaction_lag_ms(Duration::MAX),
        ),
        (
            "max_compaction_lag_ms",
            base().max_compaction_lag_ms(WRAPS_TO_384_MS),
        ),
        (
            "delete_retention_ms",
            base().delete_retention_ms(Duration::from_nanos(1)),
        ),
        ("max_retention_ms", base().max_retention_ms(Duration::MAX)),
    ];
    for (field, cfg) in cases {
        assert_invalid(cfg.validate(), field);
        assert_invalid(log.alter_topic(T, cfg), field);
    }
    log.close().unwrap();
    // Nothing of it reached topics.meta.
    assert_eq!(open(&sim).topic_config(T).unwrap(), TopicConfig::default());
}

#[test]
fn huge_client_durations_are_refused_or_work_never_panic() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic(T, TopicConfig::default()).unwrap();
    // Configured durations beyond i64::MAX ms are refused up front.
    for (field, cfg) in [
        ("linger", ProducerConfig::default().linger(Duration::MAX)),
        (
            "max_block",
            ProducerConfig::default().max_block(Duration::MAX),
        ),
        (
            "retry_backoff",
            ProducerConfig::default().retry_backoff(Duration::MAX),
        ),
    ] {
        assert_invalid(log.producer(cfg), field);
    }
    let consumer = |c: ConsumerConfig| log.consumer(c);
    for (field, cfg) in [
        (
            "auto_commit_interval",
            ConsumerConfig::new("g")
                .enable_auto_commit(true)
                .auto_commit_interval(Duration::MAX),
        ),
        (
            "fetch_max_wait",
            ConsumerConfig::new("g").fetch_max_wait(Duration::MAX),
        ),
        (
            "max_poll_interval",
            ConsumerConfig::new("g").max_poll_interval(Duration::MAX),
        ),
    ] {
        assert_invalid(consumer(cfg), field);
    }
    assert_invalid(
        Log::builder("/sim/other")
            .storage(sim.clone())
            .maintenance_interval(Some(Duration::MAX))
            .open(),
        "maintenance_interval",
    );

    // The largest accepted values work.
    let producer = log
        .producer(ProducerConfig::default().max_block(MAX_MS))
        .unwrap();
    let delivery = producer.send_to(T, 0, Record::new("a")).unwrap();
    // A call-time timeout of Duration::MAX means "wait as long as it takes".
    let meta = delivery.wait_timeout(Duration::MAX).unwrap().unwrap();
    assert_eq!(meta.offset, Some(0));
    producer.close().unwrap();
    let mut c = log
        .consumer(
            ConsumerConfig::new("g")
                .enable_auto_commit(true)
                .auto_commit_interval(MAX_MS)
                .fetch_max_wait(MAX_MS)
                .max_poll_interval(MAX_MS),
        )
        .unwrap();
    c.assign(&[TopicPartition::new(T, 0)]).unwrap();
    // Another thread completes what this poll waits for.
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let p = log.partition(T, 0).unwrap();
            for i in 0..3 {
                p.append(&[Record::new(format!("b{i}"))]).unwrap();
            }
        })
    };
    let mut got = 0;
    while got < 4 {
        got += c.poll(Duration::MAX).unwrap().len();
    }
    writer.join().unwrap();
    c.close().unwrap();
    log.close().unwrap();
}
