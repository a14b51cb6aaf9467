//! [`Catalog`]: the live state of an open log that [`Log`](crate::Log), its producers and its
//! consumers share — the topics and their partitions, whether the log is closed, the group
//! coordinator, and the producers to close with the log.
//!
//! Producers and consumers hold a `Catalog`, never a `Log`: only `Log` handles keep a log open,
//! so dropping the last one (or `Log::close`) closes it even while a producer or consumer lives.
//! The log then closes every registered [`LogClient`] (a producer flushes what it accepted and
//! stops), marks the catalog closed and lets go of its partitions; the handles that remain
//! answer [`Error::Closed`]. This module sits below `log`, `producer` and `consumer`, so none of
//! them imports another to reach the shared state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::group::Coordinator;
use crate::partition::Partition;

/// A handle to an open log's shared state. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Catalog(Arc<CatalogInner>);

#[derive(Debug)]
pub(crate) struct CatalogInner {
    /// Taken by every lookup (`partition`, `topics`, each poll): held only to read or publish,
    /// never across I/O. The log's admin lock serialises the changes (see `log/`).
    pub(crate) state: RwLock<CatalogState>,
    /// Consumer group membership (in memory only).
    pub(crate) coordinator: Coordinator,
    /// What the log closes before its partitions; `None` once it has started closing, so that
    /// no client registers after the log looked.
    clients: Mutex<Option<Vec<Weak<dyn LogClient>>>>,
    /// The live producers, for `Log::metrics`: weak, so that a snapshot never keeps one alive,
    /// and of the producer's shared state rather than its handle, so that a snapshot that
    /// happens to hold the last reference never runs the handle's close.
    producers: Mutex<Vec<Weak<dyn ProducerProbe>>>,
    /// The next producer's `ProducerMetrics::serial`.
    next_producer_serial: AtomicU64,
}

#[derive(Debug, Default)]
pub(crate) struct CatalogState {
    pub(crate) closed: bool,
    pub(crate) topics: BTreeMap<String, Topic>,
}

#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) config: TopicConfig,
    pub(crate) partitions: Vec<Partition>,
}

/// A producer as `Log::metrics` reads it.
pub(crate) trait ProducerProbe: Send + Sync + std::fmt::Debug {
    fn metrics(&self) -> crate::metrics::ProducerMetrics;
}

/// Something that writes to the log from a thread of its own (a producer) and must be stopped
/// while the partitions are still open when the log closes.
pub(crate) trait LogClient: Send + Sync + std::fmt::Debug {
    /// The log is closing: finish or fail everything accepted, then refuse further work with
    /// [`Error::Closed`]. Returns only when no thread of the client touches a partition.
    fn log_closing(&self);
}

impl std::ops::Deref for Catalog {
    type Target = CatalogInner;
    fn deref(&self) -> &CatalogInner {
        &self.0
    }
}

impl Catalog {
    pub(crate) fn new(topics: BTreeMap<String, Topic>) -> Catalog {
        Catalog(Arc::new(CatalogInner {
            state: RwLock::new(CatalogState {
                closed: false,
                topics,
            }),
            coordinator: Coordinator::default(),
            clients: Mutex::new(Some(Vec::new())),
            producers: Mutex::new(Vec::new()),
            next_producer_serial: AtomicU64::new(0),
        }))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.read().closed
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// The configuration of a user topic.
    pub(crate) fn topic_config(&self, topic: &str) -> Result<TopicConfig> {
        let state = self.state.read();
        if state.closed {
            return Err(Error::Closed);
        }
        state
            .topics
            .get(topic)
            .filter(|_| !is_internal_topic(topic))
            .map(|t| t.config.clone())
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_string(),
            })
    }

    /// A partition of a user topic.
    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Result<Partition> {
        if is_internal_topic(topic) {
            return Err(Error::UnknownTopic {
                topic: topic.to_string(),
            });
        }
        self.any_partition(topic, partition)
    }

    /// [`partition`](Self::partition) including internal topics.
    pub(crate) fn any_partition(&self, topic: &str, partition: u32) -> Result<Partition> {
        let state = self.state.read();
        if state.closed {
            return Err(Error::Closed);
        }
        let t = state.topics.get(topic).ok_or_else(|| Error::UnknownTopic {
            topic: topic.to_string(),
        })?;
        t.partitions
            .get(partition as usize)
            .cloned()
            .ok_or(Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: t.partitions.len() as u32,
            })
    }

    /// Every partition of every topic, internal ones included.
    pub(crate) fn all_partitions(&self) -> Result<Vec<Partition>> {
        let state = self.state.read();
        if state.closed {
            return Err(Error::Closed);
        }
        Ok(state
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect())
    }

    /// Partition counts of the user topics, for the group coordinator.
    pub(crate) fn partition_counts(&self) -> BTreeMap<String, u32> {
        self.state
            .read()
            .topics
            .iter()
            .filter(|(name, _)| !is_internal_topic(name))
            .map(|(name, t)| (name.clone(), t.partitions.len() as u32))
            .collect()
    }

    /// Adds a client for the log to close. [`Error::Closed`] if the log has started closing.
    pub(crate) fn register(&self, client: Weak<dyn LogClient>) -> Result<()> {
        let mut clients = self.clients.lock();
        let list = clients.as_mut().ok_or(Error::Closed)?;
        // Clients dropped since are only weak references; do not let them pile up.
        list.retain(|c| c.strong_count() > 0);
        list.push(client);
        Ok(())
    }

    /// A serial for a new producer's metrics.
    pub(crate) fn next_producer_serial(&self) -> u64 {
        self.next_producer_serial.fetch_add(1, Ordering::Relaxed)
    }

    /// Lists a producer for `Log::metrics` until it is dropped.
    pub(crate) fn register_producer(&self, producer: Weak<dyn ProducerProbe>) {
        let mut producers = self.producers.lock();
        // Dropped producers are only weak references; do not let them pile up.
        producers.retain(|p| p.strong_count() > 0);
        producers.push(producer);
    }

    /// The live producers' metrics, in the order they registered.
    pub(crate) fn producer_metrics(&self) -> Vec<crate::metrics::ProducerMetrics> {
        let live: Vec<Arc<dyn ProducerProbe>> = {
            let mut producers = self.producers.lock();
            producers.retain(|p| p.strong_count() > 0);
            producers.iter().filter_map(Weak::upgrade).collect()
        };
        // Read outside the lock: a producer starting meanwhile need not wait for the snapshot.
        live.iter().map(|p| p.metrics()).collect()
    }

    /// Closes every live client (the first step of closing the log) and turns later ones away.
    /// Must run before the partitions close, and not under the catalog's or the admin lock: a
    /// producer's flush needs both its writer thread and lookups to run.
    pub(crate) fn close_clients(&self) {
        let clients = self.clients.lock().take().unwrap_or_default();
        for client in clients.iter().filter_map(Weak::upgrade) {
            client.log_closing();
        }
    }

    /// Marks the catalog closed and hands over its partitions for closing, keeping none: a
    /// producer or consumer that outlives the log holds no partition through it. `None` if it
    /// was closed already.
    pub(crate) fn take_for_close(&self) -> Option<Vec<Partition>> {
        let mut state = self.state.write();
        if state.closed {
            return None;
        }
        state.closed = true;
        let topics = std::mem::take(&mut state.topics);
        Some(topics.into_values().flat_map(|t| t.partitions).collect())
    }
}

/// Topics whose names start with `__` belong to annals itself (`__consumer_offsets`).
pub(crate) fn is_internal_topic(name: &str) -> bool {
    name.starts_with("__")
}
