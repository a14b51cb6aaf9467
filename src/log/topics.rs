//! Topic administration on [`Log`]: create, alter, delete, list, and the partition lookups.
//!
//! Each change runs under the admin lock, writes its files and `topics.meta` first, and
//! publishes the result in the catalog under a brief write lock (see "Concurrency" in
//! docs/ARCHITECTURE.md).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::open::{open_one, How};
use super::Log;
use crate::catalog::{is_internal_topic, Topic};
use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::fan_out;
use crate::meta::{encode_topics, store_encoded_topics, store_topics};
use crate::partition::{partition_dir_name, validate_topic_name, Partition, DELETE_SUFFIX};

impl Log {
    /// Creates a topic with `config.partitions` empty partitions. Once it returns, the topic
    /// survives a crash or power loss; a crash before leaves no trace of it. To create many
    /// topics, [`create_topics`](Self::create_topics) writes the metadata once for all of them.
    ///
    /// Errors: [`Error::InvalidTopicName`], [`Error::InvalidConfig`], [`Error::TopicExists`],
    /// [`Error::Closed`], I/O.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        self.create_topics([(name, config)])
    }

    /// Creates every topic of `topics`, each with its `config.partitions` empty partitions, all
    /// or nothing: every name and configuration is checked first, and on any error no topic is
    /// created. Once it returns, all of them survive a crash or power loss; a crash before
    /// leaves none of them.
    ///
    /// One call costs one fsync per partition directory, one of the log directory and one
    /// write of `topics.meta`, whatever the number of topics; [`create_topic`](Self::create_topic)
    /// in a loop rewrites `topics.meta` (every topic's configuration) once per topic.
    ///
    /// Errors, naming the topic: [`Error::InvalidTopicName`], [`Error::InvalidConfig`],
    /// [`Error::InvalidArgument`] for a name given twice, [`Error::TopicExists`];
    /// [`Error::Closed`]; I/O. An empty `topics` creates nothing and succeeds.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{Error, Log, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// let config = TopicConfig::default().partitions(4);
    /// log.create_topics((0..100).map(|i| (format!("account-{i}"), config.clone())))?;
    /// assert_eq!(log.topics().len(), 100);
    /// assert_eq!(log.topic_config("account-99")?.partitions, 4);
    ///
    /// // One bad name, and nothing is created.
    /// let bad = [("fine", config.clone()), ("not fine!", config.clone())];
    /// assert!(matches!(log.create_topics(bad), Err(Error::InvalidTopicName { .. })));
    /// assert!(!log.has_topic("fine"));
    /// # Ok(()) }
    /// ```
    pub fn create_topics<N: Into<String>>(
        &self,
        topics: impl IntoIterator<Item = (N, TopicConfig)>,
    ) -> Result<()> {
        let topics: Vec<(String, TopicConfig)> =
            topics.into_iter().map(|(n, c)| (n.into(), c)).collect();
        for (name, _) in &topics {
            validate_topic_name(name)?;
            if is_internal_topic(name) {
                return Err(Error::InvalidTopicName {
                    name: name.clone(),
                    reason: "names starting with \"__\" are reserved for annals' internal topics",
                });
            }
        }
        self.create_topics_unchecked(topics)
    }

    /// Creates a topic without the reservation check (for internal topics).
    pub(super) fn create_topic_unchecked(&self, name: &str, config: TopicConfig) -> Result<()> {
        self.create_topics_unchecked(vec![(name.to_string(), config)])
    }

    fn create_topics_unchecked(&self, topics: Vec<(String, TopicConfig)>) -> Result<()> {
        let mut names = HashSet::with_capacity(topics.len());
        for (name, config) in &topics {
            config.validate().map_err(|e| of_topic(e, name))?;
            if !names.insert(name.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "topic {name:?} is given twice in one creation"
                )));
            }
        }
        let inner = &self.inner;
        // Under the admin lock only, the topic list cannot change (nor the log close) until the
        // new topics are published below.
        let _admin = inner.admin.lock();
        let encoded = {
            let state = inner.catalog.state.read();
            if state.closed {
                return Err(Error::Closed);
            }
            if let Some((name, _)) = topics.iter().find(|(n, _)| state.topics.contains_key(n)) {
                return Err(Error::TopicExists {
                    topic: name.clone(),
                });
            }
            if topics.is_empty() {
                return Ok(());
            }
            // Encoded before any file is made, so what `topics.meta` cannot hold is refused
            // first; and from the catalog's own configurations, which are not copied (a
            // creation rewrites every topic's entry, see `create_topics`).
            let existing = state.topics.iter().map(|(n, t)| (n.as_str(), &t.config));
            encode_topics(existing.chain(topics.iter().map(|(n, c)| (n.as_str(), c))))?
        };
        let partitions = self.create_partitions(&topics)?;
        // Metadata last, one write for the whole batch: until it is durable the new directories
        // are leftovers no topic names, which the next open removes; once it is, they are
        // durable already (see `create_partitions`).
        store_encoded_topics(&*inner.storage, &inner.dir, &encoded)?;
        for (name, config) in &topics {
            info!(topic = %name, partitions = config.partitions, config = ?config, "topic created");
        }
        let mut state = inner.catalog.state.write();
        for ((name, config), partitions) in topics.into_iter().zip(partitions) {
            state.topics.insert(name, Topic { config, partitions });
        }
        Ok(())
    }

    /// Makes every partition of `topics` and makes them durable: directories and first segments
    /// first, without a sync each, then one fsync per partition directory (its files' names)
    /// and one of the log directory (the directories' names). So once this returns, a
    /// partition's `sync` (which fsyncs only its segment file) is enough for what it appends.
    /// On an error the directories this call made are removed (best effort: the next open
    /// removes any that remain, as no topic names them).
    fn create_partitions(&self, topics: &[(String, TopicConfig)]) -> Result<Vec<Vec<Partition>>> {
        let inner = &self.inner;
        let mut made = Vec::new();
        let result = (|| {
            let mut all = Vec::with_capacity(topics.len());
            for (name, config) in topics {
                let mut partitions = Vec::with_capacity(config.partitions as usize);
                for id in 0..config.partitions {
                    let dir = inner.dir.join(partition_dir_name(name, id));
                    // A directory of that name is only there if an earlier creation failed in
                    // this process: it is opened (and synced) as any partition is.
                    let fresh = !inner.storage.exists(&dir)?;
                    if fresh {
                        made.push(dir);
                    }
                    partitions.push(open_one(
                        &inner.storage,
                        &inner.dir,
                        name,
                        id,
                        config,
                        How::Create { fresh },
                        (inner.recovery_mode, inner.producer_id_expiration_ms),
                    )?);
                }
                all.push(partitions);
            }
            let new: Vec<&Partition> = all.iter().flatten().collect();
            fan_out::for_each(&new, |p| inner.storage.sync_dir(p.dir()))?;
            inner.storage.sync_dir(&inner.dir)?;
            Ok(all)
        })();
        if result.is_err() {
            for dir in &made {
                let _ = inner.storage.remove_dir_all(dir);
            }
        }
        result
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
}

/// A configuration error of one topic of a creation, saying which topic.
fn of_topic(e: Error, topic: &str) -> Error {
    match e {
        Error::InvalidConfig { field, reason } => Error::InvalidConfig {
            field,
            reason: format!("{reason} (topic {topic:?})"),
        },
        other => other,
    }
}
