//! Maintenance throughput: compaction and retention.
//!
//! ```text
//! cargo bench --bench maintenance                # everything
//! cargo bench --bench maintenance -- --quick     # criterion's quick mode
//! cargo bench --bench maintenance -- compaction/ # one group
//! ```
//!
//! - `compaction/dup_<p>pct`: one compaction of a 24 MiB log of 100-byte uncompressed values with 8-byte keys, of which
//!   `p`% are updates of an earlier key (so 10% / 50% / 90% of the records are superseded),
//!   keys in random order, 1 MiB segments, every segment sealed. Reported as MB/s of input
//!   log (`Throughput::Bytes`); target >= 200 MB/s. The log is compacted through
//!   `Log::run_maintenance` with `cleaner_buffer_bytes` = 16 MiB (the default), which holds
//!   the ~200k distinct keys of the 10%-duplicates case in one pass.
//! - `compaction_small_map/dup_10pct`: the same with a 4 MiB map (~57k keys), so the log is
//!   compacted in four passes, each rewriting it: the price of a map smaller than the keys.
//! - `retention/1000_segments`: `Partition::retain` deleting 999 sealed segments (everything
//!   but the active one) whose records are past `retention_ms`.
//!
//! Each iteration works on a fresh copy of a template directory, made (untimed) by copying
//! files; the log is opened untimed as well. The directory is on the real disk (`target/`'s
//! file system) unless `ANNALS_BENCH_DIR` names another (a tmpfs shows the CPU cost alone).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use annals::{CleanupPolicy, Log, Record, TopicConfig};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const T: &str = "t";
const VALUE_LEN: usize = 100;
const LOG_BYTES: u64 = 24 << 20;
/// The default `cleaner_buffer_bytes`: room for about 230k keys.
const MAP_BYTES: usize = 16 << 20;

/// SplitMix64, for reproducible key orders.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn open(dir: &Path) -> Log {
    open_with(dir, MAP_BYTES)
}

fn open_with(dir: &Path, map_bytes: usize) -> Log {
    Log::builder(dir)
        .maintenance_interval(None)
        .cleaner_buffer_bytes(map_bytes)
        .open()
        .unwrap()
}

/// Writes a compacted topic of about `LOG_BYTES` where `dup_pct`% of the records repeat an
/// earlier key; returns the template directory and the bytes of sealed log.
fn compaction_template(root: &Path, dup_pct: u64) -> (PathBuf, u64) {
    let dir = root.join(format!("compaction-{dup_pct}"));
    let log = open(&dir);
    log.create_topic(
        T,
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(1 << 20)
            .min_cleanable_dirty_ratio(0.0),
    )
    .unwrap();
    let p = log.partition(T, 0).unwrap();
    let mut rng = Rng(dup_pct);
    let value = vec![b'v'; VALUE_LEN];
    let mut distinct = 0u64;
    let mut batch = Vec::with_capacity(100);
    while p.size_bytes() < LOG_BYTES {
        for _ in 0..100 {
            let key = if distinct > 0 && rng.next() % 100 < dup_pct {
                rng.next() % distinct
            } else {
                distinct += 1;
                distinct - 1
            };
            batch.push(Record::new(value.clone()).key(key.to_be_bytes().to_vec()));
        }
        p.append(&batch).unwrap();
        batch.clear();
    }
    let sealed = p.size_bytes();
    // Roll, so everything written is in sealed (cleanable) segments.
    p.append(&[Record::new(vec![0u8; 1_000_000]).key("roll")])
        .unwrap();
    drop(p);
    log.close().unwrap();
    (dir, sealed)
}

/// Many tiny segments whose records are long past a one-hour retention.
fn retention_template(root: &Path, segments: usize) -> PathBuf {
    let dir = root.join(format!("retention-{segments}"));
    let log = open(&dir);
    log.create_topic(
        T,
        TopicConfig::default()
            .segment_bytes(1024)
            .segment_index_bytes(1024)
            .retention_ms(Duration::from_secs(3600)),
    )
    .unwrap();
    let p = log.partition(T, 0).unwrap();
    let mut i = 0i64;
    while p.segment_count() < segments {
        p.append(&[Record::new(vec![b'r'; 900]).timestamp(1_000_000 + i)])
            .unwrap();
        i += 1;
    }
    drop(p);
    log.close().unwrap();
    dir
}

/// `cp -r` of a log directory (flat: the log directory and its partition directories).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != ".lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// An opened copy of a template; dropping it (outside the timed routine: criterion drops
/// `iter_batched` outputs after measuring) closes the log and removes the copy.
struct Run {
    log: Option<Log>,
    dir: PathBuf,
}

impl Run {
    fn log(&self) -> &Log {
        self.log.as_ref().expect("open until dropped")
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.log.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh copy of `template` under `scratch`, opened with a `map_bytes` key map.
fn fresh(template: &Path, scratch: &Path, n: &mut u64, map_bytes: usize) -> Run {
    *n += 1;
    let dir = scratch.join(format!("run-{n}"));
    copy_dir(template, &dir);
    Run {
        log: Some(open_with(&dir, map_bytes)),
        dir,
    }
}

/// Where the logs go: `ANNALS_BENCH_DIR` (say a tmpfs, to take the disk's fsyncs out of the
/// figure), or `target/tmp`.
fn bench_root() -> tempfile::TempDir {
    let dir =
        std::env::var("ANNALS_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into());
    tempfile::tempdir_in(dir).unwrap()
}

fn compaction(c: &mut Criterion) {
    let root = bench_root();
    let templates: Vec<(u64, PathBuf, u64)> = [10u64, 50, 90]
        .iter()
        .map(|&dup| {
            let (template, bytes) = compaction_template(root.path(), dup);
            (dup, template, bytes)
        })
        .collect();
    let mut n = 0;
    for (name, map_bytes, dups) in [
        ("compaction", MAP_BYTES, &[10u64, 50, 90][..]),
        ("compaction_small_map", 4 << 20, &[10][..]),
    ] {
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for (dup, template, bytes) in templates.iter().filter(|t| dups.contains(&t.0)) {
            group.throughput(Throughput::Bytes(*bytes));
            bench_compaction(&mut group, *dup, template, root.path(), &mut n, map_bytes);
        }
        group.finish();
    }
}

fn bench_compaction(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    dup: u64,
    template: &Path,
    root: &Path,
    n: &mut u64,
    map_bytes: usize,
) {
    group.bench_function(format!("dup_{dup}pct"), |b| {
        b.iter_batched(
            || fresh(template, root, n, map_bytes),
            |run| {
                let report = run.log().run_maintenance().unwrap();
                assert!(report.records_compacted_away() > 0);
                black_box(&report);
                run
            },
            BatchSize::PerIteration,
        );
    });
}

fn retention(c: &mut Criterion) {
    let root = bench_root();
    let template = retention_template(root.path(), 1000);
    let mut group = c.benchmark_group("retention");
    group.sample_size(10);
    let mut n = 0;
    group.bench_function("1000_segments", |b| {
        b.iter_batched(
            || fresh(&template, root.path(), &mut n, MAP_BYTES),
            |run| {
                let report = run.log().partition(T, 0).unwrap().retain().unwrap();
                assert_eq!(report.segments_deleted, 999);
                run
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, compaction, retention);
criterion_main!(benches);
