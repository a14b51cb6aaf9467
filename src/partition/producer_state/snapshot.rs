//! The producer states' snapshot: the checkpoint's producer section (see `docs/FORMAT.md`).
//!
//! Version 2 starts with a marker no version-1 section can start with (a producer count of
//! `u32::MAX` could never fit in the bytes that follow it) and adds each producer's last append
//! time and each batch's CRC. Version 1 is still read: its producers count as having written at
//! the time of the open, and its batches are compared by their ranges only.

use std::collections::{HashMap, VecDeque};

use super::{BatchRecord, ProducerEntry, ProducerStates, MAX_BATCHES};
use crate::meta::{Reader, Writer};

const V2_MARKER: u32 = u32::MAX;
const VERSION: u16 = 2;

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
            w.u16(e.batches.len() as u16);
            for b in &e.batches {
                w.u32(b.first_seq as u32);
                w.u32(b.last_seq as u32);
                w.u64(b.first_offset);
                w.u64(b.last_offset);
                w.i64(b.timestamp);
                w.0.push(u8::from(b.crc.is_some()));
                w.u32(b.crc.unwrap_or(0));
            }
        }
        w.0
    }

    /// Reads a snapshot of either version; `now_ms` stands in for the append times a version-1
    /// snapshot does not have.
    pub(crate) fn decode(
        bytes: &[u8],
        expiration_ms: i64,
        now_ms: i64,
    ) -> std::result::Result<ProducerStates, String> {
        let mut r = Reader::new(bytes);
        let first = r.u32()?;
        let v2 = first == V2_MARKER;
        let n = if v2 {
            let version = r.u16()?;
            if version != VERSION {
                return Err(format!("unknown producer state version {version}"));
            }
            r.u32()? as usize
        } else {
            first as usize
        };
        // The smallest producer takes 12 bytes: never trust a count the bytes cannot hold.
        if n > bytes.len() / 12 {
            return Err(format!("claims {n} producers in {} bytes", bytes.len()));
        }
        let mut states = ProducerStates::new(expiration_ms);
        let mut map = HashMap::with_capacity(n);
        for _ in 0..n {
            let id = r.i64()?;
            let epoch = r.u16()? as i16;
            let last_append_ms = if v2 { r.i64()? } else { now_ms };
            let nb = r.u16()? as usize;
            if nb > MAX_BATCHES {
                return Err(format!(
                    "producer {id} has {nb} batches, more than {MAX_BATCHES}"
                ));
            }
            let mut batches = VecDeque::with_capacity(nb);
            for _ in 0..nb {
                let first_seq = r.u32()? as i32;
                let last_seq = r.u32()? as i32;
                let first_offset = r.u64()?;
                let last_offset = r.u64()?;
                let timestamp = r.i64()?;
                let crc = if v2 {
                    let has_crc = r.u8()?;
                    let crc = r.u32()?;
                    match has_crc {
                        0 => None,
                        1 => Some(crc),
                        other => return Err(format!("producer {id}: CRC flag {other}")),
                    }
                } else {
                    None
                };
                if last_offset < first_offset {
                    return Err(format!(
                        "producer {id}: batch offsets {first_offset}..={last_offset}"
                    ));
                }
                batches.push_back(BatchRecord {
                    first_seq,
                    last_seq,
                    first_offset,
                    last_offset,
                    timestamp,
                    crc,
                });
            }
            if map
                .insert(
                    id,
                    ProducerEntry {
                        epoch,
                        last_append_ms,
                        batches,
                    },
                )
                .is_some()
            {
                return Err(format!("producer {id} appears twice"));
            }
        }
        if !r.is_empty() {
            return Err("trailing bytes after the producer states".into());
        }
        states.map = map;
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
        assert_eq!(ProducerStates::decode(&bytes, 60_000, 0).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(
                ProducerStates::decode(&bytes[..cut], 60_000, 0).is_err(),
                "cut at {cut}"
            );
        }
        assert!(ProducerStates::decode(&[0xff, 0xff, 0xff, 0xff], 1, 0).is_err());
        assert!(ProducerStates::decode(&[0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0, 0, 0], 1, 0).is_err());
    }

    /// Version 1 as an earlier annals wrote it: no marker, no append time, no CRC.
    fn encode_v1(s: &ProducerStates) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(s.map.len() as u32);
        let mut ids: Vec<_> = s.map.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &s.map[&id];
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

    #[test]
    fn version_1_is_still_read() {
        let s = sample();
        let old = ProducerStates::decode(&encode_v1(&s), 60_000, 77).unwrap();
        assert_eq!(old.map.len(), 3);
        for (id, e) in &old.map {
            let new = &s.map[id];
            assert_eq!((e.epoch, e.last_append_ms), (new.epoch, 77));
            assert_eq!(e.batches.len(), new.batches.len());
            for (a, b) in e.batches.iter().zip(&new.batches) {
                assert_eq!(a.crc, None);
                assert_eq!(BatchRecord { crc: None, ..*b }, *a);
            }
        }
        // Written again, it becomes version 2 and reads back the same.
        let again = ProducerStates::decode(&old.encode(), 60_000, 0).unwrap();
        assert_eq!(again, old);
        // An empty version-1 section (what a log without idempotent producers wrote).
        assert_eq!(
            ProducerStates::decode(&[0, 0, 0, 0], 5, 0).unwrap(),
            ProducerStates::new(5)
        );
    }
}
