//! Rebuilding a partition's producer and transaction state at open: the checkpoint's snapshot
//! (as of its recovery point) plus every batch header from there on, and the aborted
//! transactions: the `.txnindex` entries below the replay's start, the markers replayed after
//! it.
//!
//! Nothing of the transaction state is trusted from a file newer than what it describes: the
//! snapshot is cut back to the recovery point (`ProducerStates::forget_from`), `.txnindex`
//! entries to the replay's start, and both are rebuilt from the `.log` beyond. A damaged
//! `.txnindex` or a missing snapshot replays the whole partition.
// These bytes come from disk: a malformed input must become an error, never a panic.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use bytes::Bytes;

use super::ProducerStates;
use crate::error::{Error, Result};
use crate::format::{
    decode_batch, decode_control_record, AbortedTxn, BatchHeader, ControlRecord, ControlType,
};
use crate::meta::Checkpoint;
use crate::segment::{scan_batches, ScanOptions, Segment, SegmentLimits, TxnIndex};
use crate::storage::{read_exact_at, IoContext, Storage};

pub(super) struct ReplayParams<'a> {
    pub checkpoint: &'a Checkpoint,
    pub had_checkpoint: bool,
    /// The log was closed cleanly: `.txnindex` files of the replayed range are as durable as
    /// the segments, and need no rewrite if they match.
    pub clean: bool,
    pub segments: &'a [Arc<Segment>],
    pub limits: &'a SegmentLimits,
    pub expiration_ms: i64,
    pub log_start_offset: u64,
}

pub(super) struct Replayed {
    pub states: ProducerStates,
    /// Aborted transactions in marker order, none wholly below the log start.
    pub aborted: Vec<AbortedTxn>,
    /// Base offsets of the segments whose `.txnindex` was rewritten: the checkpoint's record
    /// of them must be brought up to date.
    pub rewritten: Vec<u64>,
}

/// Producer states as of the high watermark, and the aborted transactions. Replayed producers
/// count as having written now (batch headers carry no append time), so a crash never makes a
/// producer expire early. Without a usable snapshot (none, damaged, or a version-1 one without
/// CRCs), every batch is replayed.
pub(super) fn rebuild_producer_states(
    storage: &dyn Storage,
    p: &ReplayParams<'_>,
) -> Result<Replayed> {
    let now = crate::clock::now_ms();
    let high_watermark = p.segments.last().map(|s| s.next_offset()).unwrap_or(0);
    let snapshot = if p.had_checkpoint && p.checkpoint.recovery_point <= high_watermark {
        ProducerStates::decode(&p.checkpoint.producers, p.expiration_ms).ok()
    } else {
        None
    };
    let (mut states, mut from) = match snapshot {
        Some(mut states) => {
            // Written by retention or compaction, the snapshot may remember batches past its
            // recovery point that a power loss then took.
            states.forget_from(p.checkpoint.recovery_point);
            (states, p.checkpoint.recovery_point)
        }
        None => (ProducerStates::new(p.expiration_ms), 0),
    };
    // A segment below the replay's start that the checkpoint does not vouch for (its `.log`
    // or its `.txnindex` is not what was sealed: an interrupted compaction swap, damage) may
    // lack aborted transactions, which can then only come back from its markers; so may a
    // `.txnindex` that does not parse. Both replay the whole partition.
    let mut files = Vec::with_capacity(p.segments.len());
    for segment in p.segments {
        files.push(segment.txn_index.read(storage)?);
    }
    let vouched = |s: &Segment, file: Option<&[u8]>| {
        p.checkpoint.sealed.iter().any(|c| {
            c.base_offset == s.base_offset
                && c.stats.size == s.end()
                && c.txn_index_crc.matches(file)
        })
    };
    let mut on_disk = Vec::with_capacity(files.len());
    let mut trusted = true;
    for (segment, file) in p.segments.iter().zip(&files) {
        let below = segment.next_offset() <= from && !segment.is_empty();
        if below && !vouched(segment, file.as_deref()) {
            trusted = false;
        }
        match TxnIndex::parse(file.as_deref()) {
            Some(entries) => on_disk.push(entries),
            None => {
                trusted = false;
                on_disk.push(Vec::new());
            }
        }
    }
    if !trusted {
        from = 0;
        states = ProducerStates::new(p.expiration_ms);
    }
    let mut aborted: Vec<AbortedTxn> = on_disk
        .iter()
        .flatten()
        .filter(|a| a.last_offset < from)
        .copied()
        .collect();
    for segment in p.segments {
        if segment.next_offset() <= from || segment.is_empty() {
            continue;
        }
        let opts = ScanOptions {
            segment_base: segment.base_offset,
            allow_gaps: segment.allow_gaps,
            verify_crc: false,
            max_batch_bytes: p.limits.max_batch_bytes,
        };
        let mut failure: Option<Error> = None;
        scan_batches(&*segment.file, 0, segment.end(), &opts, |pos, h| {
            if h.base_offset < from || failure.is_some() {
                return;
            }
            let Some(first_offset) = states.record(h, h.max_timestamp, now) else {
                return;
            };
            match marker_at(segment, pos, h, p.limits.max_batch_bytes) {
                Ok(Some(ControlType::Abort)) => aborted.push(AbortedTxn {
                    producer_id: h.producer_id,
                    first_offset,
                    last_offset: h.base_offset,
                    last_stable_offset: states.first_unstable_offset().unwrap_or(h.next_offset()),
                }),
                Ok(_) => {}
                Err(e) => failure = Some(e),
            }
        })
        .at("scan", &segment.log_path)?;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    // Bring the replayed segments' files in line with what the log says (and make them
    // durable after a crash, when the checkpoint about to be written moves the recovery point
    // past them).
    let mut rewritten = Vec::new();
    for (segment, disk) in p.segments.iter().zip(&on_disk) {
        if segment.next_offset() <= from {
            continue;
        }
        let range = segment.base_offset..segment.next_offset();
        let want: Vec<AbortedTxn> = aborted
            .iter()
            .filter(|a| range.contains(&a.last_offset))
            .copied()
            .collect();
        if !p.clean || &want != disk {
            segment
                .txn_index
                .replace(storage, &want)
                .at("rewrite", segment.txn_index.path())?;
            rewritten.push(segment.base_offset);
        }
    }
    aborted.retain(|a| a.last_offset >= p.log_start_offset);
    Ok(Replayed {
        states,
        aborted,
        rewritten,
    })
}

/// The end marker of the control batch at `pos` (header `h`), if it is one.
fn marker_at(
    segment: &Segment,
    pos: u64,
    h: &BatchHeader,
    max_batch_bytes: usize,
) -> Result<Option<ControlType>> {
    let corrupt = |reason: String| Error::Corrupt {
        segment: segment.log_path.clone(),
        position: pos,
        reason,
    };
    let mut buf = vec![0u8; h.total_len()];
    read_exact_at(&*segment.file, &mut buf, pos).at("read", &segment.log_path)?;
    let mut records = Vec::new();
    decode_batch(&Bytes::from(buf), 0, max_batch_bytes, &mut records)
        .map_err(|e| corrupt(format!("control batch: {e}")))?;
    let Some(record) = records.first() else {
        return Err(corrupt("control batch without a record".into()));
    };
    let key = record
        .key
        .as_deref()
        .ok_or_else(|| corrupt("control record without a key".into()))?;
    match decode_control_record(key, record.value.as_deref()).map_err(|e| corrupt(e.to_string()))? {
        ControlRecord::EndTxn(marker) => Ok(Some(marker.control_type)),
        ControlRecord::Other { .. } => Ok(None),
    }
}
