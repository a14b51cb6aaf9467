//! Opening a log: take the directory's lock, read the metadata, clean up what interrupted
//! operations left behind, and recover every partition.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use super::producer_ids::{self, ProducerIds, PRODUCER_IDS_FILE};
use super::{report, Log, LogBuilder, LogInner};
use crate::catalog::{Catalog, Topic};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::meta::{load_topics, TOPICS_FILE};
use crate::partition::{
    is_partition_file, open_partition, parse_partition_dir_name, partition_dir_name, OpenParams,
    Partition, RecoveryMode, DELETE_SUFFIX,
};
use crate::storage::Storage;

const LOCK_FILE: &str = ".lock";
pub(super) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";

impl Log {
    /// Opens the log at `dir` on the real file system with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Log> {
        Log::builder(dir).open()
    }

    /// Opens the log at `dir` for reading only ([`ReadOnlyLog`](crate::ReadOnlyLog)): without
    /// its lock, so while another process (or this one) owns and writes it, and without ever
    /// writing, recovering or repairing anything. Readers follow the owner's appends and
    /// tolerate its rolls, compactions and deletions; see
    /// [`PartitionReader`](crate::PartitionReader) for what they see of a write in progress.
    ///
    /// Errors: the directory does not exist (I/O `NotFound`), [`Error::NotALog`], a damaged
    /// `topics.meta` ([`Error::CorruptMetadata`]).
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<crate::ReadOnlyLog> {
        Log::builder(dir).open_read_only()
    }

    pub(super) fn open_with(b: LogBuilder) -> Result<Log> {
        let transactional_id_expiration_ms = b.transactional_id_expiration_ms()?;
        let opened = std::time::Instant::now();
        // Every error of the storage names its operation and path from here on, and every
        // fsync and open file is counted (`Log::metrics`), recovery's included.
        let io = Arc::new(crate::metrics::IoCounters::default());
        // The budget sits outside the counting, so `files.open_files` counts descriptors.
        let storage = crate::storage::OpenFileBudget::wrap(
            crate::storage::MeteredStorage::wrap(
                crate::storage::ContextStorage::wrap(b.storage),
                io.clone(),
            ),
            b.max_open_files,
        );
        let dir = b.dir;
        enter_span!(INFO, "open_log", dir = %dir.display());
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
        let producer_ids = Arc::new(ProducerIds::load(&*storage, &dir)?);
        remove_leftovers(&*storage, &dir, &topic_list)?;
        let mut topics = BTreeMap::new();
        for (name, config) in topic_list {
            let partitions = (0..config.partitions)
                .map(|id| {
                    let mode = (b.recovery_mode, expiration_ms);
                    open_one(
                        &storage,
                        &dir,
                        &name,
                        id,
                        &config,
                        How::Load { clean },
                        mode,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            topics.insert(name, Topic { config, partitions });
        }
        let recovery = report::collect(topics.values().flat_map(|t| &t.partitions));
        trace_opened(&topics, &recovery, clean);
        let log = Log {
            inner: Arc::new(LogInner {
                dir,
                storage,
                recovery_mode: b.recovery_mode,
                catalog: Catalog::new(topics),
                admin: Mutex::new(()),
                lock: Mutex::new(Some(guard)),
                producer_ids,
                offsets: Mutex::new(None),
                txn: Mutex::new(None),
                cleaner_buffer_bytes: b.cleaner_buffer_bytes,
                offsets_segment_bytes: b.offsets_segment_bytes,
                producer_id_expiration_ms: expiration_ms,
                transactional_id_expiration_ms,
                maintenance: Mutex::new(None),
                recovery,
                event_stores: Mutex::new(Default::default()),
                opened,
                io,
                maintenance_runs: Default::default(),
            }),
        };
        log.recover_transactions()?;
        Ok(log)
    }
}

/// The totals of an open: what the log holds and what recovery had to remove.
fn trace_opened(
    topics: &BTreeMap<String, Topic>,
    recovery: &crate::partition::RecoveryReport,
    clean: bool,
) {
    let partitions = || topics.values().flat_map(|t| &t.partitions);
    let removed_bytes = || {
        recovery
            .events()
            .iter()
            .map(|e| e.bytes.end - e.bytes.start)
            .sum::<u64>()
    };
    if recovery.is_empty() {
        info!(
            topics = topics.len(),
            partitions = partitions().count(),
            segments = partitions().map(Partition::segment_count).sum::<usize>(),
            bytes = partitions().map(Partition::size_bytes).sum::<u64>(),
            clean_shutdown = clean,
            "log opened"
        );
    } else {
        warn!(
            topics = topics.len(),
            partitions = partitions().count(),
            segments = partitions().map(Partition::segment_count).sum::<usize>(),
            bytes = partitions().map(Partition::size_bytes).sum::<u64>(),
            clean_shutdown = clean,
            recovery_events = recovery.events().len(),
            removed_bytes = removed_bytes(),
            "log opened after recovery removed data (see Log::recovery_report)"
        );
    }
}

/// `mkdir -p` that also makes every directory it created durable (fsync of each new
/// directory's parent), so a power loss right after `Log::open` cannot lose the log directory.
pub(super) fn create_dir_durably(storage: &dyn Storage, dir: &Path) -> Result<()> {
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

/// Why [`open_one`] opens a partition.
#[derive(Debug, Clone, Copy)]
pub(super) enum How {
    /// The log's open: `clean` after a clean close (its checkpoints vouch for every segment).
    Load { clean: bool },
    /// A topic creation; `fresh` when the partition's directory did not exist, so the creation
    /// syncs it (see `OpenParams::fresh`).
    Create { fresh: bool },
}

pub(super) fn open_one(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    topic: &str,
    id: u32,
    config: &TopicConfig,
    how: How,
    (mode, producer_id_expiration_ms): (RecoveryMode, i64),
) -> Result<Partition> {
    let (clean, fresh) = match how {
        How::Load { clean } => (clean, false),
        How::Create { fresh } => (false, fresh),
    };
    let inner = open_partition(OpenParams {
        storage,
        dir: dir.join(partition_dir_name(topic, id)),
        topic,
        id,
        config,
        clean,
        mode,
        producer_id_expiration_ms,
        fresh,
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
            info!(
                path = %path.display(),
                "removed a partition directory that no topic names (an interrupted topic \
                 creation or deletion left it)"
            );
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
