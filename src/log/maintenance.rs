//! Changing a topic at runtime and keeping the log's size in check: `Log::alter_topic`,
//! `Log::run_maintenance` (retention, then compaction, on every partition) and the background
//! thread that calls it every `maintenance_interval`.
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

use super::{Log, LogBuilder, LogInner};
use crate::cleaner::{MaintenanceReport, PartitionReport};
use crate::config::{check_duration, TopicConfig};
use crate::error::{Error, Result};
use crate::meta::store_topics;

/// The background thread's name, also the `thread` of the error a panic in its pass turns into.
const THREAD_NAME: &str = "annals-maintenance";

/// Default period of the background maintenance thread (Kafka checks retention every 5 minutes
/// and backs the cleaner off 15 s; an embedded log's segments are smaller, so 30 s).
pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Default memory for the cleaner's key map (Kafka: 128 MiB shared by all cleaner threads).
pub(super) const DEFAULT_CLEANER_BUFFER_BYTES: usize = 16 << 20;
const MIN_CLEANER_BUFFER_BYTES: usize = 1024;
const MAX_CLEANER_BUFFER_BYTES: usize = 1 << 40;

impl LogBuilder {
    /// How often the background thread runs [`Log::run_maintenance`]; `None` turns background
    /// maintenance off, leaving it to the host. Default 30 s; when set, at least 1 ms and at
    /// most `i64::MAX` ms.
    pub fn maintenance_interval(mut self, interval: Option<Duration>) -> Self {
        self.maintenance_interval = interval;
        self
    }

    /// Memory the compactor may use for its key → latest-offset map, per partition being
    /// compacted (one at a time). A dirty part with more distinct keys than fit is compacted in
    /// several passes. Default 16 MiB; 1 KiB to 1 TiB. Each key takes about 40 bytes.
    pub fn cleaner_buffer_bytes(mut self, bytes: usize) -> Self {
        self.cleaner_buffer_bytes = bytes;
        self
    }

    pub(super) fn validate(&self) -> Result<()> {
        if let Some(interval) = self.maintenance_interval {
            check_duration("maintenance_interval", interval)?;
        }
        if self.maintenance_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::invalid_config(
                "maintenance_interval",
                "must be at least 1 ms (use None to turn background maintenance off)",
            ));
        }
        if !(1024..=i32::MAX as u64).contains(&self.offsets_segment_bytes) {
            return Err(Error::invalid_config(
                "offsets_topic_segment_bytes",
                format!(
                    "is {}, must be between 1024 and {}",
                    self.offsets_segment_bytes,
                    i32::MAX
                ),
            ));
        }
        let b = self.cleaner_buffer_bytes;
        if !(MIN_CLEANER_BUFFER_BYTES..=MAX_CLEANER_BUFFER_BYTES).contains(&b) {
            return Err(Error::invalid_config(
                "cleaner_buffer_bytes",
                format!("is {b}, must be between {MIN_CLEANER_BUFFER_BYTES} and {MAX_CLEANER_BUFFER_BYTES}"),
            ));
        }
        Ok(())
    }
}

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
                    log.run_maintenance_while(|| !*signal.0.lock())
                }));
                match pass {
                    Ok(result) => *outcome.lock() = result.err(),
                    Err(payload) => {
                        // A panic is a bug, not a condition that passes like a full disk: the
                        // next pass would most likely hit it again, every interval (as often as
                        // every millisecond), each time printing a panic and perhaps leaving
                        // more half-done work. So the thread stops here, and the error stays
                        // for `last_maintenance_error` until the log is reopened; the host can
                        // still call `run_maintenance` itself.
                        *outcome.lock() = Some(Error::thread_panicked(THREAD_NAME, &*payload));
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

    /// Replaces a topic's configuration at runtime: validated, persisted in `topics.meta`
    /// (atomically), and applied to the live partitions — new segments use the new sizes,
    /// appends the new compression and limits, the next maintenance run the new retention and
    /// compaction settings.
    ///
    /// Errors: [`Error::UnknownTopic`], [`Error::InvalidConfig`] (including a different
    /// `partitions` — the number of partitions is fixed at creation — and a lower
    /// `max_message_bytes`, which batches already stored could exceed), [`Error::Closed`], I/O.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use std::time::Duration;
    /// use annals::{CleanupPolicy, Log, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// log.create_topic("users", TopicConfig::default())?;
    /// let compacted = log.topic_config("users")?.cleanup_policy(CleanupPolicy::Compact)
    ///     .delete_retention_ms(Duration::from_secs(3600));
    /// log.alter_topic("users", compacted.clone())?;
    /// assert_eq!(log.topic_config("users")?, compacted);
    /// assert!(log.alter_topic("users", compacted.partitions(2)).is_err());
    /// # Ok(()) }
    /// ```
    pub fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        if crate::catalog::is_internal_topic(name) {
            return Err(Error::UnknownTopic {
                topic: name.to_string(),
            });
        }
        config.validate()?;
        let inner = &self.inner;
        // The metadata is written under the admin lock alone, which keeps the topic list as read
        // here; `state` is taken only to read it and to publish the result.
        let _admin = inner.admin.lock();
        let state = inner.catalog.state.read();
        if state.closed {
            return Err(Error::Closed);
        }
        let Some(topic) = state.topics.get(name) else {
            return Err(Error::UnknownTopic {
                topic: name.to_string(),
            });
        };
        if topic.config.partitions != config.partitions {
            return Err(Error::invalid_config(
                "partitions",
                format!(
                    "cannot change from {} to {}: the number of partitions is fixed at creation",
                    topic.config.partitions, config.partitions
                ),
            ));
        }
        if config.max_message_bytes < topic.config.max_message_bytes {
            // Batches up to the old limit are on disk, and recovery and reads judge lengths
            // (and decompressed sizes) by the current one: they would turn into "corruption".
            return Err(Error::invalid_config(
                "max_message_bytes",
                format!(
                    "cannot be lowered from {} to {}: stored batches may be that large",
                    topic.config.max_message_bytes, config.max_message_bytes
                ),
            ));
        }
        let list: Vec<(String, TopicConfig)> = state
            .topics
            .iter()
            .map(|(n, t)| {
                let c = if n == name { &config } else { &t.config };
                (n.clone(), c.clone())
            })
            .collect();
        drop(state);
        // Durable first: a crash after this reopens with the new configuration.
        store_topics(&*inner.storage, &inner.dir, &list)?;
        let mut state = inner.catalog.state.write();
        let topic = state.topics.get_mut(name).expect("the admin lock kept it");
        topic.config = config.clone();
        let shared = Arc::new(config);
        for p in &topic.partitions {
            *p.inner.config.write() = shared.clone();
        }
        Ok(())
    }

    /// Runs retention and then compaction on every partition now, and reports what changed.
    /// This is what the background thread does every `maintenance_interval`; with it turned
    /// off ([`LogBuilder::maintenance_interval`]`(None)`) the host calls this itself.
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
        self.run_maintenance_while(|| true)
    }

    /// `run_maintenance`, checking `go_on` before each partition (the background thread stops
    /// between partitions when the log closes).
    fn run_maintenance_while(&self, go_on: impl Fn() -> bool) -> Result<MaintenanceReport> {
        let started = Instant::now();
        let mut report = MaintenanceReport::default();
        let mut poisoned = None;
        for p in self.all_partitions()? {
            if !go_on() {
                break;
            }
            let config = p.inner.config();
            let groups: Vec<(String, Option<u64>)> = config
                .retain_for_groups
                .iter()
                .map(|g| {
                    let committed = self.committed_offset_for_retention(g, p.topic(), p.id())?;
                    Ok((g.clone(), committed))
                })
                .collect::<Result<_>>()?;
            // A partition of a topic deleted meanwhile is closed (and its directory may be gone
            // under a pass): skip it, unless the whole log is closing.
            let deleted =
                |p: &crate::Partition| p.inner.is_closed() && !self.inner.catalog.is_closed();
            // A poisoned partition (a failed fsync, or a swap that failed part way) waits for
            // a reopen; the others are still maintained, and the run reports it at the end.
            let retention = match p.retain_with_groups(&groups) {
                Err(_) if deleted(&p) => continue,
                Err(e @ Error::Poisoned { .. }) => {
                    poisoned.get_or_insert(e);
                    continue;
                }
                r => r?,
            };
            let compaction = match p.compact_with_buffer(self.inner.cleaner_buffer_bytes) {
                Err(_) if deleted(&p) => continue,
                Err(e @ Error::Poisoned { .. }) => {
                    poisoned.get_or_insert(e);
                    continue;
                }
                r => r?,
            };
            if retention.segments_deleted > 0
                || retention.offsets_removed > 0
                || compaction.passes > 0
            {
                report.partitions.push(PartitionReport {
                    topic: p.topic().to_string(),
                    partition: p.id(),
                    retention,
                    compaction,
                });
            }
        }
        report.elapsed = started.elapsed();
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
