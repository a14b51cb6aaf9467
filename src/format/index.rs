//! The entries of a segment's `.index` and `.timeindex` files (docs/FORMAT.md), read by the
//! rule annals itself opens them with (`segment/index.rs`): the valid entries are the leading
//! run that keeps the index's order, and only zeros (an active segment's preallocated space)
//! may follow. Tools that print or check an index take its entries from here, so there is one
//! reading of an index file, not one per tool.

use std::fmt;

use crate::segment::index::{IndexEntry, OffsetEntry, TimeEntry, OFFSET_ENTRY, TIME_ENTRY};

/// Bytes of one `.index` entry: relative offset u32, position u32.
pub const OFFSET_INDEX_ENTRY_LEN: usize = OFFSET_ENTRY;
/// Bytes of one `.timeindex` entry: timestamp i64, relative offset u32.
pub const TIME_INDEX_ENTRY_LEN: usize = TIME_ENTRY;

/// One `.index` entry: the last offset of an indexed batch, relative to the segment's base
/// offset, and the batch's byte position in the `.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetIndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One `.timeindex` entry: the largest timestamp of the segment so far, and the relative last
/// offset of the batch that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeIndexEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// An index file's bytes as annals reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexEntries<T> {
    /// The leading run of entries that keep the index's order: the ones annals uses.
    pub entries: Vec<T>,
    /// Whole entries of zeros after the run, when nothing but zeros follows it.
    pub zero_fill: usize,
    /// The first entry after the run that is not all zeros, when there is one.
    pub stray: Option<Stray>,
}

/// Bytes after an index's valid entries that are not zeros: annals ignores them (and rebuilds
/// the index from the log when it recovers the segment); only damage leaves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stray {
    /// Byte position of the first entry after the run that is not all zeros.
    pub position: u64,
    /// That entry, counted from the file's first (it may be a partial last one).
    pub entry: usize,
    /// How many valid entries come before it.
    pub valid: usize,
}

impl fmt::Display for Stray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "entry {} (byte {}) does not continue the index's {} valid entries and is not zero \
             fill: annals ignores it and every entry after it",
            self.entry, self.position, self.valid
        )
    }
}

/// The entries of a `.index` file: positions and relative offsets strictly increase, and
/// position 0 is never indexed (a segment's first batch is not), so a zero entry ends the run.
///
/// ```
/// use annals::format::{offset_index_entries, OffsetIndexEntry};
/// let mut bytes = [3u32, 100].map(u32::to_be_bytes).concat();
/// bytes.extend_from_slice(&[0; 16]);
/// let index = offset_index_entries(&bytes);
/// assert_eq!(index.entries, [OffsetIndexEntry { relative_offset: 3, position: 100 }]);
/// assert_eq!((index.zero_fill, index.stray), (2, None));
/// ```
pub fn offset_index_entries(bytes: &[u8]) -> IndexEntries<OffsetIndexEntry> {
    leading_run::<OffsetEntry, _>(bytes, |(relative_offset, position)| OffsetIndexEntry {
        relative_offset,
        position,
    })
}

/// The entries of a `.timeindex` file: timestamps strictly increase and offsets do not
/// decrease; an all-zero entry ends the run.
pub fn time_index_entries(bytes: &[u8]) -> IndexEntries<TimeIndexEntry> {
    leading_run::<TimeEntry, _>(bytes, |(timestamp, relative_offset)| TimeIndexEntry {
        timestamp,
        relative_offset,
    })
}

fn leading_run<E: IndexEntry, T>(bytes: &[u8], public: impl Fn(E::Entry) -> T) -> IndexEntries<T> {
    let mut entries = Vec::new();
    let mut prev = None;
    for chunk in bytes.chunks_exact(E::SIZE) {
        let entry = E::decode(chunk);
        if !E::follows(entry, prev) {
            break;
        }
        entries.push(public(entry));
        prev = Some(entry);
    }
    let run_end = entries.len() * E::SIZE;
    let rest = bytes.get(run_end..).unwrap_or_default();
    let stray = rest.iter().position(|&b| b != 0).map(|i| {
        let entry = (run_end + i) / E::SIZE;
        Stray {
            position: (entry * E::SIZE) as u64,
            entry,
            valid: entries.len(),
        }
    });
    IndexEntries {
        zero_fill: if stray.is_none() {
            rest.len() / E::SIZE
        } else {
            0
        },
        entries,
        stray,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may panic on what they check
mod tests {
    use super::*;

    fn offset_bytes(entries: &[(u32, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(r, p)| r.to_be_bytes().into_iter().chain(p.to_be_bytes()))
            .collect()
    }

    fn offsets(index: &IndexEntries<OffsetIndexEntry>) -> Vec<(u32, u32)> {
        index
            .entries
            .iter()
            .map(|e| (e.relative_offset, e.position))
            .collect()
    }

    #[test]
    fn an_entry_that_breaks_the_run_is_stray_and_so_is_a_partial_last_entry() {
        let index = offset_index_entries(&offset_bytes(&[(3, 100), (2, 300), (9, 400)]));
        assert_eq!(offsets(&index), [(3, 100)]);
        let stray = index.stray.expect("entry 1 is stray");
        assert_eq!((stray.entry, stray.position, stray.valid), (1, 8, 1));
        assert!(stray.to_string().starts_with("entry 1 (byte 8)"), "{stray}");
        assert_eq!(index.zero_fill, 0);

        let mut partial = offset_bytes(&[(3, 100)]);
        partial.extend_from_slice(&[0, 0, 1]);
        let stray = offset_index_entries(&partial)
            .stray
            .expect("a partial entry");
        assert_eq!((stray.entry, stray.position), (1, 8));
        // Zeros of a partial entry are still zero fill, and not a whole entry of it.
        let index = offset_index_entries(&offset_bytes(&[(3, 100), (0, 0)])[..13]);
        assert_eq!((index.zero_fill, index.stray), (0, None));
    }

    #[test]
    fn time_entries_need_growing_timestamps_and_zeros_end_them() {
        let mut bytes = Vec::new();
        for (ts, rel) in [(10i64, 0u32), (20, 4), (20, 5)] {
            bytes.extend_from_slice(&ts.to_be_bytes());
            bytes.extend_from_slice(&rel.to_be_bytes());
        }
        let index = time_index_entries(&bytes);
        let got: Vec<(i64, u32)> = index
            .entries
            .iter()
            .map(|e| (e.timestamp, e.relative_offset))
            .collect();
        assert_eq!(got, [(10, 0), (20, 4)]);
        assert_eq!(index.stray.map(|s| s.entry), Some(2));
        let zeros = time_index_entries(&[0; 24]);
        assert!(zeros.entries.is_empty());
        assert_eq!((zeros.zero_fill, zeros.stray), (2, None));
    }
}
