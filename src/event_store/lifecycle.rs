//! Deleting streams: soft delete and truncation (the stream can be written again, its
//! versions continuing) and tombstoning (the name is gone for good).
//!
//! A delete is a metadata record keyed `"<stream>@meta"` in the stream's partition, which
//! reads and version checks obey at once, followed by a tombstone per deleted event, which
//! compaction uses to reclaim the space (the events topic is switched to compaction by the
//! first delete). A crash between the two leaves the events deleted for readers and their
//! space unreclaimed until the stream is deleted again.

use std::sync::atomic::Ordering;

use super::event::{event_key, meta_key, ExpectedVersion};
use super::state::{stream_state, StreamMeta};
use super::{Access, EventStore};
use crate::config::CleanupPolicy;
use crate::error::{Error, Result};
use crate::format::Record;

/// Bytes a tombstone takes in a batch beyond its key: the record's fields and varints, and
/// the version digits (at most 20) of the key.
const TOMBSTONE_OVERHEAD: u64 = 48;

impl EventStore {
    /// Soft-deletes `stream` if its version meets `expected`: its events are no longer read,
    /// [`stream_version`](Self::stream_version) says `None`, and the stream can be written
    /// again (with [`ExpectedVersion::NoStream`]), its versions continuing after the deleted
    /// ones. Its snapshot goes too. Deleting a stream with no events is a no-op.
    ///
    /// Errors: [`Error::WrongExpectedVersion`], [`Error::StreamDeleted`], an invalid name, I/O.
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        self.change_meta(stream, Some(expected), |state| StreamMeta {
            truncate_before: state.next_version,
            tombstoned: false,
        })
    }

    /// Deletes `stream` for good if its version meets `expected`: every later read, append
    /// or delete of the name fails with [`Error::StreamDeleted`].
    ///
    /// Errors: as [`delete_stream`](Self::delete_stream).
    pub fn tombstone_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        self.change_meta(stream, Some(expected), |state| StreamMeta {
            truncate_before: state.next_version,
            tombstoned: true,
        })
    }

    /// Deletes the events of `stream` below version `before` (KurrentDB's `$tb`), keeping the
    /// rest; a `before` past the stream's end deletes every event, as
    /// [`delete_stream`](Self::delete_stream) does. Never undoes an earlier truncation.
    ///
    /// Errors: [`Error::StreamDeleted`], an invalid name, I/O.
    pub fn truncate_stream(&self, stream: &str, before: u64) -> Result<()> {
        self.change_meta(stream, None, |state| StreamMeta {
            truncate_before: state
                .meta
                .truncate_before
                .max(before.min(state.next_version)),
            tombstoned: false,
        })
    }

    fn change_meta(
        &self,
        stream: &str,
        expected: Option<ExpectedVersion>,
        change: impl Fn(&super::state::StreamState) -> StreamMeta,
    ) -> Result<()> {
        self.check_open()?;
        super::event::validate_stream_name(stream)?;
        let (p, slot) = self.slot(stream);
        let deleted = slot.locked(Access::Write, |index| {
            for attempt in 0..super::RACE_RETRIES {
                if attempt > 0 {
                    index.catch_up(&slot.partition)?;
                }
                let state = stream_state(index, &slot.partition, stream)?;
                state.check_not_tombstoned(stream)?;
                if let Some(expected) = expected {
                    if !expected.admits(state.actual()) {
                        return Err(Error::WrongExpectedVersion {
                            stream: stream.to_string(),
                            expected,
                            actual: state.actual(),
                        });
                    }
                }
                let meta = change(&state);
                if meta == state.meta {
                    return Ok(None);
                }
                let record = Record::new(meta.encode()).key(meta_key(stream));
                if let Some(offset) = slot.append_at_end(index, &[record])? {
                    index.insert(stream, super::index::META_VERSION, offset);
                    return Ok(Some(state.meta.truncate_before..meta.truncate_before));
                }
            }
            Err(super::kept_racing(
                format!("delete stream {stream:?}"),
                &self.inner.name,
                Some(p),
            ))
        })?;
        let Some(deleted) = deleted else {
            return Ok(());
        };
        self.acknowledge(&slot.partition)?;
        self.ensure_compaction()?;
        // Space only: readers already skip these versions. Written under the slot, a chunk at
        // a time, so that the store's own appenders never take them for a foreign writer, and
        // each chunk well inside the topic's largest batch.
        let max_batch = self
            .inner
            .log
            .topic_config(&self.inner.name)?
            .max_message_bytes;
        let per_tombstone = stream.len() as u64 + TOMBSTONE_OVERHEAD;
        let per_batch = (max_batch as u64 / 2 / per_tombstone).max(1);
        let mut v = deleted.start;
        while v < deleted.end {
            let to = v.saturating_add(per_batch).min(deleted.end);
            let batch: Vec<Record> = (v..to)
                .map(|v| Record::tombstone(event_key(stream, v)))
                .collect();
            let written = slot.locked(Access::Write, |index| slot.append_at_end(index, &batch))?;
            if written.is_some() {
                // Tombstones are not indexed; the next catch-up moves past them.
                v = to;
            }
        }
        // The snapshot goes too once it is of deleted versions only (readers already ignore
        // it). Checked under the snapshots slot, so a snapshot saved since (of a stream
        // written again) is never the one removed.
        let snapshots = &self.inner.snapshots[p as usize];
        let tombstone = Record::tombstone(stream.to_string());
        let removed =
            snapshots.locked(
                Access::Write,
                |index| match super::snapshot::newest_snapshot(snapshots, index, stream, 0)? {
                    Some(s) if s.version < deleted.end => Ok(snapshots
                        .append_at_end(index, std::slice::from_ref(&tombstone))?
                        .is_some()),
                    _ => Ok(false),
                },
            )?;
        if removed {
            self.acknowledge(&snapshots.partition)?;
        }
        self.acknowledge(&slot.partition)
    }

    /// Turns compaction on for the events topic, so tombstones reclaim space.
    fn ensure_compaction(&self) -> Result<()> {
        if self.inner.compacting.load(Ordering::Acquire) {
            return Ok(());
        }
        let log = &self.inner.log;
        let config = log.topic_config(&self.inner.name)?;
        if !config.compacts() {
            log.alter_topic(
                &self.inner.name,
                config.cleanup_policy(CleanupPolicy::CompactAndDelete),
            )?;
        }
        self.inner.compacting.store(true, Ordering::Release);
        Ok(())
    }
}
