//! The read path: positioned reads of whole batches, decoded into zero-copy records.

use std::sync::Arc;

use bytes::Bytes;

use super::{Partition, PartitionInner};
use crate::error::{Error, Result};
use crate::format::StoredRecord;
use crate::format::{decode_batch, verify_crc, AbortedTxn, BatchHeader, BatchView, HEADER_LEN};
use crate::segment::{BatchCursor, Next, Segment};

/// Which records a read may see (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum IsolationLevel {
    /// Everything below the high watermark, including records of transactions that are still
    /// open or were aborted (never the transactions' end markers).
    #[default]
    ReadUncommitted,
    /// Only records below the last stable offset, and none of an aborted transaction.
    ReadCommitted,
}

/// What a read skips besides what lies before its offset: control batches always, and under
/// read_committed the batches of aborted transactions.
struct Visibility {
    /// Where the read ends: the high watermark, or the last stable offset.
    cap: u64,
    /// The aborted transactions that overlap the read (read_committed only).
    aborted: Vec<AbortedTxn>,
    /// Hand out control batches too (the log's own replay of markers).
    show_control: bool,
}

/// How far a read got: past which offset it walked, and how many batches (and their bytes) it
/// handed records out of, for the partition's read counters.
#[derive(Debug, Clone, Copy)]
struct Progress {
    walked: u64,
    batches: u64,
    bytes: u64,
}

impl Progress {
    fn at(offset: u64) -> Progress {
        Progress {
            walked: offset,
            batches: 0,
            bytes: 0,
        }
    }

    fn walked_past(&mut self, next_offset: u64) {
        self.walked = self.walked.max(next_offset);
    }
}

impl Visibility {
    fn hides(&self, h: &BatchHeader) -> bool {
        (h.is_control() && !self.show_control) || self.aborted.iter().any(|a| a.covers(h))
    }
}

impl Partition {
    /// Reads records starting at `offset`, from whole batches totalling about `max_bytes`.
    ///
    /// At least one batch is returned when `offset` is below the high watermark, even if that
    /// batch alone is larger than `max_bytes` (so a reader always makes progress, as in Kafka).
    /// Records before `offset` in the first batch are skipped, and so are offsets that
    /// compaction removed: the read returns the next records at or after `offset`, and is empty
    /// only when no record at or after it is stored below the high watermark. Reading at the
    /// high watermark returns an empty vector; outside `[log_start_offset, high_watermark]` is
    /// [`Error::OffsetOutOfRange`]. The records' bytes are slices of one positioned read per
    /// segment visited (compressed batches are decompressed once, into one buffer each).
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Vec<StoredRecord>> {
        let mut out = Vec::new();
        self.read_into(offset, max_bytes, &mut out)?;
        Ok(out)
    }

    /// Like [`read`](Self::read), appending to `out` (so a caller can reuse one vector).
    pub fn read_into(
        &self,
        offset: u64,
        max_bytes: usize,
        out: &mut Vec<StoredRecord>,
    ) -> Result<()> {
        self.read_with(offset, max_bytes, IsolationLevel::ReadUncommitted, out)
            .map(|_| ())
    }

    /// Like [`read_into`](Self::read_into) under an isolation level. With
    /// [`IsolationLevel::ReadCommitted`] the read stops at the
    /// [`last_stable_offset`](Self::last_stable_offset) and skips every record of an aborted
    /// transaction. Returns the offset the next read should start at: past every batch this
    /// read looked at, the records it returned and the markers and aborted batches it skipped
    /// (so a reader never stops on a marker).
    pub fn read_isolated_into(
        &self,
        offset: u64,
        max_bytes: usize,
        isolation: IsolationLevel,
        out: &mut Vec<StoredRecord>,
    ) -> Result<u64> {
        self.read_with(offset, max_bytes, isolation, out)
    }

    /// [`read_batches`](Self::read_batches) under an isolation level, as
    /// [`read_isolated_into`](Self::read_isolated_into).
    pub fn read_isolated_batches(
        &self,
        offset: u64,
        max_bytes: usize,
        isolation: IsolationLevel,
        out: &mut Vec<BatchView>,
    ) -> Result<u64> {
        self.read_with(offset, max_bytes, isolation, out)
    }

    /// Like [`read_into`](Self::read_into), but hands out whole batches whose records are
    /// decoded as you iterate them, borrowing their bytes: no per-record allocation or
    /// reference count, about twice the records/s of `read_into` on small records (see
    /// `benches/partition.rs`). Every batch is CRC-checked and decompressed as with `read`;
    /// the first batch's records before `offset` are skipped by its iterator.
    pub fn read_batches(
        &self,
        offset: u64,
        max_bytes: usize,
        out: &mut Vec<BatchView>,
    ) -> Result<()> {
        self.read_with(offset, max_bytes, IsolationLevel::ReadUncommitted, out)
            .map(|_| ())
    }

    /// Every batch from `offset` below the high watermark, control batches included (for the
    /// log's own replays of `__consumer_offsets`). Returns where the next read starts.
    pub(crate) fn read_raw_batches(
        &self,
        offset: u64,
        max_bytes: usize,
        out: &mut Vec<BatchView>,
    ) -> Result<u64> {
        self.inner.check_open()?;
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        if offset < start || offset > hw {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                earliest: start,
                latest: hw,
            });
        }
        let visibility = Visibility {
            cap: hw,
            aborted: Vec::new(),
            show_control: true,
        };
        // The log's own replays: not counted as reads.
        self.read_visible(offset, max_bytes, hw, &visibility, out)
            .map(|p| p.walked)
    }

    fn read_with<S: Sink>(
        &self,
        offset: u64,
        max_bytes: usize,
        isolation: IsolationLevel,
        out: &mut S,
    ) -> Result<u64> {
        let inner = &self.inner;
        inner.check_open()?;
        let hw = self.high_watermark();
        // Loaded after the high watermark (see `write_batch` for the order of the stores).
        let stable = self.last_stable_offset_below(hw);
        let start = self.log_start_offset();
        if offset < start || offset > hw {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                earliest: start,
                latest: hw,
            });
        }
        let (cap, visibility) = match isolation {
            IsolationLevel::ReadUncommitted => (
                hw,
                Visibility {
                    cap: hw,
                    aborted: Vec::new(),
                    show_control: false,
                },
            ),
            IsolationLevel::ReadCommitted => (
                stable,
                Visibility {
                    cap: stable,
                    aborted: inner.aborted_between(offset, stable),
                    show_control: false,
                },
            ),
        };
        let before = out.len();
        let progress = self.read_visible(offset, max_bytes, cap, &visibility, out)?;
        if progress.batches > 0 {
            let records = out.records_since(before);
            inner
                .metrics
                .read(records, progress.batches, progress.bytes);
        }
        Ok(progress.walked)
    }

    fn read_visible<S: Sink>(
        &self,
        offset: u64,
        max_bytes: usize,
        cap: u64,
        visibility: &Visibility,
        out: &mut S,
    ) -> Result<Progress> {
        let inner = &self.inner;
        let mut progress = Progress::at(offset);
        if offset >= cap {
            return Ok(progress);
        }
        let segments = inner.segments();
        let first = segment_for(&segments, offset);
        let before = out.len();
        for segment in &segments[first..] {
            inner.read_segment(segment, offset, max_bytes, visibility, &mut progress, out)?;
            if out.len() > before || progress.walked >= cap {
                break;
            }
        }
        if out.len() == before {
            // Nothing visible at or after `offset` below the cap: a reader may move to it.
            progress.walked = cap;
        }
        // The active segment's end is published before the high watermark, so the read may
        // have picked up a batch the watermark loaded above does not cover yet. Hand out only
        // what is below it: otherwise the caller's next read, from past those records, could
        // find the watermark still behind and fail with OffsetOutOfRange. (The walk stops at
        // the first batch at or past the cap, so this is a guard that finds nothing to drop,
        // and the batches `progress` counted are all handed out.)
        out.truncate_at(before, cap);
        progress.walked = progress.walked.min(cap);
        Ok(progress)
    }

    /// The first offset whose record timestamp is at least `timestamp`, or `None` if every
    /// record is older. Uses each segment's max timestamp to skip whole segments and the time
    /// index to skip within one, then scans batches.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        let inner = &self.inner;
        inner.check_open()?;
        let start = self.log_start_offset();
        for segment in inner.segments().iter() {
            if segment.max_timestamp() < timestamp || segment.next_offset() <= start {
                continue;
            }
            let from = segment
                .indexes
                .read()
                .time
                .lookup(timestamp)
                .map(|rel| segment.base_offset + rel as u64)
                .unwrap_or(segment.base_offset)
                .max(start);
            if let Some(found) = inner.scan_for_timestamp(segment, from, timestamp)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

/// Index of the segment holding `offset`: the last one whose base offset is <= it.
fn segment_for(segments: &[Arc<Segment>], offset: u64) -> usize {
    segments
        .partition_point(|s| s.base_offset <= offset)
        .saturating_sub(1)
}

impl PartitionInner {
    fn corrupt(&self, segment: &Segment, position: u64, reason: impl ToString) -> Error {
        Error::Corrupt {
            segment: segment.log_path.clone(),
            position,
            reason: reason.to_string(),
        }
    }

    /// Reads from one segment. The index gives a starting position at or before the batch
    /// holding `offset`; if that hint turns out not to be the batch the index says (a damaged
    /// index), the read starts over from the segment's first byte instead of failing.
    fn read_segment<S: Sink>(
        &self,
        segment: &Segment,
        offset: u64,
        max_bytes: usize,
        visibility: &Visibility,
        progress: &mut Progress,
        out: &mut S,
    ) -> Result<()> {
        let start = if offset > segment.base_offset {
            segment.lookup(offset)
        } else {
            None
        };
        match start {
            Some((pos, last)) => {
                match self.read_segment_from(
                    segment,
                    pos,
                    Expect::Last(last),
                    (offset, max_bytes),
                    visibility,
                    progress,
                    out,
                ) {
                    Err(Error::Corrupt { position, .. }) if position == pos => {
                        let first = Expect::after(segment.base_offset, segment);
                        let want = (offset, max_bytes);
                        self.read_segment_from(segment, 0, first, want, visibility, progress, out)
                    }
                    other => other,
                }
            }
            None => {
                let first = Expect::after(segment.base_offset, segment);
                let want = (offset, max_bytes);
                self.read_segment_from(segment, 0, first, want, visibility, progress, out)
            }
        }
    }

    /// Walks whole batches from `pos`, skipping those before `offset` without reading their
    /// bodies, and decodes the rest until `max_bytes` of batches (at least one) are used.
    /// Every batch's offsets are checked against the one before it: the base offset is outside
    /// the batch CRC, so continuity is what proves it undamaged. A compacted segment has gaps,
    /// so there the order is checked both ways (against the batch before and, before any
    /// record is handed out, the batch after) and each batch against its offset-index entry
    /// (`Segment::check_offsets`).
    #[allow(clippy::too_many_arguments)]
    fn read_segment_from<S: Sink>(
        &self,
        segment: &Segment,
        pos: u64,
        mut expect: Expect,
        (offset, max_bytes): (u64, usize),
        visibility: &Visibility,
        progress: &mut Progress,
        out: &mut S,
    ) -> Result<()> {
        let end = segment.end();
        let before = out.len();
        let mut used = 0usize;
        // One read covers the requested bytes plus the index's granularity of slack before them.
        let config = self.config();
        let want = max_bytes
            .max(HEADER_LEN)
            .saturating_add(config.index_interval_bytes);
        let max_uncompressed = config.max_uncompressed_bytes();
        let mut cursor = BatchCursor::new(segment, pos, end, want);
        loop {
            let pos = cursor.position();
            // Once records are in hand, stop at the first batch this read did not bring in: a
            // fresh read for it would be thrown away, and the caller's next read starts here
            // anyway.
            // A tail too short for a header is no batch to stop before: it is reported corrupt.
            if end.saturating_sub(pos) >= HEADER_LEN as u64
                && out.len() > before
                && !cursor.holds(pos, HEADER_LEN)
            {
                break;
            }
            let batch = match cursor.next_header()? {
                Next::Batch(batch) => batch,
                Next::End => break,
                Next::Torn { position, torn } => {
                    return Err(self.corrupt(segment, position, torn.reason()))
                }
                Next::Invalid { position, reason } => {
                    return Err(self.corrupt(segment, position, reason))
                }
            };
            let header = &batch.header;
            if !expect.matches(header) {
                return Err(self.corrupt(
                    segment,
                    pos,
                    format!(
                        "batch offsets {}..={} break the offset sequence (expected {expect:?})",
                        header.base_offset,
                        header.last_offset()
                    ),
                ));
            }
            if segment.allow_gaps {
                if let Some(reason) = segment.check_offsets(pos, header) {
                    return Err(self.corrupt(segment, pos, reason));
                }
            }
            // Checked after the offsets: a damaged base offset must be reported, not taken for
            // the end of what the read may see.
            if header.base_offset >= visibility.cap {
                break;
            }
            expect = Expect::after(header.next_offset(), segment);
            if header.last_offset() < offset {
                progress.walked_past(header.next_offset());
                cursor.skip(&batch);
                continue;
            }
            if visibility.hides(header) {
                progress.walked_past(header.next_offset());
                if header.is_control() {
                    // A flipped attribute bit must not turn a damaged batch into a marker that
                    // is silently stepped over: a marker is small, so check its CRC as a read of
                    // records would.
                    let bytes = cursor.body(&batch, 0)?;
                    if let Err(e) = verify_crc(&bytes) {
                        return Err(self.corrupt(segment, pos, e));
                    }
                } else {
                    cursor.skip(&batch);
                }
                continue;
            }
            // In a compacted segment the next batch's header comes along, to check this batch
            // does not run into it before its records are handed out.
            let next_pos = batch.end();
            let ahead = if segment.allow_gaps && end - next_pos >= HEADER_LEN as u64 {
                HEADER_LEN
            } else {
                0
            };
            let len = batch.len;
            if out.len() > before && (used + len > max_bytes || !cursor.holds(pos, len + ahead)) {
                break;
            }
            let bytes = cursor.body(&batch, ahead)?;
            if ahead > 0 {
                self.check_next(segment, pos, header, cursor.bytes(next_pos, HEADER_LEN))?;
            }
            self.decode(segment, pos, &bytes, offset, max_uncompressed, out)?;
            progress.walked_past(header.next_offset());
            progress.batches += 1;
            progress.bytes += len as u64;
            used += len;
            if used >= max_bytes {
                break;
            }
        }
        Ok(())
    }

    /// The batch after the one at `pos` (`header`) must start after it. If the next batch
    /// fails its own checks, it is the damaged one, reported when the walk reaches it.
    fn check_next(
        &self,
        segment: &Segment,
        pos: u64,
        header: &BatchHeader,
        next_head: &[u8],
    ) -> Result<()> {
        let Ok(next) = BatchHeader::parse(next_head) else {
            return Ok(());
        };
        let next_pos = pos + header.total_len() as u64;
        if next.base_offset <= header.last_offset()
            && segment.check_offsets(next_pos, &next).is_none()
        {
            return Err(self.corrupt(
                segment,
                pos,
                format!(
                    "batch offsets {}..={} run into the next batch's, which starts at offset {}",
                    header.base_offset,
                    header.last_offset(),
                    next.base_offset
                ),
            ));
        }
        Ok(())
    }

    fn decode<S: Sink>(
        &self,
        segment: &Segment,
        position: u64,
        batch: &Bytes,
        offset: u64,
        max_uncompressed: usize,
        out: &mut S,
    ) -> Result<()> {
        match out.take(batch, offset, max_uncompressed) {
            Ok(()) => Ok(()),
            Err(Error::InvalidBatch { reason }) => Err(self.corrupt(segment, position, reason)),
            Err(e) => Err(e),
        }
    }

    /// First offset >= `from` in `segment` whose record timestamp is >= `timestamp`.
    fn scan_for_timestamp(
        &self,
        segment: &Segment,
        from: u64,
        timestamp: i64,
    ) -> Result<Option<u64>> {
        let mut offset = from;
        let mut records: Vec<StoredRecord> = Vec::new();
        while offset < segment.next_offset() {
            records.clear();
            let visibility = Visibility {
                cap: u64::MAX,
                aborted: Vec::new(),
                show_control: false,
            };
            let mut progress = Progress::at(offset);
            self.read_segment(
                segment,
                offset,
                1 << 20,
                &visibility,
                &mut progress,
                &mut records,
            )?;
            let Some(last) = records.last() else {
                return Ok(None);
            };
            if let Some(r) = records.iter().find(|r| r.timestamp >= timestamp) {
                return Ok(Some(r.offset));
            }
            offset = last.offset + 1;
        }
        Ok(None)
    }
}

/// Where a read puts what it found: owned records, or batch views.
trait Sink {
    /// Items so far (a read stops once it has some and its byte budget is used).
    fn len(&self) -> usize;
    /// Records handed out in the items added after `before` (for the read counters).
    fn records_since(&self, before: usize) -> u64;
    /// Takes one whole, CRC-unchecked batch, keeping what is at or after `offset`.
    fn take(&mut self, batch: &Bytes, offset: u64, max_uncompressed: usize) -> Result<()>;
    /// Drops items added after `before` that lie at or beyond the high watermark `hw`.
    fn truncate_at(&mut self, before: usize, hw: u64);
}

impl Sink for Vec<StoredRecord> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn records_since(&self, before: usize) -> u64 {
        self.len().saturating_sub(before) as u64
    }
    fn take(&mut self, batch: &Bytes, offset: u64, max_uncompressed: usize) -> Result<()> {
        decode_batch(batch, offset, max_uncompressed, self).map(|_| ())
    }
    fn truncate_at(&mut self, before: usize, hw: u64) {
        let visible = self[before..].partition_point(|r| r.offset < hw);
        self.truncate(before + visible);
    }
}

impl Sink for Vec<BatchView> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn records_since(&self, before: usize) -> u64 {
        self.get(before..)
            .unwrap_or_default()
            .iter()
            .map(BatchView::wanted_count)
            .sum()
    }
    fn take(&mut self, batch: &Bytes, offset: u64, max_uncompressed: usize) -> Result<()> {
        self.push(BatchView::new(batch, offset, max_uncompressed)?);
        Ok(())
    }
    fn truncate_at(&mut self, before: usize, hw: u64) {
        // A batch is published whole, so it lies entirely below the watermark or beyond it.
        let visible = self[before..].partition_point(|b| b.next_offset() <= hw);
        self.truncate(before + visible);
    }
}

/// What the next batch's offsets must be.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Its base offset (it follows a batch we saw, or starts the segment).
    Base(u64),
    /// Its base offset is at least this: as `Base`, in a compacted segment, where compaction
    /// may have removed whole batches.
    From(u64),
    /// Its last offset (the index entry that led us here names it).
    Last(u64),
}

impl Expect {
    /// What must follow a batch ending before `next` (or start a segment at `next`).
    fn after(next: u64, segment: &Segment) -> Expect {
        if segment.allow_gaps {
            Expect::From(next)
        } else {
            Expect::Base(next)
        }
    }

    fn matches(&self, header: &BatchHeader) -> bool {
        match *self {
            Expect::Base(base) => header.base_offset == base,
            Expect::From(base) => header.base_offset >= base,
            Expect::Last(last) => header.last_offset() == last,
        }
    }
}
