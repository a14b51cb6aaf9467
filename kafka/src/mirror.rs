//! [`Mirror`]: Kafka topics copied into annals topics exactly once — a local, replayable replica.
//!
//! One thread reads the Kafka topics read_committed and appends each record to the annals topic
//! of its route, partition for partition, inside an annals transaction. The same transaction
//! commits, as offsets of the annals group `annals-mirror.<id>`, the next Kafka offset of every
//! partition it copied from (`send_offsets_to_transaction`). So annals holds a copied record
//! exactly when it holds the Kafka offset past it:
//!
//! - killed before the commit point: annals' recovery aborts the transaction (its records are
//!   never seen read_committed, and the offsets are dropped), and the next mirror resumes from
//!   the offsets committed before it;
//! - killed after it: recovery completes the commit, and the next mirror resumes after it;
//! - a broker outage: librdkafka reconnects by itself, the mirror just waits (and counts the
//!   errors it was told of).
//!
//! Read the copy read_committed: a read_uncommitted reader can see the records of a transaction
//! a crash aborted, before the same records come again.

mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use annals::Log;
use parking_lot::Mutex;
use rdkafka::consumer::Consumer;

use crate::client::{metadata_client, retry_transient, unreachable_or_kafka};
use crate::config::MirrorConfig;
use crate::error::{Result, Role};
use crate::worker::{wait_until, StopFlag, Worker, WorkerState};
use session::Session;

/// Copies Kafka topics into annals exactly once, on its own thread, until stopped.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use annals::Log;
/// use annals_kafka::{Mirror, MirrorConfig};
///
/// let log = Log::open("replica")?;
/// // Creates the annals topic "orders" with the Kafka topic's partition count if it is missing.
/// let mirror = Mirror::start(&log, MirrorConfig::new("orders-replica", "127.0.0.1:9092").route("orders", "orders"))?;
/// mirror.wait_until_caught_up(std::time::Duration::from_secs(30))?;
/// mirror.stop()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Mirror {
    shared: Arc<Shared>,
    worker: Worker,
}

/// What a mirror's metrics say, at one moment ([`Mirror::metrics`]).
#[derive(Debug, Clone)]
pub struct MirrorMetrics {
    /// Where the mirror stands.
    pub state: WorkerState,
    /// Each Kafka partition copied.
    pub partitions: Vec<MirrorPartition>,
    /// Records in committed annals transactions since the mirror started.
    pub records_copied: u64,
    /// annals transactions committed.
    pub transactions_committed: u64,
    /// annals transactions aborted (their records are copied again).
    pub transactions_aborted: u64,
    /// Errors the Kafka consumer reported (a broker going away, for one); it retries by itself.
    pub consumer_errors: u64,
    /// The last error, fatal or not.
    pub last_error: Option<String>,
}

impl MirrorMetrics {
    /// Kafka offsets not yet copied, over every partition, as of the last high watermarks the
    /// consumer saw.
    pub fn lag(&self) -> u64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }
}

/// One Kafka partition in [`MirrorMetrics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPartition {
    /// The Kafka topic.
    pub kafka_topic: String,
    /// The partition (the same number in annals).
    pub partition: u32,
    /// The annals topic it is copied to.
    pub annals_topic: String,
    /// The next Kafka offset to copy: everything before it is in annals, committed.
    pub copied: u64,
    /// The partition's high watermark in Kafka, as the consumer last saw it.
    pub high_watermark: u64,
    /// `high_watermark - copied` (offsets, so transaction markers count).
    pub lag: u64,
}

#[derive(Debug)]
struct Shared {
    config: MirrorConfig,
    log: Log,
    status: Mutex<Status>,
}

#[derive(Debug)]
struct Status {
    state: WorkerState,
    /// Per Kafka partition: (next offset, high watermark seen, annals topic).
    copied: HashMap<(String, u32), (u64, u64, String)>,
    records: u64,
    committed: u64,
    aborted: u64,
    consumer_errors: u64,
    last_error: Option<String>,
}

impl Mirror {
    /// Checks the routes against the cluster and annals, takes over the mirror's annals
    /// transactional id (fencing an older mirror with the same id in this log), reads where it
    /// stopped, and starts copying. Fails within `connect_timeout` when the cluster does not
    /// answer ([`Error::Unreachable`](crate::Error::Unreachable)).
    pub fn start(log: &Log, config: MirrorConfig) -> Result<Mirror> {
        config.validate()?;
        let shared = Arc::new(Shared {
            config,
            log: log.clone(),
            status: Mutex::new(Status {
                state: WorkerState::Running,
                copied: HashMap::new(),
                records: 0,
                committed: 0,
                aborted: 0,
                consumer_errors: 0,
                last_error: None,
            }),
        });
        let session = Session::connect(&shared)?;
        let thread_shared = Arc::clone(&shared);
        let worker = Worker::spawn(
            Role::Mirror,
            format!("annals-mirror-{}", shared.config.id),
            move |stop| run(&thread_shared, session, &stop),
        )?;
        Ok(Mirror { shared, worker })
    }

    /// The mirror's state, counters and per-partition lag now.
    pub fn metrics(&self) -> MirrorMetrics {
        let status = self.shared.status.lock();
        let mut partitions: Vec<MirrorPartition> = status
            .copied
            .iter()
            .map(
                |((topic, partition), (copied, high, annals_topic))| MirrorPartition {
                    kafka_topic: topic.clone(),
                    partition: *partition,
                    annals_topic: annals_topic.clone(),
                    copied: *copied,
                    high_watermark: *high,
                    lag: high.saturating_sub(*copied),
                },
            )
            .collect();
        partitions
            .sort_by(|a, b| (&a.kafka_topic, a.partition).cmp(&(&b.kafka_topic, b.partition)));
        MirrorMetrics {
            state: status.state,
            partitions,
            records_copied: status.records,
            transactions_committed: status.committed,
            transactions_aborted: status.aborted,
            consumer_errors: status.consumer_errors,
            last_error: status.last_error.clone(),
        }
    }

    /// Waits until every Kafka partition's high watermark, as the cluster says now, is copied
    /// and committed in annals: `Ok(true)` when it is, `Ok(false)` after `timeout`, the mirror's
    /// error if it stopped on one. Transaction markers count as copied once the mirror passed
    /// them, which it does when it reads the next record or a read reaches the end.
    pub fn wait_until_caught_up(&self, timeout: Duration) -> Result<bool> {
        let config = &self.shared.config;
        let metadata = metadata_client(&config.bootstrap, config.connect_timeout, &config.kafka)?;
        let mut targets = Vec::new();
        for key in self.shared.status.lock().copied.keys() {
            targets.push(key.clone());
        }
        let mut ends = Vec::new();
        for (topic, partition) in targets {
            let (_, high) = retry_transient(config.connect_timeout, || {
                metadata.fetch_watermarks(&topic, partition as i32, config.connect_timeout)
            })
            .map_err(|e| {
                unreachable_or_kafka(
                    e,
                    &config.bootstrap,
                    config.connect_timeout,
                    "read a Kafka high watermark",
                )
            })?;
            ends.push(((topic, partition), high.max(0) as u64));
        }
        wait_until(Role::Mirror, timeout, || {
            let status = self.shared.status.lock();
            if status.state == WorkerState::Failed {
                return Err(status.last_error.clone());
            }
            Ok(ends
                .iter()
                .all(|(tp, end)| status.copied.get(tp).is_some_and(|c| c.0 >= *end)))
        })
    }

    /// Stops the mirror: the transaction under way is committed, the thread ends, and its fatal
    /// error, if it stopped on one, is returned.
    pub fn stop(mut self) -> Result<MirrorMetrics> {
        let ended = self.worker.stop();
        let metrics = self.metrics();
        ended.map(|()| metrics)
    }
}

fn run(shared: &Shared, mut session: Session, stop: &StopFlag) -> Result<()> {
    let ended = session.copy(shared, stop);
    let mut status = shared.status.lock();
    match ended {
        Ok(()) => {
            status.state = WorkerState::Stopped;
            Ok(())
        }
        Err(e) => {
            status.state = WorkerState::Failed;
            status.last_error = Some(e.to_string());
            Err(e)
        }
    }
}
