//! One connection of a [`Relay`](super::Relay) to the cluster: `connect` checks the routes,
//! fences older relays with the id, reads the progress and seeks annals there; `forward` runs
//! Kafka transaction after transaction until a stop or an error ends the session.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{ConsumedRecord, ConsumerConfig, IsolationLevel, TopicPartition};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::Shared;
use crate::client::{
    base_config, ensure_progress_topic, metadata_client, partition_counts, unreachable_or_kafka,
    NEW_TOPIC_GRACE,
};
use crate::config::PartitionMapping;
use crate::error::{is_fenced, Error, Result, Role};
use crate::progress::{self, AnnalsPartition};
use crate::worker::StopFlag;

/// Counts what Kafka refused; the transaction's commit fails on the same records.
#[derive(Debug)]
struct DeliveryCounter {
    failures: Arc<AtomicU64>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An annals topic resolved against the cluster.
#[derive(Debug)]
struct Route {
    kafka_topic: String,
    kafka_partitions: u32,
    mapping: PartitionMapping,
}

/// One connection: a producer whose `init_transactions` succeeded, and an annals consumer at the
/// committed progress.
pub(super) struct Session {
    producer: ThreadedProducer<DeliveryCounter>,
    consumer: annals::Consumer,
    routes: HashMap<String, Route>,
    /// The committed next offset of every assigned annals partition.
    committed: HashMap<AnnalsPartition, u64>,
}

impl Session {
    pub(super) fn connect(shared: &Shared) -> Result<Session> {
        let config = &shared.config;
        let bootstrap = config.bootstrap.as_str();
        let timeout = config.connect_timeout;
        let log = &shared.log;

        let mut annals_counts = HashMap::new();
        for r in &config.routes {
            let topic = log
                .topic_config(&r.annals_topic)
                .map_err(Error::annals(format!(
                    "look up annals topic {:?}",
                    r.annals_topic
                )))?;
            annals_counts.insert(r.annals_topic.clone(), topic.partitions);
        }

        let metadata = metadata_client(bootstrap, timeout, &config.kafka)?;
        let names: Vec<&str> = config
            .routes
            .iter()
            .map(|r| r.kafka_topic.as_str())
            .collect();
        let op = "look up the relay's Kafka topics";
        let mut counts =
            partition_counts(&metadata, bootstrap, &names, timeout, NEW_TOPIC_GRACE, op)?;
        // The progress topic is the relay's own, created below when missing: no grace.
        counts.extend(partition_counts(
            &metadata,
            bootstrap,
            &[config.progress_topic.as_str()],
            timeout,
            Duration::ZERO,
            op,
        )?);
        let mut routes = HashMap::new();
        for r in &config.routes {
            let annals_partitions = annals_counts[&r.annals_topic];
            let Some(kafka_partitions) = counts[&r.kafka_topic] else {
                return Err(Error::MissingKafkaTopic {
                    op: format!("start relay {:?}", config.id),
                    bootstrap: bootstrap.into(),
                    topic: r.kafka_topic.clone(),
                    partitions_hint: annals_partitions,
                });
            };
            if r.mapping == PartitionMapping::Same && kafka_partitions != annals_partitions {
                return Err(Error::PartitionMismatch {
                    annals_topic: r.annals_topic.clone(),
                    annals_partitions,
                    kafka_topic: r.kafka_topic.clone(),
                    kafka_partitions,
                });
            }
            routes.insert(
                r.annals_topic.clone(),
                Route {
                    kafka_topic: r.kafka_topic.clone(),
                    kafka_partitions,
                    mapping: r.mapping,
                },
            );
        }
        let progress_partitions = match counts[&config.progress_topic] {
            Some(n) => n,
            None => {
                ensure_progress_topic(bootstrap, &config.progress_topic, timeout, &config.kafka)?;
                1
            }
        };

        let producer = Self::producer(shared)?;
        producer.init_transactions(timeout).map_err(|e| {
            unreachable_or_kafka(
                e,
                bootstrap,
                timeout,
                "init_transactions (fence older relays with this id)",
            )
        })?;
        let progress = progress::read(
            &metadata,
            bootstrap,
            &config.progress_topic,
            progress_partitions,
            &config.id,
            timeout.max(config.transaction_timeout),
            &config.kafka,
        )?;

        let mut consumer = log
            .consumer(
                ConsumerConfig::default()
                    .client_id(format!("annals-relay.{}", config.id))
                    .isolation_level(IsolationLevel::ReadCommitted)
                    .max_poll_records(config.max_poll_records),
            )
            .map_err(Error::annals("create the relay's annals consumer"))?;
        let mut tps = Vec::new();
        for r in &config.routes {
            tps.extend(
                (0..annals_counts[&r.annals_topic])
                    .map(|p| TopicPartition::new(r.annals_topic.as_str(), p)),
            );
        }
        consumer
            .assign(&tps)
            .map_err(Error::annals("assign the relay's annals partitions"))?;
        let mut committed = HashMap::new();
        for tp in &tps {
            let topic: &str = &tp.topic;
            let partition = log
                .partition(topic, tp.partition)
                .map_err(Error::annals(format!(
                    "open annals {topic}/{}",
                    tp.partition
                )))?;
            let (log_start, high) = (partition.log_start_offset(), partition.high_watermark());
            let key = (topic.to_owned(), tp.partition);
            let next = match progress.get(&key) {
                Some(&next) if next < log_start => {
                    return Err(Error::Truncated {
                        topic: topic.into(),
                        partition: tp.partition,
                        next,
                        log_start,
                    })
                }
                Some(&next) if next > high => {
                    return Err(Error::AheadOfLog {
                        id: config.id.clone(),
                        topic: topic.into(),
                        partition: tp.partition,
                        next,
                        high_watermark: high,
                    })
                }
                Some(&next) => next,
                // First run: from the start of what annals holds.
                None => log_start,
            };
            consumer
                .seek(topic, tp.partition, next)
                .map_err(Error::annals(format!(
                    "seek annals {topic}/{} to {next}",
                    tp.partition
                )))?;
            committed.insert(key, next);
        }
        {
            let mut status = shared.status.lock();
            status.forwarded = committed
                .iter()
                .map(|(k, &next)| (k.clone(), (next, routes[&k.0].kafka_topic.clone())))
                .collect();
        }
        Ok(Session {
            producer,
            consumer,
            routes,
            committed,
        })
    }

    fn producer(shared: &Shared) -> Result<ThreadedProducer<DeliveryCounter>> {
        let config = &shared.config;
        let txn_ms = config
            .transaction_timeout
            .as_millis()
            .min(i32::MAX as u128)
            .to_string();
        let kbytes = (config.max_buffered_bytes / 1024).max(1).to_string();
        let mut client = base_config(&config.bootstrap, config.connect_timeout, &[]);
        client
            .set("transactional.id", config.transactional_id())
            // The Java client's default partitioner, which annals::partition_for_key follows;
            // only used for a record sent without a partition (never, today).
            .set("partitioner", "murmur2_random")
            .set("transaction.timeout.ms", txn_ms.as_str())
            .set("message.timeout.ms", txn_ms.as_str())
            .set("queue.buffering.max.kbytes", kbytes.as_str());
        for (k, v) in &config.kafka {
            client.set(k, v);
        }
        client
            .create_with_context(DeliveryCounter {
                failures: Arc::clone(&shared.delivery_failures),
            })
            .map_err(|source| Error::Kafka {
                op: "create the relay's transactional producer".into(),
                bootstrap: config.bootstrap.clone(),
                source: Box::new(source),
            })
    }

    fn kafka(&self, shared: &Shared, op: &str) -> impl FnOnce(KafkaError) -> Error {
        let config = &shared.config;
        let (bootstrap, timeout) = (config.bootstrap.clone(), config.connect_timeout);
        let (id, transactional_id) = (config.id.clone(), config.transactional_id());
        let op = op.to_owned();
        move |e| {
            if is_fenced(&e) {
                Error::Fenced {
                    role: Role::Relay,
                    id,
                    transactional_id,
                }
            } else {
                unreachable_or_kafka(e, &bootstrap, timeout, &op)
            }
        }
    }

    /// Forwards transaction after transaction until `stop`; an error ends the session.
    pub(super) fn forward(&mut self, shared: &Shared, stop: &StopFlag) -> Result<()> {
        while !stop.is_set() {
            self.transaction(shared, stop)?;
        }
        Ok(())
    }

    /// One Kafka transaction, or nothing if annals has nothing new within a short wait.
    fn transaction(&mut self, shared: &Shared, stop: &StopFlag) -> Result<()> {
        let config = &shared.config;
        let mut records = self
            .consumer
            .poll(Duration::from_millis(50))
            .map_err(Error::annals("read the relay's annals topics"))?;
        if records.is_empty() && self.moved_positions()?.is_empty() {
            return Ok(());
        }
        self.producer
            .begin_transaction()
            .map_err(self.kafka(shared, "begin a Kafka transaction"))?;
        let started = Instant::now();
        let mut sent = 0usize;
        let mut touched: HashSet<AnnalsPartition> = HashSet::new();
        let mut offset_text = String::new();
        loop {
            let mut last: Option<(&str, u32)> = None;
            for r in &records {
                self.send(shared, r, &mut offset_text, started, stop)?;
                // Records come partition by partition: look up only where the partition changes.
                if last != Some((&*r.topic, r.partition)) {
                    last = Some((&*r.topic, r.partition));
                    touched.insert((r.topic.to_string(), r.partition));
                }
            }
            sent += records.len();
            if sent >= config.max_transaction_records
                || started.elapsed() >= config.max_transaction_time
                || stop.is_set()
            {
                break;
            }
            records = self
                .consumer
                .poll(Duration::ZERO)
                .map_err(Error::annals("read the relay's annals topics"))?;
            if records.is_empty() {
                break; // caught up: commit now rather than wait out max_transaction_time
            }
        }
        let moved = self.moved_positions()?;
        for ((topic, partition), next) in &moved {
            let key = progress::key(&config.id, topic, *partition);
            let value = progress::value(*next);
            let record = BaseRecord::<str, str>::to(&config.progress_topic)
                .partition(0)
                .key(&key)
                .payload(&value);
            self.enqueue(shared, record, started, stop)?;
            if config.sync_annals && touched.contains(&(topic.clone(), *partition)) {
                shared
                    .log
                    .partition(topic, *partition)
                    .and_then(|p| p.sync())
                    .map_err(Error::annals(format!(
                        "fsync annals {topic}/{partition} before committing in Kafka"
                    )))?;
            }
        }
        if self.commit(shared, stop)? {
            let mut status = shared.status.lock();
            status.records += sent as u64;
            status.committed += 1;
            for (key, next) in moved {
                self.committed.insert(key.clone(), next);
                if let Some(entry) = status.forwarded.get_mut(&key) {
                    entry.0 = next;
                }
            }
        } else {
            self.rewind(shared)?;
        }
        Ok(())
    }

    /// The assigned partitions whose position is not their committed progress, with the
    /// position: what the next progress records say.
    fn moved_positions(&mut self) -> Result<Vec<(AnnalsPartition, u64)>> {
        let mut moved = Vec::new();
        for (key, &committed) in &self.committed {
            let position = self
                .consumer
                .position(&key.0, key.1)
                .map_err(Error::annals(format!(
                    "read the relay's position in annals {}/{}",
                    key.0, key.1
                )))?;
            if position != committed {
                moved.push((key.clone(), position));
            }
        }
        Ok(moved)
    }

    fn send(
        &self,
        shared: &Shared,
        r: &ConsumedRecord,
        offset_text: &mut String,
        started: Instant,
        stop: &StopFlag,
    ) -> Result<()> {
        let route = &self.routes[&*r.topic];
        let partition = match route.mapping {
            PartitionMapping::Same => r.partition,
            PartitionMapping::ByKey => match &r.key {
                Some(key) => annals::partition_for_key(key, route.kafka_partitions),
                None => r.partition % route.kafka_partitions,
            },
        };
        offset_text.clear();
        use std::fmt::Write;
        let _ = write!(offset_text, "{}", r.offset);
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len() + 1);
        for h in &r.headers {
            headers = headers.insert(Header {
                key: &h.key,
                value: h.value.as_deref(),
            });
        }
        headers = headers.insert(Header {
            key: &shared.config.offset_header,
            value: Some(offset_text.as_bytes()),
        });
        let mut record = BaseRecord::<[u8], [u8]>::to(&route.kafka_topic)
            .partition(partition as i32)
            .headers(headers);
        if r.timestamp >= 0 {
            record = record.timestamp(r.timestamp);
        }
        if let Some(key) = &r.key {
            record = record.key(key);
        }
        if let Some(value) = &r.value {
            record = record.payload(value);
        }
        self.enqueue(shared, record, started, stop)
    }

    /// Hands a record to librdkafka, waiting while its queue is full (back-pressure: annals is
    /// not read meanwhile), at most until the transaction would time out or a stop is asked
    /// for (then the session ends; the next start aborts the open transaction).
    fn enqueue<K, P>(
        &self,
        shared: &Shared,
        mut record: BaseRecord<'_, K, P>,
        started: Instant,
        stop: &StopFlag,
    ) -> Result<()>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        let deadline = started + shared.config.transaction_timeout;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline && !stop.is_set() =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(self.kafka(shared, "send a record to Kafka")(e)),
            }
        }
    }

    /// Commits the open transaction: `Ok(true)` when committed, `Ok(false)` when it had to be
    /// aborted (its records are sent again), an error when the session cannot go on.
    fn commit(&self, shared: &Shared, stop: &StopFlag) -> Result<bool> {
        let timeout = shared.config.transaction_timeout;
        let deadline = Instant::now() + timeout;
        // rdkafka's `commit_transaction` flushes first, and its flush waits in steps of 100 ms
        // while records are in flight (it polls a queue the producer's own thread serves), which
        // cost every transaction 100 ms. Waiting here for the acknowledgements, which that thread
        // counts down as they come, lets its flush find nothing in flight.
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline && !stop.is_set() {
            std::thread::sleep(Duration::from_micros(200));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = match self.producer.commit_transaction(left) {
                Ok(()) => return Ok(true),
                Err(e) => e,
            };
            if is_fenced(&e) {
                return Err(self.kafka(shared, "commit a Kafka transaction")(e));
            }
            if let KafkaError::Transaction(t) = &e {
                // A stop asked for while Kafka is away does not wait out the timeout: the
                // transaction stays open, and the next start aborts it.
                if t.is_retriable() && Instant::now() < deadline && !stop.is_set() {
                    continue;
                }
                if t.txn_requires_abort() {
                    shared.status.lock().last_error =
                        Some(format!("commit a Kafka transaction: {e}"));
                    self.producer
                        .abort_transaction(timeout)
                        .map_err(self.kafka(shared, "abort a failed Kafka transaction"))?;
                    shared.status.lock().aborted += 1;
                    return Ok(false);
                }
            }
            return Err(self.kafka(shared, "commit a Kafka transaction")(e));
        }
    }

    /// Back to the committed progress after an aborted transaction.
    fn rewind(&mut self, _shared: &Shared) -> Result<()> {
        for ((topic, partition), &next) in &self.committed {
            self.consumer
                .seek(topic, *partition, next)
                .map_err(Error::annals(format!(
                    "seek annals {topic}/{partition} back to {next}"
                )))?;
        }
        Ok(())
    }
}
