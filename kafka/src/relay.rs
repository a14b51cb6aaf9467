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

mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals::Log;
use parking_lot::Mutex;

use session::Session;

use crate::config::RelayConfig;
use crate::error::{Error, Result, Role};
use crate::progress::AnnalsPartition;
use crate::worker::{wait_until, StopFlag, Worker, WorkerState};

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
        wait_until(Role::Relay, timeout, || {
            let status = self.shared.status.lock();
            if status.state == WorkerState::Failed {
                return Err(status.last_error.clone());
            }
            Ok(targets.iter().all(|(tp, end)| {
                status
                    .forwarded
                    .get(tp)
                    .is_some_and(|(next, _)| next >= end)
            }))
        })
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
