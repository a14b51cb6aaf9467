//! Retention and compaction: deciding (pure policy) and doing (executors).
//!
//! The decisions are pure functions over plain descriptions of a partition's segments
//! (`retention_policy::plan_retention`, `compaction_policy::plan_compaction`,
//! `compaction_policy::joins_group`, and `map::decide`, the per-record keep rule) so they are
//! unit-tested without files. The executors
//! (`retention.rs`, `compaction.rs`) carry a plan out on a live partition with the crash-safe
//! protocols described in `docs/ARCHITECTURE.md` ("Retention", "Compaction").

mod compaction;
pub(crate) mod compaction_policy;
mod install;
pub(crate) mod map;
mod output;
mod retention;
pub(crate) mod retention_policy;

use std::time::Duration;

/// What the policies need to know about one segment, without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's base offset (its file name).
    pub base_offset: u64,
    /// One past the last offset stored in it (or its base offset when it is empty).
    pub next_offset: u64,
    /// Bytes of its `.log`.
    pub size: u64,
    /// The largest record timestamp in it, or -1 when it is empty.
    pub max_timestamp: i64,
}

impl SegmentInfo {
    /// What the policies see of a live segment.
    pub(crate) fn of(s: &crate::segment::Segment) -> SegmentInfo {
        SegmentInfo {
            base_offset: s.base_offset,
            next_offset: s.next_offset(),
            size: s.end(),
            max_timestamp: s.max_timestamp(),
        }
    }
}

/// What one retention run (or `delete_records`) removed from a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct RetentionReport {
    /// Whole segments deleted.
    pub segments_deleted: usize,
    /// Bytes of `.log` files deleted.
    pub bytes_deleted: u64,
    /// Offsets that moved below the log start (records made unreadable, including offsets that
    /// compaction had already emptied).
    pub offsets_removed: u64,
    /// The log start offset afterwards.
    pub log_start_offset: u64,
    /// Wall-clock time the run took.
    pub elapsed: Duration,
}

/// What one compaction run did to a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct CompactionReport {
    /// Passes made (more than one when the dirty part's keys did not fit
    /// `cleaner_buffer_bytes` at once).
    pub passes: usize,
    /// Segments rewritten (replaced by fewer, merged ones).
    pub segments_read: usize,
    /// Segments written in their place.
    pub segments_written: usize,
    /// Bytes of `.log` read by the rewrite.
    pub bytes_read: u64,
    /// Bytes of `.log` written by the rewrite.
    pub bytes_written: u64,
    /// Records in the rewritten segments.
    pub records_read: u64,
    /// Records dropped: superseded by a later (or higher-versioned) record of the same key, or
    /// tombstones past their delete horizon.
    pub records_removed: u64,
    /// Of `records_removed`, tombstones removed after `delete_retention_ms`.
    pub tombstones_removed: u64,
    /// Wall-clock time the run took.
    pub elapsed: Duration,
}

/// What maintenance did to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PartitionReport {
    /// The topic.
    pub topic: crate::TopicName,
    /// The partition number.
    pub partition: u32,
    /// Retention's work (all zeros if nothing was due).
    pub retention: RetentionReport,
    /// Compaction's work (all zeros if nothing was due or the topic does not compact).
    pub compaction: CompactionReport,
}

/// What one [`Log::run_maintenance`](crate::Log::run_maintenance) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// One entry per partition that retention or compaction changed.
    pub partitions: Vec<PartitionReport>,
    /// Transactions aborted because they outlived their producer's `transaction_timeout`.
    pub transactions_timed_out: usize,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
}

impl MaintenanceReport {
    /// Segments deleted by retention, over all partitions.
    pub fn segments_deleted(&self) -> usize {
        self.partitions
            .iter()
            .map(|p| p.retention.segments_deleted)
            .sum()
    }

    /// Bytes freed by retention and compaction together, over all partitions.
    pub fn bytes_freed(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| {
                p.retention.bytes_deleted
                    + p.compaction
                        .bytes_read
                        .saturating_sub(p.compaction.bytes_written)
            })
            .sum()
    }

    /// Records removed by compaction, over all partitions.
    pub fn records_compacted_away(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| p.compaction.records_removed)
            .sum()
    }
}
