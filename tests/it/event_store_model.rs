//! The event store against a model, on a `SimStorage` log: random operations over a handful
//! of streams (appends with every kind of expected version, right and wrong, retries of
//! earlier appends with the same event ids, forward and backward reads with random bounds,
//! versions, soft deletes, truncations, tombstones, snapshots, compaction, index rebuilds),
//! interleaved with clean reopens and crashes (kill -9 and power loss, between operations or
//! in the middle of one, at a random storage operation). Every answer is compared with the
//! model: per stream the events ever appended (the version is the index), the version below
//! which they are deleted, whether the stream is tombstoned, and the snapshots saved.
//!
//! The index is made to work hard: 16 memtable entries (so tables are written and merged
//! every few appends) and, in most cases, a hasher under which streams collide (the length of
//! the name, or a constant); reopens may change the hasher, which must make the store rebuild
//! its tables.
//!
//! Durability is `Synced`: an operation that returned `Ok` must survive any crash. The one
//! operation a crash interrupts (it returns an I/O error) is uncertain: after the reopen the
//! model learns from the store whether it happened, and checks that it happened whole (an
//! append's events all or none).
//!
//! Below the model, regressions for what it (and reading the code beside it) found: a delete
//! and a stream's version lost under colliding hashes once a merged index table's run spans
//! blocks, a snapshot kept by a truncation but removed by compaction, and a retry acknowledged
//! under `Synced` without an fsync.
//!
//! Knobs: `ANNALS_ES_MODEL_CASES` (proptest cases, default 6), `ANNALS_ES_MODEL_OPS` (most
//! operations per case, default 60). proptest prints the shrunk failing sequence.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use annals::storage::{CrashMode, SimStorage};
use annals::{
    Durability, Error, EventPosition, EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent,
    RecordedEvent, Uuid,
};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::common::*;

const DIR: &str = "/sim/esmodel";
const STORE: &str = "es";
/// Three names of length 6 (colliding under the length hasher), one of 1 and one of 8.
const STREAMS: [&str; 5] = ["acct-1", "acct-2", "cart-9", "x", "order-77"];

/// Largest index table count seen, over all cases (the test checks tables were exercised).
static MAX_TABLES: AtomicUsize = AtomicUsize::new(0);
/// Most events a case appended.
static MAX_EVENTS: AtomicUsize = AtomicUsize::new(0);

/// What the cases exercised, printed at the end of each (see it with `--nocapture`).
struct Stats {
    written: AtomicUsize,
    deduplicated: AtomicUsize,
    wrong_version: AtomicUsize,
    deleted: AtomicUsize,
    metas: AtomicUsize,
    snapshots: AtomicUsize,
    crashes: AtomicUsize,
    crashes_inside: AtomicUsize,
    interrupted: AtomicUsize,
    interrupted_happened: AtomicUsize,
}

static STATS: Stats = Stats {
    written: AtomicUsize::new(0),
    deduplicated: AtomicUsize::new(0),
    wrong_version: AtomicUsize::new(0),
    deleted: AtomicUsize::new(0),
    metas: AtomicUsize::new(0),
    snapshots: AtomicUsize::new(0),
    crashes: AtomicUsize::new(0),
    crashes_inside: AtomicUsize::new(0),
    interrupted: AtomicUsize::new(0),
    interrupted_happened: AtomicUsize::new(0),
};

fn count(c: &AtomicUsize) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// An expected version, relative to the stream's state when the operation runs.
#[derive(Debug, Clone)]
enum Exp {
    Any,
    NoStream,
    StreamExists,
    /// `Exact(actual)`, or `NoStream` when the stream has no events: the right one.
    Right,
    /// `Exact(actual + d)` (0 when that is negative).
    Off(i8),
    Far(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: usize,
        exp: Exp,
        n: usize,
        seed: u64,
    },
    /// An earlier append's events again, with its expected version or another one.
    Retry {
        which: Index,
        exp: Option<Exp>,
    },
    Read {
        stream: usize,
        from: u16,
        max: usize,
    },
    ReadBack {
        stream: usize,
        from: Option<u16>,
        max: usize,
    },
    Version {
        stream: usize,
    },
    Delete {
        stream: usize,
        exp: Exp,
    },
    Tombstone {
        stream: usize,
        exp: Exp,
    },
    Truncate {
        stream: usize,
        before: u16,
    },
    SaveSnapshot {
        stream: usize,
        version: u16,
    },
    LoadSnapshot {
        stream: usize,
    },
    Load {
        stream: usize,
        accept: bool,
    },
    Maintenance,
    RebuildIndex,
    Reopen {
        hasher: u8,
    },
    /// A crash (0 kill -9, 1 power loss, 2 torn power loss), between operations or at the
    /// `at`-th storage operation of `during`, then a reopen with `hasher`.
    Crash {
        mode: u8,
        seed: u64,
        hasher: u8,
        during: Option<(u16, Box<Op>)>,
    },
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        2 => Just(Exp::Any),
        2 => Just(Exp::NoStream),
        2 => Just(Exp::StreamExists),
        7 => Just(Exp::Right),
        2 => (-3i8..=3).prop_map(Exp::Off),
        1 => (0u64..40).prop_map(Exp::Far),
    ]
}

fn max() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..=5,
        2 => 6usize..40,
        2 => Just(usize::MAX),
    ]
}

fn stream() -> impl Strategy<Value = usize> {
    0..STREAMS.len()
}

/// The operations on the store (what a crash can interrupt).
fn store_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (stream(), exp(), prop_oneof![12 => 1usize..=4, 3 => 20usize..=80], any::<u64>())
            .prop_map(|(stream, exp, n, seed)| Op::Append { stream, exp, n, seed }),
        8 => (any::<Index>(), proptest::option::of(exp()))
            .prop_map(|(which, exp)| Op::Retry { which, exp }),
        8 => (stream(), any::<u16>(), max())
            .prop_map(|(stream, from, max)| Op::Read { stream, from, max }),
        5 => (stream(), proptest::option::of(any::<u16>()), max())
            .prop_map(|(stream, from, max)| Op::ReadBack { stream, from, max }),
        3 => stream().prop_map(|stream| Op::Version { stream }),
        4 => (stream(), exp()).prop_map(|(stream, exp)| Op::Delete { stream, exp }),
        1 => (stream(), exp()).prop_map(|(stream, exp)| Op::Tombstone { stream, exp }),
        4 => (stream(), any::<u16>()).prop_map(|(stream, before)| Op::Truncate { stream, before }),
        6 => (stream(), any::<u16>())
            .prop_map(|(stream, version)| Op::SaveSnapshot { stream, version }),
        2 => stream().prop_map(|stream| Op::LoadSnapshot { stream }),
        2 => (stream(), any::<bool>()).prop_map(|(stream, accept)| Op::Load { stream, accept }),
        2 => Just(Op::Maintenance),
        1 => Just(Op::RebuildIndex),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        90 => store_op(),
        4 => (0u8..3).prop_map(|hasher| Op::Reopen { hasher }),
        2 => (0u8..3, any::<u64>(), 0u8..3)
            .prop_map(|(mode, seed, hasher)| Op::Crash { mode, seed, hasher, during: None }),
        8 => (0u8..3, any::<u64>(), 0u8..3, prop_oneof![2 => 0u16..4, 1 => 4u16..24], store_op()).prop_map(
            |(mode, seed, hasher, at, op)| Op::Crash {
                mode,
                seed,
                hasher,
                during: Some((at, Box::new(op))),
            }
        ),
    ]
}

/// An event as the model holds it.
#[derive(Debug, Clone)]
struct MEvent {
    id: Uuid,
    event_type: String,
    data: Bytes,
    metadata: Bytes,
    position: EventPosition,
    /// When the append ran; the timestamp, once a read showed it.
    ts_bounds: (i64, i64),
    ts: Option<i64>,
}

#[derive(Debug, Clone, Default)]
struct MStream {
    /// Every event ever appended: the version is the index.
    events: Vec<MEvent>,
    truncate_before: u64,
    tombstoned: bool,
    /// Snapshots in the order saved: (version, data).
    snapshots: Vec<(u64, Bytes)>,
}

impl MStream {
    fn next(&self) -> u64 {
        self.events.len() as u64
    }

    fn actual(&self) -> Option<u64> {
        (self.next() > self.truncate_before).then(|| self.next() - 1)
    }

    /// Versions still readable.
    fn live(&self) -> std::ops::Range<u64> {
        self.truncate_before.min(self.next())..self.next()
    }

    fn snapshot(&self) -> Option<(u64, Bytes)> {
        self.actual()?;
        self.snapshots
            .iter()
            .rev()
            .find(|(v, _)| *v >= self.truncate_before)
            .cloned()
    }
}

/// What an operation must answer.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Wrong {
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    Deleted,
    Invalid,
}

fn matches_error(want: &Want, stream: &str, e: &Error) -> bool {
    match (want, e) {
        (
            Want::Wrong { expected, actual },
            Error::WrongExpectedVersion {
                stream: s,
                expected: e,
                actual: a,
            },
        ) => s == stream && e == expected && a == actual,
        (Want::Deleted, Error::StreamDeleted { stream: s }) => s == stream,
        (Want::Invalid, Error::InvalidArgument(_)) => true,
        _ => false,
    }
}

/// An operation a crash interrupted: after the reopen the model asks whether it happened.
#[derive(Debug)]
enum Uncertain {
    Append {
        stream: usize,
        first: u64,
        events: Vec<Gen>,
        ts_bounds: (i64, i64),
    },
    Meta {
        stream: usize,
        truncate_before: u64,
        tombstoned: bool,
    },
    Snapshot {
        stream: usize,
        version: u64,
        data: Bytes,
    },
}

struct Harness {
    sim: Arc<SimStorage>,
    log: Option<Log>,
    store: Option<EventStore>,
    model: Vec<MStream>,
    /// Every append tried: (stream, expected version, events), for retries.
    appends: Vec<(usize, ExpectedVersion, Vec<Gen>)>,
    partitions: u32,
    segment_bytes: u64,
    snapshot_seq: u64,
    step: usize,
}

fn config(partitions: u32, segment_bytes: u64, hasher: u8) -> EventStoreConfig {
    let c = EventStoreConfig::default()
        .partitions(partitions)
        .segment_bytes(segment_bytes)
        .durability(Durability::Synced)
        .index_memtable_entries(16);
    match hasher {
        0 => c,
        1 => c.stream_hasher(|s| s.len() as u64),
        _ => c.stream_hasher(|_| 7),
    }
}

fn expected_of(exp: &Exp, actual: Option<u64>) -> ExpectedVersion {
    match exp {
        Exp::Any => ExpectedVersion::Any,
        Exp::NoStream => ExpectedVersion::NoStream,
        Exp::StreamExists => ExpectedVersion::StreamExists,
        Exp::Right => actual.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
        Exp::Off(d) => {
            ExpectedVersion::Exact((actual.map_or(0, |v| v as i64) + i64::from(*d)).max(0) as u64)
        }
        Exp::Far(v) => ExpectedVersion::Exact(*v),
    }
}

/// An event to append, with the data and metadata it holds (`NewEvent` keeps them private).
#[derive(Debug, Clone)]
struct Gen {
    event: NewEvent,
    data: Bytes,
    metadata: Bytes,
}

fn new_events(n: usize, seed: u64) -> Vec<Gen> {
    let mut rng = crate::common::Rng::new(seed);
    (0..n)
        .map(|i| {
            let len = rng.usize(0, 60);
            let data = rng.bytes(len);
            let metadata = if rng.chance(30) {
                let len = rng.usize(1, 20);
                rng.bytes(len)
            } else {
                Bytes::new()
            };
            let event = NewEvent::new(format!("T{}", rng.below(4)), data.clone())
                .id(Uuid::from_u64_pair(
                    rng.next_u64(),
                    rng.next_u64() ^ i as u64,
                ))
                .metadata(metadata.clone());
            Gen {
                event,
                data,
                metadata,
            }
        })
        .collect()
}

fn crash_mode(mode: u8, seed: u64) -> CrashMode {
    match mode {
        0 => CrashMode::ProcessKill,
        1 => CrashMode::PowerLossDropUnsynced,
        _ => CrashMode::PowerLossTorn { seed },
    }
}

/// Whether `r` failed because the process died under it.
fn failed<T>(r: &annals::Result<T>, flag: Option<&AtomicBool>) -> bool {
    r.is_err() && dead(flag)
}

fn dead(flag: Option<&AtomicBool>) -> bool {
    flag.is_some_and(|f| f.load(Ordering::SeqCst))
}

impl Harness {
    fn open(sim: &Arc<SimStorage>, partitions: u32, segment_bytes: u64, hasher: u8) -> Self {
        let mut h = Harness {
            sim: sim.clone(),
            log: None,
            store: None,
            model: vec![MStream::default(); STREAMS.len()],
            appends: Vec::new(),
            partitions,
            segment_bytes,
            snapshot_seq: 0,
            step: 0,
        };
        h.reopen_with(hasher);
        h
    }

    fn reopen_with(&mut self, hasher: u8) {
        let log = TestLog::sim(&self.sim, DIR)
            .no_maintenance()
            .try_open()
            .unwrap_or_else(|e| panic!("step {}: open the log: {e}", self.step));
        let store = EventStore::open(
            &log,
            STORE,
            config(self.partitions, self.segment_bytes, hasher),
        )
        .unwrap_or_else(|e| panic!("step {}: open the store: {e}", self.step));
        assert_eq!(store.partitions(), self.partitions);
        self.log = Some(log);
        self.store = Some(store);
    }

    fn store(&self) -> &EventStore {
        self.store.as_ref().expect("open store")
    }

    fn name(&self, s: usize) -> &'static str {
        STREAMS[s]
    }

    fn note_tables(&self) {
        let most = self.store().index_tables().into_iter().max().unwrap_or(0);
        MAX_TABLES.fetch_max(most, Ordering::Relaxed);
    }

    /// Compares `got` with the model's events at `versions`, in that order.
    /// For a tombstoned stream: checks that `got` is `StreamDeleted` and says so.
    fn refused_as_tombstoned<T: std::fmt::Debug>(
        &self,
        tombstoned: bool,
        got: &Result<T, Error>,
        what: &str,
    ) -> bool {
        if tombstoned {
            assert!(
                matches!(got, Err(Error::StreamDeleted { .. })),
                "step {}: {what}: {got:?}",
                self.step
            );
        }
        tombstoned
    }

    fn check_events(&mut self, s: usize, got: &[RecordedEvent], versions: &[u64], what: &str) {
        let name = self.name(s);
        let ctx = format!("step {}: {what} of {name:?}", self.step);
        let got_versions: Vec<u64> = got.iter().map(|e| e.version).collect();
        assert_eq!(got_versions, versions, "{ctx}: versions");
        for (e, &v) in got.iter().zip(versions) {
            let m = &mut self.model[s].events[v as usize];
            assert_eq!(e.stream, name, "{ctx}: stream of version {v}");
            assert_eq!(e.id, m.id, "{ctx}: id of version {v}");
            assert_eq!(e.event_type, m.event_type, "{ctx}: type of version {v}");
            assert_eq!(e.data, m.data, "{ctx}: data of version {v}");
            assert_eq!(e.metadata, m.metadata, "{ctx}: metadata of version {v}");
            assert_eq!(e.position, m.position, "{ctx}: position of version {v}");
            match m.ts {
                Some(ts) => assert_eq!(e.timestamp, ts, "{ctx}: timestamp of version {v}"),
                None => {
                    let (lo, hi) = m.ts_bounds;
                    assert!(
                        (lo..=hi).contains(&e.timestamp),
                        "{ctx}: timestamp {} of version {v} outside the append's [{lo}, {hi}]",
                        e.timestamp
                    );
                    m.ts = Some(e.timestamp);
                }
            }
        }
    }

    /// Everything the model knows, read back.
    fn check_all(&mut self) {
        for s in 0..STREAMS.len() {
            let name = self.name(s);
            let m = self.model[s].clone();
            let ctx = format!("step {}: full check of {name:?}", self.step);
            if m.tombstoned {
                for r in [
                    self.store().stream_version(name).map(|_| ()),
                    self.store().read_stream(name, 0, 10).map(|_| ()),
                    self.store()
                        .read_stream_backward(name, None, 10)
                        .map(|_| ()),
                    self.store().load_snapshot(name).map(|_| ()),
                ] {
                    assert!(
                        matches!(&r, Err(Error::StreamDeleted { stream }) if stream == name),
                        "{ctx}: tombstoned, got {r:?}"
                    );
                }
                continue;
            }
            let v = self.store().stream_version(name);
            assert_eq!(v.ok(), Some(m.actual()), "{ctx}: stream_version");
            let live: Vec<u64> = m.live().collect();
            let fwd = self.store().read_stream(name, 0, usize::MAX).unwrap();
            self.check_events(s, &fwd, &live, "read_stream(0, MAX)");
            let back = self
                .store()
                .read_stream_backward(name, None, usize::MAX)
                .unwrap();
            let rev: Vec<u64> = live.iter().rev().copied().collect();
            self.check_events(s, &back, &rev, "read_stream_backward(None, MAX)");
            let snap = self.store().load_snapshot(name).unwrap();
            assert_eq!(
                snap.map(|s| (s.version, s.data)),
                m.snapshot(),
                "{ctx}: load_snapshot"
            );
        }
        self.note_tables();
    }

    /// The result of an append, by the model: the error, the earlier append it is a retry of,
    /// or the first version it writes.
    fn predict_append(
        &self,
        s: usize,
        expected: ExpectedVersion,
        events: &[Gen],
    ) -> Result<Result<(u64, EventPosition), u64>, Want> {
        let m = &self.model[s];
        if m.tombstoned {
            return Err(Want::Deleted);
        }
        let n = events.len() as u64;
        let retry_first = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::Exact(v) if Some(v) != m.actual() => v.checked_add(1),
            ExpectedVersion::NoStream if m.actual().is_some() => Some(m.truncate_before),
            ExpectedVersion::StreamExists if m.next() >= n => Some(m.next() - n),
            _ => None,
        };
        if let Some(first) = retry_first {
            if first >= m.truncate_before && first + n <= m.next() {
                let same = m.events[first as usize..(first + n) as usize]
                    .iter()
                    .zip(events)
                    .all(|(m, e)| m.id == e.event.event_id());
                if same {
                    let last = &m.events[(first + n - 1) as usize];
                    return Ok(Ok((first + n, last.position)));
                }
            }
        }
        let admits = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => m.actual().is_none(),
            ExpectedVersion::StreamExists => m.actual().is_some(),
            ExpectedVersion::Exact(v) => m.actual() == Some(v),
        };
        if !admits {
            return Err(Want::Wrong {
                expected,
                actual: m.actual(),
            });
        }
        Ok(Err(m.next()))
    }

    fn push_events(
        &mut self,
        s: usize,
        events: &[Gen],
        positions: &[EventPosition],
        ts_bounds: (i64, i64),
        ts: Option<&[i64]>,
    ) {
        let name = self.name(s);
        let p = self.store().partition_of(name);
        for (i, (e, pos)) in events.iter().zip(positions).enumerate() {
            assert_eq!(
                pos.partition, p,
                "step {}: partition of {name:?}",
                self.step
            );
            self.model[s].events.push(MEvent {
                id: e.event.event_id(),
                event_type: e.event.event_type().to_string(),
                data: e.data.clone(),
                metadata: e.metadata.clone(),
                position: *pos,
                ts_bounds,
                ts: ts.map(|t| t[i]),
            });
        }
    }

    fn append(
        &mut self,
        s: usize,
        expected: ExpectedVersion,
        events: Vec<Gen>,
        dead_flag: Option<&AtomicBool>,
    ) -> Option<Uncertain> {
        let name = self.name(s);
        let ctx = format!(
            "step {}: append {} to {name:?} expecting {expected:?}",
            self.step,
            events.len()
        );
        self.appends.push((s, expected, events.clone()));
        let want = self.predict_append(s, expected, &events);
        let before = now_ms();
        let new: Vec<NewEvent> = events.iter().map(|g| g.event.clone()).collect();
        let got = self.store().append(name, expected, &new);
        let after = now_ms();
        let n = events.len() as u64;
        match (want, got) {
            (Ok(Err(first)), Ok(r)) => {
                assert_eq!(r.next_version, first + n, "{ctx}: next_version");
                // The batch is one run of offsets, after every event the partition had.
                let last = r.position.offset;
                assert!(last + 1 >= n, "{ctx}: position {last}");
                let p = self.store().partition_of(name);
                let newest = self
                    .model
                    .iter()
                    .flat_map(|m| &m.events)
                    .filter(|e| e.position.partition == p)
                    .map(|e| e.position.offset)
                    .max();
                assert!(
                    newest.is_none_or(|o| o < last + 1 - n),
                    "{ctx}: wrote at {} at or before the acknowledged offset {newest:?}",
                    last + 1 - n
                );
                let positions: Vec<EventPosition> = (0..n)
                    .map(|i| EventPosition {
                        partition: r.position.partition,
                        offset: last + 1 - n + i,
                    })
                    .collect();
                self.push_events(s, &events, &positions, (before, after), None);
                count(&STATS.written);
                None
            }
            (Ok(Ok((next, position))), Ok(r)) => {
                assert_eq!(
                    (r.next_version, r.position),
                    (next, position),
                    "{ctx}: a retry returns the first append's result"
                );
                count(&STATS.deduplicated);
                None
            }
            (Err(want), Err(e)) if matches_error(&want, name, &e) => {
                count(match want {
                    Want::Wrong { .. } => &STATS.wrong_version,
                    _ => &STATS.deleted,
                });
                None
            }
            (Ok(Err(first)), Err(_)) if dead(dead_flag) => Some(Uncertain::Append {
                stream: s,
                first,
                events,
                ts_bounds: (before, after),
            }),
            (_, Err(_)) if dead(dead_flag) => None,
            (want, got) => panic!("{ctx}: the model says {want:?}, the store {got:?}"),
        }
    }

    /// Deletes, tombstones and truncations: `change` is the new (truncate_before,
    /// tombstoned), or the error.
    fn change_meta(
        &mut self,
        s: usize,
        what: &str,
        want: Result<(u64, bool), Want>,
        got: annals::Result<()>,
        dead_flag: Option<&AtomicBool>,
    ) -> Option<Uncertain> {
        let name = self.name(s);
        let ctx = format!("step {}: {what} {name:?}", self.step);
        match (want, got) {
            (Ok((tb, tomb)), Ok(())) => {
                let m = &mut self.model[s];
                m.truncate_before = tb;
                m.tombstoned = tomb;
                count(&STATS.metas);
                None
            }
            (Err(want), Err(e)) if matches_error(&want, name, &e) => None,
            (Ok((tb, tomb)), Err(_)) if dead(dead_flag) => {
                let m = &self.model[s];
                if (tb, tomb) == (m.truncate_before, m.tombstoned) {
                    None
                } else {
                    Some(Uncertain::Meta {
                        stream: s,
                        truncate_before: tb,
                        tombstoned: tomb,
                    })
                }
            }
            (_, Err(_)) if dead(dead_flag) => None,
            (want, got) => panic!("{ctx}: the model says {want:?}, the store {got:?}"),
        }
    }

    fn apply(&mut self, op: &Op, dead_flag: Option<&AtomicBool>) -> Option<Uncertain> {
        match op {
            Op::Append {
                stream,
                exp,
                n,
                seed,
            } => {
                let expected = expected_of(exp, self.model[*stream].actual());
                self.append(*stream, expected, new_events(*n, *seed), dead_flag)
            }
            Op::Retry { which, exp } => {
                if self.appends.is_empty() {
                    return None;
                }
                let (s, original, events) = self.appends[which.index(self.appends.len())].clone();
                let expected = exp
                    .as_ref()
                    .map_or(original, |e| expected_of(e, self.model[s].actual()));
                self.append(s, expected, events, dead_flag)
            }
            Op::Read {
                stream: s,
                from,
                max,
            } => {
                let s = *s;
                let m = &self.model[s];
                let from = u64::from(*from) % (m.next() + 3);
                let got = self.store().read_stream(self.name(s), from, *max);
                if failed(&got, dead_flag) {
                    return None;
                }
                let what = format!("read_stream({from}, {max})");
                if self.refused_as_tombstoned(m.tombstoned, &got, &what) {
                    return None;
                }
                let want: Vec<u64> = m.live().filter(|v| *v >= from).take(*max).collect();
                self.check_events(s, &got.unwrap(), &want, &what);
                None
            }
            Op::ReadBack {
                stream: s,
                from,
                max,
            } => {
                let s = *s;
                let m = &self.model[s];
                let from = from.map(|f| u64::from(f) % (m.next() + 3));
                let got = self.store().read_stream_backward(self.name(s), from, *max);
                if failed(&got, dead_flag) {
                    return None;
                }
                let what = format!("read_stream_backward({from:?}, {max})");
                if self.refused_as_tombstoned(m.tombstoned, &got, &what) {
                    return None;
                }
                let want: Vec<u64> = m
                    .live()
                    .rev()
                    .filter(|v| from.is_none_or(|f| *v <= f))
                    .take(*max)
                    .collect();
                self.check_events(s, &got.unwrap(), &want, &what);
                None
            }
            Op::Version { stream: s } => {
                let m = &self.model[*s];
                let got = self.store().stream_version(self.name(*s));
                if failed(&got, dead_flag) {
                    return None;
                }
                if m.tombstoned {
                    assert!(
                        matches!(got, Err(Error::StreamDeleted { .. })),
                        "step {}: stream_version: {got:?}",
                        self.step
                    );
                } else {
                    assert_eq!(
                        got.ok(),
                        Some(m.actual()),
                        "step {}: stream_version of {:?}",
                        self.step,
                        self.name(*s)
                    );
                }
                None
            }
            Op::Delete { stream: s, exp } | Op::Tombstone { stream: s, exp } => {
                let s = *s;
                let tomb = matches!(op, Op::Tombstone { .. });
                let m = &self.model[s];
                let expected = expected_of(exp, m.actual());
                let admits = match expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NoStream => m.actual().is_none(),
                    ExpectedVersion::StreamExists => m.actual().is_some(),
                    ExpectedVersion::Exact(v) => m.actual() == Some(v),
                };
                let want = if m.tombstoned {
                    Err(Want::Deleted)
                } else if !admits {
                    Err(Want::Wrong {
                        expected,
                        actual: m.actual(),
                    })
                } else {
                    Ok((m.next(), tomb))
                };
                let name = self.name(s);
                let got = if tomb {
                    self.store().tombstone_stream(name, expected)
                } else {
                    self.store().delete_stream(name, expected)
                };
                let what = format!(
                    "{} expecting {expected:?}",
                    if tomb { "tombstone" } else { "delete" }
                );
                self.change_meta(s, &what, want, got, dead_flag)
            }
            Op::Truncate { stream: s, before } => {
                let s = *s;
                let m = &self.model[s];
                let before = u64::from(*before) % (m.next() + 3);
                let want = if m.tombstoned {
                    Err(Want::Deleted)
                } else {
                    Ok((m.truncate_before.max(before.min(m.next())), false))
                };
                let got = self.store().truncate_stream(self.name(s), before);
                self.change_meta(
                    s,
                    &format!("truncate before {before}"),
                    want,
                    got,
                    dead_flag,
                )
            }
            Op::SaveSnapshot { stream: s, version } => {
                let s = *s;
                let name = self.name(s);
                let m = &self.model[s];
                let version = u64::from(*version) % (m.next() + 2);
                self.snapshot_seq += 1;
                let data = Bytes::from(format!("snap-{}-{name}-{version}", self.snapshot_seq));
                let want = if m.tombstoned {
                    Err(Want::Deleted)
                } else if m.actual().is_none_or(|last| version > last)
                    || version < m.truncate_before
                {
                    Err(Want::Invalid)
                } else {
                    Ok(())
                };
                let ctx = format!("step {}: save_snapshot({name:?}, {version})", self.step);
                match (
                    want,
                    self.store().save_snapshot(name, version, data.clone()),
                ) {
                    (Ok(()), Ok(())) => {
                        self.model[s].snapshots.push((version, data));
                        count(&STATS.snapshots);
                        None
                    }
                    (Err(want), Err(e)) if matches_error(&want, name, &e) => None,
                    (Ok(()), Err(_)) if dead(dead_flag) => Some(Uncertain::Snapshot {
                        stream: s,
                        version,
                        data,
                    }),
                    (_, Err(_)) if dead(dead_flag) => None,
                    (want, got) => panic!("{ctx}: the model says {want:?}, the store {got:?}"),
                }
            }
            Op::LoadSnapshot { stream: s } => {
                let m = &self.model[*s];
                let got = self.store().load_snapshot(self.name(*s));
                if failed(&got, dead_flag) {
                    return None;
                }
                let ctx = format!("step {}: load_snapshot({:?})", self.step, self.name(*s));
                if m.tombstoned {
                    assert!(
                        matches!(got, Err(Error::StreamDeleted { .. })),
                        "{ctx}: {got:?}"
                    );
                } else {
                    let got = got.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert_eq!(got.map(|s| (s.version, s.data)), m.snapshot(), "{ctx}");
                }
                None
            }
            Op::Load { stream: s, accept } => {
                let s = *s;
                let m = self.model[s].clone();
                let got = self
                    .store()
                    .load(self.name(s), |snap| accept.then(|| snap.data.clone()));
                if failed(&got, dead_flag) {
                    return None;
                }
                let ctx = format!(
                    "step {}: load({:?}, accept {accept})",
                    self.step,
                    self.name(s)
                );
                if m.tombstoned {
                    assert!(
                        matches!(got, Err(Error::StreamDeleted { .. })),
                        "{ctx}: {got:?}"
                    );
                    return None;
                }
                let got = got.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let used = m.snapshot().filter(|_| *accept);
                assert_eq!(
                    got.state,
                    used.as_ref().map(|(_, d)| d.clone()),
                    "{ctx}: state"
                );
                assert_eq!(
                    got.snapshot_version,
                    used.as_ref().map(|(v, _)| *v),
                    "{ctx}: snapshot_version"
                );
                assert_eq!(got.version, m.actual(), "{ctx}: version");
                let from = used.map_or(0, |(v, _)| v + 1);
                let want: Vec<u64> = m.live().filter(|v| *v >= from).collect();
                self.check_events(s, &got.events, &want, "load");
                None
            }
            Op::Maintenance => {
                let r = self.log.as_ref().unwrap().run_maintenance();
                if !failed(&r, dead_flag) {
                    r.unwrap_or_else(|e| panic!("step {}: run_maintenance: {e}", self.step));
                }
                None
            }
            Op::RebuildIndex => {
                let r = self.store().rebuild_index();
                if !failed(&r, dead_flag) {
                    r.unwrap_or_else(|e| panic!("step {}: rebuild_index: {e}", self.step));
                }
                None
            }
            Op::Reopen { .. } | Op::Crash { .. } => unreachable!("not a store operation"),
        }
    }

    fn reopen_clean(&mut self, hasher: u8) {
        let store = self.store.take().unwrap();
        store
            .close()
            .unwrap_or_else(|e| panic!("step {}: close the store: {e}", self.step));
        assert!(matches!(store.stream_version("x"), Err(Error::Closed)));
        drop(store);
        self.log
            .take()
            .unwrap()
            .close()
            .unwrap_or_else(|e| panic!("step {}: close the log: {e}", self.step));
        self.reopen_with(hasher);
    }

    fn crash(&mut self, mode: CrashMode, hasher: u8, during: Option<&(u16, Box<Op>)>) {
        count(&STATS.crashes);
        let uncertain = match during {
            Some((at, op)) => {
                let flag = crash_at_operation_n(&self.sim, u64::from(*at), mode);
                let u = self.apply(op, Some(&flag));
                self.sim.clear_fault_hook();
                if flag.load(Ordering::SeqCst) {
                    count(&STATS.crashes_inside);
                }
                if !flag.load(Ordering::SeqCst) {
                    self.sim.crash(mode);
                }
                u
            }
            None => {
                self.sim.crash(mode);
                None
            }
        };
        // A dead process runs no destructors.
        std::mem::forget(self.store.take());
        std::mem::forget(self.log.take());
        self.reopen_with(hasher);
        if let Some(u) = uncertain {
            self.settle(u);
        }
    }

    /// Finds out whether the interrupted operation `u` happened, and whole.
    fn settle(&mut self, u: Uncertain) {
        let ctx = format!("step {}: after the crash, {u:?}", self.step);
        count(&STATS.interrupted);
        match u {
            Uncertain::Append {
                stream: s,
                first,
                events,
                ts_bounds,
            } => {
                let name = self.name(s);
                let got = self
                    .store()
                    .read_stream(name, first, events.len() + 5)
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                if got.is_empty() {
                    return;
                }
                let ids: Vec<Uuid> = got.iter().map(|e| e.id).collect();
                let want: Vec<Uuid> = events.iter().map(|g| g.event.event_id()).collect();
                assert_eq!(
                    ids, want,
                    "{ctx}: the interrupted append is there, but not whole"
                );
                let positions: Vec<EventPosition> = got.iter().map(|e| e.position).collect();
                let ts: Vec<i64> = got.iter().map(|e| e.timestamp).collect();
                self.push_events(s, &events, &positions, ts_bounds, Some(&ts));
                count(&STATS.interrupted_happened);
                let versions: Vec<u64> = (first..first + events.len() as u64).collect();
                self.check_events(s, &got, &versions, "the interrupted append");
            }
            Uncertain::Meta {
                stream: s,
                truncate_before,
                tombstoned,
            } => {
                let name = self.name(s);
                let m = &mut self.model[s];
                if tombstoned {
                    match self.store.as_ref().unwrap().stream_version(name) {
                        Err(Error::StreamDeleted { .. }) => {
                            m.truncate_before = truncate_before;
                            m.tombstoned = true;
                            count(&STATS.interrupted_happened);
                        }
                        Ok(_) => {}
                        Err(e) => panic!("{ctx}: {e}"),
                    }
                } else {
                    // The old state has a live event at its truncate_before; the new one not.
                    let first = self
                        .store
                        .as_ref()
                        .unwrap()
                        .read_stream(name, 0, 1)
                        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    if first.first().map(|e| e.version) != Some(m.truncate_before) {
                        m.truncate_before = truncate_before;
                        count(&STATS.interrupted_happened);
                    }
                }
            }
            Uncertain::Snapshot {
                stream: s,
                version,
                data,
            } => {
                let got = self
                    .store()
                    .load_snapshot(self.name(s))
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                if got.is_some_and(|g| g.version == version && g.data == data) {
                    self.model[s].snapshots.push((version, data));
                    count(&STATS.interrupted_happened);
                }
            }
        }
    }

    fn run(&mut self, ops: &[Op]) {
        for (i, op) in ops.iter().enumerate() {
            self.step = i;
            match op {
                Op::Reopen { hasher } => {
                    self.reopen_clean(*hasher);
                    self.check_all();
                }
                Op::Crash {
                    mode,
                    seed,
                    hasher,
                    during,
                } => {
                    self.crash(crash_mode(*mode, *seed), *hasher, during.as_ref());
                    self.check_all();
                }
                op => {
                    let u = self.apply(op, None);
                    assert!(u.is_none());
                }
            }
            if i % 16 == 15 {
                self.check_all();
            }
        }
        self.step = ops.len();
        self.check_all();
        // Appends continue where the model says, and a store rebuilt from the log agrees.
        for s in 0..STREAMS.len() {
            if !self.model[s].tombstoned {
                let expected = expected_of(&Exp::Right, self.model[s].actual());
                let u = self.append(s, expected, new_events(2, 1_000_003 + s as u64), None);
                assert!(u.is_none());
            }
        }
        self.store().rebuild_index().unwrap();
        self.check_all();
        self.reopen_clean(1);
        self.check_all();
        let store = self.store.take().unwrap();
        store.close().unwrap();
        drop(store);
        self.log.take().unwrap().close().unwrap();
    }
}

fn cases() -> u32 {
    env_usize("ANNALS_ES_MODEL_CASES", 6) as u32
}

fn max_ops() -> usize {
    env_usize("ANNALS_ES_MODEL_OPS", 60)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn event_store_matches_its_model(
        partitions in 1u32..=3,
        segment_bytes in prop_oneof![1024u64..4096, Just(1u64 << 20)],
        hasher in prop_oneof![1 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
        ops in proptest::collection::vec(op(), 1..max_ops()),
    ) {
        let sim = SimStorage::new();
        let mut h = Harness::open(&sim, partitions, segment_bytes, hasher);
        h.run(&ops);
        MAX_EVENTS.fetch_max(h.model.iter().map(|m| m.events.len()).sum(), Ordering::Relaxed);
        let c = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        eprintln!(
            "event store model so far: {} appends written, {} retries deduplicated, {} wrong \
             versions, {} on tombstoned streams, {} deletes, {} snapshots, {} crashes ({} inside \
             an operation), {} interrupted operations ({} happened), at most {} index tables, at most {} events in a case",
            c(&STATS.written), c(&STATS.deduplicated), c(&STATS.wrong_version),
            c(&STATS.deleted), c(&STATS.metas), c(&STATS.snapshots), c(&STATS.crashes), c(&STATS.crashes_inside),
            c(&STATS.interrupted), c(&STATS.interrupted_happened), c(&MAX_TABLES), c(&MAX_EVENTS)
        );
    }
}

#[test]
fn the_model_exercised_index_tables() {
    // Runs after (or beside) the model in the same binary only by chance, so it drives one
    // fixed sequence itself: enough appends to flush and merge tables.
    let sim = SimStorage::new();
    let mut h = Harness::open(&sim, 1, 1024, 1);
    let mut ops = Vec::new();
    for i in 0..80u64 {
        ops.push(Op::Append {
            stream: (i % 5) as usize,
            exp: Exp::Right,
            n: 1 + (i % 3) as usize,
            seed: i,
        });
        if i % 20 == 19 {
            ops.push(Op::Crash {
                mode: 1,
                seed: i,
                hasher: 1,
                during: None,
            });
        }
    }
    h.run(&ops);
    assert!(
        MAX_TABLES.load(Ordering::Relaxed) >= 2,
        "the index never had two tables"
    );
}

/// An event with `i` in its data.
fn event(i: u64) -> NewEvent {
    NewEvent::new("E", format!("event-{i}"))
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

/// A stream's delete must hold however many other streams share its hash. Here 140 streams of
/// the same length (the hasher is the length) are tombstoned after `a000` was soft-deleted, so
/// a merged index table holds `a000`'s metadata entry in an earlier block than the last block
/// of the hash's run (the only block `StreamIndex::latest` reads); then `a000` is written
/// again, and its new event, found in the memtable, settles its state without its metadata.
#[test]
fn a_delete_holds_when_colliding_streams_fill_the_index_block() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    let config = EventStoreConfig::default()
        .index_memtable_entries(16)
        .stream_hasher(|s| s.len() as u64);
    let store = EventStore::open(&log, STORE, config).unwrap();
    let a = "a000";
    store
        .append(
            a,
            ExpectedVersion::NoStream,
            &[event(0), event(1), event(2)],
        )
        .unwrap();
    store.delete_stream(a, ExpectedVersion::Exact(2)).unwrap();
    // 140 metadata entries of the same hash after a000's, and appends of another length to
    // flush the memtable (only appends do) 17 times: the first 16 tables merge into one.
    let filler: Vec<NewEvent> = (0..8).map(event).collect();
    for i in 1..=140 {
        store
            .tombstone_stream(&format!("b{i:03}"), ExpectedVersion::Any)
            .unwrap();
        if i % 10 == 0 {
            store.append("zz", ExpectedVersion::Any, &filler).unwrap();
        }
    }
    for _ in 0..6 {
        store.append("zz", ExpectedVersion::Any, &filler).unwrap();
    }
    assert!(
        store.index_tables()[0] >= 1,
        "no index table: {:?}",
        store.index_tables()
    );
    assert_eq!(store.stream_version(a).unwrap(), None);
    let r = store
        .append(a, ExpectedVersion::NoStream, &[event(3)])
        .unwrap();
    assert_eq!(r.next_version, 4, "versions continue after a soft delete");
    assert_eq!(store.stream_version(a).unwrap(), Some(3));
    assert_eq!(
        versions(&store.read_stream(a, 0, 10).unwrap()),
        [3],
        "the deleted versions 0-2 of {a:?} read again (index tables {:?})",
        store.index_tables()
    );
    assert_eq!(
        versions(&store.read_stream_backward(a, None, 10).unwrap()),
        [3]
    );
}

/// Truncating a stream keeps the events from `before` on, and with them a snapshot taken at
/// one of those versions: `load_snapshot` says so right after the truncation. Compaction must
/// not change that answer.
#[test]
fn a_snapshot_kept_by_a_truncation_survives_compaction() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    let config = EventStoreConfig::default().segment_bytes(1024);
    let store = EventStore::open(&log, STORE, config).unwrap();
    let events: Vec<NewEvent> = (0..10).map(event).collect();
    store
        .append("s", ExpectedVersion::NoStream, &events)
        .unwrap();
    store.save_snapshot("s", 7, "state at 7").unwrap();
    store.truncate_stream("s", 3).unwrap();
    let before = store.load_snapshot("s").unwrap().map(|s| s.version);
    assert_eq!(before, Some(7), "the truncation kept version 7");
    // Other snapshots roll the snapshots topic's segments, so the cleaner can reach "s".
    store
        .append("t", ExpectedVersion::NoStream, &[event(0)])
        .unwrap();
    for i in 0..40 {
        store
            .save_snapshot("t", 0, format!("{i}-{}", "x".repeat(100)))
            .unwrap();
    }
    log.run_maintenance().unwrap();
    let after = store.load_snapshot("s").unwrap().map(|s| s.version);
    assert_eq!(
        after, before,
        "load_snapshot changed its answer across a compaction"
    );
    assert_eq!(
        versions(&store.read_stream("s", 0, 100).unwrap()),
        (3..10).collect::<Vec<_>>()
    );
}

/// A retry that finds its events already written acknowledges them: under
/// `Durability::Synced` they must then be on stable storage, even when the first attempt
/// failed in its fsync (so they were written but never synced).
#[test]
fn a_retry_acknowledges_only_synced_events() {
    use annals::storage::SimOpKind;
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    let store = EventStore::open(&log, STORE, EventStoreConfig::default()).unwrap();
    store
        .append("s", ExpectedVersion::NoStream, &[event(0)])
        .unwrap();
    let e1 = event(1);
    sim.fail_when(SimOpKind::SyncData, "", std::io::ErrorKind::Other);
    let first = store.append("s", ExpectedVersion::Exact(0), std::slice::from_ref(&e1));
    sim.clear_fault_hook();
    assert!(first.is_err(), "the fsync failed: {first:?}");
    let retry = store.append("s", ExpectedVersion::Exact(0), std::slice::from_ref(&e1));
    if let Ok(r) = retry {
        // Acknowledged: it must survive a power loss.
        assert_eq!(r.next_version, 2);
        sim.crash(CrashMode::PowerLossDropUnsynced);
        std::mem::forget(store);
        std::mem::forget(log);
        let log = TestLog::sim(&sim, DIR).no_maintenance().open();
        let store = EventStore::open(&log, STORE, EventStoreConfig::default()).unwrap();
        let ids: Vec<Uuid> = store
            .read_stream("s", 0, 10)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert!(
            ids.contains(&e1.event_id()),
            "the retry returned Ok({r:?}) under Durability::Synced, but its event was never \
             fsynced and a power loss took it: the stream has {} events",
            ids.len()
        );
    }
}

/// A stream's version must not go back however many other streams share its hash. `A1` and
/// `B1` collide (the hasher is the length). An older index table ends with `A1`'s version 3;
/// a newer one holds `A1`'s versions 4-10 early in the hash's run and 300 events of `B1` after
/// them, so the last block of that run (what `StreamIndex::latest` reads of a table) holds
/// only `B1`'s entries. The newest verified `A1` entry the store then sees is version 3.
#[test]
fn a_stream_version_holds_when_a_colliding_stream_fills_the_index_block() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    let config = EventStoreConfig::default()
        .index_memtable_entries(16)
        .stream_hasher(|s| s.len() as u64);
    let store = EventStore::open(&log, STORE, config).unwrap();
    let batch = |from: u64, n: u64| -> Vec<NewEvent> { (from..from + n).map(event).collect() };
    store
        .append("A1", ExpectedVersion::NoStream, &batch(0, 4))
        .unwrap();
    store
        .append("B1", ExpectedVersion::NoStream, &batch(0, 3))
        .unwrap();
    // Flushes of the memtable until they have merged into one table holding all of the above
    // (16 flushes make one table of level 2; a write flushes a full memtable before it writes).
    for _ in 0..64 {
        store
            .append("zzz", ExpectedVersion::Any, &batch(0, 16))
            .unwrap();
        if store.index_tables() == [1] {
            break;
        }
    }
    assert_eq!(store.index_tables(), [1], "the first 16 tables merged");
    store
        .append("A1", ExpectedVersion::Exact(3), &batch(4, 7))
        .unwrap();
    let mut b = 2;
    for _ in 0..15 {
        store
            .append("B1", ExpectedVersion::Exact(b), &batch(b + 1, 20))
            .unwrap();
        b += 20;
    }
    store
        .append("zzz", ExpectedVersion::Any, &batch(0, 16))
        .unwrap();
    assert_eq!(store.index_tables(), [2], "the next 16 tables merged");
    let version = store.stream_version("A1").unwrap();
    // With the version wrong, an append expecting a stale version would be admitted and write
    // a second event 4.
    let stale = store.append("A1", ExpectedVersion::Exact(3), &[event(99)]);
    let read = versions(&store.read_stream("A1", 0, 100).unwrap());
    assert!(
        version == Some(10)
            && matches!(
                stale,
                Err(Error::WrongExpectedVersion {
                    actual: Some(10),
                    ..
                })
            )
            && read == (0..=10).collect::<Vec<_>>(),
        "A1 has versions 0-10, but stream_version says {version:?}, an append expecting \
         version 3 got {stale:?}, and read_stream returns versions {read:?}"
    );
}
