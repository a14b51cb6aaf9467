//! Side-by-side throughput of `annals` and its peers on the same records and workloads: a plain
//! length-prefixed file (the floor), the `commitlog` crate, SQLite (`rusqlite`, bundled) and
//! `redb`.
//!
//! ```text
//! cargo bench -p annals-peers --bench peers                  # everything, ~2.5 min (2 cores)
//! cargo bench -p annals-peers --bench peers -- --quick       # criterion's quick mode
//! cargo bench -p annals-peers --bench peers -- w3_read/      # one workload
//! cargo bench -p annals-peers --bench peers -- /sqlite       # one system
//! ```
//!
//! The workloads themselves live in `annals_peers::workloads` (what each system does,
//! exactly), shared with the `compare` binary, which runs them at the issue's full sizes in one
//! child process per system and workload and prints one table with ratios and peak memory: that
//! is the table in the README. This bench is the criterion view of the same code.
//!
//! Records come from the shared generator (`common::make_records`: 12-byte key, 100-byte
//! JSON-like value; W4 1 KiB values); batches are 1000 records. All benchmarks report records/s
//! (`Throughput::Elements`). Data lives in a `tempfile::tempdir()`.
//!
//! **Sizes are scaled down** from the issue's (W1 was 2 M records), so criterion can take ten
//! samples of each in seconds: every iteration of an append workload writes into a *fresh*
//! store, so every iteration measures the same thing and disk use stays bounded; store creation
//! and deletion are untimed.
//!
//! - `w1_append/<system>`: `W1_RECORDS` (100,000) records in batches of 1000, no fsync.
//! - `w2_append_sync/<system>`: `W2_RECORDS` (10,000) per iteration, made durable after every
//!   batch (commitlog's "durable" does not fsync its records: see `annals_peers::workloads`).
//! - `w3_read/<system>`: one full sequential scan of `W1_RECORDS` records written as in W1,
//!   settled (fsynced) and reopened beforehand, touching every key and value.
//! - `w4_append_lz4/<system>`: `W4_RECORDS` (20,000) records with 1 KiB values, batches of 1000,
//!   no fsync; annals compresses with lz4, the peers have no compression and store raw.
//! - `w5_concurrent/<system>`: `W5_THREADS` (4) threads each appending `W5_RECORDS_PER_THREAD`
//!   (25,000) records in batches of 1000, no fsync, timed from a common start to the last
//!   thread's finish (annals: one topic of 4 partitions, one per thread).
//! - `w1_send/annals`: `W1_RECORDS` records sent one at a time through `Producer::send`
//!   (`Durability::Written`), then one `flush()`. No peer has a producer; compare with
//!   `w1_append`.
//!
//! - `w3_poll/annals`: the `w3_read` store read back through a `Consumer` (`poll_batches`, one
//!   reused vector, up to 10,000 records per poll); no peer has a consumer: compare with
//!   `w3_read`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use annals::{Compression, Record};
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};

use annals_peers::common::{make_records, make_records_len};
use annals_peers::workloads::{
    close, close_read, open_for_read, scan, settle_and_close, timed_append, timed_poll, timed_send,
    ReadStore, System, SYSTEMS,
};

const BATCH: usize = 1000;
/// Records per W1 iteration (and in the W3 store, and per `w1_send` iteration).
const W1_RECORDS: usize = 100_000;
/// Records per W2 iteration: one fsync per 1000, so this is 10 fsyncs.
const W2_RECORDS: usize = 10_000;
/// Records per W4 iteration (about 20 MiB of values).
const W4_RECORDS: usize = 20_000;
const W4_VALUE_LEN: usize = 1024;
const W5_THREADS: usize = 4;
const W5_RECORDS_PER_THREAD: usize = 25_000;

/// A fresh, numbered directory for one store under `root`.
fn fresh_dir(root: &Path, seq: &mut u64) -> PathBuf {
    *seq += 1;
    let dir = root.join(format!("s{seq}"));
    std::fs::create_dir(&dir).expect("create store dir");
    dir
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, records: usize) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(records as u64));
}

/// One group: every system appends `parts × per_part` records of `pool` into a fresh store per
/// iteration (created, closed and deleted untimed).
fn bench_append(
    c: &mut Criterion,
    group_name: &str,
    pool: &[Record],
    parts: usize,
    per_part: usize,
    sync: bool,
    compression: Compression,
) {
    let root = tempfile::tempdir().expect("tempdir");
    let mut seq = 0u64;
    let mut group = c.benchmark_group(group_name);
    configure(&mut group, parts * per_part);
    for system in SYSTEMS {
        group.bench_function(system.name(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let dir = fresh_dir(root.path(), &mut seq);
                        let (elapsed, store) =
                            timed_append(system, &dir, parts, pool, per_part, sync, compression);
                        close(store);
                        std::fs::remove_dir_all(&dir).expect("remove store dir");
                        elapsed
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

fn bench_w1(c: &mut Criterion) {
    let pool = make_records(BATCH);
    bench_append(
        c,
        "w1_append",
        &pool,
        1,
        W1_RECORDS,
        false,
        Compression::None,
    );
}

fn bench_w2(c: &mut Criterion) {
    let pool = make_records(BATCH);
    bench_append(
        c,
        "w2_append_sync",
        &pool,
        1,
        W2_RECORDS,
        true,
        Compression::None,
    );
}

fn bench_w3(c: &mut Criterion) {
    let pool = make_records(BATCH);
    let root = tempfile::tempdir().expect("tempdir");
    let mut seq = 0u64;
    let mut group = c.benchmark_group("w3_read");
    configure(&mut group, W1_RECORDS);
    for system in SYSTEMS {
        // Written lazily, so a filter that skips this benchmark also skips its setup.
        let mut store: Option<ReadStore> = None;
        let mut out = Vec::new();
        group.bench_function(system.name(), |b| {
            let store = store.get_or_insert_with(|| {
                let dir = fresh_dir(root.path(), &mut seq);
                let (_, written) =
                    timed_append(system, &dir, 1, &pool, W1_RECORDS, false, Compression::None);
                settle_and_close(system, written, &dir);
                open_for_read(system, &dir)
            });
            b.iter(|| {
                let seen = scan(store, &mut out);
                assert_eq!(seen, W1_RECORDS as u64);
                seen
            })
        });
        if let Some(store) = store {
            close_read(store);
        }
    }
    group.finish();
}

fn bench_poll(c: &mut Criterion) {
    let pool = make_records(BATCH);
    let root = tempfile::tempdir().expect("tempdir");
    let mut seq = 0u64;
    let mut group = c.benchmark_group("w3_poll");
    configure(&mut group, W1_RECORDS);
    let mut dir: Option<PathBuf> = None;
    group.bench_function(System::Annals.name(), |b| {
        let dir = dir.get_or_insert_with(|| {
            let dir = fresh_dir(root.path(), &mut seq);
            let (_, written) = timed_append(
                System::Annals,
                &dir,
                1,
                &pool,
                W1_RECORDS,
                false,
                Compression::None,
            );
            settle_and_close(System::Annals, written, &dir);
            dir
        });
        b.iter_custom(|iters| (0..iters).map(|_| timed_poll(dir, W1_RECORDS)).sum())
    });
    group.finish();
}

fn bench_w4(c: &mut Criterion) {
    let pool = make_records_len(BATCH, W4_VALUE_LEN);
    bench_append(
        c,
        "w4_append_lz4",
        &pool,
        1,
        W4_RECORDS,
        false,
        Compression::Lz4,
    );
}

fn bench_w5(c: &mut Criterion) {
    let pool = make_records(BATCH);
    bench_append(
        c,
        "w5_concurrent",
        &pool,
        W5_THREADS,
        W5_RECORDS_PER_THREAD,
        false,
        Compression::None,
    );
}

fn bench_send(c: &mut Criterion) {
    let pool = make_records(BATCH);
    let root = tempfile::tempdir().expect("tempdir");
    let mut seq = 0u64;
    let mut group = c.benchmark_group("w1_send");
    configure(&mut group, W1_RECORDS);
    group.bench_function(System::Annals.name(), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let dir = fresh_dir(root.path(), &mut seq);
                    let elapsed = black_box(timed_send(&dir, &pool, W1_RECORDS));
                    std::fs::remove_dir_all(&dir).expect("remove store dir");
                    elapsed
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_w1, bench_w2, bench_w3, bench_poll, bench_w4, bench_w5, bench_send);
criterion_main!(benches);
