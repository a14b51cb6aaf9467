//! `annals mirror DIR --bootstrap HOST:PORT --id ID --route KAFKA_TOPIC[:TOPIC]...`: Kafka
//! topics copied into annals topics exactly once, with annals-kafka's `Mirror`.

use std::path::PathBuf;
use std::time::Duration;

use annals::Log;
use annals_kafka::{Mirror, MirrorConfig, MirrorMetrics, WorkerState};
use serde_json::json;

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::Output;
use crate::owner::{close_log, open_log, Create};
use crate::route::{self, Route};
use crate::worker::{drive, state_name, RunArgs, Worker};

const COMMAND: &str = "mirror";

/// Copy Kafka topics into annals topics, exactly once.
///
/// Each Kafka partition is copied, read_committed, to the annals partition of the same number,
/// records with their keys, values, headers and timestamps. A missing annals topic is created
/// with the Kafka topic's partition count (and the log directory, when it is missing or
/// empty); the Kafka topics must exist. The Kafka offsets copied up to are committed in the
/// same annals transaction as the records (group annals-mirror.ID), so a new run with the same
/// --id resumes where the last one committed.
///
/// Killing it is safe (Ctrl-C, SIGTERM, even SIGKILL or a lost machine): the mirror is exactly
/// once across kills. An annals transaction the kill cut off is settled when the log is next
/// opened (aborted before its commit point, its records then copied again; completed after
/// it), and nothing committed is copied twice. Read the copy read_committed: a
/// read_uncommitted reader can see an aborted transaction's records before they come again.
///
/// Without --until-caught-up it runs until killed, printing its metrics every --stats-interval
/// seconds: state, records copied, lag (records Kafka holds that annals does not yet) and the
/// last error. With it, it copies at least what Kafka held at start, then stops. It opens the
/// log as its owner, so the log must not be open in another process.
///
/// Example: annals mirror data/ --bootstrap 127.0.0.1:9092 --id orders --route orders --until-caught-up
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory (created if it is missing or empty).
    pub dir: PathBuf,
    /// The Kafka cluster: host:port[,host:port...] (librdkafka's bootstrap.servers).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Names the mirror: its annals transactional id, and the annals group its Kafka offsets
    /// are committed under, is annals-mirror.ID. Letters, digits, '.', '_' and '-'.
    #[arg(long)]
    pub id: String,
    /// Copy Kafka topic KAFKA_TOPIC to annals topic ANNALS_TOPIC (default: the same name).
    /// Repeatable.
    #[arg(long = "route", value_name = "KAFKA_TOPIC[:ANNALS_TOPIC]", required = true,
          value_parser = route::parse)]
    pub routes: Vec<Route>,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    let log = open_log(&args.dir, COMMAND, Create::IfMissing)?;
    let mirrored = mirror(&log, args, out);
    // The mirror holds a handle on the log; it has stopped by now, so closing seals everything.
    let closed = close_log(&log, COMMAND);
    mirrored?;
    closed?;
    Ok(Outcome::Clean)
}

fn mirror(log: &Log, args: &Args, out: &mut Output) -> Result<(), Failure> {
    let mut config =
        MirrorConfig::new(&args.id, &args.bootstrap).connect_timeout(args.run.connect_timeout());
    for r in &args.routes {
        config = config.route(&r.source, &r.destination);
    }
    let mirror = Mirror::start(log, config).map_err(|e| Failure::at(COMMAND, &args.dir, e))?;
    drive(
        Running {
            mirror,
            id: &args.id,
        },
        &args.run,
        &args.dir,
        out,
    )
}

/// A started mirror, with its id for the metrics lines.
struct Running<'a> {
    mirror: Mirror,
    id: &'a str,
}

/// A metrics snapshot with the mirror's id.
struct Metrics<'a> {
    id: &'a str,
    metrics: MirrorMetrics,
}

impl<'a> Worker for Running<'a> {
    type Metrics = Metrics<'a>;
    const COMMAND: &'static str = COMMAND;

    fn wait_until_caught_up(&self, timeout: Duration) -> annals_kafka::Result<bool> {
        self.mirror.wait_until_caught_up(timeout)
    }

    fn metrics(&self) -> Metrics<'a> {
        Metrics {
            id: self.id,
            metrics: self.mirror.metrics(),
        }
    }

    fn stop(self) -> annals_kafka::Result<Metrics<'a>> {
        let metrics = self.mirror.stop()?;
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
            "mirror {}: {}, {} record(s) copied in {} transaction(s), lag {}{error}",
            m.id,
            state_name(r.state),
            r.records_copied,
            r.transactions_committed,
            r.lag(),
        ))?;
        out.object(
            COMMAND,
            &json!({
                "id": m.id,
                "state": state_name(r.state),
                "records_copied": r.records_copied,
                "transactions_committed": r.transactions_committed,
                "transactions_aborted": r.transactions_aborted,
                "consumer_errors": r.consumer_errors,
                "lag": r.lag(),
                "last_error": r.last_error,
            }),
        )
    }
}
