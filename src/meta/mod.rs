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
use std::time::Duration;

use crate::config::{duration_to_millis, CleanupPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::format::{Compression, TimestampType};
use crate::segment::SegmentStats;
use crate::storage::{read_whole, write_atomic, Storage};

pub(crate) const TOPICS_FILE: &str = "topics.meta";
pub(crate) const TOPICS_MAGIC: [u8; 4] = *b"ANTP";
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

// ---- topics.meta ----------------------------------------------------------------------------

mod tag {
    pub const PARTITIONS: u16 = 1;
    pub const SEGMENT_BYTES: u16 = 2;
    pub const SEGMENT_MS: u16 = 3;
    pub const SEGMENT_INDEX_BYTES: u16 = 4;
    pub const INDEX_INTERVAL_BYTES: u16 = 5;
    pub const MAX_MESSAGE_BYTES: u16 = 6;
    pub const COMPRESSION: u16 = 7;
    pub const TIMESTAMP_TYPE: u16 = 8;
    pub const CLEANUP_POLICY: u16 = 9;
    pub const RETENTION_MS: u16 = 10;
    pub const RETENTION_BYTES: u16 = 11;
    pub const MIN_CLEANABLE_DIRTY_RATIO: u16 = 12;
    pub const MIN_COMPACTION_LAG_MS: u16 = 13;
    pub const MAX_COMPACTION_LAG_MS: u16 = 14;
    pub const DELETE_RETENTION_MS: u16 = 15;
    pub const COMPACTION_STRATEGY: u16 = 16;
    pub const RETAIN_FOR_GROUPS: u16 = 17;
    pub const MAX_RETENTION_MS: u16 = 18;
    pub const MAX_RETENTION_BYTES: u16 = 19;
}

fn field(w: &mut Writer, tag: u16, value: &[u8]) {
    w.u16(tag);
    w.bytes16(value);
}

fn optional_u64(v: Option<u64>) -> Vec<u8> {
    match v {
        None => vec![0],
        Some(v) => {
            let mut out = vec![1];
            out.extend_from_slice(&v.to_be_bytes());
            out
        }
    }
}

/// Encodes validated configurations; a duration `topics.meta` cannot hold exactly is refused
/// (`InvalidConfig`) rather than written wrong.
pub(crate) fn encode_topics(topics: &[(String, TopicConfig)]) -> Result<Vec<u8>> {
    let ms = duration_to_millis;
    let optional_ms = |field, d: Option<Duration>| d.map(|d| ms(field, d)).transpose();
    let mut w = Writer::default();
    w.u32(topics.len() as u32);
    for (name, c) in topics {
        w.bytes16(name.as_bytes());
        let (codec, level) = match c.compression {
            Compression::None => (0u8, 0i32),
            Compression::Lz4 => (3, 0),
            Compression::Zstd { level } => (4, level),
        };
        let mut compression = vec![codec];
        compression.extend_from_slice(&level.to_be_bytes());
        let fields: Vec<(u16, Vec<u8>)> = vec![
            (tag::PARTITIONS, c.partitions.to_be_bytes().to_vec()),
            (tag::SEGMENT_BYTES, c.segment_bytes.to_be_bytes().to_vec()),
            (
                tag::SEGMENT_MS,
                ms("segment_ms", c.segment_ms)?.to_be_bytes().to_vec(),
            ),
            (
                tag::SEGMENT_INDEX_BYTES,
                (c.segment_index_bytes as u64).to_be_bytes().to_vec(),
            ),
            (
                tag::INDEX_INTERVAL_BYTES,
                (c.index_interval_bytes as u64).to_be_bytes().to_vec(),
            ),
            (
                tag::MAX_MESSAGE_BYTES,
                (c.max_message_bytes as u64).to_be_bytes().to_vec(),
            ),
            (tag::COMPRESSION, compression),
            (
                tag::TIMESTAMP_TYPE,
                vec![(c.message_timestamp_type == TimestampType::LogAppendTime) as u8],
            ),
            (
                tag::CLEANUP_POLICY,
                vec![match c.cleanup_policy {
                    CleanupPolicy::Delete => 0,
                    CleanupPolicy::Compact => 1,
                    CleanupPolicy::CompactAndDelete => 2,
                }],
            ),
            (
                tag::RETENTION_MS,
                optional_u64(optional_ms("retention_ms", c.retention_ms)?),
            ),
            (tag::RETENTION_BYTES, optional_u64(c.retention_bytes)),
            (
                tag::MIN_CLEANABLE_DIRTY_RATIO,
                c.min_cleanable_dirty_ratio.to_bits().to_be_bytes().to_vec(),
            ),
            (
                tag::MIN_COMPACTION_LAG_MS,
                ms("min_compaction_lag_ms", c.min_compaction_lag_ms)?
                    .to_be_bytes()
                    .to_vec(),
            ),
            (
                tag::MAX_COMPACTION_LAG_MS,
                optional_u64(optional_ms(
                    "max_compaction_lag_ms",
                    c.max_compaction_lag_ms,
                )?),
            ),
            (
                tag::DELETE_RETENTION_MS,
                ms("delete_retention_ms", c.delete_retention_ms)?
                    .to_be_bytes()
                    .to_vec(),
            ),
            (
                tag::COMPACTION_STRATEGY,
                encode_strategy(&c.compaction_strategy),
            ),
            (tag::RETAIN_FOR_GROUPS, encode_groups(&c.retain_for_groups)),
            (
                tag::MAX_RETENTION_MS,
                optional_u64(optional_ms("max_retention_ms", c.max_retention_ms)?),
            ),
            (
                tag::MAX_RETENTION_BYTES,
                optional_u64(c.max_retention_bytes),
            ),
        ];
        w.u16(fields.len() as u16);
        for (t, v) in &fields {
            field(&mut w, *t, v);
        }
    }
    Ok(seal_envelope(TOPICS_MAGIC, &w.0))
}

pub(crate) fn decode_topics(file: &Path, bytes: &[u8]) -> Result<Vec<(String, TopicConfig)>> {
    let payload = open_envelope(TOPICS_MAGIC, bytes).map_err(|e| corrupt(file, e))?;
    decode_topics_payload(payload).map_err(|e| corrupt(file, e))
}

fn decode_topics_payload(
    payload: &[u8],
) -> std::result::Result<Vec<(String, TopicConfig)>, String> {
    let mut r = Reader::new(payload);
    let count = r.u32()?;
    let mut topics = Vec::new();
    for _ in 0..count {
        let name =
            String::from_utf8(r.bytes16()?.to_vec()).map_err(|_| "topic name is not UTF-8")?;
        let mut c = TopicConfig::default();
        let nfields = r.u16()?;
        for _ in 0..nfields {
            let t = r.u16()?;
            let mut v = Reader::new(r.bytes16()?);
            match t {
                tag::PARTITIONS => c.partitions = v.u32()?,
                tag::SEGMENT_BYTES => c.segment_bytes = v.u64()?,
                tag::SEGMENT_MS => c.segment_ms = Duration::from_millis(v.u64()?),
                tag::SEGMENT_INDEX_BYTES => c.segment_index_bytes = v.u64()? as usize,
                tag::INDEX_INTERVAL_BYTES => c.index_interval_bytes = v.u64()? as usize,
                tag::MAX_MESSAGE_BYTES => c.max_message_bytes = v.u64()? as usize,
                tag::COMPRESSION => {
                    let codec = v.u8()?;
                    let level = v.u32()? as i32;
                    c.compression = match codec {
                        0 => Compression::None,
                        3 => Compression::Lz4,
                        4 => Compression::Zstd { level },
                        other => return Err(format!("unknown compression id {other}")),
                    };
                }
                tag::TIMESTAMP_TYPE => {
                    c.message_timestamp_type = match v.u8()? {
                        0 => TimestampType::CreateTime,
                        1 => TimestampType::LogAppendTime,
                        other => return Err(format!("unknown timestamp type {other}")),
                    }
                }
                tag::CLEANUP_POLICY => {
                    c.cleanup_policy = match v.u8()? {
                        0 => CleanupPolicy::Delete,
                        1 => CleanupPolicy::Compact,
                        2 => CleanupPolicy::CompactAndDelete,
                        other => return Err(format!("unknown cleanup policy {other}")),
                    }
                }
                tag::RETENTION_MS => {
                    c.retention_ms = read_optional_u64(&mut v)?.map(Duration::from_millis)
                }
                tag::RETENTION_BYTES => c.retention_bytes = read_optional_u64(&mut v)?,
                tag::MIN_CLEANABLE_DIRTY_RATIO => {
                    c.min_cleanable_dirty_ratio = f64::from_bits(v.u64()?)
                }
                tag::MIN_COMPACTION_LAG_MS => {
                    c.min_compaction_lag_ms = Duration::from_millis(v.u64()?)
                }
                tag::MAX_COMPACTION_LAG_MS => {
                    c.max_compaction_lag_ms = read_optional_u64(&mut v)?.map(Duration::from_millis)
                }
                tag::DELETE_RETENTION_MS => c.delete_retention_ms = Duration::from_millis(v.u64()?),
                tag::COMPACTION_STRATEGY => c.compaction_strategy = decode_strategy(&mut v)?,
                tag::RETAIN_FOR_GROUPS => c.retain_for_groups = decode_groups(&mut v)?,
                tag::MAX_RETENTION_MS => {
                    c.max_retention_ms = read_optional_u64(&mut v)?.map(Duration::from_millis)
                }
                tag::MAX_RETENTION_BYTES => c.max_retention_bytes = read_optional_u64(&mut v)?,
                other => {
                    return Err(format!(
                        "unknown field tag {other} (written by a newer annals?)"
                    ))
                }
            }
        }
        c.validate().map_err(|e| format!("topic {name:?}: {e}"))?;
        topics.push((name, c));
    }
    if !r.is_empty() {
        return Err("trailing bytes after the last topic".into());
    }
    Ok(topics)
}

fn read_optional_u64(r: &mut Reader) -> std::result::Result<Option<u64>, String> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.u64()?)),
        other => Err(format!("bad option flag {other}")),
    }
}

pub(crate) fn load_topics(storage: &dyn Storage, dir: &Path) -> Result<Vec<(String, TopicConfig)>> {
    let path = dir.join(TOPICS_FILE);
    if !storage.exists(&path)? {
        return Ok(Vec::new());
    }
    decode_topics(&path, &read_whole(storage, &path)?)
}

pub(crate) fn store_topics(
    storage: &dyn Storage,
    dir: &Path,
    topics: &[(String, TopicConfig)],
) -> Result<()> {
    Ok(write_atomic(
        storage,
        &dir.join(TOPICS_FILE),
        &encode_topics(topics)?,
    )?)
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
mod cleaner_fields;
#[cfg(test)]
mod proptests;
pub(crate) use bounds::{load_bounds, store_bounds, Bounds, BOUNDS_FILE};
use cleaner_fields::{decode_groups, decode_strategy, encode_groups, encode_strategy};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CompactionStrategy;

    #[test]
    fn topics_round_trip() {
        let topics = vec![
            ("a".to_string(), TopicConfig::default()),
            (
                "orders.v2".to_string(),
                TopicConfig::default()
                    .partitions(7)
                    .compression(Compression::Zstd { level: 9 })
                    .retention_ms(Duration::from_secs(60))
                    .retention_bytes(1 << 20)
                    .cleanup_policy(CleanupPolicy::Compact)
                    .message_timestamp_type(TimestampType::LogAppendTime),
            ),
            (
                "cleaned".to_string(),
                TopicConfig::default()
                    .cleanup_policy(CleanupPolicy::CompactAndDelete)
                    .min_cleanable_dirty_ratio(0.25)
                    .min_compaction_lag_ms(Duration::from_millis(5))
                    .max_compaction_lag_ms(Duration::from_secs(9))
                    .delete_retention_ms(Duration::ZERO)
                    .compaction_strategy(CompactionStrategy::Header("version".into()))
                    .retain_for_groups(["billing", "audit"])
                    .max_retention_ms(Duration::from_secs(3600))
                    .max_retention_bytes(1 << 30),
            ),
            (
                "by-time".to_string(),
                TopicConfig::default().compaction_strategy(CompactionStrategy::Timestamp),
            ),
        ];
        let bytes = encode_topics(&topics).unwrap();
        assert_eq!(decode_topics(Path::new("t"), &bytes).unwrap(), topics);
    }

    #[test]
    fn every_flipped_byte_or_cut_is_reported() {
        let bytes = encode_topics(&[("a".to_string(), TopicConfig::default())]).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            assert!(matches!(
                decode_topics(Path::new("t"), &b),
                Err(Error::CorruptMetadata { .. })
            ));
            assert!(decode_topics(Path::new("t"), &bytes[..i]).is_err());
        }
    }

    #[test]
    fn a_stored_duration_beyond_i64_max_ms_is_corrupt() {
        for (t, value) in [
            (tag::SEGMENT_MS, u64::MAX.to_be_bytes().to_vec()),
            (tag::RETENTION_MS, optional_u64(Some(i64::MAX as u64 + 1))),
        ] {
            let mut w = Writer::default();
            w.u32(1);
            w.bytes16(b"t");
            w.u16(1);
            field(&mut w, t, &value);
            let bytes = seal_envelope(TOPICS_MAGIC, &w.0);
            assert!(matches!(
                decode_topics(Path::new("t"), &bytes),
                Err(Error::CorruptMetadata { .. })
            ));
        }
    }

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
