//! `topics.meta`: every topic's configuration, one tagged field per setting (format in
//! `docs/FORMAT.md`).

use std::path::Path;
use std::time::Duration;

use super::{corrupt, open_envelope, seal_envelope, Reader, Writer};
use crate::config::{duration_to_millis, CleanupPolicy, CompactionStrategy, TopicConfig};
use crate::error::Result;
use crate::format::{Compression, TimestampType};
use crate::storage::{read_whole, write_atomic, Storage};

pub(crate) const TOPICS_FILE: &str = "topics.meta";
pub(crate) const TOPICS_MAGIC: [u8; 4] = *b"ANTP";

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

/// One tagged field: `tag`, then `u16` length and the bytes `value` writes (straight into the
/// file's buffer: a creation encodes every topic, so nothing here allocates per field).
fn field(w: &mut Writer, tag: u16, value: impl FnOnce(&mut Writer)) {
    w.u16(tag);
    let at = w.0.len();
    w.u16(0);
    value(w);
    // Validation bounds every value below 64 KiB (the longest, `retain_for_groups`, to
    // about 26 KiB).
    let len = (w.0.len() - at - 2) as u16;
    if let Some(slot) = w.0.get_mut(at..at + 2) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

fn optional_u64(w: &mut Writer, v: Option<u64>) {
    match v {
        None => w.0.push(0),
        Some(v) => {
            w.0.push(1);
            w.u64(v);
        }
    }
}

/// The number of fields each topic has in the file.
const FIELDS: u16 = 19;

/// Encodes validated configurations; a duration `topics.meta` cannot hold exactly is refused
/// (`InvalidConfig`) rather than written wrong. Takes references, so a creation encodes the
/// catalog's topics as they are, without copying their configurations.
pub(crate) fn encode_topics<'a>(
    topics: impl IntoIterator<Item = (&'a str, &'a TopicConfig)>,
) -> Result<Vec<u8>> {
    let ms = duration_to_millis;
    let optional_ms = |field, d: Option<Duration>| d.map(|d| ms(field, d)).transpose();
    let topics = topics.into_iter();
    // About what one topic takes with default settings, so the buffer rarely grows.
    let mut w = Writer(Vec::with_capacity(4 + topics.size_hint().0 * 256));
    // The count, filled in once the topics are counted.
    w.u32(0);
    let mut count: u32 = 0;
    for (name, c) in topics {
        count += 1;
        let segment_ms = ms("segment_ms", c.segment_ms)?;
        let retention_ms = optional_ms("retention_ms", c.retention_ms)?;
        let min_compaction_lag_ms = ms("min_compaction_lag_ms", c.min_compaction_lag_ms)?;
        let max_compaction_lag_ms = optional_ms("max_compaction_lag_ms", c.max_compaction_lag_ms)?;
        let delete_retention_ms = ms("delete_retention_ms", c.delete_retention_ms)?;
        let max_retention_ms = optional_ms("max_retention_ms", c.max_retention_ms)?;
        let (codec, level) = match c.compression {
            Compression::None => (0u8, 0i32),
            Compression::Lz4 => (3, 0),
            Compression::Zstd { level } => (4, level),
        };
        w.bytes16(name.as_bytes());
        w.u16(FIELDS);
        field(&mut w, tag::PARTITIONS, |w| w.u32(c.partitions));
        field(&mut w, tag::SEGMENT_BYTES, |w| w.u64(c.segment_bytes));
        field(&mut w, tag::SEGMENT_MS, |w| w.u64(segment_ms));
        field(&mut w, tag::SEGMENT_INDEX_BYTES, |w| {
            w.u64(c.segment_index_bytes as u64)
        });
        field(&mut w, tag::INDEX_INTERVAL_BYTES, |w| {
            w.u64(c.index_interval_bytes as u64)
        });
        field(&mut w, tag::MAX_MESSAGE_BYTES, |w| {
            w.u64(c.max_message_bytes as u64)
        });
        field(&mut w, tag::COMPRESSION, |w| {
            w.0.push(codec);
            w.0.extend_from_slice(&level.to_be_bytes());
        });
        field(&mut w, tag::TIMESTAMP_TYPE, |w| {
            w.0.push((c.message_timestamp_type == TimestampType::LogAppendTime) as u8)
        });
        field(&mut w, tag::CLEANUP_POLICY, |w| {
            w.0.push(match c.cleanup_policy {
                CleanupPolicy::Delete => 0,
                CleanupPolicy::Compact => 1,
                CleanupPolicy::CompactAndDelete => 2,
            })
        });
        field(&mut w, tag::RETENTION_MS, |w| optional_u64(w, retention_ms));
        field(&mut w, tag::RETENTION_BYTES, |w| {
            optional_u64(w, c.retention_bytes)
        });
        field(&mut w, tag::MIN_CLEANABLE_DIRTY_RATIO, |w| {
            w.u64(c.min_cleanable_dirty_ratio.to_bits())
        });
        field(&mut w, tag::MIN_COMPACTION_LAG_MS, |w| {
            w.u64(min_compaction_lag_ms)
        });
        field(&mut w, tag::MAX_COMPACTION_LAG_MS, |w| {
            optional_u64(w, max_compaction_lag_ms)
        });
        field(&mut w, tag::DELETE_RETENTION_MS, |w| {
            w.u64(delete_retention_ms)
        });
        field(&mut w, tag::COMPACTION_STRATEGY, |w| {
            encode_strategy(w, &c.compaction_strategy)
        });
        field(&mut w, tag::RETAIN_FOR_GROUPS, |w| {
            encode_groups(w, &c.retain_for_groups)
        });
        field(&mut w, tag::MAX_RETENTION_MS, |w| {
            optional_u64(w, max_retention_ms)
        });
        field(&mut w, tag::MAX_RETENTION_BYTES, |w| {
            optional_u64(w, c.max_retention_bytes)
        });
    }
    if let Some(slot) = w.0.get_mut(..4) {
        slot.copy_from_slice(&count.to_be_bytes());
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
    let topics = topics.iter().map(|(n, c)| (n.as_str(), c));
    store_encoded_topics(storage, dir, &encode_topics(topics)?)
}

/// Replaces `topics.meta` with what [`encode_topics`] made: a creation encodes first, so a
/// configuration the file cannot hold is refused before any partition is made.
pub(crate) fn store_encoded_topics(
    storage: &dyn Storage,
    dir: &Path,
    encoded: &[u8],
) -> Result<()> {
    Ok(write_atomic(storage, &dir.join(TOPICS_FILE), encoded)?)
}

// The two compound fields of compaction and retention: COMPACTION_STRATEGY and
// RETAIN_FOR_GROUPS.

/// `u8` kind (0 offset, 1 timestamp, 2 header) followed, for a header, by its UTF-8 name.
fn encode_strategy(w: &mut Writer, s: &CompactionStrategy) {
    match s {
        CompactionStrategy::Offset => w.0.push(0),
        CompactionStrategy::Timestamp => w.0.push(1),
        CompactionStrategy::Header(name) => {
            w.0.push(2);
            w.0.extend_from_slice(name.as_bytes());
        }
    }
}

fn decode_strategy(r: &mut Reader) -> std::result::Result<CompactionStrategy, String> {
    let kind = r.u8()?;
    let rest = r.rest();
    match (kind, rest.is_empty()) {
        (0, true) => Ok(CompactionStrategy::Offset),
        (1, true) => Ok(CompactionStrategy::Timestamp),
        (2, _) => String::from_utf8(rest.to_vec())
            .map(CompactionStrategy::Header)
            .map_err(|_| "compaction header name is not UTF-8".to_string()),
        _ => Err(format!("unknown compaction strategy {kind}")),
    }
}

/// `u16` count, then each group id as `u16` length + UTF-8.
fn encode_groups(w: &mut Writer, groups: &[String]) {
    w.u16(groups.len() as u16);
    for g in groups {
        w.bytes16(g.as_bytes());
    }
}

fn decode_groups(r: &mut Reader) -> std::result::Result<Vec<String>, String> {
    let n = r.u16()?;
    (0..n)
        .map(|_| {
            String::from_utf8(r.bytes16()?.to_vec()).map_err(|_| "group id is not UTF-8".into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

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
        let bytes = encode_topics(topics.iter().map(|(n, c)| (n.as_str(), c))).unwrap();
        assert_eq!(decode_topics(Path::new("t"), &bytes).unwrap(), topics);
    }

    #[test]
    fn every_flipped_byte_or_cut_is_reported() {
        let bytes = encode_topics([("a", &TopicConfig::default())]).unwrap();
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
            (
                tag::RETENTION_MS,
                [&[1][..], &(i64::MAX as u64 + 1).to_be_bytes()].concat(),
            ),
        ] {
            let mut w = Writer::default();
            w.u32(1);
            w.bytes16(b"t");
            w.u16(1);
            field(&mut w, t, |w| w.0.extend_from_slice(&value));
            let bytes = seal_envelope(TOPICS_MAGIC, &w.0);
            assert!(matches!(
                decode_topics(Path::new("t"), &bytes),
                Err(Error::CorruptMetadata { .. })
            ));
        }
    }
}
