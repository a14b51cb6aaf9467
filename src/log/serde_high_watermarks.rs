//! `#[serde(with = ...)]` for [`CheckpointReport::high_watermarks`](super::backup::CheckpointReport)
//! (feature `serde`): a map keyed by [`TopicPartition`] cannot be a JSON object, whose keys are
//! strings, so it is written as a list of `{"topic", "partition", "high_watermark"}` entries in
//! partition order, and read back refusing a partition listed twice.

use std::collections::BTreeMap;

use serde::ser::SerializeSeq;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::topic_partition::TopicPartition;

#[derive(Serialize)]
struct EntryRef<'a> {
    topic: &'a str,
    partition: u32,
    high_watermark: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    topic: String,
    partition: u32,
    high_watermark: u64,
}

pub(crate) fn serialize<S: Serializer>(
    map: &BTreeMap<TopicPartition, u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(map.len()))?;
    for (tp, &high_watermark) in map {
        seq.serialize_element(&EntryRef {
            topic: &tp.topic,
            partition: tp.partition,
            high_watermark,
        })?;
    }
    seq.end()
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<TopicPartition, u64>, D::Error> {
    let mut map = BTreeMap::new();
    for e in Vec::<Entry>::deserialize(d)? {
        let tp = TopicPartition::new(e.topic, e.partition);
        if map.contains_key(&tp) {
            return Err(de::Error::custom(format_args!(
                "the high watermark of {tp} is listed twice"
            )));
        }
        map.insert(tp, e.high_watermark);
    }
    Ok(map)
}
