//! [`Relay`]: annals topics forwarded to Kafka topics exactly once.
//!
//! One thread reads the annals topics read_committed (so annals' aborted transactions and
//! transaction markers are never forwarded, and offsets compaction removed are simply not
//! there) and writes each record to Kafka inside a Kafka transaction. Before committing it, the
//! transaction also gets one progress record per annals partition that moved — the next annals
//! offset to forward (`progress.rs`) — and, with `sync_annals`, the annals partitions are
//! fsynced. So Kafka holds a record exactly when it holds the progress past it:
//!
//! - killed (or the machine lost) before the commit: the transaction is aborted by the next
//!   `init_transactions` (or by Kafka's transaction timeout) and the new instance resumes from
//!   the progress committed before it, forwarding those records again in a new transaction;
//! - killed after it: the progress says so, and nothing is forwarded twice;
//! - a second relay with the same id fences the first (`init_transactions` moves the epoch on):
//!   the first's next commit fails with [`Error::Fenced`] and it stops.
//!
//! A broker outage fails the transaction or the commit with a retriable error: the relay retries
//! the commit up to `transaction_timeout`, then drops its session and reconnects every
//! `retry_backoff` until the cluster answers, resuming from the committed progress.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{ConsumedRecord, ConsumerConfig, IsolationLevel, Log, TopicPartition};
use parking_lot::Mutex;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::client::{
    base_config, ensure_progress_topic, metadata_client, partition_counts, unreachable_or_kafka,
};
use crate::config::{PartitionMapping, RelayConfig};
use crate::error::{is_fenced, Error, Result, Role};
use crate::progress::{self, AnnalsPartition};
use crate::worker::{StopFlag, Worker, WorkerState};

/// Forwards annals topics to Kafka exactly once, on its own thread, until stopped.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use annals::{Log, Record, TopicConfig};
/// use annals_kafka::{Relay, RelayConfig};
///
/// let log = Log::open("data")?;
/// log.create_topic_if_missing("orders", TopicConfig::default().partitions(3))?;
/// // The Kafka topic "orders" must exist with 3 partitions too.
/// let relay = Relay::start(&log, RelayConfig::new("orders-relay", "127.0.0.1:9092").route("orders", "orders"))?;
///
/// log.producer(Default::default())?.send("orders", Record::new("order 1").key("customer-7"))?.wait()?;
/// relay.wait_until_caught_up(std::time::Duration::from_secs(30))?;
/// relay.stop()?; // commits what it forwarded
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Relay {
    shared: Arc<Shared>,
    worker: Worker,
}

/// What a relay's metrics say, at one moment ([`Relay::metrics`]).
#[derive(Debug, Clone)]
pub struct RelayMetrics {
    /// Where the relay stands.
    pub state: WorkerState,
    /// Each annals partition forwarded.
    pub partitions: Vec<RelayPartition>,
    /// Records in committed Kafka transactions since the relay started.
    pub records_forwarded: u64,
    /// Kafka transactions committed.
    pub transactions_committed: u64,
    /// Kafka transactions aborted (their records are forwarded again in a later one).
    pub transactions_aborted: u64,
    /// Sessions dropped and reconnected after an error that was not fatal.
    pub reconnects: u64,
    /// Records Kafka refused or timed out (each fails its transaction, which is aborted).
    pub delivery_failures: u64,
    /// The last error, fatal or not.
    pub last_error: Option<String>,
}

impl RelayMetrics {
    /// Records readable in annals (read_committed) not yet in a committed Kafka transaction,
    /// over every partition.
    pub fn lag(&self) -> u64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }
}

/// One annals partition in [`RelayMetrics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayPartition {
    /// The annals topic.
    pub annals_topic: String,
    /// The annals partition.
    pub partition: u32,
    /// The Kafka topic it goes to.
    pub kafka_topic: String,
    /// The next annals offset to forward: everything before it is in Kafka, committed.
    pub forwarded: u64,
    /// The partition's last stable offset in annals: what read_committed can read up to.
    pub last_stable_offset: u64,
    /// `last_stable_offset - forwarded` (offsets, so records compaction removed count until
    /// the relay passes them).
    pub lag: u64,
}

#[derive(Debug)]
struct Shared {
    config: RelayConfig,
    log: Log,
    status: Mutex<Status>,
    delivery_failures: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Status {
    state: WorkerState,
    /// Per annals partition: the committed next offset and the Kafka topic.
    forwarded: HashMap<AnnalsPartition, (u64, String)>,
    records: u64,
    committed: u64,
    aborted: u64,
    reconnects: u64,
    last_error: Option<String>,
}

impl Relay {
    /// Connects to Kafka and starts forwarding. Returns once the relay runs: the routes are
    /// checked against the cluster (topics exist, partition counts match), older relays with the
    /// same id are fenced, and the progress is read; any failure on the way is returned, within
    /// `connect_timeout` when the cluster does not answer ([`Error::Unreachable`]). Nothing is
    /// read from or written to annals before that.
    pub fn start(log: &Log, config: RelayConfig) -> Result<Relay> {
        config.validate()?;
        let shared = Arc::new(Shared {
            config,
            log: log.clone(),
            status: Mutex::new(Status {
                state: WorkerState::Running,
                forwarded: HashMap::new(),
                records: 0,
                committed: 0,
                aborted: 0,
                reconnects: 0,
                last_error: None,
            }),
            delivery_failures: Arc::new(AtomicU64::new(0)),
        });
        let session = Session::connect(&shared)?;
        let thread_shared = Arc::clone(&shared);
        let worker = Worker::spawn(
            Role::Relay,
            format!("annals-relay-{}", shared.config.id),
            move |stop| run(&thread_shared, session, &stop),
        )?;
        Ok(Relay { shared, worker })
    }

    /// The relay's state, counters and per-partition lag now.
    pub fn metrics(&self) -> RelayMetrics {
        let status = self.shared.status.lock();
        let mut partitions: Vec<RelayPartition> = status
            .forwarded
            .iter()
            .map(|((topic, partition), (forwarded, kafka_topic))| {
                let lso = self
                    .shared
                    .log
                    .partition(topic, *partition)
                    .map(|p| p.last_stable_offset())
                    .unwrap_or(*forwarded);
                RelayPartition {
                    annals_topic: topic.clone(),
                    partition: *partition,
                    kafka_topic: kafka_topic.clone(),
                    forwarded: *forwarded,
                    last_stable_offset: lso,
                    lag: lso.saturating_sub(*forwarded),
                }
            })
            .collect();
        partitions
            .sort_by(|a, b| (&a.annals_topic, a.partition).cmp(&(&b.annals_topic, b.partition)));
        RelayMetrics {
            state: status.state,
            partitions,
            records_forwarded: status.records,
            transactions_committed: status.committed,
            transactions_aborted: status.aborted,
            reconnects: status.reconnects,
            delivery_failures: self.shared.delivery_failures.load(Ordering::Relaxed),
            last_error: status.last_error.clone(),
        }
    }

    /// Waits until everything annals holds now (read_committed) is committed in Kafka: `Ok(true)`
    /// when it is, `Ok(false)` after `timeout`, and the relay's error if it stopped on one.
    pub fn wait_until_caught_up(&self, timeout: Duration) -> Result<bool> {
        let targets: Vec<(AnnalsPartition, u64)> = {
            let status = self.shared.status.lock();
            status
                .forwarded
                .keys()
                .map(|(t, p)| {
                    let lso = self
                        .shared
                        .log
                        .partition(t, *p)
                        .map(|p| p.last_stable_offset());
                    lso.map(|lso| ((t.clone(), *p), lso))
                        .map_err(Error::annals(format!("read the end of annals {t}/{p}")))
                })
                .collect::<Result<_>>()?
        };
        let deadline = Instant::now() + timeout;
        loop {
            {
                let status = self.shared.status.lock();
                if status.state == WorkerState::Failed {
                    return Err(Error::Stopped {
                        role: Role::Relay,
                        reason: status.last_error.clone().unwrap_or_default(),
                    });
                }
                let done = targets.iter().all(|(tp, end)| {
                    status
                        .forwarded
                        .get(tp)
                        .is_some_and(|(next, _)| next >= end)
                });
                if done {
                    return Ok(true);
                }
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the relay: the transaction under way is committed (or aborted, if it cannot be),
    /// the thread ends, and its fatal error, if it stopped on one, is returned.
    pub fn stop(mut self) -> Result<RelayMetrics> {
        let ended = self.worker.stop();
        let metrics = self.metrics();
        ended.map(|()| metrics)
    }
}

/// The relay's thread: sessions, one after another, until stopped or a fatal error.
fn run(shared: &Shared, mut session: Session, stop: &StopFlag) -> Result<()> {
    loop {
        let ended = session.forward(shared, stop);
        drop(session);
        let error = match ended {
            Ok(()) => {
                shared.status.lock().state = WorkerState::Stopped;
                return Ok(());
            }
            Err(e) => e,
        };
        if error.is_fatal() {
            let mut status = shared.status.lock();
            status.state = WorkerState::Failed;
            status.last_error = Some(error.to_string());
            return Err(error);
        }
        {
            let mut status = shared.status.lock();
            status.state = WorkerState::Reconnecting;
            status.last_error = Some(error.to_string());
            status.reconnects += 1;
        }
        session = loop {
            if stop.sleep(shared.config.retry_backoff) {
                shared.status.lock().state = WorkerState::Stopped;
                return Ok(());
            }
            match Session::connect(shared) {
                Ok(s) => break s,
                Err(e) if e.is_fatal() => {
                    let mut status = shared.status.lock();
                    status.state = WorkerState::Failed;
                    status.last_error = Some(e.to_string());
                    return Err(e);
                }
                Err(e) => shared.status.lock().last_error = Some(e.to_string()),
            }
        };
        shared.status.lock().state = WorkerState::Running;
    }
}

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
struct Session {
    producer: ThreadedProducer<DeliveryCounter>,
    consumer: annals::Consumer,
    routes: HashMap<String, Route>,
    /// The committed next offset of every assigned annals partition.
    committed: HashMap<AnnalsPartition, u64>,
}

impl Session {
    fn connect(shared: &Shared) -> Result<Session> {
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
        let mut names: Vec<&str> = config
            .routes
            .iter()
            .map(|r| r.kafka_topic.as_str())
            .collect();
        names.push(&config.progress_topic);
        let counts = partition_counts(
            &metadata,
            bootstrap,
            &names,
            timeout,
            "look up the relay's Kafka topics",
        )?;
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
            .set("queue.buffering.max.kbytes", kbytes.as_str())
            .set("retry.backoff.ms", "10");
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
    fn forward(&mut self, shared: &Shared, stop: &StopFlag) -> Result<()> {
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
        if records.is_empty() && !self.positions_moved()? {
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
                self.send(shared, r, &mut offset_text, started)?;
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
        for ((topic, partition), next) in &moved {
            let key = progress::key(&config.id, topic, *partition);
            let value = progress::value(*next);
            let record = BaseRecord::<str, str>::to(&config.progress_topic)
                .partition(0)
                .key(&key)
                .payload(&value);
            self.enqueue(shared, record, started)?;
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
        if self.commit(shared)? {
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

    fn positions_moved(&mut self) -> Result<bool> {
        for (key, &committed) in &self.committed {
            let position = self
                .consumer
                .position(&key.0, key.1)
                .map_err(Error::annals(format!(
                    "read the relay's position in annals {}/{}",
                    key.0, key.1
                )))?;
            if position != committed {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn send(
        &self,
        shared: &Shared,
        r: &ConsumedRecord,
        offset_text: &mut String,
        started: Instant,
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
        self.enqueue(shared, record, started)
    }

    /// Hands a record to librdkafka, waiting while its queue is full (back-pressure: annals is
    /// not read meanwhile), at most until the transaction would time out.
    fn enqueue<K, P>(
        &self,
        shared: &Shared,
        mut record: BaseRecord<'_, K, P>,
        started: Instant,
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
                    if Instant::now() < deadline =>
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
    fn commit(&self, shared: &Shared) -> Result<bool> {
        let timeout = shared.config.transaction_timeout;
        let deadline = Instant::now() + timeout;
        // rdkafka's `commit_transaction` flushes first, and its flush waits in steps of 100 ms
        // while records are in flight (it polls a queue the producer's own thread serves), which
        // cost every transaction 100 ms. Waiting here for the acknowledgements, which that thread
        // counts down as they come, lets its flush find nothing in flight.
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
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
                if t.is_retriable() && Instant::now() < deadline {
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
