//! Metrics: counters kept by what they count, and the snapshot [`Log::metrics`](crate::Log::metrics)
//! gathers from them.
//!
//! Where each count is kept, so that the hot paths pay only relaxed atomic adds on memory they
//! already own (no lock, no allocation, no lookup):
//! - appends and reads: in the partition (`PartitionCounters`, a field of the partition's
//!   shared state), by `write_batch` (every append path ends there, under the writer lock) and
//!   `read_with` (every public read); the codec's bytes by `Partition::append` and the
//!   producer's writer thread, which compress;
//! - retention and compaction: in the partition too, from the reports the cleaner returns;
//! - fsyncs, open files and mappings: in the log's storage wrapper (`storage::MeteredStorage`);
//! - producers: in the producer (`ProducerCounters`, and its buffer's `Memory`);
//! - maintenance runs: in the catalog, by `Log::run_maintenance`.
//!
//! Consumer lag is not counted at all: the snapshot computes it from the committed offsets and
//! the high watermarks. A deleted topic's partitions, and a dropped producer, take their
//! counters with them, so memory stays bounded by what is alive.

mod counters;
#[cfg(feature = "metrics")]
mod export;
mod histogram;
mod snapshot;

pub(crate) use counters::{
    IoCounters, MaintenanceCounters, PartitionCounters, ProducerCounters, SyncKind,
};
pub use histogram::{Histogram, HistogramBucket};
pub use snapshot::{
    CompactionCounts, CompressionCounts, FileMetrics, FsyncMetrics, GroupMetrics,
    MaintenanceMetrics, Metrics, PartitionCounts, PartitionMetrics, ProducerCounts,
    ProducerMetrics, RetentionCounts, TopicMetrics,
};
