//! [`Log`]: a directory of topics, each a set of partitions. The public entry point.
//!
//! This file holds the handle, its shared state, producers' entry point, `sync` and `close`;
//! the rest is one concept a file: `builder.rs` (options), `open.rs` (open and recovery),
//! `topics.rs` (topic administration), `consumers.rs` (consumers and group views),
//! `maintenance.rs` (retention, compaction and the background thread), `producer_ids.rs`,
//! `report.rs` (the recovery report), `backup.rs` (`Log::checkpoint`), `transactions.rs`,
//! `event_stores.rs` (the event stores open on the log), `internal.rs` (internal topics),
//! `metrics.rs` (`Log::metrics`).

pub(crate) mod backup;
mod builder;
mod consumers;
mod event_stores;
mod internal;
mod maintenance;
mod metrics;
mod open;
mod producer_ids;
mod report;
#[cfg(feature = "serde")]
mod serde_high_watermarks;
mod topics;
mod transactions;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::fan_out;
use crate::offsets::OffsetStore;
use crate::partition::{Partition, RecoveryMode};
use crate::producer::{Producer, ProducerConfig};
use crate::storage::{LockGuard, OpenMode, Storage};
pub use builder::LogBuilder;
use open::CLEAN_SHUTDOWN_FILE;
use producer_ids::ProducerIds;

/// An open log directory. Cheap to clone; all clones share one log, which closes cleanly when
/// [`close`](Log::close) is called or the last clone is dropped.
///
/// Only `Log` handles keep the log open: a [`Producer`], [`Consumer`](crate::Consumer) or
/// [`Partition`] does not. Closing (either way) first closes every producer of the log — each
/// writes every record it had accepted, whose [`Delivery`](crate::Delivery) then reports the
/// outcome, and stops — then the partitions, and releases the directory lock, so the directory
/// can be opened again at once. Producers, consumers and partition handles that are still alive
/// then return [`Error::Closed`] from every fallible call.
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{Log, Record, TopicConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path())?;
/// log.create_topic("orders", TopicConfig::default().partitions(3))?;
/// assert_eq!(log.topics(), vec!["orders".to_string()]);
/// log.partition("orders", 2)?.append(&[Record::new("hello")])?;
/// log.close()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Log {
    inner: Arc<LogInner>,
}

#[derive(Debug)]
struct LogInner {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    recovery_mode: RecoveryMode,
    /// Topics, partitions, the closed flag and the group coordinator: what producers and
    /// consumers share with the log (they hold a `Catalog`, not a `Log`; see `catalog.rs`).
    catalog: Catalog,
    /// Serialises topic creation, alteration, deletion and close (each rewrites metadata or many
    /// files). Taken before the catalog's `state`; while it is held, only its holder changes
    /// `state.topics` and `state.closed`, so it does its I/O holding this lock alone and then
    /// publishes under a brief `state.write()`.
    admin: Mutex<()>,
    lock: Mutex<Option<Box<dyn LockGuard>>>,
    /// Shared with the transaction coordinator, which allocates ids for transactional ids.
    producer_ids: Arc<ProducerIds>,
    /// Committed offsets, loaded (or the internal topic created) on first use.
    offsets: Mutex<Option<Arc<OffsetStore>>>,
    /// The transaction coordinator, loaded at open if `__transaction_state` exists, else
    /// created by the first transactional producer (`transactions.rs`).
    txn: Mutex<Option<Arc<crate::txn::TxnCoordinator>>>,
    cleaner_buffer_bytes: usize,
    offsets_segment_bytes: u64,
    producer_id_expiration_ms: i64,
    /// `LogBuilder::transactional_id_expiration` in milliseconds.
    transactional_id_expiration_ms: i64,
    /// The background maintenance thread, if running (see `maintenance.rs`).
    maintenance: Mutex<Option<maintenance::Worker>>,
    /// What recovery removed at open (see `report.rs`).
    recovery: crate::partition::RecoveryReport,
    /// Names of the event stores open on this log: two stores of one name would write the
    /// same index files.
    event_stores: Mutex<std::collections::BTreeSet<String>>,
    /// What `Log::metrics` reports beside the partitions' and producers' own counters: when the
    /// log was opened, its storage's fsyncs and files (shared with the `MeteredStorage`
    /// around `storage`), and the maintenance runs.
    opened: std::time::Instant,
    io: Arc<crate::metrics::IoCounters>,
    maintenance_runs: crate::metrics::MaintenanceCounters,
}

impl Log {
    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Starts a [`Producer`] writing to this log. With `idempotence` (the default) it is given a
    /// producer id that no other producer of this log had; with a `stable_id` it keeps that
    /// stable id's producer id with the next epoch, fencing any older instance. With a
    /// `transactional_id` it gets its id and epoch from
    /// [`init_transactions`](Producer::init_transactions) (creating the internal topics
    /// `__transaction_state` and `__consumer_offsets` if the log has none yet).
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        if self.inner.catalog.state.read().closed {
            return Err(Error::Closed);
        }
        if let Some(id) = &config.transactional_id {
            let coordinator = self.transaction_coordinator()?;
            let offsets = self.offsets()?;
            coordinator.attach_offsets(offsets.clone());
            let txn = crate::producer::Transactional::new(id.clone(), coordinator, offsets);
            let identity = crate::producer::ProducerIdentity::new(-1, -1, None);
            return Producer::start(
                self.inner.catalog.clone(),
                config,
                Some(identity),
                Some(txn),
            );
        }
        let identity = if config.idempotence {
            Some(
                self.inner
                    .producer_ids
                    .assign(&*self.inner.storage, config.stable_id.as_deref())?,
            )
        } else {
            None
        };
        Producer::start(self.inner.catalog.clone(), config, identity, None)
    }

    /// `fsync`s every partition (see [`Partition::sync`]).
    pub fn sync(&self) -> Result<()> {
        fan_out::for_each(&self.all_partitions()?, Partition::sync)
    }

    /// Closes the log cleanly: closes every producer of the log (each writes what it had
    /// accepted first), seals every active segment, writes checkpoints and the clean-shutdown
    /// marker (so the next open does not scan), and releases the directory lock. Producers,
    /// consumers and partition handles return [`Error::Closed`] afterwards, also while other
    /// clones of this `Log` live. Calling it again does nothing; dropping the last clone does
    /// the same, without reporting errors.
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }

    fn all_partitions(&self) -> Result<Vec<Partition>> {
        self.inner.catalog.all_partitions()
    }
}

impl LogInner {
    fn close(&self) -> Result<()> {
        // Stop background maintenance first, outside the admin lock (it may be waiting for it).
        let worker = self.stop_maintenance();
        // Then the producers, while the partitions are still open: what they accepted is
        // written (or fails with its own error) before anything closes under them.
        self.catalog.close_clients();
        let result = self.close_partitions();
        if let Some(worker) = worker {
            worker.join();
        }
        result
    }

    fn close_partitions(&self) -> Result<()> {
        let _admin = self.admin.lock();
        let Some(partitions) = self.catalog.take_for_close() else {
            return Ok(());
        };
        // Side by side: each written partition costs several fsyncs (10,000 of them took
        // 12.5 s one by one).
        let result = fan_out::for_each(&partitions, |p| p.inner.close())
            .and_then(|()| self.write_clean_marker());
        // Release the lock last, after everything is on disk.
        self.lock.lock().take();
        result
    }

    fn write_clean_marker(&self) -> Result<()> {
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let file = self.storage.open(&marker, OpenMode::Create)?;
        file.sync_all()?;
        self.storage.sync_dir(&self.dir)?;
        Ok(())
    }
}

impl Drop for LogInner {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; a caller who needs them calls `close` first.
        // Without a clean close the next open simply recovers (scans), losing nothing.
        let _ = self.close();
    }
}
