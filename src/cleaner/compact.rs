//! Compaction executor: `Partition::compact`.
//!
//! One pass: build the key map over the dirty part (stopping early if it fills), record the
//! pass durably in `partition.bounds`, then rewrite the cleanable segments below the map's end
//! group by group, each group through the swap protocol of `partition/swap.rs`. Copying reads
//! sealed segments only and takes no partition lock; appends and reads go on meanwhile, and
//! the writer lock is taken twice per group, briefly, to swap the segment list and rewrite the
//! checkpoint. A batch keeps its base offset, producer id, epoch and base sequence, and every
//! record its offset; a batch whose records all survive is copied byte for byte, one that loses
//! some is re-encoded (with the topic's current codec), one that loses all is dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::map::{decide, version_of, Decision, Entry, KeyMap};
use super::policy::{plan_compaction, plan_groups, CompactionInput, CompactionPlan};
use super::{CompactionReport, SegmentInfo};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::format::{
    decode_batch, peek_batch_len, set_log_append_time, BatchBuilder, BatchHeader, BatchOptions,
    TimestampType, HEADER_LEN,
};
use crate::meta::{store_bounds, Bounds};
use crate::partition::swap::{swap_file_name, CLEANED_SUFFIX, SWAP_SUFFIX};
use crate::partition::{now_ms, seal_record, Partition, PartitionInner};
use crate::record::{Record, StoredRecord};
use crate::segment::{file_name, Segment, SegmentStats, NO_TIMESTAMP};
use crate::storage::{OpenMode, StorageFile};

/// Key-map memory of [`Partition::compact`]; `Log::run_maintenance` uses the log's
/// `cleaner_buffer_bytes` instead.
pub(crate) const DEFAULT_BUFFER_BYTES: usize = 16 << 20;
/// Bytes read per I/O while compacting.
const READ_CHUNK: usize = 4 << 20;
/// Output gathered before each write.
const WRITE_CHUNK: usize = 1 << 20;

impl Partition {
    /// Compacts the partition now if its topic's cleanup policy includes compaction and the
    /// dirty part is due (`min_cleanable_dirty_ratio`, `max_compaction_lag_ms`): keeps, per key,
    /// the winning record under the topic's `compaction_strategy`, drops tombstones
    /// `delete_retention_ms` after they were first compacted, and merges small segments. Offsets
    /// are preserved (reads skip the gaps). Never touches the active segment or anything newer
    /// than `min_compaction_lag_ms`. Uses a 16 MiB key map; [`Log::run_maintenance`] uses the
    /// log's [`cleaner_buffer_bytes`](crate::LogBuilder::cleaner_buffer_bytes).
    ///
    /// [`Log::run_maintenance`]: crate::Log::run_maintenance
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{CleanupPolicy, Log, Record, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::builder(dir.path()).maintenance_interval(None).open()?;
    /// log.create_topic("users", TopicConfig::default()
    ///     .cleanup_policy(CleanupPolicy::Compact).segment_bytes(1024))?;
    /// let p = log.partition("users", 0)?;
    /// for i in 0..100 {
    ///     p.append(&[Record::new(format!("v{i}")).key(format!("user-{}", i % 3))])?;
    /// }
    /// let report = p.compact()?;
    /// assert!(report.records_removed > 0);
    /// // Read everything left: reads skip the offsets compaction removed.
    /// let (mut left, mut at) = (Vec::new(), p.log_start_offset());
    /// loop {
    ///     let records = p.read(at, 1 << 20)?;
    ///     let Some(last) = records.last() else { break };
    ///     at = last.offset + 1;
    ///     left.extend(records);
    /// }
    /// assert!(left.len() < 100);
    /// // The newest value of each key is still there.
    /// assert_eq!(p.read(99, 1 << 20)?[0].value.as_deref(), Some(&b"v99"[..]));
    /// # Ok(()) }
    /// ```
    pub fn compact(&self) -> Result<CompactionReport> {
        self.compact_with_buffer(DEFAULT_BUFFER_BYTES)
    }

    /// [`compact`](Self::compact) with a key map of about `buffer_bytes`.
    pub(crate) fn compact_with_buffer(&self, buffer_bytes: usize) -> Result<CompactionReport> {
        let started = Instant::now();
        let inner = &self.inner;
        let mut bounds = inner.bounds.lock();
        inner.check_open()?;
        let mut report = CompactionReport::default();
        let mut continuing = false;
        loop {
            let config = inner.config();
            if !config.compacts() {
                break;
            }
            let segments = inner.segments();
            let infos: Vec<SegmentInfo> = segments.iter().map(|s| info(s)).collect();
            let millis = |d: std::time::Duration| d.as_millis().min(u64::MAX as u128) as u64;
            let Some(plan) = plan_compaction(&CompactionInput {
                segments: &infos,
                log_start_offset: self.log_start_offset(),
                cleaned_end: bounds.cleaned_end,
                now_ms: now_ms(),
                min_compaction_lag_ms: millis(config.min_compaction_lag_ms),
                max_compaction_lag_ms: config.max_compaction_lag_ms.map(millis),
                min_cleanable_dirty_ratio: config.min_cleanable_dirty_ratio,
                continuing,
            }) else {
                break;
            };
            let map_end = Pass {
                inner,
                config: &config,
                segments: &segments,
                infos: &infos,
                plan: &plan,
                now: now_ms(),
            }
            .run(&mut bounds, buffer_bytes, &mut report)?;
            // A full map left part of the dirty range for another pass.
            continuing = map_end < plan.cleanable_end;
            if !continuing {
                break;
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

fn info(s: &Segment) -> SegmentInfo {
    SegmentInfo {
        base_offset: s.base_offset,
        next_offset: s.next_offset(),
        size: s.end(),
        max_timestamp: s.max_timestamp(),
    }
}

/// One compaction pass over a snapshot of the segment list.
struct Pass<'a> {
    inner: &'a PartitionInner,
    config: &'a TopicConfig,
    segments: &'a Arc<Vec<Arc<Segment>>>,
    infos: &'a [SegmentInfo],
    plan: &'a CompactionPlan,
    now: i64,
}

impl Pass<'_> {
    /// Runs the pass; returns where its key map ended.
    fn run(
        &self,
        bounds: &mut Bounds,
        buffer_bytes: usize,
        report: &mut CompactionReport,
    ) -> Result<u64> {
        let cleanable = &self.segments[..self.plan.cleanable];
        let mut map = KeyMap::with_memory(buffer_bytes);
        let map_end = self.build_map(cleanable, &mut map)?;
        // Durable before any gap appears: from here on segments below `map_end` may have gaps,
        // and the tombstones in them start their delete-retention clock.
        let prior = bounds.clone();
        let mut next = bounds.clone();
        next.add_pass(map_end, self.now);
        store_bounds(&*self.inner.storage, &self.inner.dir, &next)?;
        *bounds = next;
        self.inner.cleaned_end.store(map_end, Ordering::Release);
        let touched = cleanable
            .iter()
            .take_while(|s| s.base_offset < map_end)
            .count();
        for group in plan_groups(&self.infos[..touched], self.config.segment_bytes) {
            let end = self.segments[group.end].base_offset;
            self.rewrite(
                &self.segments[group],
                end,
                &mut map,
                map_end,
                &prior,
                report,
            )?;
        }
        report.passes += 1;
        Ok(map_end)
    }

    /// Offers every keyed record from the first dirty offset on, until the map is full.
    fn build_map(&self, cleanable: &[Arc<Segment>], map: &mut KeyMap) -> Result<u64> {
        let first_dirty = self.plan.first_dirty;
        let strategy = &self.config.compaction_strategy;
        let max = self.config.max_uncompressed_bytes();
        let mut end = self.plan.cleanable_end;
        let mut records = Vec::new();
        for (i, segment) in cleanable.iter().enumerate() {
            if self.infos[i + 1].base_offset <= first_dirty {
                continue;
            }
            for_each_batch(self.inner, segment, |pos, header, batch| {
                // Control batches (transaction markers, a later issue) are not keyed data.
                if header.next_offset() <= first_dirty || header.is_control() {
                    return Ok(true);
                }
                records.clear();
                decode(segment, pos, batch, max, &mut records)?;
                for r in records.iter().filter(|r| r.offset >= first_dirty) {
                    let Some(key) = &r.key else { continue };
                    let entry = Entry {
                        version: version_of(strategy, r),
                        offset: r.offset,
                    };
                    if !map.offer(map.hash(key), entry) {
                        end = r.offset;
                        return Ok(false);
                    }
                }
                Ok(true)
            })?;
            if end < self.plan.cleanable_end {
                break;
            }
        }
        Ok(end)
    }

    /// Rewrites one group of adjacent segments (ending where the segment at offset `end`
    /// begins) into one, and swaps it in. A single segment that would come out unchanged is left
    /// alone.
    fn rewrite(
        &self,
        group: &[Arc<Segment>],
        end: u64,
        map: &mut KeyMap,
        map_end: u64,
        prior: &Bounds,
        report: &mut CompactionReport,
    ) -> Result<()> {
        let inner = self.inner;
        let storage = &*inner.storage;
        let base = group[0].base_offset;
        let cleaned = inner.dir.join(swap_file_name(base, end, CLEANED_SUFFIX));
        if storage.exists(&cleaned)? {
            storage.remove_file(&cleaned)?;
        }
        let file = storage.open(&cleaned, OpenMode::CreateNew)?;
        let mut out = Output::new(file, base);
        let copied = self.copy(group, map, map_end, prior, &mut out, report);
        let finished = copied.and_then(|changed| {
            out.finish()?;
            Ok(changed)
        });
        let changed = match finished {
            Ok(changed) => changed,
            Err(e) => {
                let _ = storage.remove_file(&cleaned);
                return Err(e);
            }
        };
        report.segments_read += group.len();
        report.bytes_read += group.iter().map(|s| s.end()).sum::<u64>();
        if !changed && group.len() == 1 {
            storage.remove_file(&cleaned)?;
            return Ok(());
        }
        report.segments_written += 1;
        report.bytes_written += out.written;
        // The commit point: from here on a reopen installs the new segment.
        let swap = inner.dir.join(swap_file_name(base, end, SWAP_SUFFIX));
        storage.rename(&cleaned, &swap)?;
        storage.sync_dir(&inner.dir)?;
        inner.install(group, end, out.stats())
    }

    /// Copies the group's surviving records into `out`; returns whether anything changed.
    fn copy(
        &self,
        group: &[Arc<Segment>],
        map: &mut KeyMap,
        map_end: u64,
        prior: &Bounds,
        out: &mut Output,
        report: &mut CompactionReport,
    ) -> Result<bool> {
        let strategy = &self.config.compaction_strategy;
        let max = self.config.max_uncompressed_bytes();
        let delete_retention = self.config.delete_retention_ms.as_millis() as i64;
        let mut changed = false;
        let mut records = Vec::new();
        let mut kept: Vec<usize> = Vec::new();
        for segment in group {
            for_each_batch(self.inner, segment, |pos, header, batch| {
                report.records_read += u64::from(header.record_count);
                if header.is_control() || header.base_offset >= map_end {
                    out.push_verbatim(batch, header)?;
                    return Ok(true);
                }
                records.clear();
                kept.clear();
                decode(segment, pos, batch, max, &mut records)?;
                for (i, r) in records.iter().enumerate() {
                    let key = r.key.as_deref().map(|k| map.hash(k));
                    let this = Entry {
                        version: version_of(strategy, r),
                        offset: r.offset,
                    };
                    let horizon_passed = prior
                        .first_cleaned_at(r.offset)
                        .is_some_and(|at| self.now.saturating_sub(at) >= delete_retention);
                    match decide(map, key, this, r.value.is_none(), map_end, horizon_passed) {
                        Decision::Keep => kept.push(i),
                        Decision::Superseded => report.records_removed += 1,
                        Decision::ExpiredTombstone => {
                            report.records_removed += 1;
                            report.tombstones_removed += 1;
                        }
                    }
                }
                if kept.len() == records.len() {
                    out.push_verbatim(batch, header)?;
                } else {
                    changed = true;
                    if !kept.is_empty() {
                        let survivors = kept.iter().map(|&i| &records[i]);
                        out.push_reencoded(header, survivors, self.config)?;
                    }
                }
                Ok(true)
            })?;
        }
        Ok(changed)
    }
}

impl PartitionInner {
    /// Steps 3-7 of the swap protocol (`partition/swap.rs`), after the commit point.
    fn install(&self, group: &[Arc<Segment>], end: u64, stats: SegmentStats) -> Result<()> {
        let storage = &self.storage;
        let base = group[0].base_offset;
        // 3. The checkpoint stops vouching for the old segments.
        {
            let mut w = self.writer.lock();
            self.check_open()?;
            w.sealed.retain(|s| !(base..end).contains(&s.base_offset));
            let recovery_point = w.recovery_point;
            self.write_checkpoint(&w, recovery_point)?;
        }
        // 4. Old files out of the way; readers holding them keep reading.
        for s in group {
            s.retire(storage, &self.dir)?;
        }
        storage.sync_dir(&self.dir)?;
        // 5. The new file takes the group's first name.
        let swap = self.dir.join(swap_file_name(base, end, SWAP_SUFFIX));
        storage.rename(&swap, &self.dir.join(file_name(base, "log")))?;
        storage.sync_dir(&self.dir)?;
        // 6. Indexes built from the new file.
        let segment = Arc::new(Segment::open(
            &**storage,
            &self.dir,
            base,
            &self.limits(),
            stats,
            false,
            None,
            true,
        )?);
        // 7. Readers see the new segment from their next snapshot on.
        let mut w = self.writer.lock();
        self.check_open()?;
        {
            let mut list = self.segments.write();
            let at = list
                .iter()
                .position(|s| Arc::ptr_eq(s, &group[0]))
                .ok_or_else(|| {
                    Error::Io(Arc::new(std::io::Error::other(
                        "compacted segments vanished from the segment list",
                    )))
                })?;
            let mut next: Vec<Arc<Segment>> = Vec::with_capacity(list.len() + 1 - group.len());
            next.extend(list[..at].iter().cloned());
            next.push(segment.clone());
            next.extend(list[at + group.len()..].iter().cloned());
            *list = Arc::new(next);
        }
        let record = seal_record(&segment)?;
        let at = w.sealed.partition_point(|s| s.base_offset < base);
        w.sealed.insert(at, record);
        let recovery_point = w.recovery_point;
        self.write_checkpoint(&w, recovery_point)
    }
}

/// The new segment being written, gathered in large writes.
struct Output {
    file: Arc<dyn StorageFile>,
    buf: Vec<u8>,
    written: u64,
    base: u64,
    next_offset: u64,
    max_timestamp: i64,
    offset_of_max: u64,
}

impl Output {
    fn new(file: Arc<dyn StorageFile>, base: u64) -> Output {
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

    fn push_verbatim(&mut self, batch: &[u8], header: &BatchHeader) -> Result<()> {
        self.buf.extend_from_slice(batch);
        self.note(header)
    }

    /// Re-encodes `survivors` (a strict subset of the batch `original`) at their own offsets,
    /// keeping the batch's base offset, producer fields and timestamp type.
    fn push_reencoded<'r>(
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

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.written)?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes what is left and makes the file durable.
    fn finish(&mut self) -> Result<()> {
        self.flush()?;
        self.file.sync_data()?;
        Ok(())
    }

    fn stats(&self) -> SegmentStats {
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

fn decode(
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
fn for_each_batch(
    inner: &PartitionInner,
    segment: &Segment,
    mut visit: impl FnMut(u64, &BatchHeader, &Bytes) -> Result<bool>,
) -> Result<()> {
    let end = segment.end();
    let mut chunk = Bytes::new();
    let mut chunk_pos = 0u64;
    let mut pos = 0u64;
    let mut next_offset = segment.base_offset;
    while pos < end {
        inner.check_open()?;
        if end - pos < HEADER_LEN as u64 {
            return Err(corrupt(segment, pos, "segment ends inside a batch header"));
        }
        let have =
            |p: u64, n: u64, chunk: &Bytes, at: u64| p >= at && p + n <= at + chunk.len() as u64;
        if !have(pos, HEADER_LEN as u64, &chunk, chunk_pos) {
            chunk = segment.read(pos, (end - pos).min(READ_CHUNK as u64) as usize)?;
            chunk_pos = pos;
        }
        let at = (pos - chunk_pos) as usize;
        let len = match peek_batch_len(&chunk[at..]) {
            Ok(Some(len)) if len as u64 <= end - pos => len,
            Ok(_) => {
                return Err(corrupt(
                    segment,
                    pos,
                    "batch runs past the end of the segment",
                ))
            }
            Err(e) => return Err(corrupt(segment, pos, e)),
        };
        let header = BatchHeader::parse(&chunk[at..]).map_err(|e| corrupt(segment, pos, e))?;
        if header.base_offset < next_offset {
            return Err(corrupt(segment, pos, "batch offsets go backwards"));
        }
        next_offset = header.next_offset();
        if !have(pos, len as u64, &chunk, chunk_pos) {
            let want = (end - pos).min(READ_CHUNK.max(len) as u64) as usize;
            chunk = segment.read(pos, want)?;
            chunk_pos = pos;
        }
        let at = (pos - chunk_pos) as usize;
        let batch = chunk.slice(at..at + len);
        if !visit(pos, &header, &batch)? {
            break;
        }
        pos += len as u64;
    }
    Ok(())
}
