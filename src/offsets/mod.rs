//! Committed consumer offsets, stored as records in the internal topic `__consumer_offsets`
//! (one partition, compacted) and cached in memory.
//!
//! A commit appends one record per partition (key = group/topic/partition, value = offset,
//! metadata, timestamp) as one batch and `fsync`s before it returns, so an acknowledged commit
//! survives kill -9 and power loss. A batch is all-or-nothing after a crash (a torn batch fails
//! its CRC and is truncated), so a multi-partition commit is atomic when it fits one batch. The
//! cache is rebuilt by reading the topic from its start when the log opens; compaction keeps
//! that read short (one record per key). A commit racing the deletion of its topic lands before
//! the deletion's tombstones or is refused (see `OffsetStore::deletions`).

mod codec;

use std::collections::{BTreeSet, HashMap};

use parking_lot::RwLock;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::format::{
    decode_control_record, BatchBuilder, BatchOptions, BatchView, ControlRecord, ControlType,
    Record, NO_SEQUENCE,
};
use crate::partition::Partition;
use crate::topic_partition::TopicPartition;
pub use codec::OffsetAndMetadata;
pub(crate) use codec::{decode_key, decode_value};
use codec::{encode_key, encode_value};

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `offset.metadata.max.bytes` default.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Records per appended batch; commits of more partitions are split into several batches.
const RECORDS_PER_BATCH: usize = 1000;

#[derive(Debug)]
struct Cached {
    value: OffsetAndMetadata,
    /// Where the commit sits in `__consumer_offsets`: concurrent commits of one key land in the
    /// cache in log order, whatever order their syncs finish in.
    log_offset: u64,
}

type Key = (String, TopicPartition);

/// Offsets sent to open transactions, by producer id: key, value and place in the log.
type Pending = HashMap<i64, Vec<(Key, OffsetAndMetadata, u64)>>;

#[derive(Debug)]
pub(crate) struct OffsetStore {
    partition: Partition,
    cache: RwLock<HashMap<Key, Cached>>,
    /// Shared by commits from their check that every partition still exists until their
    /// offsets are in the cache; exclusive for [`forget_topic`](Self::forget_topic). A topic's
    /// partitions are closed before it is forgotten, so a commit either lands wholly before
    /// the tombstones (which then win) or sees the deletion and is refused — it never
    /// resurrects an offset on a topic created again under the name.
    deletions: RwLock<()>,
    /// Offsets sent to a transaction that has not ended, by producer id: they become
    /// committed offsets when its COMMIT marker is written, and are dropped on ABORT.
    pending: parking_lot::Mutex<Pending>,
}

impl OffsetStore {
    /// Loads every committed offset from `partition` (partition 0 of `__consumer_offsets`):
    /// plain commits as they come, transactional ones when their COMMIT marker comes (none of
    /// an aborted transaction).
    pub(crate) fn open(partition: Partition) -> Result<OffsetStore> {
        let mut cache = HashMap::new();
        let mut pending: Pending = HashMap::new();
        let mut next = partition.log_start_offset();
        let end = partition.high_watermark();
        let mut batches: Vec<BatchView> = Vec::new();
        while next < end {
            batches.clear();
            let walked = partition.read_raw_batches(next, 1 << 20, &mut batches)?;
            if walked <= next {
                break; // nothing at or after `next` (compaction left a gap up to the end)
            }
            next = walked;
            for batch in &batches {
                let h = *batch.header();
                let corrupt = |what: &str, offset: u64| Error::CorruptMetadata {
                    file: partition.dir().to_path_buf(),
                    reason: format!("offset record at {offset} has {what}"),
                };
                if h.is_control() {
                    let Some(r) = batch.records().next().transpose()? else {
                        continue;
                    };
                    let marker = decode_control_record(r.key.unwrap_or_default(), r.value)?;
                    let done = pending.remove(&h.producer_id).unwrap_or_default();
                    let commit = matches!(
                        marker,
                        ControlRecord::EndTxn(m) if m.control_type == ControlType::Commit
                    );
                    if commit {
                        for (key, value, log_offset) in done {
                            apply(&mut cache, key, Some(value), log_offset);
                        }
                    }
                    continue;
                }
                for r in batch.records() {
                    let r = r?;
                    let key = r.key.ok_or_else(|| corrupt("no key", r.offset))?;
                    let key =
                        decode_key(key).ok_or_else(|| corrupt("an unreadable key", r.offset))?;
                    let value = match r.value {
                        None => None,
                        Some(v) => Some(
                            decode_value(v)
                                .ok_or_else(|| corrupt("an unreadable value", r.offset))?,
                        ),
                    };
                    match (h.is_transactional(), value) {
                        (true, Some(value)) => pending
                            .entry(h.producer_id)
                            .or_default()
                            .push((key, value, r.offset)),
                        (true, None) => {}
                        (false, value) => apply(&mut cache, key, value, r.offset),
                    }
                }
            }
        }
        Ok(OffsetStore {
            partition,
            cache: RwLock::new(cache),
            deletions: RwLock::new(()),
            pending: parking_lot::Mutex::new(pending),
        })
    }

    /// Writes `offsets` for `group` as part of the transaction of producer
    /// `(producer_id, epoch)`: a transactional batch, which counts only once the transaction
    /// commits (`complete_transaction`). Not fsynced here: the commit syncs every partition of
    /// the transaction before its commit point.
    pub(crate) fn append_transactional(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        (producer_id, epoch): (i64, i16),
        deleted: impl Fn(&TopicPartition) -> bool,
    ) -> Result<()> {
        let _deletions = self.admit(offsets, deleted)?;
        let now = now_ms();
        for chunk in offsets.chunks(RECORDS_PER_BATCH) {
            let mut builder = BatchBuilder::new(BatchOptions {
                producer_id,
                producer_epoch: epoch,
                base_sequence: NO_SEQUENCE,
                transactional: true,
                partition_leader_epoch: 0,
                ..BatchOptions::default()
            });
            let mut stamped = Vec::with_capacity(chunk.len());
            for (tp, v) in chunk {
                let mut v = v.clone();
                v.commit_timestamp = now;
                let record = Record::new(encode_value(&v)).key(encode_key(group, tp));
                builder.push(&record, now)?;
                stamped.push(((group.to_string(), tp.clone()), v));
            }
            let mut buf = Vec::new();
            builder.finish_into(&mut buf)?;
            let appended = self.partition.inner.append_encoded(&mut buf)?;
            let mut pending = self.pending.lock();
            let list = pending.entry(producer_id).or_default();
            for (i, (key, v)) in stamped.into_iter().enumerate() {
                list.push((key, v, appended.base_offset + i as u64));
            }
        }
        Ok(())
    }

    /// Checks `offsets` (metadata size, no topic deleted) and returns the guard that keeps a
    /// deletion from forgetting their topics until the caller's write lands.
    fn admit(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        deleted: impl Fn(&TopicPartition) -> bool,
    ) -> Result<parking_lot::RwLockReadGuard<'_, ()>> {
        check_metadata(offsets)?;
        let guard = self.deletions.read();
        if let Some((tp, _)) = offsets.iter().find(|(tp, _)| deleted(tp)) {
            return Err(Error::UnknownTopic {
                topic: tp.topic.to_string(),
            });
        }
        Ok(guard)
    }

    /// The transaction of `producer_id` ended (its marker is written): its offsets become the
    /// groups' committed offsets if it committed, and are dropped if it aborted.
    pub(crate) fn complete_transaction(&self, producer_id: i64, commit: bool) {
        let done = self.pending.lock().remove(&producer_id).unwrap_or_default();
        if commit {
            let mut cache = self.cache.write();
            for (key, value, log_offset) in done {
                apply(&mut cache, key, Some(value), log_offset);
            }
        }
    }

    /// Stores `offsets` for `group` durably (fsync) and then in the cache, unless `deleted`
    /// says the topic of one of them was deleted ([`Error::UnknownTopic`]).
    pub(crate) fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        deleted: impl Fn(&TopicPartition) -> bool,
    ) -> Result<()> {
        let _deletions = self.admit(offsets, deleted)?;
        let now = now_ms();
        let stamped: Vec<(TopicPartition, OffsetAndMetadata)> = offsets
            .iter()
            .map(|(tp, v)| {
                let mut v = v.clone();
                v.commit_timestamp = now;
                (tp.clone(), v)
            })
            .collect();
        let mut placed = Vec::with_capacity(stamped.len());
        for chunk in stamped.chunks(RECORDS_PER_BATCH) {
            let records: Vec<Record> = chunk
                .iter()
                .map(|(tp, v)| Record {
                    key: Some(encode_key(group, tp)),
                    value: Some(encode_value(v)),
                    headers: Vec::new(),
                    timestamp: Some(now),
                })
                .collect();
            let base = self.partition.append(&records)?;
            placed.push(base);
        }
        self.partition.sync()?;
        let mut cache = self.cache.write();
        for (chunk, base) in stamped.chunks(RECORDS_PER_BATCH).zip(placed) {
            for (i, (tp, v)) in chunk.iter().enumerate() {
                let key = (group.to_string(), tp.clone());
                apply(&mut cache, key, Some(v.clone()), base + i as u64);
            }
        }
        Ok(())
    }

    pub(crate) fn committed(&self, group: &str, tp: &TopicPartition) -> Option<OffsetAndMetadata> {
        // The cache is keyed by owned strings; build the key once per lookup (commits and
        // lookups happen per poll or per rebalance, not per record).
        self.cache
            .read()
            .get(&(group.to_string(), tp.clone()))
            .map(|c| c.value.clone())
    }

    /// Every committed offset of `group`, sorted by partition.
    pub(crate) fn group_offsets(&self, group: &str) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        let mut out: Vec<_> = self
            .cache
            .read()
            .iter()
            .filter(|((g, _), _)| g == group)
            .map(|((_, tp), c)| (tp.clone(), c.value.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Groups with at least one committed offset.
    pub(crate) fn groups(&self) -> BTreeSet<String> {
        self.cache.read().keys().map(|(g, _)| g.clone()).collect()
    }

    /// Deletes (with tombstones, synced) every commit for `topic`, so a topic created later
    /// under the same name does not inherit positions that meant other records.
    pub(crate) fn forget_topic(&self, topic: &str) -> Result<()> {
        let _deletions = self.deletions.write();
        let doomed: Vec<Key> = self
            .cache
            .read()
            .keys()
            .filter(|(_, tp)| tp.topic == topic)
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for chunk in doomed.chunks(RECORDS_PER_BATCH) {
            let records: Vec<Record> = chunk
                .iter()
                .map(|(g, tp)| Record::tombstone(encode_key(g, tp)))
                .collect();
            self.partition.append(&records)?;
        }
        self.partition.sync()?;
        let mut cache = self.cache.write();
        for key in &doomed {
            cache.remove(key);
        }
        Ok(())
    }
}

/// Rejects metadata over [`MAX_METADATA_BYTES`].
fn check_metadata(offsets: &[(TopicPartition, OffsetAndMetadata)]) -> Result<()> {
    match offsets
        .iter()
        .find(|(_, v)| v.metadata.len() > MAX_METADATA_BYTES)
    {
        Some((tp, v)) => Err(Error::InvalidArgument(format!(
            "commit metadata for {tp} is {} bytes; the limit is {MAX_METADATA_BYTES}",
            v.metadata.len()
        ))),
        None => Ok(()),
    }
}

/// Puts one commit (a tombstone if `value` is `None`) into the cache, unless a commit that lies
/// later in the log is there already: concurrent commits of one key land in log order.
fn apply(
    cache: &mut HashMap<Key, Cached>,
    key: Key,
    value: Option<OffsetAndMetadata>,
    log_offset: u64,
) {
    if cache.get(&key).is_some_and(|c| c.log_offset > log_offset) {
        return;
    }
    match value {
        Some(value) => {
            cache.insert(key, Cached { value, log_offset });
        }
        None => {
            cache.remove(&key);
        }
    }
}
