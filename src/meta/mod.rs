//! annals' own metadata files, one module per file format: `topics.meta` (`topics.rs`),
//! `partition.ckpt` (`checkpoint.rs`), `partition.bounds` (`bounds.rs`) and `producer-ids.meta`
//! (`producer_ids.rs`).
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
// These bytes come from disk: a malformed file must become an error, never a panic, so
// nothing here may unwrap or index unchecked.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod bounds;
mod checkpoint;
mod producer_ids;
#[cfg(test)]
mod proptests;
mod topics;
pub(crate) use bounds::{load_bounds, store_bounds, Bounds, BOUNDS_FILE};
pub(crate) use checkpoint::{
    load_checkpoint, store_checkpoint, Checkpoint, SealedSegment, TxnIndexCrc, CHECKPOINT_FILE,
};
pub(crate) use producer_ids::{
    decode_producer_ids, encode_producer_ids, ProducerIdsFile, PRODUCER_IDS_FILE,
};
#[cfg(test)]
use topics::decode_topics;
pub(crate) use topics::{
    encode_topics, load_topics, store_encoded_topics, store_topics, TOPICS_FILE,
};

use std::path::Path;

use crate::error::Error;

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
    let stored = u32::from_be_bytes(crc.try_into().map_err(|_| "no checksum".to_string())?);
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
