//! The read path: positioned reads of whole batches, decoded into zero-copy records.

use std::sync::Arc;

use bytes::Bytes;

use super::{Partition, PartitionInner};
use crate::error::{Error, Result};
use crate::format::{decode_batch, peek_batch_len, BatchHeader, HEADER_LEN};
use crate::record::StoredRecord;
use crate::segment::Segment;

impl Partition {
    /// Reads records starting at `offset`, from whole batches totalling about `max_bytes`.
    ///
    /// At least one batch is returned when `offset` is below the high watermark, even if that
    /// batch alone is larger than `max_bytes` (so a reader always makes progress, as in Kafka).
    /// Records before `offset` in the first batch are skipped. Reading at the high watermark
    /// returns an empty vector; outside `[log_start_offset, high_watermark]` is
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
        let inner = &self.inner;
        inner.check_open()?;
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        if offset < start || offset > hw {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                earliest: start,
                latest: hw,
            });
        }
        if offset == hw {
            return Ok(());
        }
        let segments = inner.segments();
        let first = segment_for(&segments, offset);
        let before = out.len();
        for segment in &segments[first..] {
            inner.read_segment(segment, offset, max_bytes, out)?;
            if out.len() > before {
                break;
            }
        }
        Ok(())
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
    /// holding `offset`; if that hint turns out not to be a batch boundary (a damaged index),
    /// the read starts over from the segment's first byte instead of failing.
    fn read_segment(
        &self,
        segment: &Segment,
        offset: u64,
        max_bytes: usize,
        out: &mut Vec<StoredRecord>,
    ) -> Result<()> {
        let hint = if offset > segment.base_offset {
            segment.lookup_position(offset)
        } else {
            0
        };
        match self.read_segment_from(segment, hint, offset, max_bytes, out) {
            Err(Error::Corrupt { position, .. }) if hint != 0 && position == hint => {
                self.read_segment_from(segment, 0, offset, max_bytes, out)
            }
            other => other,
        }
    }

    fn read_segment_from(
        &self,
        segment: &Segment,
        mut pos: u64,
        offset: u64,
        max_bytes: usize,
        out: &mut Vec<StoredRecord>,
    ) -> Result<()> {
        let end = segment.end();
        let before = out.len();
        let mut used = 0usize;
        // Read enough for the requested bytes plus the index's granularity of slack before it.
        let want = max_bytes
            .max(HEADER_LEN)
            .saturating_add(self.config.index_interval_bytes);
        let max_uncompressed = self.config.max_uncompressed_bytes();
        while pos < end {
            let chunk_len = (end - pos).min(want as u64) as usize;
            let chunk = segment.read(pos, chunk_len)?;
            let mut at = 0usize;
            while at < chunk.len() {
                let batch_pos = pos + at as u64;
                let len = match peek_batch_len(&chunk[at..]) {
                    Ok(Some(len)) if (len as u64) <= end - batch_pos => len,
                    Ok(Some(len)) => {
                        return Err(self.corrupt(
                            segment,
                            batch_pos,
                            format!("batch of {len} bytes runs past the segment end {end}"),
                        ))
                    }
                    Ok(None) if at > 0 => break, // header cut by the chunk: re-read from here
                    Ok(None) => {
                        return Err(self.corrupt(
                            segment,
                            batch_pos,
                            "segment ends inside a batch header",
                        ))
                    }
                    Err(e) => return Err(self.corrupt(segment, batch_pos, e)),
                };
                if at + len > chunk.len() {
                    if at + HEADER_LEN <= chunk.len() && out.len() == before {
                        // Skip batches before the target without reading their bodies.
                        let header = BatchHeader::parse(&chunk[at..])
                            .map_err(|e| self.corrupt(segment, batch_pos, e))?;
                        if header.last_offset() < offset {
                            at += len;
                            continue;
                        }
                    }
                    if out.len() > before {
                        return Ok(()); // the next batch would not fit; it is the next read's
                    }
                    // The first batch we need is larger than what we read: read it whole.
                    let batch = segment.read(batch_pos, len)?;
                    self.decode(segment, batch_pos, &batch, offset, max_uncompressed, out)?;
                    if out.len() > before {
                        return Ok(());
                    }
                    // It held only offsets before the target; carry on after it.
                    at += len;
                    break;
                }
                let header = BatchHeader::parse(&chunk[at..])
                    .map_err(|e| self.corrupt(segment, batch_pos, e))?;
                if header.last_offset() < offset {
                    at += len;
                    continue;
                }
                if out.len() > before && used + len > max_bytes {
                    return Ok(());
                }
                let batch = chunk.slice(at..at + len);
                self.decode(segment, batch_pos, &batch, offset, max_uncompressed, out)?;
                used += len;
                at += len;
                if used >= max_bytes {
                    return Ok(());
                }
            }
            if out.len() > before {
                return Ok(());
            }
            pos += at as u64;
        }
        Ok(())
    }

    fn decode(
        &self,
        segment: &Segment,
        position: u64,
        batch: &Bytes,
        offset: u64,
        max_uncompressed: usize,
        out: &mut Vec<StoredRecord>,
    ) -> Result<()> {
        match decode_batch(batch, offset, max_uncompressed, out) {
            Ok(_) => Ok(()),
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
        let mut records = Vec::new();
        while offset < segment.next_offset() {
            records.clear();
            self.read_segment(segment, offset, 1 << 20, &mut records)?;
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
