//! A view of partitions as of one instant, for `Log::checkpoint` (`log/backup.rs`): what a copy
//! of them needs to open without recovery, taken under the partitions' locks.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::MutexGuard;

use super::Partition;
use crate::format::AbortedTxn;
use crate::meta::{Bounds, SealedSegment};
use crate::segment::{Segment, SegmentLimits, SegmentStats};

/// One partition as of the snapshot's instant.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// The durable bounds as the maintenance lock holds them (the log start is the one above).
    pub bounds: Bounds,
    /// Oldest first; the last is the active segment, which held exactly `active` then.
    pub segments: Arc<Vec<Arc<Segment>>>,
    pub active: SegmentStats,
    /// The checkpoint's record of each sealed segment (size and index checksums).
    pub sealed: Vec<SealedSegment>,
    /// The idempotent producers' state as of the high watermark, encoded for `partition.ckpt`.
    pub producers: Vec<u8>,
    /// Every aborted transaction whose marker lies below the high watermark.
    pub aborted: Arc<Vec<AbortedTxn>>,
    pub limits: SegmentLimits,
}

/// Snapshots `partitions` at one instant. Returns the snapshots and each partition's maintenance
/// lock (`PartitionInner::bounds`), still held: while a guard lives, retention and compaction
/// cannot rename, swap or unlink that partition's segment files, so their names still name the
/// snapshot's files.
///
/// Locks: every partition's bounds lock, in the given order, then every writer lock, in the
/// same order (the partition lock order is bounds, then writer; only this function holds more
/// than one partition's, always in the caller's order, so two snapshots cannot deadlock). While
/// all writer locks are held nothing is appended anywhere, so the snapshots form one cut, as a
/// kill -9 at that instant would leave the log: a transaction's markers or a consumer's commit
/// are in it only with what they depend on. The writer locks are held only to read memory.
pub(crate) fn snapshot_all(
    partitions: &[Partition],
) -> (Vec<Snapshot>, Vec<MutexGuard<'_, Bounds>>) {
    // The configuration lock comes before the writer's: read it first.
    let limits: Vec<SegmentLimits> = partitions.iter().map(|p| p.inner.limits()).collect();
    let bounds: Vec<MutexGuard<'_, Bounds>> =
        partitions.iter().map(|p| p.inner.bounds.lock()).collect();
    let writers: Vec<_> = partitions.iter().map(|p| p.inner.writer.lock()).collect();
    let snapshots = partitions
        .iter()
        .zip(&writers)
        .zip(&bounds)
        .zip(limits)
        .map(|(((p, w), b), limits)| {
            let inner = &p.inner;
            let segments = inner.segments();
            let active = segments
                .last()
                .expect("a partition always has an active segment")
                .stats();
            let high_watermark = inner.high_watermark.load(Ordering::Acquire);
            // Under the writer lock the last batch is wholly published: the active segment
            // ends exactly at the high watermark.
            debug_assert_eq!(active.next_offset, high_watermark);
            let log_start_offset = inner.log_start_offset.load(Ordering::Acquire);
            Snapshot {
                high_watermark,
                log_start_offset,
                bounds: Bounds {
                    log_start_offset,
                    ..Bounds::clone(b)
                },
                segments,
                active,
                sealed: w.sealed.clone(),
                producers: w.producers.encode(),
                aborted: inner.aborted.read().clone(),
                limits,
            }
        })
        .collect();
    drop(writers);
    (snapshots, bounds)
}
