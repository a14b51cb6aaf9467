//! The relay's progress in Kafka: for each annals partition, the next annals offset to forward,
//! written to a compacted topic in the same Kafka transaction as the records up to it (Kafka
//! Connect's exactly-once sources keep their offsets the same way, KIP-618). Read back
//! read_committed on every (re)connect, after `init_transactions` has ended whatever an earlier
//! instance left open, so what is read is exactly what Kafka has.
//!
//! A record's key is `<relay id>/<annals topic>/<partition>` (ids and topic names cannot hold a
//! `/`), its value the next offset as decimal text: readable with Kafka's console consumer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::client::{base_config, is_transient, retry_transient, unreachable_or_kafka};
use crate::error::{Error, Result};

/// An annals partition, as progress is kept for it.
pub(crate) type AnnalsPartition = (String, u32);

pub(crate) fn key(relay_id: &str, topic: &str, partition: u32) -> String {
    format!("{relay_id}/{topic}/{partition}")
}

pub(crate) fn value(next: u64) -> String {
    next.to_string()
}

/// Where every partition of relay `relay_id` stands, as committed in `topic` (which has
/// `partitions` partitions). Reads until each partition's position reaches the high watermark
/// the cluster had when the read began, so a transaction of another relay still open on the
/// topic is waited for (read_committed cannot pass it) rather than read past.
pub(crate) fn read(
    metadata: &BaseConsumer,
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    relay_id: &str,
    timeout: Duration,
    extra: &[(String, String)],
) -> Result<HashMap<AnnalsPartition, u64>> {
    let op = format!("read the relay's progress from {topic:?}");
    let kafka = |e| unreachable_or_kafka(e, bootstrap, timeout, &op);
    let mut config = base_config(bootstrap, timeout, extra);
    let consumer: BaseConsumer = config
        .set("group.id", format!("annals-relay.{relay_id}.progress"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(kafka)?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions as i32 {
        // The high watermark, not the last stable offset (the metadata client reads
        // uncommitted): what read_committed must reach.
        let (_, high) = retry_transient(timeout, || metadata.fetch_watermarks(topic, p, timeout))
            .map_err(kafka)?;
        ends.insert(p, high);
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .map_err(kafka)?;
    }
    consumer.assign(&assignment).map_err(kafka)?;

    let prefix = format!("{relay_id}/");
    let mut progress = HashMap::new();
    // A bound on silence, not on the whole read: each record read moves it on.
    let mut deadline = Instant::now() + timeout;
    while !reached(&consumer, topic, &ends).map_err(kafka)? {
        if Instant::now() >= deadline {
            return Err(Error::Unreachable {
                op,
                bootstrap: bootstrap.into(),
                timeout,
                detail: format!("the progress topic's end {ends:?} was not reached"),
            });
        }
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = match polled {
            Ok(m) => m,
            // A progress topic just created may not have its leader yet.
            Err(e) if is_transient(&e) => continue,
            Err(e) => return Err(kafka(e)),
        };
        deadline = Instant::now() + timeout;
        let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            continue;
        };
        let Some(rest) = key.strip_prefix(&prefix) else {
            continue; // another relay's
        };
        let corrupt = |why: String| Error::CorruptProgress {
            topic: topic.into(),
            partition: m.partition(),
            offset: m.offset(),
            why,
        };
        let (annals_topic, partition) = rest
            .rsplit_once('/')
            .and_then(|(t, p)| Some((t.to_owned(), p.parse::<u32>().ok()?)))
            .ok_or_else(|| corrupt(format!("key {key:?} is not <relay>/<topic>/<partition>")))?;
        match m.payload() {
            None => {
                progress.remove(&(annals_topic, partition));
            }
            Some(v) => {
                let next = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        corrupt(format!(
                            "value {:?} of {key:?} is not an offset",
                            String::from_utf8_lossy(v)
                        ))
                    })?;
                progress.insert((annals_topic, partition), next);
            }
        }
    }
    Ok(progress)
}

/// Whether the consumer's position reached `ends` on every partition.
fn reached(
    consumer: &BaseConsumer,
    topic: &str,
    ends: &HashMap<i32, i64>,
) -> rdkafka::error::KafkaResult<bool> {
    if ends.values().all(|&end| end <= 0) {
        return Ok(true);
    }
    let positions = consumer.position()?;
    Ok(ends.iter().all(|(&p, &end)| {
        end <= 0
            || matches!(
                positions.find_partition(topic, p).map(|e| e.offset()),
                Some(Offset::Offset(at)) if at >= end
            )
    }))
}
