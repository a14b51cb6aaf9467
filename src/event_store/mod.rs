//! [`EventStore`]: streams of events with optimistic concurrency on top of a topic.
//!
//! One topic holds the events (`<name>`), one compacted topic the snapshots
//! (`<name>.snapshots`). A stream lives in one partition, chosen by Kafka's murmur2
//! partitioner applied to its name, so its events are one ordered run there. Each partition
//! has a [stream index](index) beside the log, under `<log dir>/__event_store/<name>/`.
//!
//! An append takes the partition's slot mutex (which serialises the store's writers of that
//! partition), brings the index up to the log's end, checks the expected version, and writes
//! all its events as one batch through [`Partition::append_if`], whose check runs under the
//! partition's writer lock and refuses the write if anything else was appended since the
//! index looked. The index is updated before the mutex is released; a `Synced` append then
//! waits for its fsync outside it, so concurrent appenders share fsyncs.
//!
//! See `docs/EVENT_STORE.md` for the guide and `docs/ARCHITECTURE.md` for the crash story.

mod append_many;
mod config;
mod event;
pub(crate) mod index;
mod lifecycle;
mod snapshot;
mod state;
mod subscription;
#[cfg(feature = "serde")]
mod typed;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::now_ms;
use crate::config::{CleanupPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::format::{Record, StoredRecord};
use crate::log::Log;
use crate::partition::{validate_topic_name, Partition};
use crate::producer::{partition_for_key, Durability};
pub use append_many::StreamAppend;
pub use config::EventStoreConfig;
use event::{decode_event, parse_key, validate_stream_name, KeyKind};
pub use event::{
    AppendResult, EventPosition, ExpectedVersion, NewEvent, RecordedEvent, MAX_STREAM_NAME_LEN,
};
use index::{IndexParams, StreamIndex};
pub use snapshot::{Loaded, Snapshot};
use state::{for_each_record, stream_state, StreamState};
pub use subscription::{Checkpoint, Position, StreamPosition, StreamSubscription, Subscription};
#[cfg(feature = "serde")]
pub use typed::DomainEvent;

/// The directory, inside the log's, that holds every event store's indexes.
pub(crate) const EVENT_STORE_DIR: &str = "__event_store";
/// Suffix of the snapshots topic's name.
pub(crate) const SNAPSHOTS_SUFFIX: &str = ".snapshots";
/// Most appends an append retries after finding that something else wrote to the partition
/// between its check and its write.
const RACE_RETRIES: usize = 8;

/// An event store in a [`Log`]: named streams of events, each appended to with an expected
/// version and read forward, backward or by subscription. Cheap to clone; clones share the
/// store. It keeps its log open.
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path())?;
/// let store = EventStore::open(&log, "bank", EventStoreConfig::default())?;
/// let r = store.append("account-42", ExpectedVersion::NoStream,
///     &[NewEvent::new("Opened", r#"{"owner":"ann"}"#)])?;
/// store.append("account-42", ExpectedVersion::Exact(r.next_version - 1),
///     &[NewEvent::new("Deposited", r#"{"amount":10}"#)])?;
/// // A writer that read version 0 and lost the race is told where the stream really is:
/// let err = store.append("account-42", ExpectedVersion::Exact(0),
///     &[NewEvent::new("Deposited", r#"{"amount":99}"#)]).unwrap_err();
/// assert!(matches!(err, annals::Error::WrongExpectedVersion { actual: Some(1), .. }));
/// let events = store.read_stream("account-42", 0, 100)?;
/// assert_eq!(events.len(), 2);
/// assert_eq!(events[1].event_type, "Deposited");
/// assert_eq!(store.stream_version("account-42")?, Some(1));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct EventStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    log: Log,
    name: String,
    config: EventStoreConfig,
    events: Vec<Slot>,
    snapshots: Vec<Slot>,
    /// Whether the events topic compacts: switched on by the first delete, so a store that
    /// never deletes never pays for compaction passes over its (unique-keyed) events.
    compacting: AtomicBool,
    closed: AtomicBool,
    /// The transactional producer of `append_many`, started by its first call. Taken before
    /// any slot mutex.
    txn_producer: Mutex<Option<crate::producer::Producer>>,
}

/// One partition and its index. The mutex serialises the store's writers of the partition
/// and guards the index.
#[derive(Debug)]
struct Slot {
    partition: Partition,
    index: Mutex<StreamIndex>,
    /// Records the index read from the log when the store opened.
    replayed_at_open: u64,
}

/// What a call under [`Slot::locked`] does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    /// It may write: a full memtable is flushed first, so that a failed flush fails the call
    /// before anything is written, never after.
    Write,
}

impl Slot {
    /// Appends `records` if nothing was appended to the partition since the index's end (the
    /// check runs under the partition's writer lock); returns the offset of the last record, or
    /// `None` if something was (catch up and try again).
    fn append_at_end(&self, index: &StreamIndex, records: &[Record]) -> Result<Option<u64>> {
        let end = index.end();
        let mut raced = false;
        let written = self.partition.append_if(records, |base| {
            if base == end {
                Ok(())
            } else {
                raced = true;
                Err(Error::InvalidArgument("raced".into()))
            }
        });
        match written {
            Ok(base) => Ok(Some(base + records.len() as u64 - 1)),
            Err(_) if raced => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `f` with the index locked and caught up with the log. If `f` meets a damaged index
    /// table, the damaged part of the index is dropped and rebuilt from the log, and `f` runs
    /// again: a damaged table costs a replay, never a wrong answer or a stuck store.
    fn locked<T>(
        &self,
        access: Access,
        mut f: impl FnMut(&mut StreamIndex) -> Result<T>,
    ) -> Result<T> {
        let mut index = self.index.lock();
        let prepare = |index: &mut StreamIndex| -> Result<()> {
            index.catch_up(&self.partition)?;
            if access == Access::Write && index.is_full() {
                index.flush(&self.partition)?;
            }
            Ok(())
        };
        match prepare(&mut index).and_then(|()| f(&mut index)) {
            Err(e) if index.repair(&e, &self.partition)? => {
                prepare(&mut index)?;
                f(&mut index)
            }
            other => other,
        }
    }
}

impl EventStore {
    /// Opens the event store `name` in `log`, creating its topics on first use, and brings
    /// its indexes up to date with the log (replaying what they had not recorded).
    ///
    /// Errors: an invalid name ([`Error::InvalidTopicName`]) or configuration
    /// ([`Error::InvalidConfig`]); [`Error::InvalidArgument`] if the store is already open in
    /// this log (share the handle: it is `Clone`), or if its topics exist with another shape
    /// (a snapshots topic that does not compact, partition counts that differ);
    /// [`Error::Closed`]; I/O.
    pub fn open(log: &Log, name: &str, config: EventStoreConfig) -> Result<EventStore> {
        config.validate()?;
        let snapshots_topic = format!("{name}{SNAPSHOTS_SUFFIX}");
        validate_topic_name(name)?;
        validate_topic_name(&snapshots_topic)?;
        let registration = log.register_event_store(name)?;
        let topic = TopicConfig::default()
            .partitions(config.partitions)
            .compression(config.compression)
            .segment_bytes(config.segment_bytes);
        create_if_missing(log, name, topic.clone())?;
        let partitions = log.topic_config(name)?.partitions;
        let compacting = log.topic_config(name)?.compacts();
        let snapshots_config = topic
            .partitions(partitions)
            .cleanup_policy(CleanupPolicy::Compact);
        create_if_missing(log, &snapshots_topic, snapshots_config)?;
        let snap_config = log.topic_config(&snapshots_topic)?;
        if snap_config.partitions != partitions || !snap_config.compacts() {
            return Err(Error::InvalidArgument(format!(
                "topic {snapshots_topic:?} exists but is not event store {name:?}'s snapshots \
                 topic: it needs {partitions} partitions and compaction"
            )));
        }
        let base = log.dir().join(EVENT_STORE_DIR).join(name);
        let open_slots = |topic: &str, kind: &str, key_of: index::RecordKey| -> Result<Vec<Slot>> {
            (0..partitions)
                .map(|p| {
                    let partition = log.partition(topic, p)?;
                    let params = IndexParams {
                        storage: log.storage(),
                        dir: base.join(format!("{kind}-{p}")),
                        hasher: config.hasher.clone(),
                        fingerprint: config.fingerprint(),
                        memtable_limit: config.index_memtable_entries,
                        key_of,
                    };
                    let mut index = StreamIndex::open(params, &partition)?;
                    let replayed = index.catch_up(&partition)?;
                    Ok(Slot {
                        partition,
                        index: Mutex::new(index),
                        replayed_at_open: replayed,
                    })
                })
                .collect()
        };
        let events = open_slots(name, "events", event_record_key)?;
        let snapshots = open_slots(&snapshots_topic, "snapshots", snapshot::record_key)?;
        registration.keep();
        Ok(EventStore {
            inner: Arc::new(StoreInner {
                log: log.clone(),
                name: name.to_string(),
                config,
                events,
                snapshots,
                compacting: AtomicBool::new(compacting),
                closed: AtomicBool::new(false),
                txn_producer: Mutex::new(None),
            }),
        })
    }

    /// The store's name, which is also its events topic's.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The events topic's partition count.
    pub fn partitions(&self) -> u32 {
        self.inner.events.len() as u32
    }

    /// The partition of the events topic that holds `stream`: Kafka's murmur2 partitioner
    /// applied to the stream's name.
    pub fn partition_of(&self, stream: &str) -> u32 {
        partition_for_key(stream.as_bytes(), self.partitions())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn slot(&self, stream: &str) -> (u32, &Slot) {
        let p = self.partition_of(stream);
        (p, &self.inner.events[p as usize])
    }

    /// Appends `events` to `stream` if its version meets `expected`, atomically: the check and
    /// the write happen under the partition's writer lock, so of two appenders racing with the
    /// same expectation exactly one wins. All events of one call are one batch: they are
    /// written, and survive a crash, together. With [`Durability::Synced`] (the default) it
    /// returns once they are on stable storage.
    ///
    /// A retry is idempotent (except with [`ExpectedVersion::Any`]): when the expectation no
    /// longer holds because this very append already succeeded — the stream's events after
    /// the expected version carry the same ids, in order — it returns the first append's
    /// result instead of an error and writes nothing.
    ///
    /// Errors: [`Error::WrongExpectedVersion`] with the stream's actual version;
    /// [`Error::StreamDeleted`] for a tombstoned stream; [`Error::InvalidArgument`] for an
    /// invalid stream name or no events; [`Error::BatchTooLarge`] / [`Error::RecordTooLarge`]
    /// past the topic's `max_message_bytes`; [`Error::Closed`]; I/O (the partition is then
    /// poisoned and refuses writes).
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult> {
        self.check_open()?;
        validate_stream_name(stream)?;
        if events.is_empty() {
            return Err(Error::InvalidArgument(
                "an append needs at least one event".into(),
            ));
        }
        let (p, slot) = self.slot(stream);
        let result = slot.locked(Access::Write, |index| {
            self.append_locked(index, slot, p, stream, expected, events)
        })?;
        // A retry's events may have been written by a call that has not synced them yet (or
        // whose sync failed): it is acknowledged only as durable as a first write.
        self.acknowledge(&slot.partition)?;
        Ok(result
            .written
            .or(result.existing)
            .expect("an append either wrote or found its retry"))
    }

    /// The check and the write, under the slot's mutex, the index caught up.
    fn append_locked(
        &self,
        index: &mut StreamIndex,
        slot: &Slot,
        p: u32,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome> {
        let partition = &slot.partition;
        for attempt in 0..RACE_RETRIES {
            if attempt > 0 {
                index.catch_up(partition)?;
            }
            let state = stream_state(index, partition, stream)?;
            state.check_not_tombstoned(stream)?;
            if let Some(existing) =
                self.find_retry(index, p, partition, stream, expected, events, &state)?
            {
                return Ok(AppendOutcome {
                    written: None,
                    existing: Some(existing),
                });
            }
            if !expected.admits(state.actual()) {
                return Err(Error::WrongExpectedVersion {
                    stream: stream.to_string(),
                    expected,
                    actual: state.actual(),
                });
            }
            let first = state.next_version;
            let now = now_ms();
            let records: Vec<Record> = events
                .iter()
                .enumerate()
                .map(|(i, e)| e.to_record(stream, first + i as u64, now))
                .collect();
            let Some(last) = slot.append_at_end(index, &records)? else {
                continue;
            };
            let base = last + 1 - records.len() as u64;
            for i in 0..events.len() as u64 {
                index.insert(stream, first + i, base + i);
            }
            let n = events.len() as u64;
            return Ok(AppendOutcome {
                written: Some(AppendResult {
                    next_version: first + n,
                    position: EventPosition {
                        partition: p,
                        offset: base + n - 1,
                    },
                }),
                existing: None,
            });
        }
        Err(kept_racing(
            format!("append to stream {stream:?}"),
            &self.inner.name,
            Some(p),
        ))
    }

    /// Whether `events` are already the stream's events right after where `expected` put
    /// it: a retry of an append that succeeded. Returns that append's result.
    #[allow(clippy::too_many_arguments)]
    fn find_retry(
        &self,
        index: &StreamIndex,
        p: u32,
        partition: &Partition,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
        state: &StreamState,
    ) -> Result<Option<AppendResult>> {
        let n = events.len() as u64;
        let first = match expected {
            ExpectedVersion::Any => return Ok(None),
            ExpectedVersion::Exact(v) if Some(v) != state.actual() => match v.checked_add(1) {
                Some(first) => first,
                None => return Ok(None),
            },
            ExpectedVersion::NoStream if state.actual().is_some() => state.meta.truncate_before,
            // A retry of a StreamExists append finds its events at the end of the stream.
            ExpectedVersion::StreamExists if state.next_version >= n => state.next_version - n,
            _ => return Ok(None),
        };
        if first < state.meta.truncate_before
            || first
                .checked_add(n)
                .is_none_or(|end| end > state.next_version)
        {
            return Ok(None);
        }
        let found = read_range(index, partition, p, stream, first, first + n - 1)?;
        let same =
            found.len() == events.len() && found.iter().zip(events).all(|(f, e)| f.id == e.id);
        Ok(same.then(|| AppendResult {
            next_version: first + n,
            position: found.last().expect("n >= 1").position,
        }))
    }

    /// Waits for the durability the configuration asks of an acknowledged write.
    fn acknowledge(&self, partition: &Partition) -> Result<()> {
        if self.inner.config.durability == Durability::Synced {
            partition.sync()?;
        }
        Ok(())
    }

    /// `stream`'s last version: `None` if it has no events (never written, or deleted).
    ///
    /// Errors: [`Error::StreamDeleted`] for a tombstoned stream, an invalid name, I/O.
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>> {
        Ok(self.live_state(stream)?.2.actual())
    }

    /// `stream`'s partition, slot and state, after the checks every call on one stream makes:
    /// the store is open, the name valid, the stream not tombstoned.
    fn live_state(&self, stream: &str) -> Result<(u32, &Slot, StreamState)> {
        self.check_open()?;
        validate_stream_name(stream)?;
        let (p, slot) = self.slot(stream);
        let state = slot.locked(Access::Read, |index| {
            stream_state(index, &slot.partition, stream)
        })?;
        state.check_not_tombstoned(stream)?;
        Ok((p, slot, state))
    }

    /// Up to `max` events of `stream` from version `from` on, oldest first. Reads only the
    /// stream's own events (through the index), never the partition around them. Deleted
    /// events are skipped; a stream that does not exist reads as empty.
    ///
    /// Errors: [`Error::StreamDeleted`] for a tombstoned stream, an invalid name, I/O.
    pub fn read_stream(&self, stream: &str, from: u64, max: usize) -> Result<Vec<RecordedEvent>> {
        self.read(stream, Direction::Forward(from), max)
    }

    /// Up to `max` events of `stream`, newest first, from version `from` (`None`: its last)
    /// backwards.
    ///
    /// Errors: as [`read_stream`](Self::read_stream).
    pub fn read_stream_backward(
        &self,
        stream: &str,
        from: Option<u64>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.read(stream, Direction::Backward(from), max)
    }

    fn read(&self, stream: &str, direction: Direction, max: usize) -> Result<Vec<RecordedEvent>> {
        self.check_open()?;
        validate_stream_name(stream)?;
        let (p, slot) = self.slot(stream);
        if max == 0 {
            // Still an error for a tombstoned stream, as every read.
            self.live_state(stream)?;
            return Ok(Vec::new());
        }
        let span = max as u64 - 1;
        slot.locked(Access::Read, |index| {
            let partition = &slot.partition;
            let (lo, hi) = match direction {
                // A forward read needs only the metadata: the scan ends where the stream does.
                Direction::Forward(from) => {
                    let meta = state::stream_meta(index, partition, stream)?;
                    meta.check_not_tombstoned(stream)?;
                    let lo = from.max(meta.truncate_before);
                    // Below the metadata entries' version, which no event has.
                    (lo, lo.saturating_add(span).min(index::META_VERSION - 1))
                }
                Direction::Backward(from) => {
                    let state = stream_state(index, partition, stream)?;
                    state.check_not_tombstoned(stream)?;
                    let Some(last) = state.actual() else {
                        return Ok(Vec::new());
                    };
                    let hi = from.unwrap_or(last).min(last);
                    (hi.saturating_sub(span).max(state.meta.truncate_before), hi)
                }
            };
            if lo > hi {
                return Ok(Vec::new());
            }
            let mut events = read_range(index, partition, p, stream, lo, hi)?;
            if matches!(direction, Direction::Backward(_)) {
                events.reverse();
            }
            Ok(events)
        })
    }

    /// Writes every index's memtable to disk, so that the next open replays nothing, and
    /// marks this store closed (every handle then returns [`Error::Closed`]). The log stays
    /// open. Dropping the last handle does the same, ignoring errors.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.flush_indexes()
    }

    /// Throws away every index of the store and rebuilds them from the log. Damaged tables are
    /// rebuilt by themselves; this is for when the index directory was tampered with (say,
    /// restored from another backup than the log). Takes as long as reading both topics.
    pub fn rebuild_index(&self) -> Result<()> {
        self.check_open()?;
        for slot in self.inner.events.iter().chain(&self.inner.snapshots) {
            let mut index = slot.index.lock();
            index.clear(&slot.partition)?;
            index.catch_up(&slot.partition)?;
        }
        Ok(())
    }

    /// How many index tables each partition of the events topic has on disk (for tests and
    /// the docs' cost model).
    #[doc(hidden)]
    pub fn index_tables(&self) -> Vec<usize> {
        self.inner
            .events
            .iter()
            .map(|s| s.index.lock().table_count())
            .collect()
    }

    /// How many records of each partition of the events topic the index replayed from the log
    /// when this store opened: 0 after a clean close, at most about `index_memtable_entries`
    /// after a crash (for tests and the docs' cost model).
    #[doc(hidden)]
    pub fn index_replayed_at_open(&self) -> Vec<u64> {
        self.inner
            .events
            .iter()
            .map(|s| s.replayed_at_open)
            .collect()
    }

    /// The directory of the indexes.
    #[doc(hidden)]
    pub fn index_dir(&self) -> PathBuf {
        self.inner
            .log
            .dir()
            .join(EVENT_STORE_DIR)
            .join(&self.inner.name)
    }
}

impl StoreInner {
    fn flush_indexes(&self) -> Result<()> {
        let mut first_error = None;
        for slot in self.events.iter().chain(&self.snapshots) {
            let mut index = slot.index.lock();
            if let Err(e) = index
                .catch_up(&slot.partition)
                .and_then(|_| index.flush(&slot.partition))
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            // Best effort: an index that is not flushed is replayed from the log at open.
            let _ = self.flush_indexes();
        }
        self.log.unregister_event_store(&self.name);
    }
}

struct AppendOutcome {
    written: Option<AppendResult>,
    existing: Option<AppendResult>,
}

#[derive(Clone, Copy)]
enum Direction {
    Forward(u64),
    Backward(Option<u64>),
}

/// The events of `stream` with versions `lo..=hi`, oldest first, each verified against its
/// record (so a hash collision or a removed record yields nothing).
fn read_range(
    index: &StreamIndex,
    partition: &Partition,
    p: u32,
    stream: &str,
    lo: u64,
    hi: u64,
) -> Result<Vec<RecordedEvent>> {
    let entries = index.scan(index.hash(stream), lo, hi)?;
    let mut offsets: Vec<u64> = entries.iter().map(|e| e.offset).collect();
    offsets.sort_unstable();
    offsets.dedup();
    let mut events = Vec::with_capacity(offsets.len());
    for_each_record(partition, &offsets, |bytes, r| {
        let Some(KeyKind::Event {
            stream: found,
            version,
        }) = r.key.and_then(parse_key)
        else {
            return Ok(());
        };
        let Some(value) = r.value.filter(|_| found == stream) else {
            return Ok(());
        };
        let position = EventPosition {
            partition: p,
            offset: r.offset,
        };
        let headers = r.headers().map(|(k, v)| (k, v.map(|v| bytes.slice_ref(v))));
        let value = bytes.slice_ref(value);
        events.extend(decode_event(
            stream,
            version,
            position,
            r.timestamp,
            value,
            headers,
        ));
        Ok(())
    })?;
    events.sort_by_key(|e| e.version);
    events.dedup_by_key(|e| e.version);
    Ok(events)
}

/// How the events index reads a record: events and metadata records, not tombstones.
fn event_record_key(r: &StoredRecord) -> Option<(&str, u64)> {
    r.value.as_ref()?;
    match parse_key(r.key.as_deref()?)? {
        KeyKind::Event { stream, version } => Some((stream, version)),
        KeyKind::Meta { stream } => Some((stream, index::META_VERSION)),
    }
}

/// The error of a write that gave up after [`RACE_RETRIES`] attempts: every time, something
/// other than the store had written to the partition between its check and its write.
fn kept_racing(action: String, topic: &str, partition: Option<u32>) -> Error {
    let place = match partition {
        Some(p) => format!("partition {p} of topic {topic:?}"),
        None => format!("the partitions of topic {topic:?}"),
    };
    Error::InvalidArgument(format!(
        "could not {action}: {place} kept being written by something other than this event \
         store"
    ))
}

/// Creates the topic unless it exists. An index left of an earlier topic of the name (one
/// deleted while the log was closed, or by a crash between the deletion and the removal of its
/// index) is removed first, so a new topic is indexed afresh.
fn create_if_missing(log: &Log, name: &str, config: TopicConfig) -> Result<()> {
    if !log.has_topic(name) {
        log.remove_event_store_index(name)?;
        log.create_topic_if_missing(name, config)?;
    }
    Ok(())
}
