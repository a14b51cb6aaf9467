//! Compaction executor: `Partition::compact`.
//!
//! One pass: build the key map over the dirty part (stopping early if it fills), record the
//! pass durably in `partition.bounds`, then rewrite the cleanable segments below the map's end
//! group by group into fsynced `.cleaned` files, and swap them in, many groups at a time,
//! through the protocol of `partition/swap.rs` (`install.rs`). Copying reads sealed segments
//! only and takes no partition lock; appends and reads go on meanwhile, and the writer lock is
//! taken twice per commit, briefly, to rewrite the checkpoint and swap the segment list. A
//! batch keeps its base offset, producer id, epoch and base sequence, and every record its
//! offset; a batch whose records all survive is copied byte for byte, one that loses
//! some is re-encoded (with the topic's current codec), one that loses all is dropped.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::compaction_policy::{joins_group, plan_compaction, CompactionInput, CompactionPlan};
use super::install::Staged;
use super::map::{decide, version_of, Decision, Entry, KeyMap};
use super::output::{decode, for_each_batch, Output};
use super::{CompactionReport, SegmentInfo};
use crate::clock::now_ms;
use crate::config::TopicConfig;
use crate::error::Result;
use crate::meta::{store_bounds, Bounds};
use crate::partition::swap::CLEANED_LOG;
use crate::partition::{Partition, PartitionInner};
use crate::segment::{file_name, Segment};
use crate::storage::OpenMode;

/// Key-map memory of [`Partition::compact`]; `Log::run_maintenance` uses the log's
/// `cleaner_buffer_bytes` instead.
pub(crate) const DEFAULT_BUFFER_BYTES: usize = 16 << 20;
/// Staged groups are committed together once their new segments reach this many bytes: one
/// round of fsyncs for many groups, and at most this much disk beyond the log's own size.
const COMMIT_BYTES: u64 = 64 << 20;

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
        // Maintenance writes: a poisoned partition refuses it like any other write.
        inner.check_writable()?;
        let mut report = CompactionReport::default();
        let mut continuing = false;
        loop {
            let config = inner.config();
            if !config.compacts() {
                break;
            }
            let segments = inner.segments();
            let infos: Vec<SegmentInfo> = segments.iter().map(|s| SegmentInfo::of(s)).collect();
            let Some(plan) = plan_compaction(&CompactionInput {
                segments: &infos,
                log_start_offset: self.log_start_offset(),
                cleaned_end: bounds.cleaned_end,
                now_ms: now_ms(),
                min_compaction_lag_ms: crate::config::duration_to_millis(
                    "min_compaction_lag_ms",
                    config.min_compaction_lag_ms,
                )?,
                max_compaction_lag_ms: config
                    .max_compaction_lag_ms
                    .map(|d| crate::config::duration_to_millis("max_compaction_lag_ms", d))
                    .transpose()?,
                min_cleanable_dirty_ratio: config.min_cleanable_dirty_ratio,
                continuing,
            }) else {
                break;
            };
            // Expired producers' batches lose their protection. Its own statement: the writer
            // lock must be released before the pass runs.
            inner.expire_producers();
            let producer_batches = inner.writer.lock().producers.remembered_batches();
            // Loaded in this order (see `Partition::last_stable_offset`): every abort below the
            // stable offset is in the list.
            let stable = self.last_stable_offset();
            let aborted = inner.aborted.read().clone();
            let map_end = Pass {
                inner,
                config: &config,
                segments: &segments,
                infos: &infos,
                plan: &plan,
                now: now_ms(),
                producer_batches,
                stable,
                aborted,
                survivors: RefCell::new(HashMap::new()),
            }
            .run(&mut bounds, buffer_bytes, &mut report)?;
            // A full map left part of the dirty range for another pass (an open transaction's
            // stable offset does not: the rest waits until it ends).
            continuing = map_end < plan.cleanable_end && map_end < stable;
            if !continuing {
                break;
            }
        }
        inner.metrics.compacted(&report);
        report.elapsed = started.elapsed();
        Ok(report)
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
    /// Idempotent producers' remembered batches (`(producer id, base offset)`): copied whole.
    producer_batches: HashSet<(i64, u64)>,
    /// The partition's last stable offset: nothing at or past it is cleaned (an open
    /// transaction's records may still be aborted).
    stable: u64,
    /// Aborted transactions: their batches are dropped whatever their keys.
    aborted: Arc<Vec<crate::format::AbortedTxn>>,
    /// Per producer, whether a batch of its transaction since its last marker survived this
    /// pass so far (segments are copied in offset order): a marker whose transaction left no
    /// batch goes once past the delete horizon.
    survivors: RefCell<HashMap<i64, bool>>,
}

impl Pass<'_> {
    /// Whether the batch `header` belongs to an aborted transaction.
    fn is_aborted(&self, header: &crate::format::BatchHeader) -> bool {
        self.aborted.iter().any(|a| a.covers(header))
    }

    /// Runs the pass; returns where its key map ended.
    fn run(
        &self,
        bounds: &mut Bounds,
        buffer_bytes: usize,
        report: &mut CompactionReport,
    ) -> Result<u64> {
        let inner = self.inner;
        enter_span!(DEBUG, "compaction_pass", topic = %inner.topic, partition = inner.id);
        // What the report held before this pass: the pass's own work is the difference.
        let before = report.clone();
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
        let touched = cleanable
            .iter()
            .take_while(|s| s.base_offset < map_end)
            .count();
        let mut staged = Vec::new();
        let mut staged_bytes = 0;
        let mut i = 0;
        let result = (|| -> Result<()> {
            while i < touched {
                let (end, group) = self.stage(i, touched, &mut map, map_end, &prior, report)?;
                i = end;
                if let Some(group) = group {
                    staged_bytes += group.stats.size;
                    staged.push(group);
                }
                // Commit in batches: one set of fsyncs for many groups, bounded extra disk.
                if staged_bytes >= COMMIT_BYTES || (i == touched && !staged.is_empty()) {
                    self.inner.commit(std::mem::take(&mut staged))?;
                    staged_bytes = 0;
                }
            }
            Ok(())
        })();
        if result.is_err() {
            for group in &staged {
                let _ = self.inner.storage.remove_file(&group.cleaned);
            }
        }
        result?;
        report.passes += 1;
        info!(
            topic = %inner.topic,
            partition = inner.id,
            first_dirty_offset = self.plan.first_dirty,
            cleaned_up_to = map_end,
            segments_read = report.segments_read - before.segments_read,
            segments_written = report.segments_written - before.segments_written,
            bytes_read = report.bytes_read - before.bytes_read,
            bytes_written = report.bytes_written - before.bytes_written,
            records_read = report.records_read - before.records_read,
            records_removed = report.records_removed - before.records_removed,
            tombstones_removed = report.tombstones_removed - before.tombstones_removed,
            "compaction pass done"
        );
        Ok(map_end)
    }

    /// Offers every keyed record from the first dirty offset on, until the map is full.
    fn build_map(&self, cleanable: &[Arc<Segment>], map: &mut KeyMap) -> Result<u64> {
        let first_dirty = self.plan.first_dirty;
        let strategy = &self.config.compaction_strategy;
        let max = self.config.max_uncompressed_bytes();
        let mut end = self.plan.cleanable_end.min(self.stable);
        let mut records = Vec::new();
        for (i, segment) in cleanable.iter().enumerate() {
            if self.infos[i + 1].base_offset <= first_dirty {
                continue;
            }
            for_each_batch(self.inner, segment, |pos, header, batch| {
                // Markers are not keyed data, and an aborted transaction's records never win.
                if header.next_offset() <= first_dirty
                    || header.is_control()
                    || self.is_aborted(header)
                {
                    return Ok(true);
                }
                if header.base_offset >= end {
                    return Ok(false);
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

    /// Copies segments from `first` on into one new, fsynced `<base>.log.cleaned` file while
    /// `joins_group` lets the next one in. Returns where the group ended and the staged group,
    /// or `None` for a single segment that would come out unchanged (it is left alone).
    fn stage(
        &self,
        first: usize,
        limit: usize,
        map: &mut KeyMap,
        map_end: u64,
        prior: &Bounds,
        report: &mut CompactionReport,
    ) -> Result<(usize, Option<Staged>)> {
        let storage = &*self.inner.storage;
        let base = self.infos[first].base_offset;
        let cleaned = self.inner.dir.join(file_name(base, CLEANED_LOG));
        if storage.exists(&cleaned)? {
            storage.remove_file(&cleaned)?;
        }
        let file = storage.open(&cleaned, OpenMode::CreateNew)?;
        let mut out = Output::new(file, base);
        let mut changed = false;
        let mut end = first;
        let copied = (|| {
            while end < limit
                && (end == first
                    || joins_group(base, out.len(), &self.infos[end], self.config.segment_bytes))
            {
                changed |= self.copy(&self.segments[end], map, map_end, prior, &mut out, report)?;
                end += 1;
            }
            out.finish()
        })();
        if let Err(e) = copied {
            let _ = storage.remove_file(&cleaned);
            return Err(e);
        }
        report.segments_read += end - first;
        report.bytes_read += self.infos[first..end].iter().map(|s| s.size).sum::<u64>();
        if !changed && end == first + 1 {
            storage.remove_file(&cleaned)?;
            return Ok((end, None));
        }
        report.segments_written += 1;
        report.bytes_written += out.written;
        let group = Staged {
            segments: self.segments[first..end].to_vec(),
            end: self.infos[end].base_offset,
            cleaned,
            stats: out.stats(),
        };
        Ok((end, Some(group)))
    }

    /// Copies one segment's surviving records into `out`; returns whether anything changed.
    fn copy(
        &self,
        segment: &Segment,
        map: &mut KeyMap,
        map_end: u64,
        prior: &Bounds,
        out: &mut Output,
        report: &mut CompactionReport,
    ) -> Result<bool> {
        let strategy = &self.config.compaction_strategy;
        let max = self.config.max_uncompressed_bytes();
        // At most i64::MAX (validated), so the cast is exact.
        let delete_retention = crate::config::duration_to_millis(
            "delete_retention_ms",
            self.config.delete_retention_ms,
        )? as i64;
        let mut changed = false;
        let mut records = Vec::new();
        let mut kept: Vec<usize> = Vec::new();
        for_each_batch(self.inner, segment, |pos, header, batch| {
            report.records_read += u64::from(header.record_count);
            // A producer's remembered batches stay whole (Kafka keeps each producer's last
            // batch too): replaying them is how its state comes back without the checkpoint.
            let remembered = header.producer_id >= 0
                && self
                    .producer_batches
                    .contains(&(header.producer_id, header.base_offset));
            let horizon_passed = |offset: u64| {
                prior
                    .first_cleaned_at(offset)
                    .is_some_and(|at| self.now.saturating_sub(at) >= delete_retention)
            };
            if header.is_control() {
                // Kafka's rule: a marker stays while any batch of its transaction does (a
                // reader, or recovery replaying the log, needs it to end that transaction),
                // and goes once none is left and the delete horizon passed.
                let survived = self
                    .survivors
                    .borrow_mut()
                    .remove(&header.producer_id)
                    .unwrap_or(false);
                if !survived && header.base_offset < map_end && horizon_passed(header.base_offset) {
                    report.records_removed += u64::from(header.record_count);
                    changed = true;
                } else {
                    out.push_verbatim(batch, header)?;
                }
                return Ok(true);
            }
            let survives = |header: &crate::format::BatchHeader| {
                if header.is_transactional() {
                    self.survivors.borrow_mut().insert(header.producer_id, true);
                }
            };
            if header.base_offset >= map_end || remembered {
                survives(header);
                out.push_verbatim(batch, header)?;
                return Ok(true);
            }
            if self.is_aborted(header) {
                // Kafka's rule: an aborted transaction's records go, whatever their keys.
                report.records_removed += u64::from(header.record_count);
                changed = true;
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
                let horizon = horizon_passed(r.offset);
                match decide(map, key, this, r.value.is_none(), map_end, horizon) {
                    Decision::Keep => kept.push(i),
                    Decision::Superseded => report.records_removed += 1,
                    Decision::ExpiredTombstone => {
                        report.records_removed += 1;
                        report.tombstones_removed += 1;
                    }
                }
            }
            if !kept.is_empty() {
                survives(header);
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
        Ok(changed)
    }
}
