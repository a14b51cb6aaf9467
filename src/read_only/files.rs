//! The segment files a read-only reader holds and the one walk over their batches.
//!
//! What is torn, invalid or fails its CRC at the end of the newest segment is the owner's
//! write in flight (or a crash's torn tail, which the owner's next open truncates): the walk
//! stops there and tries again on the next call. The same in any older segment is damage
//! (`Error::Corrupt`). A batch the walk hands out is whole and CRC-valid: the bytes below the
//! length a reader sees are final, since a write extends the file only as far as it has
//! copied.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::segment_set::{open, SegmentFile, Select};
use crate::error::{Error, Result};
use crate::format::{verify_crc, HEADER_LEN};
use crate::meta::Reader;
use crate::segment::{file_name, BatchAt, BatchCursor, Next};
use crate::storage::{with_path, OpenMode, Storage, StorageFile};

/// Bytes a walk reads at once.
const READ_CHUNK: usize = 256 << 10;
/// Bytes of one `.index` entry: relative offset and position, both `u32` big-endian.
const INDEX_ENTRY: u64 = 8;

/// A place in the partition: the segment (by base offset) and a batch boundary in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    pub base: u64,
    pub byte: u64,
}

/// What a walk's visitor does with the batch it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Move past it and go on.
    Take,
    /// Move past it and stop.
    TakeAndStop,
    /// Stop in front of it.
    Stop,
}

/// Damage found where the newest segment's data ends, kept for the caller to report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TailDamage {
    /// The segment file.
    pub path: PathBuf,
    /// Byte position of the first byte that is not a whole, valid batch.
    pub position: u64,
    /// What is wrong there.
    pub reason: String,
}

#[derive(Debug)]
pub(super) struct Files {
    pub storage: Arc<dyn Storage>,
    pub dir: PathBuf,
    /// Sorted by base offset; the first is the one the reader is in.
    pub segments: VecDeque<SegmentFile>,
    pub tail_damage: Option<TailDamage>,
}

impl Files {
    pub fn open(storage: Arc<dyn Storage>, dir: PathBuf, select: Select) -> Result<Files> {
        let segments = open(&*storage, &dir, select)?.into();
        Ok(Files {
            storage,
            dir,
            segments,
            tail_damage: None,
        })
    }

    fn index_of(&self, base: u64) -> Option<usize> {
        self.segments.iter().position(|s| s.base_offset == base)
    }

    /// Opens the segments a roll added after the newest one held; whether there were any.
    fn discover(&mut self) -> Result<bool> {
        let newest = self.segments.back().map_or(0, |s| s.base_offset);
        let select = if self.segments.is_empty() {
            Select::From(0)
        } else {
            Select::After(newest)
        };
        let found = open(&*self.storage, &self.dir, select)?;
        let any = !found.is_empty();
        self.segments.extend(found);
        Ok(any)
    }

    /// Drops the segments wholly behind `loc` (a reader never goes back without a seek, which
    /// opens afresh), so their files can be freed once the owner deletes them.
    pub fn release_before(&mut self, loc: Loc) {
        while self.segments.len() > 1 && self.segments[0].base_offset < loc.base {
            self.segments.pop_front();
        }
    }

    /// Where the first batch of the segment `seg` whose last offset is at or after `target`
    /// might start, from the segment's `.index`: the position of the last entry whose offset is
    /// below `target` (that batch ends before it), checked against the batch there. 0 when
    /// there is no usable entry.
    fn index_floor(&self, seg: &SegmentFile, target: u64) -> u64 {
        let path = self.dir.join(file_name(seg.base_offset, "index"));
        let Ok(index) = self.storage.open(&path, OpenMode::Read) else {
            return 0;
        };
        let Ok(len) = index.len() else { return 0 };
        let entry = |i: u64| -> Option<(u64, u64)> {
            let mut buf = [0u8; INDEX_ENTRY as usize];
            crate::storage::read_exact_at(&*index, &mut buf, i * INDEX_ENTRY).ok()?;
            let mut r = Reader::new(&buf);
            let (rel, pos) = (r.u32().ok()?, r.u32().ok()?);
            (pos > 0).then_some((seg.base_offset + u64::from(rel), u64::from(pos)))
        };
        // Entries fill the file from the front; zeros (position 0) follow the last one. Find
        // the last entry whose offset is below the target.
        let (mut lo, mut hi) = (0u64, len / INDEX_ENTRY);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match entry(mid) {
                Some((offset, _)) if offset < target => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let Some((offset, pos)) = lo.checked_sub(1).and_then(entry) else {
            return 0;
        };
        // Trust the entry only if the batch there is the one it names.
        let mut head = [0u8; HEADER_LEN];
        let names_it = crate::storage::read_exact_at(&*seg.file, &mut head, pos).is_ok()
            && crate::format::BatchHeader::parse(&head).is_ok_and(|h| h.last_offset() == offset);
        if names_it {
            pos
        } else {
            0
        }
    }

    /// The place of the first batch whose last offset is at or after `target`, or of the end
    /// of the data if there is none (the place a batch appended later would start).
    pub fn locate(&mut self, target: u64) -> Result<Option<Loc>> {
        let Some(seg) = self
            .segments
            .iter()
            .rev()
            .find(|s| s.base_offset <= target)
            .or(self.segments.front())
            .cloned()
        else {
            return Ok(None);
        };
        let mut at = Loc {
            base: seg.base_offset,
            byte: self.index_floor(&seg, target),
        };
        self.walk(&mut at, |b, _| {
            Ok(if b.header.last_offset() < target {
                Step::Take
            } else {
                Step::Stop
            })
        })?;
        Ok(Some(at))
    }

    /// The offset after the newest whole batch: the newest segment's data walked from its
    /// index's last entry.
    pub fn end_offset(&mut self) -> Result<u64> {
        let Some(newest) = self.segments.back().cloned() else {
            return Ok(0);
        };
        let mut end = newest.base_offset;
        let mut at = Loc {
            base: newest.base_offset,
            byte: self.index_floor(&newest, u64::MAX),
        };
        self.walk(&mut at, |b, _| {
            end = end.max(b.header.last_offset() + 1);
            Ok(Step::Take)
        })?;
        Ok(end)
    }

    /// Shows `visit` every whole, valid batch from `at` on, in order across segments, moving
    /// `at` past each batch it takes, until it stops or the data ends.
    pub fn walk(
        &mut self,
        at: &mut Loc,
        mut visit: impl FnMut(&BatchAt, &Bytes) -> Result<Step>,
    ) -> Result<()> {
        'segment: loop {
            let Some(i) = self.index_of(at.base) else {
                return Ok(());
            };
            let (base, path, file): (u64, PathBuf, Arc<dyn StorageFile>) = {
                let s = &self.segments[i];
                (s.base_offset, s.path.clone(), s.file.clone())
            };
            let next_base = self.segments.get(i + 1).map(|s| s.base_offset);
            let newest = next_base.is_none();
            let end = file
                .len()
                .map_err(|e| with_path(e, "read the length of", &path))?;
            let mut cursor = BatchCursor::new(&*file, at.byte, end, READ_CHUNK);
            loop {
                let next = cursor
                    .next_header()
                    .map_err(|e| with_path(e, "read", &path))?;
                let damage = match next {
                    Next::Batch(b) => {
                        let body = cursor
                            .body(&b, 0)
                            .map_err(|e| with_path(e, "read", &path))?;
                        let h = &b.header;
                        let problem = match verify_crc(&body) {
                            Err(e) => Some(e.to_string()),
                            Ok(()) if h.base_offset < base => Some(format!(
                                "batch offset {} is below the segment's base offset {base}",
                                h.base_offset
                            )),
                            Ok(()) if next_base.is_some_and(|n| h.last_offset() >= n) => {
                                Some(format!(
                                    "batch reaches offset {}, into the next segment",
                                    h.last_offset()
                                ))
                            }
                            Ok(()) => None,
                        };
                        match problem {
                            Some(reason) => (b.position, reason),
                            None => match visit(&b, &body)? {
                                step @ (Step::Take | Step::TakeAndStop)
                                    if self.tail_damage.as_ref().is_some_and(|d| {
                                        d.path == path && d.position <= b.position
                                    }) =>
                                {
                                    // The write that was in flight there has landed.
                                    self.tail_damage = None;
                                    at.byte = b.end();
                                    if step == Step::TakeAndStop {
                                        return Ok(());
                                    }
                                    continue;
                                }
                                Step::Take => {
                                    at.byte = b.end();
                                    continue;
                                }
                                Step::TakeAndStop => {
                                    at.byte = b.end();
                                    return Ok(());
                                }
                                Step::Stop => return Ok(()),
                            },
                        }
                    }
                    Next::End if newest => {
                        // A roll publishes a new segment only after the last write to this
                        // one, so once one exists this segment's end is final: read it again.
                        if self.discover()? {
                            continue 'segment;
                        }
                        return Ok(());
                    }
                    Next::End => {
                        *at = Loc {
                            base: next_base.unwrap_or(base),
                            byte: 0,
                        };
                        continue 'segment;
                    }
                    Next::Torn { position, torn } => (position, torn.reason().to_string()),
                    Next::Invalid { position, reason } => (position, reason),
                };
                let (position, reason) = damage;
                // The newest segment's damage is final only once a later segment exists.
                if newest && self.discover()? {
                    continue 'segment;
                }
                if newest {
                    self.tail_damage = Some(TailDamage {
                        path,
                        position,
                        reason,
                    });
                    return Ok(());
                }
                return Err(Error::Corrupt {
                    segment: path,
                    position,
                    reason,
                });
            }
        }
    }
}
