//! The event-store workload: the same events through annals' [`EventStore`] and through SQLite
//! used the way `postgres-es` / `cqrs-es` use a database, shared by the `compare` binary (its
//! "Event store" table).
//!
//! What each system does:
//!
//! - annals: `EventStore::open(&log, "es", EventStoreConfig::default().durability(d))` (one
//!   partition, default index memtable), `append(stream, Exact(v) | NoStream, &events)`,
//!   `read_stream(stream, 0, 100)`.
//! - SQLite (`rusqlite`, bundled), WAL, the `postgres-es` schema less `aggregate_type`:
//!   `events(aggregate_id TEXT, sequence INTEGER, event_type TEXT, payload BLOB, metadata BLOB,
//!   PRIMARY KEY (aggregate_id, sequence))` (a rowid table with a unique index, as a Postgres
//!   heap with its primary-key B-tree). An append is `postgres-es`' `insert_events`: one
//!   (immediate) transaction inserting every event with `sequence = expected + 1 + i`; a unique
//!   violation of the primary key is the conflict (`AggregateConflict`), so the expected
//!   version is checked by the index, with no extra `SELECT max(sequence)`. A read is its
//!   `select_events`: `SELECT sequence, event_type, payload, metadata FROM events WHERE
//!   aggregate_id = ?1 AND sequence >= ?2 ORDER BY sequence LIMIT ?3`, each row copied into an
//!   owned event (as annals returns owned `RecordedEvent`s; neither side parses the JSON).
//!
//! Durability: `Durability::Synced` ↔ `synchronous=FULL` (every commit fsyncs the WAL);
//! `Durability::Written` ↔ `synchronous=NORMAL` (WAL commits survive a process crash, not a
//! power loss: the WAL is fsynced only at checkpoints).
//!
//! Expected versions: each append needs the stream's current version. The driver keeps it in a
//! `HashMap<u32, u64>` (stream number → last version), for both systems, as a command handler
//! that has just loaded the aggregate would; neither store is asked for it inside the timed loop.
//!
//! Events: about 90-byte JSON payloads (`event_payload`), six event types, metadata `{}`; a
//! fresh `NewEvent` (annals: random UUID) is built per event inside the timed loop for annals,
//! and the same bytes are bound as parameters for SQLite.
//!
//! The store layout ([`build`]): `streams` streams of [`EVENTS_PER_STREAM`] events, each
//! written by one append (`NoStream`) in stream-number order (stream names are a scrambled
//! hex of the number, so SQLite's index sees them in random key order, as real ids arrive), plus
//! one [`TARGET_STREAM`] of [`TARGET_EVENTS`] events, appended 10 at a time at evenly spaced
//! points of the build, so its events lie in ten different places of the log / table, like a
//! long-lived aggregate's.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use annals::{Durability, EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent};
use bytes::Bytes;
use rusqlite::{Connection, ErrorCode};

use crate::common::Rng;

/// Events per append, and per ordinary stream in the built store.
pub const EVENTS_PER_STREAM: usize = 10;
/// The long stream `read_stream` reads.
pub const TARGET_STREAM: &str = "account-target";
/// Its length.
pub const TARGET_EVENTS: usize = 100;
/// Event store (and topic) name.
pub const STORE: &str = "es";
const EVENT_TYPES: [&str; 6] = [
    "AccountOpened",
    "MoneyDeposited",
    "MoneyWithdrawn",
    "AddressChanged",
    "LimitRaised",
    "CardIssued",
];
const PAYLOAD_LEN: usize = 90;
const METADATA: &[u8] = b"{}";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EsSystem {
    Annals,
    Sqlite,
}

pub const ES_SYSTEMS: [EsSystem; 2] = [EsSystem::Annals, EsSystem::Sqlite];

impl EsSystem {
    pub fn name(self) -> &'static str {
        match self {
            EsSystem::Annals => "annals",
            EsSystem::Sqlite => "sqlite",
        }
    }

    pub fn from_name(name: &str) -> Option<EsSystem> {
        ES_SYSTEMS.into_iter().find(|s| s.name() == name)
    }
}

/// The name of stream number `i`: a bijective scramble of `i`, in hex.
pub fn stream_name(i: u32) -> String {
    let mut z = u64::from(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("account-{z:016x}")
}

/// One event's type and payload: exactly [`PAYLOAD_LEN`] bytes of JSON.
#[derive(Clone)]
pub struct EventData {
    pub event_type: &'static str,
    pub payload: Bytes,
}

/// `n` distinct events (the pool the workloads cycle through).
pub fn event_pool(n: usize) -> Vec<EventData> {
    let mut rng = Rng(0x0DDB_1A5E_5BAD_5EED);
    (0..n)
        .map(|i| {
            let t = rng.below(EVENT_TYPES.len() as u64) as usize;
            let mut p = format!(
                r#"{{"amount":{},"ts":{},"by":"user-{:06}","ref":"{:x}","#,
                rng.below(100_000),
                1_700_000_000_000u64 + rng.below(86_400_000),
                rng.below(1_000_000),
                rng.next_u64() & 0xffff_ffff,
            )
            .into_bytes();
            p.extend_from_slice(b"\"n\":\"");
            while p.len() < PAYLOAD_LEN - 2 {
                p.push(b'a' + ((i + p.len()) % 26) as u8);
            }
            p.extend_from_slice(b"\"}");
            assert_eq!(p.len(), PAYLOAD_LEN);
            EventData {
                event_type: EVENT_TYPES[t],
                payload: Bytes::from(p),
            }
        })
        .collect()
}

/// An append that lost the optimistic-concurrency race.
#[derive(Debug)]
pub struct Conflict;

/// One system's store, opened in `dir`.
pub enum Store {
    Annals(Log, EventStore),
    Sqlite(Connection),
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (
    aggregate_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    metadata BLOB NOT NULL,
    PRIMARY KEY (aggregate_id, sequence))";
const INSERT: &str = "INSERT INTO events (aggregate_id, sequence, event_type, payload, metadata) \
                      VALUES (?1, ?2, ?3, ?4, ?5)";
const SELECT: &str = "SELECT sequence, event_type, payload, metadata FROM events \
                      WHERE aggregate_id = ?1 AND sequence >= ?2 ORDER BY sequence LIMIT ?3";

/// An event read back from SQLite, owned (the counterpart of annals' `RecordedEvent`).
pub struct SqlEvent {
    pub stream: String,
    pub version: u64,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub metadata: Vec<u8>,
}

impl Store {
    /// Opens (creating on first use) `system`'s store in `dir` with `durability`.
    pub fn open(system: EsSystem, dir: &Path, durability: Durability) -> Store {
        match system {
            EsSystem::Annals => {
                let log = Log::open(dir).expect("open log");
                let config = EventStoreConfig::default().durability(durability);
                let store = EventStore::open(&log, STORE, config).expect("open event store");
                Store::Annals(log, store)
            }
            EsSystem::Sqlite => {
                let conn = Connection::open(dir.join("events.sqlite")).expect("open sqlite");
                let mode: String = conn
                    .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                    .expect("journal_mode");
                assert_eq!(mode.to_ascii_lowercase(), "wal");
                let level = match durability {
                    Durability::Synced => "FULL",
                    _ => "NORMAL",
                };
                conn.execute_batch(&format!("PRAGMA synchronous={level}"))
                    .expect("synchronous");
                conn.busy_timeout(Duration::from_secs(60))
                    .expect("busy_timeout");
                conn.execute_batch(SCHEMA).expect("create table");
                Store::Sqlite(conn)
            }
        }
    }

    /// Appends `events` to `stream`, whose last version the caller believes is `expected`
    /// (`None`: the stream is new). Returns the stream's new last version.
    pub fn append(
        &self,
        stream: &str,
        expected: Option<u64>,
        events: &[EventData],
    ) -> Result<u64, Conflict> {
        match self {
            Store::Annals(_, store) => {
                let new: Vec<NewEvent> = events
                    .iter()
                    .map(|e| NewEvent::new(e.event_type, e.payload.clone()).metadata(METADATA))
                    .collect();
                let expected = expected.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                match store.append(stream, expected, &new) {
                    Ok(r) => Ok(r.next_version - 1),
                    Err(annals::Error::WrongExpectedVersion { .. }) => Err(Conflict),
                    Err(e) => panic!("append: {e}"),
                }
            }
            Store::Sqlite(conn) => {
                let first = expected.map_or(0, |v| v + 1);
                // Immediate: the write lock is taken up front, so concurrent writers wait
                // (busy_timeout) instead of failing to upgrade a read lock.
                conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                let mut stmt = conn.prepare_cached(INSERT).expect("prepare");
                for (i, e) in events.iter().enumerate() {
                    let r = stmt.execute((
                        stream,
                        (first + i as u64) as i64,
                        e.event_type,
                        &e.payload[..],
                        METADATA,
                    ));
                    match r {
                        Ok(_) => {}
                        Err(rusqlite::Error::SqliteFailure(f, _))
                            if f.code == ErrorCode::ConstraintViolation =>
                        {
                            drop(stmt);
                            conn.execute_batch("ROLLBACK").expect("rollback");
                            return Err(Conflict);
                        }
                        Err(e) => panic!("insert: {e}"),
                    }
                }
                drop(stmt);
                conn.execute_batch("COMMIT").expect("commit");
                Ok(first + events.len() as u64 - 1)
            }
        }
    }

    /// Reads up to `max` events of `stream` from version `from`; returns how many, having
    /// touched every payload.
    pub fn read_stream(&self, stream: &str, from: u64, max: usize) -> usize {
        match self {
            Store::Annals(_, store) => {
                let events = store.read_stream(stream, from, max).expect("read_stream");
                let bytes: usize = events.iter().map(|e| e.data.len()).sum();
                black_box(bytes);
                events.len()
            }
            Store::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(SELECT).expect("prepare");
                let events: Vec<SqlEvent> = stmt
                    .query_map((stream, from as i64, max as i64), |r| {
                        Ok(SqlEvent {
                            stream: stream.to_string(),
                            version: r.get::<_, i64>(0)? as u64,
                            event_type: r.get(1)?,
                            payload: r.get(2)?,
                            metadata: r.get(3)?,
                        })
                    })
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("rows");
                let bytes: usize = events
                    .iter()
                    .map(|e| e.payload.len() + e.metadata.len() + e.event_type.len())
                    .sum();
                black_box(bytes);
                black_box(events.last().map(|e| (e.version, e.stream.len())));
                events.len()
            }
        }
    }

    /// The stream's last version, asked of the store (for checks, untimed).
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        match self {
            Store::Annals(_, store) => store.stream_version(stream).expect("stream_version"),
            Store::Sqlite(conn) => conn
                .query_row(
                    "SELECT max(sequence) FROM events WHERE aggregate_id = ?1",
                    [stream],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .expect("max")
                .map(|v| v as u64),
        }
    }

    /// Closes the store cleanly (annals: flushes the index; SQLite: checkpoints the WAL).
    pub fn close(self) {
        match self {
            Store::Annals(log, store) => {
                store.close().expect("close event store");
                drop(store);
                log.close().expect("close log");
            }
            Store::Sqlite(conn) => {
                conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                    .expect("checkpoint");
            }
        }
    }
}

/// Builds the layout described in the module docs into the empty `dir` with `durability`:
/// `streams` appends of [`EVENTS_PER_STREAM`] events (`NoStream`), one transaction each, plus
/// the target stream's ten appends. Returns the time it took and the number of appends.
pub fn build(
    system: EsSystem,
    dir: &Path,
    streams: u32,
    durability: Durability,
) -> (Duration, u64) {
    let store = Store::open(system, dir, durability);
    let pool = event_pool(1000);
    let chunks = TARGET_EVENTS / EVENTS_PER_STREAM;
    let every = (streams as usize / chunks).max(1);
    let mut target_version = None;
    let mut appends = 0u64;
    let mut k = 0usize;
    let mut next_events = || {
        let start = k % (pool.len() - EVENTS_PER_STREAM);
        k += EVENTS_PER_STREAM;
        &pool[start..start + EVENTS_PER_STREAM]
    };
    let start = Instant::now();
    for i in 0..streams {
        if (i as usize).is_multiple_of(every) && (i as usize / every) < chunks {
            let v = store
                .append(TARGET_STREAM, target_version, next_events())
                .expect("no conflict in the build");
            target_version = Some(v);
            appends += 1;
        }
        store
            .append(&stream_name(i), None, next_events())
            .expect("no conflict in the build");
        appends += 1;
    }
    while target_version.is_none_or(|v| v + 1 < TARGET_EVENTS as u64) {
        let v = store
            .append(TARGET_STREAM, target_version, next_events())
            .expect("no conflict in the build");
        target_version = Some(v);
        appends += 1;
    }
    let elapsed = start.elapsed();
    assert_eq!(
        store.stream_version(TARGET_STREAM),
        Some(TARGET_EVENTS as u64 - 1)
    );
    store.close();
    (elapsed, appends)
}

/// Latencies of `samples` timed `read_stream(TARGET_STREAM, 0, 100)` calls on the built store in
/// `dir`, after `warmup` untimed ones (warm caches), sorted ascending.
pub fn timed_reads(system: EsSystem, dir: &Path, warmup: usize, samples: usize) -> Vec<Duration> {
    let store = Store::open(system, dir, Durability::Written);
    for _ in 0..warmup {
        assert_eq!(
            store.read_stream(TARGET_STREAM, 0, TARGET_EVENTS),
            TARGET_EVENTS
        );
    }
    let mut lat: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            let n = store.read_stream(TARGET_STREAM, 0, TARGET_EVENTS);
            let d = t.elapsed();
            assert_eq!(n, TARGET_EVENTS);
            d
        })
        .collect();
    lat.sort_unstable();
    drop(store);
    lat
}

/// The `q` quantile (0..=1) of sorted latencies.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Most writer threads of one append workload.
pub const MAX_THREADS: usize = 16;
/// Append workloads that run one after another on one built store, each on its own streams.
pub const LANES: usize = 3;

/// On the built store of `streams` streams in `dir`: `threads` writers (released together,
/// timed until the last finishes), each making `per_thread` appends of [`EVENTS_PER_STREAM`]
/// events to streams drawn at random from its own share of the ordinary streams, with
/// `Exact(current version)` from its driver-side map. The shares: stream numbers ≡ `lane ×
/// MAX_THREADS + thread` modulo `LANES × MAX_THREADS`, so writers never conflict and the
/// [`LANES`] append workloads run on one store each know their streams' versions (every
/// ordinary stream was built with version 9). Checks afterwards (untimed) that the store agrees
/// with a map and refuses a stale expected version. Returns the timed part.
pub fn timed_appends(
    system: EsSystem,
    dir: &Path,
    streams: u32,
    durability: Durability,
    lane: usize,
    threads: usize,
    per_thread: usize,
) -> Duration {
    assert!(lane < LANES && (1..=MAX_THREADS).contains(&threads));
    let store = Store::open(system, dir, durability);
    let pool = event_pool(1000);
    let stride = LANES * MAX_THREADS;
    let share = streams as usize / stride;
    assert!(share > 0, "at least one stream per writer");
    let initial = EVENTS_PER_STREAM as u64 - 1;
    let number = |t: usize, j: usize| (j * stride + lane * MAX_THREADS + t) as u32;
    // What each writer's command handler knows: the version of every stream of its share.
    let mut maps: Vec<HashMap<u32, u64>> = (0..threads)
        .map(|t| (0..share).map(|j| (number(t, j), initial)).collect())
        .collect();
    let writer = |t: usize, map: &mut HashMap<u32, u64>, store: &Store| {
        let mut rng = Rng(0x5EED_0000 + (lane * MAX_THREADS + t) as u64 * 7919 + 1);
        let mut k = t * 97;
        for _ in 0..per_thread {
            let n = number(t, rng.below(share as u64) as usize);
            let version = map.get_mut(&n).expect("a stream of this share");
            let start = k % (pool.len() - EVENTS_PER_STREAM);
            k += EVENTS_PER_STREAM;
            let events = &pool[start..start + EVENTS_PER_STREAM];
            *version = store
                .append(&stream_name(n), Some(*version), events)
                .expect("no other writer touches this stream");
        }
    };
    let elapsed = if threads == 1 {
        let start = Instant::now();
        writer(0, &mut maps[0], &store);
        start.elapsed()
    } else {
        // SQLite: a connection per thread (a `Connection` is not `Sync`); annals shares its
        // store handle.
        let stores: Vec<Store> = (0..threads)
            .map(|_| match &store {
                Store::Annals(log, s) => Store::Annals(log.clone(), s.clone()),
                Store::Sqlite(_) => Store::open(system, dir, durability),
            })
            .collect();
        let barrier = Barrier::new(threads + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = maps
                .iter_mut()
                .zip(stores)
                .enumerate()
                .map(|(t, (map, store))| {
                    let barrier = &barrier;
                    let writer = &writer;
                    s.spawn(move || {
                        barrier.wait();
                        writer(t, map, &store);
                        store
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let stores: Vec<Store> = handles
                .into_iter()
                .map(|h| h.join().expect("writer"))
                .collect();
            let elapsed = start.elapsed();
            drop(stores);
            elapsed
        })
    };
    // Untimed checks: the store holds what a map says, and a stale version is a conflict.
    let (&n, &v) = maps[0].iter().max_by_key(|(_, &v)| v).expect("a stream");
    let name = stream_name(n);
    assert_eq!(store.stream_version(&name), Some(v));
    if v > initial {
        assert!(
            store.append(&name, Some(initial), &pool[..1]).is_err(),
            "a stale expected version is a conflict"
        );
    }
    store.close();
    elapsed
}
