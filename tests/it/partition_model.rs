//! Model-based test of a partition: random appends on a topic with tiny segments, checked after
//! every step against a plain `Vec` of the records appended, across clean and unclean reopens.
//!
//! Knobs: `ANNALS_TEST_CASES` (runs per codec/timestamp-type combination, default 1),
//! `ANNALS_MODEL_STEPS` (steps per run, default 100), `ANNALS_TEST_SEED` (base seed).

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use annals::storage::{CrashMode, SimStorage};
use annals::{Compression, Error, Log, Partition, Record, TimestampType, TopicConfig};
use common::*;

const TOPIC: &str = "model";

enum Backend {
    Sim(Arc<SimStorage>),
    Fs(tempfile::TempDir),
}

struct Harness {
    backend: Backend,
    log: Option<Log>,
    p: Partition,
    model: Vec<ModelRecord>,
    /// Offsets at which a batch ends (exclusive), i.e. valid end points of a read.
    batch_ends: BTreeSet<u64>,
    ts_type: TimestampType,
    /// Records appended with no timestamp on a CreateTime topic, or any on LogAppendTime, get a
    /// timestamp from the log; the model takes it from the read-back after checking its range.
    rng: Rng,
    ctx: String,
}

const SIM_DIR: &str = "/sim/log";

impl Harness {
    fn dir(&self) -> PathBuf {
        match &self.backend {
            Backend::Sim(_) => PathBuf::from(SIM_DIR),
            Backend::Fs(d) => d.path().to_path_buf(),
        }
    }

    fn open(backend: &Backend, dir: &Path) -> Log {
        match backend {
            Backend::Sim(sim) => Log::builder(dir).storage(sim.clone()).open(),
            Backend::Fs(_) => Log::open(dir),
        }
        .expect("open log")
    }

    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    fn append(&mut self, step: usize, small: bool) {
        let rng = &mut self.rng;
        let n = if small {
            rng.usize(1, 3)
        } else {
            rng.usize(1, 50)
        };
        let base_ts = now_ms() - 1_000_000 + (step as i64) * 1000;
        let batch: Vec<Record> = (0..n)
            .map(|_| {
                let ts = if rng.chance(5) {
                    None
                } else if small {
                    Some(base_ts + rng.range(0, 500) as i64)
                } else {
                    Some(random_timestamp(rng, base_ts))
                };
                if small {
                    let len = rng.usize(0, 10);
                    let mut r = Record::new(rng.bytes(len));
                    r.timestamp = ts;
                    r
                } else {
                    random_record(rng, ts)
                }
            })
            .collect();
        let before = now_ms();
        let base = self
            .p
            .append(&batch)
            .unwrap_or_else(|e| panic!("{}: append of {n} records failed: {e}", self.ctx));
        let after = now_ms();
        assert_eq!(base, self.model.len() as u64, "{}: base offset", self.ctx);
        assert_eq!(
            self.p.high_watermark(),
            base + n as u64,
            "{}: hw after append",
            self.ctx
        );
        // Reading one byte returns exactly the batch just written.
        let back = self.p.read(base, 1).expect("read back");
        assert_eq!(
            back.len(),
            n,
            "{}: read(base, 1) must return the whole batch",
            self.ctx
        );
        let append_time = back[0].timestamp;
        for (i, (r, got)) in batch.iter().zip(&back).enumerate() {
            let ts = match (self.ts_type, r.timestamp) {
                (TimestampType::CreateTime, Some(ts)) => ts,
                (TimestampType::CreateTime, None) => {
                    assert!(
                        (before..=after).contains(&got.timestamp),
                        "{}: default timestamp {} outside [{before}, {after}]",
                        self.ctx,
                        got.timestamp
                    );
                    got.timestamp
                }
                (TimestampType::LogAppendTime, _) => {
                    assert!(
                        (before..=after).contains(&got.timestamp),
                        "{}: LogAppendTime {} outside [{before}, {after}]",
                        self.ctx,
                        got.timestamp
                    );
                    assert_eq!(
                        got.timestamp, append_time,
                        "{}: one append time per batch",
                        self.ctx
                    );
                    got.timestamp
                }
            };
            let want = ModelRecord::from_record(r, ts);
            assert_record(got, base + i as u64, &want, &self.ctx);
            self.model.push(want);
        }
        self.batch_ends.insert(self.model.len() as u64);
    }

    fn check_read(&mut self, offset: u64, max_bytes: usize) {
        let hw = self.model.len() as u64;
        let ctx = format!("{} read({offset}, {max_bytes})", self.ctx);
        match self.p.read(offset, max_bytes) {
            Ok(got) if offset == hw => assert!(got.is_empty(), "{ctx}: at hw must be empty"),
            Ok(got) => {
                assert!(offset < hw, "{ctx}: read above hw {hw} succeeded");
                assert!(!got.is_empty(), "{ctx}: nothing returned below hw {hw}");
                for (i, r) in got.iter().enumerate() {
                    let o = offset + i as u64;
                    assert!(o < hw, "{ctx}: returned offset {o} >= hw {hw}");
                    assert_record(r, o, &self.model[o as usize], &ctx);
                }
                let end = offset + got.len() as u64;
                assert!(
                    self.batch_ends.contains(&end),
                    "{ctx}: read ended at {end}, inside a batch (whole batches only)"
                );
                if max_bytes <= 1 {
                    // Exactly the rest of the batch holding `offset`.
                    let batch_end = *self.batch_ends.range(offset + 1..).next().unwrap();
                    assert_eq!(end, batch_end, "{ctx}: a 1-byte read returns one batch");
                }
            }
            Err(Error::OffsetOutOfRange {
                requested,
                earliest,
                latest,
            }) => {
                assert!(offset > hw, "{ctx}: OffsetOutOfRange inside the log");
                assert_eq!((requested, earliest, latest), (offset, 0, hw), "{ctx}");
            }
            Err(e) => panic!("{ctx}: {e}"),
        }
    }

    fn check_timestamp(&mut self, ts: i64) {
        let want = self
            .model
            .iter()
            .position(|r| r.timestamp >= ts)
            .map(|i| i as u64);
        let got = self
            .p
            .offset_for_timestamp(ts)
            .unwrap_or_else(|e| panic!("{}: offset_for_timestamp({ts}): {e}", self.ctx));
        assert_eq!(got, want, "{}: offset_for_timestamp({ts})", self.ctx);
    }

    fn random_max_bytes(&mut self) -> usize {
        match self.rng.below(6) {
            0 => 0,
            1 => 1,
            2 => self.rng.usize(2, 200),
            3 => self.rng.usize(200, 5000),
            4 => self.rng.usize(5000, 70_000),
            _ => 1 << 20,
        }
    }

    fn random_timestamp_probe(&mut self) -> i64 {
        let n = self.model.len();
        match self.rng.below(8) {
            0 => -5,
            1 => 0,
            2 => i64::MAX,
            3 if n > 0 => {
                let i = self.rng.below(n as u64) as usize;
                self.model[i].timestamp - 1
            }
            4 if n > 0 => {
                let i = self.rng.below(n as u64) as usize;
                self.model[i].timestamp + 1
            }
            5 => now_ms() + self.rng.range(0, 50_000_000) as i64 - 40_000_000,
            _ if n > 0 => {
                let i = self.rng.below(n as u64) as usize;
                self.model[i].timestamp
            }
            _ => self.rng.range(0, 1 << 41) as i64,
        }
    }

    fn quick_check(&mut self) {
        assert_eq!(
            self.p.high_watermark(),
            self.model.len() as u64,
            "{}: hw",
            self.ctx
        );
        assert_eq!(self.p.log_start_offset(), 0, "{}: log start", self.ctx);
        let hw = self.model.len() as u64;
        for _ in 0..3 {
            let offset = match self.rng.below(10) {
                0 => hw,
                1 => hw + self.rng.range(1, 5),
                _ if hw > 0 => self.rng.below(hw),
                _ => 0,
            };
            let max = self.random_max_bytes();
            self.check_read(offset, max);
        }
        for _ in 0..3 {
            let ts = self.random_timestamp_probe();
            self.check_timestamp(ts);
        }
    }

    /// Everything once; `samples` random single-offset reads and timestamp probes (all of them
    /// when `samples` is 0).
    fn full_check(&mut self, samples: usize) {
        let ctx = self.ctx.clone();
        assert_partition_matches(&self.p, &self.model, &ctx);
        for max in [0usize, 1, 100, 4096] {
            let all = read_all(&self.p, max).unwrap();
            assert_eq!(all.len(), self.model.len(), "{ctx}: read_all({max})");
        }
        let n = self.model.len() as u64;
        if samples == 0 {
            for o in 0..n {
                self.check_read(o, 1);
            }
        } else if n > 0 {
            for _ in 0..samples {
                let o = self.rng.below(n);
                self.check_read(o, 1);
            }
        }
        let mut probes: BTreeSet<i64> = [-5, 0, 1, i64::MAX].into_iter().collect();
        let mut every: Vec<i64> = Vec::new();
        for r in &self.model {
            every.extend([
                r.timestamp,
                r.timestamp.saturating_sub(1),
                r.timestamp.saturating_add(1),
            ]);
        }
        if samples == 0 || every.len() <= samples {
            probes.extend(every);
        } else {
            for _ in 0..samples {
                probes.insert(*self.rng.pick(&every));
            }
        }
        for ts in probes {
            self.check_timestamp(ts);
        }
    }

    fn reopen_clean(&mut self) {
        let dir = self.dir();
        self.log.take().unwrap().close().expect("clean close");
        assert!(matches!(
            self.p.append(&[Record::new("x")]),
            Err(Error::Closed)
        ));
        let log = Harness::open(&self.backend, &dir);
        self.p = log.partition(TOPIC, 0).unwrap();
        self.log = Some(log);
    }

    /// kill -9: every write survives, nothing is closed.
    fn reopen_unclean(&mut self) {
        match &self.backend {
            Backend::Sim(sim) => {
                sim.crash(CrashMode::ProcessKill);
                // The process is dead: its destructors never run.
                std::mem::forget(self.log.take());
                let log = Harness::open(&self.backend, Path::new(SIM_DIR));
                self.p = log.partition(TOPIC, 0).unwrap();
                self.log = Some(log);
            }
            Backend::Fs(old) => {
                // Copy the directory while the log is open: what a kill -9 leaves.
                let new = tempfile::tempdir().unwrap();
                copy_dir(old.path(), new.path());
                drop(self.log.take());
                let log = Log::open(new.path()).expect("open the copy");
                self.backend = Backend::Fs(new);
                self.p = log.partition(TOPIC, 0).unwrap();
                self.log = Some(log);
            }
        }
    }
}

fn run(compression: Compression, ts_type: TimestampType, fs: bool, seed: u64, steps: usize) {
    let _guard = SeedGuard::new(&format!("{compression:?} {ts_type:?} fs={fs}"), seed);
    let mut rng = Rng::new(seed);
    let small = rng.chance(30);
    let mut config = TopicConfig::default()
        .segment_bytes(rng.range(1024, 8192))
        .index_interval_bytes(rng.usize(0, 512))
        .segment_index_bytes(rng.usize(1024, 1600))
        .compression(compression)
        .message_timestamp_type(ts_type);
    if rng.chance(30) {
        config = config.segment_ms(Duration::from_millis(rng.range(1000, 3_600_000)));
    }
    if small {
        // Tiny batches so that a full index, not the byte size, rolls segments.
        config = config
            .segment_bytes(8192)
            .index_interval_bytes(0)
            .segment_index_bytes(1024);
    }
    let ctx = format!("seed {seed} {config:?}");
    let backend = if fs {
        Backend::Fs(tempfile::tempdir().unwrap())
    } else {
        Backend::Sim(SimStorage::new())
    };
    let dir = match &backend {
        Backend::Sim(_) => PathBuf::from(SIM_DIR),
        Backend::Fs(d) => d.path().to_path_buf(),
    };
    let log = Harness::open(&backend, &dir);
    log.create_topic(TOPIC, config.clone()).unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let mut h = Harness {
        backend,
        log: Some(log),
        p,
        model: Vec::new(),
        batch_ends: BTreeSet::from([0]),
        ts_type,
        rng,
        ctx,
    };
    h.quick_check();
    let mut max_segments = 1;
    for step in 0..steps {
        match h.rng.below(100) {
            0..=87 => h.append(step, small),
            88..=92 => h.reopen_clean(),
            93..=97 => h.reopen_unclean(),
            _ => {
                let hw = h.model.len() as u64;
                if hw > 0 {
                    let o = h.rng.below(hw);
                    h.check_read(o, 1);
                }
            }
        }
        h.ctx = format!("seed {seed} step {step} {config:?}");
        h.quick_check();
        max_segments = max_segments.max(h.p.segment_count());
    }
    h.full_check(600);
    h.reopen_clean();
    h.full_check(200);
    h.reopen_unclean();
    h.full_check(200);
    // The configuration survives reopening.
    assert_eq!(h.log().topic_config(TOPIC).unwrap(), config);
    if steps >= 60 && !small {
        assert!(max_segments > 1, "{}: tiny segments never rolled", h.ctx);
    }
    h.log.take().unwrap().close().unwrap();
}

fn run_many(compression: Compression, ts_type: TimestampType) {
    let base = base_seed();
    let steps = env_usize("ANNALS_MODEL_STEPS", 100);
    for i in 0..cases(1) as u64 {
        run(compression, ts_type, false, base.wrapping_add(i), steps);
    }
}

#[test]
fn model_none_create_time() {
    run_many(Compression::None, TimestampType::CreateTime);
}

#[test]
fn model_none_log_append_time() {
    run_many(Compression::None, TimestampType::LogAppendTime);
}

#[test]
fn model_lz4_create_time() {
    run_many(Compression::Lz4, TimestampType::CreateTime);
}

#[test]
fn model_lz4_log_append_time() {
    run_many(Compression::Lz4, TimestampType::LogAppendTime);
}

#[test]
fn model_zstd_create_time() {
    run_many(Compression::Zstd { level: 3 }, TimestampType::CreateTime);
}

#[test]
fn model_zstd_log_append_time() {
    run_many(Compression::Zstd { level: 3 }, TimestampType::LogAppendTime);
}

/// The same model on the real file system (fewer steps: real fsyncs are slow).
#[test]
fn model_real_files() {
    let base = base_seed();
    let steps = env_usize("ANNALS_MODEL_STEPS", 100) / 4;
    for (i, (c, t)) in [
        (Compression::None, TimestampType::CreateTime),
        (Compression::Lz4, TimestampType::LogAppendTime),
        (Compression::Zstd { level: 3 }, TimestampType::CreateTime),
    ]
    .into_iter()
    .enumerate()
    {
        run(c, t, true, base.wrapping_add(1000 + i as u64), steps);
    }
}

/// Index-full rolls: with one-record batches, index_interval 0 and the smallest index, the
/// offset index fills before segment_bytes does.
#[test]
fn full_index_rolls_segments() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, SIM_DIR).open();
    let config = TopicConfig::default()
        .segment_bytes(1 << 20)
        .index_interval_bytes(0)
        .segment_index_bytes(1024);
    log.create_topic(TOPIC, config).unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let records = simple_records(0, 600);
    for r in &records {
        p.append(std::slice::from_ref(r)).unwrap();
    }
    // 1024 bytes hold 85 time-index entries (12 bytes each) or 128 offset entries: 600
    // single-record batches with rising timestamps cannot fit in one segment of 1 MiB.
    assert!(
        p.segment_count() >= 600 / 128,
        "only {} segments",
        p.segment_count()
    );
    let model = model_of(&records);
    assert_partition_matches(&p, &model, "index-full rolls");
    for (i, r) in model.iter().enumerate() {
        assert_eq!(p.offset_for_timestamp(r.timestamp).unwrap(), Some(i as u64));
    }
    log.close().unwrap();
    let log = TestLog::sim(&sim, SIM_DIR).open();
    let p = log.partition(TOPIC, 0).unwrap();
    assert_partition_matches(&p, &model, "index-full rolls, reopened");
}
