//! [`ReadOnlyLog::verify`]: a full check of a log's files — every batch's CRC and records,
//! offsets in order and inside their segment, every offset- and time-index entry against the
//! batch it names, and every metadata file's checksum — that reports each finding with its file
//! and byte instead of stopping at the first; [`verify_segment`]: the same check of one segment
//! file and its indexes.

use std::path::{Path, PathBuf};

use super::segment_set::{self, SegmentFile};
use super::ReadOnlyLog;
use crate::error::{Error, Result};
use crate::format::{decode_batch, offset_index_entries, time_index_entries, verify_crc};
use crate::format::{IndexEntries, OffsetIndexEntry, TimeIndexEntry};
use crate::format::{OFFSET_INDEX_ENTRY_LEN, TIME_INDEX_ENTRY_LEN};
use crate::meta::{decode_producer_ids, load_bounds, load_checkpoint, PRODUCER_IDS_FILE};
use crate::partition::partition_dir_name;
use crate::segment::{file_name, parse_file_name, BatchCursor, Next};
use crate::storage::{read_whole, ContextStorage, FsStorage, Storage};

/// Bytes a check reads at once.
const READ_CHUNK: usize = 1 << 20;

/// One thing [`ReadOnlyLog::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Finding {
    pub path: PathBuf,
    /// The byte in the file, where one applies.
    pub position: Option<u64>,
    pub what: String,
}

/// What [`ReadOnlyLog::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segment, index and metadata files read.
    pub files_checked: u64,
    /// Bytes of segment files read.
    pub bytes_checked: u64,
    /// Batches whose CRC and records were checked.
    pub batches_checked: u64,
    /// Damage: bytes that are wrong and that recovery would refuse, cut or rebuild.
    pub damage: Vec<Finding>,
    /// Not damage: a torn tail of a newest segment (an owner's write in progress, or what a
    /// crash left for the next open to truncate).
    pub notes: Vec<Finding>,
}

impl VerifyReport {
    /// No damage found.
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }

    fn damage(&mut self, path: &Path, position: Option<u64>, what: impl Into<String>) {
        self.damage.push(Finding {
            path: path.to_path_buf(),
            position,
            what: what.into(),
        });
    }
}

impl ReadOnlyLog {
    /// Checks every file of the log as it is now and reports what is damaged; `progress` is
    /// called with the segment bytes checked so far and the total. Meant for a log at rest or
    /// one whose owner is not compacting: a segment swapped in the middle of the check can show
    /// its index beside the old segment's data.
    ///
    /// Errors only when the check itself cannot go on (the directory cannot be listed);
    /// everything wrong inside a file is a [`Finding`].
    pub fn verify(&self, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        self.check_meta_file(&mut report, &self.dir.join(PRODUCER_IDS_FILE), |p, b| {
            decode_producer_ids(p, b).map(|_| ())
        });
        report.files_checked += 1; // topics.meta, read whole at open and at refresh
        let partitions: Vec<(String, u32)> = self
            .topics
            .read()
            .iter()
            .flat_map(|(name, c)| (0..c.partitions).map(move |p| (name.clone(), p)))
            .collect();
        // Segment files are opened one at a time, from a listing per partition, so the check
        // holds a bounded number of files however many segments the log has: a first pass
        // only measures them for the progress total.
        let mut listings = Vec::new();
        let mut total = 0;
        for (topic, partition) in &partitions {
            let dir = self.dir.join(partition_dir_name(topic, *partition));
            match segment_set::listing(&*self.storage, &dir) {
                Ok(listing) => {
                    for entry in &listing {
                        if let Ok(Some(seg)) = segment_set::open_one(&*self.storage, &dir, entry) {
                            total += seg.file.len().unwrap_or(0);
                        }
                    }
                    listings.push((dir, listing));
                }
                Err(e) => report.damage(&dir, None, format!("cannot list the partition: {e}")),
            }
        }
        let mut done = 0;
        progress(done, total);
        for (dir, listing) in listings {
            let bounds = PartitionBounds::load(&*self.storage, &dir, &mut report);
            let mut next_offset: Option<u64> = None;
            for (i, entry) in listing.iter().enumerate() {
                let seg = match segment_set::open_one(&*self.storage, &dir, entry) {
                    Ok(Some(seg)) => seg,
                    Ok(None) => {
                        report.notes.push(Finding {
                            path: dir.join(&entry.1),
                            position: None,
                            what: "removed by the owner during the check".into(),
                        });
                        continue;
                    }
                    Err(e) => {
                        report.damage(&dir.join(&entry.1), None, e.to_string());
                        continue;
                    }
                };
                let check = SegmentCheck {
                    storage: &*self.storage,
                    seg: &seg,
                    next_base: listing.get(i + 1).map(|(base, _)| *base),
                    bounds,
                };
                next_offset = check.run(&mut report, next_offset, &mut |n| {
                    done += n;
                    progress(done, total.max(done));
                });
            }
        }
        Ok(report)
    }

    fn check_meta_file(
        &self,
        report: &mut VerifyReport,
        path: &Path,
        decode: impl FnOnce(&Path, &[u8]) -> Result<()>,
    ) {
        match self.storage.exists(path) {
            Ok(false) => {}
            Ok(true) => {
                report.files_checked += 1;
                let checked = read_whole(&*self.storage, path)
                    .map_err(Into::into)
                    .and_then(|bytes| decode(path, &bytes));
                if let Err(e) = checked {
                    report.damage(path, None, e.to_string());
                }
            }
            Err(e) => report.damage(path, None, e.to_string()),
        }
    }
}

/// Checks one segment file — its batches and the `.index` and `.timeindex` beside it — exactly
/// as [`ReadOnlyLog::verify`] checks each segment of a log. The partition directory around it
/// says the rest: whether a later segment follows (then its batches may not reach that
/// segment's base offset, and a bad tail is damage rather than a write in progress), and
/// `partition.bounds` and `partition.ckpt` where present (which offsets compaction may have
/// removed; up to where the data was synced). Whether its offsets continue the segment before
/// it is not checked: that takes the older segment's batches.
///
/// Only reads, without the log's lock, so it works on a segment a running [`Log`](crate::Log)
/// is appending to. Errors (naming the path) when `log_file` is not named `<base offset>.log`,
/// cannot be opened, or its directory cannot be listed; everything wrong inside the files is a
/// [`Finding`].
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{Log, Record, TopicConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path())?;
/// log.create_topic("orders", TopicConfig::default())?;
/// log.partition("orders", 0)?.append(&[Record::new("a")])?;
///
/// let segment = dir.path().join("orders-0/00000000000000000000.log");
/// let report = annals::verify_segment(&segment)?;
/// assert!(report.is_clean(), "{:?}", report.damage);
/// assert_eq!(report.batches_checked, 1);
/// # Ok(()) }
/// ```
pub fn verify_segment(log_file: impl AsRef<Path>) -> Result<VerifyReport> {
    let path = log_file.as_ref();
    let base_offset = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| parse_file_name(n, "log"))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{}: not a segment file (a .log named by its base offset in 20 digits)",
                path.display()
            ))
        })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let storage = ContextStorage::wrap(FsStorage::new());
    let seg = SegmentFile {
        base_offset,
        path: path.to_path_buf(),
        file: storage.open(path, crate::storage::OpenMode::Read)?,
    };
    // From a listing, not by opening the later segments: a partition may have thousands.
    let next_base = segment_set::listing(&*storage, dir)?
        .into_iter()
        .map(|(base, _)| base)
        .find(|&base| base > base_offset);
    let mut report = VerifyReport::default();
    let check = SegmentCheck {
        storage: &*storage,
        seg: &seg,
        next_base,
        bounds: PartitionBounds::load(&*storage, dir, &mut report),
    };
    check.run(&mut report, None, &mut |_| {});
    Ok(report)
}

/// What a partition's metadata files tell the check of its segments.
#[derive(Debug, Clone, Copy)]
struct PartitionBounds {
    /// Offsets below it may be missing: compaction removed them.
    cleaned_end: u64,
    /// The newest segment's data below it was synced, so a bad tail there is damage.
    recovery_point: u64,
}

impl PartitionBounds {
    /// From `partition.bounds` and `partition.ckpt` in `dir`; 0 for an absent or damaged one
    /// (the damage is a finding).
    fn load(storage: &dyn Storage, dir: &Path, report: &mut VerifyReport) -> PartitionBounds {
        let cleaned_end = match load_bounds(storage, dir) {
            Ok(bounds) => bounds.map_or(0, |b| b.cleaned_end),
            Err(e) => {
                report.damage(&dir.join(crate::meta::BOUNDS_FILE), None, e.to_string());
                0
            }
        };
        report.files_checked += 1;
        let recovery_point = match load_checkpoint(storage, dir) {
            Ok(c) => c.map_or(0, |c| c.recovery_point),
            Err(e) => {
                report.damage(&dir.join(crate::meta::CHECKPOINT_FILE), None, e.to_string());
                0
            }
        };
        report.files_checked += 1;
        PartitionBounds {
            cleaned_end,
            recovery_point,
        }
    }
}

/// The valid entries of an index file (none when it is absent: annals rebuilds a missing
/// index), and a finding for bytes after them that are not zero fill.
fn read_index<T>(
    storage: &dyn Storage,
    report: &mut VerifyReport,
    path: &Path,
    parse: fn(&[u8]) -> IndexEntries<T>,
) -> Vec<T> {
    let bytes = match read_whole(storage, path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            report.damage(path, None, e.to_string());
            return Vec::new();
        }
    };
    report.files_checked += 1;
    let index = parse(&bytes);
    if let Some(stray) = index.stray {
        report.damage(path, Some(stray.position), stray.to_string());
    }
    index.entries
}

/// The check of one segment file and its two indexes.
struct SegmentCheck<'a> {
    storage: &'a dyn Storage,
    seg: &'a SegmentFile,
    next_base: Option<u64>,
    bounds: PartitionBounds,
}

impl SegmentCheck<'_> {
    /// Checks the segment; returns the offset after its last batch (or `prev_next` if it has
    /// none), for the next segment's continuity check.
    fn run(
        &self,
        report: &mut VerifyReport,
        prev_next: Option<u64>,
        progress: &mut dyn FnMut(u64),
    ) -> Option<u64> {
        let (seg, path) = (self.seg, self.seg.path.as_path());
        let base = seg.base_offset;
        report.files_checked += 1;
        // The indexes before the segment's length: an owner adds an entry only after writing
        // its batch, so every entry read names a batch below the length read after it.
        let index_path = path.with_file_name(file_name(base, "index"));
        // Each entry as (offset, position in the log, its own byte in the index).
        let mut offsets = read_index(self.storage, report, &index_path, offset_index_entries)
            .into_iter()
            .zip((0..).step_by(OFFSET_INDEX_ENTRY_LEN))
            .map(|(e, at): (OffsetIndexEntry, u64)| {
                (
                    base + u64::from(e.relative_offset),
                    u64::from(e.position),
                    at,
                )
            })
            .peekable();
        let time_path = path.with_file_name(file_name(base, "timeindex"));
        let mut times = read_index(self.storage, report, &time_path, time_index_entries)
            .into_iter()
            .zip((0..).step_by(TIME_INDEX_ENTRY_LEN))
            .map(|(e, at): (TimeIndexEntry, u64)| {
                (base + u64::from(e.relative_offset), e.timestamp, at)
            })
            .peekable();
        let end = match seg.file.len() {
            Ok(len) => len,
            Err(e) => {
                report.damage(path, None, e.to_string());
                return prev_next;
            }
        };
        let mut next = prev_next;
        let mut seen = 0u64;
        let mut max_ts = i64::MIN;
        let mut records = Vec::new();
        let mut cursor = BatchCursor::new(&*seg.file, 0, end, READ_CHUNK);
        let newest = self.next_base.is_none();
        loop {
            let here = cursor.position();
            let found = match cursor.next_header() {
                Ok(n) => n,
                Err(e) => {
                    report.damage(path, Some(here), e.to_string());
                    break;
                }
            };
            let (position, what) = match found {
                Next::End => break,
                Next::Batch(b) => {
                    let h = &b.header;
                    let body = match cursor.body(&b, 0) {
                        Ok(body) => body,
                        Err(e) => {
                            report.damage(path, Some(b.position), e.to_string());
                            break;
                        }
                    };
                    progress(b.len as u64);
                    seen += b.len as u64;
                    report.bytes_checked += b.len as u64;
                    report.batches_checked += 1;
                    records.clear();
                    let valid = verify_crc(&body).and_then(|()| {
                        decode_batch(&body, 0, usize::MAX, &mut records).map(|_| ())
                    });
                    if let Err(e) = valid {
                        (b.position, e.to_string())
                    } else if h.base_offset < base
                        || self.next_base.is_some_and(|n| h.last_offset() >= n)
                    {
                        (
                            b.position,
                            format!(
                                "batch offsets {}..={} are outside the segment's range",
                                h.base_offset,
                                h.last_offset()
                            ),
                        )
                    } else if next.is_some_and(|n| h.base_offset < n) {
                        (
                            b.position,
                            format!(
                                "batch offset {} does not follow the previous batch's end {}",
                                h.base_offset,
                                next.unwrap_or(0)
                            ),
                        )
                    } else {
                        if let Some(n) = next.filter(|&n| h.base_offset > n) {
                            // Compaction removes records below `cleaned_end` only.
                            if n >= self.bounds.cleaned_end {
                                report.damage(path, Some(b.position), format!(
                                    "offsets {n}..{} are missing outside the compacted range (below {})",
                                    h.base_offset, self.bounds.cleaned_end
                                ));
                            }
                        }
                        next = Some(h.last_offset() + 1);
                        max_ts = max_ts.max(h.max_timestamp);
                        while let Some((offset, position, at)) =
                            offsets.next_if(|&(_, p, _)| p <= b.position)
                        {
                            if position < b.position {
                                report.damage(
                                    &index_path,
                                    Some(at),
                                    format!(
                                    "entry for offset {} points at byte {}, which is not a batch",
                                    offset, position
                                ),
                                );
                            } else if offset != h.last_offset() {
                                report.damage(
                                    &index_path,
                                    Some(at),
                                    format!(
                                    "entry at byte {} names offset {}, the batch there ends at {}",
                                    position, offset, h.last_offset()
                                ),
                                );
                            }
                        }
                        while let Some((offset, timestamp, at)) =
                            times.next_if(|&(o, _, _)| o <= h.last_offset())
                        {
                            if offset != h.last_offset() {
                                report.damage(
                                    &time_path,
                                    Some(at),
                                    format!(
                                        "entry for offset {offset} names no batch's last offset"
                                    ),
                                );
                            } else if timestamp != max_ts {
                                report.damage(&time_path, Some(at), format!(
                                    "entry for offset {offset} says timestamp {timestamp}, the largest up to there is {max_ts}"
                                ));
                            }
                        }
                        continue;
                    }
                }
                Next::Torn { position, torn } => (position, torn.reason().to_string()),
                Next::Invalid { position, reason } => (position, reason),
            };
            // Past the recovery point of the newest segment, a bad tail is what an owner's
            // write in progress or a crash leaves (the next open truncates it); below it, the
            // bytes were synced and are damaged. Before the first batch, the offset reached is
            // the segment's base.
            if newest && next.unwrap_or(base) >= self.bounds.recovery_point {
                report.notes.push(Finding {
                    path: path.to_path_buf(),
                    position: Some(position),
                    what: format!("torn tail ({what}): a write in progress or a crash's, which the next open truncates"),
                });
            } else {
                report.damage(path, Some(position), what);
            }
            break;
        }
        // What damage kept the check from reading still counts as gone through.
        progress(end.saturating_sub(seen));
        if seen < end {
            // Entries past a damaged place cannot be checked against anything.
            return next;
        }
        for (offset, position, at) in offsets {
            report.damage(
                &index_path,
                Some(at),
                format!(
                    "entry for offset {offset} points at byte {position}, past the segment's valid batches"
                ),
            );
        }
        for (offset, _, at) in times {
            report.damage(
                &time_path,
                Some(at),
                format!("entry for offset {offset} is past the segment's valid batches"),
            );
        }
        next
    }
}
