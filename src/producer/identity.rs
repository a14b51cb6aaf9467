//! [`ProducerIdentity`]: the producer id and epoch the log assigned (see `log/producer_ids.rs`),
//! and how an instance learns that a newer one with its stable id fenced it.

use std::sync::atomic::{AtomicI16, Ordering};
use std::sync::Arc;

/// An assigned identity. `current_epoch` is shared with the registry: when a newer instance
/// with the same stable id starts, it moves on and the older instance sees it is fenced.
#[derive(Debug, Clone)]
pub(crate) struct ProducerIdentity {
    pub producer_id: i64,
    pub epoch: i16,
    pub current_epoch: Option<Arc<AtomicI16>>,
}

impl ProducerIdentity {
    pub(crate) fn is_fenced(&self) -> Option<i16> {
        let current = self.current_epoch.as_ref()?.load(Ordering::Acquire);
        (current != self.epoch).then_some(current)
    }
}
