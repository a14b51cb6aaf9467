//! `annals relay DIR --bootstrap HOST:PORT --id ID --route TOPIC[:KAFKA_TOPIC]...`: annals
//! topics forwarded to Kafka topics exactly once, with annals-kafka's `Relay`.

use std::path::PathBuf;
use std::time::Duration;

use annals::Log;
use annals_kafka::{Relay, RelayConfig, RelayMetrics, WorkerState};
use serde_json::json;

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::Output;
use crate::owner::{close_log, open_log, Create};
use crate::route::{self, Route};
use crate::worker::{drive, state_name, RunArgs, Worker};

const COMMAND: &str = "relay";

/// Forward annals topics to Kafka topics, exactly once.
///
/// Each record goes to the Kafka partition of the same number (or by key with --by-key) with
/// its key, value, headers and timestamp, plus a header holding its annals offset; only
/// committed records are forwarded (read_committed). The Kafka topics must exist — with the
/// annals topic's partition count, unless --by-key. The relay's progress is committed in the
/// same Kafka transaction as the records, in a compacted progress topic (created when missing),
/// so a new run with the same --id resumes where the last one committed.
///
/// Killing it is safe (Ctrl-C, SIGTERM, even SIGKILL or a lost machine): the relay is exactly
/// once across kills. A Kafka transaction left open is aborted by the next start with the same
/// --id (or by Kafka's transaction timeout) and its records are forwarded again; nothing
/// committed is forwarded twice. Starting a second relay with the same --id fences the first.
///
/// Without --until-caught-up it runs until killed, printing its metrics every --stats-interval
/// seconds: state, records forwarded, lag (records annals holds that Kafka does not yet) and
/// the last error. A broker outage is retried; a fatal error (fenced, a topic deleted, ...) ends
/// it with exit code 1. It opens the log as its owner, so the log must not be open in another
/// process.
///
/// Example: annals relay data/ --bootstrap 127.0.0.1:9092 --id orders --route orders --until-caught-up
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// The Kafka cluster: host:port[,host:port...] (librdkafka's bootstrap.servers).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Names the relay: its progress is kept under this id and its Kafka transactional id is
    /// annals-relay.ID. Letters, digits, '.', '_' and '-'.
    #[arg(long)]
    pub id: String,
    /// Forward annals topic ANNALS_TOPIC to KAFKA_TOPIC (default: the same name). Repeatable.
    #[arg(long = "route", value_name = "ANNALS_TOPIC[:KAFKA_TOPIC]", required = true,
          value_parser = route::parse)]
    pub routes: Vec<Route>,
    /// Choose each record's Kafka partition by its key (Kafka's murmur2 partitioner, over the
    /// Kafka topic's partition count) instead of keeping its partition number: the partition
    /// counts may then differ, and the order is kept per key.
    #[arg(long)]
    pub by_key: bool,
    /// The compacted Kafka topic holding the relays' progress.
    #[arg(long, value_name = "TOPIC", default_value = "annals-relay-progress")]
    pub progress_topic: String,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    let log = open_log(&args.dir, COMMAND, Create::Never)?;
    let relayed = relay(&log, args, out);
    // The relay holds a handle on the log; it has stopped by now, so closing seals everything.
    let closed = close_log(&log, COMMAND);
    relayed?;
    closed?;
    Ok(Outcome::Clean)
}

fn relay(log: &Log, args: &Args, out: &mut Output) -> Result<(), Failure> {
    let mut config = RelayConfig::new(&args.id, &args.bootstrap)
        .progress_topic(&args.progress_topic)
        .connect_timeout(args.run.connect_timeout());
    for r in &args.routes {
        config = if args.by_key {
            config.route_by_key(&r.source, &r.destination)
        } else {
            config.route(&r.source, &r.destination)
        };
    }
    let relay = Relay::start(log, config).map_err(|e| Failure::at(COMMAND, &args.dir, e))?;
    drive(
        Running {
            relay,
            id: &args.id,
        },
        &args.run,
        &args.dir,
        out,
    )
}

/// A started relay, with its id for the metrics lines.
struct Running<'a> {
    relay: Relay,
    id: &'a str,
}

/// A metrics snapshot with the relay's id.
struct Metrics<'a> {
    id: &'a str,
    metrics: RelayMetrics,
}

impl<'a> Worker for Running<'a> {
    type Metrics = Metrics<'a>;
    const COMMAND: &'static str = COMMAND;

    fn wait_until_caught_up(&self, timeout: Duration) -> annals_kafka::Result<bool> {
        self.relay.wait_until_caught_up(timeout)
    }

    fn metrics(&self) -> Metrics<'a> {
        Metrics {
            id: self.id,
            metrics: self.relay.metrics(),
        }
    }

    fn stop(self) -> annals_kafka::Result<Metrics<'a>> {
        let metrics = self.relay.stop()?;
        Ok(Metrics {
            id: self.id,
            metrics,
        })
    }

    fn state(m: &Metrics<'a>) -> WorkerState {
        m.metrics.state
    }

    fn lag(m: &Metrics<'a>) -> u64 {
        m.metrics.lag()
    }

    fn print(m: &Metrics<'a>, out: &mut Output) -> Result<(), Failure> {
        let r = &m.metrics;
        let error = r
            .last_error
            .as_ref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default();
        out.text(format_args!(
            "relay {}: {}, {} record(s) forwarded in {} transaction(s), lag {}, {} reconnect(s){error}",
            m.id,
            state_name(r.state),
            r.records_forwarded,
            r.transactions_committed,
            r.lag(),
            r.reconnects,
        ))?;
        out.object(
            COMMAND,
            &json!({
                "id": m.id,
                "state": state_name(r.state),
                "records_forwarded": r.records_forwarded,
                "transactions_committed": r.transactions_committed,
                "transactions_aborted": r.transactions_aborted,
                "reconnects": r.reconnects,
                "lag": r.lag(),
                "last_error": r.last_error,
            }),
        )
    }
}
