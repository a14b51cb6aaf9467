//! Running annals' blocking calls (the ones that fsync) from async code without stalling the
//! runtime (feature `tokio`).
//!
//! Two ways, by what the call borrows: work that owns its handles (`Partition`, `Producer`
//! clones) goes to tokio's blocking pool and is awaited; work that borrows the caller (a
//! `&mut Consumer`) cannot leave the task, so it runs in place after telling a multi-thread
//! runtime to move this worker's other tasks elsewhere.

use crate::error::{Error, Result};

/// Runs `work` on tokio's blocking pool and awaits it. Outside a tokio runtime it is
/// [`Error::InvalidArgument`]; a panic in `work` is [`Error::ThreadPanicked`].
pub(crate) async fn on_blocking_pool<T, F>(what: &'static str, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let handle = runtime(what)?;
    match handle.spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(Error::thread_panicked(what, &*e.into_panic())),
        // Cancelled: the runtime is shutting down and dropped the task before it ran.
        Err(_) => Err(Error::Closed),
    }
}

/// Runs `work` on this thread. On a multi-thread runtime the worker first hands its other tasks
/// to the rest of the pool (`block_in_place`), so they go on while `work` waits for the disk; on
/// a current-thread runtime, or outside tokio, nothing else can run here meanwhile and `work`
/// simply runs.
pub(crate) fn in_place<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// The current tokio runtime, or the error that says `what` needs one.
pub(crate) fn runtime(what: &'static str) -> Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} must run inside a tokio runtime (it uses tokio's timers or blocking pool)"
        ))
    })
}
