//! Which file is which: segment file names (docs/FORMAT.md), the `.log`s of a partition
//! directory in offset order, and the index files beside a `.log`.

use std::path::{Path, PathBuf};

use crate::exit::Failure;

/// Digits of the base offset in a segment file name (`00000000000000001234.log`).
const BASE_DIGITS: usize = 20;
/// Suffix of a retired segment file awaiting its unlink (`<segment file>.deleted`).
const DELETED: &str = ".deleted";

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Record batches: `.log`, and `.log.cleaned` / `.swap` (a compaction's new segment).
    Log,
    /// `.index`: 8-byte offset-index entries.
    OffsetIndex,
    /// `.timeindex`: 12-byte time-index entries.
    TimeIndex,
    /// `.txnindex`: 34-byte aborted-transaction entries.
    TxnIndex,
}

impl Kind {
    /// The extension of this kind beside a `.log` (what `--verify-index` looks for).
    fn extension(self) -> &'static str {
        match self {
            Kind::Log => ".log",
            Kind::OffsetIndex => ".index",
            Kind::TimeIndex => ".timeindex",
            Kind::TxnIndex => ".txnindex",
        }
    }
}

/// A file of a partition directory, recognised by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub kind: Kind,
    /// The base offset the name carries, if it is annals' (Kafka's) 20-digit name.
    pub base: Option<u64>,
    /// The name without its kind's extension (`00000000000000001234`), for siblings.
    stem: String,
    /// `.deleted` for a retired file, else empty: its siblings carry it too.
    suffix: &'static str,
}

impl SegmentFile {
    /// Recognises `path` by its file name; `None` if it is none of annals' segment files.
    pub fn of(path: &Path) -> Option<SegmentFile> {
        let name = path.file_name()?.to_str()?;
        let (name, suffix) = match name.strip_suffix(DELETED) {
            Some(name) => (name, DELETED),
            None => (name, ""),
        };
        let kinds = [
            (".log.cleaned", Kind::Log),
            (".swap", Kind::Log),
            (".log", Kind::Log),
            (".timeindex", Kind::TimeIndex),
            (".txnindex", Kind::TxnIndex),
            (".index", Kind::OffsetIndex),
        ];
        let (stem, kind) = kinds
            .iter()
            .find_map(|(ext, kind)| Some((name.strip_suffix(ext)?, *kind)))?;
        Some(SegmentFile {
            path: path.to_path_buf(),
            kind,
            base: parse_base(stem),
            stem: stem.to_string(),
            suffix,
        })
    }

    /// The file of `kind` beside this one (`…1234.log` → `…1234.index`).
    pub fn sibling(&self, kind: Kind) -> PathBuf {
        self.path
            .with_file_name(format!("{}{}{}", self.stem, kind.extension(), self.suffix))
    }

    /// Whether this is a live segment: `<base offset>.log`, 20 digits (not a retired, compacted
    /// or copied one).
    pub fn is_live_segment(&self) -> bool {
        let named = |n: &std::ffi::OsStr| n.to_str().is_some_and(|n| n.ends_with(".log"));
        self.suffix.is_empty()
            && self.kind == Kind::Log
            && self.stem.len() == BASE_DIGITS
            && self.base.is_some()
            && self.path.file_name().is_some_and(named)
    }

    /// The base offset, or 0 for a file whose name does not carry one.
    pub fn base_or_zero(&self) -> u64 {
        self.base.unwrap_or(0)
    }

    /// Whether the partition directory holds a `.log` with a larger base offset: then this
    /// segment is sealed, and bytes after its last whole batch cannot be an interrupted write.
    pub fn has_later_segment(&self) -> bool {
        let (Some(base), Some(dir)) = (self.base, self.path.parent()) else {
            return false;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        partition_logs(dir).is_ok_and(|logs| logs.iter().any(|l| l.base > Some(base)))
    }
}

/// `00000000000000001234` (or `00000000000000001234-00000000000000005678` of a `.swap`) →
/// 1234.
fn parse_base(stem: &str) -> Option<u64> {
    let digits = stem.get(..BASE_DIGITS)?;
    let rest = stem.get(BASE_DIGITS..)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(rest.is_empty() || rest.starts_with('-')) {
        return None;
    }
    digits.parse().ok()
}

/// The live segments (`<base>.log`) of a partition directory, in base-offset order. Retired
/// (`.deleted`) and in-progress compaction files are left out.
pub fn partition_logs(dir: &Path) -> Result<Vec<SegmentFile>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| Failure::at("list", dir, e))?;
    let mut logs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Failure::at("list", dir, e))?;
        if let Some(file) = SegmentFile::of(&entry.path()).filter(SegmentFile::is_live_segment) {
            logs.push(file);
        }
    }
    logs.sort_by_key(|f| f.base);
    Ok(logs)
}

/// Whether `dir` looks like a whole log directory (it has partition subdirectories or
/// `topics.meta`), for a hint when it holds no `.log` of its own.
pub fn looks_like_log_root(dir: &Path) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    // A user topic makes a better example than an internal one (`__consumer_offsets-0`).
    entries.sort_by_key(|p| {
        let internal = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("__"));
        (internal, p.clone())
    });
    entries.into_iter().find(|p| {
        p.is_dir()
            && p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('-'))
                .is_some_and(|(topic, id)| {
                    !topic.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
                })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_every_kind() {
        let f = SegmentFile::of(Path::new("/d/t-0/00000000000000001234.log")).unwrap();
        assert_eq!((f.kind, f.base), (Kind::Log, Some(1234)));
        assert_eq!(
            f.sibling(Kind::TimeIndex),
            Path::new("/d/t-0/00000000000000001234.timeindex")
        );
        let f = SegmentFile::of(Path::new("00000000000000000007.index.deleted")).unwrap();
        assert_eq!((f.kind, f.base), (Kind::OffsetIndex, Some(7)));
        assert_eq!(
            f.sibling(Kind::Log),
            Path::new("00000000000000000007.log.deleted")
        );
        let f = SegmentFile::of(Path::new("00000000000000000005-00000000000000000009.swap"));
        assert_eq!(f.map(|f| (f.kind, f.base)), Some((Kind::Log, Some(5))));
        let f = SegmentFile::of(Path::new("copy.log")).unwrap();
        assert_eq!((f.kind, f.base), (Kind::Log, None));
        assert_eq!(f.sibling(Kind::OffsetIndex), Path::new("copy.index"));
        assert!(SegmentFile::of(Path::new("topics.meta")).is_none());
        assert!(SegmentFile::of(Path::new("notes.txt")).is_none());
    }
}
