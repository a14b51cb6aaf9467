//! `EventStore` through its public API: expected versions, idempotent retries, reads, deletes
//! (and compaction after them), snapshots, forced hash collisions, reopening (with merged,
//! rehashed and damaged index tables), racing appenders, subscriptions and bad input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{
    Checkpoint, Durability, Error, EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent,
    Position, RecordedEvent, StreamPosition, TopicConfig, Uuid,
};
use bytes::Bytes;

use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Helpers

fn open_log(dir: &Path) -> Log {
    Log::builder(dir)
        .maintenance_interval(None)
        .open()
        .expect("open the log")
}

/// The configuration most tests use: `Written` keeps them off fsync (durability is not what
/// they test).
fn written() -> EventStoreConfig {
    EventStoreConfig::default().durability(Durability::Written)
}

fn ev(event_type: &str, data: impl Into<String>) -> NewEvent {
    NewEvent::new(event_type, data.into())
}

/// An event with a chosen id.
fn ev_id(n: u128, data: &str) -> NewEvent {
    NewEvent::new("E", data.to_string()).id(Uuid::from_u128(n))
}

/// `(expected, actual)` of a `WrongExpectedVersion` for `stream`; panics on anything else.
#[track_caller]
fn wrong<T: std::fmt::Debug>(r: annals::Result<T>, stream: &str) -> (ExpectedVersion, Option<u64>) {
    match r {
        Err(Error::WrongExpectedVersion {
            stream: s,
            expected,
            actual,
        }) => {
            assert_eq!(s, stream, "the error names the stream");
            (expected, actual)
        }
        other => panic!("expected WrongExpectedVersion for {stream:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_deleted<T: std::fmt::Debug>(r: annals::Result<T>, stream: &str, what: &str) {
    match r {
        Err(Error::StreamDeleted { stream: s }) => assert_eq!(s, stream, "{what}"),
        other => panic!("{what}: expected StreamDeleted for {stream:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid_argument<T: std::fmt::Debug>(r: annals::Result<T>, what: &str) {
    match r {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

#[track_caller]
fn assert_closed<T: std::fmt::Debug>(r: annals::Result<T>, what: &str) {
    match r {
        Err(Error::Closed) => {}
        other => panic!("{what}: expected Closed, got {other:?}"),
    }
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.id).collect()
}

/// What the store must say about each stream: its live events (version, id, data) and its
/// next version.
#[derive(Debug, Default, Clone)]
struct StreamModel {
    events: Vec<(u64, Uuid, Bytes)>,
    next_version: u64,
}

impl StreamModel {
    fn last(&self) -> Option<u64> {
        self.events.last().map(|e| e.0)
    }

    fn append(&mut self, events: &[NewEvent], data: &[String]) {
        for (e, d) in events.iter().zip(data) {
            self.events
                .push((self.next_version, e.event_id(), Bytes::from(d.clone())));
            self.next_version += 1;
        }
    }

    fn delete(&mut self) {
        self.events.clear();
    }

    fn truncate(&mut self, before: u64) {
        self.events.retain(|e| e.0 >= before);
    }
}

type Model = BTreeMap<String, StreamModel>;

/// Appends `n` fresh events to `stream` with `Exact`/`NoStream` from the model, and records them.
fn append_n(store: &EventStore, model: &mut Model, stream: &str, n: usize) {
    let m = model.entry(stream.to_string()).or_default();
    let data: Vec<String> = (0..n)
        .map(|i| format!("{stream}#{}", m.next_version + i as u64))
        .collect();
    let events: Vec<NewEvent> = data.iter().map(|d| ev("E", d.clone())).collect();
    let expected = m
        .last()
        .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    let r = store
        .append(stream, expected, &events)
        .unwrap_or_else(|e| panic!("append {n} to {stream:?} at {expected:?}: {e}"));
    assert_eq!(
        r.next_version,
        m.next_version + n as u64,
        "{stream}: next_version"
    );
    m.append(&events, &data);
}

/// Checks every stream of the model: forward and backward reads of everything, a few windows,
/// and `stream_version`.
#[track_caller]
fn check_model(store: &EventStore, model: &Model, ctx: &str) {
    for (stream, m) in model {
        let version = store
            .stream_version(stream)
            .unwrap_or_else(|e| panic!("{ctx}: stream_version({stream:?}): {e}"));
        assert_eq!(version, m.last(), "{ctx}: stream_version({stream:?})");
        let all = store
            .read_stream(stream, 0, usize::MAX)
            .unwrap_or_else(|e| panic!("{ctx}: read_stream({stream:?}): {e}"));
        let got: Vec<(u64, Uuid, Bytes)> = all
            .iter()
            .map(|e| (e.version, e.id, e.data.clone()))
            .collect();
        assert_eq!(got, m.events, "{ctx}: read_stream({stream:?}, 0, MAX)");
        for e in &all {
            assert_eq!(&e.stream, stream, "{ctx}");
            assert_eq!(
                e.position.partition,
                store.partition_of(stream),
                "{ctx}: {stream:?} lives in one partition"
            );
        }
        let mut back = store
            .read_stream_backward(stream, None, usize::MAX)
            .unwrap_or_else(|e| panic!("{ctx}: read_stream_backward({stream:?}): {e}"));
        back.reverse();
        assert_eq!(back, all, "{ctx}: backward read of {stream:?}");
        if let Some(&(first, _, _)) = m.events.first() {
            let mid = first + (m.events.len() as u64) / 2;
            let window = store.read_stream(stream, mid, 3).unwrap();
            let want: Vec<u64> = m
                .events
                .iter()
                .map(|e| e.0)
                .filter(|v| *v >= mid)
                .take(3)
                .collect();
            assert_eq!(
                versions(&window),
                want,
                "{ctx}: {stream:?} from {mid} max 3"
            );
        }
    }
}

fn table_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "estable") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Expected versions

#[test]
fn every_expected_version_succeeds_and_conflicts_with_the_actual_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "ev", written()).unwrap();
    let p = log.partition("ev", 0).unwrap();

    // NoStream: on a new stream, then a conflict.
    let r = store
        .append(
            "a",
            ExpectedVersion::NoStream,
            &[ev("A", "0"), ev("A", "1")],
        )
        .unwrap();
    assert_eq!(r.next_version, 2);
    assert_eq!(r.position.partition, 0);
    assert_eq!(r.position.offset, 1, "the last event's offset");
    let hw = p.high_watermark();
    assert_eq!(
        wrong(
            store.append("a", ExpectedVersion::NoStream, &[ev("A", "x")]),
            "a"
        ),
        (ExpectedVersion::NoStream, Some(1))
    );
    assert_eq!(p.high_watermark(), hw, "a conflict writes nothing");

    // StreamExists: conflict on a new stream, success on an existing one.
    assert_eq!(
        wrong(
            store.append("b", ExpectedVersion::StreamExists, &[ev("B", "x")]),
            "b"
        ),
        (ExpectedVersion::StreamExists, None)
    );
    let r = store
        .append("a", ExpectedVersion::StreamExists, &[ev("A", "2")])
        .unwrap();
    assert_eq!(r.next_version, 3);

    // Exact: success at the last version, conflicts below, above, and on a new stream.
    let r = store
        .append(
            "a",
            ExpectedVersion::Exact(2),
            &[ev("A", "3"), ev("A", "4"), ev("A", "5")],
        )
        .unwrap();
    assert_eq!(r.next_version, 6);
    for v in [0, 4, 6, 100] {
        assert_eq!(
            wrong(
                store.append("a", ExpectedVersion::Exact(v), &[ev("A", "x")]),
                "a"
            ),
            (ExpectedVersion::Exact(v), Some(5)),
            "Exact({v})"
        );
    }
    assert_eq!(
        wrong(
            store.append("b", ExpectedVersion::Exact(0), &[ev("B", "x")]),
            "b"
        ),
        (ExpectedVersion::Exact(0), None)
    );
    let err = store
        .append("a", ExpectedVersion::Exact(1), &[ev("A", "x")])
        .unwrap_err();
    assert!(err.to_string().contains("\"a\""), "{err}");

    // Any: on a new stream and an existing one.
    let r = store
        .append("b", ExpectedVersion::Any, &[ev("B", "0")])
        .unwrap();
    assert_eq!(r.next_version, 1);
    let r = store
        .append("a", ExpectedVersion::Any, &[ev("A", "6")])
        .unwrap();
    assert_eq!(r.next_version, 7);
    assert_eq!(store.stream_version("a").unwrap(), Some(6));
    assert_eq!(store.stream_version("b").unwrap(), Some(0));
    assert_eq!(store.stream_version("never").unwrap(), None);

    // Versions from 0, contiguous, with the data in order.
    let a = store.read_stream("a", 0, 100).unwrap();
    assert_eq!(versions(&a), (0..7).collect::<Vec<_>>());
    let data: Vec<&str> = a.iter().map(|e| e.data_str().unwrap()).collect();
    assert_eq!(data, ["0", "1", "2", "3", "4", "5", "6"]);
    assert!(a
        .iter()
        .all(|e| e.event_type == "A" && e.metadata.is_empty()));

    // One append is one batch: its events have consecutive offsets, in one batch, and the
    // result's position is the last one's.
    let r = store
        .append(
            "c",
            ExpectedVersion::NoStream,
            &[
                ev("C", "0").metadata("m0"),
                ev("C", "1"),
                ev("C", "2").metadata("m2"),
            ],
        )
        .unwrap();
    let c = store.read_stream("c", 0, 10).unwrap();
    let offsets: Vec<u64> = c.iter().map(|e| e.position.offset).collect();
    assert_eq!(offsets, [offsets[0], offsets[0] + 1, offsets[0] + 2]);
    assert_eq!(r.position, c[2].position);
    assert_eq!(&c[0].metadata[..], b"m0");
    assert!(c[1].metadata.is_empty());
    let mut batches = Vec::new();
    p.read_batches(offsets[0], 1 << 20, &mut batches).unwrap();
    let h = batches[0].header();
    assert_eq!(
        (h.base_offset, h.record_count),
        (offsets[0], 3),
        "the append's events are one batch"
    );
    // The raw records are the events, keyed by stream and version.
    let raw = p.read(offsets[0], 1 << 20).unwrap();
    let keys: Vec<&[u8]> = raw
        .iter()
        .take(3)
        .map(|r| r.key.as_deref().unwrap())
        .collect();
    assert_eq!(keys, [&b"c@0"[..], b"c@1", b"c@2"]);
    // Every append so far, one batch each: 2 + 1 + 3 + 1 + 1 + 3 events.
    assert_eq!(p.high_watermark(), 11);
}

// ---------------------------------------------------------------------------------------------
// 2. Idempotent retries

#[test]
fn retried_appends_return_the_first_result_and_write_nothing_except_with_any() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "idem", written()).unwrap();
    let p = log.partition("idem", 0).unwrap();
    let s = "order-1";

    let first = [ev_id(1, "a"), ev_id(2, "b")];
    let r1 = store.append(s, ExpectedVersion::NoStream, &first).unwrap();
    let hw = p.high_watermark();
    assert_eq!(
        store.append(s, ExpectedVersion::NoStream, &first).unwrap(),
        r1,
        "NoStream retry"
    );
    assert_eq!(p.high_watermark(), hw, "a NoStream retry writes nothing");

    let second = [ev_id(3, "c")];
    let r2 = store.append(s, ExpectedVersion::Exact(1), &second).unwrap();
    assert_eq!(r2.next_version, 3);
    let hw = p.high_watermark();
    assert_eq!(
        store.append(s, ExpectedVersion::Exact(1), &second).unwrap(),
        r2,
        "Exact retry"
    );
    assert_eq!(p.high_watermark(), hw, "an Exact retry writes nothing");

    let third = [ev_id(4, "d"), ev_id(5, "e")];
    let r3 = store
        .append(s, ExpectedVersion::StreamExists, &third)
        .unwrap();
    assert_eq!(r3.next_version, 5);
    let hw = p.high_watermark();
    assert_eq!(
        store
            .append(s, ExpectedVersion::StreamExists, &third)
            .unwrap(),
        r3,
        "StreamExists retry"
    );
    assert_eq!(
        p.high_watermark(),
        hw,
        "a StreamExists retry writes nothing"
    );

    // Late retries of the earlier appends still find them.
    assert_eq!(
        store.append(s, ExpectedVersion::NoStream, &first).unwrap(),
        r1
    );
    assert_eq!(
        store.append(s, ExpectedVersion::Exact(1), &second).unwrap(),
        r2
    );
    assert_eq!(p.high_watermark(), hw);

    // Other ids with the same stale expectation are a conflict, not a retry.
    assert_eq!(
        wrong(
            store.append(s, ExpectedVersion::Exact(1), &[ev_id(99, "z")]),
            s
        ),
        (ExpectedVersion::Exact(1), Some(4))
    );
    assert_eq!(
        wrong(
            store.append(
                s,
                ExpectedVersion::NoStream,
                &[ev_id(2, "b"), ev_id(1, "a")]
            ),
            s
        ),
        (ExpectedVersion::NoStream, Some(4)),
        "the same ids in another order are not a retry"
    );
    assert_eq!(p.high_watermark(), hw);

    // Any writes them again.
    let r4 = store.append(s, ExpectedVersion::Any, &third).unwrap();
    assert_eq!(r4.next_version, 7);
    assert_eq!(p.high_watermark(), hw + 2, "Any does not deduplicate");
    let all = store.read_stream(s, 0, 100).unwrap();
    assert_eq!(
        ids(&all),
        [1, 2, 3, 4, 5, 4, 5].map(Uuid::from_u128).to_vec()
    );
    assert_eq!(versions(&all), (0..7).collect::<Vec<_>>());

    // And a retry survives a reopen of the store (the ids are in the log, not in memory).
    store.close().unwrap();
    drop(store);
    let store = EventStore::open(&log, "idem", written()).unwrap();
    let hw = p.high_watermark();
    assert_eq!(
        store.append(s, ExpectedVersion::Exact(1), &second).unwrap(),
        r2
    );
    assert_eq!(p.high_watermark(), hw);
}

// ---------------------------------------------------------------------------------------------
// 3. Reads

#[test]
fn reads_forward_and_backward_over_interleaved_streams() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "reads", written()).unwrap();
    let mut model = Model::new();
    let mut rng = Rng::new(base_seed());
    let streams: Vec<String> = (0..6).map(|i| format!("s-{i}")).collect();
    for _ in 0..120 {
        let s = rng.pick(&streams).clone();
        let n = rng.usize(1, 4);
        append_n(&store, &mut model, &s, n);
    }
    check_model(&store, &model, "interleaved");

    for (s, m) in &model {
        let last = m.last().unwrap();
        let n = m.events.len() as u64;
        assert_eq!(last + 1, n, "{s}: contiguous from 0");
        for (from, max) in [(0, 1), (0, 5), (3, 4), (last, 1), (last, 10), (1, 0)] {
            let got = store.read_stream(s, from, max).unwrap();
            let want: Vec<u64> = (from..n).take(max).collect();
            assert_eq!(versions(&got), want, "{s} forward from {from} max {max}");
            let got = store.read_stream_backward(s, Some(from), max).unwrap();
            let want: Vec<u64> = (0..=from).rev().take(max).collect();
            assert_eq!(versions(&got), want, "{s} backward from {from} max {max}");
        }
        assert!(
            store.read_stream(s, n, 10).unwrap().is_empty(),
            "{s} past end"
        );
        assert!(store.read_stream(s, u64::MAX, 10).unwrap().is_empty());
        assert!(store.read_stream(s, 0, 0).unwrap().is_empty(), "max 0");
        assert!(store.read_stream_backward(s, None, 0).unwrap().is_empty());
        // Backward from past the end starts at the last event.
        let got = store.read_stream_backward(s, Some(n + 50), 2).unwrap();
        assert_eq!(
            versions(&got),
            vec![last, last.saturating_sub(1)][..2.min(n as usize)]
        );
        let got = store.read_stream_backward(s, None, 1).unwrap();
        assert_eq!(versions(&got), [last]);
    }
    for s in ["nope", "s-10", "s-"] {
        assert!(store.read_stream(s, 0, 10).unwrap().is_empty(), "{s}");
        assert!(store.read_stream_backward(s, None, 10).unwrap().is_empty());
        assert_eq!(store.stream_version(s).unwrap(), None);
    }
    // Stream names that contain '@' or look like keys of other streams stay apart.
    append_n(&store, &mut model, "x@1", 2);
    append_n(&store, &mut model, "x", 3);
    append_n(&store, &mut model, "x@meta", 1);
    check_model(&store, &model, "names with @");
}

#[test]
fn streams_spread_over_partitions_and_each_stays_in_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "spread", written().partitions(4)).unwrap();
    assert_eq!(store.partitions(), 4);
    let mut model = Model::new();
    let mut rng = Rng::new(base_seed());
    let streams: Vec<String> = (0..40).map(|i| format!("acct-{i}")).collect();
    for _ in 0..200 {
        let s = rng.pick(&streams).clone();
        let n = rng.usize(1, 3);
        append_n(&store, &mut model, &s, n);
    }
    check_model(&store, &model, "partitions");
    let used: HashSet<u32> = model.keys().map(|s| store.partition_of(s)).collect();
    assert!(
        used.len() > 1,
        "40 streams all landed in one partition: {used:?}"
    );
    // The raw partitions: each stream's records are only in its own.
    for p in 0..4 {
        for r in read_partition(&log.partition("spread", p).unwrap()) {
            let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
            let stream = key.rsplit_once('@').unwrap().0;
            assert_eq!(store.partition_of(stream), p, "{key} in partition {p}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Deletes

#[test]
fn soft_delete_hides_the_stream_and_versions_continue() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "del", written()).unwrap();
    let mut model = Model::new();
    append_n(&store, &mut model, "s", 3);
    append_n(&store, &mut model, "other", 2);

    assert_eq!(
        wrong(store.delete_stream("s", ExpectedVersion::Exact(1)), "s"),
        (ExpectedVersion::Exact(1), Some(2))
    );
    assert_eq!(
        wrong(store.delete_stream("s", ExpectedVersion::NoStream), "s"),
        (ExpectedVersion::NoStream, Some(2))
    );
    assert_eq!(
        store.stream_version("s").unwrap(),
        Some(2),
        "a refused delete"
    );
    store.delete_stream("s", ExpectedVersion::Exact(2)).unwrap();
    model.get_mut("s").unwrap().delete();
    assert!(store.read_stream("s", 0, 100).unwrap().is_empty());
    assert!(store
        .read_stream_backward("s", None, 100)
        .unwrap()
        .is_empty());
    assert_eq!(store.stream_version("s").unwrap(), None);
    check_model(&store, &model, "after the delete");

    assert_eq!(
        wrong(
            store.append("s", ExpectedVersion::Exact(2), &[ev("E", "x")]),
            "s"
        ),
        (ExpectedVersion::Exact(2), None)
    );
    assert_eq!(
        wrong(
            store.append("s", ExpectedVersion::StreamExists, &[ev("E", "x")]),
            "s"
        ),
        (ExpectedVersion::StreamExists, None)
    );
    // Deleting it again (or a stream that never existed) is a no-op.
    store.delete_stream("s", ExpectedVersion::NoStream).unwrap();
    store.delete_stream("s", ExpectedVersion::Any).unwrap();
    store.delete_stream("ghost", ExpectedVersion::Any).unwrap();
    assert_eq!(
        wrong(
            store.delete_stream("ghost", ExpectedVersion::Exact(0)),
            "ghost"
        ),
        (ExpectedVersion::Exact(0), None)
    );

    // Written again: versions continue after the deleted ones.
    append_n(&store, &mut model, "s", 2);
    assert_eq!(versions(&store.read_stream("s", 0, 100).unwrap()), [3, 4]);
    assert_eq!(store.stream_version("s").unwrap(), Some(4));
    check_model(&store, &model, "rewritten");
    // Delete with Any, write with Any.
    store.delete_stream("s", ExpectedVersion::Any).unwrap();
    model.get_mut("s").unwrap().delete();
    let r = store
        .append("s", ExpectedVersion::Any, &[ev("E", "y")])
        .unwrap();
    assert_eq!(r.next_version, 6);
    assert_eq!(versions(&store.read_stream("s", 0, 100).unwrap()), [5]);

    // The same after a reopen.
    store.close().unwrap();
    drop(store);
    let store = EventStore::open(&log, "del", written()).unwrap();
    assert_eq!(versions(&store.read_stream("s", 0, 100).unwrap()), [5]);
    assert_eq!(store.stream_version("s").unwrap(), Some(5));
    assert_eq!(
        versions(&store.read_stream("other", 0, 100).unwrap()),
        [0, 1]
    );
}

#[test]
fn truncate_keeps_the_tail_and_never_undoes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "trunc", written()).unwrap();
    let mut model = Model::new();
    append_n(&store, &mut model, "t", 10);
    store.truncate_stream("t", 4).unwrap();
    model.get_mut("t").unwrap().truncate(4);
    assert_eq!(
        versions(&store.read_stream("t", 0, 100).unwrap()),
        (4..10).collect::<Vec<_>>()
    );
    assert_eq!(
        versions(&store.read_stream_backward("t", None, 100).unwrap()),
        (4..10).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        versions(&store.read_stream_backward("t", Some(5), 100).unwrap()),
        [5, 4]
    );
    assert!(store
        .read_stream_backward("t", Some(2), 100)
        .unwrap()
        .is_empty());
    assert_eq!(store.stream_version("t").unwrap(), Some(9));
    check_model(&store, &model, "truncated");
    store.truncate_stream("t", 2).unwrap();
    check_model(&store, &model, "a lower truncation is a no-op");
    // Appends go on; Exact still refers to the last version.
    append_n(&store, &mut model, "t", 1);
    check_model(&store, &model, "appended after truncation");
    // Truncating past the end deletes everything, like a delete.
    store.truncate_stream("t", 1000).unwrap();
    model.get_mut("t").unwrap().delete();
    assert_eq!(store.stream_version("t").unwrap(), None);
    assert!(store.read_stream("t", 0, 100).unwrap().is_empty());
    append_n(&store, &mut model, "t", 1);
    assert_eq!(versions(&store.read_stream("t", 0, 100).unwrap()), [11]);
    check_model(&store, &model, "after truncating everything");
    // A truncation of a stream that never existed is harmless.
    store.truncate_stream("ghost", 5).unwrap();
    assert_eq!(store.stream_version("ghost").unwrap(), None);
}

#[test]
fn tombstoned_stream_refuses_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "tomb", written()).unwrap();
    let mut model = Model::new();
    append_n(&store, &mut model, "t", 3);
    append_n(&store, &mut model, "keep", 3);
    store.save_snapshot("t", 1, "snap").unwrap();
    assert_eq!(
        wrong(store.tombstone_stream("t", ExpectedVersion::Exact(0)), "t"),
        (ExpectedVersion::Exact(0), Some(2))
    );
    assert_eq!(
        wrong(store.tombstone_stream("t", ExpectedVersion::NoStream), "t"),
        (ExpectedVersion::NoStream, Some(2))
    );
    store
        .tombstone_stream("t", ExpectedVersion::Exact(2))
        .unwrap();
    model.remove("t");
    let check = |store: &EventStore| {
        for e in [
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::StreamExists,
            ExpectedVersion::Exact(2),
        ] {
            assert_deleted(store.append("t", e, &[ev("E", "x")]), "t", "append");
        }
        assert_deleted(store.read_stream("t", 0, 10), "t", "read_stream");
        assert_deleted(store.read_stream_backward("t", None, 10), "t", "backward");
        assert_deleted(store.stream_version("t"), "t", "stream_version");
        assert_deleted(
            store.delete_stream("t", ExpectedVersion::Any),
            "t",
            "delete",
        );
        assert_deleted(
            store.tombstone_stream("t", ExpectedVersion::Any),
            "t",
            "tombstone",
        );
        assert_deleted(store.truncate_stream("t", 1), "t", "truncate");
        assert_deleted(store.save_snapshot("t", 2, "s"), "t", "save_snapshot");
        assert_deleted(store.load_snapshot("t"), "t", "load_snapshot");
        assert_deleted(store.load("t", |_| Some(())), "t", "load");
        assert_deleted(
            store.subscribe_stream("t", StreamPosition::Start),
            "t",
            "subscribe_stream",
        );
    };
    check(&store);
    check_model(&store, &model, "the other stream");
    store.close().unwrap();
    drop(store);
    let store = EventStore::open(&log, "tomb", written()).unwrap();
    check(&store);
    check_model(&store, &model, "reopened");
    // A soft-deleted stream can still be tombstoned.
    store.delete_stream("keep", ExpectedVersion::Any).unwrap();
    store
        .tombstone_stream("keep", ExpectedVersion::NoStream)
        .unwrap();
    assert_deleted(store.stream_version("keep"), "keep", "keep");
}

/// Records of `stream` still stored in the partition: (events, tombstones).
fn raw_records_of(p: &annals::Partition, stream: &str) -> (usize, usize) {
    let mut events = 0;
    let mut tombstones = 0;
    for r in read_partition(p) {
        let Some(key) = r.key.as_deref() else {
            continue;
        };
        let key = std::str::from_utf8(key).unwrap();
        let Some((s, v)) = key.rsplit_once('@') else {
            continue;
        };
        if s == stream && v.bytes().all(|b| b.is_ascii_digit()) {
            if r.value.is_some() {
                events += 1;
            } else {
                tombstones += 1;
            }
        }
    }
    (events, tombstones)
}

#[test]
fn compaction_after_deletes_removes_the_events_and_keeps_the_store_right() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let config = written().segment_bytes(1024);
    let store = EventStore::open(&log, "cmp", config.clone()).unwrap();
    let topic = log.topic_config("cmp").unwrap();
    log.alter_topic(
        "cmp",
        topic
            .delete_retention_ms(Duration::ZERO)
            .min_cleanable_dirty_ratio(0.0),
    )
    .unwrap();
    let mut model = Model::new();
    for _ in 0..20 {
        for s in ["keep", "soft", "tomb", "trunc"] {
            append_n(&store, &mut model, s, 1);
        }
    }
    let p = log.partition("cmp", 0).unwrap();
    assert_eq!(raw_records_of(&p, "tomb"), (20, 0));
    store
        .delete_stream("soft", ExpectedVersion::Exact(19))
        .unwrap();
    model.get_mut("soft").unwrap().delete();
    store
        .tombstone_stream("tomb", ExpectedVersion::Any)
        .unwrap();
    model.remove("tomb");
    store.truncate_stream("trunc", 10).unwrap();
    model.get_mut("trunc").unwrap().truncate(10);
    assert!(
        log.topic_config("cmp").unwrap().compacts(),
        "the first delete turns compaction on"
    );
    assert_eq!(
        log.topic_config("cmp").unwrap().delete_retention_ms,
        Duration::ZERO,
        "turning compaction on keeps the rest of the topic's configuration"
    );
    // Fill past the deletes so their segments are no longer active.
    for _ in 0..40 {
        append_n(&store, &mut model, "filler", 1);
    }
    let size_before = p.size_bytes();
    let mut passes = 0;
    for round in 0..4 {
        let report = log.run_maintenance().unwrap();
        passes += report
            .partitions
            .iter()
            .filter(|r| r.topic == "cmp")
            .map(|r| r.compaction.passes)
            .sum::<usize>();
        // More appends: the next pass has a dirty part again (and the tombstones age out).
        for _ in 0..10 {
            append_n(&store, &mut model, "filler", 1);
        }
        check_model(&store, &model, &format!("during compaction round {round}"));
    }
    assert!(passes > 0, "compaction never ran on the events topic");
    let (tomb_events, tomb_tombstones) = raw_records_of(&p, "tomb");
    let (soft_events, _) = raw_records_of(&p, "soft");
    let (trunc_events, _) = raw_records_of(&p, "trunc");
    eprintln!(
        "compaction: {passes} passes, partition {size_before} -> {} bytes; tomb left \
         {tomb_events} events, {tomb_tombstones} tombstones",
        p.size_bytes()
    );
    assert_eq!(tomb_events, 0, "the tombstoned stream's events are gone");
    assert_eq!(soft_events, 0, "the soft-deleted stream's events are gone");
    assert_eq!(trunc_events, 10, "the truncated stream keeps its tail only");
    assert_eq!(raw_records_of(&p, "keep"), (20, 0));
    // The store is still right, and keeps working on the compacted partition.
    check_model(&store, &model, "after compaction");
    assert_deleted(store.read_stream("tomb", 0, 10), "tomb", "tombstoned");
    assert_deleted(
        store.append("tomb", ExpectedVersion::NoStream, &[ev("E", "x")]),
        "tomb",
        "tombstoned append",
    );
    assert_eq!(
        wrong(
            store.append("soft", ExpectedVersion::Exact(19), &[ev("E", "x")]),
            "soft"
        ),
        (ExpectedVersion::Exact(19), None)
    );
    append_n(&store, &mut model, "soft", 2);
    assert_eq!(
        versions(&store.read_stream("soft", 0, 100).unwrap()),
        [20, 21]
    );
    append_n(&store, &mut model, "trunc", 1);
    append_n(&store, &mut model, "keep", 1);
    check_model(&store, &model, "appends after compaction");
    // And after a reopen that replays or reloads the index over the compacted log.
    store.close().unwrap();
    drop(store);
    log.close().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "cmp", config.clone()).unwrap();
    check_model(&store, &model, "reopened after compaction");
    assert_deleted(store.stream_version("tomb"), "tomb", "tombstoned, reopened");
    store.rebuild_index().unwrap();
    check_model(&store, &model, "index rebuilt after compaction");
}

// ---------------------------------------------------------------------------------------------
// 5. Snapshots

#[test]
fn snapshots_save_load_replace_and_fall_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "snap", written()).unwrap();
    let mut model = Model::new();
    assert_eq!(store.load_snapshot("s").unwrap(), None);
    let loaded = store.load("s", |_| Some(0)).unwrap();
    assert_eq!(
        (loaded.state, loaded.snapshot_version, loaded.version),
        (None, None, None)
    );
    assert!(loaded.events.is_empty());
    assert_invalid_argument(store.save_snapshot("s", 0, "x"), "snapshot of no stream");

    append_n(&store, &mut model, "s", 5);
    store.save_snapshot("s", 1, "state@1").unwrap();
    let snap = store.load_snapshot("s").unwrap().unwrap();
    assert_eq!((snap.stream.as_str(), snap.version), ("s", 1));
    assert_eq!(&snap.data[..], b"state@1");
    store.save_snapshot("s", 3, "state@3").unwrap();
    let snap = store.load_snapshot("s").unwrap().unwrap();
    assert_eq!(
        (snap.version, &snap.data[..]),
        (3, &b"state@3"[..]),
        "newer replaces"
    );

    let loaded = store
        .load("s", |s| Some(String::from_utf8(s.data.to_vec()).unwrap()))
        .unwrap();
    assert_eq!(loaded.state.as_deref(), Some("state@3"));
    assert_eq!(loaded.snapshot_version, Some(3));
    assert_eq!(versions(&loaded.events), [4]);
    assert_eq!(loaded.version, Some(4));
    // A decoder that refuses the snapshot: every event instead.
    let loaded = store.load("s", |_| None::<()>).unwrap();
    assert_eq!((loaded.state, loaded.snapshot_version), (None, None));
    assert_eq!(versions(&loaded.events), [0, 1, 2, 3, 4]);
    assert_eq!(loaded.version, Some(4));
    // A snapshot at the last version: no events after it.
    store.save_snapshot("s", 4, "state@4").unwrap();
    let loaded = store.load("s", |s| Some(s.version)).unwrap();
    assert_eq!((loaded.state, loaded.version), (Some(4), Some(4)));
    assert!(loaded.events.is_empty());
    // Snapshots of one stream are not another's.
    append_n(&store, &mut model, "s2", 2);
    assert_eq!(store.load_snapshot("s2").unwrap(), None);

    // Invalid versions.
    assert_invalid_argument(store.save_snapshot("s", 5, "x"), "past the end");
    assert_invalid_argument(store.save_snapshot("s", u64::MAX, "x"), "u64::MAX");
    store.truncate_stream("s", 2).unwrap();
    model.get_mut("s").unwrap().truncate(2);
    assert_invalid_argument(store.save_snapshot("s", 1, "x"), "a truncated version");
    store.save_snapshot("s", 2, "state@2").unwrap();
    // An older version saved later is what the stream's latest snapshot now is.
    let snap = store.load_snapshot("s").unwrap().unwrap();
    assert!(snap.version == 2 || snap.version == 4, "{snap:?}");

    // After a soft delete the snapshot is gone, also once the stream is written again.
    store.delete_stream("s", ExpectedVersion::Any).unwrap();
    model.get_mut("s").unwrap().delete();
    assert_eq!(store.load_snapshot("s").unwrap(), None);
    assert_invalid_argument(store.save_snapshot("s", 4, "x"), "deleted version");
    append_n(&store, &mut model, "s", 2);
    assert_eq!(
        store.load_snapshot("s").unwrap(),
        None,
        "old snapshot after rewrite"
    );
    let loaded = store.load("s", |_| Some(())).unwrap();
    assert_eq!(loaded.snapshot_version, None);
    assert_eq!(versions(&loaded.events), [5, 6]);
    store.save_snapshot("s", 6, "state@6").unwrap();
    // Across a reopen.
    store.close().unwrap();
    drop(store);
    let store = EventStore::open(&log, "snap", written()).unwrap();
    let snap = store.load_snapshot("s").unwrap().unwrap();
    assert_eq!((snap.version, &snap.data[..]), (6, &b"state@6"[..]));
    assert_eq!(store.load_snapshot("s2").unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// 6. Forced hash collisions

fn colliding() -> EventStoreConfig {
    written().index_memtable_entries(16).stream_hasher(|_| 42)
}

#[test]
fn colliding_streams_stay_correct_across_tables_deletes_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "coll", colliding()).unwrap();
    let seed = base_seed();
    let _guard = SeedGuard::new("colliding_streams", seed);
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let streams: Vec<String> = (0..5).map(|i| format!("c-{i}")).collect();
    let rounds = env_usize("ANNALS_ES_COLLISION_ROUNDS", 300);
    for round in 0..rounds {
        let s = rng.pick(&streams).clone();
        match rng.below(20) {
            0 => {
                store.delete_stream(&s, ExpectedVersion::Any).unwrap();
                model.entry(s).or_default().delete();
            }
            1 => {
                let before = rng.below(model.get(&s).map_or(1, |m| m.next_version + 2));
                store.truncate_stream(&s, before).unwrap();
                let m = model.entry(s).or_default();
                m.truncate(before);
            }
            _ => {
                let n = rng.usize(1, 5);
                append_n(&store, &mut model, &s, n);
            }
        }
        if round % 50 == 49 {
            check_model(&store, &model, &format!("round {round}"));
        }
    }
    check_model(&store, &model, "after the workload");
    let tables = store.index_tables();
    assert!(
        tables[0] > 0,
        "a 16-entry memtable wrote no table: {tables:?}"
    );
    assert_eq!(
        wrong(
            store.append("c-0", ExpectedVersion::Exact(1_000_000), &[ev("E", "x")]),
            "c-0"
        ),
        (
            ExpectedVersion::Exact(1_000_000),
            model.get("c-0").and_then(StreamModel::last)
        )
    );
    store.close().unwrap();
    drop(store);
    log.close().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "coll", colliding()).unwrap();
    check_model(&store, &model, "reopened");
    for s in &streams {
        append_n(&store, &mut model, s, 1);
    }
    check_model(&store, &model, "appended after reopen");
}

/// A targeted collision case: stream `a`'s newest entries sit in an older index table while
/// the newest table's last block holds only another (colliding) stream's higher versions.
#[test]
fn colliding_stream_whose_newest_version_is_not_in_the_last_block() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "coll2", colliding()).unwrap();
    let mut model = Model::new();
    // One event per append, so every 16 appends flush a table and 16 tables of 16 entries
    // merge into one of 256 (two blocks of 128).
    for _ in 0..256 {
        append_n(&store, &mut model, "b", 1);
    }
    for _ in 0..256 {
        append_n(&store, &mut model, "a", 1);
    }
    for _ in 0..4 {
        append_n(&store, &mut model, "a", 1);
    }
    for _ in 0..252 {
        append_n(&store, &mut model, "b", 1);
    }
    eprintln!("index tables: {:?}", store.index_tables());
    assert_eq!(store.stream_version("a").unwrap(), Some(259), "a's version");
    check_model(&store, &model, "a's newest entries in an older table's run");
    // Exact on the real version must work, and on the stale one must fail.
    append_n(&store, &mut model, "a", 1);
    check_model(&store, &model, "after appending to a");
}

/// A targeted collision case for deletes: stream `a`'s newest metadata entry sits in a table's
/// first block, that table's last block holds only another (colliding) stream's metadata
/// entries, and `a`'s older metadata entry is in an older table's last block. The newest
/// truncation must win, before a reopen, after a clean one and after a crash.
#[test]
fn colliding_stream_whose_newest_truncation_is_not_in_the_last_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let truncate = |store: &EventStore, model: &mut Model, stream: &str, before: u64| {
        store.truncate_stream(stream, before).unwrap();
        model.get_mut(stream).unwrap().truncate(before);
    };
    {
        let log = open_log(dir.path());
        let store = EventStore::open(&log, "coll3", colliding()).unwrap();
        // One index entry per call, so that every 16 calls flush a table of 16 entries and
        // 16 tables merge into one of 256 (two blocks of 128). The first 256: a's first
        // truncation among a's and b's events.
        for _ in 0..3 {
            append_n(&store, &mut model, "a", 1);
        }
        truncate(&store, &mut model, "a", 1);
        for _ in 0..252 {
            append_n(&store, &mut model, "b", 1);
        }
        // The next 256: a's second truncation, then more of b's truncations than a block
        // holds, so that the table's last block is b's metadata entries alone.
        truncate(&store, &mut model, "a", 2);
        for before in 1..=130 {
            truncate(&store, &mut model, "b", before);
        }
        for _ in 0..125 {
            append_n(&store, &mut model, "c", 1);
        }
        // This call flushes the 16th table, which merges the second 256.
        append_n(&store, &mut model, "c", 1);
        assert_eq!(store.index_tables(), vec![2], "two merged tables");
        check_model(
            &store,
            &model,
            "a's newest truncation in a table's first block",
        );
        store.close().unwrap();
        drop(store);
        log.close().unwrap();
    }
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "coll3", colliding()).unwrap();
    check_model(&store, &model, "reopened");
    append_n(&store, &mut model, "a", 1);
    check_model(&store, &model, "appended to a after reopen");
    // A crash of the process: the memtable (a's last event) is lost and replayed from the log.
    std::mem::forget(store);
    drop(log);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let log = open_log(copy.path());
    let store = EventStore::open(&log, "coll3", colliding()).unwrap();
    assert!(store.index_replayed_at_open()[0] > 0, "a crash replays");
    check_model(&store, &model, "after a crash");
}

// ---------------------------------------------------------------------------------------------
// 7. Reopen

#[test]
fn reopen_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::new();
    let before: Vec<Vec<RecordedEvent>>;
    let streams: Vec<String> = (0..10).map(|i| format!("r-{i}")).collect();
    {
        let log = open_log(dir.path());
        let store =
            EventStore::open(&log, "re", EventStoreConfig::default().partitions(2)).unwrap();
        let mut rng = Rng::new(base_seed());
        for _ in 0..60 {
            let s = rng.pick(&streams).clone();
            append_n(&store, &mut model, &s, rng.usize(1, 3));
        }
        store.truncate_stream("r-0", 1).unwrap();
        if let Some(m) = model.get_mut("r-0") {
            m.truncate(1);
        }
        before = streams
            .iter()
            .map(|s| store.read_stream(s, 0, usize::MAX).unwrap())
            .collect();
        store.close().unwrap();
        assert_closed(store.read_stream("r-1", 0, 1), "closed store");
        drop(store);
        log.close().unwrap();
    }
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "re", EventStoreConfig::default()).unwrap();
    assert_eq!(
        store.partitions(),
        2,
        "the existing topic keeps its partitions"
    );
    let after: Vec<Vec<RecordedEvent>> = streams
        .iter()
        .map(|s| store.read_stream(s, 0, usize::MAX).unwrap())
        .collect();
    assert_eq!(
        after, before,
        "every event, with its timestamp and position"
    );
    check_model(&store, &model, "reopened");
    // Drop without close: the next open replays what the memtable held.
    append_n(&store, &mut model, "r-1", 2);
    drop(store);
    let store = EventStore::open(&log, "re", EventStoreConfig::default()).unwrap();
    check_model(&store, &model, "reopened after a drop");
}

#[test]
fn small_memtable_merges_tables_and_reopens_right() {
    let dir = tempfile::tempdir().unwrap();
    let n = env_usize("ANNALS_ES_EVENTS", 3000);
    let config = written().index_memtable_entries(16);
    let mut model = Model::new();
    let streams: Vec<String> = (0..50).map(|i| format!("m-{i}")).collect();
    let tables_before;
    {
        let log = open_log(dir.path());
        let store = EventStore::open(&log, "merge", config.clone()).unwrap();
        let mut rng = Rng::new(base_seed());
        let mut written = 0;
        let mut max_tables = 0;
        while written < n {
            let s = rng.pick(&streams).clone();
            let k = rng.usize(1, 3);
            append_n(&store, &mut model, &s, k);
            written += k;
            max_tables = max_tables.max(store.index_tables()[0]);
        }
        // Four of a level merge into one of the next: at most three a level.
        let levels = ((n as f64 / 16.0).log(4.0).ceil() as usize) + 1;
        assert!(
            max_tables <= 3 * levels + 1,
            "{max_tables} tables for {n} events in 16-entry tables: merging does not keep up"
        );
        tables_before = store.index_tables();
        eprintln!("{n} events: tables now {tables_before:?}, at most {max_tables}");
        check_model(&store, &model, "before reopen");
        store.close().unwrap();
        drop(store);
        log.close().unwrap();
    }
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "merge", config.clone()).unwrap();
    let tables_after = store.index_tables();
    assert!(tables_after[0] >= 1, "tables were kept: {tables_after:?}");
    assert!(tables_after[0] <= tables_before[0] + 1, "{tables_after:?}");
    check_model(&store, &model, "reopened");

    // Another hasher: the tables are of another function, so they are rebuilt.
    store.close().unwrap();
    drop(store);
    let other = config.clone().stream_hasher(|s| {
        s.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b))
    });
    let store = EventStore::open(&log, "merge", other.clone()).unwrap();
    check_model(&store, &model, "reopened with another hasher");
    append_n(&store, &mut model, "m-1", 3);
    check_model(&store, &model, "appended with another hasher");
    store.close().unwrap();
    drop(store);
    // And back to the first one.
    let store = EventStore::open(&log, "merge", config).unwrap();
    check_model(&store, &model, "back to the first hasher");
}

/// Flips one byte at `at(len)` of every index table of the store.
fn damage_tables(dir: &Path, at: impl Fn(usize) -> usize) -> usize {
    let files = table_files(dir);
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        let i = at(bytes.len());
        bytes[i] ^= 0x5a;
        std::fs::write(f, &bytes).unwrap();
    }
    files.len()
}

#[test]
fn damaged_index_tables_are_dropped_or_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = written().index_memtable_entries(16);
    let mut model = Model::new();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "dmg", config.clone()).unwrap();
    let index_dir = store.index_dir();
    let streams: Vec<String> = (0..8).map(|i| format!("d-{i}")).collect();
    let mut rng = Rng::new(base_seed());
    for _ in 0..150 {
        let s = rng.pick(&streams).clone();
        append_n(&store, &mut model, &s, rng.usize(1, 3));
    }
    store.close().unwrap();
    drop(store);

    // A flipped footer byte: found at open, the table dropped, its events replayed.
    let damaged = damage_tables(&index_dir, |len| len - 10);
    assert!(damaged > 0, "no index table to damage under {index_dir:?}");
    let store = EventStore::open(&log, "dmg", config.clone()).unwrap();
    check_model(&store, &model, "damaged footers");
    append_n(&store, &mut model, "d-0", 1);
    store.close().unwrap();
    drop(store);

    // A flipped entry byte: the block CRC finds it when a lookup reads it.
    let damaged = damage_tables(&index_dir, |_| 5);
    assert!(damaged > 0);
    let store = EventStore::open(&log, "dmg", config.clone()).unwrap();
    let mut outcome = "reads right without help";
    for (s, m) in &model {
        match store.read_stream(s, 0, usize::MAX) {
            Ok(events) => {
                let got: Vec<u64> = versions(&events);
                let want: Vec<u64> = m.events.iter().map(|e| e.0).collect();
                assert_eq!(got, want, "{s}: a damaged table must not give wrong reads");
            }
            Err(Error::Corrupt { segment, .. }) => {
                assert!(
                    segment.to_string_lossy().ends_with(".estable"),
                    "the error names the table: {segment:?}"
                );
                outcome = "Error::Corrupt, fixed by rebuild_index";
                store.rebuild_index().unwrap();
            }
            Err(e) => panic!("{s}: {e}"),
        }
    }
    eprintln!("damaged entry block: {outcome}");
    check_model(&store, &model, "after a damaged entry block");
    append_n(&store, &mut model, "d-1", 1);
    check_model(&store, &model, "appended after the damage");
}

// ---------------------------------------------------------------------------------------------
// 8. Racing appenders

#[test]
fn racing_exact_appends_have_one_winner_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "race", written()).unwrap();
    let threads = 16;
    let total = env_usize("ANNALS_ES_RACE_APPENDS", 320);
    let per_thread = total.div_ceil(threads);
    let streams = ["r-0", "r-1", "r-2"];
    let start = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let mut won: Vec<(String, u64, Uuid)> = Vec::new();
                let mut conflicts = 0;
                start.wait();
                for i in 0..per_thread {
                    let stream = streams[(t + i) % streams.len()];
                    let event = NewEvent::new("Won", format!("{t}/{i}"));
                    let mut seen = store.stream_version(stream).unwrap();
                    // Widen the window between the read and the append a little.
                    std::thread::yield_now();
                    loop {
                        let expected =
                            seen.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        match store.append(stream, expected, std::slice::from_ref(&event)) {
                            Ok(r) => {
                                let version = seen.map_or(0, |v| v + 1);
                                assert_eq!(r.next_version, version + 1);
                                won.push((stream.to_string(), version, event.event_id()));
                                break;
                            }
                            Err(Error::WrongExpectedVersion { actual, .. }) => {
                                conflicts += 1;
                                let now = store.stream_version(stream).unwrap();
                                assert!(actual.is_some(), "someone else won, so it exists");
                                assert!(
                                    seen < actual && actual <= now,
                                    "actual {actual:?} after seeing {seen:?}, now {now:?}"
                                );
                                seen = actual;
                            }
                            Err(e) => panic!("append: {e}"),
                        }
                    }
                }
                (won, conflicts)
            })
        })
        .collect();
    let mut won = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        let (w, c) = h.join().expect("an appender panicked");
        won.extend(w);
        conflicts += c;
    }
    assert_eq!(
        won.len(),
        per_thread * threads,
        "every thread won every append it made"
    );
    let mut by_version: HashMap<(String, u64), Uuid> = HashMap::new();
    for (s, v, id) in &won {
        assert!(
            by_version.insert((s.clone(), *v), *id).is_none(),
            "two winners of {s}@{v}"
        );
    }
    for s in streams {
        let events = store.read_stream(s, 0, usize::MAX).unwrap();
        let n = events.len() as u64;
        assert_eq!(
            versions(&events),
            (0..n).collect::<Vec<_>>(),
            "{s}: contiguous"
        );
        let winners = won.iter().filter(|w| w.0 == s).count() as u64;
        assert_eq!(n, winners, "{s}: one event per winning append");
        let mut seen = HashSet::new();
        for e in &events {
            assert!(seen.insert(e.id), "{s}: event {} twice", e.id);
            assert_eq!(
                by_version.get(&(s.to_string(), e.version)),
                Some(&e.id),
                "{s}@{}: the winner's event",
                e.version
            );
        }
    }
    eprintln!("race: {} appends, {conflicts} conflicts", won.len());
}

// ---------------------------------------------------------------------------------------------
// 9. Subscriptions

/// Reads `n` events from `next`, failing after a generous deadline.
fn take_n<F>(mut next: F, n: usize, what: &str) -> Vec<RecordedEvent>
where
    F: FnMut(Duration) -> annals::Result<Option<RecordedEvent>>,
{
    let deadline = Instant::now() + hang_bound();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {n} events after {:?}",
            out.len(),
            hang_bound()
        );
        if let Some(e) = next(Duration::from_millis(200)).unwrap() {
            out.push(e);
        }
    }
    out
}

/// Per stream, the versions in the order delivered.
fn per_stream(events: &[RecordedEvent]) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events {
        m.entry(e.stream.clone()).or_default().push(e.version);
    }
    m
}

#[test]
fn subscribe_all_delivers_history_then_live_and_resumes_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "suball", written()).unwrap();
    let mut model = Model::new();
    for i in 0..30 {
        append_n(&store, &mut model, ["x", "y", "z"][i % 3], 1 + i % 2);
    }
    let history: usize = model.values().map(|m| m.events.len()).sum();
    let live = env_usize("ANNALS_ES_SUB_EVENTS", 150);
    let mut sub = store.subscribe_all(Position::Start).unwrap();
    let mut end_sub = store.subscribe_all(Position::End).unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..live {
                let s = ["x", "y", "z", "w"][i % 4];
                store
                    .append(s, ExpectedVersion::Any, &[ev("Live", i.to_string())])
                    .unwrap();
            }
        })
    };
    let all = take_n(|t| sub.next(t), history + live, "subscribe_all(Start)");
    writer.join().unwrap();
    assert!(
        sub.next(Duration::from_millis(50)).unwrap().is_none(),
        "nothing more"
    );
    // In offset order (one partition: the store's total order), no gap, no duplicate.
    let offsets: Vec<u64> = all.iter().map(|e| e.position.offset).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offset order");
    assert_eq!(offsets, (0..(history + live) as u64).collect::<Vec<_>>());
    for (s, vs) in per_stream(&all) {
        assert_eq!(vs, (0..vs.len() as u64).collect::<Vec<_>>(), "{s}");
        let stored = store.read_stream(&s, 0, usize::MAX).unwrap();
        let delivered: Vec<&RecordedEvent> = all.iter().filter(|e| e.stream == s).collect();
        assert_eq!(
            stored.iter().collect::<Vec<_>>(),
            delivered,
            "{s}: same events"
        );
    }
    // Position::End saw only the live events.
    let from_end = take_n(|t| end_sub.next(t), live, "subscribe_all(End)");
    assert_eq!(from_end[..], all[history..]);
    assert!(end_sub.next(Duration::from_millis(50)).unwrap().is_none());

    // Checkpoints: resume exactly after the last event handed out.
    let mut sub = store.subscribe_all(Position::Start).unwrap();
    let first = take_n(|t| sub.next(t), 40, "first 40");
    let cp = sub.checkpoint();
    assert_eq!(cp.offsets(), &[first[39].position.offset + 1]);
    store.save_checkpoint("projector", &cp).unwrap();
    assert_eq!(
        store.load_checkpoint("projector").unwrap(),
        Some(cp.clone())
    );
    assert_eq!(store.load_checkpoint("nobody").unwrap(), None);
    let text: Checkpoint = cp.to_string().parse().unwrap();
    assert_eq!(text, cp);
    let mut resumed = store
        .subscribe_all(Position::After(
            store.load_checkpoint("projector").unwrap().unwrap(),
        ))
        .unwrap();
    let rest = take_n(|t| resumed.next(t), history + live - 40, "resumed");
    assert_eq!(rest[..], all[40..]);
    assert!(resumed.next(Duration::from_millis(50)).unwrap().is_none());
    // poll hands out what is there, and the checkpoint follows it.
    store
        .append("x", ExpectedVersion::Any, &[ev("P", "1"), ev("P", "2")])
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + hang_bound();
    while got.len() < 2 && Instant::now() < deadline {
        got.extend(resumed.poll(Duration::from_millis(200)).unwrap());
    }
    assert_eq!(got.len(), 2);
    assert_eq!(
        resumed.checkpoint().offsets(),
        &[got[1].position.offset + 1]
    );
    // A checkpoint of the end resumes with nothing.
    let mut at_end = store
        .subscribe_all(Position::After(resumed.checkpoint()))
        .unwrap();
    assert!(at_end.next(Duration::from_millis(50)).unwrap().is_none());
}

#[test]
fn subscribe_all_over_partitions_keeps_each_stream_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "subparts", written().partitions(3)).unwrap();
    let streams: Vec<String> = (0..12).map(|i| format!("p-{i}")).collect();
    let mut model = Model::new();
    for s in &streams {
        append_n(&store, &mut model, s, 2);
    }
    let live = 120;
    let mut sub = store.subscribe_all(Position::Start).unwrap();
    let writer = {
        let store = store.clone();
        let streams = streams.clone();
        std::thread::spawn(move || {
            for i in 0..live {
                store
                    .append(
                        &streams[i % streams.len()],
                        ExpectedVersion::Any,
                        &[ev("L", "x")],
                    )
                    .unwrap();
            }
        })
    };
    let all = take_n(|t| sub.next(t), streams.len() * 2 + live, "3 partitions");
    writer.join().unwrap();
    assert!(sub.next(Duration::from_millis(50)).unwrap().is_none());
    for (s, vs) in per_stream(&all) {
        assert_eq!(vs, (0..vs.len() as u64).collect::<Vec<_>>(), "{s}");
    }
    let cp = sub.checkpoint();
    assert_eq!(cp.offsets().len(), 3);
    for p in 0..3 {
        assert_eq!(
            cp.offsets()[p as usize],
            log.partition("subparts", p).unwrap().high_watermark(),
            "partition {p} read to its end"
        );
    }
    store.save_checkpoint("g", &cp).unwrap();
    assert_eq!(store.load_checkpoint("g").unwrap(), Some(cp));
}

#[test]
fn subscribe_stream_switches_from_history_to_live_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "substream", written()).unwrap();
    let mut model = Model::new();
    // More history than one chunk of the subscription's index reads.
    for i in 0..300 {
        append_n(&store, &mut model, "s", 1);
        if i % 3 == 0 {
            append_n(&store, &mut model, "noise", 1);
        }
    }
    let live = env_usize("ANNALS_ES_SUB_EVENTS", 150);
    let total = 300 + live as u64;
    // Writers to the stream and to another run while the subscriptions start.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..live {
                store
                    .append("s", ExpectedVersion::Any, &[ev("Live", i.to_string())])
                    .unwrap();
                store
                    .append("noise", ExpectedVersion::Any, &[ev("N", "n")])
                    .unwrap();
                if i == 10 {
                    tx.send(()).unwrap();
                }
            }
        })
    };
    rx.recv().unwrap();
    let mut from_start = store.subscribe_stream("s", StreamPosition::Start).unwrap();
    let mut after = store
        .subscribe_stream("s", StreamPosition::After(41))
        .unwrap();
    let before_end = store.stream_version("s").unwrap().unwrap();
    let mut from_end = store.subscribe_stream("s", StreamPosition::End).unwrap();
    let end_at = store.stream_version("s").unwrap().unwrap();
    let got = take_n(|t| from_start.next(t), total as usize, "stream from Start");
    assert_eq!(versions(&got), (0..total).collect::<Vec<_>>());
    assert!(got.iter().all(|e| e.stream == "s"));
    let got_after = take_n(|t| after.next(t), (total - 42) as usize, "stream After(41)");
    assert_eq!(versions(&got_after), (42..total).collect::<Vec<_>>());
    assert_eq!(got_after[..], got[42..]);
    writer.join().unwrap();
    // End: the writer may have finished by the time it started; three more events are
    // certainly after its start. It delivers from where the stream was when it started.
    store
        .append(
            "s",
            ExpectedVersion::Any,
            &[ev("T", "0"), ev("T", "1"), ev("T", "2")],
        )
        .unwrap();
    let first = from_end
        .next(hang_bound())
        .unwrap()
        .expect("events after End");
    assert!(
        (before_end + 1..=end_at + 1).contains(&first.version),
        "End started at {}: the stream was at {before_end} before and {end_at} after",
        first.version
    );
    let rest = take_n(
        |t| from_end.next(t),
        (total + 2 - first.version) as usize,
        "End",
    );
    let mut vs = vec![first.version];
    vs.extend(versions(&rest));
    assert_eq!(vs, (first.version..total + 3).collect::<Vec<_>>());
    let tail = take_n(|t| from_start.next(t), 3, "the three more, from Start");
    assert_eq!(versions(&tail), [total, total + 1, total + 2]);
    let tail = take_n(|t| after.next(t), 3, "the three more, After(41)");
    assert_eq!(versions(&tail), [total, total + 1, total + 2]);
    let total = total + 3;
    for sub in [&mut from_start, &mut after, &mut from_end] {
        assert!(
            sub.next(Duration::from_millis(50)).unwrap().is_none(),
            "idle"
        );
        assert_eq!(sub.last_version(), Some(total - 1));
        assert_eq!(sub.stream(), "s");
    }
    // Resuming with After(last_version) delivers only what comes next.
    let mut resumed = store
        .subscribe_stream("s", StreamPosition::After(total - 1))
        .unwrap();
    assert!(resumed.next(Duration::from_millis(50)).unwrap().is_none());
    store
        .append("s", ExpectedVersion::Exact(total - 1), &[ev("X", "x")])
        .unwrap();
    let e = resumed.next(hang_bound()).unwrap().unwrap();
    assert_eq!(e.version, total);
    // A stream with no events yet: from Start it waits for the first.
    let mut empty = store
        .subscribe_stream("fresh", StreamPosition::Start)
        .unwrap();
    assert!(empty.next(Duration::from_millis(50)).unwrap().is_none());
    assert_eq!(empty.last_version(), None);
    store
        .append("fresh", ExpectedVersion::NoStream, &[ev("F", "0")])
        .unwrap();
    assert_eq!(empty.next(hang_bound()).unwrap().unwrap().version, 0);
}

#[test]
fn subscribe_stream_skips_deleted_history() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "subdel", written()).unwrap();
    let mut model = Model::new();
    append_n(&store, &mut model, "s", 5);
    store.delete_stream("s", ExpectedVersion::Any).unwrap();
    model.get_mut("s").unwrap().delete();
    append_n(&store, &mut model, "s", 3);
    store.truncate_stream("s", 6).unwrap();
    model.get_mut("s").unwrap().truncate(6);
    check_model(&store, &model, "deleted, rewritten, truncated");
    let mut sub = store.subscribe_stream("s", StreamPosition::Start).unwrap();
    let got = take_n(|t| sub.next(t), 2, "after deletes");
    assert_eq!(versions(&got), [6, 7]);
    assert!(sub.next(Duration::from_millis(50)).unwrap().is_none());
    let mut sub = store
        .subscribe_stream("s", StreamPosition::After(1))
        .unwrap();
    let got = take_n(|t| sub.next(t), 2, "After a deleted version");
    assert_eq!(versions(&got), [6, 7]);
}

#[test]
fn extreme_expected_versions_are_conflicts_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "extreme", written()).unwrap();
    store
        .append("s", ExpectedVersion::NoStream, &[ev("E", "0")])
        .unwrap();
    for v in [u64::MAX, u64::MAX - 1] {
        for (stream, actual) in [("s", Some(0)), ("new", None)] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.append(
                    stream,
                    ExpectedVersion::Exact(v),
                    &[ev("E", "x"), ev("E", "y")],
                )
            }));
            let r = r.unwrap_or_else(|_| {
                panic!("append({stream:?}, Exact({v})) panicked instead of refusing")
            });
            assert_eq!(
                wrong(r, stream),
                (ExpectedVersion::Exact(v), actual),
                "Exact({v}) on {stream:?}"
            );
        }
        assert_eq!(
            wrong(store.delete_stream("s", ExpectedVersion::Exact(v)), "s"),
            (ExpectedVersion::Exact(v), Some(0))
        );
    }
    assert_eq!(
        versions(
            &store
                .read_stream_backward("s", Some(u64::MAX), usize::MAX)
                .unwrap()
        ),
        [0]
    );
    assert_eq!(store.stream_version("new").unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// 10. Bad input

#[test]
fn bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "bad", written()).unwrap();
    let p = log.partition("bad", 0).unwrap();
    let long = "x".repeat(annals::MAX_STREAM_NAME_LEN + 1);
    for name in ["", "a\nb", "tab\there", "nul\0", "del\u{7f}", long.as_str()] {
        let e = [ev("E", "x")];
        assert_invalid_argument(store.append(name, ExpectedVersion::Any, &e), "append");
        assert_invalid_argument(store.read_stream(name, 0, 1), "read_stream");
        assert_invalid_argument(store.read_stream_backward(name, None, 1), "backward");
        assert_invalid_argument(store.stream_version(name), "stream_version");
        assert_invalid_argument(store.delete_stream(name, ExpectedVersion::Any), "delete");
        assert_invalid_argument(
            store.tombstone_stream(name, ExpectedVersion::Any),
            "tombstone",
        );
        assert_invalid_argument(store.truncate_stream(name, 0), "truncate");
        assert_invalid_argument(store.save_snapshot(name, 0, "s"), "save_snapshot");
        assert_invalid_argument(store.load_snapshot(name), "load_snapshot");
        assert_invalid_argument(
            store.subscribe_stream(name, StreamPosition::Start),
            "subscribe_stream",
        );
    }
    assert_eq!(p.high_watermark(), 0, "nothing written");
    // The longest name works, and so do names with spaces, '@' and non-ASCII.
    let longest = "y".repeat(annals::MAX_STREAM_NAME_LEN);
    for name in [longest.as_str(), "with space", "a@b@c", "ünïcödé-流"] {
        store
            .append(name, ExpectedVersion::NoStream, &[ev("E", "x")])
            .unwrap();
        assert_eq!(store.stream_version(name).unwrap(), Some(0), "{name}");
        assert_eq!(store.read_stream(name, 0, 10).unwrap().len(), 1);
    }
    let hw = p.high_watermark();
    assert_invalid_argument(store.append("s", ExpectedVersion::Any, &[]), "no events");
    assert_invalid_argument(
        store.append("s", ExpectedVersion::NoStream, &[]),
        "no events",
    );
    assert_eq!(p.high_watermark(), hw);

    // Bigger than the topic's max_message_bytes: one event, or a batch of small ones.
    log.create_topic("small", TopicConfig::default().max_message_bytes(4096))
        .unwrap();
    let small = EventStore::open(&log, "small", written()).unwrap();
    let sp = log.partition("small", 0).unwrap();
    let big = ev("E", "z".repeat(8192));
    match small.append("s", ExpectedVersion::Any, &[big]) {
        Err(Error::RecordTooLarge { .. } | Error::BatchTooLarge { .. }) => {}
        other => panic!("one 8 KiB event in a 4 KiB topic: {other:?}"),
    }
    let many: Vec<NewEvent> = (0..20).map(|_| ev("E", "w".repeat(400))).collect();
    match small.append("s", ExpectedVersion::Any, &many) {
        Err(Error::BatchTooLarge { .. }) => {}
        other => panic!("20 x 400 B events in a 4 KiB topic: {other:?}"),
    }
    assert_eq!(
        sp.high_watermark(),
        0,
        "nothing of a refused batch is written"
    );
    assert_eq!(small.stream_version("s").unwrap(), None);
    small
        .append("s", ExpectedVersion::NoStream, &many[..5])
        .unwrap();
    assert_eq!(small.stream_version("s").unwrap(), Some(4));

    // Invalid store names.
    for name in ["", "a/b", "..", "with space", "__event_store\u{0}"] {
        match EventStore::open(&log, name, written()) {
            Err(Error::InvalidTopicName { .. }) => {}
            other => panic!("store name {name:?}: {other:?}"),
        }
    }
    let too_long = "n".repeat(249);
    assert!(
        EventStore::open(&log, &too_long, written()).is_err(),
        "a name whose snapshots topic name is too long"
    );

    // Opening the same store twice in one log.
    assert_invalid_argument(EventStore::open(&log, "bad", written()), "open twice");
    let clone = store.clone();
    drop(store);
    assert_invalid_argument(
        EventStore::open(&log, "bad", written()),
        "open while a clone lives",
    );

    // Configuration out of bounds.
    for (config, field) in [
        (written().partitions(0), "partitions"),
        (written().partitions(10_001), "partitions"),
        (
            EventStoreConfig::default().durability(Durability::None),
            "durability",
        ),
        (
            written().index_memtable_entries(15),
            "index_memtable_entries",
        ),
        (
            written().index_memtable_entries((1 << 24) + 1),
            "index_memtable_entries",
        ),
        (written().segment_bytes(10), "segment_bytes"),
    ] {
        assert!(config.validate().is_err(), "{field}");
        match EventStore::open(&log, "cfg", config) {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(
        !log.topics().contains(&"cfg".to_string()),
        "a refused open creates nothing"
    );
    // A snapshots topic of the wrong shape.
    log.create_topic("shape.snapshots", TopicConfig::default())
        .unwrap();
    assert_invalid_argument(
        EventStore::open(&log, "shape", written()),
        "non-compacting snapshots topic",
    );

    // Checkpoints of another partition count.
    let cp: Checkpoint = "1,2".parse().unwrap();
    assert_invalid_argument(
        clone.subscribe_all(Position::After(cp.clone())),
        "subscribe",
    );
    assert_invalid_argument(clone.save_checkpoint("g", &cp), "save_checkpoint");
    assert!("".parse::<Checkpoint>().is_err());
    assert!("1,,2".parse::<Checkpoint>().is_err());
    assert!("-1".parse::<Checkpoint>().is_err());

    // After close: every operation, on every handle, is Closed.
    let other = clone.clone();
    clone.close().unwrap();
    clone.close().unwrap();
    let e = [ev("E", "x")];
    assert_closed(other.append("s", ExpectedVersion::Any, &e), "append");
    assert_closed(other.read_stream("with space", 0, 1), "read_stream");
    assert_closed(
        other.read_stream_backward("with space", None, 1),
        "backward",
    );
    assert_closed(other.stream_version("with space"), "stream_version");
    assert_closed(
        other.delete_stream("with space", ExpectedVersion::Any),
        "delete",
    );
    assert_closed(
        other.tombstone_stream("with space", ExpectedVersion::Any),
        "tombstone",
    );
    assert_closed(other.truncate_stream("with space", 0), "truncate");
    assert_closed(other.save_snapshot("with space", 0, "s"), "save_snapshot");
    assert_closed(other.load_snapshot("with space"), "load_snapshot");
    assert_closed(other.load("with space", |_| Some(())), "load");
    assert_closed(other.subscribe_all(Position::Start), "subscribe_all");
    assert_closed(
        other.subscribe_stream("with space", StreamPosition::Start),
        "subscribe_stream",
    );
    assert_closed(
        other.save_checkpoint("g", &"0".parse().unwrap()),
        "save_checkpoint",
    );
    assert_closed(other.load_checkpoint("g"), "load_checkpoint");
    assert_closed(other.rebuild_index(), "rebuild_index");
    drop(other);
    drop(clone);
    // Once every handle is gone it opens again, with its events.
    let store = EventStore::open(&log, "bad", written()).unwrap();
    assert_eq!(store.stream_version("with space").unwrap(), Some(0));
    drop(store);
    // A closed log.
    log.close().unwrap();
    assert_closed(
        EventStore::open(&log, "bad", written()),
        "open on a closed log",
    );
}

#[test]
fn store_on_a_closed_log_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "lc", written()).unwrap();
    store
        .append("s", ExpectedVersion::Any, &[ev("E", "x")])
        .unwrap();
    log.close().unwrap();
    let r = store.append("s", ExpectedVersion::Any, &[ev("E", "y")]);
    assert!(
        matches!(r, Err(Error::Closed)),
        "append after the log closed: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// More: failures of the index's derived data, crashes, concurrent deletes and readers

/// An append whose events are written must not report an error: the caller would take it as
/// "not written". Here the index table it flushes afterwards cannot be created.
#[test]
fn an_append_that_reports_an_error_wrote_nothing() {
    let sim = annals::storage::SimStorage::new();
    let log = TestLog::sim(&sim, "/sim/es").no_maintenance().open();
    let store = EventStore::open(&log, "flushfail", written().index_memtable_entries(16)).unwrap();
    let p = log.partition("flushfail", 0).unwrap();
    let mut model = Model::new();
    for _ in 0..10 {
        append_n(&store, &mut model, "s", 1);
    }
    sim.fail_when(
        annals::storage::SimOpKind::Open,
        ".estable",
        std::io::ErrorKind::StorageFull,
    );
    let mut failed = Vec::new();
    for i in 0..20 {
        let hw = p.high_watermark();
        let before = store.stream_version("s").unwrap();
        let e = ev("E", format!("during the fault {i}"));
        match store.append("s", ExpectedVersion::Any, std::slice::from_ref(&e)) {
            Ok(r) => {
                let m = model.get_mut("s").unwrap();
                assert_eq!(r.next_version, m.next_version + 1);
                m.append(&[e], &[format!("during the fault {i}")]);
            }
            Err(err) => {
                failed.push(format!("{err}"));
                assert_eq!(
                    (p.high_watermark(), store.stream_version("s").unwrap()),
                    (hw, before),
                    "append {i} returned {err} but its event was written"
                );
            }
        }
    }
    sim.clear_fault_hook();
    eprintln!("appends refused while tables could not be written: {failed:?}");
    append_n(&store, &mut model, "s", 1);
    check_model(&store, &model, "after the fault cleared");
}

/// A power loss keeps every `Synced` append, and the index never claims more than survived.
#[test]
fn power_loss_keeps_synced_appends_and_the_index_stays_consistent() {
    let seed = base_seed();
    let _guard = SeedGuard::new("power_loss_keeps_synced_appends", seed);
    for case in 0..cases(3) as u64 {
        for durability in [Durability::Synced, Durability::Written] {
            let sim = annals::storage::SimStorage::new();
            let config = EventStoreConfig::default()
                .durability(durability)
                .index_memtable_entries(16);
            let log = TestLog::sim(&sim, "/sim/es").no_maintenance().open();
            let store = EventStore::open(&log, "pl", config.clone()).unwrap();
            let mut rng = Rng::new(seed ^ case);
            let mut model = Model::new();
            let streams: Vec<String> = (0..4).map(|i| format!("p-{i}")).collect();
            for _ in 0..rng.usize(30, 90) {
                let s = rng.pick(&streams).clone();
                append_n(&store, &mut model, &s, rng.usize(1, 3));
            }
            let mode = if case % 2 == 0 {
                annals::storage::CrashMode::PowerLossDropUnsynced
            } else {
                annals::storage::CrashMode::PowerLossTorn { seed: seed ^ case }
            };
            sim.crash(mode);
            std::mem::forget(store);
            std::mem::forget(log);
            let ctx = format!("case {case}, {durability:?}, {mode:?}");
            let log = TestLog::sim(&sim, "/sim/es").no_maintenance().open();
            let store = EventStore::open(&log, "pl", config.clone())
                .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
            if durability == Durability::Synced {
                check_model(&store, &model, &ctx);
            } else {
                // What survived is a prefix of each stream; the model becomes it.
                for (s, m) in model.iter_mut() {
                    let got = store.read_stream(s, 0, usize::MAX).unwrap();
                    let n = got.len();
                    assert!(n <= m.events.len(), "{ctx}: {s} grew");
                    let want: Vec<Uuid> = m.events[..n].iter().map(|e| e.1).collect();
                    assert_eq!(ids(&got), want, "{ctx}: {s} is a prefix");
                    assert_eq!(
                        store.stream_version(s).unwrap(),
                        got.last().map(|e| e.version)
                    );
                    m.events.truncate(n);
                    m.next_version = n as u64;
                }
            }
            for s in &streams {
                append_n(&store, &mut model, s, 2);
            }
            check_model(&store, &model, &format!("{ctx}: appended after the crash"));
            store.close().unwrap();
            drop(store);
            log.close().unwrap();
            let log = TestLog::sim(&sim, "/sim/es").no_maintenance().open();
            let store = EventStore::open(&log, "pl", config).unwrap();
            check_model(&store, &model, &format!("{ctx}: reopened cleanly"));
        }
    }
}

/// Readers never see a gap or a version going back while writers append and a deleter
/// deletes, and every append's result matches what the stream then holds.
#[test]
fn concurrent_appends_deletes_and_reads_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "conc", written().index_memtable_entries(64)).unwrap();
    let rounds = env_usize("ANNALS_ES_CONC_ROUNDS", 150);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut last_next = 0;
                for i in 0..rounds {
                    let r = store
                        .append("hot", ExpectedVersion::Any, &[ev("W", format!("{w}/{i}"))])
                        .unwrap();
                    assert!(r.next_version > last_next, "next_version went back");
                    last_next = r.next_version;
                    store
                        .append(&format!("own-{w}"), ExpectedVersion::Any, &[ev("O", "o")])
                        .unwrap();
                }
            })
        })
        .collect();
    let deleter = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut deletes = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match store.stream_version("hot").unwrap() {
                    Some(v) if deletes % 2 == 0 => {
                        // Exact may lose to a writer; that is a conflict, not an error.
                        match store.delete_stream("hot", ExpectedVersion::Exact(v)) {
                            Ok(()) | Err(Error::WrongExpectedVersion { .. }) => {}
                            Err(e) => panic!("delete: {e}"),
                        }
                    }
                    Some(v) => store.truncate_stream("hot", v).unwrap(),
                    None => {}
                }
                deletes += 1;
                std::thread::yield_now();
            }
            deletes
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0;
                let mut high = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let events = store.read_stream("hot", 0, usize::MAX).unwrap();
                    let vs = versions(&events);
                    assert!(
                        vs.windows(2).all(|w| w[1] == w[0] + 1),
                        "a read of hot has a gap: {vs:?}"
                    );
                    if let Some(&last) = vs.last() {
                        assert!(last + 1 >= high, "hot went back from {high} to {last}");
                        high = last + 1;
                    }
                    let back = store.read_stream_backward("hot", None, 5).unwrap();
                    assert!(back.windows(2).all(|w| w[1].version + 1 == w[0].version));
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a writer panicked");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let deletes = deleter.join().expect("the deleter panicked");
    let reads: usize = readers
        .into_iter()
        .map(|r| r.join().expect("a reader panicked"))
        .sum();
    eprintln!("concurrent: {deletes} deletes, {reads} reads");
    // Every version of hot was handed out once: the last is the number of appends - 1.
    let total = 3 * rounds as u64;
    let all = store.read_stream("hot", 0, usize::MAX).unwrap();
    if let Some(last) = all.last() {
        assert_eq!(last.version, total - 1);
    }
    let r = store
        .append("hot", ExpectedVersion::Any, &[ev("W", "end")])
        .unwrap();
    assert_eq!(
        r.next_version,
        total + 1,
        "no version handed out twice or skipped"
    );
    for w in 0..3 {
        assert_eq!(
            store.stream_version(&format!("own-{w}")).unwrap(),
            Some(rounds as u64 - 1)
        );
    }
    store.close().unwrap();
    drop(store);
    let store = EventStore::open(&log, "conc", written()).unwrap();
    let again = store.read_stream("hot", 0, usize::MAX).unwrap();
    assert_eq!(again.last().map(|e| e.version), Some(total));
}

/// A delete of a long stream writes its tombstones outside the partition's slot: appends to
/// other streams of the partition meanwhile must still succeed.
#[test]
fn appends_succeed_while_a_long_stream_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "longdel", written()).unwrap();
    let n = env_usize("ANNALS_ES_LONG_STREAM", 40_000);
    let mut model = Model::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(2000);
        append_n(&store, &mut model, "long", k);
        left -= k;
    }
    let appender = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            for i in 0..300 {
                if let Err(e) =
                    store.append("small", ExpectedVersion::Any, &[ev("S", i.to_string())])
                {
                    failures.push(e.to_string());
                }
            }
            failures
        })
    };
    store.delete_stream("long", ExpectedVersion::Any).unwrap();
    let failures = appender.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} appends failed during the delete, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(store.stream_version("long").unwrap(), None);
    assert_eq!(store.stream_version("small").unwrap(), Some(299));
}

#[test]
fn colliding_streams_keep_their_own_snapshots_and_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "collsnap", colliding()).unwrap();
    let mut model = Model::new();
    for i in 0..40 {
        append_n(&store, &mut model, ["a", "b", "c"][i % 3], 1 + i % 2);
    }
    for (i, s) in ["a", "b", "c"].iter().enumerate() {
        store
            .save_snapshot(s, i as u64 + 1, format!("snap-{s}"))
            .unwrap();
    }
    for (i, s) in ["a", "b", "c"].iter().enumerate() {
        let snap = store.load_snapshot(s).unwrap().unwrap();
        assert_eq!(
            (snap.version, snap.data),
            (i as u64 + 1, Bytes::from(format!("snap-{s}")))
        );
        let loaded = store.load(s, |s| Some(s.version)).unwrap();
        let want: Vec<u64> = model[*s]
            .events
            .iter()
            .map(|e| e.0)
            .filter(|v| *v > i as u64 + 1)
            .collect();
        assert_eq!(versions(&loaded.events), want, "{s}");
    }
    assert_eq!(store.load_snapshot("d").unwrap(), None);
    let mut sub = store.subscribe_stream("b", StreamPosition::Start).unwrap();
    let n = model["b"].events.len();
    let got = take_n(|t| sub.next(t), n, "b");
    assert_eq!(versions(&got), (0..n as u64).collect::<Vec<_>>());
    assert!(got.iter().all(|e| e.stream == "b"));
}

#[test]
fn checkpoints_past_the_end_resume_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "cpend", written()).unwrap();
    let mut model = Model::new();
    append_n(&store, &mut model, "s", 5);
    let mut sub = store
        .subscribe_all(Position::After("1000".parse().unwrap()))
        .unwrap();
    assert!(sub.next(Duration::from_millis(50)).unwrap().is_none());
    append_n(&store, &mut model, "s", 1);
    let e = sub.next(hang_bound()).unwrap().unwrap();
    assert_eq!(e.version, 5);
    assert_eq!(sub.checkpoint().offsets(), &[6]);
    // A checkpoint from before anything was appended reads everything.
    let mut sub = store
        .subscribe_all(Position::After("0".parse().unwrap()))
        .unwrap();
    assert_eq!(
        versions(&take_n(|t| sub.next(t), 6, "from 0")),
        [0, 1, 2, 3, 4, 5]
    );
}

/// A delete writes one tombstone per deleted event, keyed like the event: with long stream
/// names those batches must still fit the topic's `max_message_bytes` (default 1 MiB).
#[test]
fn deleting_a_long_named_stream_with_many_events_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "longname", written()).unwrap();
    let name = format!("tenant-{}", "n".repeat(600));
    let mut model = Model::new();
    for _ in 0..4 {
        append_n(&store, &mut model, &name, 500);
    }
    let r = store.delete_stream(&name, ExpectedVersion::Any);
    assert!(
        r.is_ok(),
        "deleting 2000 events of a 607-byte stream name: {r:?}"
    );
    assert_eq!(store.stream_version(&name).unwrap(), None);
    let r = store.truncate_stream(&name, 1);
    assert!(r.is_ok(), "{r:?}");
}

/// A store's topics cannot be deleted under it; deleted once it is closed, they take the index
/// with them, so a store opened again under the name starts empty and indexes afresh.
#[test]
fn deleting_a_stores_topics_takes_its_index_along() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "gone", written()).unwrap();
    for i in 0..5 {
        store
            .append("s", ExpectedVersion::Any, &[ev("E", format!("old {i}"))])
            .unwrap();
    }
    for topic in ["gone", "gone.snapshots"] {
        let err = log.delete_topic(topic).unwrap_err();
        assert!(err.to_string().contains("is open"), "{err}");
    }
    store.close().unwrap();
    drop(store);
    log.delete_topic("gone").unwrap();
    log.delete_topic("gone.snapshots").unwrap();
    let store = EventStore::open(&log, "gone", written()).unwrap();
    assert_eq!(store.stream_version("s").unwrap(), None);
    let r = store
        .append("s", ExpectedVersion::NoStream, &[ev("E", "new")])
        .unwrap();
    assert_eq!(r.next_version, 1);
    let events = store.read_stream("s", 0, 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data_str(), Some("new"));
}

/// A clean close leaves nothing to replay at the next open; a crash leaves at most what the
/// memtable held (plus one append), never the whole log.
#[test]
fn reopen_replays_nothing_after_a_clean_close_and_little_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = || written().index_memtable_entries(64);
    {
        let log = open_log(dir.path());
        let store = EventStore::open(&log, "replay", config()).unwrap();
        for i in 0..1000 {
            store
                .append(
                    &format!("s-{}", i % 37),
                    ExpectedVersion::Any,
                    &[ev("E", "x")],
                )
                .unwrap();
        }
        store.close().unwrap();
        drop(store);
        log.close().unwrap();
    }
    let log = open_log(dir.path());
    let store = EventStore::open(&log, "replay", config()).unwrap();
    assert_eq!(store.index_replayed_at_open(), vec![0]);
    for i in 0..1000 {
        store
            .append(
                &format!("s-{}", i % 37),
                ExpectedVersion::Any,
                &[ev("E", "y")],
            )
            .unwrap();
    }
    // A crash of the process: the store's memtable is lost, the log (written) is not.
    std::mem::forget(store);
    drop(log);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let log = open_log(copy.path());
    let store = EventStore::open(&log, "replay", config()).unwrap();
    let replayed = store.index_replayed_at_open()[0];
    assert!(
        replayed <= 64,
        "replayed {replayed} records after the crash"
    );
    for s in 0..37 {
        let stream = format!("s-{s}");
        let n = store.read_stream(&stream, 0, usize::MAX).unwrap().len();
        let expected = 2 * (0..1000).filter(|i| i % 37 == s).count();
        assert_eq!(n, expected, "{stream}");
    }
}
