//! The producer states' snapshot: the checkpoint's producer section (see `docs/FORMAT.md`).
//!
//! Version 2 starts with a marker no version-1 section can start with (a producer count of
//! `u32::MAX` could never fit in the bytes that follow it) and adds each producer's last append
//! time and each batch's CRC. A version-1 section is recognised and not used: without the CRCs
//! its batches could only be compared by their sequence ranges, which is what let a different
//! batch pass for a retry; recovery rebuilds the state from the batch headers instead (they
//! carry the CRC), once, on the first open after the upgrade.

use std::collections::{HashMap, VecDeque};

use super::{BatchRecord, ProducerEntry, ProducerStates, MAX_BATCHES};
use crate::meta::{Reader, Writer};

const V2_MARKER: u32 = u32::MAX;
/// Version 3 adds each producer's open transaction (its first offset, or `u64::MAX`).
const VERSION: u16 = 3;

impl ProducerStates {
    /// Serialises the states (version 2).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(V2_MARKER);
        w.u16(VERSION);
        w.u32(self.map.len() as u32);
        let mut ids: Vec<_> = self.map.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.map[&id];
            w.i64(id);
            w.u16(e.epoch as u16);
            w.i64(e.last_append_ms);
            w.u64(e.txn_first_offset.unwrap_or(u64::MAX));
            w.u16(e.batches.len() as u16);
            for b in &e.batches {
                w.u32(b.first_seq as u32);
                w.u32(b.last_seq as u32);
                w.u64(b.first_offset);
                w.u64(b.last_offset);
                w.i64(b.timestamp);
                w.u32(b.crc);
            }
        }
        w.0
    }

    /// Reads a version-2 snapshot; anything else (a version-1 one included) is an error, upon
    /// which recovery rebuilds the states from the log.
    pub(crate) fn decode(
        bytes: &[u8],
        expiration_ms: i64,
    ) -> std::result::Result<ProducerStates, String> {
        if bytes == [0, 0, 0, 0] {
            // An empty version-1 section: nothing to lose, no need to scan the log.
            return Ok(ProducerStates::new(expiration_ms));
        }
        let mut r = Reader::new(bytes);
        if r.u32()? != V2_MARKER {
            return Err("a version-1 producer state (no CRCs): rebuilt from the log".into());
        }
        let version = r.u16()?;
        if !(2..=VERSION).contains(&version) {
            return Err(format!("unknown producer state version {version}"));
        }
        let n = r.u32()? as usize;
        // The smallest producer takes 20 bytes: never trust a count the bytes cannot hold.
        if n > bytes.len() / 20 {
            return Err(format!("claims {n} producers in {} bytes", bytes.len()));
        }
        let mut states = ProducerStates::new(expiration_ms);
        let mut map = HashMap::with_capacity(n);
        for _ in 0..n {
            let id = r.i64()?;
            let epoch = r.u16()? as i16;
            let last_append_ms = r.i64()?;
            let txn_first_offset = match version {
                2 => None,
                _ => Some(r.u64()?).filter(|&f| f != u64::MAX),
            };
            let nb = r.u16()? as usize;
            if nb > MAX_BATCHES {
                return Err(format!(
                    "producer {id} has {nb} batches, more than {MAX_BATCHES}"
                ));
            }
            let mut batches = VecDeque::with_capacity(nb);
            for _ in 0..nb {
                let b = BatchRecord {
                    first_seq: r.u32()? as i32,
                    last_seq: r.u32()? as i32,
                    first_offset: r.u64()?,
                    last_offset: r.u64()?,
                    timestamp: r.i64()?,
                    crc: r.u32()?,
                };
                if b.last_offset < b.first_offset {
                    return Err(format!(
                        "producer {id}: batch offsets {}..={}",
                        b.first_offset, b.last_offset
                    ));
                }
                batches.push_back(b);
            }
            let entry = ProducerEntry {
                epoch,
                last_append_ms,
                batches,
                txn_first_offset,
            };
            if map.insert(id, entry).is_some() {
                return Err(format!("producer {id} appears twice"));
            }
        }
        if !r.is_empty() {
            return Err("trailing bytes after the producer states".into());
        }
        states.map = map;
        states.reindex_open();
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::header;
    use super::*;

    fn sample() -> ProducerStates {
        let mut s = ProducerStates::new(60_000);
        for pid in 0..3 {
            for i in 0..7u64 {
                let mut h = header(pid, 2, (i * 4) as i32, pid as u64 * 100 + i * 4, 4);
                h.crc = 0xdead_0000 + i as u32;
                s.record(&h, i as i64, 1_000 + pid);
            }
        }
        s
    }

    #[test]
    fn snapshot_round_trip_and_bounds() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(ProducerStates::decode(&bytes, 60_000).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(
                ProducerStates::decode(&bytes[..cut], 60_000).is_err(),
                "cut at {cut}"
            );
        }
        let mut big = vec![0xff; 6];
        big[4..6].copy_from_slice(&VERSION.to_be_bytes());
        big.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(ProducerStates::decode(&big, 1).is_err());
        assert!(ProducerStates::decode(&[0xff, 0xff, 0xff, 0xff, 0, 4, 0, 0, 0, 0], 1).is_err());
        assert_eq!(
            ProducerStates::decode(&ProducerStates::new(5).encode(), 5).unwrap(),
            ProducerStates::new(5)
        );
    }

    #[test]
    fn open_transactions_round_trip_and_version_2_has_none() {
        let mut s = ProducerStates::new(60_000);
        let mut h = header(9, 1, 0, 40, 2);
        h.attributes = 0x10; // transactional
        s.record(&h, 0, 0);
        s.record(&header(10, 0, 0, 42, 1), 0, 0);
        assert_eq!(s.first_unstable_offset(), Some(40));
        let back = ProducerStates::decode(&s.encode(), 60_000).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.first_unstable_offset(), Some(40));
        // The same producer in version 2: no open transaction field.
        let mut w = Writer::default();
        w.u32(V2_MARKER);
        w.u16(2);
        w.u32(1);
        w.i64(9);
        w.u16(1);
        w.i64(0);
        w.u16(0);
        let v2 = ProducerStates::decode(&w.0, 60_000).unwrap();
        assert_eq!(v2.first_unstable_offset(), None);
        // A marker closes it; a snapshot cut back before its first batch forgets it.
        let mut closed = s.clone();
        let mut marker = header(9, 2, -1, 42, 1);
        marker.attributes = 0x30;
        assert_eq!(closed.record(&marker, 0, 0), Some(40));
        assert_eq!(closed.first_unstable_offset(), None);
        let mut cut = s.clone();
        cut.forget_from(40);
        assert_eq!(cut.first_unstable_offset(), None);
        let mut kept = s;
        kept.forget_from(41);
        assert_eq!(kept.first_unstable_offset(), Some(40));
    }

    #[test]
    fn version_1_is_recognised_and_left_to_the_log() {
        // What an earlier annals wrote: a count, then per producer id, epoch, batch count and
        // per batch sequences, offsets and timestamp.
        let mut w = Writer::default();
        w.u32(1);
        w.i64(7);
        w.u16(0);
        w.u16(1);
        w.u32(0);
        w.u32(0);
        w.u64(0);
        w.u64(0);
        w.i64(1);
        let err = ProducerStates::decode(&w.0, 5).unwrap_err();
        assert!(err.contains("version-1"), "{err}");
        assert_eq!(
            ProducerStates::decode(&[0, 0, 0, 0], 5).unwrap(),
            ProducerStates::new(5)
        );
    }
}
