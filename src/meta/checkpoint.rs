//! `partition.ckpt`: what a partition knew when it last flushed, so that opening it need not
//! read its sealed segments (format in `docs/FORMAT.md`).

use std::path::Path;

use super::{corrupt, open_envelope, seal_envelope, Reader, Writer};
use crate::error::Result;
use crate::segment::SegmentStats;
use crate::storage::{read_whole, write_atomic, Storage};

pub(crate) const CHECKPOINT_FILE: &str = "partition.ckpt";
pub(crate) const CHECKPOINT_MAGIC: [u8; 4] = *b"ANPC";

/// A sealed segment as recorded in the checkpoint: enough to open it without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealedSegment {
    pub base_offset: u64,
    pub stats: SegmentStats,
    pub index_crc: u32,
    pub time_index_crc: u32,
    /// The segment's `.txnindex` when it was sealed.
    pub txn_index_crc: TxnIndexCrc,
}

/// What the checkpoint vouches for about a sealed segment's `.txnindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum TxnIndexCrc {
    /// Written before checkpoints recorded it (nothing is vouched for).
    #[default]
    Unrecorded,
    /// There was no `.txnindex` (no ABORT marker in the segment).
    Absent,
    /// CRC-32C of the whole file.
    Crc(u32),
}

impl TxnIndexCrc {
    /// For a file with this content (`None`: no file).
    pub(crate) fn of(bytes: Option<&[u8]>) -> TxnIndexCrc {
        match bytes {
            None => TxnIndexCrc::Absent,
            Some(b) => TxnIndexCrc::Crc(crc32c::crc32c(b)),
        }
    }

    /// Whether a file with this content is the one recorded (always, if nothing was).
    pub(crate) fn matches(self, bytes: Option<&[u8]>) -> bool {
        self == TxnIndexCrc::Unrecorded || self == TxnIndexCrc::of(bytes)
    }
}

/// Durable state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Every batch below this offset was fsynced before the checkpoint was written.
    pub recovery_point: u64,
    pub log_start_offset: u64,
    pub sealed: Vec<SealedSegment>,
    /// Idempotent-producer state as of `recovery_point` (encoded by the partition layer).
    pub producers: Vec<u8>,
}

pub(crate) fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(c.recovery_point);
    w.u64(c.log_start_offset);
    w.u32(c.sealed.len() as u32);
    for s in &c.sealed {
        w.u64(s.base_offset);
        w.u64(s.stats.size);
        w.u64(s.stats.next_offset);
        w.i64(s.stats.max_timestamp);
        w.u64(s.stats.offset_of_max_timestamp);
        w.u32(s.index_crc);
        w.u32(s.time_index_crc);
    }
    w.u32(c.producers.len() as u32);
    w.0.extend_from_slice(&c.producers);
    // Added with transactions, after everything an older reader knows.
    w.u32(c.sealed.len() as u32);
    for s in &c.sealed {
        let (tag, crc) = match s.txn_index_crc {
            TxnIndexCrc::Unrecorded => (0u8, 0),
            TxnIndexCrc::Absent => (1, 0),
            TxnIndexCrc::Crc(crc) => (2, crc),
        };
        w.0.push(tag);
        w.u32(crc);
    }
    seal_envelope(CHECKPOINT_MAGIC, &w.0)
}

pub(crate) fn decode_checkpoint(file: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    let parse = || -> std::result::Result<Checkpoint, String> {
        let payload = open_envelope(CHECKPOINT_MAGIC, bytes)?;
        let mut r = Reader::new(payload);
        let recovery_point = r.u64()?;
        let log_start_offset = r.u64()?;
        let n = r.u32()? as usize;
        // 48 bytes per entry: never trust a count the payload cannot hold.
        if n > payload.len() / 48 {
            return Err(format!("claims {n} segments in {} bytes", payload.len()));
        }
        let mut sealed = Vec::with_capacity(n);
        for _ in 0..n {
            sealed.push(SealedSegment {
                base_offset: r.u64()?,
                stats: SegmentStats {
                    size: r.u64()?,
                    next_offset: r.u64()?,
                    max_timestamp: r.i64()?,
                    offset_of_max_timestamp: r.u64()?,
                },
                index_crc: r.u32()?,
                time_index_crc: r.u32()?,
                txn_index_crc: TxnIndexCrc::Unrecorded,
            });
        }
        let producers_len = r.u32()? as usize;
        let producers = r.take(producers_len)?.to_vec();
        // A checkpoint from before transactions ends here.
        if !r.is_empty() {
            let m = r.u32()? as usize;
            if m != sealed.len() {
                return Err(format!(
                    "{m} transaction index checksums for {} sealed segments",
                    sealed.len()
                ));
            }
            for s in sealed.iter_mut() {
                let tag = r.take(1)?.first().copied();
                let crc = r.u32()?;
                s.txn_index_crc = match tag {
                    Some(0) => TxnIndexCrc::Unrecorded,
                    Some(1) => TxnIndexCrc::Absent,
                    Some(2) => TxnIndexCrc::Crc(crc),
                    other => return Err(format!("transaction index tag {other:?}")),
                };
            }
        }
        if !r.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(Checkpoint {
            recovery_point,
            log_start_offset,
            sealed,
            producers,
        })
    };
    parse().map_err(|e| corrupt(file, e))
}

pub(crate) fn load_checkpoint(storage: &dyn Storage, dir: &Path) -> Result<Option<Checkpoint>> {
    let path = dir.join(CHECKPOINT_FILE);
    if !storage.exists(&path)? {
        return Ok(None);
    }
    decode_checkpoint(&path, &read_whole(storage, &path)?).map(Some)
}

pub(crate) fn store_checkpoint(storage: &dyn Storage, dir: &Path, c: &Checkpoint) -> Result<()> {
    Ok(write_atomic(
        storage,
        &dir.join(CHECKPOINT_FILE),
        &encode_checkpoint(c),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_bounds() {
        let c = Checkpoint {
            recovery_point: 42,
            log_start_offset: 7,
            sealed: vec![SealedSegment {
                base_offset: 0,
                stats: SegmentStats {
                    size: 4096,
                    next_offset: 42,
                    max_timestamp: 1_700_000_000_000,
                    offset_of_max_timestamp: 40,
                },
                index_crc: 1,
                time_index_crc: 2,
                txn_index_crc: TxnIndexCrc::Crc(3),
            }],
            producers: vec![1, 2, 3],
        };
        let bytes = encode_checkpoint(&c);
        assert_eq!(decode_checkpoint(Path::new("c"), &bytes).unwrap(), c);
        for crc in [TxnIndexCrc::Absent, TxnIndexCrc::Unrecorded] {
            let mut c2 = c.clone();
            c2.sealed[0].txn_index_crc = crc;
            let bytes = encode_checkpoint(&c2);
            assert_eq!(decode_checkpoint(Path::new("c"), &bytes).unwrap(), c2);
        }
        // A checkpoint written before transactions (no checksum section) still reads.
        let mut w = Writer::default();
        w.u64(42);
        w.u64(7);
        w.u32(0);
        w.u32(0);
        let old = decode_checkpoint(Path::new("c"), &seal_envelope(CHECKPOINT_MAGIC, &w.0));
        assert_eq!(old.unwrap().recovery_point, 42);
        // A forged huge count is refused without allocating for it.
        let mut w = Writer::default();
        w.u64(0);
        w.u64(0);
        w.u32(u32::MAX);
        w.u32(0);
        let forged = seal_envelope(CHECKPOINT_MAGIC, &w.0);
        assert!(decode_checkpoint(Path::new("c"), &forged).is_err());
    }
}
