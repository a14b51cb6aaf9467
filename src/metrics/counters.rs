//! The recording side: atomics owned by what they count (a partition, the log's storage, the
//! log's maintenance), added to with relaxed atomic operations and read by
//! [`Log::metrics`](crate::Log::metrics).
//!
//! Relaxed is enough: every counter is a number on its own that nothing is ordered against, and
//! a snapshot reads each of them once without promising that they agree with each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::histogram::AtomicHistogram;
use super::snapshot::{
    CompactionCounts, CompressionCounts, FileMetrics, FsyncMetrics, MaintenanceMetrics,
    PartitionCounts, ProducerCounts, RetentionCounts,
};
use crate::cleaner::{CompactionReport, RetentionReport};

/// Adds to a counter that only the holder of one lock writes (a partition's writer lock): a
/// plain load and store, which on x86 costs no locked instruction, unlike `fetch_add`. Readers
/// still see whole values, as they read the atomic.
#[inline]
fn add_serialized(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

#[inline]
fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// What one partition counts, since it was opened. Lives in the partition (so a deleted
/// topic's counters go with it) and is touched by every append and every read.
#[derive(Debug, Default)]
pub(crate) struct PartitionCounters {
    /// Written only under the partition's writer lock (`write_batch`).
    written: Written,
    /// Added to by every reader at once: kept off the writer's cache line.
    read: Read,
    /// The producers compress outside the writer lock, so these take `fetch_add`.
    compression: Compression,
    retention: Retention,
    compaction: Compaction,
}

// 128 bytes: the unit of false sharing on current x86 (adjacent-line prefetch) and Apple cores.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Written {
    records: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    markers: AtomicU64,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Read {
    records: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
}

#[derive(Debug, Default)]
struct Compression {
    batches: AtomicU64,
    before: AtomicU64,
    after: AtomicU64,
}

#[derive(Debug, Default)]
struct Retention {
    segments_deleted: AtomicU64,
    bytes_deleted: AtomicU64,
    offsets_removed: AtomicU64,
}

#[derive(Debug, Default)]
struct Compaction {
    passes: AtomicU64,
    segments_read: AtomicU64,
    segments_written: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    records_read: AtomicU64,
    records_removed: AtomicU64,
    tombstones_removed: AtomicU64,
}

impl PartitionCounters {
    /// A batch of `records` records and `bytes` bytes was written; `marker` for a transaction
    /// marker (a control batch). The caller holds the partition's writer lock.
    #[inline]
    pub(crate) fn written(&self, records: u32, bytes: usize, marker: bool) {
        let w = &self.written;
        if marker {
            add_serialized(&w.markers, 1);
        } else {
            add_serialized(&w.records, u64::from(records));
        }
        add_serialized(&w.bytes, bytes as u64);
        add_serialized(&w.batches, 1);
    }

    /// A read handed out `records` records from `batches` batches of `bytes` stored bytes.
    #[inline]
    pub(crate) fn read(&self, records: u64, batches: u64, bytes: u64) {
        let r = &self.read;
        add(&r.records, records);
        add(&r.batches, batches);
        add(&r.bytes, bytes);
    }

    /// A codec turned a records section of `before` bytes into `after` bytes.
    #[inline]
    pub(crate) fn compressed(&self, before: usize, after: usize) {
        let c = &self.compression;
        add(&c.batches, 1);
        add(&c.before, before as u64);
        add(&c.after, after as u64);
    }

    pub(crate) fn retained(&self, report: &RetentionReport) {
        let r = &self.retention;
        add(&r.segments_deleted, report.segments_deleted as u64);
        add(&r.bytes_deleted, report.bytes_deleted);
        add(&r.offsets_removed, report.offsets_removed);
    }

    pub(crate) fn compacted(&self, report: &CompactionReport) {
        let c = &self.compaction;
        add(&c.passes, report.passes as u64);
        add(&c.segments_read, report.segments_read as u64);
        add(&c.segments_written, report.segments_written as u64);
        add(&c.bytes_read, report.bytes_read);
        add(&c.bytes_written, report.bytes_written);
        add(&c.records_read, report.records_read);
        add(&c.records_removed, report.records_removed);
        add(&c.tombstones_removed, report.tombstones_removed);
    }

    pub(crate) fn snapshot(&self) -> PartitionCounts {
        let (w, r, c) = (&self.written, &self.read, &self.compression);
        let (ret, com) = (&self.retention, &self.compaction);
        PartitionCounts {
            records_in: get(&w.records),
            bytes_in: get(&w.bytes),
            batches_in: get(&w.batches),
            markers_in: get(&w.markers),
            records_out: get(&r.records),
            bytes_out: get(&r.bytes),
            batches_out: get(&r.batches),
            compression: CompressionCounts {
                batches: get(&c.batches),
                bytes_before: get(&c.before),
                bytes_after: get(&c.after),
            },
            retention: RetentionCounts {
                segments_deleted: get(&ret.segments_deleted),
                bytes_deleted: get(&ret.bytes_deleted),
                offsets_removed: get(&ret.offsets_removed),
            },
            compaction: CompactionCounts {
                passes: get(&com.passes),
                segments_read: get(&com.segments_read),
                segments_written: get(&com.segments_written),
                bytes_read: get(&com.bytes_read),
                bytes_written: get(&com.bytes_written),
                records_read: get(&com.records_read),
                records_removed: get(&com.records_removed),
                tombstones_removed: get(&com.tombstones_removed),
            },
        }
    }
}

/// The log's file-system work, counted by its storage wrapper
/// ([`MeteredStorage`](crate::storage::MeteredStorage)).
#[derive(Debug, Default)]
pub(crate) struct IoCounters {
    syncs: AtomicU64,
    dir_syncs: AtomicU64,
    sync_failures: AtomicU64,
    sync_latency: AtomicHistogram,
    open_files: AtomicU64,
    files_opened: AtomicU64,
    mappings: AtomicU64,
    mapped_bytes: AtomicU64,
}

/// Which kind of sync [`IoCounters::synced`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncKind {
    /// `sync_data`, `sync_all` or a mapping's `flush`.
    File,
    /// `sync_dir`.
    Directory,
}

impl IoCounters {
    pub(crate) fn synced(&self, kind: SyncKind, took: Duration, ok: bool) {
        add(&self.syncs, 1);
        if kind == SyncKind::Directory {
            add(&self.dir_syncs, 1);
        }
        if !ok {
            add(&self.sync_failures, 1);
        }
        self.sync_latency.record(took);
    }

    pub(crate) fn file_opened(&self) {
        add(&self.open_files, 1);
        add(&self.files_opened, 1);
    }

    pub(crate) fn file_closed(&self) {
        self.open_files.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn mapped(&self, len: usize) {
        add(&self.mappings, 1);
        add(&self.mapped_bytes, len as u64);
    }

    pub(crate) fn unmapped(&self, len: usize) {
        self.mappings.fetch_sub(1, Ordering::Relaxed);
        self.mapped_bytes.fetch_sub(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn fsync(&self) -> FsyncMetrics {
        let histogram = self.sync_latency.snapshot();
        FsyncMetrics {
            count: get(&self.syncs),
            directories: get(&self.dir_syncs),
            failures: get(&self.sync_failures),
            total_time: histogram.total_time,
            histogram,
        }
    }

    pub(crate) fn files(&self) -> FileMetrics {
        FileMetrics {
            open_files: get(&self.open_files),
            files_opened: get(&self.files_opened),
            mappings: get(&self.mappings),
            mapped_bytes: get(&self.mapped_bytes),
        }
    }
}

/// `Log::run_maintenance` runs (the background thread's and the host's).
#[derive(Debug, Default)]
pub(crate) struct MaintenanceCounters {
    runs: AtomicU64,
    failed_runs: AtomicU64,
    nanos: AtomicU64,
    transactions_timed_out: AtomicU64,
}

impl MaintenanceCounters {
    pub(crate) fn ran(&self, started: Instant, ok: bool, transactions_timed_out: usize) {
        add(&self.runs, 1);
        if !ok {
            add(&self.failed_runs, 1);
        }
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        add(&self.nanos, nanos);
        add(&self.transactions_timed_out, transactions_timed_out as u64);
    }

    pub(crate) fn snapshot(&self) -> MaintenanceMetrics {
        MaintenanceMetrics {
            runs: get(&self.runs),
            failed_runs: get(&self.failed_runs),
            total_time: Duration::from_nanos(get(&self.nanos)),
            transactions_timed_out: get(&self.transactions_timed_out),
        }
    }
}

/// A producer's counts (see `ProducerMetrics`), owned by the producer; its buffer's waits are
/// counted by the buffer (`producer::accumulator::Memory`).
#[derive(Debug, Default)]
pub(crate) struct ProducerCounters {
    records_sent: AtomicU64,
    records_failed: AtomicU64,
    sends_refused: AtomicU64,
}

impl ProducerCounters {
    /// A batch of `records` records completed: written (acknowledged) or failed.
    pub(crate) fn completed(&self, records: u32, ok: bool) {
        let counter = if ok {
            &self.records_sent
        } else {
            &self.records_failed
        };
        add(counter, u64::from(records));
    }

    pub(crate) fn refused(&self) {
        add(&self.sends_refused, 1);
    }

    /// The counts, with the buffer's `(waits, time waited)`.
    pub(crate) fn snapshot(
        &self,
        (buffer_waits, buffer_wait_time): (u64, Duration),
    ) -> ProducerCounts {
        ProducerCounts {
            records_sent: get(&self.records_sent),
            records_failed: get(&self.records_failed),
            sends_refused: get(&self.sends_refused),
            buffer_waits,
            buffer_wait_time,
        }
    }
}
