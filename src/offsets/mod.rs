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
use crate::format::Record;
use crate::partition::Partition;
use crate::topic_partition::TopicPartition;
pub use codec::OffsetAndMetadata;
use codec::{decode_key, decode_value, encode_key, encode_value};

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
}

impl OffsetStore {
    /// Loads every committed offset from `partition` (partition 0 of `__consumer_offsets`).
    pub(crate) fn open(partition: Partition) -> Result<OffsetStore> {
        let mut cache = HashMap::new();
        let mut next = partition.log_start_offset();
        let end = partition.high_watermark();
        let mut records = Vec::new();
        while next < end {
            records.clear();
            partition.read_into(next, 1 << 20, &mut records)?;
            let Some(last) = records.last() else {
                break; // nothing at or after `next` (compaction left a gap up to the end)
            };
            next = last.offset + 1;
            for r in &records {
                let corrupt = |what: &str| Error::CorruptMetadata {
                    file: partition.dir().to_path_buf(),
                    reason: format!("offset record at {} has {what}", r.offset),
                };
                let key = r.key.as_deref().ok_or_else(|| corrupt("no key"))?;
                let key = decode_key(key).ok_or_else(|| corrupt("an unreadable key"))?;
                match r.value.as_deref() {
                    None => {
                        cache.remove(&key);
                    }
                    Some(v) => {
                        let value =
                            decode_value(v).ok_or_else(|| corrupt("an unreadable value"))?;
                        cache.insert(
                            key,
                            Cached {
                                value,
                                log_offset: r.offset,
                            },
                        );
                    }
                }
            }
        }
        Ok(OffsetStore {
            partition,
            cache: RwLock::new(cache),
            deletions: RwLock::new(()),
        })
    }

    /// Stores `offsets` for `group` durably (fsync) and then in the cache, unless `deleted`
    /// says the topic of one of them was deleted ([`Error::UnknownTopic`]).
    pub(crate) fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        deleted: impl Fn(&TopicPartition) -> bool,
    ) -> Result<()> {
        if let Some((tp, v)) = offsets
            .iter()
            .find(|(_, v)| v.metadata.len() > MAX_METADATA_BYTES)
        {
            return Err(Error::InvalidArgument(format!(
                "commit metadata for {tp} is {} bytes; the limit is {MAX_METADATA_BYTES}",
                v.metadata.len()
            )));
        }
        let _deletions = self.deletions.read();
        if let Some((tp, _)) = offsets.iter().find(|(tp, _)| deleted(tp)) {
            return Err(Error::UnknownTopic {
                topic: tp.topic.clone(),
            });
        }
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
                let log_offset = base + i as u64;
                let key = (group.to_string(), tp.clone());
                match cache.get(&key) {
                    Some(c) if c.log_offset > log_offset => {}
                    _ => {
                        cache.insert(
                            key,
                            Cached {
                                value: v.clone(),
                                log_offset,
                            },
                        );
                    }
                }
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
