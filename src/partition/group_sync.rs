//! Group commit: concurrent callers of `Partition::sync` share fsyncs.
//!
//! One caller at a time is the leader and runs the fsync, holding no lock while it does; the
//! others wait on a condition variable. When the fsync ends every waiter wakes at once: those
//! whose data it covered return without a syscall, and one of the rest leads the next. A
//! waiter is never queued behind an fsync it does not need (which a plain mutex around the
//! fsync does: a covered waiter cannot learn it is covered until the next leader's fsync ends,
//! and each fsync then covers only the few appends made while the previous one ran).

use parking_lot::{Condvar, Mutex};

use crate::error::Result;

#[derive(Debug)]
pub(crate) struct GroupSync {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Debug)]
struct State {
    /// Offsets below this are on stable storage.
    synced: u64,
    /// Whether a leader's fsync is running.
    leading: bool,
}

impl GroupSync {
    pub(crate) fn new(synced: u64) -> GroupSync {
        GroupSync {
            state: Mutex::new(State {
                synced,
                leading: false,
            }),
            done: Condvar::new(),
        }
    }

    /// Records that offsets below `synced` are durable (recovery's own fsync).
    pub(crate) fn reset(&self, synced: u64) {
        self.state.lock().synced = synced;
    }

    /// Returns once offsets below `target` are durable: at once if they are, after the running
    /// fsync if it covers them, else after running `fsync` as the leader. `fsync` returns the
    /// offset below which it made everything durable (at least `target`).
    pub(crate) fn sync_to(
        &self,
        target: u64,
        mut fsync: impl FnMut() -> Result<u64>,
    ) -> Result<()> {
        let mut state = self.state.lock();
        loop {
            if state.synced >= target {
                return Ok(());
            }
            if !state.leading {
                state.leading = true;
                drop(state);
                let result = fsync();
                state = self.state.lock();
                state.leading = false;
                if let Ok(covered) = result {
                    state.synced = state.synced.max(covered);
                }
                self.done.notify_all();
                result?;
                continue;
            }
            self.done.wait(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn covered_callers_skip_the_fsync_and_others_share_one() {
        let g = GroupSync::new(10);
        let runs = AtomicU64::new(0);
        g.sync_to(5, || unreachable!("already durable")).unwrap();
        g.sync_to(12, || {
            runs.fetch_add(1, Ordering::Relaxed);
            Ok(20)
        })
        .unwrap();
        g.sync_to(20, || unreachable!("covered by the last fsync"))
            .unwrap();
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_failed_fsync_fails_its_leader_and_lets_the_next_caller_lead() {
        let g = GroupSync::new(0);
        let err = g
            .sync_to(1, || Err(crate::Error::InvalidArgument("disk gone".into())))
            .unwrap_err();
        assert!(err.to_string().contains("disk gone"));
        g.sync_to(1, || Ok(1)).unwrap();
    }

    #[test]
    fn many_waiters_are_released_by_one_fsync() {
        let g = Arc::new(GroupSync::new(0));
        let runs = Arc::new(AtomicU64::new(0));
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let leader = {
            let (g, runs) = (g.clone(), runs.clone());
            std::thread::spawn(move || {
                g.sync_to(1, || {
                    runs.fetch_add(1, Ordering::Relaxed);
                    hold_rx.recv().unwrap();
                    Ok(100)
                })
                .unwrap();
            })
        };
        // Wait until the leader's fsync runs, then queue waiters it will cover.
        while !g.state.lock().leading {
            std::thread::yield_now();
        }
        let waiters: Vec<_> = (2..10)
            .map(|t| {
                let (g, runs) = (g.clone(), runs.clone());
                std::thread::spawn(move || {
                    g.sync_to(t, || {
                        runs.fetch_add(1, Ordering::Relaxed);
                        Ok(100)
                    })
                    .unwrap();
                })
            })
            .collect();
        hold_tx.send(()).unwrap();
        leader.join().unwrap();
        for w in waiters {
            w.join().unwrap();
        }
        // Each waiter either found the leader's fsync running (and was covered by it) or
        // arrived after it had ended (and found its data durable): never a second fsync.
        assert_eq!(runs.load(Ordering::Relaxed), 1);
    }
}
