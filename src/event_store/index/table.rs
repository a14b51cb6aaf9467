//! An index table: one immutable file of sorted `(stream hash, version, offset)` entries
//! covering the events of one offset range of a partition, searched by binary search over
//! fence keys held in memory (KurrentDB's PTables, without their midpoint cache).
//!
//! Layout (all integers little-endian):
//! ```text
//! entries  count × 24 B   hash u64, version u64, offset u64; sorted by (hash, version, offset)
//! fences   blocks × 20 B  per block of BLOCK_ENTRIES entries: first hash u64, first version
//!                         u64, CRC-32C of the block's bytes u32
//! footer   FOOTER_LEN B   magic, start, end, count, hasher fingerprint, level, CRC of the fences,
//!                         CRC of the footer
//! ```
//! The footer and fences are read and checked at open; each block's CRC is checked when a
//! lookup reads it, so opening a table costs its fences, not its entries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::storage::{read_exact_at, IoContext, OpenMode, Storage, StorageFile};

/// Entries per block: one positioned read of 3 KiB answers most lookups.
pub(crate) const BLOCK_ENTRIES: usize = 128;
const ENTRY_LEN: usize = 24;
const FENCE_LEN: usize = 20;
const FOOTER_LEN: usize = 52;
const MAGIC: &[u8; 8] = b"ANNSIDX1";
/// File name suffix of a table.
pub(crate) const TABLE_SUFFIX: &str = ".estable";

/// One index entry. `version` is [`META_VERSION`] for a stream's metadata record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Entry {
    pub hash: u64,
    pub version: u64,
    pub offset: u64,
}

/// The version under which a stream's metadata records are indexed: after all its events.
pub(crate) const META_VERSION: u64 = u64::MAX;

/// What a table's footer says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableInfo {
    /// The offset range of the partition whose events it holds: `[start, end)`.
    pub start: u64,
    pub end: u64,
    pub count: u64,
    pub fingerprint: u64,
    /// How many merges made it: level 0 is a flushed memtable, level L+1 merges 4 of level L.
    pub level: u32,
}

/// A table open for lookups.
#[derive(Debug)]
pub(crate) struct Table {
    pub path: PathBuf,
    pub info: TableInfo,
    file: Arc<dyn StorageFile>,
    /// First key of each block.
    fences: Vec<(u64, u64)>,
    crcs: Vec<u32>,
}

pub(crate) fn table_file_name(start: u64, end: u64) -> String {
    format!("{start:020}-{end:020}{TABLE_SUFFIX}")
}

fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        segment: path.to_path_buf(),
        position,
        reason: reason.into(),
    }
}

/// Writes `entries` (sorted) as a table at `path`, atomically: a temp file fsynced and renamed.
/// The caller fsyncs the directory.
pub(crate) fn write_table(
    storage: &dyn Storage,
    path: &Path,
    info: TableInfo,
    entries: impl Iterator<Item = Result<Entry>>,
) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = storage.open(&tmp, OpenMode::Create)?;
    file.set_len(0).at("truncate", &tmp)?;
    let mut pos = 0u64;
    let mut block = Vec::with_capacity(BLOCK_ENTRIES * ENTRY_LEN);
    let mut fences = Vec::new();
    let mut count = 0u64;
    let mut last: Option<Entry> = None;
    let flush_block = |block: &mut Vec<u8>, fences: &mut Vec<u8>, pos: &mut u64| -> Result<()> {
        if block.is_empty() {
            return Ok(());
        }
        fences.extend_from_slice(&block[..16]);
        fences.extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
        file.write_all_at(block, *pos).at("write", &tmp)?;
        *pos += block.len() as u64;
        block.clear();
        Ok(())
    };
    for e in entries {
        let e = e?;
        debug_assert!(last.is_none_or(|l| l <= e), "table entries out of order");
        last = Some(e);
        block.extend_from_slice(&e.hash.to_le_bytes());
        block.extend_from_slice(&e.version.to_le_bytes());
        block.extend_from_slice(&e.offset.to_le_bytes());
        count += 1;
        if block.len() == BLOCK_ENTRIES * ENTRY_LEN {
            flush_block(&mut block, &mut fences, &mut pos)?;
        }
    }
    flush_block(&mut block, &mut fences, &mut pos)?;
    let info = TableInfo { count, ..info };
    let mut tail = fences;
    let fences_crc = crc32c::crc32c(&tail);
    let footer_at = tail.len();
    tail.extend_from_slice(MAGIC);
    for v in [info.start, info.end, info.count, info.fingerprint] {
        tail.extend_from_slice(&v.to_le_bytes());
    }
    tail.extend_from_slice(&info.level.to_le_bytes());
    tail.extend_from_slice(&fences_crc.to_le_bytes());
    let footer_crc = crc32c::crc32c(&tail[footer_at..]);
    tail.extend_from_slice(&footer_crc.to_le_bytes());
    debug_assert_eq!(tail.len() - footer_at, FOOTER_LEN);
    file.write_all_at(&tail, pos).at("write", &tmp)?;
    file.sync_all().at("sync", &tmp)?;
    drop(file);
    storage.rename(&tmp, path)?;
    Ok(())
}

impl Table {
    /// Opens the table at `path`, checking its footer and fences.
    pub(crate) fn open(storage: &dyn Storage, path: &Path) -> Result<Table> {
        let file = storage.open(path, OpenMode::Read)?;
        let len = file.len().at("read the length of", path)?;
        if len < FOOTER_LEN as u64 {
            return Err(corrupt(
                path,
                0,
                format!("{len} bytes is shorter than a table footer"),
            ));
        }
        let mut footer = [0u8; FOOTER_LEN];
        read_exact_at(&*file, &mut footer, len - FOOTER_LEN as u64).at("read", path)?;
        let footer_pos = len - FOOTER_LEN as u64;
        if &footer[..8] != MAGIC {
            return Err(corrupt(path, footer_pos, "bad magic in the table footer"));
        }
        let crc = u32::from_le_bytes(footer[48..52].try_into().expect("4 bytes"));
        if crc32c::crc32c(&footer[..48]) != crc {
            return Err(corrupt(path, footer_pos, "table footer fails its CRC"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(footer[i..i + 8].try_into().expect("8 bytes"));
        let info = TableInfo {
            start: u64_at(8),
            end: u64_at(16),
            count: u64_at(24),
            fingerprint: u64_at(32),
            level: u32::from_le_bytes(footer[40..44].try_into().expect("4 bytes")),
        };
        let fences_crc = u32::from_le_bytes(footer[44..48].try_into().expect("4 bytes"));
        let blocks = info.count.div_ceil(BLOCK_ENTRIES as u64);
        let entries_len = info.count.checked_mul(ENTRY_LEN as u64);
        let fences_len = blocks * FENCE_LEN as u64;
        if entries_len.and_then(|e| e.checked_add(fences_len + FOOTER_LEN as u64)) != Some(len)
            || info.start > info.end
        {
            return Err(corrupt(
                path,
                footer_pos,
                format!(
                    "footer says {} entries over offsets {}..{}, which does not fit a {len}-byte file",
                    info.count, info.start, info.end
                ),
            ));
        }
        let fences_pos = info.count * ENTRY_LEN as u64;
        let mut raw = vec![0u8; fences_len as usize];
        read_exact_at(&*file, &mut raw, fences_pos).at("read", path)?;
        if crc32c::crc32c(&raw) != fences_crc {
            return Err(corrupt(path, fences_pos, "table fences fail their CRC"));
        }
        let mut fences = Vec::with_capacity(blocks as usize);
        let mut crcs = Vec::with_capacity(blocks as usize);
        for f in raw.chunks_exact(FENCE_LEN) {
            let hash = u64::from_le_bytes(f[..8].try_into().expect("8 bytes"));
            let version = u64::from_le_bytes(f[8..16].try_into().expect("8 bytes"));
            fences.push((hash, version));
            crcs.push(u32::from_le_bytes(f[16..20].try_into().expect("4 bytes")));
        }
        if fences.windows(2).any(|w| w[0] > w[1]) {
            return Err(corrupt(path, fences_pos, "table fences out of order"));
        }
        Ok(Table {
            path: path.to_path_buf(),
            info,
            file,
            fences,
            crcs,
        })
    }

    fn block_count(&self) -> usize {
        self.fences.len()
    }

    /// Reads and checks block `b`, appending its entries to `out`.
    fn read_block(&self, b: usize, out: &mut Vec<Entry>) -> Result<()> {
        let first = b * BLOCK_ENTRIES;
        let n = (self.info.count as usize - first).min(BLOCK_ENTRIES);
        let mut buf = vec![0u8; n * ENTRY_LEN];
        let pos = (first * ENTRY_LEN) as u64;
        read_exact_at(&*self.file, &mut buf, pos).at("read", &self.path)?;
        if crc32c::crc32c(&buf) != self.crcs[b] {
            return Err(corrupt(
                &self.path,
                pos,
                "index block fails its CRC (the event store drops the table and rebuilds it from the log)",
            ));
        }
        for e in buf.chunks_exact(ENTRY_LEN) {
            let word = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().expect("8 bytes"));
            out.push(Entry {
                hash: word(0),
                version: word(8),
                offset: word(16),
            });
        }
        Ok(())
    }

    /// Every entry of `hash` with a version in `lo..=hi`, in key order.
    pub(crate) fn scan(&self, hash: u64, lo: u64, hi: u64, out: &mut Vec<Entry>) -> Result<()> {
        if self.block_count() == 0 || lo > hi {
            return Ok(());
        }
        // The last block whose first key is below (hash, lo) may still hold it at its end.
        let mut b = self
            .fences
            .partition_point(|f| *f < (hash, lo))
            .saturating_sub(1);
        let mut block = Vec::with_capacity(BLOCK_ENTRIES);
        while b < self.block_count() && self.fences[b] <= (hash, hi) {
            block.clear();
            self.read_block(b, &mut block)?;
            out.extend(
                block
                    .iter()
                    .filter(|e| e.hash == hash && (lo..=hi).contains(&e.version)),
            );
            b += 1;
        }
        Ok(())
    }

    /// The entries of `hash` in the last block holding any, newest version first: usually all
    /// a version lookup needs, without reading a long stream's whole run. Returns the lowest
    /// version among them when the run may continue into earlier blocks (whose entries of
    /// `hash` all have versions at or below it), `None` when these are all there are.
    pub(crate) fn last_run(&self, hash: u64, out: &mut Vec<Entry>) -> Result<Option<u64>> {
        if self.block_count() == 0 {
            return Ok(None);
        }
        let b = self.fences.partition_point(|f| *f <= (hash, u64::MAX));
        if b == 0 {
            return Ok(None);
        }
        let mut block = Vec::with_capacity(BLOCK_ENTRIES);
        self.read_block(b - 1, &mut block)?;
        let before = out.len();
        out.extend(block.iter().rev().filter(|e| e.hash == hash));
        let continues = out.len() > before && self.fences[b - 1].0 == hash && b > 1;
        Ok(continues.then(|| out.last().expect("the run is not empty").version))
    }

    /// Every entry, in key order (for merges).
    pub(crate) fn entries(&self) -> TableEntries<'_> {
        TableEntries {
            table: self,
            block: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

/// Iterator over a table's entries, one block read at a time.
#[derive(Debug)]
pub(crate) struct TableEntries<'a> {
    table: &'a Table,
    block: usize,
    buf: Vec<Entry>,
    pos: usize,
}

impl Iterator for TableEntries<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.pos == self.buf.len() {
            if self.block == self.table.block_count() {
                return None;
            }
            self.buf.clear();
            self.pos = 0;
            if let Err(e) = self.table.read_block(self.block, &mut self.buf) {
                self.block = self.table.block_count();
                return Some(Err(e));
            }
            self.block += 1;
        }
        self.pos += 1;
        Some(Ok(self.buf[self.pos - 1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsStorage;

    fn entries(n: u64) -> Vec<Entry> {
        let mut v: Vec<Entry> = (0..n)
            .map(|i| Entry {
                hash: i % 37,
                version: i / 37,
                offset: i,
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn lookups_find_every_entry_of_a_hash_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage;
        let path = dir.path().join(table_file_name(0, 5000));
        let all = entries(5000);
        let info = TableInfo {
            start: 0,
            end: 5000,
            count: 0,
            fingerprint: 7,
            level: 0,
        };
        write_table(&storage, &path, info, all.iter().copied().map(Ok)).unwrap();
        let t = Table::open(&storage, &path).unwrap();
        assert_eq!(t.info.count, 5000);
        assert_eq!(t.info.fingerprint, 7);
        for hash in [0, 1, 17, 36, 99] {
            let mut got = Vec::new();
            t.scan(hash, 0, u64::MAX, &mut got).unwrap();
            let want: Vec<Entry> = all.iter().copied().filter(|e| e.hash == hash).collect();
            assert_eq!(got, want, "hash {hash}");
            let mut got = Vec::new();
            t.scan(hash, 40, 60, &mut got).unwrap();
            let want: Vec<Entry> = want
                .iter()
                .copied()
                .filter(|e| (40..=60).contains(&e.version))
                .collect();
            assert_eq!(got, want);
            let mut last = Vec::new();
            t.last_run(hash, &mut last).unwrap();
            assert_eq!(last.first(), all.iter().rfind(|e| e.hash == hash));
        }
        let merged: Vec<Entry> = t.entries().map(|e| e.unwrap()).collect();
        assert_eq!(merged, all);
    }

    #[test]
    fn damage_is_reported_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage;
        let path = dir.path().join(table_file_name(0, 1000));
        let info = TableInfo {
            start: 0,
            end: 1000,
            count: 0,
            fingerprint: 1,
            level: 0,
        };
        write_table(&storage, &path, info, entries(1000).into_iter().map(Ok)).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let t = Table::open(&storage, &path).unwrap();
        let mut out = Vec::new();
        let err = t.scan(0, 0, u64::MAX, &mut out).unwrap_err();
        assert!(err.to_string().contains(TABLE_SUFFIX), "{err}");
        let len = bytes.len();
        bytes[len - 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Table::open(&storage, &path),
            Err(Error::Corrupt { .. })
        ));
        std::fs::write(&path, b"short").unwrap();
        assert!(Table::open(&storage, &path).is_err());
    }
}
