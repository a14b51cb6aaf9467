//! The sparse `.index` and `.timeindex` files of a segment.
//!
//! Both are arrays of fixed-size big-endian entries, exactly as Kafka lays them out:
//! - `.index`: `relative_offset: u32 | position: u32` (8 bytes). `relative_offset` is the last
//!   offset of an indexed batch minus the segment's base offset; `position` is that batch's byte
//!   position in the `.log`.
//! - `.timeindex`: `timestamp: i64 | relative_offset: u32` (12 bytes): the largest timestamp
//!   seen so far in the segment and the last offset of the batch that carried it (as Kafka
//!   writes it).
//!
//! The active segment's index files are memory-mapped and allocated ahead of their entries (real
//! blocks, no holes, so a write through the mapping cannot fail for lack of space); unused tail
//! entries are zeros. They start empty, are allocated [`INITIAL_BYTES`] for their first entry
//! and double when full, up to
//! `segment_index_bytes`, so a small partition costs a few KiB of disk instead of two
//! preallocated `segment_index_bytes` files. A growth that fails (a full disk) skips the entry:
//! the index is a cache, and a sparser one only makes lookups scan further. Sealed segments'
//! files are trimmed to their entries. Because the very first batch of a segment is never indexed (Kafka writes an
//! entry only after `index_interval_bytes` have passed), a valid offset-index entry never has
//! position 0, and the valid entries are exactly the leading run that is strictly increasing —
//! the zero fill (or garbage) ends it. Indexes are only a cache: anything that fails these checks
//! is rebuilt from the `.log`.

use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::{IoContext, MappedRegion, OpenMode, Storage, StorageFile};

pub(crate) const OFFSET_ENTRY: usize = 8;
pub(crate) const TIME_ENTRY: usize = 12;
/// Room on the stack for encoding any entry.
const MAX_ENTRY: usize = 16;
/// What an active index file is first allocated to: one page, so a partition with a handful of
/// batches costs one block per index, and the kernel's fault-around maps no more than that.
pub(crate) const INITIAL_BYTES: usize = 4096;

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
    /// Entries the mapping (and the allocated file) has room for.
    capacity: usize,
    /// Entries the file may grow to (`segment_index_bytes`); the segment rolls when they are
    /// used. Equal to `capacity` for a file that does not grow (a sealed segment's).
    max_capacity: usize,
    /// A growth failed and was logged; later failures are not logged again.
    growth_failed: bool,
}

impl EntryFile {
    /// Opens (creating if needed) and maps the file as it is. With `growable`, it may grow to
    /// `max_bytes` as entries are pushed; the first growth allocates [`INITIAL_BYTES`]. Nothing
    /// is allocated before an entry needs room, so opening a segment that is never written
    /// (an idle partition's) changes none of its index files.
    fn open(
        storage: &dyn Storage,
        path: &Path,
        entry_size: usize,
        max_bytes: usize,
        growable: bool,
    ) -> io::Result<EntryFile> {
        let file = storage.open(path, OpenMode::Create)?;
        let len = file.len()? as usize;
        let whole = |bytes: usize| bytes - bytes % entry_size;
        let on_disk = whole(len);
        // A file from before indexes grew is preallocated to its full size: it is used so.
        let max_bytes = if growable {
            whole(max_bytes).max(on_disk)
        } else {
            on_disk
        };
        let mut entry_file = EntryFile {
            file,
            path: path.to_path_buf(),
            map: None,
            entry_size,
            entries: 0,
            capacity: 0,
            max_capacity: max_bytes / entry_size,
            growth_failed: false,
        };
        entry_file.map_to(on_disk)?;
        Ok(entry_file)
    }

    /// Maps the first `len` bytes, dropping any earlier mapping first (two mappings of one
    /// range must not coexist: see `map_mut`'s contract).
    #[allow(unsafe_code)] // maps the index file: see the SAFETY argument below
    fn map_to(&mut self, len: usize) -> io::Result<()> {
        self.map = None;
        // SAFETY: `file` is an index file inside a partition directory of a `Log`, which holds
        // the directory's lock, so no other `Log` (in this process or another) opens it. This
        // `EntryFile` owns both the handle and the mapping, and holds at most one mapping (the
        // previous one was dropped above): it writes the file only through the mapping (`push`,
        // `truncate_entries`) and changes its length only in `close_and_trim`, after dropping
        // the mapping, or in `grow`, which only extends it. `len` is within the file: `grow`
        // allocated it, or it is the file's length rounded down.
        self.map = Some(unsafe { self.file.map_mut(len) }?);
        self.capacity = len / self.entry_size;
        Ok(())
    }

    /// Doubles the allocated and mapped size (up to `max_capacity`). On failure the mapping is
    /// what it was (or, if even remapping that failed, gone: lookups then scan).
    fn grow(&mut self) -> io::Result<()> {
        let old_bytes = self.capacity * self.entry_size;
        let new_capacity = (self.capacity * 2)
            .max(INITIAL_BYTES / self.entry_size)
            .min(self.max_capacity);
        let new_bytes = new_capacity * self.entry_size;
        self.file.allocate(new_bytes as u64)?;
        if let Err(e) = self.map_to(new_bytes) {
            let _ = self.map_to(old_bytes);
            return Err(e);
        }
        Ok(())
    }

    fn entry(&self, i: usize) -> &[u8] {
        let map = self.map.as_ref().expect("entry() on a closed index");
        &map.as_slice()[i * self.entry_size..(i + 1) * self.entry_size]
    }

    fn is_full(&self) -> bool {
        self.entries >= self.max_capacity
    }

    /// Appends an entry, growing the file first if its allocated room is used up. `false` if
    /// it is full, closed, or could not grow (the entry is then skipped, see the module docs).
    fn push(&mut self, entry: &[u8]) -> bool {
        if self.is_full() || self.map.is_none() {
            return false;
        }
        if self.entries >= self.capacity {
            if let Err(e) = self.grow() {
                if !self.growth_failed {
                    self.growth_failed = true;
                    warn!(
                        path = %self.path.display(),
                        error = %e,
                        "could not grow an index file: its entries are skipped until it can \
                         (lookups scan further; nothing is lost)"
                    );
                }
                return false;
            }
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
    #[allow(unsafe_code)] // maps the trimmed file: see the SAFETY argument below
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
            self.max_capacity = self.entries;
        }
        Ok(())
    }

    /// CRC-32C of the file's bytes on disk.
    fn file_crc(&self) -> io::Result<u32> {
        let len = self.file.len()? as usize;
        // A mapping of the whole file already holds its bytes (a sealed index, trimmed to its
        // entries, always is one): no read needed.
        if let Some(map) = self.map.as_ref().filter(|m| m.as_slice().len() == len) {
            return Ok(crc32c::crc32c(map.as_slice()));
        }
        let mut buf = vec![0u8; len];
        crate::storage::read_exact_at(&*self.file, &mut buf, 0).at("read", &self.path)?;
        Ok(crc32c::crc32c(&buf))
    }

    /// Unmaps without trimming (for a log that is closing after a failure).
    fn unmap(&mut self) {
        self.map = None;
    }
}

/// The codec of one kind of index entry: its size on disk, its bytes, and which entries may
/// follow which (the valid entries of a file are its leading run that obeys this).
pub(crate) trait IndexEntry {
    /// An entry, as the index hands it out.
    type Entry: Copy;
    /// Bytes per entry on disk.
    const SIZE: usize;
    /// `bytes` is exactly `SIZE` long.
    fn decode(bytes: &[u8]) -> Self::Entry;
    /// `out` is exactly `SIZE` long.
    fn encode(entry: Self::Entry, out: &mut [u8]);
    /// Whether `entry` may come after `prev` (`None`: as the first entry).
    fn follows(entry: Self::Entry, prev: Option<Self::Entry>) -> bool;
}

/// `.index` entries: `(relative last offset, byte position)` of an indexed batch.
#[derive(Debug)]
pub(crate) enum OffsetEntry {}

impl IndexEntry for OffsetEntry {
    type Entry = (u32, u32);
    const SIZE: usize = OFFSET_ENTRY;

    fn decode(e: &[u8]) -> (u32, u32) {
        (
            u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
        )
    }

    fn encode((relative_offset, position): (u32, u32), out: &mut [u8]) {
        out[..4].copy_from_slice(&relative_offset.to_be_bytes());
        out[4..].copy_from_slice(&position.to_be_bytes());
    }

    /// Position 0 is never indexed, so a zero entry (allocated fill) ends the run; both
    /// fields strictly increase.
    fn follows((rel, pos): (u32, u32), prev: Option<(u32, u32)>) -> bool {
        pos > 0 && prev.is_none_or(|(pr, pp)| rel > pr && pos > pp)
    }
}

/// `.timeindex` entries: `(max timestamp so far, relative offset it was seen at)`.
#[derive(Debug)]
pub(crate) enum TimeEntry {}

impl IndexEntry for TimeEntry {
    type Entry = (i64, u32);
    const SIZE: usize = TIME_ENTRY;

    fn decode(e: &[u8]) -> (i64, u32) {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        (
            i64::from_be_bytes(ts),
            u32::from_be_bytes([e[8], e[9], e[10], e[11]]),
        )
    }

    fn encode((timestamp, relative_offset): (i64, u32), out: &mut [u8]) {
        out[..8].copy_from_slice(&timestamp.to_be_bytes());
        out[8..].copy_from_slice(&relative_offset.to_be_bytes());
    }

    /// Timestamps strictly increase and offsets do not decrease; an all-zero first entry is
    /// allocated fill.
    fn follows((ts, rel): (i64, u32), prev: Option<(i64, u32)>) -> bool {
        match prev {
            None => ts > 0 || rel > 0,
            Some((pt, pr)) => ts > pt && rel >= pr,
        }
    }
}

/// A sparse index file of `E` entries.
#[derive(Debug)]
pub(crate) struct Index<E: IndexEntry> {
    inner: EntryFile,
    entry: PhantomData<E>,
}

/// The `.index`: relative offset → byte position.
pub(crate) type OffsetIndex = Index<OffsetEntry>;
/// The `.timeindex`: max timestamp so far → the relative offset it was recorded with.
pub(crate) type TimeIndex = Index<TimeEntry>;

impl<E: IndexEntry> Index<E> {
    pub(crate) fn open(
        storage: &dyn Storage,
        path: &Path,
        max_bytes: usize,
        growable: bool,
    ) -> io::Result<Index<E>> {
        let inner = EntryFile::open(storage, path, E::SIZE, max_bytes, growable)?;
        let mut index = Index {
            inner,
            entry: PhantomData,
        };
        index.inner.entries = index.count_valid();
        Ok(index)
    }

    /// Length of the leading run of entries that obey `E::follows`.
    fn count_valid(&self) -> usize {
        let mut prev = None;
        for i in 0..self.inner.capacity {
            let entry = E::decode(self.inner.entry(i));
            if !E::follows(entry, prev) {
                return i;
            }
            prev = Some(entry);
        }
        self.inner.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    pub(crate) fn entry(&self, i: usize) -> E::Entry {
        E::decode(self.inner.entry(i))
    }

    pub(crate) fn last(&self) -> Option<E::Entry> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends an entry; `false` if the index is full (the caller rolls the segment first, so
    /// this is a defensive answer, not an expected path).
    fn push_entry(&mut self, entry: E::Entry) -> bool {
        const { assert!(E::SIZE <= MAX_ENTRY, "an entry larger than MAX_ENTRY") };
        let mut bytes = [0u8; MAX_ENTRY];
        let bytes = &mut bytes[..E::SIZE];
        E::encode(entry, bytes);
        self.inner.push(bytes)
    }

    /// Number of leading entries for which `pred` holds (entries are sorted by it).
    fn count_while(&self, pred: impl Fn(E::Entry) -> bool) -> usize {
        partition_point(self.len(), |i| pred(self.entry(i)))
    }

    /// The last entry for which `pred` holds, if the index is open.
    fn last_where(&self, pred: impl Fn(E::Entry) -> bool) -> Option<E::Entry> {
        self.inner.map.as_ref()?;
        self.count_while(pred).checked_sub(1).map(|i| self.entry(i))
    }

    /// Keeps only the leading entries for which `pred` holds.
    fn truncate_while(&mut self, pred: impl Fn(E::Entry) -> bool) {
        let keep = self.count_while(pred);
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

impl Index<OffsetEntry> {
    /// Appends `(relative_offset, position)`; `false` if the index is full.
    pub(crate) fn push(&mut self, relative_offset: u32, position: u32) -> bool {
        self.push_entry((relative_offset, position))
    }

    /// The last entry whose batch ends before `relative_offset` — `(its last relative offset,
    /// its position)` — from which a scan for `relative_offset` can start; `None` to start at 0.
    pub(crate) fn lookup(&self, relative_offset: u32) -> Option<(u32, u32)> {
        self.last_where(|(rel, _)| rel < relative_offset)
    }

    /// The entries around byte `position`: the last one before it and the first at or after
    /// it, each as `(relative last offset, position)`. Both `None` once the index is closed.
    pub(crate) fn around_position(&self, position: u32) -> [Option<(u32, u32)>; 2] {
        if self.inner.map.is_none() {
            return [None, None];
        }
        let n = self.len();
        let i = self.count_while(|(_, pos)| pos < position);
        [
            i.checked_sub(1).map(|i| self.entry(i)),
            (i < n).then(|| self.entry(i)),
        ]
    }

    /// Drops every entry at or after byte `position` (used when truncating the log).
    pub(crate) fn truncate_to_position(&mut self, position: u32) {
        self.truncate_while(|(_, pos)| pos < position);
    }
}

impl Index<TimeEntry> {
    /// Appends `(timestamp, relative_offset)` if `timestamp` is larger than the last entry's.
    pub(crate) fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) -> bool {
        if self.last().is_some_and(|(t, _)| timestamp <= t) {
            return true;
        }
        if self.len() == 0 && timestamp <= 0 && relative_offset == 0 {
            // Would be indistinguishable from zero fill; an index without it only costs a scan.
            return true;
        }
        self.push_entry((timestamp, relative_offset))
    }

    /// Relative offset after which the first record with timestamp >= `timestamp` must lie:
    /// the offset of the last entry whose timestamp is < target (every record up to that offset
    /// has a timestamp <= the entry's), or `None` to scan from the segment start.
    pub(crate) fn lookup(&self, timestamp: i64) -> Option<u32> {
        self.last_where(|(ts, _)| ts < timestamp)
            .map(|(_, rel)| rel)
    }

    /// Drops entries whose offset is at or after `relative_offset`.
    pub(crate) fn truncate_to_offset(&mut self, relative_offset: u32) {
        self.truncate_while(|(_, rel)| rel < relative_offset);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimStorage;

    /// Both kinds keep Kafka's big-endian layout, and a reopened file finds exactly the
    /// entries written (the zero fill after them ends the valid run).
    #[test]
    fn entries_keep_their_layout_and_survive_a_reopen() {
        let storage = SimStorage::new();
        let (offsets, times) = (Path::new("/0.index"), Path::new("/0.timeindex"));
        let mut offset = OffsetIndex::open(&*storage, offsets, 64, true).unwrap();
        let mut time = TimeIndex::open(&*storage, times, 64, true).unwrap();
        assert!(offset.push(7, 4096) && offset.push(9, 8192));
        assert!(time.maybe_push(1_000, 7) && time.maybe_push(900, 8));
        assert!(time.maybe_push(2_000, 9));
        offset.close_and_trim().unwrap();
        time.close_and_trim().unwrap();
        let bytes = crate::storage::read_whole(&*storage, offsets).unwrap();
        assert_eq!(bytes, [0, 0, 0, 7, 0, 0, 16, 0, 0, 0, 0, 9, 0, 0, 32, 0]);
        let bytes = crate::storage::read_whole(&*storage, times).unwrap();
        assert_eq!(&bytes[..12], &[0, 0, 0, 0, 0, 0, 3, 232, 0, 0, 0, 7]);
        assert_eq!(bytes.len(), 24);

        let offset = OffsetIndex::open(&*storage, offsets, 64, true).unwrap();
        let time = TimeIndex::open(&*storage, times, 64, true).unwrap();
        assert_eq!((offset.len(), time.len()), (2, 2));
        assert_eq!(offset.lookup(9), Some((7, 4096)));
        assert_eq!(
            offset.around_position(5000),
            [Some((7, 4096)), Some((9, 8192))]
        );
        assert_eq!(time.lookup(1_500), Some(7));
        assert_eq!(time.lookup(1_000), None);
    }

    /// An active index starts empty, takes one page for its first entry, doubles as entries come, stops at its maximum
    /// (then it is full and the segment rolls), and a reopen finds every entry.
    #[test]
    fn grows_by_doubling_up_to_its_maximum() {
        let storage = SimStorage::new();
        let path = Path::new("/0.index");
        let max = 64 << 10;
        let mut index = OffsetIndex::open(&*storage, path, max, true).unwrap();
        assert_eq!(
            storage.read_file(path).unwrap().len(),
            0,
            "nothing before an entry"
        );
        let mut sizes = vec![];
        let mut n = 0u32;
        while !index.is_full() {
            n += 1;
            assert!(index.push(n, n * 100));
            let len = storage.read_file(path).unwrap().len();
            if sizes.last() != Some(&len) {
                sizes.push(len);
            }
        }
        assert_eq!(sizes, [4096, 8192, 16384, 32768, 65536]);
        assert_eq!(n as usize, max / OFFSET_ENTRY);
        assert!(!index.push(n + 1, (n + 1) * 100), "full");
        drop(index);
        let index = OffsetIndex::open(&*storage, path, max, true).unwrap();
        assert_eq!(index.len(), n as usize);
        assert_eq!(index.lookup(n), Some((n - 1, (n - 1) * 100)));
    }

    /// A file preallocated to its full size (as before indexes grew) reopens with its entries
    /// and room, and a grown file reopened with a smaller maximum keeps what it has.
    #[test]
    fn old_preallocated_files_reopen() {
        let storage = SimStorage::new();
        let path = Path::new("/0.timeindex");
        let file = storage.open(path, OpenMode::Create).unwrap();
        file.allocate(TIME_ENTRY as u64 * 1000).unwrap();
        let mut entry = [0u8; TIME_ENTRY];
        TimeEntry::encode((5_000, 3), &mut entry);
        file.write_all_at(&entry, 0).unwrap();
        drop(file);
        let mut index = TimeIndex::open(&*storage, path, 1024, true).unwrap();
        assert_eq!(index.len(), 1);
        assert!(index.maybe_push(6_000, 9));
        assert_eq!(storage.read_file(path).unwrap().len(), TIME_ENTRY * 1000);
        assert_eq!(index.lookup(5_500), Some(3));
    }

    /// A full disk while growing skips the entry: no error, no panic, the entries before it
    /// intact, lookups still right (they start earlier), and growth resumes once space is back.
    #[test]
    fn a_failed_growth_skips_entries_and_recovers() {
        let storage = SimStorage::new();
        let path = Path::new("/0.index");
        let mut index = OffsetIndex::open(&*storage, path, 1 << 20, true).unwrap();
        let first_page = (INITIAL_BYTES / OFFSET_ENTRY) as u32;
        for n in 1..=first_page {
            assert!(index.push(n, n * 10));
        }
        storage.fail_when(
            crate::storage::SimOpKind::Allocate,
            "0.index",
            io::ErrorKind::StorageFull,
        );
        assert!(
            !index.push(first_page + 1, (first_page + 1) * 10),
            "skipped"
        );
        assert_eq!(index.len(), first_page as usize);
        assert_eq!(
            index.lookup(first_page + 5),
            Some((first_page, first_page * 10))
        );
        storage.clear_fault_hook();
        assert!(
            index.push(first_page + 2, (first_page + 2) * 10),
            "grows again"
        );
        assert_eq!(index.len(), first_page as usize + 1);
        index.close_and_trim().unwrap();
        let bytes = storage.read_file(path).unwrap();
        assert_eq!(bytes.len(), (first_page as usize + 1) * OFFSET_ENTRY);
    }
}
