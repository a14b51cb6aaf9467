//! Opening a partition directory: trust what a clean shutdown or a seal vouched for, scan and
//! repair everything else.
//!
//! The rules (also in `docs/ARCHITECTURE.md`):
//! - A segment listed in the checkpoint with the same `.log` size was fsynced when it was
//!   sealed: it is opened without reading it; its indexes are used if their CRCs match the
//!   checkpoint, and rebuilt otherwise.
//! - Every other segment is scanned batch by batch with CRC checks. The scan stops at the first
//!   incomplete or invalid batch at byte P.
//! - If no CRC-valid batch exists anywhere after P (in that segment or any later one), the damage
//!   is a torn tail — the shape an interrupted write leaves — and the partition is truncated to P.
//!   Nothing acknowledged as synced is lost: a synced batch is only ever followed by data written
//!   later, so a torn write can only be at the end.
//! - If valid batches exist after P, the log is damaged in the middle: `RecoveryMode::Strict`
//!   (the default) refuses to open with `Error::Corrupt { segment, position, .. }`;
//!   `RecoveryMode::TruncateCorrupt` truncates at P and drops everything after it.
//! - Every cut and removal is recorded as a [`RecoveryEvent`] (`Log::recovery_report`).
// These bytes come from disk or from a caller: a malformed input must become an error, never
// a panic, so nothing here may unwrap or index unchecked.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::recovery_report::{RecoveryAction, RecoveryEvent};
use super::swap::finish_interrupted;
use super::{PartitionInner, WriterState};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::format::BatchHeader;
use crate::meta::{
    load_bounds, load_checkpoint, store_bounds, Bounds, SealedSegment, TxnIndexCrc, BOUNDS_FILE,
    CHECKPOINT_FILE,
};
use crate::segment::{
    file_name, parse_file_name, scan_batches, valid_batch_after, ScanEnd, ScanOptions, Segment,
    SegmentLimits, SegmentStats, NO_TIMESTAMP,
};
use crate::storage::{read_exact_at, IoContext, OpenMode, Storage, StorageFile};

/// What to do when recovery finds damage in the middle of a log (not a torn tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RecoveryMode {
    /// Refuse to open the log: report [`Error::Corrupt`] with the segment and byte position.
    #[default]
    Strict,
    /// Truncate the partition at the first invalid batch, dropping everything after it.
    TruncateCorrupt,
}

pub(crate) struct OpenParams<'a> {
    pub storage: &'a Arc<dyn Storage>,
    pub dir: PathBuf,
    pub topic: &'a str,
    pub id: u32,
    pub config: &'a TopicConfig,
    /// The log was shut down cleanly: every segment is in the checkpoint.
    pub clean: bool,
    pub mode: RecoveryMode,
    /// `LogBuilder::producer_id_expiration` in milliseconds.
    pub producer_id_expiration_ms: i64,
    /// A topic creation made `dir` just now (it did not exist): the creation makes the new
    /// directory and its files durable itself, with one fsync per directory after it created
    /// every partition, before `topics.meta` names the topic (`Log::create_topics`). So the
    /// new partition's own syncs and first checkpoint are skipped: until the metadata names
    /// the topic a crash leaves a leftover that the next open removes, and a partition without
    /// a checkpoint is only scanned (it is empty) and given one at its next open or close.
    pub fresh: bool,
}

/// Opens (creating if needed) one partition directory.
pub(crate) fn open_partition(p: OpenParams<'_>) -> Result<PartitionInner> {
    enter_span!(DEBUG, "recover_partition", topic = %p.topic, partition = p.id);
    let storage = &**p.storage;
    let limits = SegmentLimits {
        index_max_bytes: p.config.segment_index_bytes,
        index_interval_bytes: p.config.index_interval_bytes,
        max_batch_bytes: p.config.max_message_bytes,
    };
    storage.create_dir_all(&p.dir)?;
    // Finish (or roll back) an interrupted compaction swap or segment deletion first, so the
    // listing below sees one consistent set of segments.
    let replaced = finish_interrupted(storage, &p.dir)?;
    if !replaced.is_empty() {
        info!(
            topic = %p.topic,
            partition = p.id,
            swaps = replaced.len(),
            "recovery completed compaction swaps that an interruption left half done"
        );
    }
    let mut bases = list_segments(storage, &p.dir)?;
    // A damaged checkpoint only costs a full scan: it is a cache of what scanning finds.
    let checkpoint = load_checkpoint(storage, &p.dir).unwrap_or(None);
    let had_checkpoint = checkpoint.is_some();
    // After a clean close and nothing replaced since, the file is exactly what that close
    // wrote durably (its clean-shutdown marker was written only after it).
    let durable_checkpoint = checkpoint
        .clone()
        .filter(|_| p.clean && replaced.is_empty());
    let mut checkpoint = checkpoint.unwrap_or_default();
    // Entries for segments a completed swap replaced describe files that are gone.
    checkpoint
        .sealed
        .retain(|s| !replaced.iter().any(|r| (r.0..r.1).contains(&s.base_offset)));
    // The log start's own home: never guessed, because guessing low would bring deleted
    // records back. Only TruncateCorrupt opens without it, and then allows offset gaps
    // everywhere rather than truncate compacted segments as damaged.
    let (bounds, bounds_lost) = match load_bounds(storage, &p.dir) {
        Ok(b) => (b.unwrap_or_default(), false),
        Err(e) if p.mode == RecoveryMode::Strict => return Err(e),
        Err(_) => {
            let guess = Bounds {
                log_start_offset: checkpoint.log_start_offset,
                cleaned_end: u64::MAX,
                passes: Vec::new(),
            };
            (guess, true)
        }
    };
    let start_floor = bounds.log_start_offset.max(checkpoint.log_start_offset);
    let listed = bases.len();
    remove_segments_below(storage, &p.dir, &mut bases, start_floor)?;
    if bases.len() < listed {
        info!(
            topic = %p.topic,
            partition = p.id,
            segments = listed - bases.len(),
            log_start_offset = start_floor,
            "recovery removed segments below the log start that an interrupted retention left"
        );
    }
    check_listed_segments_exist(&p.dir, &bases, &checkpoint.sealed)?;

    let mut segments: Vec<Arc<Segment>> = Vec::new();
    let mut sealed: Vec<SealedSegment> = Vec::new();
    let mut needs_sync = false;
    let mut next_offset = checkpoint.log_start_offset;
    let mut prev_allows_gaps = false;
    let mut events: Vec<RecoveryEvent> = Vec::new();
    // Segments opened on the checkpoint's word, and segments read batch by batch (whose indexes
    // are rebuilt from the scan), for the partition's summary below.
    let (mut trusted_count, mut scanned_count) = (0usize, 0usize);
    let event = |segment: PathBuf, action, bytes, offsets, reason: &str| RecoveryEvent {
        topic: p.topic.into(),
        partition: p.id,
        segment,
        action,
        bytes,
        offsets,
        reason: reason.to_string(),
    };
    let mut i = 0;
    while let Some(&base) = bases.get(i) {
        let is_last = i + 1 == bases.len();
        let log_path = p.dir.join(file_name(base, "log"));
        let size = storage.open(&log_path, OpenMode::Read)?.len()?;
        let allow_gaps = base < bounds.cleaned_end;
        let follows = if prev_allows_gaps {
            base >= next_offset
        } else {
            base == next_offset
        };
        if !follows && !segments.is_empty() {
            // Each segment starts where the previous one ended (or, after a compacted one, at or
            // after it: compaction may drop its last records); anything else means a segment
            // file is missing or foreign.
            return Err(Error::Corrupt {
                segment: log_path,
                position: 0,
                reason: format!(
                    "segment base offset {base} does not follow the previous segment, which ends at {next_offset}"
                ),
            });
        }
        prev_allows_gaps = allow_gaps;
        let trusted = checkpoint
            .sealed
            .iter()
            .find(|s| s.base_offset == base && s.stats.size == size)
            .copied();
        if let Some(entry) = trusted {
            let segment = Segment::open(
                storage,
                &p.dir,
                base,
                &limits,
                entry.stats,
                is_last,
                Some((entry.index_crc, entry.time_index_crc)),
                allow_gaps,
            )?;
            if !is_last {
                sealed.push(seal_record(storage, &segment)?);
            }
            next_offset = entry.stats.next_offset;
            segments.push(Arc::new(segment));
            trusted_count += 1;
            i += 1;
            continue;
        }
        // Not vouched for: scan it.
        scanned_count += 1;
        let file = storage.open(&log_path, OpenMode::Read)?;
        let opts = ScanOptions {
            // The first segment may start below the log start offset (records deleted inside it).
            segment_base: base,
            allow_gaps,
            verify_crc: true,
            max_batch_bytes: limits.max_batch_bytes,
        };
        let summary = scan_batches(&*file, 0, size, &opts, |_, _| {}).at("scan", &log_path)?;
        let mut stats = SegmentStats {
            size: summary.valid_end,
            next_offset: if summary.batches == 0 {
                base
            } else {
                summary.next_offset
            },
            max_timestamp: summary.max_timestamp,
            offset_of_max_timestamp: summary.offset_of_max_timestamp,
        };
        if summary.batches == 0 {
            stats.max_timestamp = NO_TIMESTAMP;
            stats.offset_of_max_timestamp = base;
        }
        let damage = match &summary.end {
            ScanEnd::Clean => None,
            ScanEnd::Truncated { position } => {
                Some((*position, "the segment ends inside a batch".to_string()))
            }
            ScanEnd::Invalid { position, reason } => Some((*position, reason.clone())),
        };
        let mut drop_rest = false;
        let mut cut = None;
        if let Some((position, reason)) = damage {
            let mid_log = valid_batch_after(&*file, position, size, base, limits.max_batch_bytes)
                .at("scan", &log_path)?
                .is_some()
                || later_segments_hold_data(
                    storage,
                    &p.dir,
                    bases.get(i + 1..).unwrap_or_default(),
                    limits.max_batch_bytes,
                )?;
            if mid_log && p.mode == RecoveryMode::Strict {
                return Err(Error::Corrupt {
                    segment: log_path,
                    position,
                    reason: format!("{reason}; valid batches follow, so this is not a torn write (open with RecoveryMode::TruncateCorrupt to drop everything from here on)"),
                });
            }
            drop_rest = true;
            let (action, lost_end) = if mid_log {
                let found = highest_next_offset(&*file, position, size, base, &limits)
                    .at("scan", &log_path)?;
                (RecoveryAction::TruncatedCorrupt, found)
            } else {
                // A torn tail holds no valid batch, by definition: nothing readable was lost.
                (RecoveryAction::TornTail, None)
            };
            let offsets = stats.next_offset..lost_end.unwrap_or(0).max(stats.next_offset);
            cut = Some(event(
                log_path.clone(),
                action,
                position..size,
                offsets,
                &reason,
            ));
        }
        let is_active = is_last || drop_rest;
        let segment = Segment::open(
            storage, &p.dir, base, &limits, stats, is_active, None, allow_gaps,
        )?;
        if size != stats.size {
            segment.truncate(stats.size, stats)?;
            needs_sync = true;
        }
        next_offset = stats.next_offset;
        if !is_active {
            // Scanned and valid: seal it so the checkpoint can vouch for it from now on.
            segment.seal()?;
            sealed.push(seal_record(storage, &segment)?);
        }
        segments.push(Arc::new(segment));
        if let Some(cut) = cut {
            trace_cut(&cut);
            events.push(cut);
        }
        if drop_rest {
            for &later in bases.get(i + 1..).unwrap_or_default() {
                let path = p.dir.join(file_name(later, "log"));
                let file = storage.open(&path, OpenMode::Read)?;
                let len = file.len()?;
                if len > 0 {
                    let found =
                        highest_next_offset(&*file, 0, len, later, &limits).at("scan", &path)?;
                    let offsets = later..found.unwrap_or(later).max(later);
                    let reason = "it follows the cut";
                    let removed = event(
                        path,
                        RecoveryAction::RemovedSegment,
                        0..len,
                        offsets,
                        reason,
                    );
                    trace_cut(&removed);
                    events.push(removed);
                }
                drop(file);
                remove_segment_files(storage, &p.dir, later)?;
            }
            needs_sync = true;
            break;
        }
        i += 1;
    }

    // Only a directory that held no segment at all is left to the creation's syncs: anything
    // found in it (it should hold nothing) is made durable here as in any open.
    let deferred = p.fresh && segments.is_empty() && !had_checkpoint;
    if segments.is_empty() {
        let segment = Segment::create(storage, &p.dir, next_offset, &limits)?;
        if !deferred {
            storage.sync_dir(&p.dir)?;
        }
        segments.push(Arc::new(segment));
    }
    let active = segments.last().expect("at least one segment").clone();
    let high_watermark = active.next_offset();
    let first_base = segments.first().expect("at least one segment").base_offset;
    let log_start_offset = start_floor.max(first_base).min(high_watermark);
    let first_batch_timestamp = first_batch_max_timestamp(&active)?;
    let replayed = super::replay::rebuild_producer_states(
        storage,
        &super::replay::ReplayParams {
            checkpoint: &checkpoint,
            had_checkpoint,
            clean: p.clean,
            segments: &segments,
            limits: &limits,
            expiration_ms: p.producer_id_expiration_ms,
            log_start_offset,
        },
    )?;
    let producers = replayed.states;
    let first_unstable = producers.first_unstable_offset().unwrap_or(u64::MAX);
    let aborted = replayed.aborted;
    for entry in sealed
        .iter_mut()
        .filter(|s| replayed.rewritten.contains(&s.base_offset))
    {
        if let Some(segment) = segments.iter().find(|s| s.base_offset == entry.base_offset) {
            let file = segment.txn_index.read(storage)?;
            entry.txn_index_crc = TxnIndexCrc::of(file.as_deref());
        }
    }
    let rewrote_indexes = !replayed.rewritten.is_empty();
    debug!(
        topic = %p.topic,
        partition = p.id,
        segments = segments.len(),
        trusted = trusted_count,
        scanned = scanned_count,
        txn_indexes_rewritten = replayed.rewritten.len(),
        removed_bytes = events.iter().map(|e| e.bytes.end - e.bytes.start).sum::<u64>(),
        high_watermark,
        log_start_offset,
        clean = p.clean,
        "partition recovered"
    );

    let inner = PartitionInner {
        topic: p.topic.to_string(),
        id: p.id,
        dir: p.dir.clone(),
        storage: p.storage.clone(),
        config: RwLock::new(Arc::new(p.config.clone())),
        writer: Mutex::new(WriterState {
            since_index: since_last_index_entry(&active),
            first_batch_timestamp,
            scratch: Vec::new(),
            recovery_point: checkpoint.recovery_point,
            sealed,
            producers,
            durable_checkpoint,
        }),
        segments: RwLock::new(Arc::new(segments)),
        high_watermark: AtomicU64::new(high_watermark),
        watchers: Default::default(),
        log_start_offset: AtomicU64::new(log_start_offset),
        bounds: Mutex::new(Bounds {
            log_start_offset,
            // Compaction never reaches the active segment; this also turns the "gaps anywhere"
            // of a lost bounds file into "gaps in any sealed segment" from here on.
            cleaned_end: bounds.cleaned_end.min(active.base_offset),
            ..bounds
        }),
        closed: AtomicBool::new(false),
        poisoned: Mutex::new(None),
        synced: super::group_sync::GroupSync::new(0),
        recovery_events: events,
        first_unstable: AtomicU64::new(first_unstable),
        aborted: RwLock::new(Arc::new(aborted)),
        metrics: Default::default(),
    };
    // After repairs (or when nothing vouched for this partition), make the recovered state
    // durable and record it, so a crash right after this open does not repeat the work.
    // Segments before the active one are durable already: trusted ones were fsynced when sealed,
    // scanned ones were sealed (fsynced) above. Only the active one may hold unsynced bytes.
    // A fresh partition's only segment is empty, and its directory is synced by the creation.
    if !deferred && (needs_sync || !had_checkpoint || !p.clean || rewrote_indexes) {
        active.file.sync_data()?;
        storage.sync_dir(&p.dir)?;
        let mut w = inner.writer.lock();
        w.recovery_point = high_watermark;
        inner.write_checkpoint(&mut w, high_watermark)?;
    }
    if bounds_lost {
        // TruncateCorrupt opened without a readable bounds file: write the repaired one, or
        // every later open would trip over the damaged file again.
        store_bounds(storage, &p.dir, &inner.bounds.lock())?;
    }
    inner.synced.reset(high_watermark);
    Ok(inner)
}

/// Reports one cut or removal of recovery: records that were in the log are gone (a torn tail
/// holds none that were acknowledged as synced, but the host should still hear of it).
fn trace_cut(e: &RecoveryEvent) {
    let message = match e.action {
        RecoveryAction::TornTail => "recovery cut a torn tail off a segment",
        RecoveryAction::TruncatedCorrupt => "recovery truncated a corrupt segment",
        RecoveryAction::RemovedSegment => "recovery removed a segment after the cut",
    };
    warn!(
        topic = %e.topic,
        partition = e.partition,
        path = %e.segment.display(),
        action = ?e.action,
        truncated_bytes = e.bytes.end - e.bytes.start,
        from_byte = e.bytes.start,
        offsets_lost = e.offsets.end - e.offsets.start,
        first_offset_lost = e.offsets.start,
        reason = %e.reason,
        "{message}"
    );
}

/// What the checkpoint records about a sealed segment: its stats and the checksums of its
/// index files as they are on disk now.
pub(crate) fn seal_record(storage: &dyn Storage, segment: &Segment) -> Result<SealedSegment> {
    let (index_crc, time_index_crc) = segment.index_checksums()?;
    let txn_index = segment.txn_index.read(storage)?;
    Ok(SealedSegment {
        base_offset: segment.base_offset,
        stats: segment.stats(),
        index_crc,
        time_index_crc,
        txn_index_crc: TxnIndexCrc::of(txn_index.as_deref()),
    })
}

/// Base offsets of the `.log` files in `dir`, ascending. Leftovers of interrupted operations
/// (`*.tmp`) and index files without a `.log` are removed: both are rebuildable or obsolete.
fn list_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<u64>> {
    let names = storage.list_dir(dir)?;
    let mut bases: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_file_name(n, "log"))
        .collect();
    bases.sort_unstable();
    for name in &names {
        let orphan_index = crate::segment::SEGMENT_FILE_EXTENSIONS[1..]
            .iter()
            .any(|ext| {
                parse_file_name(name, ext).is_some_and(|b| bases.binary_search(&b).is_err())
            });
        let temp = name.ends_with(".tmp")
            && (name.starts_with(CHECKPOINT_FILE) || name.starts_with(BOUNDS_FILE));
        if orphan_index || temp {
            storage.remove_file(&dir.join(name))?;
        }
    }
    Ok(bases)
}

/// Removes the segments that lie wholly below the durable log start: retention advanced the
/// start, then crashed before their files were gone. (A segment is wholly below the start when
/// the next segment starts at or below it.)
fn remove_segments_below(
    storage: &dyn Storage,
    dir: &Path,
    bases: &mut Vec<u64>,
    log_start: u64,
) -> Result<()> {
    let keep_from = bases.partition_point(|&b| b <= log_start).saturating_sub(1);
    if keep_from == 0 {
        return Ok(());
    }
    for &base in bases.get(..keep_from).unwrap_or_default() {
        remove_segment_files(storage, dir, base)?;
    }
    bases.drain(..keep_from);
    storage.sync_dir(dir)?;
    Ok(())
}

/// A sealed segment the checkpoint lists, lying between the first and last segment on disk,
/// must exist: retention only removes a prefix and compaction rewrites the checkpoint before it
/// retires segments, so a missing one is a hole in the log, which compaction's offset gaps
/// would otherwise hide.
fn check_listed_segments_exist(dir: &Path, bases: &[u64], listed: &[SealedSegment]) -> Result<()> {
    let (Some(&first), Some(&last)) = (bases.first(), bases.last()) else {
        return Ok(());
    };
    for s in listed {
        if s.base_offset > first
            && s.base_offset < last
            && bases.binary_search(&s.base_offset).is_err()
        {
            return Err(Error::Corrupt {
                segment: dir.join(file_name(s.base_offset, "log")),
                position: 0,
                reason: "the checkpoint lists this segment but its file is missing".into(),
            });
        }
    }
    Ok(())
}

fn remove_segment_files(storage: &dyn Storage, dir: &Path, base: u64) -> Result<()> {
    for ext in crate::segment::SEGMENT_FILE_EXTENSIONS {
        let path = dir.join(file_name(base, ext));
        if storage.exists(&path)? {
            storage.remove_file(&path)?;
        }
    }
    Ok(())
}

/// Whether any later segment starts with a CRC-valid batch (then damage before it is mid-log).
fn later_segments_hold_data(
    storage: &dyn Storage,
    dir: &Path,
    bases: &[u64],
    max_batch_bytes: usize,
) -> Result<bool> {
    for &base in bases {
        let path = dir.join(file_name(base, "log"));
        let file = storage.open(&path, OpenMode::Read)?;
        let size = file.len()?;
        if size == 0 {
            continue;
        }
        let opts = ScanOptions {
            segment_base: base,
            // Only asks whether valid batches exist at all; their offsets do not matter here.
            allow_gaps: true,
            verify_crc: true,
            max_batch_bytes,
        };
        let summary = scan_batches(&*file, 0, size, &opts, |_, _| {}).at("scan", &path)?;
        if summary.batches > 0
            || valid_batch_after(&*file, 0, size, base, max_batch_bytes)
                .at("scan", &path)?
                .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The offset after the last record of any CRC-valid batch in `[from, end)` of a damaged
/// segment (what a cut there loses, as far as it can be read), or `None` if there is none.
/// Alternates between walking valid batches and searching byte by byte for the next one.
fn highest_next_offset(
    file: &dyn StorageFile,
    from: u64,
    end: u64,
    base: u64,
    limits: &SegmentLimits,
) -> std::io::Result<Option<u64>> {
    let opts = ScanOptions {
        segment_base: base,
        // Only the batches' own offsets matter here, not their sequence.
        allow_gaps: true,
        verify_crc: true,
        max_batch_bytes: limits.max_batch_bytes,
    };
    let mut best: Option<u64> = None;
    let mut pos = from;
    while pos < end {
        let summary = scan_batches(file, pos, end, &opts, |_, h| {
            best = best.max(Some(h.next_offset()));
        })?;
        let stopped = match summary.end {
            ScanEnd::Clean => break,
            ScanEnd::Truncated { position } | ScanEnd::Invalid { position, .. } => position,
        };
        match valid_batch_after(file, stopped, end, base, limits.max_batch_bytes)? {
            Some(next) => pos = next,
            None => break,
        }
    }
    Ok(best)
}

/// Max timestamp of the active segment's first batch (the `segment_ms` reference), if any.
fn first_batch_max_timestamp(segment: &Segment) -> Result<Option<i64>> {
    if segment.is_empty() {
        return Ok(None);
    }
    let mut head = [0u8; crate::format::HEADER_LEN];
    read_exact_at(&*segment.file, &mut head, 0).at("read", &segment.log_path)?;
    let header = BatchHeader::parse(&head).map_err(|e| Error::Corrupt {
        segment: segment.log_path.clone(),
        position: 0,
        reason: e.to_string(),
    })?;
    Ok(Some(header.max_timestamp))
}

/// Bytes after the active segment's last index entry, so index spacing continues as before.
fn since_last_index_entry(segment: &Segment) -> usize {
    let last = segment
        .indexes
        .read()
        .offset
        .last()
        .map(|(_, pos)| pos as u64)
        .unwrap_or(0);
    segment.end().saturating_sub(last) as usize
}
