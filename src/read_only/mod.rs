//! [`ReadOnlyLog`]: a log directory opened without its lock, to look into a log another process
//! owns (or nobody does) while it runs: topics, partitions, committed offsets, open transactions
//! and the records themselves.
//!
//! Nothing here writes, creates, repairs or locks anything, so it works on a directory the
//! process may not write and never disturbs the owner. What it reads is what the owner's files
//! say at the moment of reading: `topics.meta` and the other metadata files are replaced whole
//! by rename, so each read sees one whole version; segments are read as
//! [`PartitionReader`] explains (`segment_set.rs`: a consistent set of files while segments are
//! swapped; `files.rs`: the walk over their batches and what counts as the owner's write in
//! flight; `txn_scan.rs`: open and aborted transactions for read committed; `internal.rs`:
//! committed offsets and transactions from the internal topics; `verify.rs`: the full check of
//! every file).

mod files;
mod internal;
mod reader;
mod segment_set;
mod txn_scan;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

pub use files::TailDamage;
pub use internal::CommittedOffset;
pub use reader::PartitionReader;
pub use verify::{verify_segment, Finding, VerifyReport};

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::meta::{load_topics, TOPICS_FILE};
use crate::partition::{partition_dir_name, IsolationLevel};
use crate::storage::{ContextStorage, Storage};

/// The lock file a log's owner holds (see `log/open.rs`); its presence marks a log directory.
const LOCK_FILE: &str = ".lock";

/// A log directory opened for reading only, from [`Log::open_read_only`](crate::Log::open_read_only).
///
/// It takes no lock, so the process that owns the log (or a second reader) is not disturbed, and
/// it never writes: no recovery, no repair, no clean-up. The topic list is read at open and again
/// at [`refresh`](Self::refresh); each [`PartitionReader`] follows its partition as it grows.
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{Log, Record, TopicConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let owner = Log::open(dir.path())?;
/// owner.create_topic("orders", TopicConfig::default().partitions(2))?;
/// owner.partition("orders", 1)?.append(&[Record::new("a"), Record::new("b")])?;
///
/// let view = Log::open_read_only(dir.path())?;
/// assert_eq!(view.topics(), vec!["orders".to_string()]);
/// let p = view.describe_partition("orders", 1)?;
/// assert_eq!((p.log_start_offset, p.high_watermark), (0, 2));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ReadOnlyLog {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    topics: RwLock<Vec<(String, TopicConfig)>>,
}

/// One partition as [`ReadOnlyLog::describe_partition`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PartitionDescription {
    pub topic: crate::TopicName,
    pub partition: u32,
    pub dir: PathBuf,
    pub log_start_offset: u64,
    /// The offset after the newest whole batch written.
    pub high_watermark: u64,
    /// The first offset of the oldest open transaction, or the high watermark.
    pub last_stable_offset: u64,
    /// The segment files, oldest first.
    pub segments: Vec<SegmentDescription>,
    /// Damage where the newest segment's data ends: the owner's write in progress, or a torn
    /// tail its next open truncates.
    pub tail_damage: Option<TailDamage>,
}

/// One segment file of a [`PartitionDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct SegmentDescription {
    pub base_offset: u64,
    pub path: PathBuf,
    pub size_bytes: u64,
}

impl PartitionDescription {
    /// Bytes of all its segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }
}

impl ReadOnlyLog {
    pub(crate) fn open(storage: Arc<dyn Storage>, dir: PathBuf) -> Result<ReadOnlyLog> {
        let storage = ContextStorage::wrap(storage);
        let is_log = |name: &str| storage.exists(&dir.join(name));
        if !storage.exists(&dir)? {
            return Err(Error::io(
                "open the log directory",
                Some(&dir),
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        if !is_log(TOPICS_FILE)? && !is_log(LOCK_FILE)? {
            return Err(Error::NotALog { dir });
        }
        let log = ReadOnlyLog {
            topics: RwLock::new(Vec::new()),
            dir,
            storage,
        };
        log.refresh()?;
        Ok(log)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the topic list again (topics the owner created or deleted since).
    pub fn refresh(&self) -> Result<()> {
        let mut topics = load_topics(&*self.storage, &self.dir)?;
        topics.sort_by(|a, b| a.0.cmp(&b.0));
        *self.topics.write() = topics;
        Ok(())
    }

    /// Names of all topics, sorted; internal topics (`__consumer_offsets`, …) are not listed.
    pub fn topics(&self) -> Vec<String> {
        self.topics
            .read()
            .iter()
            .map(|(name, _)| name)
            .filter(|name| !crate::catalog::is_internal_topic(name))
            .cloned()
            .collect()
    }

    /// Whether `topic` exists (internal topics included).
    pub fn has_topic(&self, topic: &str) -> bool {
        self.topics.read().iter().any(|(name, _)| name == topic)
    }

    /// The configuration of `topic`. Errors: [`Error::UnknownTopic`].
    pub fn topic_config(&self, topic: &str) -> Result<TopicConfig> {
        self.topics
            .read()
            .iter()
            .find(|(name, _)| name == topic)
            .map(|(_, config)| config.clone())
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_string(),
            })
    }

    /// A reader of one partition from its log start offset (see [`PartitionReader`]).
    ///
    /// Errors: [`Error::UnknownTopic`], [`Error::UnknownPartition`], I/O.
    pub fn reader(
        &self,
        topic: &str,
        partition: u32,
        isolation: IsolationLevel,
    ) -> Result<PartitionReader> {
        let config = self.topic_config(topic)?;
        if partition >= config.partitions {
            return Err(Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: config.partitions,
            });
        }
        PartitionReader::new(
            self.storage.clone(),
            self.dir.join(partition_dir_name(topic, partition)),
            topic,
            partition,
            isolation,
            config.max_uncompressed_bytes(),
        )
    }

    /// Offsets, segments and tail of one partition, as its files show them now.
    pub fn describe_partition(&self, topic: &str, partition: u32) -> Result<PartitionDescription> {
        let reader = self.reader(topic, partition, IsolationLevel::ReadUncommitted)?;
        // The walk to the high watermark also finds the newest segment's tail.
        let (high_watermark, tail_damage) = reader.end()?;
        let log_start_offset = reader.log_start_offset()?;
        let last_stable_offset =
            reader.last_stable_offset_within(log_start_offset, high_watermark)?;
        // One file open at a time, whatever the number of segments.
        let mut segments = Vec::new();
        for entry in segment_set::listing(&*self.storage, reader.dir())? {
            if let Some(s) = segment_set::open_one(&*self.storage, reader.dir(), &entry)? {
                segments.push(SegmentDescription {
                    base_offset: s.base_offset,
                    size_bytes: s.file.len()?,
                    path: s.path,
                });
            }
        }
        Ok(PartitionDescription {
            topic: topic.into(),
            partition,
            dir: reader.dir().to_path_buf(),
            log_start_offset,
            high_watermark,
            last_stable_offset,
            segments,
            tail_damage,
        })
    }
}
