//! One run of a [`Mirror`](super::Mirror): `connect` checks the routes against the cluster and
//! annals, takes over the annals transactional id and reads the committed Kafka offsets; `copy`
//! runs annals transaction after transaction until a stop or a fatal error.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use annals::{
    ConsumerConfig, ConsumerGroupMetadata, Header as AnnalsHeader, OffsetAndMetadata,
    ProducerConfig, Record, TopicConfig, TopicPartition,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};

use super::Shared;
use crate::client::{base_config, metadata_client, partition_counts, NEW_TOPIC_GRACE};
use crate::config::MirrorConfig;
use crate::error::{Error, Result, Role};
use crate::worker::StopFlag;

/// A Kafka partition being copied.
#[derive(Debug)]
struct Source {
    annals_topic: String,
    /// The next Kafka offset committed in annals.
    committed: u64,
    /// The next Kafka offset copied in the open transaction.
    next: u64,
}

pub(super) struct Session {
    producer: annals::Producer,
    consumer: BaseConsumer,
    group: ConsumerGroupMetadata,
    sources: HashMap<(String, u32), Source>,
    /// When the high watermarks were last asked for (metrics only).
    watermarks_at: Instant,
}

impl Session {
    pub(super) fn connect(shared: &Shared) -> Result<Session> {
        let config = &shared.config;
        let (bootstrap, timeout) = (config.bootstrap.as_str(), config.connect_timeout);
        let log = &shared.log;
        let metadata = metadata_client(bootstrap, timeout, &config.kafka)?;
        let names: Vec<&str> = config
            .routes
            .iter()
            .map(|r| r.kafka_topic.as_str())
            .collect();
        let counts = partition_counts(
            &metadata,
            bootstrap,
            &names,
            timeout,
            NEW_TOPIC_GRACE,
            "look up the mirror's Kafka topics",
        )?;
        let group_id = config.transactional_id();
        let offsets = log
            .consumer(ConsumerConfig::new(group_id.as_str()))
            .map_err(Error::annals("open the mirror's annals group"))?;
        let mut sources = HashMap::new();
        for r in &config.routes {
            let Some(kafka_partitions) = counts[&r.kafka_topic] else {
                return Err(Error::MissingKafkaTopic {
                    op: format!("start mirror {:?}", config.id),
                    bootstrap: bootstrap.into(),
                    topic: r.kafka_topic.clone(),
                    partitions_hint: 0,
                });
            };
            let annals_topic = r.annals_topic.as_str();
            if !log.has_topic(annals_topic) && config.create_topics {
                log.create_topic_if_missing(
                    annals_topic,
                    TopicConfig::default().partitions(kafka_partitions),
                )
                .map_err(Error::annals(format!(
                    "create annals topic {annals_topic:?}"
                )))?;
            }
            let annals_partitions = log
                .topic_config(annals_topic)
                .map_err(Error::annals(format!(
                    "look up annals topic {annals_topic:?}"
                )))?
                .partitions;
            if annals_partitions != kafka_partitions {
                return Err(Error::PartitionMismatch {
                    annals_topic: annals_topic.into(),
                    annals_partitions,
                    kafka_topic: r.kafka_topic.clone(),
                    kafka_partitions,
                });
            }
            for p in 0..kafka_partitions {
                let committed =
                    offsets
                        .committed(annals_topic, p)
                        .map_err(Error::annals(format!(
                            "read the mirror's offset for {annals_topic}/{p}"
                        )))?;
                let next = match committed {
                    Some(c) if !c.metadata.is_empty() && c.metadata != r.kafka_topic => {
                        return Err(Error::InvalidConfig {
                            what: "mirror route",
                            why: format!(
                                "annals topic {annals_topic:?} holds mirror {:?}'s copy of Kafka topic {:?}, not of {:?}",
                                config.id, c.metadata, r.kafka_topic
                            ),
                        })
                    }
                    Some(c) => c.offset,
                    None => 0,
                };
                sources.insert(
                    (r.kafka_topic.clone(), p),
                    Source {
                        annals_topic: annals_topic.into(),
                        committed: next,
                        next,
                    },
                );
            }
        }
        drop(offsets);

        let producer = log
            .producer(ProducerConfig::default().transactional_id(group_id.as_str()))
            .map_err(Error::annals("create the mirror's annals producer"))?;
        producer
            .init_transactions()
            .map_err(|e| fenced_or(e, config, "init the mirror's annals transactions"))?;

        let kbytes = (config.max_prefetch_bytes / 1024).max(1).to_string();
        let mut client = base_config(bootstrap, timeout, &[]);
        client
            .set("group.id", group_id.as_str())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("queued.max.messages.kbytes", kbytes.as_str());
        for (k, v) in &config.kafka {
            client.set(k, v);
        }
        let consumer: BaseConsumer = client.create().map_err(|source| Error::Kafka {
            op: "create the mirror's Kafka consumer".into(),
            bootstrap: bootstrap.into(),
            source: Box::new(source),
        })?;
        let session = Session {
            producer,
            consumer,
            group: ConsumerGroupMetadata::new(group_id),
            sources,
            watermarks_at: Instant::now()
                .checked_sub(Duration::from_secs(1))
                .unwrap_or_else(Instant::now),
        };
        session.assign(shared)?;
        {
            let mut status = shared.status.lock();
            status.copied = session
                .sources
                .iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        (s.committed, s.committed, s.annals_topic.clone()),
                    )
                })
                .collect();
        }
        Ok(session)
    }

    /// (Re)assigns every source partition at its committed offset.
    fn assign(&self, shared: &Shared) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for ((topic, p), s) in &self.sources {
            list.add_partition_offset(topic, *p as i32, Offset::Offset(s.committed as i64))
                .map_err(|source| Error::Kafka {
                    op: format!("assign Kafka {topic}/{p}"),
                    bootstrap: shared.config.bootstrap.clone(),
                    source: Box::new(source),
                })?;
        }
        self.consumer.assign(&list).map_err(|source| Error::Kafka {
            op: "assign the mirror's Kafka partitions".into(),
            bootstrap: shared.config.bootstrap.clone(),
            source: Box::new(source),
        })
    }

    pub(super) fn copy(&mut self, shared: &Shared, stop: &StopFlag) -> Result<()> {
        while !stop.is_set() {
            self.transaction(shared, stop)?;
        }
        Ok(())
    }

    fn transaction(&mut self, shared: &Shared, stop: &StopFlag) -> Result<()> {
        let config = &shared.config;
        let Some(first) = poll(&self.consumer, shared, Duration::from_millis(100)) else {
            self.note_watermarks(shared);
            return Ok(());
        };
        self.producer
            .begin_transaction()
            .map_err(|e| fenced_or(e, config, "begin an annals transaction"))?;
        let started = Instant::now();
        let mut copied = 0usize;
        let mut key = (String::new(), 0u32);
        let mut next = Some(first);
        let mut failed = None;
        while let Some(m) = next.take() {
            if let Err(e) = append(&self.producer, &mut self.sources, &mut key, &m) {
                failed = Some(e);
                break;
            }
            copied += 1;
            if copied >= config.max_transaction_records
                || started.elapsed() >= config.max_transaction_time
                || stop.is_set()
            {
                break;
            }
            next = poll(&self.consumer, shared, Duration::ZERO);
        }
        let result = match failed {
            Some(e) => Err(e),
            None => self.commit(),
        };
        match result {
            Ok(()) => {
                let mut status = shared.status.lock();
                status.records += copied as u64;
                status.committed += 1;
                for (key, s) in &mut self.sources {
                    s.committed = s.next;
                    if let Some(entry) = status.copied.get_mut(key) {
                        entry.0 = s.next;
                        entry.1 = entry.1.max(s.next);
                    }
                }
                drop(status);
                self.note_watermarks(shared);
                Ok(())
            }
            Err(e) if e.is_fatal() => Err(fenced_or(e, config, "copy records into annals")),
            Err(e) => {
                shared.status.lock().last_error = Some(format!("copy records into annals: {e}"));
                self.producer
                    .abort_transaction()
                    .map_err(|e| fenced_or(e, config, "abort a failed annals transaction"))?;
                shared.status.lock().aborted += 1;
                for s in self.sources.values_mut() {
                    s.next = s.committed;
                }
                self.assign(shared)
            }
        }
    }

    /// Adds the copied Kafka offsets to the transaction and commits it.
    fn commit(&self) -> annals::Result<()> {
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = self
            .sources
            .iter()
            .filter(|(_, s)| s.next != s.committed)
            .map(|((kafka_topic, p), s)| {
                (
                    TopicPartition::new(s.annals_topic.as_str(), *p),
                    OffsetAndMetadata::new(s.next).with_metadata(kafka_topic.as_str()),
                )
            })
            .collect();
        self.producer
            .send_offsets_to_transaction(&offsets, &self.group)?;
        self.producer.commit_transaction()
    }

    /// Between transactions: asks the cluster for the high watermarks (at most once a second),
    /// and records the consumer's positions, which pass transaction markers and aborted
    /// records after the last record copied — offsets with nothing to copy, so copied too.
    fn note_watermarks(&mut self, shared: &Shared) {
        let positions = self.consumer.position().ok();
        let mut highs = HashMap::new();
        if self.watermarks_at.elapsed() >= Duration::from_secs(1) {
            self.watermarks_at = Instant::now();
            for (topic, p) in self.sources.keys() {
                let fetched =
                    self.consumer
                        .fetch_watermarks(topic, *p as i32, Duration::from_secs(1));
                if let Ok((_, high)) = fetched {
                    highs.insert((topic.clone(), *p), high.max(0) as u64);
                }
            }
        }
        let mut status = shared.status.lock();
        for (key, entry) in status.copied.iter_mut() {
            let (topic, p) = key;
            if let Some(&high) = highs.get(key) {
                entry.1 = entry.1.max(high);
            }
            let position = positions
                .as_ref()
                .and_then(|list| list.find_partition(topic, *p as i32))
                .map(|e| e.offset());
            if let Some(Offset::Offset(at)) = position {
                entry.0 = entry.0.max(at.max(0) as u64);
            }
        }
    }
}

/// Appends one Kafka record to its annals partition, in the open transaction.
fn append(
    producer: &annals::Producer,
    sources: &mut HashMap<(String, u32), Source>,
    key: &mut (String, u32),
    m: &BorrowedMessage<'_>,
) -> annals::Result<()> {
    let partition = m.partition() as u32;
    // The lookup key's buffer is the caller's, reused: no allocation per record.
    key.0.clear();
    key.0.push_str(m.topic());
    key.1 = partition;
    let source = sources
        .get_mut(&*key)
        .expect("the consumer is assigned only the mirror's partitions");
    let mut record = Record {
        key: m.key().map(annals::Bytes::copy_from_slice),
        value: m.payload().map(annals::Bytes::copy_from_slice),
        headers: Vec::new(),
        timestamp: None,
    };
    if let Some(headers) = m.headers() {
        record.headers = headers
            .iter()
            .map(|h| AnnalsHeader {
                key: h.key.to_owned(),
                value: h.value.map(annals::Bytes::copy_from_slice),
            })
            .collect();
    }
    if let Timestamp::CreateTime(ts) | Timestamp::LogAppendTime(ts) = m.timestamp() {
        if ts >= 0 {
            record.timestamp = Some(ts);
        }
    }
    producer.send_to(&source.annals_topic, partition, record)?;
    source.next = m.offset() as u64 + 1;
    Ok(())
}

/// Polls Kafka; `None` when nothing came (an error the consumer reported is counted).
fn poll<'c>(
    consumer: &'c BaseConsumer,
    shared: &Shared,
    timeout: Duration,
) -> Option<BorrowedMessage<'c>> {
    match consumer.poll(timeout)? {
        Ok(m) => Some(m),
        Err(e) => {
            let mut status = shared.status.lock();
            status.consumer_errors += 1;
            status.last_error = Some(format!("Kafka consumer: {e}"));
            None
        }
    }
}

/// annals' fencing as this crate's [`Error::Fenced`]; any other annals error with `op`.
fn fenced_or(e: annals::Error, config: &MirrorConfig, op: &str) -> Error {
    match e {
        annals::Error::ProducerFenced { .. } => Error::Fenced {
            role: Role::Mirror,
            id: config.id.clone(),
            transactional_id: config.transactional_id(),
        },
        source => Error::Annals {
            op: op.into(),
            source,
        },
    }
}
