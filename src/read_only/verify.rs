//! [`ReadOnlyLog::verify`]: a full check of a log's files — every batch's CRC and records,
//! offsets in order and inside their segment, every offset- and time-index entry against the
//! batch it names, and every metadata file's checksum — that reports each finding with its file
//! and byte instead of stopping at the first.

use std::path::{Path, PathBuf};

use super::segment_set::{self, SegmentFile, Select};
use super::ReadOnlyLog;
use crate::error::Result;
use crate::format::{decode_batch, verify_crc};
use crate::meta::{decode_producer_ids, load_bounds, load_checkpoint, PRODUCER_IDS_FILE};
use crate::partition::partition_dir_name;
use crate::segment::{file_name, BatchCursor, Next};
use crate::storage::{read_whole, OpenMode};

/// Bytes a check reads at once.
const READ_CHUNK: usize = 1 << 20;

/// One thing [`ReadOnlyLog::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    pub path: PathBuf,
    /// The byte in the file, where one applies.
    pub position: Option<u64>,
    pub what: String,
}

/// What [`ReadOnlyLog::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// An index entry: the offset (or timestamp) it names and the position it points at.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    position: u64,
    timestamp: i64,
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
        let mut sets = Vec::new();
        let mut total = 0;
        for (topic, partition) in &partitions {
            let dir = self.dir.join(partition_dir_name(topic, *partition));
            match segment_set::open(&*self.storage, &dir, Select::From(0)) {
                Ok(files) => {
                    for f in &files {
                        total += f.file.len().unwrap_or(0);
                    }
                    sets.push((dir, files));
                }
                Err(e) => report.damage(&dir, None, format!("cannot list the partition: {e}")),
            }
        }
        let mut done = 0;
        progress(done, total);
        for (dir, files) in sets {
            let cleaned_end = match load_bounds(&*self.storage, &dir) {
                Ok(bounds) => bounds.map_or(0, |b| b.cleaned_end),
                Err(e) => {
                    report.damage(&dir.join(crate::meta::BOUNDS_FILE), None, e.to_string());
                    0
                }
            };
            report.files_checked += 1;
            let recovery_point = match load_checkpoint(&*self.storage, &dir) {
                Ok(c) => c.map_or(0, |c| c.recovery_point),
                Err(e) => {
                    report.damage(&dir.join(crate::meta::CHECKPOINT_FILE), None, e.to_string());
                    0
                }
            };
            report.files_checked += 1;
            let mut next_offset: Option<u64> = None;
            for (i, seg) in files.iter().enumerate() {
                let next_base = files.get(i + 1).map(|s| s.base_offset);
                let check = SegmentCheck {
                    log: self,
                    dir: &dir,
                    seg,
                    next_base,
                    cleaned_end,
                    recovery_point,
                };
                next_offset = check.run(&mut report, next_offset, &mut |n| {
                    done += n;
                    progress(done, total);
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

    /// The leading run of valid entries of an index file (`entry_len` bytes each, decoded by
    /// `decode`), and a finding for anything but zeros after it.
    fn read_index(
        &self,
        report: &mut VerifyReport,
        path: &Path,
        entry_len: usize,
        decode: impl Fn(&[u8]) -> Option<Entry>,
        increasing: impl Fn(&Entry, &Entry) -> bool,
    ) -> Vec<Entry> {
        let bytes = match self.storage.open(path, OpenMode::Read) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                report.damage(path, None, e.to_string());
                return Vec::new();
            }
            Ok(_) => match read_whole(&*self.storage, path) {
                Ok(b) => b,
                Err(e) => {
                    report.damage(path, None, e.to_string());
                    return Vec::new();
                }
            },
        };
        report.files_checked += 1;
        let mut entries: Vec<Entry> = Vec::new();
        let mut chunks = bytes.chunks(entry_len);
        for chunk in chunks.by_ref() {
            match decode(chunk) {
                Some(e) if entries.last().is_none_or(|last| increasing(last, &e)) => {
                    entries.push(e)
                }
                _ => {
                    if chunk.iter().any(|&b| b != 0) {
                        let at = (entries.len() * entry_len) as u64;
                        report.damage(
                            path,
                            Some(at),
                            format!("entry {} does not continue the index", entries.len()),
                        );
                    }
                    break;
                }
            }
        }
        let rest: usize = chunks.map(<[u8]>::len).sum();
        let tail = &bytes[bytes.len() - rest..];
        if let Some(i) = tail.iter().position(|&b| b != 0) {
            let at = (bytes.len() - rest + i) as u64;
            report.damage(path, Some(at), "bytes after the index's last entry");
        }
        entries
    }
}

/// The check of one segment file and its two indexes.
struct SegmentCheck<'a> {
    log: &'a ReadOnlyLog,
    dir: &'a Path,
    seg: &'a SegmentFile,
    next_base: Option<u64>,
    cleaned_end: u64,
    recovery_point: u64,
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
        let index_path = self.dir.join(file_name(base, "index"));
        let mut offsets = self
            .log
            .read_index(
                report,
                &index_path,
                8,
                |c| {
                    let rel = u32::from_be_bytes(c.get(..4)?.try_into().ok()?);
                    let pos = u32::from_be_bytes(c.get(4..8)?.try_into().ok()?);
                    (pos > 0).then_some(Entry {
                        offset: base + u64::from(rel),
                        position: u64::from(pos),
                        timestamp: 0,
                    })
                },
                |a, b| b.offset > a.offset && b.position > a.position,
            )
            .into_iter()
            .peekable();
        let time_path = self.dir.join(file_name(base, "timeindex"));
        let mut times = self
            .log
            .read_index(
                report,
                &time_path,
                12,
                |c| {
                    let ts = i64::from_be_bytes(c.get(..8)?.try_into().ok()?);
                    let rel = u32::from_be_bytes(c.get(8..12)?.try_into().ok()?);
                    // An all-zero entry is the preallocated space after the last one.
                    (c.iter().any(|&b| b != 0)).then_some(Entry {
                        offset: base + u64::from(rel),
                        position: 0,
                        timestamp: ts,
                    })
                },
                |a, b| b.timestamp > a.timestamp,
            )
            .into_iter()
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
                            if n >= self.cleaned_end {
                                report.damage(path, Some(b.position), format!(
                                    "offsets {n}..{} are missing outside the compacted range (below {})",
                                    h.base_offset, self.cleaned_end
                                ));
                            }
                        }
                        next = Some(h.last_offset() + 1);
                        max_ts = max_ts.max(h.max_timestamp);
                        while let Some(e) = offsets.next_if(|e| e.position <= b.position) {
                            if e.position < b.position {
                                report.damage(
                                    &index_path,
                                    None,
                                    format!(
                                    "entry for offset {} points at byte {}, which is not a batch",
                                    e.offset, e.position
                                ),
                                );
                            } else if e.offset != h.last_offset() {
                                report.damage(
                                    &index_path,
                                    None,
                                    format!(
                                    "entry at byte {} names offset {}, the batch there ends at {}",
                                    e.position, e.offset, h.last_offset()
                                ),
                                );
                            }
                        }
                        while let Some(e) = times.next_if(|e| e.offset <= h.last_offset()) {
                            if e.offset != h.last_offset() {
                                report.damage(
                                    &time_path,
                                    None,
                                    format!(
                                        "entry for offset {} names no batch's last offset",
                                        e.offset
                                    ),
                                );
                            } else if e.timestamp != max_ts {
                                report.damage(&time_path, None, format!(
                                    "entry for offset {} says timestamp {}, the largest up to there is {max_ts}",
                                    e.offset, e.timestamp
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
            // bytes were synced and are damaged.
            if newest && next.is_none_or(|n| n >= self.recovery_point) {
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
        for e in offsets {
            report.damage(
                &index_path,
                None,
                format!(
                    "entry for offset {} points at byte {}, past the segment's valid batches",
                    e.offset, e.position
                ),
            );
        }
        for e in times {
            report.damage(
                &time_path,
                None,
                format!(
                    "entry for offset {} is past the segment's valid batches",
                    e.offset
                ),
            );
        }
        next
    }
}
