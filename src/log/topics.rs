//! Topic administration on [`Log`]: create, alter, delete, list, and the partition lookups.
//!
//! Each change runs under the admin lock, writes its files and `topics.meta` first, and
//! publishes the result in the catalog under a brief write lock (see "Concurrency" in
//! docs/ARCHITECTURE.md).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::open::open_one;
use super::Log;
use crate::catalog::{is_internal_topic, Topic};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::meta::store_topics;
use crate::partition::{partition_dir_name, validate_topic_name, Partition, DELETE_SUFFIX};

impl Log {
    /// Creates a topic with `config.partitions` empty partitions.
    ///
    /// Errors: [`Error::InvalidTopicName`], [`Error::InvalidConfig`], [`Error::TopicExists`],
    /// [`Error::Closed`].
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        validate_topic_name(name)?;
        if is_internal_topic(name) {
            return Err(Error::InvalidTopicName {
                name: name.to_string(),
                reason: "names starting with \"__\" are reserved for annals' internal topics",
            });
        }
        self.create_topic_unchecked(name, config)
    }

    /// Creates a topic without the reservation check (for internal topics).
    pub(super) fn create_topic_unchecked(&self, name: &str, config: TopicConfig) -> Result<()> {
        config.validate()?;
        let inner = &self.inner;
        // Under the admin lock only, the topic list cannot change (nor the log close) until the
        // new topic is published below.
        let _admin = inner.admin.lock();
        {
            let state = inner.catalog.state.read();
            if state.closed {
                return Err(Error::Closed);
            }
            if state.topics.contains_key(name) {
                return Err(Error::TopicExists {
                    topic: name.to_string(),
                });
            }
        }
        // Directories first, metadata last: a crash in between leaves directories no topic
        // names, which the next open removes.
        let partitions = (0..config.partitions)
            .map(|id| {
                open_one(
                    &inner.storage,
                    &inner.dir,
                    name,
                    id,
                    &config,
                    false,
                    (inner.recovery_mode, inner.producer_id_expiration_ms),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        inner.storage.sync_dir(&inner.dir)?;
        let mut list = self.topic_list();
        list.push((name.to_string(), config.clone()));
        store_topics(&*inner.storage, &inner.dir, &list)?;
        info!(topic = %name, partitions = config.partitions, config = ?config, "topic created");
        inner
            .catalog
            .state
            .write()
            .topics
            .insert(name.to_string(), Topic { config, partitions });
        Ok(())
    }

    /// Deletes a topic and all its data. Handles to its partitions return [`Error::Closed`].
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        if is_internal_topic(name) {
            return Err(Error::UnknownTopic {
                topic: name.to_string(),
            });
        }
        self.check_not_event_store_topic(name)?;
        self.delete_topic_files(name)?;
        self.remove_event_store_index(name)?;
        // Commits for the old topic would mislead a consumer of a new topic of the same name.
        if let Some(offsets) = self.offsets_if_loaded() {
            offsets.forget_topic(name)?;
        }
        Ok(())
    }

    fn delete_topic_files(&self, name: &str) -> Result<()> {
        let inner = &self.inner;
        // The admin lock keeps the topic list as read here until the removal is published, so
        // the metadata I/O runs under it alone and `state` is held only briefly (see
        // "Concurrency" in docs/ARCHITECTURE.md).
        let _admin = inner.admin.lock();
        let list: Vec<_> = {
            let state = inner.catalog.state.read();
            if state.closed {
                return Err(Error::Closed);
            }
            if !state.topics.contains_key(name) {
                return Err(Error::UnknownTopic {
                    topic: name.to_string(),
                });
            }
            state
                .topics
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .map(|(n, t)| (n.clone(), t.config.clone()))
                .collect()
        };
        // Metadata first: once it no longer names the topic, the topic is gone even if we crash
        // before the files are.
        store_topics(&*inner.storage, &inner.dir, &list)?;
        let topic = inner
            .catalog
            .state
            .write()
            .topics
            .remove(name)
            .expect("the admin lock kept it");
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for p in &topic.partitions {
            p.inner.abandon();
            // Rename, then remove: a removal that fails half way leaves a `-delete` directory,
            // which the next open finishes removing, never a half-deleted partition that a new
            // topic of the same name could pick up.
            let doomed = inner.dir.join(format!(
                "{}.{nonce}{DELETE_SUFFIX}",
                partition_dir_name(name, p.id())
            ));
            inner.storage.rename(p.dir(), &doomed)?;
            inner.storage.remove_dir_all(&doomed)?;
        }
        inner.storage.sync_dir(&inner.dir)?;
        info!(
            topic = %name,
            partitions = topic.partitions.len(),
            "topic deleted"
        );
        Ok(())
    }

    /// Replaces a topic's configuration at runtime: validated, persisted in `topics.meta`
    /// (atomically), and applied to the live partitions — new segments use the new sizes,
    /// appends the new compression and limits, the next maintenance run the new retention and
    /// compaction settings.
    ///
    /// Errors: [`Error::UnknownTopic`], [`Error::InvalidConfig`] (including a different
    /// `partitions` — the number of partitions is fixed at creation — and a lower
    /// `max_message_bytes`, which batches already stored could exceed), [`Error::Closed`], I/O.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use std::time::Duration;
    /// use annals::{CleanupPolicy, Log, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// log.create_topic("users", TopicConfig::default())?;
    /// let compacted = log.topic_config("users")?.cleanup_policy(CleanupPolicy::Compact)
    ///     .delete_retention_ms(Duration::from_secs(3600));
    /// log.alter_topic("users", compacted.clone())?;
    /// assert_eq!(log.topic_config("users")?, compacted);
    /// assert!(log.alter_topic("users", compacted.partitions(2)).is_err());
    /// # Ok(()) }
    /// ```
    pub fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        if is_internal_topic(name) {
            return Err(Error::UnknownTopic {
                topic: name.to_string(),
            });
        }
        config.validate()?;
        let inner = &self.inner;
        // The metadata is written under the admin lock alone, which keeps the topic list as read
        // here; `state` is taken only to read it and to publish the result.
        let _admin = inner.admin.lock();
        let state = inner.catalog.state.read();
        if state.closed {
            return Err(Error::Closed);
        }
        let Some(topic) = state.topics.get(name) else {
            return Err(Error::UnknownTopic {
                topic: name.to_string(),
            });
        };
        if topic.config.partitions != config.partitions {
            return Err(Error::invalid_config(
                "partitions",
                format!(
                    "cannot change from {} to {}: the number of partitions is fixed at creation",
                    topic.config.partitions, config.partitions
                ),
            ));
        }
        if config.max_message_bytes < topic.config.max_message_bytes {
            // Batches up to the old limit are on disk, and recovery and reads judge lengths
            // (and decompressed sizes) by the current one: they would turn into "corruption".
            return Err(Error::invalid_config(
                "max_message_bytes",
                format!(
                    "cannot be lowered from {} to {}: stored batches may be that large",
                    topic.config.max_message_bytes, config.max_message_bytes
                ),
            ));
        }
        let list: Vec<(String, TopicConfig)> = state
            .topics
            .iter()
            .map(|(n, t)| {
                let c = if n == name { &config } else { &t.config };
                (n.clone(), c.clone())
            })
            .collect();
        drop(state);
        // Durable first: a crash after this reopens with the new configuration.
        store_topics(&*inner.storage, &inner.dir, &list)?;
        let mut state = inner.catalog.state.write();
        let topic = state.topics.get_mut(name).expect("the admin lock kept it");
        info!(topic = %name, old = ?topic.config, new = ?config, "topic altered");
        topic.config = config.clone();
        let shared = Arc::new(config);
        for p in &topic.partitions {
            *p.inner.config.write() = shared.clone();
        }
        Ok(())
    }

    /// Whether a topic named `name` exists. Internal topics (`__consumer_offsets`, ...) are not
    /// topics to callers, as in [`topics`](Self::topics); false after close.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{Log, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// assert!(!log.has_topic("orders"));
    /// assert!(log.create_topic_if_missing("orders", TopicConfig::default().partitions(3))?);
    /// // A second call finds it and leaves it as it is.
    /// assert!(!log.create_topic_if_missing("orders", TopicConfig::default())?);
    /// assert!(log.has_topic("orders"));
    /// assert_eq!(log.topic_config("orders")?.partitions, 3);
    /// # Ok(()) }
    /// ```
    pub fn has_topic(&self, name: &str) -> bool {
        !is_internal_topic(name) && self.inner.catalog.state.read().topics.contains_key(name)
    }

    /// Creates the topic unless one of that name exists; returns whether it created it. An
    /// existing topic keeps its configuration, also when it differs from `config` (compare
    /// [`topic_config`](Self::topic_config) where that matters).
    ///
    /// Errors: as [`create_topic`](Self::create_topic), except that an existing topic is not
    /// one.
    pub fn create_topic_if_missing(&self, name: &str, config: TopicConfig) -> Result<bool> {
        match self.create_topic(name, config) {
            Ok(()) => Ok(true),
            Err(Error::TopicExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names of all topics, sorted (internal topics such as `__consumer_offsets` are not
    /// listed). Empty after [`close`](Self::close): this is the one call that cannot return
    /// [`Error::Closed`], and a closed log has no topics to offer.
    pub fn topics(&self) -> Vec<String> {
        let state = self.inner.catalog.state.read();
        state
            .topics
            .keys()
            .filter(|t| !is_internal_topic(t))
            .cloned()
            .collect()
    }

    /// The configuration of `topic`.
    pub fn topic_config(&self, topic: &str) -> Result<TopicConfig> {
        self.inner.catalog.topic_config(topic)
    }

    /// A handle to one partition of a topic.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<Partition> {
        self.inner.catalog.partition(topic, partition)
    }

    /// [`partition`](Self::partition) including internal topics.
    pub(super) fn any_partition(&self, topic: &str, partition: u32) -> Result<Partition> {
        self.inner.catalog.any_partition(topic, partition)
    }

    pub(super) fn topic_list(&self) -> Vec<(String, TopicConfig)> {
        self.inner.catalog.topic_list()
    }
}
