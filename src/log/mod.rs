//! [`Log`]: a directory of topics, each a set of partitions. The public entry point.

mod consumers;
mod maintenance;
mod producer_ids;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::catalog::{is_internal_topic, Catalog, Topic};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::meta::{load_topics, store_topics, TOPICS_FILE};
use crate::offsets::OffsetStore;
use crate::partition::{open_partition, OpenParams, Partition, RecoveryMode};
use crate::producer::{Producer, ProducerConfig};
use crate::storage::{FsStorage, LockGuard, OpenMode, Storage};

use crate::partition::{
    is_partition_file, parse_partition_dir_name, partition_dir_name, validate_topic_name,
    DELETE_SUFFIX,
};
use producer_ids::{ProducerIds, PRODUCER_IDS_FILE};

const LOCK_FILE: &str = ".lock";
const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";

/// Options for opening a [`Log`]; start from [`Log::builder`].
#[derive(Debug, Clone)]
pub struct LogBuilder {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    recovery_mode: RecoveryMode,
    /// Background maintenance period (`None`: off); see `maintenance.rs`.
    maintenance_interval: Option<std::time::Duration>,
    cleaner_buffer_bytes: usize,
    /// Segment size of `__consumer_offsets` when this open creates it; see `consumers.rs`.
    offsets_segment_bytes: u64,
    /// How long a partition remembers an idle idempotent producer; see `producer_ids.rs`.
    producer_id_expiration: std::time::Duration,
}

impl LogBuilder {
    /// Use this storage instead of the real file system (for example a
    /// [`SimStorage`](crate::storage::SimStorage) to test crash behaviour).
    pub fn storage(mut self, storage: Arc<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    /// What recovery does on finding damage in the middle of a log. Default
    /// [`RecoveryMode::Strict`].
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
    pub fn producer_id_expiration(mut self, expiration: std::time::Duration) -> Self {
        self.producer_id_expiration = expiration;
        self
    }

    /// Opens (creating if needed) the log directory, takes its lock, and recovers every
    /// partition.
    pub fn open(self) -> Result<Log> {
        self.validate()?;
        producer_ids::expiration_millis(self.producer_id_expiration)?;
        let log = Log::open_with(self.clone())?;
        log.start_maintenance(self.maintenance_interval)?;
        Ok(log)
    }
}

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
    producer_ids: ProducerIds,
    /// Committed offsets, loaded (or the internal topic created) on first use.
    offsets: Mutex<Option<Arc<OffsetStore>>>,
    cleaner_buffer_bytes: usize,
    offsets_segment_bytes: u64,
    producer_id_expiration_ms: i64,
    /// The background maintenance thread, if running (see `maintenance.rs`).
    maintenance: Mutex<Option<maintenance::Worker>>,
    /// What recovery removed at open (see `report.rs`).
    recovery: crate::partition::RecoveryReport,
}

impl Log {
    /// Opens the log at `dir` on the real file system with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Log> {
        Log::builder(dir).open()
    }

    /// Starts configuring a log at `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> LogBuilder {
        LogBuilder {
            dir: dir.as_ref().to_path_buf(),
            storage: FsStorage::new(),
            recovery_mode: RecoveryMode::default(),
            maintenance_interval: Some(maintenance::DEFAULT_INTERVAL),
            cleaner_buffer_bytes: maintenance::DEFAULT_CLEANER_BUFFER_BYTES,
            offsets_segment_bytes: consumers::DEFAULT_OFFSETS_SEGMENT_BYTES,
            producer_id_expiration: producer_ids::DEFAULT_EXPIRATION,
        }
    }

    fn open_with(b: LogBuilder) -> Result<Log> {
        // Every error of the storage names its operation and path from here on.
        let storage = crate::storage::ContextStorage::wrap(b.storage);
        let dir = b.dir;
        let expiration_ms = producer_ids::expiration_millis(b.producer_id_expiration)?;
        create_dir_durably(&*storage, &dir)?;
        let guard = storage
            .try_lock(&dir.join(LOCK_FILE))?
            .ok_or_else(|| Error::Locked { dir: dir.clone() })?;
        // The marker vouches for the files only until the first write after this open: remove it
        // (durably) before anything is written.
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = storage.exists(&marker)?;
        if clean {
            storage.remove_file(&marker)?;
            storage.sync_dir(&dir)?;
        }
        let topic_list = load_topics(&*storage, &dir)?;
        let producer_ids = ProducerIds::load(&*storage, &dir)?;
        remove_leftovers(&*storage, &dir, &topic_list)?;
        let mut topics = BTreeMap::new();
        for (name, config) in topic_list {
            let partitions = (0..config.partitions)
                .map(|id| {
                    let mode = (b.recovery_mode, expiration_ms);
                    open_one(&storage, &dir, &name, id, &config, clean, mode)
                })
                .collect::<Result<Vec<_>>>()?;
            topics.insert(name, Topic { config, partitions });
        }
        let recovery = report::collect(topics.values().flat_map(|t| &t.partitions));
        Ok(Log {
            inner: Arc::new(LogInner {
                dir,
                storage,
                recovery_mode: b.recovery_mode,
                catalog: Catalog::new(topics),
                admin: Mutex::new(()),
                lock: Mutex::new(Some(guard)),
                producer_ids,
                offsets: Mutex::new(None),
                cleaner_buffer_bytes: b.cleaner_buffer_bytes,
                offsets_segment_bytes: b.offsets_segment_bytes,
                producer_id_expiration_ms: expiration_ms,
                maintenance: Mutex::new(None),
                recovery,
            }),
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Creates a topic with `config.partitions` empty partitions.
    ///
    /// Errors: [`Error::InvalidTopicName`], [`Error::InvalidConfig`], [`Error::TopicExists`],
    /// [`Error::Closed`].
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        validate_topic_name(name)?;
        if is_internal_topic(name) {
            return Err(Error::InvalidTopicName {
                name: name.to_string(),
                reason: "names starting with \"__\" are reserved for annals' internal topics",
            });
        }
        self.create_topic_unchecked(name, config)
    }

    /// Creates a topic without the reservation check (for internal topics).
    fn create_topic_unchecked(&self, name: &str, config: TopicConfig) -> Result<()> {
        config.validate()?;
        let inner = &self.inner;
        // Under the admin lock only, the topic list cannot change (nor the log close) until the
        // new topic is published below.
        let _admin = inner.admin.lock();
        {
            let state = inner.catalog.state.read();
            if state.closed {
                return Err(Error::Closed);
            }
            if state.topics.contains_key(name) {
                return Err(Error::TopicExists {
                    topic: name.to_string(),
                });
            }
        }
        // Directories first, metadata last: a crash in between leaves directories no topic
        // names, which the next open removes.
        let partitions = (0..config.partitions)
            .map(|id| {
                open_one(
                    &inner.storage,
                    &inner.dir,
                    name,
                    id,
                    &config,
                    false,
                    (inner.recovery_mode, inner.producer_id_expiration_ms),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        inner.storage.sync_dir(&inner.dir)?;
        let mut list = self.topic_list();
        list.push((name.to_string(), config.clone()));
        store_topics(&*inner.storage, &inner.dir, &list)?;
        inner
            .catalog
            .state
            .write()
            .topics
            .insert(name.to_string(), Topic { config, partitions });
        Ok(())
    }

    /// Deletes a topic and all its data. Handles to its partitions return [`Error::Closed`].
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        if is_internal_topic(name) {
            return Err(Error::UnknownTopic {
                topic: name.to_string(),
            });
        }
        self.delete_topic_files(name)?;
        // Commits for the old topic would mislead a consumer of a new topic of the same name.
        if let Some(offsets) = self.offsets_if_loaded() {
            offsets.forget_topic(name)?;
        }
        Ok(())
    }

    fn delete_topic_files(&self, name: &str) -> Result<()> {
        let inner = &self.inner;
        // The admin lock keeps the topic list as read here until the removal is published, so
        // the metadata I/O runs under it alone and `state` is held only briefly (see
        // "Concurrency" in docs/ARCHITECTURE.md).
        let _admin = inner.admin.lock();
        let list: Vec<_> = {
            let state = inner.catalog.state.read();
            if state.closed {
                return Err(Error::Closed);
            }
            if !state.topics.contains_key(name) {
                return Err(Error::UnknownTopic {
                    topic: name.to_string(),
                });
            }
            state
                .topics
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .map(|(n, t)| (n.clone(), t.config.clone()))
                .collect()
        };
        // Metadata first: once it no longer names the topic, the topic is gone even if we crash
        // before the files are.
        store_topics(&*inner.storage, &inner.dir, &list)?;
        let topic = inner
            .catalog
            .state
            .write()
            .topics
            .remove(name)
            .expect("the admin lock kept it");
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for p in &topic.partitions {
            p.inner.abandon();
            // Rename, then remove: a removal that fails half way leaves a `-delete` directory,
            // which the next open finishes removing, never a half-deleted partition that a new
            // topic of the same name could pick up.
            let doomed = inner.dir.join(format!(
                "{}.{nonce}{DELETE_SUFFIX}",
                partition_dir_name(name, p.id())
            ));
            inner.storage.rename(p.dir(), &doomed)?;
            inner.storage.remove_dir_all(&doomed)?;
        }
        inner.storage.sync_dir(&inner.dir)?;
        Ok(())
    }

    /// Names of all topics, sorted (internal topics such as `__consumer_offsets` are not
    /// listed). Empty after [`close`](Self::close): this is the one call that cannot return
    /// [`Error::Closed`], and a closed log has no topics to offer.
    pub fn topics(&self) -> Vec<String> {
        let state = self.inner.catalog.state.read();
        state
            .topics
            .keys()
            .filter(|t| !is_internal_topic(t))
            .cloned()
            .collect()
    }

    /// The configuration of `topic`.
    pub fn topic_config(&self, topic: &str) -> Result<TopicConfig> {
        self.inner.catalog.topic_config(topic)
    }

    /// A handle to one partition of a topic.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<Partition> {
        self.inner.catalog.partition(topic, partition)
    }

    /// [`partition`](Self::partition) including internal topics.
    fn any_partition(&self, topic: &str, partition: u32) -> Result<Partition> {
        self.inner.catalog.any_partition(topic, partition)
    }

    /// Starts a [`Producer`] writing to this log. With `idempotence` (the default) it is given a
    /// producer id that no other producer of this log had; with a `stable_id` it keeps that
    /// stable id's producer id with the next epoch, fencing any older instance.
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        if self.inner.catalog.state.read().closed {
            return Err(Error::Closed);
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
        Producer::start(self.inner.catalog.clone(), config, identity)
    }

    /// `fsync`s every partition (see [`Partition::sync`]).
    pub fn sync(&self) -> Result<()> {
        for p in self.all_partitions()? {
            p.sync()?;
        }
        Ok(())
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

    fn topic_list(&self) -> Vec<(String, TopicConfig)> {
        self.inner.catalog.topic_list()
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
        let mut first_error = None;
        for p in &partitions {
            if let Err(e) = p.inner.close() {
                first_error.get_or_insert(e);
            }
        }
        let result = match first_error {
            Some(e) => Err(e),
            None => self.write_clean_marker(),
        };
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

/// `mkdir -p` that also makes every directory it created durable (fsync of each new
/// directory's parent), so a power loss right after `Log::open` cannot lose the log directory.
fn create_dir_durably(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty()) {
        if storage.exists(d)? {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    storage.create_dir_all(dir)?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            storage.sync_dir(parent)?;
        }
    }
    Ok(())
}

fn open_one(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    topic: &str,
    id: u32,
    config: &TopicConfig,
    clean: bool,
    (mode, producer_id_expiration_ms): (RecoveryMode, i64),
) -> Result<Partition> {
    let inner = open_partition(OpenParams {
        storage,
        dir: dir.join(partition_dir_name(topic, id)),
        topic,
        id,
        config,
        clean,
        mode,
        producer_id_expiration_ms,
    })?;
    Ok(Partition {
        inner: Arc::new(inner),
    })
}

/// Removes what interrupted operations left behind: partition directories of deleted topics,
/// directories of a topic whose creation did not reach the metadata file, and temp files.
fn remove_leftovers(
    storage: &dyn Storage,
    dir: &Path,
    topics: &[(String, TopicConfig)],
) -> Result<()> {
    let mut removed = false;
    for name in storage.list_dir(dir)? {
        let path = dir.join(&name);
        let shaped_like_ours = match parse_partition_dir_name(&name) {
            Some((topic, id)) => !topics.iter().any(|(t, c)| t == topic && id < c.partitions),
            None => name.ends_with(DELETE_SUFFIX),
        };
        // Only a directory holding nothing but annals' own files is ours to remove: a stray
        // file, or someone's directory that happens to be named like a partition, stays.
        let orphan = shaped_like_ours
            && storage
                .list_dir(&path)
                .is_ok_and(|entries| entries.iter().all(|e| is_partition_file(e)));
        if orphan {
            storage.remove_dir_all(&path)?;
            removed = true;
        } else if name == format!("{TOPICS_FILE}.tmp") || name == format!("{PRODUCER_IDS_FILE}.tmp")
        {
            storage.remove_file(&path)?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir(dir)?;
    }
    Ok(())
}
