//! The background thread a relay or a mirror runs on: started once connected, asked to stop by
//! a flag it checks between transactions, joined with the error it ended on. A panic in it comes
//! back as [`Error::Panicked`], never as a second panic in the caller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Role};

/// Where a relay or a mirror stands, as its metrics report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Connected and forwarding (or waiting for records).
    Running,
    /// The cluster went away or a transaction failed for a reason a new connection may cure; it
    /// reconnects after its `retry_backoff`, and resumes from the progress committed last.
    Reconnecting,
    /// Stopped cleanly, every transaction begun committed or aborted.
    Stopped,
    /// Stopped on a fatal error ([`Error::is_fatal`]); the error is in `last_error` and comes
    /// back from `stop`.
    Failed,
}

/// The flag a worker's loop checks.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Sleeps `d`, or less if the flag is set meanwhile; whether it is set.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while !self.is_set() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
        true
    }
}

/// Checks `done` every 10 ms until it says `Some(true)` (`Ok(true)`) or `timeout` passes
/// (`Ok(false)`); `None` means the worker failed, which is [`Error::Stopped`] with its
/// `last_error`.
pub(crate) fn wait_until(
    role: Role,
    timeout: Duration,
    mut done: impl FnMut() -> std::result::Result<bool, Option<String>>,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        match done() {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(last_error) => {
                return Err(Error::Stopped {
                    role,
                    reason: last_error.unwrap_or_default(),
                })
            }
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running worker thread.
#[derive(Debug)]
pub(crate) struct Worker {
    role: Role,
    stop: StopFlag,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Worker {
    pub(crate) fn spawn(
        role: Role,
        name: String,
        body: impl FnOnce(StopFlag) -> Result<()> + Send + 'static,
    ) -> Result<Worker> {
        let stop = StopFlag::default();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || body(flag))
            .map_err(|e| Error::InvalidConfig {
                what: "worker thread",
                why: format!("cannot start the {role} thread: {e}"),
            })?;
        Ok(Worker {
            role,
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop and waits for it; what it ended with.
    pub(crate) fn stop(&mut self) -> Result<()> {
        self.stop.set();
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        thread.join().unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(Error::Panicked {
                role: self.role,
                message,
            })
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Dropping without `stop` still stops the thread: nothing is left running behind a
        // handle nobody holds. Its error, if any, is in the metrics it kept.
        let _ = self.stop();
    }
}
