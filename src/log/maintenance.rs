//! Keeping the log's size in check: `Log::run_maintenance` (retention, then compaction, on every
//! partition) and the background thread that calls it every `maintenance_interval`.
//!
//! The background thread holds only a weak reference to the log between runs, so dropping the
//! last `Log` handle closes the log as usual; `close` signals the thread, closes the partitions
//! (a compaction in progress notices and abandons its temporary file) and joins it. A pass that
//! panics is caught: it becomes `last_maintenance_error` and the thread stops.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Log, LogInner};
use crate::cleaner::{MaintenanceReport, PartitionReport};
use crate::error::{Error, Result};

/// The background thread's name, also the `thread` of the error a panic in its pass turns into.
const THREAD_NAME: &str = "annals-maintenance";

/// Default period of the background maintenance thread (Kafka checks retention every 5 minutes
/// and backs the cleaner off 15 s; an embedded log's segments are smaller, so 30 s).
pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// The background maintenance thread and its stop signal.
#[derive(Debug)]
pub(super) struct Worker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
    id: ThreadId,
    /// The outcome of the thread's latest run: `Some` while it last failed.
    last_error: Arc<Mutex<Option<Error>>>,
}

impl Worker {
    /// Waits for the thread to finish, unless this *is* the thread (the last `Log` handle was
    /// dropped by a maintenance run): it then exits on its own once the run returns.
    pub(super) fn join(self) {
        if std::thread::current().id() != self.id {
            let _ = self.thread.join();
        }
    }
}

impl LogInner {
    /// Signals the background thread to stop and hands it over for joining.
    pub(super) fn stop_maintenance(&self) -> Option<Worker> {
        let worker = self.maintenance.lock().take()?;
        *worker.stop.0.lock() = true;
        worker.stop.1.notify_all();
        Some(worker)
    }
}

impl Log {
    pub(super) fn start_maintenance(&self, interval: Option<Duration>) -> Result<()> {
        let Some(interval) = interval else {
            return Ok(());
        };
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(&self.inner);
        let signal = stop.clone();
        let last_error = Arc::new(Mutex::new(None));
        let outcome = last_error.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || loop {
                {
                    let mut stopped = signal.0.lock();
                    if !*stopped {
                        signal.1.wait_for(&mut stopped, interval);
                    }
                    if *stopped {
                        return;
                    }
                }
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                // Errors (a full disk, say) are retried next period, and kept for
                // `last_maintenance_error`.
                let log = Log { inner };
                // Unwind safety: after a panic the thread only records it, drops its handle and
                // exits; nothing the pass left half done is used by this thread again.
                let pass = panic::catch_unwind(AssertUnwindSafe(|| {
                    log.run_maintenance_counted(|| !*signal.0.lock())
                }));
                match pass {
                    Ok(result) => *outcome.lock() = result.err(),
                    Err(payload) => {
                        let error = Error::thread_panicked(THREAD_NAME, &*payload);
                        error!(
                            error = %error,
                            "the background maintenance thread panicked and stopped; \
                             run_maintenance still works"
                        );
                        // A panic is a bug, not a condition that passes like a full disk: the
                        // next pass would most likely hit it again, every interval (as often as
                        // every millisecond), each time printing a panic and perhaps leaving
                        // more half-done work. So the thread stops here, and the error stays
                        // for `last_maintenance_error` until the log is reopened; the host can
                        // still call `run_maintenance` itself.
                        *outcome.lock() = Some(error);
                        return;
                    }
                }
            })?;
        let id = thread.thread().id();
        *self.inner.maintenance.lock() = Some(Worker {
            stop,
            thread,
            id,
            last_error,
        });
        Ok(())
    }

    /// The error of the background maintenance thread's latest run, if that run failed (it is
    /// retried every `maintenance_interval`; a later successful run clears this). `None` also
    /// when background maintenance is off.
    ///
    /// A run that panicked is [`Error::ThreadPanicked`]: the thread then stops (a panic is a bug
    /// that would most likely recur every run), and this error stays until the log is reopened.
    pub fn last_maintenance_error(&self) -> Option<Error> {
        let worker = self.inner.maintenance.lock();
        let error = worker.as_ref()?.last_error.lock().clone();
        error
    }

    /// Runs retention and then compaction on every partition now, and reports what changed.
    /// This is what the background thread does every `maintenance_interval`; with it turned
    /// off ([`LogBuilder::maintenance_interval`](crate::LogBuilder::maintenance_interval)
    /// `(None)`) the host calls this itself.
    ///
    /// Appends and reads continue meanwhile: compaction copies without the partition's writer
    /// lock and takes it only to swap the new segments in.
    ///
    /// A poisoned partition (an fsync failed, or a swap failed part way) is skipped until the
    /// log is reopened; the run still maintains the others and then returns its
    /// [`Error::Poisoned`].
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{Log, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::builder(dir.path()).maintenance_interval(None).open()?;
    /// log.create_topic("t", TopicConfig::default())?;
    /// let report = log.run_maintenance()?;
    /// assert!(report.partitions.is_empty()); // nothing to do yet
    /// # Ok(()) }
    /// ```
    pub fn run_maintenance(&self) -> Result<MaintenanceReport> {
        self.run_maintenance_counted(|| true)
    }

    /// [`run_maintenance_while`](Self::run_maintenance_while), counted for `Log::metrics`.
    fn run_maintenance_counted(&self, go_on: impl Fn() -> bool) -> Result<MaintenanceReport> {
        let started = Instant::now();
        let result = self.run_maintenance_while(go_on);
        let timed_out = result.as_ref().map_or(0, |r| r.transactions_timed_out);
        self.inner
            .maintenance_runs
            .ran(started, result.is_ok(), timed_out);
        result
    }

    /// `run_maintenance`, checking `go_on` before each partition (the background thread stops
    /// between partitions when the log closes).
    ///
    /// Every error is reported as a diagnostic where it happens, with what failed.
    fn run_maintenance_while(&self, go_on: impl Fn() -> bool) -> Result<MaintenanceReport> {
        enter_span!(INFO, "maintenance");
        let started = Instant::now();
        let mut report = MaintenanceReport::default();
        // A log closing under the run is no failure to report.
        let failed = |step: &'static str, e: Error| {
            if !matches!(e, Error::Closed) {
                error!(step, error = %e, "maintenance failed");
            }
            e
        };
        // First, so no timed-out transaction holds a stable offset back through this run.
        if let Some(coordinator) = self
            .transaction_coordinator_if_exists()
            .map_err(|e| failed("open the transaction coordinator", e))?
        {
            report.transactions_timed_out = coordinator
                .abort_expired()
                .map_err(|e| failed("abort timed-out transactions", e))?;
        }
        let mut poisoned = None;
        for p in self
            .all_partitions()
            .map_err(|e| failed("list the partitions", e))?
        {
            if !go_on() {
                break;
            }
            let failed = |step: &'static str, e: Error| {
                if !matches!(e, Error::Closed) {
                    error!(
                        topic = %p.topic(),
                        partition = p.id(),
                        step,
                        error = %e,
                        "maintenance of a partition failed"
                    );
                }
                e
            };
            let config = p.inner.config();
            let groups: Vec<(String, Option<u64>)> = config
                .retain_for_groups
                .iter()
                .map(|g| {
                    let committed = self.committed_offset_for_retention(g, p.topic(), p.id())?;
                    Ok((g.clone(), committed))
                })
                .collect::<Result<_>>()
                .map_err(|e| failed("read the committed offsets of retain_for_groups", e))?;
            // A partition of a topic deleted meanwhile is closed (and its directory may be gone
            // under a pass): skip it, unless the whole log is closing.
            let deleted =
                |p: &crate::Partition| p.inner.is_closed() && !self.inner.catalog.is_closed();
            // A poisoned partition (a failed fsync, or a swap that failed part way) waits for
            // a reopen; the others are still maintained, and the run reports it at the end.
            let retention = match p.retain_with_groups(&groups) {
                Err(_) if deleted(&p) => continue,
                Err(e @ Error::Poisoned { .. }) => {
                    poisoned.get_or_insert(failed("retention (skipped)", e));
                    continue;
                }
                r => r.map_err(|e| failed("retention", e))?,
            };
            let compaction = match p.compact_with_buffer(self.inner.cleaner_buffer_bytes) {
                Err(_) if deleted(&p) => continue,
                Err(e @ Error::Poisoned { .. }) => {
                    poisoned.get_or_insert(failed("compaction (skipped)", e));
                    continue;
                }
                r => r.map_err(|e| failed("compaction", e))?,
            };
            if retention.segments_deleted > 0
                || retention.offsets_removed > 0
                || compaction.passes > 0
            {
                report.partitions.push(PartitionReport {
                    topic: p.topic().into(),
                    partition: p.id(),
                    retention,
                    compaction,
                });
            }
        }
        report.elapsed = started.elapsed();
        debug!(
            partitions_changed = report.partitions.len(),
            segments_deleted = report.segments_deleted(),
            bytes_freed = report.bytes_freed(),
            records_compacted_away = report.records_compacted_away(),
            transactions_timed_out = report.transactions_timed_out,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "maintenance run done"
        );
        match poisoned {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// The offset `group` has committed for `topic`/`partition` (the next offset it will read),
    /// as retention for `retain_for_groups` needs it; `None` if it never committed, which holds
    /// every segment. Does not create `__consumer_offsets` if no consumer ever ran.
    fn committed_offset_for_retention(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>> {
        Ok(self.offsets_if_exists()?.and_then(|o| {
            o.committed(
                group,
                &crate::topic_partition::TopicPartition::new(topic, partition),
            )
            .map(|c| c.offset)
        }))
    }
}
