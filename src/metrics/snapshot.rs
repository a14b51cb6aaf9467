//! The plain-data snapshot [`Log::metrics`](crate::Log::metrics) returns.
//!
//! Every count is "since the log was opened": counters live in memory only, start at zero on
//! every [`Log::open`](crate::Log::open) and are not persisted. Each is read on its own with a
//! relaxed load, so a snapshot taken while the log works is not one instant: two counts of it
//! may disagree by what happened between their loads (a batch counted in `bytes_in` but not yet
//! in `batches_in`). Every counter only grows; the gauges (`open_files`, `buffer_bytes`, lag,
//! offsets) are the values at the snapshot.

use std::time::Duration;

use super::histogram::Histogram;
use crate::consumer::PartitionLag;

/// What the log has done since it was opened, and the state of its files, producers and
/// consumer groups now. See [`Log::metrics`](crate::Log::metrics).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Metrics {
    /// Time since the log was opened: the span every count covers.
    pub uptime: Duration,
    /// Every topic, sorted by name, internal ones (`__consumer_offsets`,
    /// `__transaction_state`) included and flagged. A deleted topic is gone from the next
    /// snapshot, its counts with it. Empty after [`Log::close`](crate::Log::close).
    pub topics: Vec<TopicMetrics>,
    /// fsyncs of files and directories.
    pub fsync: FsyncMetrics,
    /// Files and memory mappings the log holds now.
    pub files: FileMetrics,
    /// Every live producer of the log, in the order they were started. A producer drops out
    /// (counts and all) once it is dropped; empty after the log closed.
    pub producers: Vec<ProducerMetrics>,
    /// Every consumer group with committed offsets or members in this process, sorted by id:
    /// its lag per partition, computed now from its committed offsets and the partitions' high
    /// watermarks. Empty after the log closed.
    pub groups: Vec<GroupMetrics>,
    /// Why `groups` is missing groups with committed offsets: loading `__consumer_offsets`
    /// failed (an I/O error or damage; the same error any consumer of the log would get).
    /// `None` normally.
    pub groups_error: Option<String>,
    /// `Log::run_maintenance` runs, by the background thread and by the host.
    pub maintenance: MaintenanceMetrics,
}

/// One topic: its partitions' counts and their sums.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct TopicMetrics {
    /// The topic's name.
    pub topic: crate::TopicName,
    /// An internal topic of annals' own (its name starts with `__`): `__consumer_offsets`
    /// counts offset commits, `__transaction_state` transaction bookkeeping.
    pub internal: bool,
    /// The sum of the partitions' counts.
    pub totals: PartitionCounts,
    /// Each partition, by number.
    pub partitions: Vec<PartitionMetrics>,
}

/// One partition: its counts and where it stands now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PartitionMetrics {
    /// The partition's number.
    pub partition: u32,
    /// What was written to and read from it, and what maintenance did to it, since the log
    /// was opened.
    pub counts: PartitionCounts,
    /// The next offset to be written, now.
    pub high_watermark: u64,
    /// The first offset still stored, now.
    pub log_start_offset: u64,
    /// Bytes of record batches stored, now.
    pub size_bytes: u64,
    /// Segments, the active one included, now.
    pub segments: usize,
}

/// The counts of one partition (or, summed, of a topic), since the log was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PartitionCounts {
    /// Records appended, by every path: `Partition::append` and `append_batch`, producers
    /// (transactional ones included), event stores, offset commits. A producer's retry that
    /// idempotence recognized as a duplicate is not written and not counted. Transaction
    /// markers are not records here (see `markers_in`).
    pub records_in: u64,
    /// Bytes of the batches appended, as stored (after compression, headers included),
    /// transaction markers included.
    pub bytes_in: u64,
    /// Batches appended, transaction markers included.
    pub batches_in: u64,
    /// Transaction markers (COMMIT or ABORT control batches of one record each) written.
    pub markers_in: u64,
    /// Records the read calls returned: `Partition::read`, `read_into`, `read_batches`, the
    /// isolated variants, `Partition::iter`/`range` (each refill, including records past the
    /// range's end that the iterator then drops), consumers' fetches (what a fetch reads ahead
    /// is counted when read, not when `poll` hands it out), event store reads. Counted once
    /// per read call that returned records; a read that failed counts nothing.
    pub records_out: u64,
    /// Bytes of the stored batches those records came from (compressed size, headers
    /// included; a batch read from part way counts whole).
    pub bytes_out: u64,
    /// Batches those records came from.
    pub batches_out: u64,
    /// What the codec did to the batches this log compressed on append.
    pub compression: CompressionCounts,
    /// What retention (and `Partition::delete_records`) removed.
    pub retention: RetentionCounts,
    /// What compaction rewrote and removed.
    pub compaction: CompactionCounts,
}

/// What the codec did to the batches the log compressed itself: those `Partition::append`
/// (and so event stores and the log's own topics) and producers' writer threads encoded with a
/// codec other than `Compression::None`. Batches that arrive compressed (`append_batch`) and
/// compaction's re-encoding are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct CompressionCounts {
    /// Batches compressed.
    pub batches: u64,
    /// Bytes of their records sections before the codec.
    pub bytes_before: u64,
    /// Bytes of their records sections after the codec.
    pub bytes_after: u64,
}

/// What retention removed: the sums of the [`RetentionReport`](crate::RetentionReport)s of
/// `Log::run_maintenance`, `Partition::retain` and `Partition::delete_records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct RetentionCounts {
    /// Whole segments deleted.
    pub segments_deleted: u64,
    /// Bytes of `.log` files deleted: the space reclaimed.
    pub bytes_deleted: u64,
    /// Offsets that moved below the log start.
    pub offsets_removed: u64,
}

/// What compaction did: the sums of the [`CompactionReport`](crate::CompactionReport)s of
/// `Log::run_maintenance` and `Partition::compact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct CompactionCounts {
    /// Passes made.
    pub passes: u64,
    /// Segments rewritten.
    pub segments_read: u64,
    /// Segments written in their place.
    pub segments_written: u64,
    /// Bytes of `.log` the rewrites read.
    pub bytes_read: u64,
    /// Bytes of `.log` the rewrites wrote; `bytes_read - bytes_written` is the space
    /// reclaimed.
    pub bytes_written: u64,
    /// Records in the rewritten segments.
    pub records_read: u64,
    /// Records dropped (superseded, or tombstones past their delete horizon).
    pub records_removed: u64,
    /// Of `records_removed`, tombstones.
    pub tombstones_removed: u64,
}

/// Every fsync the log asked of its storage: `fdatasync`/`fsync` of files (segments sealed,
/// `Partition::sync`, producers' `Durability::Synced` group commits, checkpoints and metadata
/// written atomically), `msync` of index mappings, and fsyncs of directories.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct FsyncMetrics {
    /// fsyncs that returned, successfully or not.
    pub count: u64,
    /// Of `count`, fsyncs of directories.
    pub directories: u64,
    /// Of `count`, fsyncs that failed (each poisons what it was syncing for: see
    /// [`Error::Poisoned`](crate::Error::Poisoned)).
    pub failures: u64,
    /// Time spent in them, in all (`histogram.total_time`).
    pub total_time: Duration,
    /// How long they took.
    pub histogram: Histogram,
}

/// The files and memory mappings the log holds now, through its storage: the descriptors the
/// open-file budget keeps open (recently used segments' `.log` and index files, transaction
/// indexes, and any file being read or written at that moment: a checkpoint, metadata), and
/// every mapped index. Handles that outlive the log (a `Partition` or a consumer kept after
/// `Log::close`) keep their segments' files counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct FileMetrics {
    /// File descriptors open now: at most about
    /// [`LogBuilder::max_open_files`](crate::LogBuilder::max_open_files).
    pub open_files: u64,
    /// Files opened since the log was opened, reopens after the open-file budget closed them
    /// included.
    pub files_opened: u64,
    /// Memory mappings now (two per segment whose indexes are mapped).
    pub mappings: u64,
    /// Bytes mapped now.
    pub mapped_bytes: u64,
}

/// One live producer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ProducerMetrics {
    /// A number the log gives each producer it starts, from 0 up, to tell them apart (not
    /// persisted; not the producer id).
    pub serial: u64,
    /// The producer id and epoch, for an idempotent or transactional producer (see
    /// [`Producer::producer_id`](crate::Producer::producer_id)).
    pub producer_id: Option<(i64, i16)>,
    /// The configured `transactional_id`.
    pub transactional_id: Option<String>,
    /// Bytes of records sent and not yet written, now (see
    /// [`Producer::buffered_bytes`](crate::Producer::buffered_bytes)).
    pub buffer_bytes: u64,
    /// The configured `buffer_memory`, the bound of `buffer_bytes`.
    pub buffer_memory: u64,
    /// What it did since it was started.
    pub counts: ProducerCounts,
}

/// A producer's counts, since it was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ProducerCounts {
    /// Records written and acknowledged at the producer's durability.
    pub records_sent: u64,
    /// Records a `send` accepted whose write failed (their deliveries report the error).
    pub records_failed: u64,
    /// Sends that returned an error themselves (a full buffer, a record too large, an unknown
    /// topic, a closed producer, ...): nothing was accepted.
    pub sends_refused: u64,
    /// Waits for buffer space: each time a send found the buffer full and blocked for it (up
    /// to `max_block`), or a `send_async` awaited a release (one send may await several).
    pub buffer_waits: u64,
    /// Time they spent waiting, in all.
    pub buffer_wait_time: Duration,
}

/// One consumer group's lag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct GroupMetrics {
    /// The group id.
    pub group: String,
    /// The sum of `partitions`' lags.
    pub lag: u64,
    /// Per partition the group committed for or owns now, as
    /// [`Log::group_lag`](crate::Log::group_lag) gives them.
    pub partitions: Vec<PartitionLag>,
}

/// The runs of `Log::run_maintenance` (what each did to a partition is in its
/// [`PartitionCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct MaintenanceMetrics {
    /// Runs finished, the failed ones included.
    pub runs: u64,
    /// Of `runs`, those that returned an error.
    pub failed_runs: u64,
    /// Time the runs took, in all.
    pub total_time: Duration,
    /// Transactions the runs aborted because they outlived their `transaction_timeout`.
    pub transactions_timed_out: u64,
}

impl PartitionCounts {
    /// Adds `other`'s counts to these (a topic's totals), saturating.
    pub(crate) fn add(&mut self, o: &PartitionCounts) {
        macro_rules! sum {
            ($($field:ident).+) => {
                self.$($field).+ = self.$($field).+.saturating_add(o.$($field).+);
            };
        }
        sum!(records_in);
        sum!(bytes_in);
        sum!(batches_in);
        sum!(markers_in);
        sum!(records_out);
        sum!(bytes_out);
        sum!(batches_out);
        sum!(compression.batches);
        sum!(compression.bytes_before);
        sum!(compression.bytes_after);
        sum!(retention.segments_deleted);
        sum!(retention.bytes_deleted);
        sum!(retention.offsets_removed);
        sum!(compaction.passes);
        sum!(compaction.segments_read);
        sum!(compaction.segments_written);
        sum!(compaction.bytes_read);
        sum!(compaction.bytes_written);
        sum!(compaction.records_read);
        sum!(compaction.records_removed);
        sum!(compaction.tombstones_removed);
    }
}

impl Metrics {
    /// The topic named `name`, if the snapshot has it.
    pub fn topic(&self, name: &str) -> Option<&TopicMetrics> {
        self.topics.iter().find(|t| t.topic == name)
    }

    /// The group `group`, if the snapshot has it.
    pub fn group(&self, group: &str) -> Option<&GroupMetrics> {
        self.groups.iter().find(|g| g.group == group)
    }
}

impl TopicMetrics {
    /// Partition `partition`, if the topic has it.
    pub fn partition(&self, partition: u32) -> Option<&PartitionMetrics> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}
