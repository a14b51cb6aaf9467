//! Model test of compaction: random puts and deletes per key, compaction (and reopening) at
//! random points; reading from the start must give, per key, exactly the model's latest value
//! (or, after a delete, the tombstone or nothing once its horizon passed), every record must be
//! one that was written at that offset, and offsets must strictly increase.
//!
//! Knobs: `ANNALS_TEST_CASES` (rounds, default 12), `ANNALS_TEST_SEED`.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use annals::storage::{CrashMode, SimStorage};
use annals::{
    CleanupPolicy, CompactionStrategy, Compression, Log, Partition, ProducerConfig, Record,
    StoredRecord, TopicConfig,
};
use bytes::Bytes;
use common::*;

const DIR: &str = "/sim/log";
const T: &str = "t";

/// What was written at each offset, and each key's latest record.
#[derive(Default)]
struct Model {
    written: BTreeMap<u64, (Bytes, Option<Bytes>)>,
    latest: HashMap<Bytes, (u64, Option<Bytes>)>,
}

impl Model {
    fn wrote(&mut self, offset: u64, key: Bytes, value: Option<Bytes>) {
        self.written.insert(offset, (key.clone(), value.clone()));
        self.latest.insert(key, (offset, value));
    }
}

/// Every stored record from the log start on, checking offsets strictly increase. An empty read
/// below the high watermark means only gaps remain.
fn read_everything(p: &Partition, max_bytes: usize, ctx: &str) -> Vec<StoredRecord> {
    let hw = p.high_watermark();
    let mut at = p.log_start_offset();
    let mut out: Vec<StoredRecord> = Vec::new();
    while at < hw {
        let got = p
            .read(at, max_bytes)
            .unwrap_or_else(|e| panic!("{ctx}: read({at}): {e}"));
        let Some(last) = got.last() else { break };
        for r in &got {
            assert!(
                r.offset >= at,
                "{ctx}: read({at}) returned offset {}",
                r.offset
            );
            if let Some(prev) = out.last() {
                assert!(r.offset > prev.offset, "{ctx}: offsets not increasing");
            }
        }
        at = last.offset + 1;
        out.extend(got);
    }
    out
}

/// Checks the partition against the model. `horizon_may_have_passed`: deleted keys may be gone.
#[track_caller]
fn check(p: &Partition, model: &Model, horizon_may_have_passed: bool, ctx: &str) {
    let max_bytes = if ctx.len().is_multiple_of(2) {
        1 << 20
    } else {
        300
    };
    let all = read_everything(p, max_bytes, ctx);
    let mut last_seen: HashMap<Bytes, &StoredRecord> = HashMap::new();
    for r in &all {
        let (key, value) = model
            .written
            .get(&r.offset)
            .unwrap_or_else(|| panic!("{ctx}: offset {} was never written", r.offset));
        assert_eq!(r.key.as_ref(), Some(key), "{ctx}: key at {}", r.offset);
        assert_eq!(&r.value, value, "{ctx}: value at {}", r.offset);
        last_seen.insert(key.clone(), r);
    }
    // A read at any offset returns the next stored record at or after it, skipping gaps.
    let hw = p.high_watermark();
    let start = p.log_start_offset();
    let mut probe = start;
    while probe < hw {
        let got = p
            .read(probe, 1)
            .unwrap_or_else(|e| panic!("{ctx}: read({probe}): {e}"));
        let next = all.iter().find(|r| r.offset >= probe).map(|r| r.offset);
        assert_eq!(got.first().map(|r| r.offset), next, "{ctx}: read({probe})");
        probe += 1 + (probe * 7919 + ctx.len() as u64) % 5;
    }
    // Every record was appended at or after 0 ms: the first stored one is the answer.
    assert_eq!(
        p.offset_for_timestamp(0).unwrap(),
        all.first().map(|r| r.offset),
        "{ctx}: offset_for_timestamp"
    );
    for (key, (offset, value)) in &model.latest {
        match (last_seen.get(key), value) {
            (Some(r), _) => assert_eq!(r.offset, *offset, "{ctx}: key {key:?} latest"),
            (None, None) if horizon_may_have_passed => {}
            (None, _) => panic!("{ctx}: key {key:?} lost (latest at {offset})"),
        }
    }
}

fn config(rng: &mut Rng) -> TopicConfig {
    TopicConfig::default()
        .cleanup_policy(if rng.chance(20) {
            CleanupPolicy::CompactAndDelete
        } else {
            CleanupPolicy::Compact
        })
        .segment_bytes(rng.range(1024, 6000))
        .index_interval_bytes(rng.usize(0, 400))
        .segment_index_bytes(1024)
        .min_cleanable_dirty_ratio(*rng.pick(&[0.0, 0.3, 0.7]))
        .delete_retention_ms(if rng.chance(50) {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        })
        .compression(*rng.pick(&[
            Compression::None,
            Compression::Lz4,
            Compression::Zstd { level: 1 },
        ]))
}

fn open(sim: &Arc<SimStorage>, buffer: usize) -> Log {
    TestLog::sim(sim, DIR)
        .no_maintenance()
        .cleaner_buffer_bytes(buffer)
        .open()
}

fn round(seed: u64) {
    let _g = SeedGuard::new("compaction_model", seed);
    let mut rng = Rng::new(seed);
    let sim = SimStorage::new();
    // Small key maps force several passes per run.
    let buffer = *rng.pick(&[1024usize, 4096, 1 << 20]);
    let mut log = open(&sim, buffer);
    let cfg = config(&mut rng);
    let zero_horizon = cfg.delete_retention_ms.is_zero();
    log.create_topic(T, cfg).unwrap();
    let mut p = log.partition(T, 0).unwrap();
    let mut model = Model::default();
    let keys = rng.range(3, 60);
    let steps = rng.usize(50, 250);
    let mut compactions = 0;
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        match rng.below(100) {
            0..=84 => {
                let n = rng.usize(1, 8);
                let batch: Vec<Record> = (0..n)
                    .map(|_| {
                        let key = format!("key-{}", rng.below(keys));
                        if rng.chance(15) {
                            Record::tombstone(key)
                        } else {
                            let len = rng.usize(0, 150);
                            Record::new(rng.bytes(len)).key(key)
                        }
                    })
                    .collect();
                let base = p.append(&batch).unwrap();
                for (i, r) in batch.into_iter().enumerate() {
                    model.wrote(base + i as u64, r.key.unwrap(), r.value);
                }
            }
            85..=94 => {
                let report = log.run_maintenance().unwrap();
                compactions += report.partitions.len();
                check(&p, &model, zero_horizon, &ctx);
            }
            95..=97 => {
                drop(p);
                log.close().unwrap();
                log = open(&sim, buffer);
                p = log.partition(T, 0).unwrap();
                check(&p, &model, zero_horizon, &format!("{ctx} after reopen"));
            }
            _ => {
                // kill -9: nothing is lost (every append reached the OS).
                drop(p);
                sim.crash(CrashMode::ProcessKill);
                std::mem::forget(log);
                log = open(&sim, buffer);
                p = log.partition(T, 0).unwrap();
                check(&p, &model, zero_horizon, &format!("{ctx} after kill"));
            }
        }
    }
    // Seal everything (a record larger than a segment rolls the active one), compact at any
    // ratio: then no key may appear twice.
    // Incompressible, so it rolls the segment whatever the codec.
    let noise: Vec<u8> = (0..7000).map(|_| rng.next_u64() as u8).collect();
    let big = Record::new(noise).key("big");
    let base = p.append(std::slice::from_ref(&big)).unwrap();
    model.wrote(base, big.key.unwrap(), big.value);
    let cfg = log.topic_config(T).unwrap().min_cleanable_dirty_ratio(0.0);
    log.alter_topic(T, cfg).unwrap();
    compactions += log.run_maintenance().unwrap().partitions.len();
    let ctx = format!("seed {seed} end");
    check(&p, &model, zero_horizon, &ctx);
    let mut seen = std::collections::HashSet::new();
    for r in read_everything(&p, 1 << 20, &ctx) {
        assert!(
            seen.insert(r.key.clone()),
            "{ctx}: key {:?} twice after a full compaction",
            r.key
        );
    }
    assert!(compactions > 0, "{ctx}: never compacted");
}

#[test]
fn compaction_keeps_each_keys_latest_record() {
    let seed = base_seed();
    for i in 0..cases(12) as u64 {
        round(seed.wrapping_add(i));
    }
}

/// Compaction shrinks a log of many updates to about one record per key, and tombstones go
/// after the horizon.
#[test]
fn compaction_shrinks_to_one_record_per_key_and_drops_tombstones() {
    let sim = SimStorage::new();
    let log = open(&sim, 1 << 20);
    log.create_topic(
        T,
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(2048)
            .min_cleanable_dirty_ratio(0.0)
            .delete_retention_ms(Duration::ZERO),
    )
    .unwrap();
    let p = log.partition(T, 0).unwrap();
    for round in 0..50 {
        for k in 0..10 {
            p.append(&[Record::new(format!("{round}")).key(format!("k{k}"))])
                .unwrap();
        }
    }
    p.append(&[Record::tombstone("k0")]).unwrap();
    // Roll so the tombstone is in a sealed segment.
    p.append(&[Record::new(vec![0u8; 1900]).key("filler")])
        .unwrap();
    p.append(&[Record::new("x").key("filler")]).unwrap();
    let before = p.size_bytes();
    let first = p.compact().unwrap();
    assert!(first.records_removed >= 490, "{first:?}");
    assert!(
        p.size_bytes() < before / 4,
        "{} -> {}",
        before,
        p.size_bytes()
    );
    let all = read_everything(&p, 1 << 20, "after first");
    let k0: Vec<_> = all
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"k0"))
        .collect();
    assert_eq!(
        k0.len(),
        1,
        "the tombstone stays until a pass after it was first compacted"
    );
    assert!(k0[0].value.is_none());
    // The next pass, with the horizon at zero, removes it. Make a little dirt so one runs.
    p.append(&[Record::new("y").key("filler")]).unwrap();
    p.append(&[Record::new(vec![0u8; 1900]).key("filler")])
        .unwrap();
    p.append(&[Record::new("z").key("filler")]).unwrap();
    let second = p.compact().unwrap();
    assert!(second.tombstones_removed >= 1, "{second:?}");
    let all = read_everything(&p, 1 << 20, "after second");
    assert!(!all.iter().any(|r| r.key.as_deref() == Some(b"k0")));
    for k in 1..10 {
        let v: Vec<_> = all
            .iter()
            .filter(|r| r.key.as_deref() == Some(format!("k{k}").as_bytes()))
            .collect();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].value.as_deref(), Some(&b"49"[..]));
    }
    // offset_for_timestamp still works across the gaps.
    assert!(p.offset_for_timestamp(0).unwrap().is_some());
}

/// The version strategies keep the highest version, not the latest offset.
#[test]
fn header_and_timestamp_strategies() {
    for strategy in [
        CompactionStrategy::Header("ver".into()),
        CompactionStrategy::Timestamp,
    ] {
        let sim = SimStorage::new();
        let log = open(&sim, 1 << 20);
        log.create_topic(
            T,
            TopicConfig::default()
                .cleanup_policy(CleanupPolicy::Compact)
                .segment_bytes(1024)
                .compaction_strategy(strategy.clone()),
        )
        .unwrap();
        let p = log.partition(T, 0).unwrap();
        // Versions arrive out of order; version v also has timestamp 1000 + v.
        let versions = [5i64, 9, 2, 7, 9, 1, 3];
        for (i, v) in versions.iter().enumerate() {
            p.append(&[Record::new(format!("v{v}-{i}"))
                .key("k")
                .header("ver", v.to_be_bytes().to_vec())
                .timestamp(1000 + v)])
                .unwrap();
            p.append(&[Record::new(vec![0u8; 300]).key(format!("pad{i}"))])
                .unwrap();
        }
        p.append(&[Record::new(vec![0u8; 900]).key("roll")])
            .unwrap();
        p.append(&[Record::new("last").key("roll")]).unwrap();
        p.compact().unwrap();
        let all = read_everything(&p, 1 << 20, "strategy");
        let k: Vec<_> = all
            .iter()
            .filter(|r| r.key.as_deref() == Some(b"k"))
            .collect();
        assert_eq!(k.len(), 1, "{strategy:?}");
        // Version 9 twice: the later one (index 4) wins the tie.
        assert_eq!(k[0].value.as_deref(), Some(&b"v9-4"[..]), "{strategy:?}");
    }
}

/// Idempotent producer batches keep working after their older batches are compacted away.
#[test]
fn producer_writes_then_compaction_then_more_writes() {
    let sim = SimStorage::new();
    let log = open(&sim, 1 << 20);
    log.create_topic(
        T,
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(2048),
    )
    .unwrap();
    let producer = log.producer(ProducerConfig::default()).unwrap();
    let mut model = Model::default();
    for i in 0..400u64 {
        let key = format!("user-{}", i % 17);
        let d = producer
            .send(T, Record::new(format!("{i}")).key(key.clone()))
            .unwrap();
        let meta = d.wait().unwrap();
        model.wrote(
            meta.offset.unwrap(),
            Bytes::from(key),
            Some(Bytes::from(format!("{i}"))),
        );
        if i % 100 == 99 {
            log.run_maintenance().unwrap();
        }
    }
    producer.close().unwrap();
    let p = log.partition(T, 0).unwrap();
    check(&p, &model, false, "producer");
    assert!(read_everything(&p, 1 << 20, "producer").len() < 200);
}

/// Partly kept batches are re-encoded with the topic's codec as it is now; LogAppendTime
/// batches keep their append time.
#[test]
fn rewritten_batches_use_the_current_codec_and_keep_log_append_time() {
    use annals::format::BatchHeader;
    use annals::TimestampType;
    let sim = SimStorage::new();
    let log = open(&sim, 1 << 20);
    let config = TopicConfig::default()
        .cleanup_policy(CleanupPolicy::Compact)
        .segment_bytes(2048)
        .min_cleanable_dirty_ratio(0.0)
        .compression(Compression::Lz4)
        .message_timestamp_type(TimestampType::LogAppendTime);
    log.create_topic(T, config.clone()).unwrap();
    let p = log.partition(T, 0).unwrap();
    // Batches of 4 where two keys repeat: every batch loses records but keeps some.
    for i in 0..60u32 {
        let batch: Vec<Record> = (0..4u32)
            .map(|j| Record::new(format!("{i}-{j}")).key(format!("k{}", (i * 4 + j) % 90)))
            .collect();
        p.append(&batch).unwrap();
    }
    let before: Vec<(u64, i64)> = read_everything(&p, 1 << 20, "before")
        .iter()
        .map(|r| (r.offset, r.timestamp))
        .collect();
    log.alter_topic(T, config.compression(Compression::Zstd { level: 3 }))
        .unwrap();
    let report = p.compact().unwrap();
    assert!(
        report.records_removed > 0 && report.segments_written > 0,
        "{report:?}"
    );
    // Every surviving record reads back with the timestamp it had (its append time).
    for r in read_everything(&p, 1 << 20, "after") {
        let (_, ts) = before.iter().find(|(o, _)| *o == r.offset).unwrap();
        assert_eq!(r.timestamp, *ts, "offset {}", r.offset);
    }
    // On disk: sealed segments hold zstd batches (re-encoded) and lz4 ones (copied whole).
    let dir = p.dir().to_path_buf();
    let mut codecs = std::collections::BTreeSet::new();
    for (path, bytes) in snapshot(&sim) {
        if path.parent() != Some(&dir) || path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let mut pos = 0;
        while pos < bytes.len() {
            let h = BatchHeader::parse(&bytes[pos..]).unwrap();
            assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
            codecs.insert(h.codec_id());
            pos += h.total_len();
        }
    }
    assert!(
        codecs.contains(&4),
        "no batch was re-encoded with zstd: {codecs:?}"
    );
}

/// An idempotent producer's remembered batches survive compaction even when every record in
/// them is superseded, so that with `partition.ckpt` lost, the state rebuilt from the log still
/// recognises a retry of its last batch as a duplicate.
#[test]
fn a_producers_last_batches_survive_compaction_for_dedupe_without_a_checkpoint() {
    use annals::format::{BatchBuilder, BatchOptions};
    let sim = SimStorage::new();
    let log = open(&sim, 1 << 20);
    log.create_topic(
        T,
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(1024)
            .min_cleanable_dirty_ratio(0.0),
    )
    .unwrap();
    let p = log.partition(T, 0).unwrap();
    let idempotent = |seq: i32| {
        let mut b = BatchBuilder::new(BatchOptions {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: seq,
            ..BatchOptions::default()
        });
        b.push(
            &Record::new(format!("p{seq}")).key(format!("k{seq}")),
            1_000,
        )
        .unwrap();
        let mut out = Vec::new();
        b.finish_into(&mut out).unwrap();
        out
    };
    let mut last = 0;
    for seq in 0..5 {
        last = p.append_batch(&idempotent(seq)).unwrap();
    }
    // Supersede every key the producer wrote, and seal it all.
    for round in 0..20 {
        for k in 0..5 {
            p.append(&[Record::new(format!("{round}")).key(format!("k{k}"))])
                .unwrap();
        }
    }
    p.append(&[Record::new(vec![0u8; 1000]).key("roll")])
        .unwrap();
    let report = p.compact().unwrap();
    assert!(report.records_removed > 50, "{report:?}");
    let kept: Vec<u64> = read_everything(&p, 1 << 20, "compacted")
        .iter()
        .filter(|r| r.value.as_deref().is_some_and(|v| v.starts_with(b"p")))
        .map(|r| r.offset)
        .collect();
    assert_eq!(
        kept,
        (0..5).collect::<Vec<_>>(),
        "the producer's batches went"
    );
    let hw = p.high_watermark();
    drop(p);
    log.close().unwrap();

    // Lose the checkpoint (and with it the producer snapshot), then retry the last batch.
    let mut snap = snapshot(&sim);
    assert!(remove(&mut snap, "partition.ckpt"));
    let sim = restore(&snap);
    let log = open(&sim, 1 << 20);
    let p = log.partition(T, 0).unwrap();
    assert_eq!(
        p.append_batch(&idempotent(4)).unwrap(),
        last,
        "the retry was not recognised"
    );
    assert_eq!(p.high_watermark(), hw, "the retry was written again");
}
