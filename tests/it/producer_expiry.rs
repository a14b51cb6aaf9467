//! Producer state is bounded: a partition forgets an idempotent producer whose newest batch is
//! below the log start or that has not written for `producer_id_expiration`, so many
//! short-lived producers do not grow the checkpoint (`partition.ckpt`) without end — while a
//! retry from a producer still inside the window is deduplicated, and a retry that comes after
//! its producer expired is written again (as in Kafka).
//!
//! Knobs: `ANNALS_SHORT_LIVED_PRODUCERS` (how many producers come and go; default 20,000, which a
//! debug build runs in well under a minute; the full count is 100,000).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use annals::format::{BatchBuilder, BatchOptions};
use annals::storage::SimStorage;
use annals::{Error, Log, Partition, ProducerConfig, Record, TopicConfig};

const DIR: &str = "/sim/expiry";

fn open(sim: &Arc<SimStorage>, expiration: Option<Duration>) -> Log {
    let mut b = Log::builder(DIR)
        .storage(sim.clone())
        .maintenance_interval(None);
    if let Some(e) = expiration {
        b = b.producer_id_expiration(e);
    }
    b.open().unwrap()
}

/// One idempotent record from foreign producer `pid` (as `append_batch` callers build them).
fn batch(pid: i64, seq: i32) -> Vec<u8> {
    let mut b = BatchBuilder::new(BatchOptions {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
        ..BatchOptions::default()
    });
    b.push(&Record::new(format!("p{pid}-s{seq}")), now_ms())
        .unwrap();
    let mut out = Vec::new();
    b.finish_into(&mut out).unwrap();
    out
}

fn checkpoint_size(sim: &SimStorage, p: &Partition) -> usize {
    sim.read_file(p.dir().join("partition.ckpt"))
        .map(|b| b.len())
        .unwrap_or(0)
}

/// Every producer takes at least 61 bytes in the checkpoint (id, epoch, append time, one
/// batch); a checkpoint holding all of `n` producers is at least this large.
fn all_producers_size(n: usize) -> usize {
    n * 61
}

#[test]
fn many_short_lived_producers_keep_the_checkpoint_small() {
    let n = env_usize("ANNALS_SHORT_LIVED_PRODUCERS", 20_000);
    let sim = SimStorage::new();
    let log = open(&sim, None); // the default window: one day
    log.create_topic(
        "t",
        TopicConfig::default()
            .segment_bytes(16 << 10)
            .retention_bytes(64 << 10),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    // Bound: what retention keeps (64 KiB of data plus the active segment, about 1,100 one-record
    // batches) times a generous 80 bytes per producer, and the segment list.
    let bound = 128 << 10;
    // One producer lives throughout and writes now and then; its retries must keep working.
    let long_lived = 1 << 40;
    let mut long_seq = 0;
    let mut last_long = (batch(long_lived, 0), 0);
    let mut largest = 0;
    for i in 0..n {
        if i % 100 == 0 {
            // Now and then a real local producer comes and goes too.
            let producer = log
                .producer(ProducerConfig::default().linger(Duration::ZERO))
                .unwrap();
            producer
                .send_to("t", 0, Record::new(format!("local-{i}")))
                .unwrap()
                .wait()
                .unwrap();
            producer.close().unwrap();
        } else {
            p.append_batch(&batch(i as i64, 0)).unwrap();
        }
        if i % 500 == 0 {
            let b = batch(long_lived, long_seq);
            let offset = p.append_batch(&b).unwrap();
            long_seq += 1;
            last_long = (b, offset);
            p.retain().unwrap();
            largest = largest.max(checkpoint_size(&sim, &p));
            assert!(
                largest <= bound,
                "after {i} producers the checkpoint holds {largest} bytes (bound {bound})"
            );
        }
    }
    assert!(p.log_start_offset() > 0, "retention never ran");
    // A retry inside the window is still deduplicated, also after a restart.
    let hw = p.high_watermark();
    assert_eq!(p.append_batch(&last_long.0).unwrap(), last_long.1);
    assert_eq!(p.high_watermark(), hw);
    log.close().unwrap();
    let closed = checkpoint_size(&sim, &p);
    assert!(closed <= bound, "closed with a {closed}-byte checkpoint");
    if n >= 2000 {
        assert!(
            bound < all_producers_size(n),
            "the bound would not tell a bounded state from an unbounded one"
        );
    }
    let log = open(&sim, None);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.append_batch(&last_long.0).unwrap(), last_long.1);
    assert_eq!(p.high_watermark(), hw);
}

#[test]
fn idle_producers_expire_and_a_late_retry_is_written_again() {
    let window = Duration::from_millis(200);
    let sim = SimStorage::new();
    let log = open(&sim, Some(window));
    log.create_topic("t", TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();
    let idle: Vec<(Vec<u8>, u64)> = (0..2000)
        .map(|pid| {
            let b = batch(pid, 0);
            let offset = p.append_batch(&b).unwrap();
            (b, offset)
        })
        .collect();
    // Inside the window (nothing expires between an append and its retry: expiry runs only at
    // checkpoints and maintenance, and neither runs here), a retry is deduplicated.
    let hw = p.high_watermark();
    assert_eq!(p.append_batch(&idle[7].0).unwrap(), idle[7].1);
    assert_eq!(p.high_watermark(), hw);
    // Well past the window, maintenance forgets them, and the checkpoint written at close
    // holds none of them.
    std::thread::sleep(window * 3);
    log.run_maintenance().unwrap();
    log.close().unwrap();
    let size = checkpoint_size(&sim, &p);
    assert!(
        size < all_producers_size(10),
        "{size}-byte checkpoint after every producer expired"
    );
    // A retry of an expired producer's batch is a new producer's first batch: written again,
    // as Kafka does once a producer id has expired.
    let log = open(&sim, Some(window));
    let p = log.partition("t", 0).unwrap();
    let hw = p.high_watermark();
    assert_eq!(p.append_batch(&idle[7].0).unwrap(), hw);
    assert_eq!(p.high_watermark(), hw + 1);
    // The producer is remembered again from then on.
    assert_eq!(p.append_batch(&idle[7].0).unwrap(), hw);
    assert_eq!(p.high_watermark(), hw + 1);
}

#[test]
fn the_expiration_is_validated() {
    let sim = SimStorage::new();
    for bad in [
        Duration::ZERO,
        Duration::from_micros(500),
        Duration::from_millis(i64::MAX as u64) + Duration::from_millis(1),
        Duration::MAX,
    ] {
        let result = Log::builder(DIR)
            .storage(sim.clone())
            .producer_id_expiration(bad)
            .open();
        match result {
            Err(Error::InvalidConfig { field, .. }) => {
                assert_eq!(field, "producer_id_expiration", "{bad:?}")
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(!sim.paths().iter().any(|p| p.starts_with(Path::new(DIR))));
    let log = Log::builder(DIR)
        .storage(sim.clone())
        .producer_id_expiration(Duration::from_millis(i64::MAX as u64))
        .open()
        .unwrap();
    log.close().unwrap();
}

#[test]
fn compaction_stops_keeping_an_expired_producers_batches() {
    use annals::CleanupPolicy;
    // Long enough that the one roll below normally comes inside it (then only compaction's own
    // expiry can free the batches); whatever the timing, the producer has expired by the pass.
    let window = Duration::from_secs(2);
    let sim = SimStorage::new();
    let log = open(&sim, Some(window));
    log.create_topic(
        "t",
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(16 << 10)
            .min_cleanable_dirty_ratio(0.0),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    let keyed = |seq: i32| {
        let mut b = BatchBuilder::new(BatchOptions {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: seq,
            ..BatchOptions::default()
        });
        b.push(
            &Record::new(format!("p{seq}")).key(format!("k{seq}")),
            now_ms(),
        )
        .unwrap();
        let mut out = Vec::new();
        b.finish_into(&mut out).unwrap();
        out
    };
    for seq in 0..5 {
        p.append_batch(&keyed(seq)).unwrap();
    }
    // Supersede every key the producer wrote, and seal it all.
    for round in 0..20 {
        for k in 0..5 {
            p.append(&[Record::new(format!("{round}")).key(format!("k{k}"))])
                .unwrap();
        }
    }
    p.append(&[Record::new(vec![0u8; 12 << 10]).key("roll")])
        .unwrap();
    assert_eq!(
        p.segment_count(),
        2,
        "one roll seals everything written before"
    );
    // Past the window the producer is forgotten, and its superseded records go like any other.
    std::thread::sleep(window + Duration::from_millis(200));
    p.compact().unwrap();
    let left: Vec<u64> = read_partition(&p)
        .iter()
        .filter(|r| r.value.as_deref().is_some_and(|v| v.starts_with(b"p")))
        .map(|r| r.offset)
        .collect();
    assert!(
        left.is_empty(),
        "an expired producer's batches were kept: {left:?}"
    );
}
