//! The compactor's I/O: reading a sealed segment batch by batch, and writing the new segment.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::format::{
    decode_batch, set_log_append_time, BatchBuilder, BatchHeader, BatchOptions, TimestampType,
};
use crate::format::{Record, StoredRecord};
use crate::partition::PartitionInner;
use crate::segment::{BatchCursor, Next, Segment, SegmentStats, NO_TIMESTAMP};
use crate::storage::StorageFile;

/// Bytes read per I/O while compacting.
const READ_CHUNK: usize = 4 << 20;
/// Output gathered before each write.
const WRITE_CHUNK: usize = 1 << 20;

/// The new segment being written, gathered in large writes.
pub(crate) struct Output {
    file: Arc<dyn StorageFile>,
    buf: Vec<u8>,
    pub(crate) written: u64,
    base: u64,
    next_offset: u64,
    max_timestamp: i64,
    offset_of_max: u64,
}

impl Output {
    pub(crate) fn new(file: Arc<dyn StorageFile>, base: u64) -> Output {
        Output {
            file,
            buf: Vec::with_capacity(WRITE_CHUNK + (64 << 10)),
            written: 0,
            base,
            next_offset: base,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max: base,
        }
    }

    fn note(&mut self, header: &BatchHeader) -> Result<()> {
        self.next_offset = header.next_offset();
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max = header.last_offset();
        }
        if self.buf.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn push_verbatim(&mut self, batch: &[u8], header: &BatchHeader) -> Result<()> {
        self.buf.extend_from_slice(batch);
        self.note(header)
    }

    /// Re-encodes `survivors` (a strict subset of the batch `original`) at their own offsets,
    /// keeping the batch's base offset, producer fields and timestamp type.
    pub(crate) fn push_reencoded<'r>(
        &mut self,
        original: &BatchHeader,
        survivors: impl Iterator<Item = &'r StoredRecord>,
        config: &TopicConfig,
    ) -> Result<()> {
        let options = BatchOptions {
            base_offset: original.base_offset,
            compression: config.compression,
            timestamp_type: original.timestamp_type(),
            partition_leader_epoch: original.partition_leader_epoch,
            producer_id: original.producer_id,
            producer_epoch: original.producer_epoch,
            base_sequence: original.base_sequence,
            transactional: original.is_transactional(),
            control: false,
        };
        let mut builder = BatchBuilder::new(options);
        for r in survivors {
            let record = Record {
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
                timestamp: Some(r.timestamp),
            };
            let delta = (r.offset - original.base_offset) as u32;
            builder.push_at(&record, r.timestamp, delta)?;
        }
        let start = self.buf.len();
        let mut header = builder.finish_into(&mut self.buf)?;
        if original.timestamp_type() == TimestampType::LogAppendTime {
            set_log_append_time(&mut self.buf[start..], original.max_timestamp);
            header.max_timestamp = original.max_timestamp;
        }
        self.note(&header)
    }

    /// Bytes of the new segment so far.
    pub(crate) fn len(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.written)?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes what is left and makes the file durable.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.flush()?;
        self.file.sync_data()?;
        Ok(())
    }

    pub(crate) fn stats(&self) -> SegmentStats {
        SegmentStats {
            size: self.written,
            next_offset: self.next_offset.max(self.base),
            max_timestamp: self.max_timestamp,
            offset_of_max_timestamp: self.offset_of_max,
        }
    }
}

fn corrupt(segment: &Segment, position: u64, reason: impl ToString) -> Error {
    Error::Corrupt {
        segment: segment.log_path.clone(),
        position,
        reason: reason.to_string(),
    }
}

pub(crate) fn decode(
    segment: &Segment,
    pos: u64,
    batch: &Bytes,
    max_uncompressed: usize,
    out: &mut Vec<StoredRecord>,
) -> Result<()> {
    match decode_batch(batch, 0, max_uncompressed, out) {
        Ok(_) => Ok(()),
        Err(Error::InvalidBatch { reason }) => Err(corrupt(segment, pos, reason)),
        Err(e) => Err(e),
    }
}

/// Calls `visit(position, header, batch)` for each batch of a sealed segment, in order, with
/// large positioned reads; stops early when `visit` returns `false`. Offsets must increase
/// (the batches' CRCs are checked by `decode`). Gives up with `Error::Closed` once the
/// partition closes, so a close never waits for a long compaction.
pub(crate) fn for_each_batch(
    inner: &PartitionInner,
    segment: &Segment,
    mut visit: impl FnMut(u64, &BatchHeader, &Bytes) -> Result<bool>,
) -> Result<()> {
    let mut cursor = BatchCursor::new(segment, 0, segment.end(), READ_CHUNK);
    let mut next_offset = segment.base_offset;
    loop {
        inner.check_open()?;
        let batch = match cursor.next_header()? {
            Next::Batch(batch) => batch,
            Next::End => break,
            Next::Torn { position, torn } => return Err(corrupt(segment, position, torn.reason())),
            Next::Invalid { position, reason } => return Err(corrupt(segment, position, reason)),
        };
        let (pos, header) = (batch.position, &batch.header);
        if header.base_offset < next_offset {
            return Err(corrupt(segment, pos, "batch offsets go backwards"));
        }
        next_offset = header.next_offset();
        let bytes = cursor.body(&batch, 0)?;
        if !visit(pos, header, &bytes)? {
            break;
        }
    }
    Ok(())
}
