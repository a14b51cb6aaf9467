//! [`LogBuilder`]: every option of opening a log, with its default and its validation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{consumers, maintenance, producer_ids, Log};
use crate::config::check_duration;
use crate::error::{Error, Result};
use crate::partition::RecoveryMode;
use crate::storage::{FsStorage, Storage, DEFAULT_MAX_OPEN_FILES, MIN_MAX_OPEN_FILES};

/// Default memory for the cleaner's key map (Kafka: 128 MiB shared by all cleaner threads).
const DEFAULT_CLEANER_BUFFER_BYTES: usize = 16 << 20;
const MIN_CLEANER_BUFFER_BYTES: usize = 1024;
const MAX_CLEANER_BUFFER_BYTES: usize = 1 << 40;

/// Options for opening a [`Log`]; start from [`Log::builder`].
#[derive(Debug, Clone)]
pub struct LogBuilder {
    pub(super) dir: PathBuf,
    pub(super) storage: Arc<dyn Storage>,
    pub(super) recovery_mode: RecoveryMode,
    /// Background maintenance period (`None`: off); see `maintenance.rs`.
    pub(super) maintenance_interval: Option<std::time::Duration>,
    pub(super) cleaner_buffer_bytes: usize,
    /// Segment size of `__consumer_offsets` when this open creates it; see `consumers.rs`.
    pub(super) offsets_segment_bytes: u64,
    /// How long a partition remembers an idle idempotent producer; see `producer_ids.rs`.
    pub(super) producer_id_expiration: std::time::Duration,
    /// How long the transaction coordinator remembers an idle transactional id.
    pub(super) transactional_id_expiration: std::time::Duration,
    /// Descriptors the log's files may hold open at once; see `storage/open_file_budget.rs`.
    pub(super) max_open_files: usize,
}

impl LogBuilder {
    /// Use this storage instead of the real file system (for example a
    /// [`SimStorage`](crate::storage::SimStorage) to test crash behaviour).
    #[must_use]
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    /// What recovery does on finding damage in the middle of a log. Default
    /// [`RecoveryMode::Strict`].
    #[must_use]
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// How long a partition remembers an idempotent producer that has stopped writing (Kafka's
    /// `producer.id.expiration.ms`). Within it, a retry of one of the producer's last five
    /// batches is recognised and not written twice; after it (or once the producer's newest
    /// batch is below the log start) the producer is forgotten, at the next checkpoint or
    /// maintenance run, and a late retry is written again — as in Kafka. This is what bounds
    /// the producer state each partition keeps and checkpoints. Default one day; at least 1 ms
    /// and at most `i64::MAX` ms.
    #[must_use]
    pub fn producer_id_expiration(mut self, expiration: std::time::Duration) -> Self {
        self.producer_id_expiration = expiration;
        self
    }

    /// How long the transaction coordinator remembers a transactional id with no transaction
    /// open after its last change (Kafka's `transactional.id.expiration.ms`): maintenance then
    /// forgets it (a tombstone in `__transaction_state`), so the coordinator's state is bounded
    /// by the ids in use. A producer instance still holding a forgotten id is fenced; a new
    /// `init_transactions` with it starts afresh. Default 7 days; at least 1 ms and at most
    /// `i64::MAX` ms.
    #[must_use]
    pub fn transactional_id_expiration(mut self, expiration: std::time::Duration) -> Self {
        self.transactional_id_expiration = expiration;
        self
    }

    /// Opens (creating if needed) the log directory, takes its lock, and recovers every
    /// partition.
    pub fn open(self) -> Result<Log> {
        self.validate()?;
        producer_ids::expiration_millis(self.producer_id_expiration)?;
        self.transactional_id_expiration_ms()?;
        let log = Log::open_with(self.clone())?;
        log.start_maintenance(self.maintenance_interval)?;
        Ok(log)
    }

    /// Opens the directory for reading only, with this builder's storage: no lock, no
    /// recovery, no writes (see [`Log::open_read_only`]). The other options do not apply.
    pub fn open_read_only(self) -> Result<crate::ReadOnlyLog> {
        crate::ReadOnlyLog::open(self.storage, self.dir)
    }

    /// How often the background thread runs [`Log::run_maintenance`]; `None` turns background
    /// maintenance off, leaving it to the host. Default 30 s; when set, at least 1 ms and at
    /// most `i64::MAX` ms.
    #[must_use]
    pub fn maintenance_interval(mut self, interval: Option<Duration>) -> Self {
        self.maintenance_interval = interval;
        self
    }

    /// Memory the compactor may use for its key → latest-offset map, per partition being
    /// compacted (one at a time). A dirty part with more distinct keys than fit is compacted in
    /// several passes. Default 16 MiB; 1 KiB to 1 TiB. Each key takes 38 to 75 bytes of it (a
    /// 33-byte hash-table slot, the table at most 7/8 full).
    #[must_use]
    pub fn cleaner_buffer_bytes(mut self, bytes: usize) -> Self {
        self.cleaner_buffer_bytes = bytes;
        self
    }

    /// How many files the log keeps open at once, whatever its number of partitions and
    /// segments. Past it, the least recently used file is closed and opened again on its next
    /// use, so sealed segments and idle partitions cost no file descriptor. A reopen costs an
    /// `open` system call, so a budget smaller than the files in active use (three per
    /// partition being written: its segment and two indexes, plus the segments being read)
    /// trades descriptors for those calls. Default 512 (half the usual soft limit of 1,024, the
    /// rest left to the application); at least 16. The log holds a few descriptors on top: its
    /// directory lock, and briefly a directory's while syncing it.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = annals::Log::builder(dir.path()).max_open_files(64).open()?;
    /// for t in 0..100 {
    ///     log.create_topic(&format!("orders-{t}"), annals::TopicConfig::default())?;
    /// }
    /// assert!(log.metrics().files.open_files <= 64);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn max_open_files(mut self, files: usize) -> Self {
        self.max_open_files = files;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.max_open_files < MIN_MAX_OPEN_FILES {
            return Err(Error::invalid_config(
                "max_open_files",
                format!(
                    "is {}, must be at least {MIN_MAX_OPEN_FILES}",
                    self.max_open_files
                ),
            ));
        }
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

    /// Segment size of the internal `__consumer_offsets` topic, used when this log creates it
    /// (its first [`Log::consumer`]); an existing topic keeps its size. Only sealed segments
    /// are compacted, so a smaller size lets compaction shrink the commit history sooner
    /// (Kafka's `offsets.topic.segment.bytes`). Default 100 MiB; 1 KiB to 2 GiB - 1.
    #[must_use]
    pub fn offsets_topic_segment_bytes(mut self, bytes: u64) -> Self {
        self.offsets_segment_bytes = bytes;
        self
    }
}

impl Log {
    /// Starts configuring a log at `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> LogBuilder {
        LogBuilder {
            dir: dir.as_ref().to_path_buf(),
            storage: FsStorage::new(),
            recovery_mode: RecoveryMode::default(),
            maintenance_interval: Some(maintenance::DEFAULT_INTERVAL),
            cleaner_buffer_bytes: DEFAULT_CLEANER_BUFFER_BYTES,
            offsets_segment_bytes: consumers::DEFAULT_OFFSETS_SEGMENT_BYTES,
            producer_id_expiration: producer_ids::DEFAULT_EXPIRATION,
            transactional_id_expiration: std::time::Duration::from_millis(
                crate::txn::DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS as u64,
            ),
            max_open_files: DEFAULT_MAX_OPEN_FILES,
        }
    }
}

impl LogBuilder {
    /// `transactional_id_expiration` in milliseconds, validated as every stored duration.
    pub(super) fn transactional_id_expiration_ms(&self) -> Result<i64> {
        let d = self.transactional_id_expiration;
        let ms = crate::config::duration_to_millis("transactional_id_expiration", d)?;
        if ms == 0 {
            return Err(crate::error::Error::invalid_config(
                "transactional_id_expiration",
                format!("is {d:?}, must be at least 1 ms"),
            ));
        }
        // duration_to_millis bounds it by i64::MAX, so the conversion is exact.
        Ok(ms as i64)
    }
}
