//! A partition: an ordered list of segments with one writer and any number of readers.
//!
//! Concurrency (see `docs/ARCHITECTURE.md`): appends are serialised by the writer mutex; the
//! segment list is a copy-on-write `Arc<Vec<_>>` swapped on roll; readers take a snapshot of it,
//! load the published high watermark and segment ends with Acquire ordering, and do their
//! positioned reads holding no lock at all.

mod append;
mod group_sync;
mod iter;
mod names;
mod producer_state;
mod read;
mod recovery;
pub(crate) mod recovery_report;
mod replay;
mod snapshot;
pub(crate) mod swap;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::format::AbortedTxn;
use crate::meta::{Bounds, Checkpoint, SealedSegment};
use crate::segment::{Segment, SegmentLimits};
use crate::storage::Storage;
use crate::wait::Watchers;

pub(crate) use append::Appended;
pub use iter::Records;
pub(crate) use names::{
    is_partition_file, parse_partition_dir_name, partition_dir_name, DELETE_SUFFIX,
};
pub use names::{validate_topic_name, MAX_TOPIC_NAME_LEN};
pub(crate) use producer_state::{ProducerStates, DEFAULT_EXPIRATION_MS, FIRST_LOCAL_PRODUCER_ID};
pub use read::IsolationLevel;
pub use recovery::RecoveryMode;
pub(crate) use recovery::{open_partition, seal_record, OpenParams};
pub use recovery_report::{RecoveryAction, RecoveryEvent, RecoveryReport};
pub(crate) use snapshot::{snapshot_all, Snapshot};

/// A handle to one partition of a topic. Cheap to clone; all clones share the partition.
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{Log, Record, TopicConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path())?;
/// log.create_topic("orders", TopicConfig::default())?;
/// let p = log.partition("orders", 0)?;
/// let base = p.append(&[Record::new("v1").key("CUST123"), Record::new("v2")])?;
/// assert_eq!(base, 0);
/// let records = p.read(0, 1 << 20)?;
/// assert_eq!(records.len(), 2);
/// assert_eq!(records[1].value.as_deref(), Some(&b"v2"[..]));
/// assert_eq!(p.high_watermark(), 2);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Partition {
    pub(crate) inner: Arc<PartitionInner>,
}

#[derive(Debug)]
pub(crate) struct PartitionInner {
    pub topic: String,
    pub id: u32,
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    /// The topic's configuration; `Log::alter_topic` replaces it while the partition is live.
    /// Writers and readers clone the `Arc` once per operation (a brief read lock).
    pub config: RwLock<Arc<TopicConfig>>,
    pub writer: Mutex<WriterState>,
    /// Copy-on-write list of segments, oldest first; the last one is active.
    pub segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    /// Next offset to be written; stored (Release) after the batch is readable.
    pub high_watermark: AtomicU64,
    pub log_start_offset: AtomicU64,
    /// The durable bounds (log start, compaction progress). Its lock also serialises
    /// maintenance (retention, compaction, `delete_records`) on this partition; close does not
    /// take it (a long compaction must not delay it): maintenance checks `closed` under the
    /// writer lock before it changes the segment list, and gives up.
    pub bounds: Mutex<Bounds>,
    pub closed: AtomicBool,
    /// Why the partition refuses writes, after a failed fsync or an unrepairable write error.
    pub poisoned: Mutex<Option<String>>,
    /// Highest offset (exclusive) known to be on stable storage, and the group commit that
    /// moves it (`group_sync.rs`).
    pub synced: group_sync::GroupSync,
    /// Consumers parked in a long poll on this partition, woken when the high watermark moves.
    pub watchers: Watchers,
    /// What recovery removed when this partition was opened (`Log::recovery_report`).
    pub recovery_events: Vec<RecoveryEvent>,
    /// First offset of the oldest open transaction, `u64::MAX` if none. Stored before the high
    /// watermark when a transaction opens and after it when one ends (`write_batch`), so a
    /// reader that loads the watermark first never sees a stable offset past an open
    /// transaction's first batch.
    pub first_unstable: AtomicU64,
    /// Every aborted transaction still (partly) in the log, in the order of their markers: what
    /// read_committed reads skip. Copy-on-write; trimmed to the log start by maintenance.
    pub aborted: RwLock<Arc<Vec<AbortedTxn>>>,
    /// What was appended to and read from this partition, and what maintenance did to it,
    /// since it was opened (`Log::metrics`). Lives and dies with the partition.
    pub metrics: crate::metrics::PartitionCounters,
}

/// State only the writer touches (under `PartitionInner::writer`).
#[derive(Debug)]
pub(crate) struct WriterState {
    /// Bytes appended to the active segment since its last offset-index entry.
    pub since_index: usize,
    /// Max timestamp of the active segment's first batch, the reference for `segment_ms`.
    pub first_batch_timestamp: Option<i64>,
    /// Reused encode buffer, so appends do not allocate per batch.
    pub scratch: Vec<u8>,
    /// Offsets below this were fsynced when the last checkpoint was written.
    pub recovery_point: u64,
    /// Sealed segments, as recorded in the checkpoint.
    pub sealed: Vec<SealedSegment>,
    /// Idempotent producers' recent batches, for deduplication.
    pub producers: ProducerStates,
    /// What `partition.ckpt` durably holds: the last checkpoint this process wrote, or the one
    /// a clean open found; `None` once a write of it failed (its state on disk is unknown). A
    /// clean close that would write the same again skips it, and the seal before it.
    pub durable_checkpoint: Option<Checkpoint>,
}

impl PartitionInner {
    pub(crate) fn limits(&self) -> SegmentLimits {
        Self::limits_of(&self.config())
    }

    pub(crate) fn limits_of(config: &TopicConfig) -> SegmentLimits {
        SegmentLimits {
            index_max_bytes: config.segment_index_bytes,
            index_interval_bytes: config.index_interval_bytes,
            max_batch_bytes: config.max_message_bytes,
        }
    }

    /// The topic configuration as of now.
    pub(crate) fn config(&self) -> Arc<TopicConfig> {
        self.config.read().clone()
    }

    pub(crate) fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments.read().clone()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if let Some(cause) = self.poisoned.lock().as_ref() {
            return Err(Error::Poisoned {
                topic: self.topic.clone(),
                partition: self.id,
                cause: cause.clone(),
            });
        }
        Ok(())
    }

    /// The aborted transactions whose markers lie at or after `from` and whose first batch lies
    /// below `to`: those a read of `[from, to)` must skip.
    pub(crate) fn aborted_between(&self, from: u64, to: u64) -> Vec<AbortedTxn> {
        let all = self.aborted.read().clone();
        let start = all.partition_point(|a| a.last_offset < from);
        all.get(start..)
            .unwrap_or_default()
            .iter()
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below the log start (retention removed them).
    pub(crate) fn trim_aborted(&self, log_start_offset: u64) {
        let mut aborted = self.aborted.write();
        if aborted
            .first()
            .is_some_and(|a| a.last_offset < log_start_offset)
        {
            Arc::make_mut(&mut aborted).retain(|a| a.last_offset >= log_start_offset);
        }
    }

    /// Refuses all further writes: after a failed fsync the page cache may have dropped dirty
    /// pages, so nothing written since the last good sync can be trusted to reach the disk.
    /// `operation` on `path` is what failed (for the diagnostic; `cause` says it for the error).
    pub(crate) fn poison(&self, operation: &'static str, path: &Path, cause: impl Into<String>) {
        let mut p = self.poisoned.lock();
        if p.is_none() {
            let cause = cause.into();
            error!(
                topic = %self.topic,
                partition = self.id,
                operation,
                path = %path.display(),
                cause = %cause,
                "partition poisoned: it refuses writes until the log is reopened"
            );
            *p = Some(cause);
        }
    }
}

impl Partition {
    /// The topic this partition belongs to.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// This partition's number within its topic.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The directory holding this partition's segments.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The next offset to be written (one past the last readable record).
    pub fn high_watermark(&self) -> u64 {
        self.inner.high_watermark.load(Ordering::Acquire)
    }

    /// The last stable offset (Kafka's LSO): the first offset of the oldest transaction still
    /// open on this partition, or the high watermark when none is. read_committed readers
    /// never read at or past it.
    pub fn last_stable_offset(&self) -> u64 {
        self.last_stable_offset_below(self.high_watermark())
    }

    /// The last stable offset given a high watermark loaded just before.
    pub(crate) fn last_stable_offset_below(&self, high_watermark: u64) -> u64 {
        high_watermark.min(self.inner.first_unstable.load(Ordering::Acquire))
    }

    /// `(producer id, epoch, first offset)` of each transaction open on this partition.
    pub(crate) fn open_transactions(&self) -> Vec<(i64, i16, u64)> {
        self.inner.writer.lock().producers.open_transactions()
    }

    /// The first offset still stored.
    pub fn log_start_offset(&self) -> u64 {
        self.inner.log_start_offset.load(Ordering::Acquire)
    }

    /// Number of segments (including the active one).
    pub fn segment_count(&self) -> usize {
        self.inner.segments().len()
    }

    /// Total bytes of record batches stored in this partition.
    pub fn size_bytes(&self) -> u64 {
        self.inner.segments().iter().map(|s| s.end()).sum()
    }

    /// Returns once everything appended so far can survive a process crash (kill -9).
    ///
    /// `append` writes each batch to the operating system before it returns, so there is no
    /// user-space buffer to drain: this only reports whether the partition is still writable
    /// (closed or poisoned partitions return the error that says why). Use [`sync`](Self::sync)
    /// for power-loss durability.
    pub fn flush(&self) -> Result<()> {
        self.inner.check_writable()
    }

    /// Makes everything appended so far durable against power loss (`fdatasync`).
    ///
    /// Concurrent callers share fsyncs (group commit): a caller that finds its data already
    /// covered by a sync that finished while it waited returns without a syscall. If an fsync
    /// fails, the partition refuses all further writes ([`Error::Poisoned`]).
    pub fn sync(&self) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        let target = self.high_watermark();
        inner.synced.sync_to(target, || {
            // Segments before the active one were fsynced when they were sealed, so syncing
            // the active segment covers everything up to its published next offset.
            let active = inner
                .segments()
                .last()
                .cloned()
                .expect("a partition always has an active segment");
            let covered = active.next_offset();
            inner.check_writable()?;
            if let Err(e) = active.file.sync_data() {
                inner.poison(
                    "fsync",
                    &active.log_path,
                    format!("fsync of {} failed: {e}", active.log_path.display()),
                );
                return Err(Error::from(e));
            }
            Ok(covered)
        })
    }

    /// [`sync`](Self::sync) for async code (feature `tokio`): the fsync runs on tokio's
    /// blocking pool, so the runtime's workers go on meanwhile. Concurrent callers share
    /// fsyncs as they do for `sync`.
    #[cfg(feature = "tokio")]
    pub async fn sync_async(&self) -> Result<()> {
        let partition = self.clone();
        crate::offload::on_blocking_pool("Partition::sync_async", move || partition.sync()).await
    }
}
