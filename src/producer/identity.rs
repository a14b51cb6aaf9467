//! [`ProducerIdentity`]: the producer id and epoch the log assigned (see `log/producer_ids.rs`
//! and, for a transactional producer, `txn/coordinator.rs`), and how an instance learns that a
//! newer one with its stable or transactional id fenced it.

use std::sync::atomic::{AtomicBool, AtomicI16, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

/// An assigned identity. A transactional producer's id and epoch move on with every
/// transaction (the coordinator bumps the epoch when one ends), so they are atomics; batches
/// take them when they open, which no send does while a transaction is ending.
#[derive(Debug)]
pub(crate) struct ProducerIdentity {
    producer_id: AtomicI64,
    epoch: AtomicI16,
    /// Shared with whoever moves the epoch on for the id (the registry for a stable id, the
    /// coordinator for a transactional one): when a newer instance starts, it moves on and this
    /// instance sees it is fenced.
    current_epoch: OnceLock<Arc<AtomicI16>>,
    /// Whether the fence was reported (a diagnostic, once: every later batch fails the same).
    fence_reported: AtomicBool,
}

impl ProducerIdentity {
    pub(crate) fn new(
        producer_id: i64,
        epoch: i16,
        current_epoch: Option<Arc<AtomicI16>>,
    ) -> ProducerIdentity {
        let watch = OnceLock::new();
        if let Some(current) = current_epoch {
            let _ = watch.set(current);
        }
        ProducerIdentity {
            producer_id: AtomicI64::new(producer_id),
            epoch: AtomicI16::new(epoch),
            current_epoch: watch,
            fence_reported: AtomicBool::new(false),
        }
    }

    /// `(producer id, epoch)` now.
    pub(crate) fn get(&self) -> (i64, i16) {
        (
            self.producer_id.load(Ordering::Acquire),
            self.epoch.load(Ordering::Acquire),
        )
    }

    /// Moves to a new id and epoch (a transaction ended, or `init_transactions`).
    pub(crate) fn set(&self, producer_id: i64, epoch: i16) {
        self.producer_id.store(producer_id, Ordering::Release);
        self.epoch.store(epoch, Ordering::Release);
    }

    /// Starts watching the id's current epoch (`init_transactions`; once).
    pub(crate) fn watch(&self, current_epoch: Arc<AtomicI16>) {
        let _ = self.current_epoch.set(current_epoch);
    }

    /// The newer epoch that fenced this instance, if one did.
    pub(crate) fn is_fenced(&self) -> Option<i16> {
        let current = self.current_epoch.get()?.load(Ordering::Acquire);
        (current != self.epoch.load(Ordering::Acquire)).then_some(current)
    }

    /// True the first time it is asked: whether a fence found now is news to report.
    pub(crate) fn first_fence_report(&self) -> bool {
        !self.fence_reported.swap(true, Ordering::AcqRel)
    }
}
