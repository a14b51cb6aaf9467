//! The peer workloads — one implementation, shared by `benches/peers.rs` (criterion, scaled-down
//! sizes) and the `compare` binary (the sizes, one child process per system and
//! workload, one table) — so both measure exactly the same code.
//!
//! What every system does (records from `common::make_records*`; batches are the pool's length):
//!
//! - annals: a topic of `parts` partitions (1 GiB segments, so no roll — an fsync — lands in a
//!   timed region), `Partition::append` per batch, `sync()` after it when durable; read with
//!   `read_into(offset, 1 MiB, &mut vec)`. Compression is the topic's.
//! - raw file: `u32 len | key | u32 len | value` through a 256 KiB `BufWriter` (the final flush is
//!   timed); durable: flush + `sync_data`. Read back through a 256 KiB `BufReader`.
//! - commitlog: one `MessageBuf` per batch (key as metadata, value as payload; building it is
//!   timed), `CommitLog::append`; durable: `flush()`. Read with `read(offset, 1 MiB)`. Default
//!   options but a larger message limit (`commitlog_options`).
//!   commitlog 0.2's `flush()` msyncs its index but only calls `File::flush` (a no-op) on the
//!   segment, so its records are *not* fsynced: its durable number is an upper bound.
//! - sqlite: WAL, one (immediate) transaction per batch into
//!   `(offset INTEGER PRIMARY KEY, key BLOB, value BLOB)`, `synchronous=OFF`, or `FULL` when
//!   durable. Read with `SELECT key, value ... ORDER BY offset`.
//! - redb: one write transaction per batch into `u64 -> (&[u8], &[u8])` keyed by offset,
//!   `Durability::None`, or the default (`Immediate`) when durable. Read with `range(0..)` in one
//!   read transaction.
//!
//! With several partitions there is one writer thread per partition: annals one topic of
//! `parts` partitions; raw file and commitlog one file / log each; sqlite one database, a table
//! and a connection per thread (writers serialise on SQLite's lock; `busy_timeout` 60 s); redb one
//! database, a table per thread, writers serialise on `begin_write`.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use annals::format::BatchView;
use annals::{
    Compression, ConsumerConfig, Durability, Log, Partition, ProducerConfig, Record, TopicConfig,
};
use commitlog::message::{MessageBuf, MessageSet};
use commitlog::{CommitLog, LogOptions, ReadLimit};
use redb::{ReadableDatabase, TableDefinition};
use rusqlite::{Connection, TransactionBehavior};

use crate::common::write_raw;

pub const RAW_BUF_BYTES: usize = 256 << 10;
pub const READ_MAX_BYTES: usize = 1 << 20;
/// No segment roll (an fsync in annals) inside any timed region.
pub const SEGMENT_BYTES: u64 = 1 << 30;
/// A batch of 1000 records of 1 KiB is ~1 MiB before compression: above annals' 1 MiB default
/// if lz4 gains little, so the limit is raised rather than the batch split.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
pub const TOPIC: &str = "peers";
/// The most partitions (writer threads) a store can have.
pub const MAX_PARTS: usize = 4;
/// Table (redb) / table name (sqlite) per partition.
const TABLE_NAMES: [&str; MAX_PARTS] = ["p0", "p1", "p2", "p3"];
type RedbTable = TableDefinition<'static, u64, (&'static [u8], &'static [u8])>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Annals,
    RawFile,
    Commitlog,
    Sqlite,
    Redb,
}

pub const SYSTEMS: [System; 5] = [
    System::Annals,
    System::RawFile,
    System::Commitlog,
    System::Sqlite,
    System::Redb,
];

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Annals => "annals",
            System::RawFile => "raw_file",
            System::Commitlog => "commitlog",
            System::Sqlite => "sqlite",
            System::Redb => "redb",
        }
    }

    pub fn from_name(name: &str) -> Option<System> {
        SYSTEMS.into_iter().find(|s| s.name() == name)
    }
}

fn redb_table(part: usize) -> RedbTable {
    TableDefinition::new(TABLE_NAMES[part])
}

/// What one store's partitions share: the annals log, the redb database.
pub enum Shared {
    Annals(Log),
    Redb(redb::Database),
    Files,
}

/// Creates a fresh store of `parts` partitions in the (new, empty) `dir`. Untimed.
/// `compression` applies to annals only; the peers have none and store raw.
pub fn setup(system: System, dir: &Path, parts: usize, compression: Compression) -> Shared {
    assert!((1..=MAX_PARTS).contains(&parts));
    match system {
        System::Annals => {
            let log = Log::open(dir).expect("open log");
            let config = TopicConfig::default()
                .partitions(parts as u32)
                .segment_bytes(SEGMENT_BYTES)
                .max_message_bytes(MAX_MESSAGE_BYTES)
                .compression(compression);
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
pub enum Writer<'a> {
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
    pub fn open(system: System, shared: &'a Shared, dir: &Path, part: usize, sync: bool) -> Self {
        match (system, shared) {
            (System::Annals, Shared::Annals(log)) => {
                Writer::Annals(log.partition(TOPIC, part as u32).expect("partition"))
            }
            (System::RawFile, _) => {
                let file = File::create(dir.join(format!("raw-{part}.bin"))).expect("create");
                Writer::RawFile(BufWriter::with_capacity(RAW_BUF_BYTES, file))
            }
            (System::Commitlog, _) => {
                let log = CommitLog::new(commitlog_options(dir, part)).expect("open commitlog");
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
    pub fn append(&mut self, batch: &[Record], sync: bool) {
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

    /// Ends the run (timed, like every other write): the raw file's last buffer is flushed.
    /// Dropping the writer afterwards is not timed (closing SQLite's last connection
    /// checkpoints its WAL, which a long-running user would not pay per batch).
    pub fn finish(&mut self) {
        if let Writer::RawFile(w) = self {
            w.flush().expect("flush");
        }
    }
}

/// commitlog's default options (1 GB segments, 100,000 index entries per segment, so W1 rolls
/// every 100,000 records, as a user's log would; rolling cost nothing measurable here), with the
/// message limit raised from 1 MB so a batch of 1000 records of 1 KiB (W4) fits, as annals'
/// `max_message_bytes` is.
fn commitlog_options(dir: &Path, part: usize) -> LogOptions {
    let mut options = LogOptions::new(dir.join(format!("clog-{part}")));
    options.message_max_bytes(MAX_MESSAGE_BYTES);
    options
}

fn key_of(r: &Record) -> &[u8] {
    r.key.as_deref().unwrap_or(&[])
}

fn value_of(r: &Record) -> &[u8] {
    r.value.as_deref().unwrap_or(&[])
}

/// Creates a fresh store of `parts` partitions in the empty `dir` (untimed), then times `parts`
/// writers — one thread each when `parts > 1`, released together, timed until the last
/// finishes — each appending `per_part` records to its own partition in batches of
/// `pool.len()` (the pool, over and over), made durable after every batch if `sync`.
/// Returns the timed part and the store, still open.
pub fn timed_append(
    system: System,
    dir: &Path,
    parts: usize,
    pool: &[Record],
    per_part: usize,
    sync: bool,
    compression: Compression,
) -> (Duration, Shared) {
    assert_eq!(per_part % pool.len(), 0, "whole batches only");
    let batches = per_part / pool.len();
    let shared = setup(system, dir, parts, compression);
    let elapsed = if parts == 1 {
        let mut w = Writer::open(system, &shared, dir, 0, sync);
        let start = Instant::now();
        for _ in 0..batches {
            w.append(pool, sync);
        }
        w.finish();
        let elapsed = start.elapsed();
        drop(w);
        elapsed
    } else {
        let barrier = Barrier::new(parts + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..parts)
                .map(|part| {
                    let mut w = Writer::open(system, &shared, dir, part, sync);
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        for _ in 0..batches {
                            w.append(pool, sync);
                        }
                        w.finish();
                        w // dropped after the clock stops
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let writers: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().expect("writer thread"))
                .collect();
            let elapsed = start.elapsed();
            drop(writers);
            elapsed
        })
    };
    (elapsed, shared)
}

/// Closes a store (annals: a clean `Log::close`).
pub fn close(shared: Shared) {
    if let Shared::Annals(log) = shared {
        log.close().expect("close log");
    }
}

/// Makes what `timed_append` wrote durable and closes the store, so that reading it back later
/// (W3) measures reading, not write-back: SQLite's WAL is checkpointed into the database file,
/// redb's non-durable commits are followed by a durable one, and every file in `dir` is fsynced.
pub fn settle_and_close(system: System, shared: Shared, dir: &Path) {
    match (system, &shared) {
        (System::Sqlite, _) => {
            let conn = Connection::open(dir.join("db.sqlite")).expect("open sqlite");
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .expect("checkpoint");
        }
        (System::Redb, Shared::Redb(db)) => {
            let tx = db.begin_write().expect("begin_write");
            tx.commit().expect("durable commit");
        }
        _ => {}
    }
    close(shared);
    sync_tree(dir);
}

/// fsyncs every file and directory under `dir`.
fn sync_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sync_tree(&path);
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .expect("fsync file");
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}

/// A store written by `timed_append` (one partition) and closed, opened for reading.
pub enum ReadStore {
    Annals(Log, Partition),
    RawFile(PathBuf),
    Commitlog(CommitLog),
    Sqlite(Connection),
    Redb(redb::Database),
}

/// Opens partition 0 of the closed store in `dir` for reading. Untimed.
pub fn open_for_read(system: System, dir: &Path) -> ReadStore {
    match system {
        System::Annals => {
            let log = Log::open(dir).expect("reopen log");
            let p = log.partition(TOPIC, 0).expect("partition");
            ReadStore::Annals(log, p)
        }
        System::RawFile => ReadStore::RawFile(dir.join("raw-0.bin")),
        System::Commitlog => {
            ReadStore::Commitlog(CommitLog::new(commitlog_options(dir, 0)).expect("reopen"))
        }
        System::Sqlite => {
            ReadStore::Sqlite(Connection::open(dir.join("db.sqlite")).expect("open sqlite"))
        }
        System::Redb => ReadStore::Redb(redb::Database::open(dir.join("db.redb")).expect("open")),
    }
}

/// Closes a store opened by `open_for_read`.
pub fn close_read(store: ReadStore) {
    if let ReadStore::Annals(log, p) = store {
        drop(p);
        log.close().expect("close log");
    }
}

/// Reads the whole store front to back, touching every key and value; returns the record count.
/// `out` is annals' reused vector of batch views: annals reads with `read_batches`, its
/// borrowing read path (records decoded in place while iterated, as commitlog iterates its
/// messages); `read_into`, which builds an owned `StoredRecord` per record, is what
/// `benches/partition.rs`' `read/<codec>` measures.
pub fn scan(store: &ReadStore, out: &mut Vec<BatchView>) -> u64 {
    let mut seen = 0u64;
    let mut bytes = 0usize;
    match store {
        ReadStore::Annals(_, p) => {
            (seen, bytes) = crate::common::scan_batches(p, READ_MAX_BYTES, out);
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

/// annals only: opens a log in the empty `dir` with a one-partition topic, and times sending
/// `records` records (the pool, over and over) one at a time through `Producer::send`
/// (`Durability::Written`, default linger and batch size: the producer batches in the
/// background) followed by one `flush()`. Checks the high watermark afterwards, untimed.
pub fn timed_send(dir: &Path, pool: &[Record], records: usize) -> Duration {
    let log = Log::open(dir).expect("open log");
    let config = TopicConfig::default()
        .segment_bytes(SEGMENT_BYTES)
        .max_message_bytes(MAX_MESSAGE_BYTES);
    log.create_topic(TOPIC, config).expect("create topic");
    let producer = log
        .producer(ProducerConfig::default().durability(Durability::Written))
        .expect("producer");
    let start = Instant::now();
    for i in 0..records {
        let record = pool[i % pool.len()].clone();
        black_box(producer.send(TOPIC, record).expect("send"));
    }
    producer.flush().expect("flush");
    let elapsed = start.elapsed();
    producer.close().expect("close producer");
    drop(producer);
    let hw = log.partition(TOPIC, 0).expect("partition").high_watermark();
    assert_eq!(hw, records as u64, "every sent record is in the log");
    log.close().expect("close log");
    elapsed
}

/// Reads the W1 store in `dir` (topic `TOPIC`, partition 0, closed) back through a `Consumer`:
/// manual assignment from offset 0, `poll_batches` with one reused vector and up to 10,000
/// records per poll, touching every key and value as `scan` does. Opening the log and the
/// consumer is not timed. Returns the time to see `records` records.
pub fn timed_poll(dir: &Path, records: usize) -> Duration {
    let log = Log::open(dir).expect("open log");
    let mut consumer = log
        .consumer(ConsumerConfig::new("peers").max_poll_records(10_000))
        .expect("consumer");
    consumer.assign(&[(TOPIC, 0)]).expect("assign");
    consumer.seek(TOPIC, 0, 0).expect("seek");
    let mut out = Vec::new();
    let mut seen = 0usize;
    let mut bytes = 0usize;
    let start = Instant::now();
    while seen < records {
        consumer
            .poll_batches(Duration::from_secs(1), &mut out)
            .expect("poll");
        for batch in &out {
            for r in batch.batch.records() {
                let r = r.expect("valid record");
                bytes += r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len);
                seen += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    black_box(bytes);
    assert_eq!(seen, records, "every record came back once");
    drop(consumer);
    log.close().expect("close log");
    elapsed
}
