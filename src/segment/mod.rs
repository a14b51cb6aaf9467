//! One segment: a `.log` file of RecordBatch v2 batches plus its `.index` and `.timeindex`.
//!
//! A segment is named by its base offset (20 zero-padded digits). Only the partition's writer
//! appends to it (under the partition's writer lock); readers use the published `end` position
//! and never read past it, so they never see a partly written batch and never wait for the
//! writer.

mod cursor;
pub(crate) mod index;
mod scan;
mod txn_index;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::format::BatchHeader;
use crate::storage::{with_path, IoContext, OpenMode, Storage, StorageFile};

pub(crate) use cursor::{BatchAt, BatchCursor, Next};
pub(crate) use index::{OffsetIndex, TimeIndex};
pub(crate) use scan::{scan_batches, valid_batch_after, ScanEnd, ScanOptions};
pub(crate) use txn_index::{TxnIndex, TXN_INDEX_EXT};

/// The extensions of a segment's files: its batches, its two sparse indexes and its
/// aborted-transaction index (present only once it holds an ABORT marker).
pub(crate) const SEGMENT_FILE_EXTENSIONS: [&str; 4] = ["log", "index", "timeindex", TXN_INDEX_EXT];

/// No timestamp seen yet (Kafka's `NO_TIMESTAMP`).
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// Sizes that shape a segment, taken from the topic configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentLimits {
    pub index_max_bytes: usize,
    pub index_interval_bytes: usize,
    /// Largest batch the scanner accepts; anything claiming more is corrupt.
    pub max_batch_bytes: usize,
}

/// Suffix of a retired segment file waiting for its last reader (removed on the next open).
pub(crate) const DELETED_SUFFIX: &str = "deleted";

pub(crate) fn file_name(base_offset: u64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parses `00000000000000001234.log` → 1234.
pub(crate) fn parse_file_name(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The two index files, locked together: readers take the read lock only for an in-memory
/// binary search, never across I/O.
#[derive(Debug)]
pub(crate) struct Indexes {
    pub offset: OffsetIndex,
    pub time: TimeIndex,
}

/// What a segment knows about its contents without reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentStats {
    pub size: u64,
    pub next_offset: u64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: u64,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub log_path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    /// Bytes of whole, validated batches. Stored (Release) after the bytes are written and the
    /// indexes updated; readers load it (Acquire) and never read past it.
    end: AtomicU64,
    next_offset: AtomicU64,
    max_timestamp: AtomicI64,
    offset_of_max_timestamp: AtomicU64,
    pub indexes: RwLock<Indexes>,
    /// Transactions aborted by a marker in this segment (`txn_index.rs`).
    pub txn_index: TxnIndex,
    /// Compaction may have left offset gaps here (the segment lies below the partition's
    /// cleaned boundary): batches need only start after the previous one, not right at its end.
    pub allow_gaps: bool,
    /// Files to unlink once the last holder of this segment lets go (retention or a compaction
    /// swap retired it while readers may still be using it).
    doomed: Mutex<Option<Doomed>>,
}

/// A retired segment's renamed files, removed when the segment is dropped.
#[derive(Debug)]
struct Doomed {
    storage: Arc<dyn Storage>,
    paths: Vec<PathBuf>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(doomed) = self.doomed.get_mut().take() {
            // Unmap before unlinking, so no mapping outlives its file's name. Errors cannot be
            // reported from drop; a file left behind ends in `.deleted`, and the next open
            // removes it.
            self.unmap();
            for path in &doomed.paths {
                let _ = doomed.storage.remove_file(path);
            }
        }
    }
}

impl Segment {
    /// Creates a new, empty segment (the `.log` must not exist yet).
    pub(crate) fn create(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: u64,
        limits: &SegmentLimits,
    ) -> io::Result<Segment> {
        let log_path = dir.join(file_name(base_offset, "log"));
        // An empty file of this name is what an earlier failed attempt (say, a full disk while
        // preallocating the indexes) left behind: take it over. A non-empty one is not ours to
        // overwrite.
        let file = storage.open(&log_path, OpenMode::Create)?;
        if file.len()? != 0 {
            return Err(with_path(
                io::Error::new(io::ErrorKind::AlreadyExists, "it exists and is not empty"),
                "create segment",
                &log_path,
            ));
        }
        let indexes = open_indexes(storage, dir, base_offset, limits, true, true)?;
        Ok(Segment::assemble(
            base_offset,
            log_path,
            file,
            indexes,
            SegmentStats {
                size: 0,
                next_offset: base_offset,
                max_timestamp: NO_TIMESTAMP,
                offset_of_max_timestamp: base_offset,
            },
            false,
        ))
    }

    /// Opens an existing segment whose contents are already known (`stats`). Its index files
    /// are used as they are if their checksums equal `trusted_index_crcs` (recorded when the
    /// segment was sealed); otherwise they are rebuilt from the `.log`. `allow_gaps`: see the
    /// field.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: u64,
        limits: &SegmentLimits,
        stats: SegmentStats,
        active: bool,
        trusted_index_crcs: Option<(u32, u32)>,
        allow_gaps: bool,
    ) -> io::Result<Segment> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let file = storage.open(&log_path, OpenMode::ReadWrite)?;
        // The index files as they are, checked against the checkpoint through the handles
        // that will map them (one open each). A missing file opens empty, which matches only
        // the checksum of an empty index: a segment with no entries loses nothing by it.
        let trusted = match trusted_index_crcs {
            Some((offset_crc, time_crc)) => {
                let indexes = open_indexes(storage, dir, base_offset, limits, active, false)?;
                let matches = indexes.offset.file_crc()? == offset_crc
                    && indexes.time.file_crc()? == time_crc;
                if !matches {
                    info!(
                        path = %log_path.display(),
                        "the index files of a sealed segment do not match the checkpoint: \
                         rebuilding them"
                    );
                }
                matches.then_some(indexes)
            }
            None => None,
        };
        let rebuild_indexes = trusted.is_none();
        let indexes = match trusted {
            Some(indexes) => indexes,
            None => open_indexes(storage, dir, base_offset, limits, active, true)?,
        };
        let segment = Segment::assemble(base_offset, log_path, file, indexes, stats, allow_gaps);
        if rebuild_indexes {
            segment.rebuild_indexes(limits)?;
            if !active {
                let mut idx = segment.indexes.write();
                idx.offset.close_and_trim()?;
                idx.time.close_and_trim()?;
            }
        }
        Ok(segment)
    }

    fn assemble(
        base_offset: u64,
        log_path: PathBuf,
        file: Arc<dyn StorageFile>,
        indexes: Indexes,
        stats: SegmentStats,
        allow_gaps: bool,
    ) -> Segment {
        let txn_index = TxnIndex::new(
            log_path.parent().unwrap_or_else(|| Path::new("")),
            base_offset,
        );
        Segment {
            allow_gaps,
            doomed: Mutex::new(None),
            base_offset,
            txn_index,
            log_path,
            file,
            end: AtomicU64::new(stats.size),
            next_offset: AtomicU64::new(stats.next_offset),
            max_timestamp: AtomicI64::new(stats.max_timestamp),
            offset_of_max_timestamp: AtomicU64::new(stats.offset_of_max_timestamp),
            indexes: RwLock::new(indexes),
        }
    }

    /// Bytes of whole batches readers may read.
    pub(crate) fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> SegmentStats {
        SegmentStats {
            size: self.end(),
            next_offset: self.next_offset(),
            max_timestamp: self.max_timestamp(),
            offset_of_max_timestamp: self.offset_of_max_timestamp.load(Ordering::Acquire),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.end() == 0
    }

    /// Appends one whole, validated batch at the end. `since_index` counts bytes appended since
    /// the last offset-index entry (writer state, reset on roll). Only the partition writer calls
    /// this.
    pub(crate) fn append(
        &self,
        batch: &[u8],
        header: &BatchHeader,
        batch_max_timestamp: i64,
        offset_of_batch_max: u64,
        since_index: &mut usize,
        limits: &SegmentLimits,
    ) -> io::Result<()> {
        let pos = self.end.load(Ordering::Relaxed);
        if let Err(e) = self.file.write_all_at(batch, pos) {
            // A failed write may have left part of the batch behind; cut it off so the file
            // still ends on a batch boundary. If even that fails, the caller poisons the
            // partition and recovery cleans up on reopen.
            let _ = self.file.set_len(pos);
            return Err(e);
        }
        let last_rel = (header.last_offset() - self.base_offset) as u32;
        // Position 0 is never indexed (lookups start there anyway), which is what lets the zero
        // fill of an index's allocated room mark its end. The lock is taken only when an entry is
        // due, so most appends never make a reader's index lookup wait.
        if *since_index >= limits.index_interval_bytes && pos > 0 {
            let mut idx = self.indexes.write();
            idx.offset.push(last_rel, pos as u32);
            let (ts, at) = self.max_after(batch_max_timestamp, offset_of_batch_max);
            idx.time.maybe_push(ts, (at - self.base_offset) as u32);
            *since_index = 0;
        }
        *since_index += batch.len();
        if batch_max_timestamp > self.max_timestamp.load(Ordering::Relaxed) {
            self.offset_of_max_timestamp
                .store(offset_of_batch_max, Ordering::Release);
            self.max_timestamp
                .store(batch_max_timestamp, Ordering::Release);
        }
        self.next_offset
            .store(header.next_offset(), Ordering::Release);
        self.end.store(pos + batch.len() as u64, Ordering::Release);
        Ok(())
    }

    /// The segment's max timestamp and its offset, counting a batch not yet recorded.
    fn max_after(&self, ts: i64, at: u64) -> (i64, u64) {
        let cur = self.max_timestamp.load(Ordering::Relaxed);
        if ts > cur {
            (ts, at)
        } else {
            (cur, self.offset_of_max_timestamp.load(Ordering::Relaxed))
        }
    }

    /// Whether appending `batch_len` more bytes or offsets up to `last_offset` needs a new
    /// segment first, by size, index capacity or relative-offset range.
    pub(crate) fn is_full_for(
        &self,
        batch_len: usize,
        last_offset: u64,
        segment_bytes: u64,
    ) -> bool {
        if self.is_empty() {
            // Never roll an empty segment: a batch larger than segment_bytes still needs a home.
            return false;
        }
        let idx = self.indexes.read();
        self.end() + batch_len as u64 > segment_bytes
            || idx.offset.is_full()
            || idx.time.is_full()
            || last_offset - self.base_offset > i32::MAX as u64
    }

    /// Reads `len` bytes at `pos` into one buffer (the zero-copy source of the records).
    ///
    /// The buffer is carved from a per-thread arena that is taken back once every record sliced
    /// from it is gone: a reader that drops one read's records before the next read (the usual
    /// loop) reuses the same warm memory instead of allocating a fresh megabyte each time, which
    /// the allocator may have to fault in page by page. Records kept longer only keep their own
    /// arena alive, and the next read starts another.
    pub(crate) fn read(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        use bytes::BytesMut;
        use std::cell::RefCell;

        /// Arenas are at least this large, so that small reads share one.
        const MIN_ARENA: usize = 64 << 10;
        /// Larger reads get a buffer of their own, so that no thread keeps one alive forever.
        const MAX_ARENA: usize = 16 << 20;
        thread_local! {
            static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
        }
        // `buf` is empty: whatever an arena held was split off by the read before.
        let read_into = |buf: &mut BytesMut| -> io::Result<Bytes> {
            self.file.read_exact_at_into(buf, pos, len)?;
            // Hands out the bytes, keeps the spare capacity for the next read.
            let read = buf.split().freeze();
            // Readers slice records out of exactly `len` bytes; a storage that appended some
            // other amount is an error here rather than a panic there.
            if read.len() != len {
                return Err(with_path(
                    io::Error::other(format!(
                        "storage read {} bytes where {len} were asked for",
                        read.len()
                    )),
                    "read",
                    &self.log_path,
                ));
            }
            Ok(read)
        };
        if len > MAX_ARENA {
            return read_into(&mut BytesMut::with_capacity(len));
        }
        ARENA
            .try_with(|arena| {
                let Ok(mut arena) = arena.try_borrow_mut() else {
                    return read_into(&mut BytesMut::with_capacity(len));
                };
                // Either room is left after earlier reads, or all of their records are gone
                // and the whole arena is free again; otherwise its records keep it alive and
                // this thread moves on to a new one.
                if !arena.try_reclaim(len) {
                    *arena = BytesMut::with_capacity(len.max(MIN_ARENA));
                }
                read_into(&mut arena)
            })
            // The thread is exiting and its arena is gone.
            .unwrap_or_else(|_| read_into(&mut BytesMut::with_capacity(len)))
    }

    /// For a segment with offset gaps (compacted), whatever else can prove the offsets of the
    /// batch at `pos` wrong, since "starts where the previous batch ended" no longer does: the
    /// offset index (an entry at this position names the batch's last offset exactly; entries
    /// before and after it bound it) and the segment's next offset. `Some(reason)` if they
    /// disagree with the header.
    pub(crate) fn check_offsets(&self, pos: u64, header: &BatchHeader) -> Option<String> {
        let (base, last) = (header.base_offset, header.last_offset());
        if last >= self.next_offset() {
            return Some(format!(
                "batch offsets {base}..={last} reach past the segment's end offset {}",
                self.next_offset()
            ));
        }
        let position = u32::try_from(pos).ok()?;
        let [before, at_or_after] = self.indexes.read().offset.around_position(position);
        let indexed = |(rel, at): (u32, u32)| (self.base_offset + u64::from(rel), at);
        if let Some((indexed_last, at)) = at_or_after.map(indexed) {
            if at == position && last != indexed_last {
                return Some(format!(
                    "batch offsets {base}..={last} disagree with the offset index, whose entry \
                     for this batch ends at offset {indexed_last}"
                ));
            }
            if at > position && last >= indexed_last {
                return Some(format!(
                    "batch offsets {base}..={last} reach the offset index's {indexed_last}, which \
                     ends the batch at byte {at}, after this one"
                ));
            }
        }
        if let Some((indexed_last, at)) = before.map(indexed) {
            if base <= indexed_last {
                return Some(format!(
                    "batch offsets {base}..={last} start at or before the offset index's \
                     {indexed_last}, which ends the batch at byte {at}, before this one"
                ));
            }
        }
        None
    }

    /// Where to start scanning for `offset`: the position of the last indexed batch that ends
    /// before it, with that batch's last offset (so the reader can check it found the batch the
    /// index meant), or `None` to start at the segment's first byte.
    pub(crate) fn lookup(&self, offset: u64) -> Option<(u64, u64)> {
        let rel = offset.saturating_sub(self.base_offset).min(u32::MAX as u64) as u32;
        self.indexes
            .read()
            .offset
            .lookup(rel)
            .map(|(rel, pos)| (pos as u64, self.base_offset + rel as u64))
    }

    /// Flushes index mappings, records the final max-timestamp entry, trims the index files and
    /// fsyncs all three files: the segment is immutable from now on.
    pub(crate) fn seal(&self) -> io::Result<()> {
        let mut idx = self.indexes.write();
        let stats = self.stats();
        if stats.max_timestamp != NO_TIMESTAMP {
            idx.time.maybe_push(
                stats.max_timestamp,
                (stats.offset_of_max_timestamp - self.base_offset) as u32,
            );
        }
        idx.offset.close_and_trim()?;
        idx.time.close_and_trim()?;
        self.txn_index.sync()?;
        self.file.sync_data()
    }

    /// Unmaps the indexes without trimming (closing after a failure; recovery rebuilds them).
    pub(crate) fn unmap(&self) {
        let mut idx = self.indexes.write();
        idx.offset.unmap();
        idx.time.unmap();
    }

    /// Scans the `.log` and rewrites both indexes from it.
    pub(crate) fn rebuild_indexes(&self, limits: &SegmentLimits) -> io::Result<()> {
        let mut idx = self.indexes.write();
        idx.offset.truncate_to_position(0);
        idx.time.truncate_to_offset(0);
        let mut since_index = 0usize;
        let mut max_ts = NO_TIMESTAMP;
        let mut max_at = self.base_offset;
        let opts = ScanOptions {
            segment_base: self.base_offset,
            allow_gaps: self.allow_gaps,
            verify_crc: false,
            max_batch_bytes: limits.max_batch_bytes,
        };
        // A compacted segment indexes every batch: with offset gaps allowed, its entries are
        // what pins each batch's base offset (outside the CRC) once the checkpoint's CRC of the
        // index vouches for them (see `check_offsets`).
        let dense = self.allow_gaps;
        let summary = scan_batches(&*self.file, 0, self.end(), &opts, |pos, h| {
            if h.max_timestamp > max_ts {
                max_ts = h.max_timestamp;
                max_at = h.last_offset();
            }
            if (dense || since_index >= limits.index_interval_bytes) && pos > 0 {
                idx.offset
                    .push((h.last_offset() - self.base_offset) as u32, pos as u32);
                idx.time
                    .maybe_push(max_ts, (max_at - self.base_offset) as u32);
                since_index = 0;
            }
            since_index += h.total_len();
        })
        .at("rebuild the indexes of", &self.log_path)?;
        if let ScanEnd::Invalid { position, reason } = summary.end {
            return Err(with_path(
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the batch at byte {position} is invalid: {reason}"),
                ),
                "rebuild the indexes of",
                &self.log_path,
            ));
        }
        Ok(())
    }

    /// Cuts the segment to `size` bytes (a batch boundary found by recovery) and drops index
    /// entries past it. Recovery calls it before any reader exists.
    pub(crate) fn truncate(&self, size: u64, stats: SegmentStats) -> io::Result<()> {
        {
            let mut idx = self.indexes.write();
            idx.offset
                .truncate_to_position(size.min(u32::MAX as u64) as u32);
            let rel = stats.next_offset.saturating_sub(self.base_offset);
            idx.time.truncate_to_offset(rel.min(u32::MAX as u64) as u32);
        }
        self.file.set_len(size)?;
        self.end.store(size, Ordering::Release);
        self.next_offset.store(stats.next_offset, Ordering::Release);
        self.max_timestamp
            .store(stats.max_timestamp, Ordering::Release);
        self.offset_of_max_timestamp
            .store(stats.offset_of_max_timestamp, Ordering::Release);
        Ok(())
    }

    /// Retires the segment: renames its files to `<name>.deleted` (so no later open takes
    /// them for live data) and arranges for them to be unlinked when the last `Arc` of this
    /// segment is dropped. Readers holding it keep reading through their open handle and
    /// mapping, which a rename does not disturb; nothing is truncated or unlinked under them.
    /// Only files that exist are renamed (an index may be missing after a crash).
    pub(crate) fn retire(&self, storage: &Arc<dyn Storage>, dir: &Path) -> io::Result<()> {
        let mut paths = Vec::with_capacity(SEGMENT_FILE_EXTENSIONS.len());
        for ext in SEGMENT_FILE_EXTENSIONS {
            let from = dir.join(file_name(self.base_offset, ext));
            let to = dir.join(format!(
                "{}.{DELETED_SUFFIX}",
                file_name(self.base_offset, ext)
            ));
            match storage.rename(&from, &to) {
                Ok(()) => paths.push(to),
                // No such file (an index lost in a crash): nothing to retire.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        *self.doomed.lock() = Some(Doomed {
            storage: storage.clone(),
            paths,
        });
        Ok(())
    }

    /// Unlinks the segment's files now, for a segment no reader can reach any more (the
    /// caller's word); its mappings go first. Missing files are skipped.
    pub(crate) fn delete_now(&self, storage: &dyn Storage, dir: &Path) -> io::Result<()> {
        self.unmap();
        for ext in SEGMENT_FILE_EXTENSIONS {
            match storage.remove_file(&dir.join(file_name(self.base_offset, ext))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// CRC-32C of each index file as it is on disk, for the checkpoint's record of sealed
    /// segments (a later open trusts the files only if they still match).
    pub(crate) fn index_checksums(&self) -> io::Result<(u32, u32)> {
        let idx = self.indexes.read();
        Ok((idx.offset.file_crc()?, idx.time.file_crc()?))
    }
}

fn open_indexes(
    storage: &dyn Storage,
    dir: &Path,
    base_offset: u64,
    limits: &SegmentLimits,
    active: bool,
    fresh: bool,
) -> io::Result<Indexes> {
    let offset_path = dir.join(file_name(base_offset, "index"));
    let time_path = dir.join(file_name(base_offset, "timeindex"));
    if fresh {
        // A rebuilt index starts from an empty file so no stale entry survives.
        for p in [&offset_path, &time_path] {
            if storage.exists(p)? {
                storage.remove_file(p)?;
            }
        }
    }
    // A segment being rebuilt needs room to write entries even if it will be sealed after.
    let growable = active || fresh;
    Ok(Indexes {
        offset: OffsetIndex::open(storage, &offset_path, limits.index_max_bytes, growable)?,
        time: TimeIndex::open(storage, &time_path, limits.index_max_bytes, growable)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimStorage;

    /// A retired segment's files are renamed at once but unlinked only when its last holder
    /// lets go, and it stays readable meanwhile.
    #[test]
    fn retired_files_outlive_their_last_reader_only() {
        let sim = SimStorage::new();
        let storage: Arc<dyn Storage> = sim.clone();
        let dir = Path::new("/p");
        storage.create_dir_all(dir).unwrap();
        let limits = SegmentLimits {
            index_max_bytes: 1024,
            index_interval_bytes: 0,
            max_batch_bytes: 1 << 20,
        };
        let segment = Arc::new(Segment::create(&*storage, dir, 0, &limits).unwrap());
        segment.file.write_all_at(b"twelve bytes", 0).unwrap();
        segment.end.store(12, Ordering::Release);
        let reader = segment.clone();
        segment.retire(&storage, dir).unwrap();
        let names = |sim: &SimStorage| {
            let mut v: Vec<String> = sim
                .paths()
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(&sim),
            vec![
                "00000000000000000000.index.deleted",
                "00000000000000000000.log.deleted",
                "00000000000000000000.timeindex.deleted",
            ]
        );
        drop(segment);
        assert_eq!(names(&sim).len(), 3, "a reader still holds it");
        assert_eq!(&reader.read(0, 12).unwrap()[..], b"twelve bytes");
        drop(reader);
        assert!(names(&sim).is_empty(), "{:?}", names(&sim));
    }
}
