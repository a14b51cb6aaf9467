//! Per-producer state of one partition: what makes idempotent appends idempotent.
//!
//! For every producer id that wrote an idempotent batch (producer id >= 0) the partition keeps
//! the producer's epoch, when it last wrote, and its last [`MAX_BATCHES`] batches (sequence
//! range, offsets and CRC). A batch whose sequence range, offset span and content (CRC) equal
//! one of those is a retry: it is acknowledged with the offsets it got the first time and not
//! written again. A batch from an older epoch is fenced; a batch whose first sequence does not
//! follow the last one — including one that reuses a remembered sequence range with other
//! content — is out of order.
//!
//! Producer ids: the log allocates its own producers' ids from [`FIRST_LOCAL_PRODUCER_ID`] up
//! (`log/producer_ids.rs`), and `append_batch` refuses foreign batches (built outside the log,
//! e.g. mirrored from Kafka) whose id lies in that range, so a foreign producer can never be
//! mistaken for a local one; foreign ids below it keep their idempotence.
//!
//! A producer is forgotten (expired) once its newest batch lies below the log start offset or
//! it has not written for `producer_id_expiration` (Kafka's `producer.id.expiration.ms`); this
//! happens whenever the checkpoint is written and on every maintenance run. A batch from a
//! forgotten producer is accepted as a new producer's, whatever its sequence: a retry that comes
//! after its producer expired is written again, as in Kafka, where the expiration bounds the
//! deduplication window.
//!
//! The state is snapshotted into the partition checkpoint on every roll, compaction or retention
//! install and clean close (`snapshot.rs`), and rebuilt after a restart from that snapshot plus
//! the batch headers after the recovery point, which carry producer id, epoch, base sequence and
//! CRC.

mod snapshot;

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::error::{Error, Result};
use crate::format::{set_log_append_time, BatchHeader, NO_SEQUENCE};

/// Batches remembered per producer (Kafka's `max.in.flight.requests.per.connection` bound).
pub(crate) const MAX_BATCHES: usize = 5;

/// The first producer id the log hands out to its own producers (2^62). Ids below it are left to
/// batches from elsewhere: a Kafka cluster allocates its producer ids from 0 up, in blocks of a
/// thousand, and never comes near this.
pub(crate) const FIRST_LOCAL_PRODUCER_ID: i64 = 1 << 62;

/// Default of `producer_id_expiration` (Kafka's `producer.id.expiration.ms`: one day).
pub(crate) const DEFAULT_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchRecord {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: u64,
    pub last_offset: u64,
    /// The batch's max timestamp as stored (the append time on LogAppendTime topics), so a
    /// retry is acknowledged with the same timestamp as the original.
    pub timestamp: i64,
    /// The CRC of the batch as stored.
    pub crc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    /// Wall-clock time (ms since the epoch) of the producer's newest append, or of the open
    /// that replayed it from the log: the reference for `producer_id_expiration`. The append
    /// time, not the batch's timestamps, which a client (or a mirror of old data) sets.
    pub last_append_ms: i64,
    pub batches: VecDeque<BatchRecord>,
    /// Offset of the producer's first batch in its open transaction on this partition, if one
    /// is open: from its first transactional batch until the end marker (a control batch).
    pub txn_first_offset: Option<u64>,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it.
    Append,
    /// Already written: acknowledge with these offsets.
    Duplicate(BatchRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    map: HashMap<i64, ProducerEntry>,
    /// `producer_id_expiration` in milliseconds (at least 1).
    expiration_ms: i64,
    /// `(first offset, producer id)` of every open transaction, so the last stable offset (the
    /// first of them) is one lookup.
    open: BTreeSet<(u64, i64)>,
}

impl Default for ProducerStates {
    fn default() -> Self {
        ProducerStates::new(DEFAULT_EXPIRATION_MS)
    }
}

/// Sequence numbers wrap from `i32::MAX` to 0, as in Kafka.
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

fn last_seq(h: &BatchHeader) -> i32 {
    let n = h.last_offset_delta as i64;
    ((h.base_sequence as i64 + n) % (i32::MAX as i64 + 1)) as i32
}

/// Whether `batch` (header `h`, as it arrived) is the batch `b` remembers. The sequence range
/// alone is not enough: a foreign producer reusing an id, or a client with a bug, may send other
/// records under a remembered range, and acknowledging those as written would lose them. So the
/// offset span must match and so must the CRC — which covers everything but the base offset — of
/// the batch as it would be stored: on a LogAppendTime topic the stored batch was stamped with
/// its append time (a new CRC), so the incoming one is compared stamped with the same time.
fn is_retry_of(b: &BatchRecord, h: &BatchHeader, batch: &[u8]) -> bool {
    if b.last_offset - b.first_offset != h.last_offset_delta as u64 {
        return false;
    }
    let stored_crc = b.crc;
    if h.crc == stored_crc {
        return true;
    }
    let mut stamped = batch.to_vec();
    set_log_append_time(&mut stamped, b.timestamp);
    BatchHeader::parse(&stamped).is_ok_and(|s| s.crc == stored_crc)
}

impl ProducerStates {
    pub(crate) fn new(expiration_ms: i64) -> ProducerStates {
        ProducerStates {
            map: HashMap::new(),
            expiration_ms: expiration_ms.max(1),
            open: BTreeSet::new(),
        }
    }

    /// Decides what to do with an idempotent batch (`h` is the header of `batch` as it
    /// arrived); `Ok(Append)` for non-idempotent ones.
    pub(crate) fn check(&self, h: &BatchHeader, batch: &[u8]) -> Result<Verdict> {
        if h.producer_id < 0 {
            return Ok(Verdict::Append);
        }
        let Some(entry) = self.map.get(&h.producer_id) else {
            // A producer we have no state for (new, expired, or its state was lost with old
            // segments): accept whatever sequence it starts from.
            return Ok(Verdict::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(Error::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if entry.txn_first_offset.is_some() && !h.is_transactional() {
            return Err(Error::InvalidTxnState {
                transactional_id: None,
                operation: "write a non-transactional batch",
                state: format!(
                    "producer {} has a transaction open on this partition",
                    h.producer_id
                ),
            });
        }
        if h.base_sequence == NO_SEQUENCE {
            // The log's own transactional batches (offsets sent to a transaction) carry no
            // sequence: nothing to deduplicate.
            return Ok(Verdict::Append);
        }
        let out_of_order = || Error::OutOfOrderSequence {
            producer_id: h.producer_id,
            last: entry.batches.back().map(|b| b.last_seq).unwrap_or(-1),
            received: h.base_sequence,
        };
        if h.producer_epoch > entry.epoch {
            // A new epoch starts its sequences afresh.
            return if h.base_sequence == 0 {
                Ok(Verdict::Append)
            } else {
                Err(Error::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    last: -1,
                    received: h.base_sequence,
                })
            };
        }
        let last = last_seq(h);
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            // Same range, other content: not a retry, and not the next batch either.
            return if is_retry_of(b, h, batch) {
                Ok(Verdict::Duplicate(*b))
            } else {
                Err(out_of_order())
            };
        }
        let expected = entry
            .batches
            .back()
            .map(|b| next_seq(b.last_seq))
            .unwrap_or(0);
        if h.base_sequence != expected {
            return Err(out_of_order());
        }
        Ok(Verdict::Append)
    }

    /// Records a batch that was written at wall-clock time `now_ms` (or replayed from the log
    /// during recovery, at the time of the open). For an end marker (a control batch), returns
    /// the first offset of the transaction it closed, if the producer had one open.
    pub(crate) fn record(&mut self, h: &BatchHeader, timestamp: i64, now_ms: i64) -> Option<u64> {
        if h.producer_id < 0 {
            return None;
        }
        let entry = self
            .map
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                last_append_ms: now_ms,
                batches: VecDeque::new(),
                txn_first_offset: None,
            });
        if h.producer_epoch != entry.epoch {
            // A new epoch starts its sequences afresh (an end marker carries the epoch the
            // coordinator bumped to, so the next transaction's batches start at sequence 0).
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
        if h.is_control() {
            let closed = entry.txn_first_offset.take();
            if let Some(first) = closed {
                self.open.remove(&(first, h.producer_id));
            }
            return closed;
        }
        if h.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(h.base_offset);
            self.open.insert((h.base_offset, h.producer_id));
        }
        if h.base_sequence == NO_SEQUENCE {
            return None;
        }
        if entry.batches.len() == MAX_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchRecord {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp,
            crc: h.crc,
        });
        None
    }

    /// The first offset of the oldest open transaction, if any: the last stable offset.
    pub(crate) fn first_unstable_offset(&self) -> Option<u64> {
        self.open.first().map(|&(first, _)| first)
    }

    /// `(producer id, epoch, first offset)` of every open transaction.
    pub(crate) fn open_transactions(&self) -> Vec<(i64, i16, u64)> {
        self.open
            .iter()
            .map(|&(first, pid)| (pid, self.map.get(&pid).map_or(0, |e| e.epoch), first))
            .collect()
    }

    /// The epoch the partition knows for `producer_id`, if it remembers the producer.
    pub(crate) fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.map.get(&producer_id).map(|e| e.epoch)
    }

    /// Rebuilds the open-transaction set from the entries (after decoding a snapshot).
    fn reindex_open(&mut self) {
        self.open = self
            .map
            .iter()
            .filter_map(|(&pid, e)| e.txn_first_offset.map(|f| (f, pid)))
            .collect();
    }

    /// Forgets every producer whose newest batch lies below `log_start_offset` (retention or
    /// `delete_records` removed it: nothing of it is left to deduplicate against) or that has
    /// not written for the expiration time. Returns how many were forgotten.
    pub(crate) fn expire(&mut self, now_ms: i64, log_start_offset: u64) -> usize {
        let before = self.map.len();
        let expiration = self.expiration_ms;
        self.map.retain(|_, e| {
            let below_start = e
                .batches
                .back()
                .is_none_or(|b| b.last_offset < log_start_offset);
            let idle = now_ms.saturating_sub(e.last_append_ms) >= expiration;
            // A producer with an open transaction is kept whatever its age: its end marker (or
            // the timeout's abort) still has to close it.
            e.txn_first_offset.is_some() || !(below_start || idle)
        });
        before - self.map.len()
    }

    /// Forgets the remembered batches at or past `offset`: a snapshot is taken as of the high
    /// watermark, but only what lies below the checkpoint's recovery point is sure to have
    /// survived a crash; the batches from there on are replayed from the log if they are in it.
    /// (Remembering a batch the crash took would acknowledge its retry without writing it.)
    pub(crate) fn forget_from(&mut self, offset: u64) {
        self.map.retain(|_, e| {
            e.batches.retain(|b| b.first_offset < offset);
            if e.txn_first_offset.is_some_and(|f| f >= offset) {
                e.txn_first_offset = None;
            }
            !e.batches.is_empty() || e.txn_first_offset.is_some()
        });
        self.reindex_open();
    }

    /// `(producer id, first offset)` of every batch the states remember. Compaction keeps these
    /// batches whole (as Kafka keeps each producer's last batch), so that the states can be
    /// rebuilt from the log alone if the checkpoint's snapshot is lost. An expired producer's
    /// batches are no longer among them.
    pub(crate) fn remembered_batches(&self) -> std::collections::HashSet<(i64, u64)> {
        self.map
            .iter()
            .flat_map(|(&pid, e)| e.batches.iter().map(move |b| (pid, b.first_offset)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn header(pid: i64, epoch: i16, seq: i32, base: u64, count: u32) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 100,
            partition_leader_epoch: 0,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn duplicates_fencing_and_order() {
        let mut s = ProducerStates::default();
        let b0 = header(7, 0, 0, 100, 3);
        assert_eq!(s.check(&b0, &[]).unwrap(), Verdict::Append);
        s.record(&b0, 5, 0);
        // A retry of the same batch (any base offset: the producer does not know it).
        let retry = header(7, 0, 0, 0, 3);
        match s.check(&retry, &[]).unwrap() {
            Verdict::Duplicate(b) => {
                assert_eq!((b.first_offset, b.last_offset, b.timestamp), (100, 102, 5))
            }
            other => panic!("{other:?}"),
        }
        // The same range with other content is not a retry.
        let other = BatchHeader { crc: 1, ..retry };
        assert!(matches!(
            s.check(&other, &[]),
            Err(Error::OutOfOrderSequence { .. })
        ));
        // The next in sequence is accepted; a gap or a replay of a partial range is not.
        assert_eq!(
            s.check(&header(7, 0, 3, 0, 2), &[]).unwrap(),
            Verdict::Append
        );
        assert!(matches!(
            s.check(&header(7, 0, 4, 0, 2), &[]),
            Err(Error::OutOfOrderSequence {
                last: 2,
                received: 4,
                ..
            })
        ));
        assert!(matches!(
            s.check(&header(7, 0, 1, 0, 2), &[]),
            Err(Error::OutOfOrderSequence { .. })
        ));
        // A newer epoch resets; after it, the old epoch is fenced.
        let e1 = header(7, 1, 0, 103, 1);
        assert_eq!(s.check(&e1, &[]).unwrap(), Verdict::Append);
        s.record(&e1, 6, 0);
        assert!(matches!(
            s.check(&header(7, 0, 3, 0, 1), &[]),
            Err(Error::ProducerFenced {
                current_epoch: 1,
                ..
            })
        ));
        // Non-idempotent batches are never checked.
        assert_eq!(
            s.check(&header(-1, -1, -1, 0, 9), &[]).unwrap(),
            Verdict::Append
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        let mut seq = i32::MAX - 2;
        for i in 0..7u64 {
            let h = header(1, 0, seq, i * 2, 2);
            assert_eq!(s.check(&h, &[]).unwrap(), Verdict::Append, "batch {i}");
            s.record(&h, 0, 0);
            seq = next_seq(next_seq(seq));
        }
        assert_eq!(s.map[&1].batches.len(), MAX_BATCHES);
        assert_eq!(seq, 11); // wrapped past i32::MAX
    }

    #[test]
    fn producers_expire_by_idle_time_and_by_the_log_start() {
        let mut s = ProducerStates::new(1000);
        s.record(&header(1, 0, 0, 0, 2), 0, 10_000); // offsets 0..=1
        s.record(&header(2, 0, 0, 2, 2), 0, 10_500); // offsets 2..=3
        s.record(&header(3, 0, 0, 4, 1), 0, 10_900); // offset 4
        assert_eq!(s.expire(10_999, 0), 0);
        // Idle for the whole expiration time.
        assert_eq!(s.expire(11_000, 0), 1);
        assert!(!s.map.contains_key(&1));
        // Its newest batch below the log start.
        assert_eq!(s.expire(11_000, 4), 1);
        assert_eq!(s.map.keys().collect::<Vec<_>>(), [&3]);
        // A forgotten producer starts afresh at any sequence.
        assert_eq!(
            s.check(&header(2, 0, 9, 0, 1), &[]).unwrap(),
            Verdict::Append
        );
        assert_eq!(s.remembered_batches().len(), 1);
    }

    #[test]
    fn open_transactions_hold_the_stable_offset_and_refuse_plain_batches() {
        let txn = |pid, epoch, seq, base, count| BatchHeader {
            attributes: 0x10,
            ..header(pid, epoch, seq, base, count)
        };
        let marker = |pid, epoch, base| BatchHeader {
            attributes: 0x30,
            ..header(pid, epoch, -1, base, 1)
        };
        let mut s = ProducerStates::default();
        s.record(&txn(1, 0, 0, 10, 2), 0, 0);
        s.record(&txn(2, 0, 0, 12, 1), 0, 0);
        s.record(&txn(1, 0, 2, 13, 1), 0, 0);
        assert_eq!(s.first_unstable_offset(), Some(10));
        assert_eq!(s.open_transactions(), vec![(1, 0, 10), (2, 0, 12)]);
        // A plain batch from a producer with a transaction open here is refused.
        assert!(matches!(
            s.check(&header(1, 0, 3, 0, 1), &[]),
            Err(Error::InvalidTxnState { .. })
        ));
        // Its marker (at the bumped epoch) closes it and reports where it began.
        assert_eq!(s.record(&marker(1, 1, 14), 0, 0), Some(10));
        assert_eq!(s.first_unstable_offset(), Some(12));
        assert_eq!(s.epoch_of(1), Some(1));
        // A repeated marker closes nothing; the next transaction starts at sequence 0.
        assert_eq!(s.record(&marker(1, 1, 15), 0, 0), None);
        assert_eq!(s.check(&txn(1, 1, 0, 0, 1), &[]).unwrap(), Verdict::Append);
        assert_eq!(s.record(&marker(2, 1, 16), 0, 0), Some(12));
        assert_eq!(s.first_unstable_offset(), None);
        // An open transaction keeps its producer from expiring.
        s.record(&txn(3, 0, 0, 17, 1), 0, 0);
        assert_eq!(s.expire(i64::MAX, u64::MAX), 2);
        assert_eq!(s.open_transactions(), vec![(3, 0, 17)]);
    }

    #[test]
    fn forget_from_drops_what_a_crash_may_have_taken() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 0, 2), 0, 0);
        s.record(&header(1, 0, 2, 5, 2), 0, 0);
        s.record(&header(2, 0, 0, 7, 1), 0, 0);
        s.forget_from(5);
        assert_eq!(s.map[&1].batches.len(), 1);
        assert!(!s.map.contains_key(&2));
    }
}
