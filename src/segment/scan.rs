//! Sequential validation of a `.log` file: the heart of recovery and index rebuilding.
// These bytes come from disk or from a caller: a malformed input must become an error, never
// a panic, so nothing here may unwrap or index unchecked.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io;

use crate::format::{verify_crc, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use crate::storage::StorageFile;

use super::cursor::{BatchCursor, ChunkSource, Next};
use super::NO_TIMESTAMP;

/// Bytes read per I/O while scanning. Large enough to make the scan sequential-read bound,
/// small enough to bound memory (a batch larger than this is read on its own).
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanOptions {
    /// The segment's base offset: the first batch starts there, each later batch starts where
    /// the previous one ended, and every batch lies within `base .. base + i32::MAX`. The base
    /// offset field is outside the batch CRC, so this continuity check is what catches a
    /// damaged one.
    pub segment_base: u64,
    /// The segment was (or may have been) rewritten by compaction, which leaves offset gaps:
    /// batches then only need to start at or after the previous one's end. This weaker check
    /// misses a damaged base offset that keeps the order; it applies only below the partition's
    /// cleaned boundary (see `docs/ARCHITECTURE.md`, "Offset gaps").
    pub allow_gaps: bool,
    pub verify_crc: bool,
    /// A length field claiming more than this is corruption, not a batch.
    pub max_batch_bytes: usize,
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// The file ends exactly after the last whole batch.
    Clean,
    /// The file ends inside a batch (header or body cut short): the shape of a torn write.
    Truncated { position: u64 },
    /// The bytes at `position` are not a valid batch.
    Invalid { position: u64, reason: String },
}

#[derive(Debug, Clone)]
pub(crate) struct ScanSummary {
    /// End of the last valid batch.
    pub valid_end: u64,
    /// Offset after the last valid batch (the segment base if none).
    pub next_offset: u64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: u64,
    pub batches: u64,
    pub end: ScanEnd,
}

/// Walks the batches of `file` from byte `start` to byte `end`, calling `visit(position, header)`
/// for each valid one, and stops at the first invalid or incomplete batch.
pub(crate) fn scan_batches(
    file: &dyn StorageFile,
    start: u64,
    end: u64,
    opts: &ScanOptions,
    mut visit: impl FnMut(u64, &BatchHeader),
) -> io::Result<ScanSummary> {
    let mut summary = ScanSummary {
        valid_end: start,
        next_offset: opts.segment_base,
        max_timestamp: NO_TIMESTAMP,
        offset_of_max_timestamp: opts.segment_base,
        batches: 0,
        end: ScanEnd::Clean,
    };
    let mut cursor =
        BatchCursor::new(file, start, end, CHUNK).max_batch_bytes(opts.max_batch_bytes);
    loop {
        let batch = match cursor.next_header()? {
            Next::Batch(batch) => batch,
            Next::End => break,
            Next::Torn { position, .. } => {
                summary.end = ScanEnd::Truncated { position };
                break;
            }
            Next::Invalid { position, reason } => {
                summary.end = invalid(position, reason);
                break;
            }
        };
        let (pos, header) = (batch.position, &batch.header);
        if let Some(reason) = offset_problem(header, summary.next_offset, opts) {
            summary.end = invalid(pos, reason);
            break;
        }
        if opts.verify_crc {
            if let Err(e) = verify_crc(&cursor.body(&batch, 0)?) {
                summary.end = invalid(pos, e.to_string());
                break;
            }
        } else {
            cursor.skip(&batch);
        }
        visit(pos, header);
        if header.max_timestamp > summary.max_timestamp {
            summary.max_timestamp = header.max_timestamp;
            summary.offset_of_max_timestamp = header.last_offset();
        }
        summary.next_offset = header.next_offset();
        summary.batches += 1;
        summary.valid_end = cursor.position();
    }
    Ok(summary)
}

fn invalid(position: u64, reason: String) -> ScanEnd {
    ScanEnd::Invalid { position, reason }
}

/// Each batch must start exactly where the previous one ended (or, in a compacted segment, at
/// or after it) and stay within the segment's relative-offset range.
fn offset_problem(h: &BatchHeader, expected: u64, opts: &ScanOptions) -> Option<String> {
    let segment_base = opts.segment_base;
    if h.base_offset < expected || (!opts.allow_gaps && h.base_offset != expected) {
        return Some(format!(
            "base offset {} breaks the offset sequence (expected {}{expected})",
            h.base_offset,
            if opts.allow_gaps { "at least " } else { "" }
        ));
    }
    if h.last_offset().saturating_sub(segment_base) > i32::MAX as u64 {
        return Some(format!(
            "last offset {} is out of this segment's range (base {segment_base})",
            h.last_offset()
        ));
    }
    None
}

/// After an invalid batch at `from`, is there any CRC-valid batch later in `[from+1, end)`?
/// Finding one means the damage is in the middle of the log (real corruption), not a torn tail.
/// A random 4-byte CRC match has a 2^-32 chance per candidate, and candidates must also pass
/// the header checks first, so false alarms are negligible.
pub(crate) fn valid_batch_after(
    file: &dyn StorageFile,
    from: u64,
    end: u64,
    min_offset: u64,
    max_batch_bytes: usize,
) -> io::Result<Option<u64>> {
    // Refills of CHUNK + HEADER_LEN - 1 bytes step the search CHUNK bytes further per read: the
    // last header a buffer holds whole starts CHUNK - 1 bytes after its first.
    let mut cursor = BatchCursor::new(file, from + 1, end, CHUNK + HEADER_LEN - 1);
    let mut pos = from + 1;
    while pos + HEADER_LEN as u64 <= end {
        cursor.cover(pos, HEADER_LEN)?;
        let candidate = BatchHeader::parse(cursor.bytes(pos, HEADER_LEN));
        if let Ok(header) = candidate {
            let len = header.total_len();
            if header.base_offset >= min_offset
                && len <= max_batch_bytes + LOG_OVERHEAD
                && pos + len as u64 <= end
            {
                let valid = if cursor.holds(pos, len) {
                    verify_crc(cursor.bytes(pos, len)).is_ok()
                } else {
                    // Read aside: a candidate that fails should not cost the search its buffer.
                    verify_crc(&file.read_chunk(pos, len)?).is_ok()
                };
                if valid {
                    return Ok(Some(pos));
                }
            }
        }
        pos += 1;
    }
    Ok(None)
}
