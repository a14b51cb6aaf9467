//! The sparse `.index` and `.timeindex` files of a segment.
//!
//! Both are arrays of fixed-size big-endian entries, exactly as Kafka lays them out:
//! - `.index`: `relative_offset: u32 | position: u32` (8 bytes). `relative_offset` is the last
//!   offset of an indexed batch minus the segment's base offset; `position` is that batch's byte
//!   position in the `.log`.
//! - `.timeindex`: `timestamp: i64 | relative_offset: u32` (12 bytes): the largest timestamp
//!   seen so far in the segment and the offset of the record that carried it.
//!
//! The active segment's index files are preallocated to `segment_index_bytes` (real blocks, no
//! holes) and memory-mapped; unused tail entries are zeros. Sealed segments' files are trimmed to
//! their entries. Because the very first batch of a segment is never indexed (Kafka writes an
//! entry only after `index_interval_bytes` have passed), a valid offset-index entry never has
//! position 0, and the valid entries are exactly the leading run that is strictly increasing —
//! the zero fill (or garbage) ends it. Indexes are only a cache: anything that fails these checks
//! is rebuilt from the `.log`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{IoContext, MappedRegion, OpenMode, Storage, StorageFile};

pub(crate) const OFFSET_ENTRY: usize = 8;
pub(crate) const TIME_ENTRY: usize = 12;

/// One memory-mapped file of fixed-size entries.
#[derive(Debug)]
struct EntryFile {
    file: Arc<dyn StorageFile>,
    /// For errors.
    path: PathBuf,
    /// `None` once the file is closed (unmapped); lookups then find nothing.
    map: Option<Box<dyn MappedRegion>>,
    entry_size: usize,
    entries: usize,
    capacity: usize,
}

impl EntryFile {
    /// Opens (creating if needed) and maps the file. With `preallocate`, the file is grown to
    /// `max_bytes` so appends can go through the mapping; otherwise it is mapped as it is.
    fn open(
        storage: &dyn Storage,
        path: &Path,
        entry_size: usize,
        max_bytes: usize,
        preallocate: bool,
    ) -> io::Result<EntryFile> {
        let file = storage.open(path, OpenMode::Create)?;
        let len = file.len()? as usize;
        let capacity_bytes = if preallocate {
            let want = (max_bytes / entry_size) * entry_size;
            let want = want.max(len - len % entry_size);
            if len < want {
                file.allocate(want as u64)?;
            }
            want
        } else {
            len - len % entry_size
        };
        // SAFETY: `file` is an index file inside a partition directory of a `Log`, which holds
        // the directory's lock, so no other `Log` (in this process or another) opens it. This
        // `EntryFile` owns both the handle and the mapping: it writes the file only through the
        // mapping (`push`, `truncate_entries`) and changes its length only in `close_and_trim`,
        // after dropping the mapping. `capacity_bytes` is within the file: it was allocated
        // above, or is the file's length rounded down.
        let map = unsafe { file.map_mut(capacity_bytes) }?;
        Ok(EntryFile {
            file,
            path: path.to_path_buf(),
            map: Some(map),
            entry_size,
            entries: 0,
            capacity: capacity_bytes / entry_size,
        })
    }

    fn entry(&self, i: usize) -> &[u8] {
        let map = self.map.as_ref().expect("entry() on a closed index");
        &map.as_slice()[i * self.entry_size..(i + 1) * self.entry_size]
    }

    fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }

    fn push(&mut self, entry: &[u8]) -> bool {
        if self.is_full() {
            return false;
        }
        let pos = self.entries * self.entry_size;
        match self.map.as_mut() {
            Some(map) => map.write(pos, entry),
            None => return false,
        }
        self.entries += 1;
        true
    }

    fn truncate_entries(&mut self, entries: usize) {
        let entries = entries.min(self.entries);
        // Zero the dropped entries so the "leading increasing run" rule finds the same count
        // after a crash.
        if let Some(map) = self.map.as_mut() {
            let zeros = vec![0u8; (self.entries - entries) * self.entry_size];
            map.write(entries * self.entry_size, &zeros);
        }
        self.entries = entries;
    }

    /// Trims the file to its entries and maps it again at that size. Unmapping first is what makes the truncation
    /// safe: a mapped file must never shrink under its mapping (SIGBUS).
    fn close_and_trim(&mut self) -> io::Result<()> {
        if let Some(map) = self.map.take() {
            map.flush()?;
            drop(map);
            let len = self.entries * self.entry_size;
            self.file.set_len(len as u64)?;
            self.file.sync_all()?;
            // Map the trimmed file again so lookups keep working on the sealed segment.
            // SAFETY: as in `open`: the file was just trimmed to exactly `len` bytes, and from
            // now on nothing changes its length or bytes except through a mapping this
            // `EntryFile` holds (and trimming again drops that mapping first).
            self.map = Some(unsafe { self.file.map_mut(len) }?);
            self.capacity = self.entries;
        }
        Ok(())
    }

    /// CRC-32C of the file's bytes on disk.
    fn file_crc(&self) -> io::Result<u32> {
        let len = self.file.len()? as usize;
        let mut buf = vec![0u8; len];
        crate::storage::read_exact_at(&*self.file, &mut buf, 0).at("read", &self.path)?;
        Ok(crc32c::crc32c(&buf))
    }

    /// Unmaps without trimming (for a log that is closing after a failure).
    fn unmap(&mut self) {
        self.map = None;
    }
}

/// The `.index`: relative offset → byte position.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    inner: EntryFile,
}

impl OffsetIndex {
    pub(crate) fn open(
        storage: &dyn Storage,
        path: &Path,
        max_bytes: usize,
        preallocate: bool,
    ) -> io::Result<OffsetIndex> {
        let mut inner = EntryFile::open(storage, path, OFFSET_ENTRY, max_bytes, preallocate)?;
        inner.entries = 0;
        let mut index = OffsetIndex { inner };
        index.inner.entries = index.count_valid();
        Ok(index)
    }

    fn count_valid(&self) -> usize {
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..self.inner.capacity {
            let (rel, pos) = decode_offset_entry(self.inner.entry(i));
            let ok = pos > 0 && prev.is_none_or(|(pr, pp)| rel > pr && pos > pp);
            if !ok {
                return i;
            }
            prev = Some((rel, pos));
        }
        self.inner.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    pub(crate) fn entry(&self, i: usize) -> (u32, u32) {
        decode_offset_entry(self.inner.entry(i))
    }

    pub(crate) fn last(&self) -> Option<(u32, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends an entry; `false` if the index is full (the caller rolls the segment first, so
    /// this is a defensive answer, not an expected path).
    pub(crate) fn push(&mut self, relative_offset: u32, position: u32) -> bool {
        let mut e = [0u8; OFFSET_ENTRY];
        e[..4].copy_from_slice(&relative_offset.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        self.inner.push(&e)
    }

    /// The last entry whose batch ends before `relative_offset` — `(its last relative offset,
    /// its position)` — from which a scan for `relative_offset` can start; `None` to start at 0.
    pub(crate) fn lookup(&self, relative_offset: u32) -> Option<(u32, u32)> {
        self.inner.map.as_ref()?;
        let idx = partition_point(self.len(), |i| self.entry(i).0 < relative_offset);
        idx.checked_sub(1).map(|i| self.entry(i))
    }

    /// The entries around byte `position`: the last one before it and the first at or after
    /// it, each as `(relative last offset, position)`. Both `None` once the index is closed.
    pub(crate) fn around_position(&self, position: u32) -> [Option<(u32, u32)>; 2] {
        if self.inner.map.is_none() {
            return [None, None];
        }
        let n = self.len();
        let i = partition_point(n, |i| self.entry(i).1 < position);
        [
            i.checked_sub(1).map(|i| self.entry(i)),
            (i < n).then(|| self.entry(i)),
        ]
    }

    /// Drops every entry at or after byte `position` (used when truncating the log).
    pub(crate) fn truncate_to_position(&mut self, position: u32) {
        let n = self.len();
        let keep = partition_point(n, |i| self.entry(i).1 < position);
        self.inner.truncate_entries(keep);
    }

    pub(crate) fn close_and_trim(&mut self) -> io::Result<()> {
        self.inner.close_and_trim()
    }

    pub(crate) fn unmap(&mut self) {
        self.inner.unmap()
    }

    pub(crate) fn file_crc(&self) -> io::Result<u32> {
        self.inner.file_crc()
    }
}

/// The `.timeindex`: max timestamp so far → relative offset of the record that carried it.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    inner: EntryFile,
}

impl TimeIndex {
    pub(crate) fn open(
        storage: &dyn Storage,
        path: &Path,
        max_bytes: usize,
        preallocate: bool,
    ) -> io::Result<TimeIndex> {
        let inner = EntryFile::open(storage, path, TIME_ENTRY, max_bytes, preallocate)?;
        let mut index = TimeIndex { inner };
        index.inner.entries = index.count_valid();
        Ok(index)
    }

    /// Valid entries have strictly increasing timestamps and non-decreasing offsets; an
    /// all-zero entry after the first ends the run (it is preallocated fill).
    fn count_valid(&self) -> usize {
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..self.inner.capacity {
            let (ts, rel) = decode_time_entry(self.inner.entry(i));
            let ok = match prev {
                None => ts > 0 || rel > 0,
                Some((pt, pr)) => ts > pt && rel >= pr,
            };
            if !ok {
                return i;
            }
            prev = Some((ts, rel));
        }
        self.inner.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    pub(crate) fn entry(&self, i: usize) -> (i64, u32) {
        decode_time_entry(self.inner.entry(i))
    }

    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends `(timestamp, relative_offset)` if `timestamp` is larger than the last entry's.
    pub(crate) fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) -> bool {
        if self.last().is_some_and(|(t, _)| timestamp <= t) {
            return true;
        }
        if self.len() == 0 && timestamp <= 0 && relative_offset == 0 {
            // Would be indistinguishable from zero fill; an index without it only costs a scan.
            return true;
        }
        let mut e = [0u8; TIME_ENTRY];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&relative_offset.to_be_bytes());
        self.inner.push(&e)
    }

    /// Relative offset after which the first record with timestamp >= `timestamp` must lie:
    /// the offset of the last entry whose timestamp is < target (every record up to that offset
    /// has a timestamp <= the entry's), or `None` to scan from the segment start.
    pub(crate) fn lookup(&self, timestamp: i64) -> Option<u32> {
        self.inner.map.as_ref()?;
        let idx = partition_point(self.len(), |i| self.entry(i).0 < timestamp);
        idx.checked_sub(1).map(|i| self.entry(i).1)
    }

    /// Drops entries whose offset is at or after `relative_offset`.
    pub(crate) fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = partition_point(self.len(), |i| self.entry(i).1 < relative_offset);
        self.inner.truncate_entries(keep);
    }

    pub(crate) fn close_and_trim(&mut self) -> io::Result<()> {
        self.inner.close_and_trim()
    }

    pub(crate) fn unmap(&mut self) {
        self.inner.unmap()
    }

    pub(crate) fn file_crc(&self) -> io::Result<u32> {
        self.inner.file_crc()
    }
}

fn decode_offset_entry(e: &[u8]) -> (u32, u32) {
    (
        u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
        u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
    )
}

fn decode_time_entry(e: &[u8]) -> (i64, u32) {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&e[..8]);
    (
        i64::from_be_bytes(ts),
        u32::from_be_bytes([e[8], e[9], e[10], e[11]]),
    )
}

/// First index in `0..n` for which `pred` is false, given `pred` is true then false.
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}
