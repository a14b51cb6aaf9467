//! The write path: encode or validate a batch, roll segments, write, publish.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::producer_state::{Verdict, FIRST_LOCAL_PRODUCER_ID};
use super::{Partition, PartitionInner, WriterState};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::format::Record;
use crate::format::{
    decode_batch, encode_batch_measured, encode_end_txn_marker_batch, peek_batch_len,
    set_base_offset, set_log_append_time, AbortedTxn, BatchHeader, BatchOptions, Compression,
    ControlType, EndTxnMarker, TimestampType, HEADER_LEN, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    NO_SEQUENCE,
};
use crate::meta::{store_checkpoint, Checkpoint, SealedSegment};
use crate::segment::Segment;

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
        self.append_if(records, |_| Ok(()))
    }

    /// [`append`](Self::append), after `check` accepted the offset the batch would get, under
    /// the writer lock: nothing else is appended between the check and the write (the event
    /// store's conditional append). An error from `check` is returned and nothing is written.
    pub(crate) fn append_if(
        &self,
        records: &[Record],
        check: impl FnOnce(u64) -> Result<()>,
    ) -> Result<u64> {
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
        let config = inner.config();
        let mut w = inner.writer.lock();
        let base = inner.high_watermark.load(Ordering::Relaxed);
        check(base)?;
        let options = BatchOptions {
            base_offset: base,
            compression: config.compression,
            timestamp_type: config.message_timestamp_type,
            partition_leader_epoch: 0,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
        };
        let mut scratch = std::mem::take(&mut w.scratch);
        scratch.clear();
        let encoded = encode_batch_measured(&mut scratch, &options, records, now);
        let result = encoded.and_then(|(header, uncompressed)| {
            if config.compression != Compression::None {
                // The records sections before and after the codec (the header is the same).
                let section = |batch_len: usize| batch_len.saturating_sub(HEADER_LEN);
                let (before, after) = (section(uncompressed), section(scratch.len()));
                inner.metrics.compressed(before, after);
            }
            check_size(&config, scratch.len(), records.len())?;
            if config.message_timestamp_type == TimestampType::LogAppendTime {
                set_log_append_time(&mut scratch, now);
            }
            inner.write_batch(&mut w, &scratch, &header, now, None)
        });
        w.scratch = scratch;
        result.map(|_| base)
    }

    /// Appends one pre-encoded Kafka RecordBatch v2 (for example from
    /// [`format::BatchBuilder`](crate::format::BatchBuilder)) and returns its new base offset.
    ///
    /// The batch's own base offset is ignored and replaced (it lies outside the CRC, exactly as a
    /// Kafka broker does it). The batch is fully validated first — length, magic, CRC, codec, and
    /// every record after decompression — so nothing malformed ever reaches the log. On a
    /// LogAppendTime topic the batch is stamped with the append time.
    ///
    /// An idempotent batch (producer id >= 0) keeps its producer id, epoch and sequence, and is
    /// deduplicated like a local producer's: a retry of one of the producer's last five batches
    /// is acknowledged with its original base offset and not written again. Producer ids from
    /// 2^62 up are the log's own producers' and are refused here, so a batch from elsewhere (a
    /// Kafka cluster allocates its ids from 0 up) can never be taken for a local producer's.
    ///
    /// Errors besides the validation ones ([`Error::InvalidBatch`]): a control batch (attribute
    /// bit 5: markers are the log's to write, as a Kafka broker refuses them from clients), a
    /// transactional batch (bit 4: only the log's own transactional producers write them, so
    /// that the coordinator can end every transaction), a producer id in the log's own
    /// range or below -1, an idempotent batch with a negative epoch or base sequence;
    /// [`Error::ProducerFenced`] and [`Error::OutOfOrderSequence`] as for a
    /// local producer.
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
        check_foreign_header(&header)?;
        let config = inner.config();
        check_size(&config, batch.len(), header.record_count as usize)?;
        // Decoding checks the CRC, the codec and each record. The one copy made here is also
        // the buffer that gets written, once the records (slices of it) are dropped.
        let owned = Bytes::from(batch.to_vec());
        let mut records = Vec::new();
        decode_batch(&owned, 0, config.max_uncompressed_bytes(), &mut records)?;
        // The header's max timestamp drives segment rolls, the time index and retention, so it
        // must be the truth about the records (as a Kafka broker checks too).
        if let Some(r) = records.iter().find(|r| r.timestamp < 0) {
            return Err(Error::InvalidBatch {
                reason: format!("record {} has negative timestamp {}", r.offset, r.timestamp),
            });
        }
        let max = records.iter().map(|r| r.timestamp).max();
        if header.timestamp_type() == TimestampType::CreateTime && max != Some(header.max_timestamp)
        {
            return Err(Error::InvalidBatch {
                reason: format!(
                    "header max timestamp {} differs from the records' maximum {max:?}",
                    header.max_timestamp
                ),
            });
        }
        drop(records);
        // Unique and Vec-backed again, so this takes the allocation back without copying.
        let mut owned = Vec::from(owned);
        let mut w = inner.writer.lock();
        inner
            .write_encoded(&mut w, &mut owned)
            .map(|a| a.base_offset)
    }
}

/// What `append_batch` refuses in a header on top of the format's own checks.
///
/// Why foreign producer ids are kept, not stripped or allowed to push the allocator: a mirror
/// of a Kafka partition wants the batch as it was (bytes and CRC unchanged) and wants its own
/// retries deduplicated, which the producer id and sequence give it. Stripping them would lose
/// that and rewrite every batch; moving the allocator past each foreign id seen would still
/// leave ids the log had already handed out (Kafka's ids start at 0 too) to collide. Splitting
/// the id space keeps the two apart by construction, needs no extra state and nothing on
/// recovery.
fn check_foreign_header(h: &BatchHeader) -> Result<()> {
    let refuse = |reason: String| Err(Error::InvalidBatch { reason });
    if h.is_control() {
        return refuse(format!(
            "control batches (attribute bit 5, attributes {:#06x}) are written by the log \
             itself, never appended by a client",
            h.attributes
        ));
    }
    if h.is_transactional() {
        // Only the log's own coordinator can end a transaction (write its marker), and a
        // foreign producer's transaction has no state there: it would hold the last stable
        // offset back for ever. Mirror a committed transaction's records as plain batches.
        return refuse(format!(
            "transactional batches (attribute bit 4, attributes {:#06x}) can only come from \
             this log's own transactional producers, whose coordinator ends them; append a \
             transaction's records from elsewhere without the bit",
            h.attributes
        ));
    }
    if h.producer_id >= FIRST_LOCAL_PRODUCER_ID {
        return refuse(format!(
            "producer id {} lies in the range this log allocates to its own producers \
             ({FIRST_LOCAL_PRODUCER_ID} and up); a batch from elsewhere needs an id below it, \
             or -1 for none",
            h.producer_id
        ));
    }
    if h.producer_id < NO_PRODUCER_ID {
        return refuse(format!(
            "producer id {} is invalid (-1 means none)",
            h.producer_id
        ));
    }
    if h.producer_id >= 0 && (h.producer_epoch < 0 || h.base_sequence < 0) {
        return refuse(format!(
            "an idempotent batch (producer id {}) needs an epoch and a base sequence of at \
             least 0, not {} and {}",
            h.producer_id, h.producer_epoch, h.base_sequence
        ));
    }
    Ok(())
}

/// The outcome of appending an encoded batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub base_offset: u64,
    /// The batch's max timestamp as stored (the append time on LogAppendTime topics).
    pub timestamp: i64,
    /// The batch was a retry of one already in the log (idempotence); nothing was written.
    pub duplicate: bool,
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
    /// Appends a batch the caller encoded itself and trusts (the producer's own, or one
    /// `append_batch` validated): assigns its offsets, stamps LogAppendTime, deduplicates
    /// idempotent retries, writes.
    pub(crate) fn append_encoded(&self, batch: &mut [u8]) -> Result<Appended> {
        self.check_writable()?;
        let header = BatchHeader::parse(batch)?;
        check_size(&self.config(), batch.len(), header.record_count as usize)?;
        let mut w = self.writer.lock();
        self.write_encoded(&mut w, batch)
    }

    fn write_encoded(&self, w: &mut WriterState, batch: &mut [u8]) -> Result<Appended> {
        let now = now_ms();
        let incoming = BatchHeader::parse(batch)?;
        if let Verdict::Duplicate(original) = w.producers.check(&incoming, batch)? {
            return Ok(Appended {
                base_offset: original.first_offset,
                timestamp: original.timestamp,
                duplicate: true,
            });
        }
        let base = self.high_watermark.load(Ordering::Relaxed);
        set_base_offset(batch, base);
        if self.config().message_timestamp_type == TimestampType::LogAppendTime {
            set_log_append_time(batch, now);
        }
        let header = BatchHeader::parse(batch)?;
        let timestamp = self.write_batch(w, batch, &header, now, None)?;
        Ok(Appended {
            base_offset: base,
            timestamp,
            duplicate: false,
        })
    }

    /// Writes the end marker of `producer_id`'s transaction on this partition (a control
    /// batch, at `epoch`: the epoch the coordinator bumped to) and returns its offset. An ABORT
    /// marker records the transaction in the aborted index. A marker from an epoch older than
    /// the one the partition knows for the producer is refused ([`Error::ProducerFenced`]): it
    /// is a late marker of a transaction that a newer one superseded. A marker for a producer
    /// with no open transaction here is written all the same (a repeated marker, as recovery
    /// may write, is harmless).
    pub(crate) fn write_end_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        marker: EndTxnMarker,
    ) -> Result<u64> {
        self.check_writable()?;
        let mut w = self.writer.lock();
        if let Some(current_epoch) = w.producers.epoch_of(producer_id) {
            if epoch < current_epoch {
                return Err(Error::ProducerFenced {
                    producer_id,
                    epoch,
                    current_epoch,
                });
            }
        }
        let now = now_ms();
        let base = self.high_watermark.load(Ordering::Relaxed);
        let mut scratch = std::mem::take(&mut w.scratch);
        scratch.clear();
        let result =
            encode_end_txn_marker_batch(&mut scratch, base, producer_id, epoch, marker, now)
                .and_then(|mut header| {
                    if self.config().message_timestamp_type == TimestampType::LogAppendTime {
                        set_log_append_time(&mut scratch, now);
                        header = BatchHeader::parse(&scratch)?;
                    }
                    self.write_batch(&mut w, &scratch, &header, now, Some(marker.control_type))
                });
        w.scratch = scratch;
        result.map(|_| base)
    }

    /// Writes one validated batch whose base offset is the high watermark, rolling first if the
    /// active segment is full, then publishes it to readers. `marker` is set for an end marker.
    fn write_batch(
        &self,
        w: &mut WriterState,
        batch: &[u8],
        header: &BatchHeader,
        now: i64,
        marker: Option<ControlType>,
    ) -> Result<i64> {
        self.check_writable()?;
        let max_ts = if header.timestamp_type() == TimestampType::LogAppendTime {
            now
        } else {
            header.max_timestamp
        };
        let mut active = self.segments().last().cloned().expect("active segment");
        let config = self.config();
        // At most i64::MAX (validated), so the cast is exact.
        let segment_ms = crate::config::duration_to_millis("segment_ms", config.segment_ms)? as i64;
        let too_old = w
            .first_batch_timestamp
            .is_some_and(|first| max_ts.saturating_sub(first) > segment_ms);
        if too_old || active.is_full_for(batch.len(), header.last_offset(), config.segment_bytes) {
            active = self.roll(w, &active)?;
        }
        let offset_of_max = header.last_offset();
        let limits = PartitionInner::limits_of(&config);
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
                self.poison(
                    "write",
                    &active.log_path,
                    format!(
                        "write to {} failed and could not be undone: {e}",
                        active.log_path.display()
                    ),
                );
            }
            return Err(Error::from(e));
        }
        // Under the writer lock (`w`), which `PartitionCounters::written` relies on.
        self.metrics
            .written(header.record_count, batch.len(), marker.is_some());
        if w.first_batch_timestamp.is_none() {
            w.first_batch_timestamp = Some(max_ts);
        }
        let closed = w.producers.record(header, max_ts, now);
        let unstable = w.producers.first_unstable_offset().unwrap_or(u64::MAX);
        if let (Some(ControlType::Abort), Some(first_offset)) = (marker, closed) {
            let entry = AbortedTxn {
                producer_id: header.producer_id,
                first_offset,
                last_offset: header.base_offset,
                last_stable_offset: unstable.min(header.next_offset()),
            };
            // Published before the transaction stops holding back the stable offset, so a
            // read_committed reader that sees the new stable offset also sees the abort.
            Arc::make_mut(&mut self.aborted.write()).push(entry);
            if let Err(e) = active.txn_index.append(&*self.storage, &entry) {
                // The marker is in the log, but an index without its entry would, once the
                // recovery point passes it, let a restart show the aborted records. Recovery
                // rebuilds the index from the markers; until then, no more writes.
                self.poison(
                    "append",
                    active.txn_index.path(),
                    format!(
                        "append to {} failed: {e}",
                        active.txn_index.path().display()
                    ),
                );
                return Err(Error::from(e));
            }
        }
        // A transaction that opens holds the stable offset back before its batch is visible; one
        // that ends lets it go only once its marker is.
        let opening = unstable < self.first_unstable.load(Ordering::Relaxed);
        if opening {
            self.first_unstable.store(unstable, Ordering::Release);
        }
        self.high_watermark
            .store(header.next_offset(), Ordering::Release);
        if !opening {
            self.first_unstable.store(unstable, Ordering::Release);
        }
        self.watchers.notify();
        Ok(max_ts)
    }

    /// Seals the active segment (fsync, trimmed indexes), records it in the checkpoint, and
    /// starts a new segment at the high watermark. Returns the new active segment.
    ///
    /// Order matters for crash safety: the sealed segment is durable before the checkpoint names
    /// it, and the new segment's directory entry is durable before any batch goes into it.
    fn roll(&self, w: &mut WriterState, active: &Arc<Segment>) -> Result<Arc<Segment>> {
        // A failed fsync (of the segment or the directory) poisons: the kernel may have dropped
        // the dirty pages. Anything else leaves the partition as it was, so the next append
        // simply tries the roll again.
        active.seal().map_err(|e| {
            let cause = format!("sealing {} failed: {e}", active.log_path.display());
            self.poison("seal", &active.log_path, cause);
            Error::from(e)
        })?;
        let sealed = super::seal_record(&*self.storage, active)?;
        let next = active.next_offset();
        let segment = Arc::new(Segment::create(
            &*self.storage,
            &self.dir,
            next,
            &self.limits(),
        )?);
        self.storage.sync_dir(&self.dir).map_err(|e| {
            self.poison(
                "fsync directory",
                &self.dir,
                format!("fsync of directory {} failed: {e}", self.dir.display()),
            );
            Error::from(e)
        })?;
        w.sealed.push(sealed);
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
        // The roll is complete; a checkpoint that fails to write only means the next open scans
        // a little more (the next roll or close writes it again), but the caller hears of it.
        self.write_checkpoint(w, next)?;
        debug!(
            topic = %self.topic,
            partition = self.id,
            sealed = %active.log_path.display(),
            base_offset = next,
            "rolled to a new segment"
        );
        Ok(segment)
    }

    /// Forgets the idempotent producers that expired (see `producer_state.rs`); maintenance
    /// calls this, so the state stays bounded between checkpoints too. Returns how many.
    pub(crate) fn expire_producers(&self) -> usize {
        let mut w = self.writer.lock();
        let log_start_offset = self.log_start_offset.load(Ordering::Acquire);
        w.producers.expire(now_ms(), log_start_offset)
    }

    /// Writes `partition.ckpt`; expired producers are forgotten first, so the snapshot holds
    /// only the producers that may still retry.
    pub(crate) fn write_checkpoint(&self, w: &mut WriterState, recovery_point: u64) -> Result<()> {
        let checkpoint = self.next_checkpoint(w, recovery_point, w.sealed.clone());
        w.durable_checkpoint = None;
        store_checkpoint(&*self.storage, &self.dir, &checkpoint)?;
        w.durable_checkpoint = Some(checkpoint);
        Ok(())
    }

    /// The checkpoint to write now, with `sealed` as its sealed segments.
    fn next_checkpoint(
        &self,
        w: &mut WriterState,
        recovery_point: u64,
        sealed: Vec<SealedSegment>,
    ) -> Checkpoint {
        let log_start_offset = self.log_start_offset.load(Ordering::Acquire);
        w.producers.expire(now_ms(), log_start_offset);
        self.trim_aborted(log_start_offset);
        Checkpoint {
            recovery_point,
            log_start_offset,
            sealed,
            producers: w.producers.encode(),
        }
    }

    /// Whether `partition.ckpt` already holds what a clean close would write, `active` sealed
    /// as it is: then the segment's files and the checkpoint are durable as they are (they
    /// were synced before that checkpoint was written, and the segment has not changed since:
    /// same size and offsets, same index and transaction-index checksums), and closing needs
    /// no write at all. This is what makes closing a log of many idle partitions cheap.
    fn checkpoint_is_current(
        &self,
        w: &mut WriterState,
        active: &Segment,
        hw: u64,
    ) -> Result<bool> {
        let Some(durable) = &w.durable_checkpoint else {
            return Ok(false);
        };
        // The cheap checks first: most closes of a written partition stop here, before the
        // index files are read for their checksums.
        let same_end = durable.recovery_point == hw
            && durable
                .sealed
                .last()
                .is_some_and(|s| s.base_offset == active.base_offset && s.stats == active.stats());
        if !same_end {
            return Ok(false);
        }
        let mut sealed = w.sealed.clone();
        sealed.push(super::seal_record(&*self.storage, active)?);
        let candidate = self.next_checkpoint(w, hw, sealed);
        Ok(w.durable_checkpoint.as_ref() == Some(&candidate))
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
            if let Some(cause) = self.poisoned.lock().clone() {
                // Nothing written since the failure can be vouched for: no checkpoint, and an
                // error so the log writes no clean-shutdown marker; the next open recovers by
                // scanning from the last good recovery point.
                return Err(Error::Poisoned {
                    topic: self.topic.clone(),
                    partition: self.id,
                    cause,
                });
            }
            let active = segments.last().expect("active segment");
            let hw = self.high_watermark.load(Ordering::Acquire);
            if self.checkpoint_is_current(&mut w, active, hw)? {
                return Ok(());
            }
            active.seal()?;
            let mut sealed = w.sealed.clone();
            sealed.push(super::seal_record(&*self.storage, active)?);
            w.sealed = sealed;
            self.write_checkpoint(&mut w, hw)
        })();
        for s in segments.iter() {
            s.unmap();
        }
        match &result {
            // A poisoned partition said why when it was poisoned.
            Ok(()) | Err(Error::Poisoned { .. }) => {}
            Err(e) => error!(
                topic = %self.topic,
                partition = self.id,
                error = %e,
                "closing a partition failed: the next open recovers it"
            ),
        }
        // Parked consumers and pending streams wake up and find the log closed.
        self.watchers.notify();
        result
    }

    /// Marks the partition closed without writing anything (its topic was deleted).
    pub(crate) fn abandon(&self) {
        let _w = self.writer.lock();
        self.closed.store(true, Ordering::Release);
        for s in self.segments().iter() {
            s.unmap();
        }
        // Parked consumers wake up and find the partition gone.
        self.watchers.notify();
    }
}
