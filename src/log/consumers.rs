//! The consumer side of [`Log`]: creating consumers, the committed-offsets store, and views of
//! groups and their lag.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use super::Log;
use crate::config::{CleanupPolicy, TopicConfig};
use crate::consumer::{Consumer, ConsumerConfig, PartitionLag};
use crate::error::{Error, Result};
use crate::group::{validate_group_id, GroupDescription};
use crate::offsets::{OffsetAndMetadata, OffsetStore, OFFSETS_TOPIC};
use crate::topic_partition::TopicPartition;

/// Kafka's `offsets.topic.segment.bytes` default.
pub(super) const DEFAULT_OFFSETS_SEGMENT_BYTES: u64 = 100 << 20;

impl Log {
    /// Starts a [`Consumer`] for `config.group_id`. Committed offsets of the group, from this or
    /// earlier runs, decide where it starts reading.
    ///
    /// Errors: [`Error::InvalidConfig`] / [`Error::InvalidGroupId`], [`Error::Closed`].
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        self.check_open()?;
        let offsets = self.offsets()?;
        Ok(Consumer::new(self.inner.catalog.clone(), config, offsets))
    }

    /// Every group with members in this process or committed offsets in this log, sorted by
    /// id. Members that stopped polling past their `max_poll_interval` are removed first.
    ///
    /// Errors: [`Error::Closed`], I/O (loading `__consumer_offsets`).
    pub fn groups(&self) -> Result<Vec<GroupDescription>> {
        self.check_open()?;
        let mut live = self
            .inner
            .catalog
            .coordinator
            .describe(&self.partition_counts(), Instant::now());
        let known: BTreeSet<String> = live.iter().map(|g| g.group.clone()).collect();
        if let Some(offsets) = self.offsets_if_exists()? {
            for group in offsets.groups() {
                if !known.contains(&group) {
                    live.push(GroupDescription {
                        group,
                        generation: 0,
                        assignor: None,
                        members: Vec::new(),
                    });
                }
            }
        }
        live.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(live)
    }

    /// Per partition the group has committed for or owns now: committed offset, high watermark
    /// and lag.
    ///
    /// Errors: [`Error::InvalidGroupId`], [`Error::Closed`], I/O.
    pub fn group_lag(&self, group: &str) -> Result<Vec<PartitionLag>> {
        validate_group_id(group)?;
        self.check_open()?;
        let offsets = self.offsets_if_exists()?;
        let live = self.live_groups();
        self.lag_of(group, offsets.as_deref(), &live)
    }

    /// The groups with members in this process (expired members removed first).
    pub(super) fn live_groups(&self) -> Vec<GroupDescription> {
        self.inner
            .catalog
            .coordinator
            .describe(&self.partition_counts(), Instant::now())
    }

    /// `group`'s lag, from its committed offsets in `offsets` and its members' assignments in
    /// `live`.
    pub(super) fn lag_of(
        &self,
        group: &str,
        offsets: Option<&OffsetStore>,
        live: &[GroupDescription],
    ) -> Result<Vec<PartitionLag>> {
        let mut partitions: BTreeMap<TopicPartition, Option<u64>> = BTreeMap::new();
        if let Some(offsets) = offsets {
            for (tp, c) in offsets.group_offsets(group) {
                partitions.insert(tp, Some(c.offset));
            }
        }
        for g in live.iter().filter(|g| g.group == group) {
            for tp in g.members.iter().flat_map(|m| &m.assignment) {
                partitions.entry(tp.clone()).or_insert(None);
            }
        }
        let mut out = Vec::new();
        for (tp, committed) in partitions {
            match self.partition(&tp.topic, tp.partition) {
                Ok(p) => out.push(PartitionLag::new(&tp, &p, committed, None)),
                Err(Error::UnknownTopic { .. } | Error::UnknownPartition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The offset `group` committed for a partition, if any (without creating anything).
    ///
    /// Errors: [`Error::InvalidGroupId`], [`Error::Closed`], I/O.
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<OffsetAndMetadata>> {
        validate_group_id(group)?;
        self.check_open()?;
        Ok(self
            .offsets_if_exists()?
            .and_then(|o| o.committed(group, &TopicPartition::new(topic, partition))))
    }

    fn check_open(&self) -> Result<()> {
        self.inner.catalog.check_open()
    }

    fn partition_counts(&self) -> BTreeMap<String, u32> {
        self.inner.catalog.partition_counts()
    }

    pub(super) fn offsets_if_loaded(&self) -> Option<Arc<OffsetStore>> {
        self.inner.offsets.lock().clone()
    }

    /// The offsets store if `__consumer_offsets` exists (loading it on first use).
    pub(super) fn offsets_if_exists(&self) -> Result<Option<Arc<OffsetStore>>> {
        self.internal_if_exists(&self.inner.offsets, OFFSETS_TOPIC, OffsetStore::open)
    }

    /// The offsets store, creating `__consumer_offsets` if this log has none yet.
    pub(super) fn offsets(&self) -> Result<Arc<OffsetStore>> {
        let config = offsets_topic_config(self.inner.offsets_segment_bytes);
        self.internal(
            &self.inner.offsets,
            OFFSETS_TOPIC,
            config,
            OffsetStore::open,
        )
    }
}

/// One partition, compacted (one record per group/topic/partition survives cleaning), segments
/// of `segment_bytes` (100 MiB by default, as Kafka's `offsets.topic.segment.bytes`).
fn offsets_topic_config(segment_bytes: u64) -> TopicConfig {
    TopicConfig::default()
        .partitions(1)
        .segment_bytes(segment_bytes)
        .max_message_bytes(16 << 20)
        .cleanup_policy(CleanupPolicy::Compact)
}
