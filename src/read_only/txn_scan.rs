//! What a read-committed reader without the owner's memory needs: which transactions are open
//! and which aborted, worked out from the batches themselves by a scan that runs ahead of the
//! reader.
//!
//! A data batch of a transactional producer with no transaction open opens one at its offset;
//! that producer's next end marker closes it, and an ABORT marker adds the range to the aborted
//! list. The reader hands out only what is below the first offset of the oldest transaction
//! still open (the last stable offset) and skips the aborted ranges. The scan starts either at
//! the partition checkpoint's recovery point, with the open transactions the checkpoint
//! recorded (exact), or at the reader's first position with none: then a transaction that
//! began before that position is seen from its first batch at or after it, which keeps aborted
//! records out but may hand out a later non-transactional record before that transaction ends.

use std::collections::HashMap;

use bytes::Bytes;

use super::files::{Files, Loc, Step};
use crate::error::Result;
use crate::format::{
    decode_batch, decode_control_record, AbortedTxn, BatchHeader, ControlRecord, ControlType,
};
use crate::segment::BatchAt;

#[derive(Debug)]
pub(super) struct TxnScan {
    /// Where the scan goes on from.
    pub at: Loc,
    /// The offset after the last batch scanned.
    pub next_offset: u64,
    /// Producer id → first offset and timestamp of its open transaction (the timestamp is
    /// unknown, -1, for one the checkpoint recorded).
    open: HashMap<i64, (u64, i64)>,
    /// Aborted transactions the reader has not passed yet, in marker order.
    aborted: Vec<AbortedTxn>,
    max_uncompressed: usize,
}

impl TxnScan {
    pub fn new(
        at: Loc,
        next_offset: u64,
        open: impl IntoIterator<Item = (i64, u64)>,
        max_uncompressed: usize,
    ) -> TxnScan {
        TxnScan {
            at,
            next_offset,
            open: open
                .into_iter()
                .map(|(id, first)| (id, (first, -1)))
                .collect(),
            aborted: Vec::new(),
            max_uncompressed,
        }
    }

    /// The last stable offset as far as the scan has gone: nothing at or after it may be
    /// handed out yet.
    pub fn stable(&self) -> u64 {
        self.open
            .values()
            .map(|&(first, _)| first)
            .min()
            .unwrap_or(self.next_offset)
            .min(self.next_offset)
    }

    /// `(producer id, first offset, first timestamp)` of every transaction open where the scan
    /// is.
    pub fn open_transactions(&self) -> Vec<(i64, u64, i64)> {
        let mut open: Vec<_> = self
            .open
            .iter()
            .map(|(&id, &(first, timestamp))| (id, first, timestamp))
            .collect();
        open.sort_by_key(|&(_, first, _)| first);
        open
    }

    /// Whether `h` is a data batch of an aborted transaction.
    pub fn aborted(&self, h: &BatchHeader) -> bool {
        self.aborted.iter().any(|a| a.covers(h))
    }

    /// Forgets aborted transactions wholly below `offset`.
    pub fn passed(&mut self, offset: u64) {
        self.aborted.retain(|a| a.last_offset >= offset);
    }

    /// Scans on until the data ends, or until no transaction is open and `ahead` bytes were
    /// scanned past `from` (enough for the read that asked).
    pub fn advance(&mut self, files: &mut Files, from: u64, ahead: usize) -> Result<()> {
        let mut at = self.at;
        let mut scanned = 0usize;
        files.walk(&mut at, |b, body| {
            self.note(b, body)?;
            if b.header.base_offset >= from {
                scanned = scanned.saturating_add(b.len);
            }
            Ok(if self.open.is_empty() && scanned >= ahead {
                Step::TakeAndStop
            } else {
                Step::Take
            })
        })?;
        self.at = at;
        Ok(())
    }

    fn note(&mut self, b: &BatchAt, body: &Bytes) -> Result<()> {
        let h = &b.header;
        self.next_offset = self.next_offset.max(h.last_offset() + 1);
        if !h.is_transactional() {
            return Ok(());
        }
        if !h.is_control() {
            self.open
                .entry(h.producer_id)
                .or_insert((h.base_offset, h.base_timestamp));
            return Ok(());
        }
        let mut records = Vec::new();
        decode_batch(body, 0, self.max_uncompressed, &mut records)?;
        for r in &records {
            let Some(key) = &r.key else { continue };
            if let ControlRecord::EndTxn(marker) = decode_control_record(key, r.value.as_deref())? {
                let first = self.open.remove(&h.producer_id);
                if let (Some((first_offset, _)), ControlType::Abort) = (first, marker.control_type)
                {
                    self.aborted.push(AbortedTxn {
                        producer_id: h.producer_id,
                        first_offset,
                        last_offset: h.base_offset,
                        last_stable_offset: self.stable(),
                    });
                }
            }
        }
        Ok(())
    }
}
