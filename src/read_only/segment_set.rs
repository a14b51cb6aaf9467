//! A consistent set of a partition's segment files, opened without the directory's lock while
//! the owner may be rolling, compacting and deleting segments.
//!
//! Every file the owner replaces is replaced by rename (the swap protocol) or unlinked whole
//! (retention), and sealed segments are never written in place, so an open handle keeps
//! reading the bytes it opened. What needs care is the listing: a directory read while a swap
//! renames files can show a mix of two moments. So a set is taken as list → open → list again,
//! and kept only when both listings name the same segments (and every open succeeded);
//! otherwise it is taken again. Each instant of the swap protocol names every offset range
//! exactly once once swap files are read as the segments they replace: old `.log` files
//! (before step 4), the committed `<base>-<end>.swap` file (between steps 2 and 5) or the new
//! `.log` (after step 5).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::partition::swap::{parse_swap_file_name, SWAP_SUFFIX};
use crate::segment::parse_file_name;
use crate::storage::{with_path, OpenMode, Storage, StorageFile};

/// Segments one set opens at most: a reader far behind the end holds this many files, not one
/// per segment to the end (it opens the next ones when it gets there).
pub(super) const MAX_OPEN: usize = 16;

/// How often a set is taken again when the directory changed between two listings, before
/// giving up: each retry follows a rename of the owner's, and a swap has only a few.
const ATTEMPTS: usize = 64;

/// One segment's data file, open for reading.
#[derive(Debug, Clone)]
pub(super) struct SegmentFile {
    pub base_offset: u64,
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
}

/// Names of the segment data files of one listing, sorted by base offset: `.log` files and the
/// swap files that stand in for the segments they replace.
fn list(storage: &dyn Storage, dir: &Path) -> io::Result<Vec<(u64, String)>> {
    let names = storage
        .list_dir(dir)
        .map_err(|e| with_path(e, "list", dir))?;
    let swaps: Vec<(u64, u64, &String)> = names
        .iter()
        .filter_map(|n| parse_swap_file_name(n, SWAP_SUFFIX).map(|(b, e)| (b, e, n)))
        .collect();
    let replaced = |base: u64| swaps.iter().any(|&(b, e, _)| b <= base && base < e);
    let mut out: Vec<(u64, String)> = names
        .iter()
        .filter_map(|n| parse_file_name(n, "log").map(|base| (base, n)))
        .filter(|&(base, _)| !replaced(base))
        .map(|(base, n)| (base, n.clone()))
        .collect();
    out.extend(swaps.iter().map(|&(b, _, n)| (b, n.clone())));
    out.sort();
    Ok(out)
}

/// Which segments of a listing to open.
#[derive(Debug, Clone, Copy)]
pub(super) enum Select {
    /// What a reader at this offset needs: the last segment starting at or below it and every
    /// later one (all of them when the offset is below the first).
    From(u64),
    /// The segments starting after this base offset: those a roll added after the newest one
    /// a reader holds.
    After(u64),
}

impl Select {
    /// The picked segments, at most [`MAX_OPEN`].
    fn pick(self, listing: &[(u64, String)]) -> &[(u64, String)] {
        let first = match self {
            Select::From(offset) => listing
                .partition_point(|(base, _)| *base <= offset)
                .saturating_sub(1),
            Select::After(newest) => listing.partition_point(|(base, _)| *base <= newest),
        };
        let picked = &listing[first..];
        &picked[..picked.len().min(MAX_OPEN)]
    }
}

/// Opens the segments `select` picks as one consistent set. A missing partition directory is
/// the I/O error `NotFound` (the caller names it).
pub(super) fn open(storage: &dyn Storage, dir: &Path, select: Select) -> Result<Vec<SegmentFile>> {
    'attempt: for _ in 0..ATTEMPTS {
        let first = list(storage, dir)?;
        let wanted = select.pick(&first);
        let mut files = Vec::with_capacity(wanted.len());
        for (base, name) in wanted {
            let path = dir.join(name);
            match storage.open(&path, OpenMode::Read) {
                Ok(file) => files.push(SegmentFile {
                    base_offset: *base,
                    path,
                    file,
                }),
                // Renamed or removed since the listing: the owner is replacing segments.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue 'attempt,
                Err(e) => return Err(with_path(e, "open", &path).into()),
            }
        }
        let second = list(storage, dir)?;
        if select.pick(&second) == wanted {
            return Ok(files);
        }
    }
    Err(changing(dir))
}

/// The segment data files (base offset, name), from two listings that agree: a swap renaming
/// files must not make a segment look missing.
pub(super) fn listing(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u64, String)>> {
    let mut previous = list(storage, dir)?;
    for _ in 0..ATTEMPTS {
        let next = list(storage, dir)?;
        if next == previous {
            return Ok(next);
        }
        previous = next;
    }
    Err(changing(dir))
}

/// Opens one segment of a [`listing`]; `None` if the owner removed or renamed it since.
pub(super) fn open_one(
    storage: &dyn Storage,
    dir: &Path,
    (base_offset, name): &(u64, String),
) -> Result<Option<SegmentFile>> {
    let path = dir.join(name);
    match storage.open(&path, OpenMode::Read) {
        Ok(file) => Ok(Some(SegmentFile {
            base_offset: *base_offset,
            path,
            file,
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(with_path(e, "open", &path).into()),
    }
}

/// The base offset of the oldest segment.
pub(super) fn first_base(storage: &dyn Storage, dir: &Path) -> Result<Option<u64>> {
    Ok(listing(storage, dir)?.first().map(|(base, _)| *base))
}

fn changing(dir: &Path) -> Error {
    Error::io(
        "take a consistent listing of",
        Some(dir),
        io::Error::other(format!(
            "its segment files changed between every two of {ATTEMPTS} listings"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<(u64, String)> {
        let storage = crate::storage::SimStorage::new();
        let dir = Path::new("/p");
        storage.create_dir_all(dir).unwrap();
        for n in list {
            storage.open(&dir.join(n), OpenMode::CreateNew).unwrap();
        }
        super::list(&*storage, dir).unwrap()
    }

    #[test]
    fn a_swap_file_stands_in_for_the_segments_it_replaces() {
        let l = names(&[
            "00000000000000000000.log",
            "00000000000000000010.log",
            "00000000000000000020.log",
            "00000000000000000000-00000000000000000020.swap",
            "00000000000000000010.log.deleted",
            "00000000000000000030.log.cleaned",
            "00000000000000000000.index",
        ]);
        let bases: Vec<u64> = l.iter().map(|(b, _)| *b).collect();
        assert_eq!(bases, vec![0, 20]);
        assert!(l[0].1.ends_with(".swap"));
    }

    #[test]
    fn a_reader_opens_its_segment_and_every_later_one() {
        let l = names(&[
            "00000000000000000000.log",
            "00000000000000000010.log",
            "00000000000000000020.log",
        ]);
        let from = |o| Select::From(o).pick(&l);
        assert_eq!(from(0).len(), 3);
        assert_eq!(from(15)[0].0, 10);
        assert_eq!(from(20)[0].0, 20);
        assert_eq!(from(99).len(), 1);
        assert!(Select::From(5).pick(&[]).is_empty());
        assert_eq!(Select::After(10).pick(&l).len(), 1);
        assert!(Select::After(20).pick(&l).is_empty());
        let many: Vec<(u64, String)> = (0..40).map(|i| (i * 10, format!("{i}"))).collect();
        assert_eq!(Select::From(0).pick(&many).len(), MAX_OPEN);
        assert_eq!(Select::From(395).pick(&many).len(), 1);
    }
}
