//! Retention executor: `Partition::retain` and `Partition::delete_records`.
//!
//! Deleting a prefix of segments, crash-safely and under readers' feet:
//! 1. the new log start is written to `partition.bounds` (temp, fsync, rename, fsync dir) — the
//!    commit point; from here on no open can serve records below it;
//! 2. the in-memory log start is raised, so new reads below it fail with `OffsetOutOfRange`;
//! 3. under the writer lock, the segments leave the segment list and the checkpoint is rewritten
//!    without them;
//! 4. each segment's files are renamed to `*.deleted` (directory fsynced) and unlinked when the
//!    last reader holding the segment drops it.
//!
//! A crash after 1 leaves segments wholly below the durable log start, which the next open
//! removes; a crash before 1 changes nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::retention_policy::{plan_retention, RetentionInput};
use super::{RetentionReport, SegmentInfo};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::meta::{store_bounds, Bounds};
use crate::partition::{Partition, PartitionInner};
use crate::segment::Segment;

impl Partition {
    /// Applies the topic's retention now: deletes whole old segments past `retention_ms` or
    /// `retention_bytes` (or a `max_retention_*` hard cap), and segments wholly below the log
    /// start offset. Never touches the active segment. Returns what was deleted.
    ///
    /// A partition on its own cannot see consumer groups, so for a topic with
    /// `retain_for_groups` it treats every listed group as not having committed — it holds
    /// everything the groups could hold, and only the hard caps delete.
    /// [`Log::run_maintenance`](crate::Log::run_maintenance) supplies the groups' offsets.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use std::time::Duration;
    /// use annals::{Log, Record, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::builder(dir.path()).maintenance_interval(None).open()?;
    /// log.create_topic("t", TopicConfig::default().segment_bytes(1024).retention_ms(Duration::from_secs(60)))?;
    /// let p = log.partition("t", 0)?;
    /// for i in 0..50 {
    ///     p.append(&[Record::new(vec![0u8; 100]).timestamp(1_000 + i)])?; // long ago
    /// }
    /// let report = p.retain()?;
    /// assert!(report.segments_deleted > 0);
    /// assert_eq!(p.log_start_offset(), report.log_start_offset);
    /// # Ok(()) }
    /// ```
    pub fn retain(&self) -> Result<RetentionReport> {
        let groups: Vec<(String, Option<u64>)> = self
            .inner
            .config()
            .retain_for_groups
            .iter()
            .map(|g| (g.clone(), None))
            .collect();
        self.retain_with_groups(&groups)
    }

    /// [`retain`](Self::retain) with the listed groups' committed offsets.
    pub(crate) fn retain_with_groups(
        &self,
        groups: &[(String, Option<u64>)],
    ) -> Result<RetentionReport> {
        let started = Instant::now();
        let inner = &self.inner;
        enter_span!(DEBUG, "retention", topic = %inner.topic, partition = inner.id);
        let mut bounds = inner.bounds.lock();
        // Maintenance writes: a poisoned partition refuses it like any other write.
        inner.check_writable()?;
        let config = inner.config();
        let segments = inner.segments();
        let infos: Vec<SegmentInfo> = segments.iter().map(|s| SegmentInfo::of(s)).collect();
        let millis = |field, d: Option<Duration>| {
            d.map(|d| crate::config::duration_to_millis(field, d))
                .transpose()
        };
        let plan = plan_retention(&RetentionInput {
            segments: &infos,
            log_start_offset: self.log_start_offset(),
            delete_enabled: config.deletes(),
            retention_ms: millis("retention_ms", config.retention_ms)?,
            retention_bytes: config.retention_bytes,
            max_retention_ms: millis("max_retention_ms", config.max_retention_ms)?,
            max_retention_bytes: config.max_retention_bytes,
            groups,
            now_ms: now_ms(),
        });
        let mut report =
            inner.delete_prefix(&mut bounds, &segments, plan.delete(), plan.log_start_offset)?;
        inner.metrics.retained(&report);
        // Every maintenance run retains every partition: the place to bound producer state.
        inner.expire_producers();
        report.elapsed = started.elapsed();
        if report.segments_deleted > 0 || report.offsets_removed > 0 {
            info!(
                topic = %inner.topic,
                partition = inner.id,
                segments_deleted = report.segments_deleted,
                bytes_deleted = report.bytes_deleted,
                offsets_removed = report.offsets_removed,
                log_start_offset = report.log_start_offset,
                elapsed_ms = report.elapsed.as_millis() as u64,
                "retention deleted old records"
            );
        }
        Ok(report)
    }

    /// Kafka's DeleteRecords: makes every offset below `before_offset` unreadable by moving the
    /// log start offset there (durably), and deletes the whole segments below it. Reads below
    /// the new start fail with [`Error::OffsetOutOfRange`]. Returns the log start offset
    /// afterwards; a `before_offset` at or below the current start changes nothing.
    ///
    /// Errors: `before_offset` above the high watermark ([`Error::OffsetOutOfRange`]), a closed
    /// partition, an I/O error (in which case the start has not moved).
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{Error, Log, Record, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// log.create_topic("t", TopicConfig::default())?;
    /// let p = log.partition("t", 0)?;
    /// p.append(&[Record::new("a"), Record::new("b"), Record::new("c")])?;
    /// assert_eq!(p.delete_records(2)?, 2);
    /// assert!(matches!(p.read(1, 1024), Err(Error::OffsetOutOfRange { .. })));
    /// assert_eq!(p.read(2, 1024)?[0].value.as_deref(), Some(&b"c"[..]));
    /// # Ok(()) }
    /// ```
    pub fn delete_records(&self, before_offset: u64) -> Result<u64> {
        let inner = &self.inner;
        let mut bounds = inner.bounds.lock();
        // Maintenance writes: a poisoned partition refuses it like any other write.
        inner.check_writable()?;
        let start = self.log_start_offset();
        let hw = self.high_watermark();
        if before_offset > hw {
            return Err(Error::OffsetOutOfRange {
                requested: before_offset,
                earliest: start,
                latest: hw,
            });
        }
        if before_offset <= start {
            return Ok(start);
        }
        let segments = inner.segments();
        // Whole segments below the new start: those the next segment starts at or below it.
        let whole = segments
            .windows(2)
            .take_while(|w| w[1].base_offset <= before_offset)
            .count();
        let report = inner.delete_prefix(&mut bounds, &segments, whole, before_offset)?;
        info!(
            topic = %inner.topic,
            partition = inner.id,
            segments_deleted = report.segments_deleted,
            bytes_deleted = report.bytes_deleted,
            offsets_removed = report.offsets_removed,
            log_start_offset = report.log_start_offset,
            "delete_records moved the log start"
        );
        inner.metrics.retained(&report);
        Ok(self.log_start_offset())
    }
}

impl PartitionInner {
    /// Moves the log start to `new_start` and deletes the first `count` of `segments` (the
    /// partition's list as the caller found it under the bounds lock; only maintenance, which
    /// that lock serialises, removes segments, so its prefix is still the live one).
    fn delete_prefix(
        &self,
        bounds: &mut Bounds,
        segments: &Arc<Vec<Arc<Segment>>>,
        count: usize,
        new_start: u64,
    ) -> Result<RetentionReport> {
        let old_start = self.log_start_offset.load(Ordering::Acquire);
        let new_start = new_start.max(old_start);
        let mut report = RetentionReport {
            log_start_offset: old_start,
            ..RetentionReport::default()
        };
        if count == 0 && new_start == old_start {
            return Ok(report);
        }
        // 1. Commit point.
        let mut next = bounds.clone();
        next.log_start_offset = new_start;
        next.trim_below(new_start);
        store_bounds(&*self.storage, &self.dir, &next)?;
        *bounds = next;
        // 2. Readers below the new start now get OffsetOutOfRange.
        self.log_start_offset.store(new_start, Ordering::Release);
        report.log_start_offset = new_start;
        report.offsets_removed = new_start - old_start;
        if count == 0 {
            return Ok(report);
        }
        let doomed = &segments[..count];
        // 3. Out of the list and the checkpoint.
        {
            let mut w = self.writer.lock();
            {
                let mut list = self.segments.write();
                let rest: Vec<Arc<Segment>> = list.iter().skip(count).cloned().collect();
                *list = Arc::new(rest);
            }
            w.sealed
                .retain(|s| !doomed.iter().any(|d| d.base_offset == s.base_offset));
            let recovery_point = w.recovery_point;
            self.write_checkpoint(&mut w, recovery_point)?;
        }
        // 4. Retire; the unlink waits for the last reader. When no reader can hold them —
        // nobody else has the old list (it was replaced above, under the lock readers clone it
        // under) and nobody cloned the segments out of it — unlink them at once instead: a
        // third of the system calls.
        let unreachable =
            |s: &Arc<Segment>| Arc::strong_count(segments) == 1 && Arc::strong_count(s) == 1;
        for s in doomed {
            report.segments_deleted += 1;
            report.bytes_deleted += s.end();
            if unreachable(s) {
                s.delete_now(&*self.storage, &self.dir)?;
            } else {
                s.retire(&self.storage, &self.dir)?;
            }
        }
        self.storage.sync_dir(&self.dir)?;
        Ok(report)
    }
}
