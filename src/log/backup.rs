//! `Log::checkpoint`: an online backup, a consistent copy of the whole log that opens without
//! recovery, made while the log keeps taking writes.
//!
//! 1. Everything is built under `<dest>.partial`, beside `dest`, and renamed to `dest` only
//!    once every file and directory in it is fsynced, so a kill -9 or a power loss at any
//!    moment leaves at `dest` either nothing or a complete backup. A leftover `<dest>.partial`
//!    is a crashed checkpoint's and is removed first.
//! 2. One cut (`partition::snapshot_all`): every partition's high watermark, segment list,
//!    producer state and aborted transactions as of one instant. Nothing above a high
//!    watermark is copied.
//! 3. Sealed segments are immutable: hard-linked by name, or copied through their open handle
//!    when the link fails. The active segment is copied through its handle up to the cut, and
//!    its indexes are rebuilt in the copy (the source's are still being written).
//! 4. Metadata last, written from the snapshot rather than copied from files that may already
//!    describe later segments: each partition's `partition.ckpt` (every copied segment, with
//!    the checksums of the copy's index files) and `partition.bounds`, then
//!    `producer-ids.meta`, `topics.meta` and the clean-shutdown marker.
//!
//! The event stores' index tables (`__event_store/`) are not copied: they are caches of the
//! log, merged and replaced while the copy runs, and a store opened on the copy catches its
//! index up from the log (invariant 18 holds for an empty chain as for any other).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::open::{create_dir_durably, CLEAN_SHUTDOWN_FILE};
use super::{Log, LogInner};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::meta::{
    decode_producer_ids, store_bounds, store_checkpoint, store_topics, Checkpoint, SealedSegment,
    TxnIndexCrc, PRODUCER_IDS_FILE,
};
use crate::partition::{partition_dir_name, snapshot_all, Partition, Snapshot};
use crate::segment::{file_name, Segment, SegmentLimits, SegmentStats, TXN_INDEX_EXT};
use crate::storage::{read_exact_at, read_whole, IoContext, OpenMode, Storage, StorageFile};
use crate::topic_partition::TopicPartition;

/// What [`Log::checkpoint`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct CheckpointReport {
    /// Partitions in the copy (those of internal topics included).
    pub partitions: usize,
    /// Sealed segments hard-linked into the copy: no bytes copied.
    pub segments_linked: usize,
    /// Segments copied: every partition's active segment (up to its high watermark), and each
    /// sealed segment that could not be linked (`dest` on another file system, say).
    pub segments_copied: usize,
    /// Bytes of segment data copied; linked segments count nothing.
    pub bytes_copied: u64,
    /// Each partition's high watermark as the checkpoint captured it at its start: the copy
    /// holds exactly the records below it, and reopens with this high watermark.
    ///
    /// With feature `serde`, a list of `{"topic", "partition", "high_watermark"}` (JSON's keys
    /// are strings only).
    #[cfg_attr(feature = "serde", serde(with = "super::serde_high_watermarks"))]
    pub high_watermarks: BTreeMap<TopicPartition, u64>,
}

/// How much of a segment one read copies.
const COPY_CHUNK: usize = 1 << 20;

impl Log {
    /// Writes a consistent copy of the whole log to the directory `dest` while the log keeps
    /// working, and reports what it copied. [`Log::open`] on `dest` then finds the records that
    /// lay below each partition's high watermark at the instant the checkpoint captured them,
    /// as it started ([`CheckpointReport::high_watermarks`]) — every record acknowledged before
    /// the call, none written after that instant — with their offsets, the committed consumer
    /// offsets and the transactions, and it opens without recovery (nothing to scan or repair).
    /// The copy holds the topics that existed when the call began.
    ///
    /// Appends go on meanwhile: the partitions' writers pause only while every partition's state
    /// is read at one instant, so the copy is what a kill -9 at that instant would have left (a
    /// transaction or a commit is in it with everything it depends on; a transaction still open
    /// then is aborted when the copy opens, as after a crash). Retention and compaction passes
    /// already running are waited for, and new ones wait until a partition's sealed segments
    /// are in the copy; a segment they retire after that keeps its disk space until its
    /// partition is copied. Sealed segments are hard-linked when `dest` is on the log's file
    /// system, so the copy costs the active segments only, and copied otherwise. A linked
    /// segment shares its disk blocks with the log: such a backup outlives the log's retention,
    /// compaction and deletion, but not the loss of the disk.
    ///
    /// Crash safety: the copy is built in `<dest>.partial` (beside `dest`), every file and
    /// directory fsynced, then renamed to `dest`; after a kill -9 or power loss `dest` is either
    /// absent or complete. A checkpoint holds `<dest>.partial.lock` (a lock file beside it,
    /// which stays) while it runs, so whatever is at `<dest>.partial` when the lock is free is
    /// what such a crash left, and the next checkpoint to `dest` removes it. The log's own files
    /// are only read.
    ///
    /// Not copied: event store indexes, which a store opened on the copy rebuilds from the log;
    /// files in the log directory that are not annals'.
    ///
    /// Errors: [`Error::Closed`] (also when the log closes while the copy is made); `dest`
    /// existing and not an empty directory (an [`Error::Io`] of kind `AlreadyExists` naming it);
    /// `dest` or `<dest>.partial` inside the log directory or containing it, or another
    /// checkpoint to `dest` running, in this process or another ([`Error::InvalidArgument`]); an I/O error,
    /// naming its path. An error leaves the log as it was and nothing at `dest` — unless only
    /// the final fsync of `dest`'s parent failed, when the backup is there but may not survive a
    /// power loss.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{Log, Record, TopicConfig, TopicPartition};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path().join("log"))?;
    /// log.create_topic("orders", TopicConfig::default())?;
    /// log.partition("orders", 0)?.append(&[Record::new("created"), Record::new("paid")])?;
    ///
    /// let report = log.checkpoint(dir.path().join("backup"))?;
    /// assert_eq!(report.high_watermarks[&TopicPartition::new("orders", 0)], 2);
    /// // The log goes on; the backup is a log of its own.
    /// log.partition("orders", 0)?.append(&[Record::new("shipped")])?;
    ///
    /// let backup = Log::open(dir.path().join("backup"))?;
    /// assert!(backup.recovery_report().is_empty());
    /// let records = backup.partition("orders", 0)?.read(0, 1 << 20)?;
    /// assert_eq!(records.len(), 2);
    /// assert_eq!(records[1].value.as_deref(), Some(&b"paid"[..]));
    /// # Ok(()) }
    /// ```
    pub fn checkpoint(&self, dest: impl AsRef<Path>) -> Result<CheckpointReport> {
        let dest = dest.as_ref();
        enter_span!(INFO, "checkpoint", dest = %dest.display());
        let inner = &*self.inner;
        inner.catalog.check_open()?;
        let storage = &*inner.storage;
        let staging = staging_path(dest)?;
        refuse_overlap(&inner.dir, dest, &staging)?;
        // Refused before anything is written; checked again once no other checkpoint into
        // `dest` can be running (one may have finished meanwhile).
        check_dest(storage, dest)?;
        let _running = Running::claim(storage, &staging, dest)?;
        check_dest(storage, dest)?;
        remove_leftover(storage, &staging)?;
        create_dir_durably(storage, &staging)?;
        let built = build(inner, &staging).and_then(|report| {
            // The commit point: until this rename `dest` holds nothing of the copy.
            storage.rename(&staging, dest)?;
            Ok(report)
        });
        match built {
            Ok(report) => {
                storage.sync_dir(parent_of(dest))?;
                info!(
                    dest = %dest.display(),
                    partitions = report.partitions,
                    segments_linked = report.segments_linked,
                    segments_copied = report.segments_copied,
                    bytes_copied = report.bytes_copied,
                    "checkpoint written"
                );
                Ok(report)
            }
            Err(e) => {
                // Best effort: whatever stays behind, the next checkpoint to `dest` removes.
                let _ = storage.remove_dir_all(&staging);
                Err(e)
            }
        }
    }
}

/// Copies the log into `staging` (see the module docs), everything fsynced.
fn build(inner: &LogInner, staging: &Path) -> Result<CheckpointReport> {
    let storage = &*inner.storage;
    // Taken once: a topic created after this is not in the copy; one deleted after it is, read
    // through the handles of its files.
    let topics: Vec<(String, TopicConfig, Vec<Partition>)> = {
        let state = inner.catalog.state.read();
        if state.closed {
            return Err(Error::Closed);
        }
        state
            .topics
            .iter()
            .map(|(name, t)| (name.clone(), t.config.clone(), t.partitions.clone()))
            .collect()
    };
    let partitions: Vec<Partition> = topics
        .iter()
        .flat_map(|(_, _, ps)| ps.iter().cloned())
        .collect();
    // Why hold maintenance off rather than only the segments' handles: a hard link is made by
    // name, and while a held `Arc<Segment>` keeps its file readable it does not keep its name —
    // a compaction swap puts a different file under `<base>.log`, which a link would then take
    // into the copy. So each partition's maintenance lock (the `bounds` mutex that retention,
    // compaction and `delete_records` take) is held from the cut until its sealed segments are
    // linked, which keeps the names theirs; the handles, held as well, make every read immune
    // to the rest (renames, a deleted topic). The hold is short: the first phase below only
    // links and copies the small index files, releasing each partition's lock as soon as it is
    // done with it, and everything that reads a segment's data runs after the locks are gone.
    let (snapshots, holds) = snapshot_all(&partitions);
    let mut copier = Copier {
        storage,
        report: CheckpointReport::default(),
        buf: Vec::new(),
    };
    let mut named = Vec::with_capacity(partitions.len());
    for ((p, snap), hold) in partitions.iter().zip(&snapshots).zip(holds) {
        named.push(copier.by_name(p, snap, &partition_dir(staging, p))?);
        drop(hold);
    }
    // The log's lock order puts the catalog before the partitions' locks, so whether the log
    // closed is asked only from here on: while the holds lasted, a closed partition only meant
    // "do not trust its names".
    // Each snapshot goes once its partition is copied: the segments it holds keep their files
    // (and disk space) even when maintenance retires them meanwhile.
    for ((p, snap), named) in partitions.iter().zip(snapshots).zip(named) {
        copier.partition(inner, p, &snap, &named, &partition_dir(staging, p))?;
    }
    copier.producer_ids(&inner.dir, staging)?;
    let list: Vec<(String, TopicConfig)> = topics
        .into_iter()
        .map(|(name, config, _)| (name, config))
        .collect();
    store_topics(storage, staging, &list)?;
    // True of the copy by construction: every partition's checkpoint lists each of its segments
    // at its exact size, with the checksums of its index files and the producer state as of its
    // end, which is what a clean close leaves. So the copy's open trusts all and scans nothing.
    let marker = staging.join(CLEAN_SHUTDOWN_FILE);
    storage.open(&marker, OpenMode::CreateNew)?.sync_all()?;
    storage.sync_dir(staging)?;
    Ok(copier.report)
}

fn partition_dir(staging: &Path, p: &Partition) -> PathBuf {
    staging.join(partition_dir_name(p.topic(), p.id()))
}

struct Copier<'a> {
    storage: &'a dyn Storage,
    report: CheckpointReport,
    buf: Vec<u8>,
}

/// What the first phase took of a sealed segment by name.
struct Named {
    /// Its `.log` is a hard link in the copy.
    linked: bool,
    /// The checksums of its index files, if they are copied already.
    indexes: Option<(u32, u32)>,
}

impl Copier<'_> {
    /// Phase one, under the partition's maintenance lock: what of its sealed segments can be
    /// taken by name — each `.log` hard-linked, the index files the checkpoint vouches for
    /// copied. Reads no segment data.
    fn by_name(&mut self, p: &Partition, snap: &Snapshot, dir: &Path) -> Result<Vec<Named>> {
        self.storage.create_dir_all(dir)?;
        let sealed = snap.segments.split_last().map_or(&[][..], |(_, s)| s);
        let mut named = Vec::with_capacity(sealed.len());
        for seg in sealed {
            named.push(Named {
                linked: self.link(p, seg, dir)?,
                indexes: self.copy_vouched_indexes(p, snap, seg, dir)?,
            });
        }
        Ok(named)
    }

    /// Phase two: the rest of the partition — sealed segments that were not linked copied
    /// through their handles, indexes rebuilt where none were copied, the active segment, the
    /// `.txnindex` files and the partition's metadata.
    fn partition(
        &mut self,
        inner: &LogInner,
        p: &Partition,
        snap: &Snapshot,
        named: &[Named],
        dir: &Path,
    ) -> Result<()> {
        let segments = &snap.segments[..];
        let Some((active, sealed)) = segments.split_last() else {
            unreachable!("a partition always has an active segment");
        };
        inner.catalog.check_open()?;
        let mut records = Vec::with_capacity(segments.len());
        for ((seg, next), named) in sealed.iter().zip(&segments[1..]).zip(named) {
            inner.catalog.check_open()?;
            let base = seg.base_offset;
            if !named.linked {
                let to = dir.join(file_name(base, "log"));
                self.copy_file(&*seg.file, &seg.log_path, &to, seg.end())?;
                self.report.segments_copied += 1;
            }
            let (index_crc, time_index_crc) = match named.indexes {
                Some(checksums) => checksums,
                None => {
                    self.rebuild_indexes(dir, base, seg.stats(), seg.allow_gaps, &snap.limits)?
                }
            };
            records.push(SealedSegment {
                base_offset: base,
                stats: seg.stats(),
                index_crc,
                time_index_crc,
                txn_index_crc: self.txn_index(snap, base, next.base_offset, dir)?,
            });
        }
        let base = active.base_offset;
        let log_path = dir.join(file_name(base, "log"));
        self.copy_file(&*active.file, &active.log_path, &log_path, snap.active.size)?;
        self.report.segments_copied += 1;
        let (index_crc, time_index_crc) =
            self.rebuild_indexes(dir, base, snap.active, active.allow_gaps, &snap.limits)?;
        records.push(SealedSegment {
            base_offset: base,
            stats: snap.active,
            index_crc,
            time_index_crc,
            txn_index_crc: self.txn_index(snap, base, snap.high_watermark, dir)?,
        });
        // As a clean close writes it: recovery point at the end, every segment listed.
        let checkpoint = Checkpoint {
            recovery_point: snap.high_watermark,
            log_start_offset: snap.log_start_offset,
            sealed: records,
            producers: snap.producers.clone(),
        };
        store_checkpoint(self.storage, dir, &checkpoint)?;
        store_bounds(self.storage, dir, &snap.bounds)?;
        self.storage.sync_dir(dir)?;
        self.report.partitions += 1;
        self.report
            .high_watermarks
            .insert(TopicPartition::new(p.topic(), p.id()), snap.high_watermark);
        Ok(())
    }

    /// Whether the segment's `.log` is now hard-linked into `dir`, durably. Any failure to link
    /// (another file system, a storage that cannot, the name gone with a deleted topic) answers
    /// `false`: the segment is copied instead.
    fn link(&mut self, p: &Partition, seg: &Segment, dir: &Path) -> Result<bool> {
        let name = file_name(seg.base_offset, "log");
        let to = dir.join(&name);
        if self.storage.hard_link(&p.dir().join(&name), &to).is_err() {
            return Ok(false);
        }
        let linked = self.storage.open(&to, OpenMode::Read)?;
        // Checked once the link exists, so the name was the segment's when it was linked.
        if linked.len()? != seg.end() || !names_still_ours(p) {
            drop(linked);
            self.storage.remove_file(&to)?;
            return Ok(false);
        }
        // The data was fsynced when the segment was sealed; this makes the link count durable
        // too, on file systems that keep it apart from the directory entry.
        linked.sync_all()?;
        self.report.segments_linked += 1;
        Ok(true)
    }

    /// Copies a sealed segment's index files into `dir` if the checkpoint vouches for them: read
    /// by name, their checksums must be those recorded when the segment was sealed (so they are
    /// this very segment's files, whole). Returns the checksums, or `None` to rebuild them.
    fn copy_vouched_indexes(
        &self,
        p: &Partition,
        snap: &Snapshot,
        seg: &Segment,
        dir: &Path,
    ) -> Result<Option<(u32, u32)>> {
        let base = seg.base_offset;
        let Some(vouched) = snap
            .sealed
            .iter()
            .find(|s| s.base_offset == base && s.stats.size == seg.end())
        else {
            return Ok(None);
        };
        let want = [
            ("index", vouched.index_crc),
            ("timeindex", vouched.time_index_crc),
        ];
        let mut files = Vec::with_capacity(want.len());
        for (ext, crc) in want {
            let from = p.dir().join(file_name(base, ext));
            let bytes = match read_whole(self.storage, &from) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if crc32c::crc32c(&bytes) != crc {
                return Ok(None);
            }
            files.push((dir.join(file_name(base, ext)), bytes));
        }
        if !names_still_ours(p) {
            return Ok(None);
        }
        for (to, bytes) in &files {
            self.write_new(to, bytes)?;
        }
        Ok(Some((vouched.index_crc, vouched.time_index_crc)))
    }

    /// Writes the index files of the segment at `base` in `dir` from the copy's `.log` (holding
    /// `stats`), sealed as a roll seals them (last time-index entry, trimmed, fsynced), and
    /// returns their checksums.
    fn rebuild_indexes(
        &self,
        dir: &Path,
        base: u64,
        stats: SegmentStats,
        allow_gaps: bool,
        limits: &SegmentLimits,
    ) -> Result<(u32, u32)> {
        // Opened as the active segment: the rebuild writes into preallocated index files, which
        // `seal` then trims. It never writes the `.log`, which may be a link to the log's.
        let segment = Segment::open(
            self.storage,
            dir,
            base,
            limits,
            stats,
            true,
            None,
            allow_gaps,
        )?;
        segment.seal()?;
        let checksums = segment.index_checksums()?;
        segment.unmap();
        Ok(checksums)
    }

    /// Writes the `.txnindex` of the copy's segment `[base, end)`, if it has any aborted
    /// transaction, and returns what the checkpoint records of it. Written from the cut's list
    /// (every transaction aborted by a marker below the high watermark) rather than copied: the
    /// active segment's file may already hold entries of later markers.
    fn txn_index(&self, snap: &Snapshot, base: u64, end: u64, dir: &Path) -> Result<TxnIndexCrc> {
        let bytes: Vec<u8> = snap
            .aborted
            .iter()
            .filter(|a| (base..end).contains(&a.last_offset))
            .flat_map(|a| a.encode())
            .collect();
        if bytes.is_empty() {
            return Ok(TxnIndexCrc::Absent);
        }
        self.write_new(&dir.join(file_name(base, TXN_INDEX_EXT)), &bytes)?;
        Ok(TxnIndexCrc::of(Some(&bytes)))
    }

    /// `producer-ids.meta`, read after the cut: every producer id in the copied batches was
    /// persisted before its first batch was written, so this version covers them all (the file
    /// is replaced atomically, so it reads as one version).
    fn producer_ids(&self, log_dir: &Path, staging: &Path) -> Result<()> {
        let from = log_dir.join(PRODUCER_IDS_FILE);
        if !self.storage.exists(&from)? {
            return Ok(());
        }
        let bytes = read_whole(self.storage, &from)?;
        // A damaged file fails the checkpoint here rather than the copy's open.
        decode_producer_ids(&from, &bytes)?;
        self.write_new(&staging.join(PRODUCER_IDS_FILE), &bytes)
    }

    /// Copies the first `len` bytes of `from` (an open handle of the file at `from_path`: no
    /// rename or unlink of that name disturbs it) into the new file `to`, fsynced.
    fn copy_file(
        &mut self,
        from: &dyn StorageFile,
        from_path: &Path,
        to: &Path,
        len: u64,
    ) -> Result<()> {
        let out = self.storage.open(to, OpenMode::CreateNew)?;
        self.buf.resize(COPY_CHUNK, 0);
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(COPY_CHUNK as u64) as usize;
            let chunk = &mut self.buf[..n];
            read_exact_at(from, chunk, pos).at("read", from_path)?;
            out.write_all_at(chunk, pos)?;
            pos += n as u64;
        }
        out.sync_all()?;
        self.report.bytes_copied += len;
        Ok(())
    }

    /// Creates `to` holding `bytes`, fsynced.
    fn write_new(&self, to: &Path, bytes: &[u8]) -> Result<()> {
        let file = self.storage.open(to, OpenMode::CreateNew)?;
        file.write_all_at(bytes, 0)?;
        file.sync_all()?;
        Ok(())
    }
}

/// Whether the names in `p`'s directory are still the snapshot's files: not once its topic was
/// deleted (a topic created again under the name may own them now) or the log closed (another
/// `Log` may own the directory), either of which closes the partition.
fn names_still_ours(p: &Partition) -> bool {
    !p.inner.is_closed()
}

/// The lock of a checkpoint into one staging directory: `<dest>.partial.lock`, beside it,
/// taken through the storage (`flock` on real files), so a second checkpoint into `dest` — in
/// this process or another — is refused instead of taking the first one's staging directory for
/// a crashed one's leftover. The file stays (removing a lock file races with its next taker); a
/// crash releases the lock with the process.
struct Running {
    _guard: Box<dyn crate::storage::LockGuard>,
}

impl Running {
    fn claim(storage: &dyn Storage, staging: &Path, dest: &Path) -> Result<Running> {
        let mut name = staging.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        storage.create_dir_all(parent_of(dest))?;
        match storage.try_lock(&path)? {
            Some(guard) => Ok(Running { _guard: guard }),
            None => Err(Error::InvalidArgument(format!(
                "a checkpoint into {} is already running (it holds {})",
                dest.display(),
                path.display()
            ))),
        }
    }
}

/// `<dest>.partial`, beside `dest`.
fn staging_path(dest: &Path) -> Result<PathBuf> {
    let Some(name) = dest.file_name() else {
        return Err(Error::InvalidArgument(format!(
            "checkpoint destination {} does not name a directory to create",
            dest.display()
        )));
    };
    let mut staging: OsString = name.to_owned();
    staging.push(".partial");
    Ok(dest.with_file_name(staging))
}

/// Refuses a destination (or its staging directory) inside the log directory or containing
/// it: the copy would land among the files it copies, and a leftover staging directory that
/// contained the log would be removed with it. The paths are compared as written, after
/// resolving `.` and `..`; a symbolic link is not followed.
fn refuse_overlap(log_dir: &Path, dest: &Path, staging: &Path) -> Result<()> {
    let log = lexical(log_dir);
    for path in [dest, staging] {
        let other = lexical(path);
        if other.starts_with(&log) || log.starts_with(&other) {
            return Err(Error::InvalidArgument(format!(
                "cannot checkpoint the log at {} into {}: {} {} the log directory",
                log_dir.display(),
                dest.display(),
                path.display(),
                if other.starts_with(&log) {
                    "lies inside"
                } else {
                    "contains"
                },
            )));
        }
    }
    Ok(())
}

/// `path` made absolute (relative to the working directory, as the real file system takes it)
/// with `.` and `..` resolved by name.
fn lexical(path: &Path) -> PathBuf {
    let absolute = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `dest` must not exist, or be an empty directory (which the final rename replaces).
fn check_dest(storage: &dyn Storage, dest: &Path) -> Result<()> {
    if !storage.exists(dest)? {
        return Ok(());
    }
    let problem = match storage.list_dir(dest) {
        Ok(entries) if entries.is_empty() => return Ok(()),
        Ok(_) => "it exists and is not empty",
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => "it exists and is not a directory",
        Err(e) => return Err(e.into()),
    };
    Err(Error::io(
        "checkpoint into",
        Some(dest),
        io::Error::new(io::ErrorKind::AlreadyExists, problem),
    ))
}

/// Removes what a crashed checkpoint left at `staging`.
fn remove_leftover(storage: &dyn Storage, staging: &Path) -> Result<()> {
    if !storage.exists(staging)? {
        return Ok(());
    }
    match storage.list_dir(staging) {
        Ok(_) => storage.remove_dir_all(staging)?,
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => storage.remove_file(staging)?,
        Err(e) => return Err(e.into()),
    }
    storage.sync_dir(parent_of(staging))?;
    Ok(())
}

/// The directory holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
