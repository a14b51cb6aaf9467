//! A stream's state as the index and the log say it is: its next version, what was deleted,
//! and the record reads that verify index entries.

use bytes::Bytes;

use super::event::{event_key, meta_key};
use super::index::{StreamIndex, META_VERSION};
use crate::error::{Error, Result};
use crate::format::RecordRef;
use crate::partition::Partition;

/// A stream's metadata record: what deletes left of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamMeta {
    /// Events below this version are deleted.
    pub truncate_before: u64,
    /// Deleted for good: never written or read again.
    pub tombstoned: bool,
}

const META_FORMAT: u8 = 1;

impl StreamMeta {
    pub(crate) fn encode(&self) -> Bytes {
        let mut v = Vec::with_capacity(10);
        v.push(META_FORMAT);
        v.extend_from_slice(&self.truncate_before.to_be_bytes());
        v.push(u8::from(self.tombstoned));
        Bytes::from(v)
    }

    pub(crate) fn check_not_tombstoned(&self, stream: &str) -> Result<()> {
        if self.tombstoned {
            return Err(Error::StreamDeleted {
                stream: stream.to_string(),
            });
        }
        Ok(())
    }

    pub(crate) fn decode(value: &[u8]) -> Option<StreamMeta> {
        match value {
            [META_FORMAT, tb @ .., flags] if tb.len() == 8 && *flags <= 1 => Some(StreamMeta {
                truncate_before: u64::from_be_bytes(tb.try_into().ok()?),
                tombstoned: *flags == 1,
            }),
            _ => None,
        }
    }
}

/// Where a stream stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamState {
    /// The version its next event gets.
    pub next_version: u64,
    pub meta: StreamMeta,
}

impl StreamState {
    /// Its last readable version: `None` when it has no event left (or never had one).
    pub(crate) fn actual(&self) -> Option<u64> {
        (self.next_version > self.meta.truncate_before).then(|| self.next_version - 1)
    }

    pub(crate) fn check_not_tombstoned(&self, stream: &str) -> Result<()> {
        self.meta.check_not_tombstoned(stream)
    }
}

/// Calls `f` with each record of `partition` at one of `offsets` (ascending) that still
/// exists, in offset order, and the buffer its slices borrow from (for `Bytes::slice_ref`).
/// Reads exactly the batches that hold the offsets, one positioned read each, and decodes
/// nothing into owned records.
pub(crate) fn for_each_record(
    partition: &Partition,
    offsets: &[u64],
    mut f: impl FnMut(&Bytes, &RecordRef<'_>) -> Result<()>,
) -> Result<()> {
    let mut batches = Vec::new();
    let mut i = 0;
    while i < offsets.len() {
        let start = partition.log_start_offset();
        while i < offsets.len() && offsets[i] < start {
            i += 1;
        }
        if i == offsets.len() || offsets[i] >= partition.high_watermark() {
            return Ok(());
        }
        batches.clear();
        // One byte asks for exactly the batch that holds the offset (or the next one).
        partition.read_batches(offsets[i], 1, &mut batches)?;
        let Some(batch) = batches.first() else {
            return Ok(());
        };
        for r in batch.records() {
            let r = r?;
            while i < offsets.len() && offsets[i] < r.offset {
                i += 1;
            }
            if i == offsets.len() {
                return Ok(());
            }
            if offsets[i] == r.offset {
                f(batch.record_bytes(), &r)?;
                i += 1;
            }
        }
        let next = batch.next_offset();
        while i < offsets.len() && offsets[i] < next {
            i += 1;
        }
    }
    Ok(())
}

/// The value of the record at `offset` if it is still there, has exactly `key` and is not a
/// tombstone.
fn verified(partition: &Partition, offset: u64, key: &str) -> Result<Option<Bytes>> {
    let mut found = None;
    for_each_record(partition, &[offset], |bytes, r| {
        if r.key == Some(key.as_bytes()) {
            found = r.value.map(|v| bytes.slice_ref(v));
        }
        Ok(())
    })?;
    Ok(found)
}

/// Works out `stream`'s state from the index, verifying each entry it relies on.
pub(crate) fn stream_state(
    index: &StreamIndex,
    partition: &Partition,
    stream: &str,
) -> Result<StreamState> {
    let hash = index.hash(stream);
    let (newest, bound) = index.latest(hash)?;
    if let Some(state) = resolve(&newest, partition, stream, bound)? {
        return Ok(state);
    }
    let mut all = index.scan(hash, 0, u64::MAX)?;
    all.reverse();
    Ok(resolve(&all, partition, stream, None)?.unwrap_or_default())
}

/// The stream's newest metadata record among `entries` (newest first: metadata entries sort
/// after every event, under version `META_VERSION`, newest offset first).
fn newest_meta(
    entries: &[super::index::table::Entry],
    partition: &Partition,
    stream: &str,
) -> Result<Option<StreamMeta>> {
    let key = meta_key(stream);
    for e in entries.iter().take_while(|e| e.version == META_VERSION) {
        if let Some(m) = verified(partition, e.offset, &key)?.and_then(|v| StreamMeta::decode(&v)) {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// Whether the entries [`StreamIndex::latest`] returned with `bound` hold every metadata entry
/// of their hash. A table's metadata entries of a hash sort last in its run (under
/// `META_VERSION`, by offset), so its last block holds them all unless that block holds nothing
/// else: then the bound is `META_VERSION`, and that table's older metadata entries were left
/// out, whose offsets are above every older table's. A stream's metadata found among the
/// entries is then not known to be its newest (an older table's last block may show an older
/// truncation while the newest one was left out), and only a scan can tell.
fn has_every_meta(bound: Option<u64>) -> bool {
    bound != Some(META_VERSION)
}

/// `stream`'s metadata alone (what a forward read needs), verifying only metadata entries.
pub(crate) fn stream_meta(
    index: &StreamIndex,
    partition: &Partition,
    stream: &str,
) -> Result<StreamMeta> {
    let hash = index.hash(stream);
    let (newest, bound) = index.latest(hash)?;
    if has_every_meta(bound) {
        return Ok(newest_meta(&newest, partition, stream)?.unwrap_or_default());
    }
    let mut all = index.scan(hash, META_VERSION, META_VERSION)?;
    all.reverse();
    Ok(newest_meta(&all, partition, stream)?.unwrap_or_default())
}

/// Walks `entries` (newest first) to the stream's metadata and newest event. `None` when
/// they do not settle it: `bound` (see [`StreamIndex::latest`]) says entries were left out
/// that may hold a newer event of the stream.
fn resolve(
    entries: &[super::index::table::Entry],
    partition: &Partition,
    stream: &str,
    bound: Option<u64>,
) -> Result<Option<StreamState>> {
    if !has_every_meta(bound) {
        // The metadata these show may not be the stream's newest, and every event entry is
        // below the bound anyway: only a full scan can tell.
        return Ok(None);
    }
    let meta = newest_meta(entries, partition, stream)?.unwrap_or_default();
    let event = entries.partition_point(|e| e.version == META_VERSION);
    for e in &entries[event..] {
        if e.version < meta.truncate_before {
            // Deleted versions cannot move the next version past `truncate_before`.
            break;
        }
        if bound.is_some_and(|b| e.version < b) {
            // A left-out entry could hold a newer event of this stream (a colliding stream's
            // run hid it): only a full scan can tell.
            return Ok(None);
        }
        if verified(partition, e.offset, &event_key(stream, e.version))?.is_some() {
            return Ok(Some(StreamState {
                next_version: e.version + 1,
                meta,
            }));
        }
    }
    if bound.is_some() {
        // Older entries exist that these did not include: let the caller scan them all.
        return Ok(None);
    }
    Ok(Some(StreamState {
        next_version: meta.truncate_before,
        meta,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_rejects_garbage() {
        let m = StreamMeta {
            truncate_before: 42,
            tombstoned: true,
        };
        assert_eq!(StreamMeta::decode(&m.encode()), Some(m));
        assert_eq!(StreamMeta::decode(b""), None);
        assert_eq!(StreamMeta::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(StreamMeta::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 7]), None);
    }
}
