//! Parking for long polls: a consumer parks on one [`Waiter`] and every partition it reads (and
//! its group coordinator) signals that waiter when there is something new.
//!
//! The append path pays one atomic load when no consumer watches a partition, and a short
//! uncontended lock plus one atomic swap per watching consumer otherwise. A futex wake happens
//! only when the consumer is actually parked.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// How long a poll spins (checking a flag, yielding the CPU) before it parks on the condvar.
/// Waking a parked thread costs tens of microseconds on a busy machine; data that arrives this
/// soon is picked up without that cost. Short enough not to count as a busy loop.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// One parked (or about to park) reader.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    /// Set by a signal, cleared by [`Waiter::arm`] before the reader looks for data, so a signal
    /// that lands between the look and the park is never lost.
    pending: AtomicBool,
    /// True while the reader sleeps on `cv`; signallers only take the lock when it is set.
    parked: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Waiter {
    pub(crate) fn new() -> Arc<Waiter> {
        Arc::new(Waiter::default())
    }

    /// Called before looking for data: signals from now on wake the next [`wait_until`].
    ///
    /// [`wait_until`]: Waiter::wait_until
    pub(crate) fn arm(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }

    /// Wakes the reader (now if parked, or makes its next wait return at once).
    pub(crate) fn signal(&self) {
        if self.pending.swap(true, Ordering::SeqCst) {
            return; // already signalled since the last arm; one wake-up is enough
        }
        if self.parked.load(Ordering::SeqCst) {
            let _guard = self.lock.lock();
            self.cv.notify_one();
        }
    }

    /// Waits until signalled (since the last [`arm`](Waiter::arm)) or `deadline`. Returns
    /// whether a signal arrived.
    pub(crate) fn wait_until(&self, deadline: Instant) -> bool {
        let spin_until = Instant::now() + SPIN;
        while Instant::now() < spin_until.min(deadline) {
            if self.pending.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::yield_now();
        }
        let mut guard = self.lock.lock();
        // Dekker-style handshake with `signal`: we publish `parked` then read `pending`; a
        // signaller publishes `pending` then reads `parked`. SeqCst guarantees at least one of
        // us sees the other's store, so either we skip the sleep or it takes the lock and
        // notifies (which it can only do once we are inside `wait`, having released the lock).
        self.parked.store(true, Ordering::SeqCst);
        while !self.pending.load(Ordering::SeqCst) {
            if self.cv.wait_until(&mut guard, deadline).timed_out() {
                break;
            }
        }
        self.parked.store(false, Ordering::SeqCst);
        self.pending.load(Ordering::SeqCst)
    }
}

/// The waiters watching one source of events (a partition's new data).
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    count: AtomicUsize,
    list: Mutex<Vec<Arc<Waiter>>>,
}

impl Watchers {
    pub(crate) fn add(&self, waiter: &Arc<Waiter>) {
        let mut list = self.list.lock();
        if !list.iter().any(|w| Arc::ptr_eq(w, waiter)) {
            list.push(waiter.clone());
            self.count.store(list.len(), Ordering::Release);
        }
    }

    pub(crate) fn remove(&self, waiter: &Arc<Waiter>) {
        let mut list = self.list.lock();
        list.retain(|w| !Arc::ptr_eq(w, waiter));
        self.count.store(list.len(), Ordering::Release);
    }

    /// Signals every watcher. Cheap when nobody watches.
    pub(crate) fn notify(&self) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        for w in self.list.lock().iter() {
            w.signal();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_before_wait_is_not_lost() {
        let w = Waiter::new();
        w.arm();
        w.signal();
        let t = Instant::now();
        assert!(w.wait_until(Instant::now() + Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn wait_times_out_without_signal() {
        let w = Waiter::new();
        w.arm();
        let t = Instant::now();
        assert!(!w.wait_until(Instant::now() + Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn signal_from_another_thread_wakes_a_parked_waiter() {
        let w = Waiter::new();
        let watchers = Arc::new(Watchers::default());
        watchers.add(&w);
        watchers.add(&w); // adding twice keeps one entry
        w.arm();
        let ws = watchers.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ws.notify();
        });
        let t = Instant::now();
        assert!(w.wait_until(Instant::now() + Duration::from_secs(30)));
        assert!(t.elapsed() < Duration::from_secs(20));
        h.join().unwrap();
        watchers.remove(&w);
        w.arm();
        watchers.notify();
        assert!(!w.wait_until(Instant::now() + Duration::from_millis(1)));
    }
}
