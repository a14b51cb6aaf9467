//! The key and value layout of records in `__consumer_offsets` (see `docs/FORMAT.md`).
//!
//! Key:   version u16 = 1 | group_len u16 | group | topic_len u16 | topic | partition u32
//! Value: version u16 = 1 | offset u64 | commit_timestamp i64 | metadata_len u32 | metadata
//!
//! All integers big-endian, as in Kafka's own offset records. A null value (tombstone) deletes
//! the key. The version leads both so a later layout can be told apart.

use bytes::{BufMut, Bytes, BytesMut};

use crate::meta::Reader;
use crate::topic_partition::TopicPartition;

const VERSION: u16 = 1;

/// A committed position: the next offset the group will read, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OffsetAndMetadata {
    /// The next offset to read (one past the last processed record).
    pub offset: u64,
    /// Free-form text stored with the commit (at most 4096 bytes).
    pub metadata: String,
    /// When the commit was made, in milliseconds since the Unix epoch (set by the log).
    pub commit_timestamp: i64,
}

impl OffsetAndMetadata {
    /// An offset with no metadata; the timestamp is filled in at commit time.
    pub fn new(offset: u64) -> Self {
        OffsetAndMetadata {
            offset,
            metadata: String::new(),
            commit_timestamp: 0,
        }
    }

    /// Attaches metadata text.
    #[must_use]
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

pub(crate) fn encode_key(group: &str, tp: &TopicPartition) -> Bytes {
    let mut b = BytesMut::with_capacity(10 + group.len() + tp.topic.len());
    b.put_u16(VERSION);
    b.put_u16(group.len() as u16);
    b.put_slice(group.as_bytes());
    b.put_u16(tp.topic.len() as u16);
    b.put_slice(tp.topic.as_bytes());
    b.put_u32(tp.partition);
    b.freeze()
}

pub(crate) fn encode_value(v: &OffsetAndMetadata) -> Bytes {
    let mut b = BytesMut::with_capacity(22 + v.metadata.len());
    b.put_u16(VERSION);
    b.put_u64(v.offset);
    b.put_i64(v.commit_timestamp);
    b.put_u32(v.metadata.len() as u32);
    b.put_slice(v.metadata.as_bytes());
    b.freeze()
}

fn string(r: &mut Reader<'_>, len: usize) -> Option<String> {
    String::from_utf8(r.take(len).ok()?.to_vec()).ok()
}

// Decoded with the metadata files' reader (`meta::Reader`), which fails instead of panicking on
// short input; a record that does not decode whole is `None`.
pub(crate) fn decode_key(bytes: &[u8]) -> Option<(String, TopicPartition)> {
    let mut r = Reader::new(bytes);
    if r.u16().ok()? != VERSION {
        return None;
    }
    let len = r.u16().ok()? as usize;
    let group = string(&mut r, len)?;
    let len = r.u16().ok()? as usize;
    let topic = string(&mut r, len)?;
    let partition = r.u32().ok()?;
    r.is_empty()
        .then_some((group, TopicPartition::new(topic, partition)))
}

pub(crate) fn decode_value(bytes: &[u8]) -> Option<OffsetAndMetadata> {
    let mut r = Reader::new(bytes);
    if r.u16().ok()? != VERSION {
        return None;
    }
    let offset = r.u64().ok()?;
    let commit_timestamp = r.i64().ok()?;
    let len = r.u32().ok()? as usize;
    let metadata = string(&mut r, len)?;
    r.is_empty().then_some(OffsetAndMetadata {
        offset,
        metadata,
        commit_timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_are_pinned() {
        let tp = TopicPartition::new("t", 2);
        let key = encode_key("g", &tp);
        assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2][..]);
        let v = OffsetAndMetadata {
            offset: 0x0102,
            metadata: "m".into(),
            commit_timestamp: -1,
        };
        let value = encode_value(&v);
        let mut want = vec![0, 1, 0, 0, 0, 0, 0, 0, 1, 2];
        want.extend_from_slice(&[0xff; 8]);
        want.extend_from_slice(&[0, 0, 0, 1, b'm']);
        assert_eq!(&value[..], &want[..]);
        assert_eq!(decode_key(&key), Some(("g".to_string(), tp)));
        assert_eq!(decode_value(&value), Some(v));
    }

    #[test]
    fn round_trip_and_every_truncation_or_trailing_byte_is_rejected() {
        let tp = TopicPartition::new("orders", 7);
        let key = encode_key("group é", &tp);
        assert_eq!(decode_key(&key), Some(("group é".to_string(), tp)));
        let v = OffsetAndMetadata {
            offset: 42,
            metadata: "m".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        let value = encode_value(&v);
        assert_eq!(decode_value(&value), Some(v));
        for n in 0..key.len() {
            assert_eq!(decode_key(&key[..n]), None);
        }
        for n in 0..value.len() {
            assert_eq!(decode_value(&value[..n]), None);
        }
        let mut long = value.to_vec();
        long.push(0);
        assert_eq!(decode_value(&long), None);
        let mut wrong_version = key.to_vec();
        wrong_version[1] = 9;
        assert_eq!(decode_key(&wrong_version), None);
    }
}
