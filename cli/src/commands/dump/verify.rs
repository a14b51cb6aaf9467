//! `--verify-index`: each entry of a segment's `.index` and `.timeindex` checked against the
//! batches of its `.log` (docs/FORMAT.md):
//!
//! - an offset-index entry `(relative offset, position)` must name a byte where a batch starts,
//!   and that batch must end at `base + relative offset`;
//! - a time-index entry `(timestamp, relative offset)` must name the last offset of a batch
//!   whose max timestamp is `timestamp`, and no earlier batch may carry a larger one (the entry
//!   holds the largest timestamp so far).
//!
//! The index files are read before the `.log` is opened: a running writer adds an entry only
//! after its batch is written, so every entry read refers to a batch the later read of the log
//! sees. The check walks the entries in step with the batches (both are in order), so it needs
//! no more memory than the index files.

use std::io;
use std::path::{Path, PathBuf};

use annals::format::BatchHeader;

use super::files::{Kind, SegmentFile};
use super::index::{offset_entries, time_entries, Entries, OffsetEntry, TimeEntry};
use crate::exit::Failure;

/// What the check found for one index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Every entry matched.
    Verified { index: PathBuf, entries: usize },
    /// The file is absent (annals rebuilds a missing index when it opens the log).
    Missing { index: PathBuf },
    /// An entry (or, without `entry`, the file) does not match the log.
    Mismatch {
        index: PathBuf,
        entry: Option<usize>,
        reason: String,
    },
}

/// One loaded index file and where the walk is in it.
#[derive(Debug)]
struct Loaded<T> {
    path: PathBuf,
    entries: Entries<T>,
    next: usize,
    mismatches: Vec<Finding>,
}

impl<T> Loaded<T> {
    fn mismatch(&mut self, entry: usize, reason: String) {
        self.mismatches.push(Finding::Mismatch {
            index: self.path.clone(),
            entry: Some(entry),
            reason,
        });
    }

    fn into_findings(self) -> Vec<Finding> {
        let mut findings: Vec<Finding> = self
            .entries
            .problems
            .iter()
            .map(|reason| Finding::Mismatch {
                index: self.path.clone(),
                entry: None,
                reason: reason.clone(),
            })
            .collect();
        let clean = findings.is_empty() && self.mismatches.is_empty();
        findings.extend(self.mismatches);
        if clean {
            findings.push(Finding::Verified {
                index: self.path,
                entries: self.entries.valid.len(),
            });
        }
        findings
    }
}

/// One index file of the check.
#[derive(Debug)]
enum Slot<T> {
    Loaded(Loaded<T>),
    /// No such file.
    Missing(PathBuf),
    /// Not asked for.
    Skipped,
}

impl<T> Slot<T> {
    fn loaded(&mut self) -> Option<&mut Loaded<T>> {
        match self {
            Slot::Loaded(index) => Some(index),
            _ => None,
        }
    }
}

/// The check of one segment's index files, fed the segment's batches in order.
#[derive(Debug)]
pub struct IndexCheck {
    base: u64,
    offset: Slot<OffsetEntry>,
    time: Slot<TimeEntry>,
    /// The batch seen last: position, end position and last offset.
    previous: Option<(u64, u64, u64)>,
    /// The largest max timestamp of the batches seen so far.
    max_timestamp: Option<i64>,
}

impl IndexCheck {
    /// Reads the `.index` and `.timeindex` beside `log` (which `kinds` names: both, or the one
    /// being dumped).
    pub fn load(log: &SegmentFile, kinds: &[Kind]) -> Result<IndexCheck, Failure> {
        let want = |k| kinds.contains(&k);
        let offset = if want(Kind::OffsetIndex) {
            read_index(&log.sibling(Kind::OffsetIndex), offset_entries)?
        } else {
            Slot::Skipped
        };
        let time = if want(Kind::TimeIndex) {
            read_index(&log.sibling(Kind::TimeIndex), time_entries)?
        } else {
            Slot::Skipped
        };
        Ok(IndexCheck {
            base: log.base_or_zero(),
            offset,
            time,
            previous: None,
            max_timestamp: None,
        })
    }

    /// The next batch of the log, at `position`.
    pub fn batch(&mut self, position: u64, header: &BatchHeader) {
        let end = position + header.total_len() as u64;
        let last = header.last_offset();
        if let Some(index) = self.offset.loaded() {
            while let Some(&(rel, pos)) = index.entries.valid.get(index.next) {
                let pos = u64::from(pos);
                if pos > position {
                    break;
                }
                let i = index.next;
                index.next += 1;
                if pos < position {
                    let reason = match self.previous {
                        Some((start, prev_end, _)) if pos > start && pos < prev_end => format!(
                            "byte {pos} is inside the batch at position {start}, not at its start"
                        ),
                        _ => format!("no batch starts at byte {pos}"),
                    };
                    index.mismatch(i, reason);
                    continue;
                }
                let said = self.base + u64::from(rel);
                if said != last {
                    index.mismatch(
                        i,
                        format!(
                            "it says offset {said}, but the batch at position {pos} ends at \
                             offset {last}"
                        ),
                    );
                }
            }
        }
        if let Some(index) = self.time.loaded() {
            while let Some(&(ts, rel)) = index.entries.valid.get(index.next) {
                let said = self.base + u64::from(rel);
                if said > last {
                    break;
                }
                let i = index.next;
                index.next += 1;
                if said < last {
                    // Entries up to the previous batch's last offset were taken with it.
                    let first = header.base_offset;
                    let reason = if said >= first {
                        format!(
                            "offset {said} is inside the batch of offsets {first}..={last}, not \
                             its last offset"
                        )
                    } else {
                        format!("no batch ends at offset {said}")
                    };
                    index.mismatch(i, reason);
                    continue;
                }
                if ts != header.max_timestamp {
                    index.mismatch(
                        i,
                        format!(
                            "it says timestamp {ts}, but the batch ending at offset {last} has \
                             max timestamp {}",
                            header.max_timestamp
                        ),
                    );
                } else if let Some(earlier) = self.max_timestamp.filter(|&m| m > ts) {
                    index.mismatch(
                        i,
                        format!(
                            "timestamp {ts} is below the max timestamp {earlier} of an earlier \
                             batch (an entry holds the largest timestamp so far)"
                        ),
                    );
                }
            }
        }
        self.max_timestamp = Some(
            self.max_timestamp
                .map_or(header.max_timestamp, |m| m.max(header.max_timestamp)),
        );
        self.previous = Some((position, end, last));
    }

    /// Entries past the last batch, then one finding per index file.
    pub fn finish(self, log_len: u64) -> Vec<Finding> {
        let last_end = self.previous.map_or(0, |(_, end, _)| end);
        let last_offset = self.previous.map(|(_, _, last)| last);
        let mut findings = Vec::new();
        match self.offset {
            Slot::Loaded(mut index) => {
                while let Some(&(_, pos)) = index.entries.valid.get(index.next) {
                    let i = index.next;
                    index.next += 1;
                    index.mismatch(
                        i,
                        format!(
                            "byte {pos} is past the last whole batch of the log (which ends at \
                             byte {last_end} of {log_len})"
                        ),
                    );
                }
                findings.extend(index.into_findings());
            }
            Slot::Missing(index) => findings.push(Finding::Missing { index }),
            Slot::Skipped => {}
        }
        match self.time {
            Slot::Loaded(mut index) => {
                while let Some(&(_, rel)) = index.entries.valid.get(index.next) {
                    let i = index.next;
                    index.next += 1;
                    let said = self.base + u64::from(rel);
                    let reason = match last_offset {
                        Some(last) => format!("offset {said} is past the log's last offset {last}"),
                        None => format!("offset {said} is named, but the log holds no batch"),
                    };
                    index.mismatch(i, reason);
                }
                findings.extend(index.into_findings());
            }
            Slot::Missing(index) => findings.push(Finding::Missing { index }),
            Slot::Skipped => {}
        }
        findings
    }
}

/// The entries of the index at `path`.
fn read_index<T>(path: &Path, parse: impl Fn(&[u8]) -> Entries<T>) -> Result<Slot<T>, Failure> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Slot::Loaded(Loaded {
            path: path.to_path_buf(),
            entries: parse(&bytes),
            next: 0,
            mismatches: Vec::new(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Slot::Missing(path.to_path_buf())),
        Err(e) => Err(Failure::at("read", path, e)),
    }
}
