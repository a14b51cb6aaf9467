//! The write path: encode or validate a batch, roll segments, write, publish.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{Partition, PartitionInner, WriterState};
use crate::error::{Error, Result};
use crate::format::{
    decode_batch, encode_batch, peek_batch_len, set_base_offset, set_log_append_time, BatchHeader,
    BatchOptions, TimestampType, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use crate::meta::{store_checkpoint, Checkpoint, SealedSegment};
use crate::record::Record;
use crate::segment::Segment;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Partition {
    /// Appends `records` as one batch and returns the offset of the first.
    ///
    /// The batch is encoded with the topic's compression and timestamp type, assigned the next
    /// offsets, and written to the operating system before this returns: it is readable at once
    /// and survives a process crash. Call [`sync`](Self::sync) for power-loss durability.
    ///
    /// Errors: an empty slice ([`Error::InvalidArgument`]), a negative timestamp, a batch over the
    /// topic's `max_message_bytes` ([`Error::RecordTooLarge`] for one record,
    /// [`Error::BatchTooLarge`] for several), a closed or poisoned partition, an I/O error.
    pub fn append(&self, records: &[Record]) -> Result<u64> {
        let inner = &self.inner;
        inner.check_writable()?;
        if records.is_empty() {
            return Err(Error::InvalidArgument(
                "append needs at least one record".into(),
            ));
        }
        if let Some(r) = records.iter().find(|r| r.timestamp.is_some_and(|t| t < 0)) {
            return Err(Error::InvalidArgument(format!(
                "record timestamp {} is negative",
                r.timestamp.unwrap_or_default()
            )));
        }
        let now = now_ms();
        let mut w = inner.writer.lock();
        let base = inner.high_watermark.load(Ordering::Relaxed);
        let options = BatchOptions {
            base_offset: base,
            compression: inner.config.compression,
            timestamp_type: inner.config.message_timestamp_type,
            partition_leader_epoch: 0,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
        };
        let mut scratch = std::mem::take(&mut w.scratch);
        scratch.clear();
        let result = encode_batch(&mut scratch, &options, records, now).and_then(|header| {
            check_size(&inner.config, scratch.len(), records.len())?;
            if inner.config.message_timestamp_type == TimestampType::LogAppendTime {
                set_log_append_time(&mut scratch, now);
            }
            inner.write_batch(&mut w, &scratch, &header, now)
        });
        w.scratch = scratch;
        result.map(|()| base)
    }

    /// Appends one pre-encoded Kafka RecordBatch v2 (for example from
    /// [`format::BatchBuilder`](crate::format::BatchBuilder)) and returns its new base offset.
    ///
    /// The batch's own base offset is ignored and replaced (it lies outside the CRC, exactly as a
    /// Kafka broker does it). The batch is fully validated first — length, magic, CRC, codec, and
    /// every record after decompression — so nothing malformed ever reaches the log. On a
    /// LogAppendTime topic the batch is stamped with the append time.
    pub fn append_batch(&self, batch: &[u8]) -> Result<u64> {
        let inner = &self.inner;
        inner.check_writable()?;
        let len = peek_batch_len(batch)?.ok_or_else(|| Error::InvalidBatch {
            reason: format!("{} bytes is shorter than a batch header", batch.len()),
        })?;
        if len != batch.len() {
            return Err(Error::InvalidBatch {
                reason: format!(
                    "expected exactly one batch: its length field says {len} bytes, got {}",
                    batch.len()
                ),
            });
        }
        let header = BatchHeader::parse(batch)?;
        check_size(&inner.config, batch.len(), header.record_count as usize)?;
        // Decoding checks the CRC, the codec and each record; the records themselves are dropped.
        let mut records = Vec::new();
        decode_batch(
            &Bytes::copy_from_slice(batch),
            0,
            inner.config.max_uncompressed_bytes(),
            &mut records,
        )?;
        let now = now_ms();
        let mut w = inner.writer.lock();
        let base = inner.high_watermark.load(Ordering::Relaxed);
        let mut scratch = std::mem::take(&mut w.scratch);
        scratch.clear();
        scratch.extend_from_slice(batch);
        set_base_offset(&mut scratch, base);
        if inner.config.message_timestamp_type == TimestampType::LogAppendTime {
            set_log_append_time(&mut scratch, now);
        }
        let result = BatchHeader::parse(&scratch)
            .and_then(|header| inner.write_batch(&mut w, &scratch, &header, now));
        w.scratch = scratch;
        result.map(|()| base)
    }
}

fn check_size(config: &crate::config::TopicConfig, size: usize, records: usize) -> Result<()> {
    let max = config.max_message_bytes;
    if size <= max {
        Ok(())
    } else if records == 1 {
        Err(Error::RecordTooLarge { size, max })
    } else {
        Err(Error::BatchTooLarge { size, max })
    }
}

impl PartitionInner {
    /// Writes one validated batch whose base offset is the high watermark, rolling first if the
    /// active segment is full, then publishes it to readers.
    fn write_batch(
        &self,
        w: &mut WriterState,
        batch: &[u8],
        header: &BatchHeader,
        now: i64,
    ) -> Result<()> {
        self.check_writable()?;
        let max_ts = if header.timestamp_type() == TimestampType::LogAppendTime {
            now
        } else {
            header.max_timestamp
        };
        let mut active = self.segments().last().cloned().expect("active segment");
        let too_old = w.first_batch_timestamp.is_some_and(|first| {
            max_ts.saturating_sub(first) > self.config.segment_ms.as_millis() as i64
        });
        if too_old
            || active.is_full_for(batch.len(), header.last_offset(), self.config.segment_bytes)
        {
            active = self.roll(w, &active)?;
        }
        let offset_of_max = header.last_offset();
        let limits = self.limits();
        if let Err(e) = active.append(
            batch,
            header,
            max_ts,
            offset_of_max,
            &mut w.since_index,
            &limits,
        ) {
            // The segment cut the partial batch off. If the file is no longer a clean sequence of
            // batches (the truncate failed too), stop writing until recovery.
            if active.file.len().map(|l| l != active.end()).unwrap_or(true) {
                self.poison(format!(
                    "write to {} failed and could not be undone: {e}",
                    active.log_path.display()
                ));
            }
            return Err(Error::Io(e));
        }
        if w.first_batch_timestamp.is_none() {
            w.first_batch_timestamp = Some(max_ts);
        }
        self.high_watermark
            .store(header.next_offset(), Ordering::Release);
        Ok(())
    }

    /// Seals the active segment (fsync, trimmed indexes), records it in the checkpoint, and
    /// starts a new segment at the high watermark. Returns the new active segment.
    ///
    /// Order matters for crash safety: the sealed segment is durable before the checkpoint names
    /// it, and the new segment's directory entry is durable before any batch goes into it.
    fn roll(&self, w: &mut WriterState, active: &Arc<Segment>) -> Result<Arc<Segment>> {
        let fail = |what: &str, e: std::io::Error| {
            self.poison(format!("{what} during segment roll failed: {e}"));
            Error::Io(e)
        };
        active
            .seal()
            .map_err(|e| fail("sealing the active segment", e))?;
        let (index_crc, time_index_crc) = active.index_checksums()?;
        w.sealed.push(SealedSegment {
            base_offset: active.base_offset,
            stats: active.stats(),
            index_crc,
            time_index_crc,
        });
        let next = active.next_offset();
        let segment = Segment::create(&*self.storage, &self.dir, next, &self.limits())
            .map_err(|e| fail("creating the next segment", e))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| fail("syncing the partition directory", e))?;
        let segment = Arc::new(segment);
        {
            let mut segs = self.segments.write();
            let mut list = Vec::with_capacity(segs.len() + 1);
            list.extend(segs.iter().cloned());
            list.push(segment.clone());
            *segs = Arc::new(list);
        }
        w.recovery_point = next;
        w.since_index = 0;
        w.first_batch_timestamp = None;
        self.write_checkpoint(w, next)?;
        Ok(segment)
    }

    pub(crate) fn write_checkpoint(&self, w: &WriterState, recovery_point: u64) -> Result<()> {
        let checkpoint = Checkpoint {
            recovery_point,
            log_start_offset: self.log_start_offset.load(Ordering::Acquire),
            sealed: w.sealed.clone(),
        };
        store_checkpoint(&*self.storage, &self.dir, &checkpoint)
    }

    /// Clean close: seal the active segment and record every segment, so the next open trusts
    /// them all without scanning. Idempotent.
    pub(crate) fn close(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let segments = self.segments();
        let result = (|| {
            if self.poisoned.lock().is_some() {
                // Nothing written since the failure can be vouched for: leave recovery to the
                // next open, which scans from the last good recovery point.
                return Ok(());
            }
            let active = segments.last().expect("active segment");
            active.seal()?;
            let (index_crc, time_index_crc) = active.index_checksums()?;
            let mut sealed = w.sealed.clone();
            sealed.push(SealedSegment {
                base_offset: active.base_offset,
                stats: active.stats(),
                index_crc,
                time_index_crc,
            });
            w.sealed = sealed;
            let hw = self.high_watermark.load(Ordering::Acquire);
            self.write_checkpoint(&w, hw)
        })();
        for s in segments.iter() {
            s.unmap();
        }
        result
    }

    /// Marks the partition closed without writing anything (its topic was deleted).
    pub(crate) fn abandon(&self) {
        let _w = self.writer.lock();
        self.closed.store(true, Ordering::Release);
        for s in self.segments().iter() {
            s.unmap();
        }
    }
}
