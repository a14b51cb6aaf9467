//! Side-by-side throughput of `annals` and its peers on the same records and workloads: a plain
//! length-prefixed file (the floor), the `commitlog` crate, SQLite (`rusqlite`, bundled) and
//! `redb`.
//!
//! ```text
//! cargo bench --bench peers                     # everything, ~2-3 minutes after the build (2 cores)
//! cargo bench --bench peers -- --quick          # criterion's quick mode
//! cargo bench --bench peers -- w3_read/         # one workload
//! cargo bench --bench peers -- /sqlite          # one system
//! ```
//!
//! Records come from the shared generator (`common::make_records`: 12-byte key, 100-byte
//! JSON-like value); batches are 1000 records. All benchmarks report records/s
//! (`Throughput::Elements`). Data lives in a `tempfile::tempdir()`.
//!
//! **Sizes are scaled down** from the issue's (W1 was 2 M records): one criterion iteration of
//! W1 writes `W1_RECORDS` (100,000) records into a *fresh* store, so every iteration measures
//! the same thing and disk use stays bounded; store creation and deletion are untimed.
//!
//! - `w1_append/<system>`: `W1_RECORDS` records in batches of 1000, no fsync.
//!   annals: `Partition::append` per batch. raw_file: `u32 len | key | u32 len | value` through a
//!   256 KiB `BufWriter` (final flush timed). commitlog: one `MessageBuf` per batch (key as
//!   metadata, value as payload; building it is timed), `CommitLog::append`. sqlite: WAL,
//!   `synchronous=OFF`, one (immediate) transaction per batch into
//!   `(offset INTEGER PRIMARY KEY, key BLOB, value BLOB)`. redb: one write transaction per batch
//!   with `Durability::None`, table `u64 -> (&[u8], &[u8])` keyed by offset.
//! - `w2_append_sync/<system>`: the same, `W2_RECORDS` (10,000) per iteration, made durable
//!   after every batch: annals `sync()`, raw_file flush + `sync_data`, commitlog `flush()`,
//!   sqlite `synchronous=FULL`, redb default durability (`Immediate`). Caveat: commitlog 0.2's
//!   `flush()` msyncs its index but only calls `File::flush` (a no-op) on the segment, so its
//!   records are *not* fsynced; its W2 number is an upper bound, not a like-for-like one.
//! - `w3_read/<system>`: one full sequential scan of `W1_RECORDS` records written beforehand
//!   (as in W1, then settled with an fsync), touching every key and value: annals
//!   `read_into(offset, 1 MiB, &mut vec)`, raw_file `BufReader` (256 KiB) parse, commitlog
//!   `read(offset, ReadLimit::max_bytes(1 MiB))`, sqlite `SELECT key, value ... ORDER BY offset`,
//!   redb `range(0..)` in one read transaction.
//! - `w5_concurrent/<system>`: `W5_THREADS` (4) threads each appending `W5_RECORDS_PER_THREAD`
//!   (25,000) records in batches of 1000, no fsync, timed from a common start to the last
//!   thread's finish. annals: one topic of 4 partitions, one per thread. raw_file, commitlog:
//!   one file / log per thread. sqlite: one database, a table per thread, a connection per
//!   thread (writers serialise on SQLite's lock; `busy_timeout` 60 s). redb: one database,
//!   a table per thread, writers serialise on `begin_write`.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use annals::{Log, Partition, Record, StoredRecord, TopicConfig};
use commitlog::message::{MessageBuf, MessageSet};
use commitlog::{CommitLog, LogOptions, ReadLimit};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use redb::{ReadableDatabase, TableDefinition};
use rusqlite::{Connection, TransactionBehavior};

mod common;
use common::{make_records, write_raw};

const BATCH: usize = 1000;
/// Records per W1 iteration (and in the W3 store).
const W1_RECORDS: usize = 100_000;
/// Records per W2 iteration: one fsync per 1000, so this is 10 fsyncs.
const W2_RECORDS: usize = 10_000;
const W5_THREADS: usize = 4;
const W5_RECORDS_PER_THREAD: usize = 25_000;
const RAW_BUF_BYTES: usize = 256 << 10;
const READ_MAX_BYTES: usize = 1 << 20;
/// No segment roll (an fsync in annals) inside any timed region.
const SEGMENT_BYTES: u64 = 1 << 30;
const TOPIC: &str = "peers";
/// Table (redb) / table name (sqlite) per partition.
const TABLE_NAMES: [&str; W5_THREADS] = ["p0", "p1", "p2", "p3"];
type RedbTable = TableDefinition<'static, u64, (&'static [u8], &'static [u8])>;

#[derive(Clone, Copy)]
enum System {
    Annals,
    RawFile,
    Commitlog,
    Sqlite,
    Redb,
}

const SYSTEMS: [System; 5] = [
    System::Annals,
    System::RawFile,
    System::Commitlog,
    System::Sqlite,
    System::Redb,
];

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Annals => "annals",
            System::RawFile => "raw_file",
            System::Commitlog => "commitlog",
            System::Sqlite => "sqlite",
            System::Redb => "redb",
        }
    }
}

fn redb_table(part: usize) -> RedbTable {
    TableDefinition::new(TABLE_NAMES[part])
}

/// What one store's partitions share: the annals log, the redb database.
enum Shared {
    Annals(Log),
    Redb(redb::Database),
    Files,
}

/// Creates a fresh store of `parts` partitions in the (new, empty) `dir`. Untimed.
fn setup(system: System, dir: &Path, parts: usize) -> Shared {
    match system {
        System::Annals => {
            let log = Log::open(dir).expect("open log");
            let config = TopicConfig::default()
                .partitions(parts as u32)
                .segment_bytes(SEGMENT_BYTES);
            log.create_topic(TOPIC, config).expect("create topic");
            Shared::Annals(log)
        }
        System::RawFile | System::Commitlog => Shared::Files,
        System::Sqlite => {
            let conn = Connection::open(dir.join("db.sqlite")).expect("open sqlite");
            let mode: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .expect("journal_mode");
            assert_eq!(mode.to_ascii_lowercase(), "wal");
            for name in &TABLE_NAMES[..parts] {
                conn.execute_batch(&format!(
                    "CREATE TABLE {name} (offset INTEGER PRIMARY KEY, key BLOB, value BLOB)"
                ))
                .expect("create table");
            }
            Shared::Files
        }
        System::Redb => {
            let db = redb::Database::create(dir.join("db.redb")).expect("create redb");
            let tx = db.begin_write().expect("begin_write");
            for part in 0..parts {
                tx.open_table(redb_table(part)).expect("open table");
            }
            tx.commit().expect("commit");
            Shared::Redb(db)
        }
    }
}

/// One partition's appender.
enum Writer<'a> {
    Annals(Partition),
    RawFile(BufWriter<File>),
    Commitlog(CommitLog, MessageBuf),
    Sqlite {
        conn: Connection,
        insert: String,
        next: i64,
    },
    Redb {
        db: &'a redb::Database,
        part: usize,
        next: u64,
    },
}

impl<'a> Writer<'a> {
    /// Opens partition `part` of the store for appending. Untimed.
    fn open(system: System, shared: &'a Shared, dir: &Path, part: usize, sync: bool) -> Self {
        match (system, shared) {
            (System::Annals, Shared::Annals(log)) => {
                Writer::Annals(log.partition(TOPIC, part as u32).expect("partition"))
            }
            (System::RawFile, _) => {
                let file = File::create(dir.join(format!("raw-{part}.bin"))).expect("create");
                Writer::RawFile(BufWriter::with_capacity(RAW_BUF_BYTES, file))
            }
            (System::Commitlog, _) => {
                let log = CommitLog::new(LogOptions::new(dir.join(format!("clog-{part}"))))
                    .expect("open commitlog");
                Writer::Commitlog(log, MessageBuf::default())
            }
            (System::Sqlite, _) => {
                let conn = Connection::open(dir.join("db.sqlite")).expect("open sqlite");
                conn.busy_timeout(Duration::from_secs(60))
                    .expect("busy_timeout");
                let level = if sync { "FULL" } else { "OFF" };
                conn.execute_batch(&format!("PRAGMA synchronous={level}"))
                    .expect("synchronous");
                let insert = format!(
                    "INSERT INTO {} (offset, key, value) VALUES (?1, ?2, ?3)",
                    TABLE_NAMES[part]
                );
                Writer::Sqlite {
                    conn,
                    insert,
                    next: 0,
                }
            }
            (System::Redb, Shared::Redb(db)) => Writer::Redb { db, part, next: 0 },
            _ => unreachable!("store and system do not match"),
        }
    }

    /// Appends one batch, made durable first if `sync`.
    fn append(&mut self, batch: &[Record], sync: bool) {
        match self {
            Writer::Annals(p) => {
                black_box(p.append(batch).expect("append"));
                if sync {
                    p.sync().expect("sync");
                }
            }
            Writer::RawFile(w) => {
                for r in batch {
                    write_raw(w, r).expect("raw write");
                }
                if sync {
                    w.flush().expect("flush");
                    w.get_ref().sync_data().expect("sync_data");
                }
            }
            Writer::Commitlog(log, buf) => {
                buf.clear();
                for r in batch {
                    buf.push_with_metadata(key_of(r), value_of(r))
                        .expect("serialize");
                }
                black_box(log.append(buf).expect("commitlog append"));
                if sync {
                    log.flush().expect("commitlog flush");
                }
            }
            Writer::Sqlite { conn, insert, next } => {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .expect("begin");
                {
                    let mut stmt = tx.prepare_cached(insert).expect("prepare");
                    for r in batch {
                        stmt.execute((*next, key_of(r), value_of(r)))
                            .expect("insert");
                        *next += 1;
                    }
                }
                tx.commit().expect("commit");
            }
            Writer::Redb { db, part, next } => {
                let mut tx = db.begin_write().expect("begin_write");
                if !sync {
                    tx.set_durability(redb::Durability::None)
                        .expect("set_durability");
                }
                {
                    let mut table = tx.open_table(redb_table(*part)).expect("open table");
                    for r in batch {
                        table
                            .insert(*next, (key_of(r), value_of(r)))
                            .expect("insert");
                        *next += 1;
                    }
                }
                tx.commit().expect("commit");
            }
        }
    }

    /// Ends the run: the raw file's last buffer is flushed (timed, like every other write).
    fn finish(self) {
        if let Writer::RawFile(mut w) = self {
            w.flush().expect("flush");
        }
    }
}

fn key_of(r: &Record) -> &[u8] {
    r.key.as_deref().unwrap_or(&[])
}

fn value_of(r: &Record) -> &[u8] {
    r.value.as_deref().unwrap_or(&[])
}

/// A fresh, numbered directory for one store under `root`.
fn fresh_dir(root: &Path, seq: &mut u64) -> PathBuf {
    *seq += 1;
    let dir = root.join(format!("s{seq}"));
    std::fs::create_dir(&dir).expect("create store dir");
    dir
}

/// Tears a store down, untimed.
fn teardown(shared: Shared, dir: &Path) {
    if let Shared::Annals(log) = shared {
        log.close().expect("close log");
    } else {
        drop(shared);
    }
    std::fs::remove_dir_all(dir).expect("remove store dir");
}

/// Creates a fresh single-partition store, times appending `records` records in batches of
/// `batch.len()`, and deletes the store.
fn timed_single_append(
    system: System,
    root: &Path,
    seq: &mut u64,
    batch: &[Record],
    records: usize,
    sync: bool,
) -> Duration {
    let dir = fresh_dir(root, seq);
    let shared = setup(system, &dir, 1);
    let mut w = Writer::open(system, &shared, &dir, 0, sync);
    let start = Instant::now();
    for _ in 0..records / batch.len() {
        w.append(batch, sync);
    }
    w.finish();
    let elapsed = start.elapsed();
    teardown(shared, &dir);
    elapsed
}

fn bench_append(c: &mut Criterion, group_name: &str, records: usize, sync: bool) {
    let pool = make_records(BATCH);
    let root = tempfile::tempdir().expect("tempdir");
    let mut seq = 0u64;
    let mut group = c.benchmark_group(group_name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(records as u64));
    for system in SYSTEMS {
        group.bench_function(system.name(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        timed_single_append(system, root.path(), &mut seq, &pool, records, sync)
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

fn bench_w1(c: &mut Criterion) {
    bench_append(c, "w1_append", W1_RECORDS, false);
}

fn bench_w2(c: &mut Criterion) {
    bench_append(c, "w2_append_sync", W2_RECORDS, true);
}

/// A store pre-written for W3, opened for reading.
enum ReadStore {
    Annals(Log, Partition),
    RawFile(PathBuf),
    Commitlog(CommitLog),
    Sqlite(Connection),
    Redb(redb::Database),
}

/// Writes `W1_RECORDS` records into a fresh store in `dir` as W1 does, settles them on disk,
/// and opens the store for reading.
fn prewrite(system: System, dir: &Path, pool: &[Record]) -> ReadStore {
    let shared = setup(system, dir, 1);
    let mut w = Writer::open(system, &shared, dir, 0, false);
    for _ in 0..W1_RECORDS / pool.len() {
        w.append(pool, false);
    }
    // Settle the page cache so write-back does not run during the measurement.
    match &mut w {
        Writer::Annals(p) => p.sync().expect("sync"),
        Writer::RawFile(f) => {
            f.flush().expect("flush");
            f.get_ref().sync_all().expect("sync");
        }
        Writer::Commitlog(log, _) => log.flush().expect("flush"),
        Writer::Sqlite { conn, .. } => {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .expect("checkpoint");
        }
        Writer::Redb { .. } => {}
    }
    drop(w);
    match (system, shared) {
        (System::Annals, Shared::Annals(log)) => {
            let p = log.partition(TOPIC, 0).expect("partition");
            assert_eq!(p.high_watermark(), W1_RECORDS as u64);
            ReadStore::Annals(log, p)
        }
        (System::RawFile, _) => ReadStore::RawFile(dir.join("raw-0.bin")),
        (System::Commitlog, _) => ReadStore::Commitlog(
            CommitLog::new(LogOptions::new(dir.join("clog-0"))).expect("reopen commitlog"),
        ),
        (System::Sqlite, _) => {
            ReadStore::Sqlite(Connection::open(dir.join("db.sqlite")).expect("open sqlite"))
        }
        (System::Redb, Shared::Redb(db)) => {
            // A durable empty commit, so the non-durable ones above are on disk too.
            let tx = db.begin_write().expect("begin_write");
            tx.commit().expect("commit");
            ReadStore::Redb(db)
        }
        _ => unreachable!("store and system do not match"),
    }
}

/// Reads the whole store front to back, touching every key and value; returns the record count.
fn scan(store: &ReadStore, out: &mut Vec<StoredRecord>) -> u64 {
    let mut seen = 0u64;
    let mut bytes = 0usize;
    match store {
        ReadStore::Annals(_, p) => {
            let hw = p.high_watermark();
            let mut offset = 0;
            while offset < hw {
                out.clear();
                p.read_into(offset, READ_MAX_BYTES, out).expect("read");
                for r in out.iter() {
                    bytes += r.key.as_ref().map_or(0, |k| k.len());
                    bytes += r.value.as_ref().map_or(0, |v| v.len());
                }
                offset = out.last().expect("records below the hw").offset + 1;
                seen += out.len() as u64;
            }
        }
        ReadStore::RawFile(path) => {
            let mut r = BufReader::with_capacity(RAW_BUF_BYTES, File::open(path).expect("open"));
            let mut key = Vec::new();
            let mut value = Vec::new();
            let mut len = [0u8; 4];
            loop {
                match r.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => panic!("read: {e}"),
                }
                key.resize(u32::from_be_bytes(len) as usize, 0);
                r.read_exact(&mut key).expect("key");
                r.read_exact(&mut len).expect("value len");
                value.resize(u32::from_be_bytes(len) as usize, 0);
                r.read_exact(&mut value).expect("value");
                bytes += key.len() + value.len();
                seen += 1;
            }
        }
        ReadStore::Commitlog(log) => {
            let mut offset = 0;
            loop {
                let buf = log
                    .read(offset, ReadLimit::max_bytes(READ_MAX_BYTES))
                    .expect("commitlog read");
                if buf.is_empty() {
                    break;
                }
                for m in buf.iter() {
                    bytes += m.metadata().len() + m.payload().len();
                    offset = m.offset() + 1;
                    seen += 1;
                }
            }
        }
        ReadStore::Sqlite(conn) => {
            let mut stmt = conn
                .prepare_cached("SELECT key, value FROM p0 ORDER BY offset")
                .expect("prepare");
            let mut rows = stmt.query([]).expect("query");
            while let Some(row) = rows.next().expect("row") {
                bytes += row.get_ref(0).expect("key").as_blob().expect("blob").len();
                bytes += row
                    .get_ref(1)
                    .expect("value")
                    .as_blob()
                    .expect("blob")
                    .len();
                seen += 1;
            }
        }
        ReadStore::Redb(db) => {
            let tx = db.begin_read().expect("begin_read");
            let table = tx.open_table(redb_table(0)).expect("open table");
            for entry in table.range(0..).expect("range") {
                let (_, v) = entry.expect("entry");
                let (key, value) = v.value();
                bytes += key.len() + value.len();
                seen += 1;
            }
        }
    }
    black_box(bytes);
    seen
}

fn bench_w3(c: &mut Criterion) {
    let pool = make_records(BATCH);
    let root = tempfile::tempdir().expect("tempdir");
    let mut seq = 0u64;
    let mut group = c.benchmark_group("w3_read");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(W1_RECORDS as u64));
    for system in SYSTEMS {
        // Written lazily, so a filter that skips this benchmark also skips its setup.
        let mut store: Option<ReadStore> = None;
        let mut out = Vec::new();
        group.bench_function(system.name(), |b| {
            let store = store
                .get_or_insert_with(|| prewrite(system, &fresh_dir(root.path(), &mut seq), &pool));
            b.iter(|| {
                let seen = scan(store, &mut out);
                assert_eq!(seen, W1_RECORDS as u64);
                seen
            })
        });
        if let Some(ReadStore::Annals(log, p)) = store {
            drop(p);
            log.close().expect("close log");
        }
    }
    group.finish();
}

/// Creates a fresh `W5_THREADS`-partition store and times `W5_THREADS` threads each appending
/// `W5_RECORDS_PER_THREAD` records to its own partition, from a common start to the last finish.
fn timed_concurrent_append(
    system: System,
    root: &Path,
    seq: &mut u64,
    batch: &[Record],
) -> Duration {
    let dir = fresh_dir(root, seq);
    let shared = setup(system, &dir, W5_THREADS);
    let barrier = Barrier::new(W5_THREADS + 1);
    let elapsed = std::thread::scope(|s| {
        let handles: Vec<_> = (0..W5_THREADS)
            .map(|part| {
                let mut w = Writer::open(system, &shared, &dir, part, false);
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    for _ in 0..W5_RECORDS_PER_THREAD / batch.len() {
                        w.append(batch, false);
                    }
                    w.finish();
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("writer thread");
        }
        start.elapsed()
    });
    teardown(shared, &dir);
    elapsed
}

fn bench_w5(c: &mut Criterion) {
    let pool = make_records(BATCH);
    let root = tempfile::tempdir().expect("tempdir");
    let mut seq = 0u64;
    let mut group = c.benchmark_group("w5_concurrent");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(
            (W5_THREADS * W5_RECORDS_PER_THREAD) as u64,
        ));
    for system in SYSTEMS {
        group.bench_function(system.name(), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| timed_concurrent_append(system, root.path(), &mut seq, &pool))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_w1, bench_w2, bench_w3, bench_w5);
criterion_main!(benches);
