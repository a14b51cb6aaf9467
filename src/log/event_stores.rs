//! Which event stores are open on this log, and the storage they write their indexes through.

use std::sync::Arc;

use super::Log;
use crate::error::{Error, Result};
use crate::event_store::{EVENT_STORE_DIR, SNAPSHOTS_SUFFIX};
use crate::storage::Storage;

/// An event store's claim on its name, released on drop unless [`keep`](Self::keep) hands it
/// to the open store (which releases it when it is dropped).
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    log: &'a Log,
    name: String,
    kept: bool,
}

impl Registration<'_> {
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.log.unregister_event_store(&self.name);
        }
    }
}

impl Log {
    /// Claims `name` for an event store being opened.
    pub(crate) fn register_event_store(&self, name: &str) -> Result<Registration<'_>> {
        self.inner.catalog.check_open()?;
        if !self.inner.event_stores.lock().insert(name.to_string()) {
            return Err(Error::InvalidArgument(format!(
                "event store {name:?} is already open in this log; share its EventStore handle \
                 (it is Clone) instead of opening it twice"
            )));
        }
        Ok(Registration {
            log: self,
            name: name.to_string(),
            kept: false,
        })
    }

    pub(crate) fn unregister_event_store(&self, name: &str) {
        self.inner.event_stores.lock().remove(name);
    }

    /// Refuses to delete a topic of an open event store (its index would outlive it).
    pub(crate) fn check_not_event_store_topic(&self, topic: &str) -> Result<()> {
        let store = topic.strip_suffix(SNAPSHOTS_SUFFIX).unwrap_or(topic);
        if self.inner.event_stores.lock().contains(store) {
            return Err(Error::InvalidArgument(format!(
                "topic {topic:?} belongs to event store {store:?}, which is open: close it first"
            )));
        }
        Ok(())
    }

    /// Removes the index an event store kept of `topic`, after the topic was deleted, so that
    /// a topic created again under the name is indexed afresh.
    pub(crate) fn remove_event_store_index(&self, topic: &str) -> Result<()> {
        let storage = &*self.inner.storage;
        let root = self.inner.dir.join(EVENT_STORE_DIR);
        let (store, kind) = match topic.strip_suffix(SNAPSHOTS_SUFFIX) {
            Some(store) => (store, "snapshots-"),
            None => (topic, "events-"),
        };
        let dir = root.join(store);
        if !storage.exists(&dir)? {
            return Ok(());
        }
        for name in storage.list_dir(&dir)? {
            if name.starts_with(kind) {
                storage.remove_dir_all(&dir.join(name))?;
            }
        }
        storage.sync_dir(&dir)?;
        Ok(())
    }

    /// The storage the log writes through (the event store's indexes use it too, so a
    /// simulated crash covers them).
    pub(crate) fn storage(&self) -> Arc<dyn Storage> {
        self.inner.storage.clone()
    }
}
