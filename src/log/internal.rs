//! The internal topics' stores (`__consumer_offsets`, `__transaction_state`): each lives in its
//! topic's partition 0, is loaded on first use into a slot of `LogInner`, and its topic is
//! created by the first caller that needs it. One implementation for both, so the slot's
//! locking (held while the topic is created or loaded; see "Concurrency" in
//! `docs/ARCHITECTURE.md`) is the same.

use std::sync::Arc;

use parking_lot::Mutex;

use super::Log;
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::partition::Partition;

impl Log {
    /// The store in `slot`, loading it with `open` from partition 0 of `topic` if that exists.
    pub(super) fn internal_if_exists<T>(
        &self,
        slot: &Mutex<Option<Arc<T>>>,
        topic: &str,
        open: impl FnOnce(Partition) -> Result<T>,
    ) -> Result<Option<Arc<T>>> {
        let mut slot = slot.lock();
        if let Some(store) = slot.as_ref() {
            return Ok(Some(store.clone()));
        }
        match self.any_partition(topic, 0) {
            Ok(p) => {
                let store = Arc::new(open(p)?);
                *slot = Some(store.clone());
                Ok(Some(store))
            }
            Err(Error::UnknownTopic { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The store in `slot`, creating `topic` with `config` first if this log has none yet.
    pub(super) fn internal<T>(
        &self,
        slot: &Mutex<Option<Arc<T>>>,
        topic: &str,
        config: TopicConfig,
        open: impl Fn(Partition) -> Result<T>,
    ) -> Result<Arc<T>> {
        if let Some(store) = self.internal_if_exists(slot, topic, &open)? {
            return Ok(store);
        }
        let mut guard = slot.lock();
        if let Some(store) = guard.as_ref() {
            return Ok(store.clone());
        }
        match self.create_topic_unchecked(topic, config) {
            Ok(()) | Err(Error::TopicExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let store = Arc::new(open(self.any_partition(topic, 0)?)?);
        *guard = Some(store.clone());
        Ok(store)
    }
}
