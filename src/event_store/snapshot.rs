//! Snapshots: a stream's state as of a version, kept in the compacted `<name>.snapshots`
//! topic keyed by stream (so compaction keeps the latest of each), found through that topic's
//! own stream index, and loaded as "latest snapshot + the events after it".

use bytes::Bytes;

use super::event::RecordedEvent;
use super::index::StreamIndex;
use super::state::for_each_record;
use super::{Access, EventStore, Slot};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::format::{Record, StoredRecord};

/// Header holding the version a snapshot was taken at, 8 bytes big-endian.
const VERSION_HEADER: &str = "es-version";

/// A stream's state as of `version`, as the application encoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    pub stream: String,
    /// The version of the last event the snapshot includes.
    pub version: u64,
    pub data: Bytes,
    /// When it was saved, in milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// What [`EventStore::load`] found: the state decoded from the latest usable snapshot, if
/// any, and the events after it (all of them without one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Loaded<T> {
    pub state: Option<T>,
    /// The version the decoded snapshot includes (`None`: no snapshot was used).
    pub snapshot_version: Option<u64>,
    /// Events to apply on top of `state`, oldest first.
    pub events: Vec<RecordedEvent>,
    /// The stream's last version, for the next append's [`ExpectedVersion::Exact`]
    /// (`None`: no events).
    ///
    /// [`ExpectedVersion::Exact`]: super::ExpectedVersion::Exact
    pub version: Option<u64>,
}

/// How the snapshots index reads a record.
pub(super) fn record_key(r: &StoredRecord) -> Option<(&str, u64)> {
    r.value.as_ref()?;
    let stream = std::str::from_utf8(r.key.as_deref()?).ok()?;
    Some((stream, snapshot_version(r)?))
}

fn snapshot_version(r: &StoredRecord) -> Option<u64> {
    let h = r.headers.iter().find(|h| h.key == VERSION_HEADER)?;
    version_of(h.value.as_deref()?)
}

fn version_of(header: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(header.try_into().ok()?))
}

impl EventStore {
    /// Saves `data` as `stream`'s state after the event at `version`, replacing its earlier
    /// snapshots (compaction removes them).
    ///
    /// Errors: [`Error::InvalidArgument`] if the stream has no event at `version` (never
    /// written, or deleted), [`Error::StreamDeleted`], an invalid name, I/O.
    pub fn save_snapshot(
        &self,
        stream: &str,
        version: u64,
        data: impl crate::Payload,
    ) -> Result<()> {
        let (p, _, state) = self.live_state(stream)?;
        if state.actual().is_none_or(|last| version > last) || version < state.meta.truncate_before
        {
            return Err(Error::InvalidArgument(format!(
                "stream {stream:?} has no event at version {version} to snapshot (its last \
                 version is {:?})",
                state.actual()
            )));
        }
        let snapshots = &self.inner.snapshots[p as usize];
        let record = Record::new(data)
            .key(stream.to_string())
            .header(
                VERSION_HEADER,
                Bytes::copy_from_slice(&version.to_be_bytes()),
            )
            .timestamp(now_ms());
        snapshots.locked(Access::Write, |index| {
            for attempt in 0..super::RACE_RETRIES {
                if attempt > 0 {
                    index.catch_up(&snapshots.partition)?;
                }
                let written = snapshots.append_at_end(index, std::slice::from_ref(&record))?;
                if let Some(offset) = written {
                    index.insert(stream, version, offset);
                    return Ok(());
                }
            }
            Err(super::kept_racing(
                format!("save a snapshot of stream {stream:?}"),
                &format!("{}{}", self.inner.name, super::SNAPSHOTS_SUFFIX),
                Some(p),
            ))
        })?;
        self.acknowledge(&snapshots.partition)
    }

    /// `stream`'s latest snapshot, if it has one taken after its last delete.
    ///
    /// Errors: [`Error::StreamDeleted`], an invalid name, I/O.
    pub fn load_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        let (p, _, state) = self.live_state(stream)?;
        if state.actual().is_none() {
            return Ok(None);
        }
        let live_from = state.meta.truncate_before;
        let snapshots = &self.inner.snapshots[p as usize];
        snapshots.locked(Access::Read, |index| {
            newest_snapshot(snapshots, index, stream, live_from)
        })
    }

    /// Loads `stream` the way an aggregate is loaded: its latest snapshot, decoded by
    /// `decode`, and the events after it. A snapshot that `decode` refuses (`None`: an old
    /// format, say) is ignored and every event is returned instead.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// let store = EventStore::open(&log, "counters", EventStoreConfig::default())?;
    /// let add = |n: u32| NewEvent::new("Added", n.to_string());
    /// store.append("c-1", ExpectedVersion::Any, &[add(1), add(2)])?;
    /// store.save_snapshot("c-1", 1, "3")?; // the sum after version 1
    /// store.append("c-1", ExpectedVersion::Any, &[add(4)])?;
    /// let loaded = store.load("c-1", |s| std::str::from_utf8(&s.data).ok()?.parse::<u32>().ok())?;
    /// let sum = loaded.events.iter().fold(loaded.state.unwrap_or(0), |sum, e| {
    ///     sum + e.data_str().unwrap().parse::<u32>().unwrap()
    /// });
    /// assert_eq!((sum, loaded.version), (7, Some(2)));
    /// # Ok(()) }
    /// ```
    ///
    /// Errors: as [`read_stream`](Self::read_stream).
    pub fn load<T>(
        &self,
        stream: &str,
        decode: impl FnOnce(&Snapshot) -> Option<T>,
    ) -> Result<Loaded<T>> {
        let snapshot = self.load_snapshot(stream)?;
        let decoded = snapshot
            .as_ref()
            .and_then(|s| Some((decode(s)?, s.version)));
        let from = decoded.as_ref().map_or(0, |(_, v)| v + 1);
        let events = self.read_stream(stream, from, usize::MAX)?;
        let version = match (events.last(), &decoded) {
            (Some(e), _) => Some(e.version),
            (None, Some((_, v))) => Some(*v),
            (None, None) => self.stream_version(stream)?,
        };
        let (state, snapshot_version) = match decoded {
            Some((s, v)) => (Some(s), Some(v)),
            None => (None, None),
        };
        Ok(Loaded {
            state,
            snapshot_version,
            events,
            version,
        })
    }
}

/// The newest snapshot of `stream` in `slot` (a partition of the snapshots topic) taken at
/// `live_from` or later. Compaction leaves only the latest record of a key, and a hash
/// collision's records have another key, so the newest record with the stream's key wins.
pub(super) fn newest_snapshot(
    slot: &Slot,
    index: &StreamIndex,
    stream: &str,
    live_from: u64,
) -> Result<Option<Snapshot>> {
    let entries = index.scan(index.hash(stream), live_from, u64::MAX)?;
    let mut offsets: Vec<u64> = entries.iter().map(|e| e.offset).collect();
    offsets.sort_unstable();
    let mut newest = None;
    for_each_record(&slot.partition, &offsets, |bytes, r| {
        if r.key != Some(stream.as_bytes()) {
            return Ok(());
        }
        let version = r
            .headers()
            .find(|(k, _)| *k == VERSION_HEADER)
            .and_then(|(_, v)| version_of(v?));
        if let (Some(version), Some(data)) = (version.filter(|v| *v >= live_from), r.value) {
            // Ascending offsets: the last one seen is the newest.
            newest = Some(Snapshot {
                stream: stream.to_string(),
                version,
                data: bytes.slice_ref(data),
                timestamp: r.timestamp,
            });
        }
        Ok(())
    })?;
    Ok(newest)
}
