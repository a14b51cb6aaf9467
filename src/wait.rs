//! Parking for long polls: a consumer parks on one [`Waiter`] and every partition it reads (and
//! its group coordinator) signals that waiter when there is something new.
//!
//! The append path pays one atomic load when no consumer watches a partition, and a short
//! uncontended lock plus one atomic swap per watching consumer otherwise. A futex wake happens
//! only when the consumer is actually parked.
//!
//! An async reader (feature `tokio`) registers a task waker instead of parking: a signal wakes
//! it the same way, so a stream needs no thread and no polling loop.

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
    /// The task of an async reader, woken (once) by the next signal.
    #[cfg(feature = "tokio")]
    waker: Mutex<Option<std::task::Waker>>,
    /// Whether `waker` holds one: signallers take its lock only then.
    #[cfg(feature = "tokio")]
    has_waker: AtomicBool,
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
        #[cfg(feature = "tokio")]
        if self.has_waker.load(Ordering::SeqCst) {
            let waker = {
                let mut slot = self.waker.lock();
                // Under the lock: a `register` racing with us keeps its flag set.
                self.has_waker.store(false, Ordering::SeqCst);
                slot.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Makes the next signal wake `waker`'s task. Call it before [`arm`](Waiter::arm) and the
    /// look for data: a signal that lands after the look then wakes the task, which looks
    /// again (the async form of the arm → look → park handshake).
    #[cfg(feature = "tokio")]
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        let mut slot = self.waker.lock();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
        // Under the lock, so a signaller that took the old waker cannot clear the new flag.
        self.has_waker.store(true, Ordering::SeqCst);
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

    /// The async handshake, step by step, with each signal forced where the race would put it.
    #[cfg(feature = "tokio")]
    #[test]
    fn a_registered_waker_misses_no_signal_after_the_look() {
        use std::sync::atomic::AtomicUsize;
        #[derive(Default)]
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count::default());
        let waker = std::task::Waker::from(count.clone());
        let woken = || count.0.load(Ordering::SeqCst);
        let w = Waiter::new();
        // register → arm → look (nothing) → a signal lands before the task returns Pending.
        w.register(&waker);
        w.arm();
        w.signal();
        assert_eq!(woken(), 1, "a signal after the look wakes the task");
        // The waker is used once: a second signal before the task polls again adds nothing.
        w.signal();
        assert_eq!(woken(), 1);
        // A signal between register and arm, while the last one is not yet consumed by an
        // arm: no wake-up is needed (the look after arm sees its data), and the registration
        // still stands for the first signal after arm.
        w.register(&waker);
        w.signal();
        assert_eq!(woken(), 1);
        w.arm();
        w.signal();
        assert_eq!(woken(), 2);
        // Registering the same task twice keeps one waker: one wake-up per signal.
        w.register(&waker);
        w.register(&waker);
        w.arm();
        w.signal();
        assert_eq!(woken(), 3);
        // Signals from another thread racing with registrations never leave a registered
        // waker unwoken: after each round the task was woken at least once per registration
        // that a later signal followed.
        for _ in 0..1000 {
            let before = woken();
            w.register(&waker);
            w.arm();
            let w2 = w.clone();
            std::thread::spawn(move || w2.signal()).join().unwrap();
            assert_eq!(woken(), before + 1);
        }
    }

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
