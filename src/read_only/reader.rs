//! [`PartitionReader`]: reads one partition of a log another process may own and be writing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{Files, Loc, Step, TailDamage};
use super::segment_set::Select;
use super::txn_scan::TxnScan;
use crate::error::{Error, Result};
use crate::format::{decode_batch, StoredRecord};
use crate::meta::{load_bounds, load_checkpoint};
use crate::partition::{IsolationLevel, ProducerStates};
use crate::storage::Storage;

/// Reads one partition of a log opened with [`Log::open_read_only`](crate::Log::open_read_only),
/// following it as its owner appends: each [`poll`](Self::poll) looks for what was written since
/// the last one.
///
/// It sees whole, CRC-valid batches as soon as the owner has written them (before they are
/// fsynced, as a Kafka consumer sees a broker's unflushed log), and holds open only the segment
/// it is in and the later ones, so segments the owner deletes behind it are freed.
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{IsolationLevel, Log, Record, TopicConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let owner = Log::open(dir.path())?;
/// owner.create_topic("orders", TopicConfig::default())?;
/// owner.partition("orders", 0)?.append(&[Record::new("one")])?;
///
/// let view = Log::open_read_only(dir.path())?; // the owner keeps the lock
/// let mut reader = view.reader("orders", 0, IsolationLevel::ReadCommitted)?;
/// assert_eq!(reader.poll(1 << 20)?[0].value_str(), Some("one"));
/// owner.partition("orders", 0)?.append(&[Record::new("two")])?;
/// assert_eq!(reader.poll(1 << 20)?[0].offset, 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PartitionReader {
    topic: String,
    partition: u32,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    isolation: IsolationLevel,
    max_uncompressed: usize,
    /// The next offset to hand out.
    position: u64,
    /// Opened and located at the first poll after a seek.
    state: Option<Located>,
}

#[derive(Debug)]
struct Located {
    files: Files,
    /// Where the first batch at or after `position` starts (or the data ends).
    loc: Loc,
    /// Read committed only.
    txn: Option<TxnScan>,
}

impl PartitionReader {
    pub(super) fn new(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        topic: &str,
        partition: u32,
        isolation: IsolationLevel,
        max_uncompressed: usize,
    ) -> Result<PartitionReader> {
        let mut reader = PartitionReader {
            topic: topic.to_string(),
            partition,
            dir,
            storage,
            isolation,
            max_uncompressed,
            position: 0,
            state: None,
        };
        reader.position = reader.log_start_offset()?;
        Ok(reader)
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition read.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The next offset [`poll`](Self::poll) hands out (or waits for).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads from `offset` on at the next poll.
    pub fn seek(&mut self, offset: u64) {
        self.position = offset;
        self.state = None;
    }

    /// The first offset not deleted by retention or `delete_records`, as the owner last made
    /// it durable.
    pub fn log_start_offset(&self) -> Result<u64> {
        if let Some(bounds) = load_bounds(&*self.storage, &self.dir)? {
            return Ok(bounds.log_start_offset);
        }
        // A partition whose start never moved: its oldest segment's base (0 for a new one).
        match super::segment_set::first_base(&*self.storage, &self.dir) {
            Ok(base) => Ok(base.unwrap_or(0)),
            Err(e) => Err(self.missing_as_unknown(e)),
        }
    }

    fn open_files(&self, select: Select) -> Result<Files> {
        Files::open(self.storage.clone(), self.dir.clone(), select)
            .map_err(|e| self.missing_as_unknown(e))
    }

    fn missing_as_unknown(&self, e: Error) -> Error {
        if e.io_kind() == Some(std::io::ErrorKind::NotFound) {
            // Named in topics.meta but gone: deleted since the caller looked.
            Error::UnknownTopic {
                topic: self.topic.clone(),
            }
        } else {
            e
        }
    }

    /// Opens the segments from the position on and finds the position in them; under read
    /// committed also starts the scan for open and aborted transactions.
    fn locate(&mut self) -> Result<&mut Located> {
        if self.state.is_none() {
            let mut scan_from = self.position;
            let mut open = Vec::new();
            if self.isolation == IsolationLevel::ReadCommitted {
                // The checkpoint knows which transactions were open at its recovery point:
                // scanning from there is exact.
                if let Some(c) = load_checkpoint(&*self.storage, &self.dir)? {
                    if c.recovery_point <= self.position {
                        if let Ok(states) = ProducerStates::decode(&c.producers, i64::MAX) {
                            scan_from = c.recovery_point;
                            open = states
                                .open_transactions()
                                .into_iter()
                                .map(|(id, _, first)| (id, first))
                                .collect();
                        }
                    }
                }
            }
            let mut files = self.open_files(Select::From(scan_from.min(self.position)))?;
            let empty = Loc { base: 0, byte: 0 };
            let loc = files.locate(self.position)?.unwrap_or(empty);
            let txn = match self.isolation {
                IsolationLevel::ReadUncommitted => None,
                IsolationLevel::ReadCommitted => {
                    let at = files.locate(scan_from)?.unwrap_or(empty);
                    Some(TxnScan::new(at, scan_from, open, self.max_uncompressed))
                }
            };
            self.state = Some(Located { files, loc, txn });
        }
        Ok(self.state.as_mut().expect("located just above"))
    }

    /// The records from the position on in whole batches of about `max_bytes` (at least one
    /// batch when there is one), moving the position past them; empty when nothing new is
    /// there yet. Under [`IsolationLevel::ReadCommitted`] it stops at the first transaction
    /// still open and skips aborted ones; control batches are never handed out.
    ///
    /// Errors: [`Error::OffsetOutOfRange`] when the position is below the log start (retention
    /// deleted it: [`seek`](Self::seek) to [`log_start_offset`](Self::log_start_offset)) or
    /// past the end of the data; [`Error::Corrupt`] for damage in a segment the owner no
    /// longer writes; I/O errors naming the file.
    pub fn poll(&mut self, max_bytes: usize) -> Result<Vec<StoredRecord>> {
        let mut out = Vec::new();
        self.poll_into(max_bytes, &mut out)?;
        Ok(out)
    }

    /// Like [`poll`](Self::poll), appending to `out`.
    pub fn poll_into(&mut self, max_bytes: usize, out: &mut Vec<StoredRecord>) -> Result<()> {
        let start = self.log_start_offset()?;
        if self.position < start {
            return Err(Error::OffsetOutOfRange {
                requested: self.position,
                earliest: start,
                latest: self.high_watermark()?,
            });
        }
        let position = self.position;
        let max_uncompressed = self.max_uncompressed;
        let state = self.locate()?;
        let cap = match &mut state.txn {
            Some(txn) => {
                txn.advance(&mut state.files, position, max_bytes)?;
                txn.passed(position);
                txn.stable()
            }
            None => u64::MAX,
        };
        let txn = state.txn.as_ref();
        let mut next = position;
        let mut budget = max_bytes;
        let mut first = true;
        let mut loc = state.loc;
        state.files.walk(&mut loc, |b, body| {
            let h = &b.header;
            if h.base_offset >= cap {
                return Ok(Step::Stop);
            }
            if h.last_offset() >= next && !h.is_control() && !txn.is_some_and(|t| t.aborted(h)) {
                if !first && b.len > budget {
                    return Ok(Step::Stop);
                }
                decode_batch(body, next, max_uncompressed, out)?;
                first = false;
                budget = budget.saturating_sub(b.len);
            }
            next = next.max(h.last_offset() + 1);
            Ok(if budget == 0 {
                Step::TakeAndStop
            } else {
                Step::Take
            })
        })?;
        state.loc = loc;
        state.files.release_before(loc);
        if next == position && out.is_empty() {
            // Nothing past the position: it must not be past the end of the data.
            let end = self.high_watermark()?;
            if position > end {
                return Err(Error::OffsetOutOfRange {
                    requested: position,
                    earliest: start,
                    latest: end,
                });
            }
        }
        self.position = next;
        Ok(())
    }

    /// The offset after the newest whole batch the owner has written (its high watermark, as
    /// far as the files show it).
    pub fn high_watermark(&self) -> Result<u64> {
        Ok(self.end()?.0)
    }

    /// The high watermark and what the walk to it found past the newest whole batch.
    pub(super) fn end(&self) -> Result<(u64, Option<TailDamage>)> {
        let mut files = self.open_files(Select::From(u64::MAX))?;
        let end = files.end_offset()?;
        Ok((end, files.tail_damage))
    }

    /// The last stable offset: the first offset of the oldest transaction still open, or the
    /// high watermark when none is.
    pub fn last_stable_offset(&self) -> Result<u64> {
        self.last_stable_offset_within(self.log_start_offset()?, self.high_watermark()?)
    }

    /// [`last_stable_offset`](Self::last_stable_offset) for a log start and high watermark the
    /// caller already read.
    pub(super) fn last_stable_offset_within(&self, start: u64, hw: u64) -> Result<u64> {
        let open = self.open_transactions_until(hw)?;
        Ok(open
            .first()
            .map_or(hw, |&(_, first, _)| first)
            .clamp(start, hw))
    }

    /// `(producer id, first offset, first timestamp)` of every transaction open on the
    /// partition now, oldest first: scanned from the checkpoint's recovery point (where the
    /// checkpoint says which were open) to the end.
    pub(super) fn open_transactions(&self) -> Result<Vec<(i64, u64, i64)>> {
        self.open_transactions_until(self.high_watermark()?)
    }

    fn open_transactions_until(&self, hw: u64) -> Result<Vec<(i64, u64, i64)>> {
        let mut probe = PartitionReader::new(
            self.storage.clone(),
            self.dir.clone(),
            &self.topic,
            self.partition,
            IsolationLevel::ReadCommitted,
            self.max_uncompressed,
        )?;
        if let Some(c) = load_checkpoint(&*self.storage, &self.dir)? {
            probe.position = c.recovery_point.max(probe.position).min(hw);
        }
        let state = probe.locate()?;
        let txn = state.txn.as_mut().expect("a read-committed probe scans");
        txn.advance(&mut state.files, u64::MAX, usize::MAX)?;
        Ok(txn.open_transactions())
    }

    /// Damage found where the newest segment's data ends at the last poll, if any: the
    /// owner's write in progress, or a crash's torn tail that its next open truncates.
    pub fn tail_damage(&self) -> Option<&TailDamage> {
        self.state.as_ref()?.files.tail_damage.as_ref()
    }

    /// The offset of the first record whose timestamp is at or after `timestamp`, scanning from
    /// the log start; `None` if there is none yet.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        let start = self.log_start_offset()?;
        let mut files = self.open_files(Select::From(start))?;
        let Some(mut at) = files.locate(start)? else {
            return Ok(None);
        };
        let mut found = None;
        let max_uncompressed = self.max_uncompressed;
        files.walk(&mut at, |b, body| {
            let h = &b.header;
            if h.is_control() || h.max_timestamp < timestamp || h.last_offset() < start {
                return Ok(Step::Take);
            }
            let mut records = Vec::new();
            decode_batch(body, start, max_uncompressed, &mut records)?;
            found = records
                .iter()
                .find(|r| r.timestamp >= timestamp)
                .map(|r| r.offset);
            Ok(if found.is_some() {
                Step::Stop
            } else {
                Step::Take
            })
        })?;
        Ok(found)
    }
}
