//! Consumer basics through the public API: long poll, positions, seeks, pause, commits, lag and
//! bad input.

use std::time::{Duration, Instant};

use crate::common::TestLog;
use annals::{
    AutoOffsetReset, Consumer, ConsumerConfig, Error, Log, OffsetAndMetadata, ProducerConfig,
    Record, TopicConfig, TopicPartition,
};

fn setup(partitions: u32) -> (tempfile::TempDir, Log) {
    TestLog::temp()
        .topic("t", TopicConfig::default().partitions(partitions))
        .open_temp()
}

fn append(log: &Log, partition: u32, from: u64, n: u64) {
    let recs: Vec<Record> = (from..from + n)
        .map(|i| Record::new(format!("v{i}")).key(format!("k{i}")))
        .collect();
    log.partition("t", partition)
        .unwrap()
        .append(&recs)
        .unwrap();
}

fn manual(log: &Log, group: &str, partitions: &[u32]) -> Consumer {
    let mut c = log.consumer(ConsumerConfig::new(group)).unwrap();
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|&p| TopicPartition::new("t", p))
        .collect();
    c.assign(&tps).unwrap();
    c
}

/// Polls until `n` records arrived (or panics after a generous deadline).
fn poll_n(c: &mut Consumer, n: usize) -> Vec<annals::ConsumedRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records",
            out.len()
        );
        out.extend(c.poll(Duration::from_millis(200)).unwrap());
    }
    out
}

#[test]
fn poll_returns_records_in_order_with_topic_and_partition() {
    let (_d, log) = setup(1);
    append(&log, 0, 0, 10);
    let mut c = manual(&log, "g", &[0]);
    let got = poll_n(&mut c, 10);
    assert_eq!(got.len(), 10);
    for (i, r) in got.iter().enumerate() {
        assert_eq!((&*r.topic, r.partition, r.offset), ("t", 0, i as u64));
        assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_bytes()));
        assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
    }
    assert_eq!(c.position("t", 0).unwrap(), 10);
    assert!(c.poll(Duration::ZERO).unwrap().is_empty());
}

#[test]
fn poll_without_data_waits_for_the_timeout_and_returns_empty() {
    let (_d, log) = setup(1);
    let mut c = manual(&log, "g", &[0]);
    let t = Instant::now();
    let got = c.poll(Duration::from_millis(150)).unwrap();
    assert!(got.is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn parked_poll_wakes_when_a_producer_appends() {
    let (_d, log) = setup(2);
    let mut c = manual(&log, "g", &[0, 1]);
    let producer = log.producer(ProducerConfig::default()).unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let sent = Instant::now();
        producer
            .send_to("t", 1, Record::new("hello"))
            .unwrap()
            .wait()
            .unwrap();
        sent
    });
    let t = Instant::now();
    let got = c.poll(Duration::from_secs(20)).unwrap();
    let woke = Instant::now();
    let sent = writer.join().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].partition, 1);
    assert!(t.elapsed() < Duration::from_secs(10));
    // Generous: the wake-up must follow the append closely, not a timeout or a poll interval.
    assert!(woke.duration_since(sent) < Duration::from_secs(2));
}

#[test]
fn max_poll_records_and_read_ahead_lose_nothing() {
    let (_d, log) = setup(1);
    append(&log, 0, 0, 1000);
    let mut c = log
        .consumer(ConsumerConfig::new("g").max_poll_records(7))
        .unwrap();
    c.assign(&[("t", 0)]).unwrap();
    let mut next = 0;
    while next < 1000 {
        let got = c.poll(Duration::from_millis(100)).unwrap();
        assert!(!got.is_empty() && got.len() <= 7);
        for r in got {
            assert_eq!(r.offset, next);
            next += 1;
        }
    }
}

#[test]
fn partitions_take_turns() {
    let (_d, log) = setup(3);
    for p in 0..3 {
        append(&log, p, 0, 100);
    }
    let mut c = log
        .consumer(ConsumerConfig::new("g").max_poll_records(50))
        .unwrap();
    c.assign(&[("t", 0), ("t", 1), ("t", 2)]).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        for r in c.poll(Duration::from_millis(100)).unwrap() {
            seen.insert(r.partition);
        }
    }
    assert_eq!(seen.len(), 3, "every partition served within three polls");
}

#[test]
fn fetch_min_bytes_waits_for_enough_data_or_fetch_max_wait() {
    let (_d, log) = setup(1);
    append(&log, 0, 0, 1); // "k0" + "v0": 4 bytes
    let mut c = log
        .consumer(
            ConsumerConfig::new("g")
                .fetch_min_bytes(1000)
                .fetch_max_wait(Duration::from_millis(200)),
        )
        .unwrap();
    c.assign(&[("t", 0)]).unwrap();
    let t = Instant::now();
    let got = c.poll(Duration::from_secs(10)).unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn seek_position_and_seek_to_variants() {
    let (_d, log) = setup(1);
    let p = log.partition("t", 0).unwrap();
    p.append(&[
        Record::new("a").timestamp(1000),
        Record::new("b").timestamp(2000),
    ])
    .unwrap();
    p.append(&[Record::new("c").timestamp(3000)]).unwrap();
    let mut c = manual(&log, "g", &[0]);
    c.seek("t", 0, 2).unwrap();
    assert_eq!(poll_n(&mut c, 1)[0].value.as_deref(), Some(&b"c"[..]));
    c.seek_to_beginning::<TopicPartition>(&[]).unwrap();
    assert_eq!(c.position("t", 0).unwrap(), 0);
    c.seek_to_timestamp(1500).unwrap();
    assert_eq!(c.position("t", 0).unwrap(), 1);
    c.seek_to_timestamp(9999).unwrap();
    assert_eq!(c.position("t", 0).unwrap(), 3);
    c.seek_to_end(&[TopicPartition::new("t", 0)]).unwrap();
    assert_eq!(c.position("t", 0).unwrap(), 3);
    for bad in [4, u64::MAX] {
        assert!(matches!(
            c.seek("t", 0, bad),
            Err(Error::OffsetOutOfRange { requested, earliest: 0, latest: 3 }) if requested == bad
        ));
    }
    assert!(matches!(c.seek("t", 1, 0), Err(Error::NotAssigned { .. })));
}

#[test]
fn paused_partitions_return_nothing_until_resumed() {
    let (_d, log) = setup(2);
    append(&log, 0, 0, 5);
    append(&log, 1, 0, 5);
    let mut c = manual(&log, "g", &[0, 1]);
    c.pause(&[TopicPartition::new("t", 0)]).unwrap();
    assert_eq!(c.paused(), vec![TopicPartition::new("t", 0)]);
    let got = poll_n(&mut c, 5);
    assert!(got.iter().all(|r| r.partition == 1));
    assert!(c.poll(Duration::from_millis(50)).unwrap().is_empty());
    c.resume(&[TopicPartition::new("t", 0)]).unwrap();
    assert!(poll_n(&mut c, 5).iter().all(|r| r.partition == 0));
}

#[test]
fn commit_committed_and_auto_offset_reset() {
    let (_d, log) = setup(1);
    append(&log, 0, 0, 10);
    let mut c = manual(&log, "g", &[0]);
    assert_eq!(c.committed("t", 0).unwrap(), None);
    poll_n(&mut c, 10);
    c.commit().unwrap();
    let got = c.committed("t", 0).unwrap().unwrap();
    assert_eq!(got.offset, 10);
    assert!(got.commit_timestamp > 0);
    c.commit_offsets(&[(
        TopicPartition::new("t", 0),
        OffsetAndMetadata::new(4).with_metadata("checkpoint-7"),
    )])
    .unwrap();
    assert_eq!(
        log.committed_offset("g", "t", 0).unwrap().unwrap().metadata,
        "checkpoint-7"
    );
    drop(c);
    // A new consumer of the group starts at the commit.
    let mut c = manual(&log, "g", &[0]);
    assert_eq!(c.position("t", 0).unwrap(), 4);
    // Other groups follow auto_offset_reset.
    let mut latest = log
        .consumer(ConsumerConfig::new("g2").auto_offset_reset(AutoOffsetReset::Latest))
        .unwrap();
    latest.assign(&[("t", 0)]).unwrap();
    assert_eq!(latest.position("t", 0).unwrap(), 10);
    let mut strict = log
        .consumer(ConsumerConfig::new("g3").auto_offset_reset(AutoOffsetReset::Error))
        .unwrap();
    strict.assign(&[("t", 0)]).unwrap();
    assert!(matches!(
        strict.poll(Duration::ZERO),
        Err(Error::NoCommittedOffset { .. })
    ));
    // Commits beyond the log, for unassigned partitions, or with oversized metadata fail.
    let tp = TopicPartition::new("t", 0);
    assert!(matches!(
        c.commit_offsets(&[(tp.clone(), OffsetAndMetadata::new(11))]),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        c.commit_offsets(&[(TopicPartition::new("t", 5), OffsetAndMetadata::new(0))]),
        Err(Error::NotAssigned { .. })
    ));
    assert!(matches!(
        c.commit_offsets(&[(
            tp,
            OffsetAndMetadata::new(1).with_metadata("x".repeat(5000))
        )]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn lag_and_group_listing() {
    let (_d, log) = setup(2);
    append(&log, 0, 0, 10);
    append(&log, 1, 0, 4);
    let mut c = manual(&log, "g", &[0, 1]);
    poll_n(&mut c, 14);
    c.commit_offsets(&[(TopicPartition::new("t", 0), OffsetAndMetadata::new(6))])
        .unwrap();
    let lag = c.lag().unwrap();
    assert_eq!(lag.len(), 2);
    assert_eq!(
        (lag[0].committed, lag[0].position, lag[0].lag),
        (Some(6), Some(10), 4)
    );
    assert_eq!((lag[1].committed, lag[1].lag), (None, 4));
    let glag = log.group_lag("g").unwrap();
    assert_eq!(glag.len(), 1);
    assert_eq!(
        (glag[0].partition, glag[0].high_watermark, glag[0].lag),
        (0, 10, 4)
    );
    let groups = log.groups().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].group, "g");
    assert!(
        groups[0].members.is_empty(),
        "manual consumers are not members"
    );
    assert!(log.group_lag("").is_err());
}

#[test]
fn bad_input_is_refused_with_clear_errors() {
    let (_d, log) = setup(1);
    for bad in ["", "a\0b"] {
        assert!(matches!(
            log.consumer(ConsumerConfig::new(bad)),
            Err(Error::InvalidGroupId { .. })
        ));
    }
    let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
    assert!(matches!(
        c.poll(Duration::ZERO),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.subscribe(&["nope"]),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        c.subscribe(&["__consumer_offsets"]),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        c.assign(&[("t", 3)]),
        Err(Error::UnknownPartition { .. })
    ));
    c.assign(&[("t", 0)]).unwrap();
    assert!(matches!(
        c.subscribe(&["t"]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(c.position("t", 9), Err(Error::NotAssigned { .. })));
    c.close().unwrap();
    c.close().unwrap();
    assert!(matches!(c.poll(Duration::ZERO), Err(Error::Closed)));
    assert!(matches!(c.commit(), Err(Error::Closed)));
    assert!(matches!(c.seek("t", 0, 0), Err(Error::Closed)));
    // The internal topic is reserved.
    assert!(matches!(
        log.create_topic("__mine", TopicConfig::default()),
        Err(Error::InvalidTopicName { .. })
    ));
    assert!(log.partition("__consumer_offsets", 0).is_err());
    assert_eq!(log.topics(), vec!["t".to_string()]);
    let producer = log.producer(ProducerConfig::default()).unwrap();
    assert!(producer
        .send("__consumer_offsets", Record::new("x"))
        .is_err());
    // After the log closes, consumers report it.
    let mut c = manual(&log, "g", &[0]);
    log.close().unwrap();
    assert!(matches!(c.poll(Duration::ZERO), Err(Error::Closed)));
    assert!(matches!(
        log.consumer(ConsumerConfig::new("g")),
        Err(Error::Closed)
    ));
    assert!(matches!(log.groups(), Err(Error::Closed)));
    assert!(matches!(log.group_lag("g"), Err(Error::Closed)));
    assert!(matches!(
        log.committed_offset("g", "t", 0),
        Err(Error::Closed)
    ));
}

#[test]
fn deleting_a_topic_forgets_its_commits() {
    let (_d, log) = setup(1);
    append(&log, 0, 0, 3);
    let mut c = manual(&log, "g", &[0]);
    poll_n(&mut c, 3);
    c.commit().unwrap();
    log.delete_topic("t").unwrap();
    assert!(matches!(
        c.poll(Duration::ZERO),
        Err(Error::UnknownTopic { .. })
    ));
    log.create_topic("t", TopicConfig::default()).unwrap();
    assert_eq!(log.committed_offset("g", "t", 0).unwrap(), None);
}

#[test]
fn auto_commit_commits_on_the_interval_and_on_close() {
    let (_d, log) = setup(1);
    append(&log, 0, 0, 20);
    let mut c = log
        .consumer(
            ConsumerConfig::new("g")
                .enable_auto_commit(true)
                .auto_commit_interval(Duration::from_millis(50))
                .max_poll_records(5),
        )
        .unwrap();
    c.assign(&[("t", 0)]).unwrap();
    assert_eq!(c.poll(Duration::from_secs(1)).unwrap().len(), 5);
    assert_eq!(c.committed("t", 0).unwrap(), None, "not due yet");
    std::thread::sleep(Duration::from_millis(60));
    // This poll first commits what the previous one returned, then returns the next five.
    assert_eq!(c.poll(Duration::from_secs(1)).unwrap().len(), 5);
    assert_eq!(c.committed("t", 0).unwrap().unwrap().offset, 5);
    c.close().unwrap();
    assert_eq!(
        log.committed_offset("g", "t", 0).unwrap().unwrap().offset,
        10
    );
}

#[test]
fn poll_batches_and_poll_interleave_without_loss_or_repeats() {
    let (_d, log) = setup(2);
    for p in 0..2 {
        for chunk in 0..20 {
            append(&log, p, chunk * 10, 10);
        }
    }
    let mut c = log
        .consumer(ConsumerConfig::new("g").max_poll_records(25))
        .unwrap();
    c.assign(&[("t", 0), ("t", 1)]).unwrap();
    let mut seen: Vec<(u32, u64)> = Vec::new();
    let mut batches = Vec::new();
    let mut records = Vec::new();
    for round in 0.. {
        assert!(round < 1000, "stuck");
        if seen.len() == 400 {
            break;
        }
        if round % 2 == 0 {
            c.poll_batches(Duration::from_millis(100), &mut batches)
                .unwrap();
            let n: usize = batches
                .iter()
                .map(|b| b.batch.header().record_count as usize)
                .sum();
            // Whole batches of 10: at most one beyond max_poll_records per partition turn.
            assert!(n <= 25 + 10, "{n} records");
            for b in &batches {
                for r in b.batch.records() {
                    let r = r.unwrap();
                    assert_eq!(r.value, Some(format!("v{}", r.offset).as_bytes()));
                    seen.push((b.partition, r.offset));
                }
            }
        } else {
            c.poll_into(Duration::from_millis(100), &mut records)
                .unwrap();
            seen.extend(records.iter().map(|r| (r.partition, r.offset)));
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 400, "every record exactly once");
    for p in 0..2 {
        let order: Vec<u64> = seen.iter().filter(|s| s.0 == p).map(|s| s.1).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "in order per partition"
        );
    }
    c.commit().unwrap();
    assert_eq!(c.committed("t", 1).unwrap().unwrap().offset, 200);
}
