//! Torn tails: the last segment's `.log` cut at every byte length over its last three batches.
//! Recovery must keep exactly the whole batches that fit, read them back unchanged, and accept
//! appends afterwards.

use crate::common;

use std::path::{Path, PathBuf};

use annals::storage::{CrashMode, SimStorage};
use annals::{Compression, Log, Partition, Record, TopicConfig};
use common::*;

const DIR: &str = "/sim/log";
const TOPIC: &str = "t";

fn config(compression: Compression) -> TopicConfig {
    TopicConfig::default()
        .segment_bytes(2048)
        .index_interval_bytes(100)
        .segment_index_bytes(1024)
        .compression(compression)
}

/// Appends `batches` random batches, syncing after each; returns the model.
fn fill(p: &Partition, rng: &mut Rng, batches: usize, max_records: usize) -> Vec<ModelRecord> {
    let mut model = Vec::new();
    let mut ts = 1_700_000_000_000i64;
    for _ in 0..batches {
        let n = rng.usize(1, max_records);
        let batch: Vec<Record> = (0..n)
            .map(|_| {
                ts += rng.range(0, 50) as i64;
                let len = rng.usize(0, 60);
                let mut r = Record::new(rng.bytes(len)).timestamp(ts);
                if rng.chance(50) {
                    r = r.key(format!("key-{}", rng.below(10)));
                }
                if rng.chance(20) {
                    r = r.header("h", rng.bytes(5));
                }
                r
            })
            .collect();
        let base = p.append(&batch).unwrap();
        assert_eq!(base, model.len() as u64);
        p.sync().unwrap();
        model.extend(model_of(&batch));
    }
    model
}

/// What a recovered partition must look like: `hw` records of `model`, then it takes appends.
fn check_recovered(log: &Log, model: &[ModelRecord], hw: u64, ctx: &str) {
    let p = log.partition(TOPIC, 0).unwrap();
    assert_eq!(p.high_watermark(), hw, "{ctx}: high watermark");
    assert_partition_matches(&p, &model[..hw as usize], ctx);
    if hw > 0 {
        let last = &model[hw as usize - 1];
        let want = model[..hw as usize]
            .iter()
            .position(|r| r.timestamp >= last.timestamp)
            .map(|i| i as u64);
        assert_eq!(
            p.offset_for_timestamp(last.timestamp).unwrap(),
            want,
            "{ctx}: time lookup"
        );
    }
    assert_eq!(p.offset_for_timestamp(i64::MAX).unwrap(), None, "{ctx}");
    let extra = simple_records(hw, 3);
    let base = p
        .append(&extra)
        .unwrap_or_else(|e| panic!("{ctx}: append after recovery: {e}"));
    assert_eq!(
        base, hw,
        "{ctx}: append after recovery starts at the old hw"
    );
    let back = p.read(hw, 1 << 20).unwrap();
    assert_eq!(back.len(), 3, "{ctx}: appended batch reads back");
    for (i, (got, want)) in back.iter().zip(model_of(&extra)).enumerate() {
        assert_record(got, hw + i as u64, &want, ctx);
    }
}

/// The lengths to try for the last segment and the number of records each must keep.
struct Sweep {
    last_log: PathBuf,
    bytes: Vec<u8>,
    /// Offset of the last segment's first record.
    base: u64,
    batches: Vec<BatchPos>,
}

impl Sweep {
    fn new(snap: &Snapshot, partition_dir: &Path) -> Sweep {
        let logs = files_with_ext(snap, partition_dir, "log");
        assert!(logs.len() >= 2, "want several segments, got {logs:?}");
        let last_log = logs.last().unwrap().clone();
        let bytes = get(snap, &last_log).to_vec();
        let batches = batches(&bytes);
        assert!(!batches.is_empty(), "the last segment is empty");
        let base: u64 = last_log
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            batches[0].base_offset, base,
            "segment named by its base offset"
        );
        Sweep {
            last_log,
            bytes,
            base,
            batches,
        }
    }

    fn lengths(&self) -> Vec<usize> {
        let start = self.batches[self.batches.len().saturating_sub(3)].pos;
        let mut v: Vec<usize> = (start..=self.bytes.len()).collect();
        v.insert(0, 0); // an empty last segment
        v
    }

    fn expected_hw(&self, len: usize) -> u64 {
        self.base
            + self
                .batches
                .iter()
                .filter(|b| b.pos + b.len <= len)
                .map(|b| b.records)
                .sum::<u64>()
    }
}

fn sim_sweep(compression: Compression, clean_close: bool) {
    let seed = base_seed();
    let _g = SeedGuard::new(
        &format!("sim_sweep {compression:?} clean={clean_close}"),
        seed,
    );
    let mut rng = Rng::new(seed);
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(TOPIC, config(compression)).unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let model = fill(&p, &mut rng, 40, 6);
    let partition_dir = p.dir().to_path_buf();
    assert!(p.segment_count() >= 2);
    drop(p);
    if clean_close {
        log.close().unwrap();
    } else {
        sim.crash(CrashMode::ProcessKill);
        std::mem::forget(log);
    }
    let snap = snapshot(&sim);
    let sweep = Sweep::new(&snap, &partition_dir);
    let lengths = sweep.lengths();
    for (i, &len) in lengths.iter().enumerate() {
        let ctx = format!(
            "seed {seed} {compression:?} clean={clean_close}: .log cut to {len} of {}",
            sweep.bytes.len()
        );
        let mut s = snap.clone();
        replace(&mut s, &sweep.last_log, sweep.bytes[..len].to_vec());
        remove(&mut s, ".clean-shutdown");
        let sim = restore(&s);
        let log = TestLog::sim(&sim, DIR)
            .try_open()
            .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
        let hw = sweep.expected_hw(len);
        check_recovered(&log, &model, hw, &ctx);
        if i % 16 == 0 {
            // The repair is durable: a power loss right after recovery keeps it.
            log.partition(TOPIC, 0).unwrap().sync().unwrap();
            sim.crash(CrashMode::PowerLossDropUnsynced);
            std::mem::forget(log);
            let log = TestLog::sim(&sim, DIR)
                .try_open()
                .unwrap_or_else(|e| panic!("{ctx}: second open: {e}"));
            let p = log.partition(TOPIC, 0).unwrap();
            assert_eq!(
                p.high_watermark(),
                hw + 3,
                "{ctx}: after power loss post-recovery"
            );
            assert_partition_matches(
                &p,
                &[&model[..hw as usize], &model_of(&simple_records(hw, 3))].concat(),
                &ctx,
            );
        } else {
            log.close().unwrap();
        }
    }
}

#[test]
fn sim_truncate_every_length_after_clean_close() {
    sim_sweep(Compression::None, true);
}

#[test]
fn sim_truncate_every_length_after_crash() {
    sim_sweep(Compression::None, false);
}

#[test]
fn sim_truncate_every_length_lz4() {
    sim_sweep(Compression::Lz4, false);
}

#[test]
fn sim_truncate_every_length_zstd() {
    sim_sweep(Compression::Zstd { level: 3 }, true);
}

/// The same sweep on real files: truncate a copy of the directory with `set_len`.
#[test]
fn real_files_truncate_every_length() {
    let seed = base_seed();
    let _g = SeedGuard::new("real_files_truncate_every_length", seed);
    let mut rng = Rng::new(seed);
    let original = tempfile::tempdir().unwrap();
    let log = Log::open(original.path()).unwrap();
    log.create_topic(TOPIC, config(Compression::None).segment_bytes(1024))
        .unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let model = fill(&p, &mut rng, 20, 3);
    let rel_dir = p.dir().strip_prefix(original.path()).unwrap().to_path_buf();
    drop(p);
    log.close().unwrap();

    let part = original.path().join(&rel_dir);
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&part)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let last_name = logs.last().unwrap().file_name().unwrap().to_owned();
    let snap: Snapshot = logs
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    let sweep = Sweep::new(&snap, &part);
    for len in sweep.lengths() {
        let ctx = format!(
            "seed {seed} real files: .log cut to {len} of {}",
            sweep.bytes.len()
        );
        let copy = tempfile::tempdir().unwrap();
        copy_dir(original.path(), copy.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(copy.path().join(&rel_dir).join(&last_name))
            .unwrap();
        f.set_len(len as u64).unwrap();
        drop(f);
        let marker = copy.path().join(".clean-shutdown");
        assert!(marker.exists(), "a clean close leaves the marker");
        std::fs::remove_file(marker).unwrap();
        let log = Log::open(copy.path()).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
        check_recovered(&log, &model, sweep.expected_hw(len), &ctx);
        log.close().unwrap();
    }
}

/// A torn tail in the active segment with sealed segments before it leaves the sealed ones
/// alone even when the clean marker is (wrongly) present: the size check catches it.
#[test]
fn truncated_tail_with_clean_marker_present() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(TOPIC, config(Compression::None)).unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let mut rng = Rng::new(7);
    let model = fill(&p, &mut rng, 30, 4);
    let dir = p.dir().to_path_buf();
    drop(p);
    log.close().unwrap();
    let snap = snapshot(&sim);
    let sweep = Sweep::new(&snap, &dir);
    for len in sweep.lengths() {
        let ctx = format!("marker kept, cut to {len}");
        let mut s = snap.clone();
        replace(&mut s, &sweep.last_log, sweep.bytes[..len].to_vec());
        let sim = restore(&s);
        let log = TestLog::sim(&sim, DIR)
            .try_open()
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        check_recovered(&log, &model, sweep.expected_hw(len), &ctx);
    }
}
