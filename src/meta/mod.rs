//! annals' own metadata files: topic configurations and per-partition checkpoints.
//!
//! Every metadata file shares one envelope (all integers big-endian, see `docs/FORMAT.md`):
//!
//! ```text
//! magic [4] | version u16 | reserved u16 = 0 | payload_len u32 | payload | crc32c u32
//! ```
//!
//! The CRC-32C covers every byte before it. Files are replaced atomically
//! ([`write_atomic`](crate::storage)), so a reader sees the old or the new file, and the CRC
//! catches anything else (a torn or garbled file is reported as `CorruptMetadata`, never
//! guessed at).

use std::path::Path;

use crate::error::{Error, Result};
use crate::segment::SegmentStats;
use crate::storage::{read_whole, write_atomic, Storage};

pub(crate) const CHECKPOINT_FILE: &str = "partition.ckpt";
pub(crate) const CHECKPOINT_MAGIC: [u8; 4] = *b"ANPC";
const VERSION: u16 = 1;
const ENVELOPE_HEAD: usize = 12;

/// Big-endian field writer.
#[derive(Default)]
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes16(&mut self, v: &[u8]) {
        self.u16(v.len() as u16);
        self.0.extend_from_slice(v);
    }
}

/// Big-endian field reader that reports running out of bytes instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!("needs {n} more bytes, has {}", self.buf.len()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> std::result::Result<u16, String> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub fn bytes16(&mut self) -> std::result::Result<&'a [u8], String> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

pub(crate) fn seal_envelope(magic: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(ENVELOPE_HEAD + payload.len() + 4));
    w.0.extend_from_slice(&magic);
    w.u16(VERSION);
    w.u16(0);
    w.u32(payload.len() as u32);
    w.0.extend_from_slice(payload);
    let crc = crc32c::crc32c(&w.0);
    w.u32(crc);
    w.0
}

pub(crate) fn open_envelope(magic: [u8; 4], bytes: &[u8]) -> std::result::Result<&[u8], String> {
    if bytes.len() < ENVELOPE_HEAD + 4 {
        return Err(format!(
            "{} bytes is too short for a metadata file",
            bytes.len()
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != stored {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader::new(body);
    if r.array::<4>()? != magic {
        return Err("wrong magic (not this kind of file)".into());
    }
    let version = r.u16()?;
    if version != VERSION {
        return Err(format!(
            "version {version} is not supported (this annals reads {VERSION})"
        ));
    }
    let _reserved = r.u16()?;
    let len = r.u32()? as usize;
    let payload = r.take(len)?;
    if !r.is_empty() {
        return Err("trailing bytes after the payload".into());
    }
    Ok(payload)
}

fn corrupt(file: &Path, reason: String) -> Error {
    Error::CorruptMetadata {
        file: file.to_path_buf(),
        reason,
    }
}

// ---- partition.ckpt -------------------------------------------------------------------------

/// A sealed segment as recorded in the checkpoint: enough to open it without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealedSegment {
    pub base_offset: u64,
    pub stats: SegmentStats,
    pub index_crc: u32,
    pub time_index_crc: u32,
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
            });
        }
        let producers_len = r.u32()? as usize;
        let producers = r.take(producers_len)?.to_vec();
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

// ---- partition.bounds: see meta/bounds.rs -----------------------------------------------------

mod bounds;
#[cfg(test)]
mod proptests;
mod topics;
pub(crate) use bounds::{load_bounds, store_bounds, Bounds, BOUNDS_FILE};
#[cfg(test)]
use topics::{decode_topics, encode_topics};
pub(crate) use topics::{load_topics, store_topics, TOPICS_FILE};

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
            }],
            producers: vec![1, 2, 3],
        };
        let bytes = encode_checkpoint(&c);
        assert_eq!(decode_checkpoint(Path::new("c"), &bytes).unwrap(), c);
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
