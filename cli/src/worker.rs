//! How `relay` and `mirror` run once started: until caught up (then stop cleanly), or until
//! killed, printing the worker's metrics every `--stats-interval`.
//!
//! Both workers run on their own thread inside annals-kafka; this side only waits, prints and
//! stops. It polls the worker's state between metrics lines, so a worker that stopped on a
//! fatal error ends the command within a fraction of a second rather than at the next line.

use std::path::Path;
use std::time::{Duration, Instant};

use annals_kafka::WorkerState;

use crate::exit::Failure;
use crate::output::Output;

/// How often a worker running until killed is checked for a fatal stop.
const STATE_POLL: Duration = Duration::from_millis(100);

/// The options `relay` and `mirror` share about how long they run.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Copy what the source holds at start, then stop cleanly and exit 0 (1 if that takes
    /// longer than --timeout).
    #[arg(long)]
    pub until_caught_up: bool,
    /// With --until-caught-up: how long catching up may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300, requires = "until_caught_up",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Print the metrics every SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub stats_interval: u64,
    /// How long to wait for the Kafka cluster to answer at start, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
}

impl RunArgs {
    /// `--connect-timeout` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }
}

/// What [`drive`] needs of a relay or a mirror.
pub trait Worker: Sized {
    /// Its metrics snapshot.
    type Metrics;
    /// The command's name, which starts its error messages.
    const COMMAND: &'static str;

    /// Waits up to `timeout` for the worker to copy what its source holds now.
    fn wait_until_caught_up(&self, timeout: Duration) -> annals_kafka::Result<bool>;
    /// The metrics now.
    fn metrics(&self) -> Self::Metrics;
    /// Stops the worker (committing what it holds); its fatal error if it stopped on one.
    fn stop(self) -> annals_kafka::Result<Self::Metrics>;
    /// Where the worker stands, from its metrics.
    fn state(metrics: &Self::Metrics) -> WorkerState;
    /// Records readable at the source not copied yet, from its metrics.
    fn lag(metrics: &Self::Metrics) -> u64;
    /// One metrics line: text, or a JSON object of kind [`Self::COMMAND`].
    fn print(metrics: &Self::Metrics, out: &mut Output) -> Result<(), Failure>;
}

/// Runs a started worker as `run` says. Returns once it stopped cleanly (`--until-caught-up`),
/// or on a failure: the worker's fatal error, a catch-up that took too long, or standard output
/// going away. The worker is stopped in every case before this returns.
pub fn drive<W: Worker>(
    worker: W,
    run: &RunArgs,
    dir: &Path,
    out: &mut Output,
) -> Result<(), Failure> {
    let fail = |cause: String| Failure::at(W::COMMAND, dir, cause);
    let interval = Duration::from_secs(run.stats_interval);
    if run.until_caught_up {
        let deadline = Instant::now() + Duration::from_secs(run.timeout);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let before = W::lag(&worker.metrics());
                // Stopping commits what was copied: a later run goes on from there.
                let (lag, stopping) = match worker.stop() {
                    Ok(m) => (W::lag(&m), String::new()),
                    Err(e) => (before, format!("; stopping failed: {e}")),
                };
                return Err(fail(format!(
                    "not caught up within --timeout {}s ({lag} record(s) behind); what was copied is committed, a new run goes on from there{stopping}",
                    run.timeout
                )));
            }
            match worker.wait_until_caught_up(left.min(interval)) {
                Ok(true) => break,
                Ok(false) => {
                    W::print(&worker.metrics(), out)?;
                    out.flush()?;
                }
                Err(e) => {
                    // The worker's own error is the one to report; stopping it repeats it.
                    let _ = worker.stop();
                    return Err(fail(e.to_string()));
                }
            }
        }
        let metrics = worker.stop().map_err(|e| fail(e.to_string()))?;
        return W::print(&metrics, out);
    }
    let mut next_line = Instant::now();
    loop {
        let metrics = worker.metrics();
        if W::state(&metrics) == WorkerState::Failed {
            let ended = worker.stop();
            W::print(&metrics, out)?;
            return Err(fail(match ended {
                Err(e) => e.to_string(),
                Ok(_) => format!("the {} stopped", W::COMMAND),
            }));
        }
        if Instant::now() >= next_line {
            W::print(&metrics, out)?;
            out.flush()?;
            next_line = Instant::now() + interval;
        }
        std::thread::sleep(STATE_POLL);
    }
}

/// A worker state as the metrics lines show it.
pub fn state_name(state: WorkerState) -> &'static str {
    match state {
        WorkerState::Running => "running",
        WorkerState::Reconnecting => "reconnecting",
        WorkerState::Stopped => "stopped",
        WorkerState::Failed => "failed",
    }
}
