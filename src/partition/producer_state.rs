//! Per-producer state of one partition: what makes idempotent appends idempotent.
//!
//! For every producer id that wrote an idempotent batch (producer id >= 0) the partition keeps
//! the producer's epoch and its last [`MAX_BATCHES`] batches (sequence range and offsets). A batch
//! whose sequence range equals one of those is a retry: it is acknowledged with the offsets it
//! got the first time and not written again. A batch from an older epoch is fenced; a batch whose
//! first sequence does not follow the last one is out of order.
//!
//! The state is snapshotted into the partition checkpoint (as of its recovery point) on every
//! roll and clean close, and rebuilt after a restart from that snapshot plus the batch headers
//! after the recovery point, which carry producer id, epoch and base sequence.

use std::collections::{HashMap, VecDeque};

use crate::error::{Error, Result};
use crate::format::BatchHeader;
use crate::meta::{Reader, Writer};

/// Batches remembered per producer (Kafka's `max.in.flight.requests.per.connection` bound).
pub(crate) const MAX_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchRecord {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: u64,
    pub last_offset: u64,
    /// The batch's max timestamp as stored (the append time on LogAppendTime topics), so a
    /// retry is acknowledged with the same timestamp as the original.
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchRecord>,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it.
    Append,
    /// Already written: acknowledge with these offsets.
    Duplicate(BatchRecord),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    map: HashMap<i64, ProducerEntry>,
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

impl ProducerStates {
    /// Decides what to do with an idempotent batch; `Ok(Append)` for non-idempotent ones.
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<Verdict> {
        if h.producer_id < 0 {
            return Ok(Verdict::Append);
        }
        let Some(entry) = self.map.get(&h.producer_id) else {
            // A producer we have no state for (new, or its state was lost with old segments):
            // accept whatever sequence it starts from.
            return Ok(Verdict::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(Error::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
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
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(Verdict::Duplicate(*dup));
        }
        let expected = entry
            .batches
            .back()
            .map(|b| next_seq(b.last_seq))
            .unwrap_or(0);
        if h.base_sequence != expected {
            return Err(Error::OutOfOrderSequence {
                producer_id: h.producer_id,
                last: entry.batches.back().map(|b| b.last_seq).unwrap_or(-1),
                received: h.base_sequence,
            });
        }
        Ok(Verdict::Append)
    }

    /// Records a batch that was written (or replayed from the log during recovery).
    pub(crate) fn record(&mut self, h: &BatchHeader, timestamp: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self
            .map
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
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
        });
    }

    /// `(producer id, first offset)` of every batch the states remember. Compaction keeps these
    /// batches whole (as Kafka keeps each producer's last batch), so that the states can be
    /// rebuilt from the log alone if the checkpoint's snapshot is lost.
    pub(crate) fn remembered_batches(&self) -> std::collections::HashSet<(i64, u64)> {
        self.map
            .iter()
            .flat_map(|(&pid, e)| e.batches.iter().map(move |b| (pid, b.first_offset)))
            .collect()
    }

    /// Serialises the states (the checkpoint's producer section, see `docs/FORMAT.md`).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(self.map.len() as u32);
        let mut ids: Vec<_> = self.map.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.map[&id];
            w.i64(id);
            w.u16(e.epoch as u16);
            w.u16(e.batches.len() as u16);
            for b in &e.batches {
                w.u32(b.first_seq as u32);
                w.u32(b.last_seq as u32);
                w.u64(b.first_offset);
                w.u64(b.last_offset);
                w.i64(b.timestamp);
            }
        }
        w.0
    }

    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<ProducerStates, String> {
        let mut r = Reader::new(bytes);
        let n = r.u32()? as usize;
        if n > bytes.len() / 12 {
            return Err(format!("claims {n} producers in {} bytes", bytes.len()));
        }
        let mut map = HashMap::with_capacity(n);
        for _ in 0..n {
            let id = r.i64()?;
            let epoch = r.u16()? as i16;
            let nb = r.u16()? as usize;
            if nb > MAX_BATCHES {
                return Err(format!(
                    "producer {id} has {nb} batches, more than {MAX_BATCHES}"
                ));
            }
            let mut batches = VecDeque::with_capacity(nb);
            for _ in 0..nb {
                batches.push_back(BatchRecord {
                    first_seq: r.u32()? as i32,
                    last_seq: r.u32()? as i32,
                    first_offset: r.u64()?,
                    last_offset: r.u64()?,
                    timestamp: r.i64()?,
                });
            }
            map.insert(id, ProducerEntry { epoch, batches });
        }
        if !r.is_empty() {
            return Err("trailing bytes after the producer states".into());
        }
        Ok(ProducerStates { map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, base: u64, count: u32) -> BatchHeader {
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
        assert_eq!(s.check(&b0).unwrap(), Verdict::Append);
        s.record(&b0, 5);
        // A retry of the same batch (any base offset: the producer does not know it).
        let retry = header(7, 0, 0, 0, 3);
        match s.check(&retry).unwrap() {
            Verdict::Duplicate(b) => {
                assert_eq!((b.first_offset, b.last_offset, b.timestamp), (100, 102, 5))
            }
            other => panic!("{other:?}"),
        }
        // The next in sequence is accepted; a gap or a replay of a partial range is not.
        assert_eq!(s.check(&header(7, 0, 3, 0, 2)).unwrap(), Verdict::Append);
        assert!(matches!(
            s.check(&header(7, 0, 4, 0, 2)),
            Err(Error::OutOfOrderSequence {
                last: 2,
                received: 4,
                ..
            })
        ));
        assert!(matches!(
            s.check(&header(7, 0, 1, 0, 2)),
            Err(Error::OutOfOrderSequence { .. })
        ));
        // A newer epoch resets; after it, the old epoch is fenced.
        let e1 = header(7, 1, 0, 103, 1);
        assert_eq!(s.check(&e1).unwrap(), Verdict::Append);
        s.record(&e1, 6);
        assert!(matches!(
            s.check(&header(7, 0, 3, 0, 1)),
            Err(Error::ProducerFenced {
                current_epoch: 1,
                ..
            })
        ));
        // Non-idempotent batches are never checked.
        assert_eq!(s.check(&header(-1, -1, -1, 0, 9)).unwrap(), Verdict::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        let mut seq = i32::MAX - 2;
        for i in 0..7u64 {
            let h = header(1, 0, seq, i * 2, 2);
            assert_eq!(s.check(&h).unwrap(), Verdict::Append, "batch {i}");
            s.record(&h, 0);
            seq = next_seq(next_seq(seq));
        }
        assert_eq!(s.map[&1].batches.len(), MAX_BATCHES);
        assert_eq!(seq, 11); // wrapped past i32::MAX
    }

    #[test]
    fn snapshot_round_trip_and_bounds() {
        let mut s = ProducerStates::default();
        for pid in 0..3 {
            for i in 0..7u64 {
                s.record(
                    &header(pid, 2, (i * 4) as i32, pid as u64 * 100 + i * 4, 4),
                    i as i64,
                );
            }
        }
        let bytes = s.encode();
        assert_eq!(ProducerStates::decode(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(
                ProducerStates::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(ProducerStates::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
