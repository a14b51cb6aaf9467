//! The settings of a [`Relay`](crate::Relay) and a [`Mirror`](crate::Mirror), checked by
//! [`RelayConfig::validate`] / [`MirrorConfig::validate`] before anything connects.

use std::time::Duration;

use crate::error::{Error, Result};

/// `pub fn field(mut self, value) -> Self` for each `field: Type`, documented as its setter.
macro_rules! setters {
    ($($field:ident: $ty:ty),* $(,)?) => {$(
        #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
        #[must_use]
        pub fn $field(mut self, value: $ty) -> Self {
            self.$field = value;
            self
        }
    )*};
}

/// How a relay picks the Kafka partition of an annals record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionMapping {
    /// Partition for partition: annals partition `p` goes to Kafka partition `p`, so the order of
    /// each partition is kept. The partition counts must be equal
    /// ([`Error::PartitionMismatch`] otherwise).
    #[default]
    Same,
    /// By key with Kafka's default partitioner (murmur2, [`annals::partition_for_key`]) over the
    /// Kafka topic's partition count, which may differ from annals'. A keyless record goes to
    /// `annals partition % kafka partitions`. The order of each key is kept; the order between
    /// keys of one annals partition is not.
    ByKey,
}

/// One annals topic forwarded to one Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRoute {
    /// The annals topic read (read_committed).
    pub annals_topic: String,
    /// The Kafka topic written; it must exist.
    pub kafka_topic: String,
    /// How partitions are chosen.
    pub mapping: PartitionMapping,
}

/// One Kafka topic copied into one annals topic, partition for partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRoute {
    /// The Kafka topic read (read_committed); it must exist.
    pub kafka_topic: String,
    /// The annals topic written; created with the Kafka topic's partition count when missing
    /// (if [`MirrorConfig::create_topics`]), checked to have that count otherwise.
    pub annals_topic: String,
}

/// Settings of a [`Relay`](crate::Relay).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Names this relay: its Kafka transactional id is `annals-relay.<id>` and its progress is
    /// kept under this id. A second relay started with the same id fences the first. Letters,
    /// digits, `.`, `_` and `-`, at most 200.
    pub id: String,
    /// The Kafka cluster, as librdkafka's `bootstrap.servers` (`host:port[,host:port]`).
    pub bootstrap: String,
    /// What to forward; at least one route, each annals topic once.
    pub routes: Vec<RelayRoute>,
    /// The compacted Kafka topic holding every relay's progress (created, compacted, with one
    /// partition, when missing). Default `annals-relay-progress`.
    pub progress_topic: String,
    /// The header each forwarded record gets, holding its annals offset as decimal text.
    /// Default `annals.offset`.
    pub offset_header: String,
    /// A Kafka transaction is committed after this many records… (default 100,000; memory is
    /// bounded by `max_buffered_bytes`, not by this)
    pub max_transaction_records: usize,
    /// …or this long after its first record, whichever comes first (default 100 ms). This is
    /// the latency a read_committed Kafka consumer sees on top of annals'.
    pub max_transaction_time: Duration,
    /// What librdkafka may hold of records not yet acknowledged by Kafka
    /// (`queue.buffering.max.kbytes`); when it is full the relay stops reading annals until
    /// Kafka catches up. Together with `max_poll_records` this bounds the relay's memory.
    /// Default 32 MiB.
    pub max_buffered_bytes: usize,
    /// How many records one read of annals returns at most (default 2,000).
    pub max_poll_records: usize,
    /// How long [`Relay::start`](crate::Relay::start) (and every reconnect) waits for the
    /// cluster to answer before it gives up with [`Error::Unreachable`]. Default 10 s.
    pub connect_timeout: Duration,
    /// Kafka's `transaction.timeout.ms` for the relay's producer, and the bound on a commit that
    /// keeps failing with retriable errors. Default 60 s.
    pub transaction_timeout: Duration,
    /// How long a running relay waits before reconnecting after a broker outage. Default 1 s.
    pub retry_backoff: Duration,
    /// Fsync the annals partitions a transaction forwarded from before committing it in Kafka
    /// (default `true`), so that after a power loss annals still has every record Kafka has. Off
    /// only when the topics are `Durability::Synced` already.
    pub sync_annals: bool,
    /// More librdkafka settings for the producer (`security.protocol`, `compression.type`, …),
    /// applied after the relay's own.
    pub kafka: Vec<(String, String)>,
}

impl RelayConfig {
    /// A relay named `id` to the cluster at `bootstrap`, with no route yet and the defaults
    /// above.
    pub fn new(id: impl Into<String>, bootstrap: impl Into<String>) -> RelayConfig {
        RelayConfig {
            id: id.into(),
            bootstrap: bootstrap.into(),
            routes: Vec::new(),
            progress_topic: "annals-relay-progress".into(),
            offset_header: "annals.offset".into(),
            max_transaction_records: 100_000,
            max_transaction_time: Duration::from_millis(100),
            max_buffered_bytes: 32 << 20,
            max_poll_records: 2_000,
            connect_timeout: Duration::from_secs(10),
            transaction_timeout: Duration::from_secs(60),
            retry_backoff: Duration::from_secs(1),
            sync_annals: true,
            kafka: Vec::new(),
        }
    }

    setters! {
        max_transaction_records: usize,
        max_transaction_time: Duration,
        max_buffered_bytes: usize,
        connect_timeout: Duration,
        transaction_timeout: Duration,
        retry_backoff: Duration,
        sync_annals: bool,
    }

    /// Forwards annals topic `annals_topic` to Kafka topic `kafka_topic` partition for partition.
    pub fn route(
        mut self,
        annals_topic: impl Into<String>,
        kafka_topic: impl Into<String>,
    ) -> Self {
        self.routes.push(RelayRoute {
            annals_topic: annals_topic.into(),
            kafka_topic: kafka_topic.into(),
            mapping: PartitionMapping::Same,
        });
        self
    }

    /// Forwards `annals_topic` to `kafka_topic` choosing partitions by key
    /// ([`PartitionMapping::ByKey`]).
    pub fn route_by_key(
        mut self,
        annals_topic: impl Into<String>,
        kafka_topic: impl Into<String>,
    ) -> Self {
        self.routes.push(RelayRoute {
            annals_topic: annals_topic.into(),
            kafka_topic: kafka_topic.into(),
            mapping: PartitionMapping::ByKey,
        });
        self
    }

    /// Sets [`progress_topic`](Self::progress_topic).
    pub fn progress_topic(mut self, topic: impl Into<String>) -> Self {
        self.progress_topic = topic.into();
        self
    }

    /// Adds a librdkafka setting for the producer ([`kafka`](Self::kafka)).
    pub fn kafka_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.kafka.push((key.into(), value.into()));
        self
    }

    /// The Kafka transactional id of this relay.
    pub fn transactional_id(&self) -> String {
        format!("annals-relay.{}", self.id)
    }

    /// Checks every setting; the error names the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        check_id("relay id", &self.id)?;
        check_common(&self.bootstrap, self.connect_timeout)?;
        if self.routes.is_empty() {
            return invalid(
                "relay routes",
                "no route: name at least one annals topic".into(),
            );
        }
        for (i, r) in self.routes.iter().enumerate() {
            check_annals_topic(&r.annals_topic)?;
            check_kafka_topic("Kafka topic of a route", &r.kafka_topic)?;
            if self.routes[..i]
                .iter()
                .any(|o| o.annals_topic == r.annals_topic)
            {
                return invalid(
                    "relay routes",
                    format!("annals topic {:?} is routed twice", r.annals_topic),
                );
            }
            if r.kafka_topic == self.progress_topic {
                return invalid(
                    "relay routes",
                    format!("{:?} is the progress topic", r.kafka_topic),
                );
            }
        }
        check_kafka_topic("progress topic", &self.progress_topic)?;
        if self.offset_header.is_empty() {
            return invalid("offset header", "empty".into());
        }
        check_positive("max_transaction_records", self.max_transaction_records)?;
        check_positive("max_poll_records", self.max_poll_records)?;
        if self.max_buffered_bytes < 1024 {
            return invalid(
                "max_buffered_bytes",
                format!("{} is below 1 KiB", self.max_buffered_bytes),
            );
        }
        if self.transaction_timeout < Duration::from_secs(1) {
            return invalid(
                "transaction_timeout",
                format!("{:?} is below one second", self.transaction_timeout),
            );
        }
        if self.max_transaction_time >= self.transaction_timeout {
            return invalid(
                "max_transaction_time",
                format!(
                    "{:?} is not below transaction_timeout {:?}",
                    self.max_transaction_time, self.transaction_timeout
                ),
            );
        }
        Ok(())
    }
}

/// Settings of a [`Mirror`](crate::Mirror).
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Names this mirror: its annals transactional id is `annals-mirror.<id>` and the Kafka
    /// offsets it copied to are committed in annals under the group `annals-mirror.<id>`,
    /// in the same annals transaction as the records. Letters, digits, `.`, `_`, `-`.
    pub id: String,
    /// The Kafka cluster, as librdkafka's `bootstrap.servers`.
    pub bootstrap: String,
    /// What to copy; at least one route, each annals topic once.
    pub routes: Vec<MirrorRoute>,
    /// Create a missing annals topic with the Kafka topic's partition count (default `true`).
    pub create_topics: bool,
    /// An annals transaction is committed after this many records… (default 10,000)
    pub max_transaction_records: usize,
    /// …or this long after its first record (default 100 ms).
    pub max_transaction_time: Duration,
    /// How long [`Mirror::start`](crate::Mirror::start) waits for the cluster to answer.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// What librdkafka may prefetch per partition (`queued.max.messages.kbytes`, in total for
    /// the consumer). Default 16 MiB.
    pub max_prefetch_bytes: usize,
    /// More librdkafka settings for the consumer, applied after the mirror's own.
    pub kafka: Vec<(String, String)>,
}

impl MirrorConfig {
    /// A mirror named `id` of topics at `bootstrap`, with no route yet and the defaults above.
    pub fn new(id: impl Into<String>, bootstrap: impl Into<String>) -> MirrorConfig {
        MirrorConfig {
            id: id.into(),
            bootstrap: bootstrap.into(),
            routes: Vec::new(),
            create_topics: true,
            max_transaction_records: 10_000,
            max_transaction_time: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(10),
            max_prefetch_bytes: 16 << 20,
            kafka: Vec::new(),
        }
    }

    setters! {
        create_topics: bool,
        max_transaction_records: usize,
        max_transaction_time: Duration,
        connect_timeout: Duration,
    }

    /// Copies Kafka topic `kafka_topic` into annals topic `annals_topic`.
    pub fn route(
        mut self,
        kafka_topic: impl Into<String>,
        annals_topic: impl Into<String>,
    ) -> Self {
        self.routes.push(MirrorRoute {
            kafka_topic: kafka_topic.into(),
            annals_topic: annals_topic.into(),
        });
        self
    }

    /// Adds a librdkafka setting for the consumer ([`kafka`](Self::kafka)).
    pub fn kafka_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.kafka.push((key.into(), value.into()));
        self
    }

    /// The annals transactional id, which is also the annals group holding the copied offsets.
    pub fn transactional_id(&self) -> String {
        format!("annals-mirror.{}", self.id)
    }

    /// Checks every setting; the error names the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        check_id("mirror id", &self.id)?;
        check_common(&self.bootstrap, self.connect_timeout)?;
        if self.routes.is_empty() {
            return invalid(
                "mirror routes",
                "no route: name at least one Kafka topic".into(),
            );
        }
        for (i, r) in self.routes.iter().enumerate() {
            check_kafka_topic("Kafka topic of a route", &r.kafka_topic)?;
            check_annals_topic(&r.annals_topic)?;
            if self.routes[..i]
                .iter()
                .any(|o| o.annals_topic == r.annals_topic)
            {
                return invalid(
                    "mirror routes",
                    format!("annals topic {:?} is written by two routes", r.annals_topic),
                );
            }
        }
        check_positive("max_transaction_records", self.max_transaction_records)?;
        if self.max_prefetch_bytes < 1024 {
            return invalid(
                "max_prefetch_bytes",
                format!("{} is below 1 KiB", self.max_prefetch_bytes),
            );
        }
        Ok(())
    }
}

fn invalid(what: &'static str, why: String) -> Result<()> {
    Err(Error::InvalidConfig { what, why })
}

fn check_id(what: &'static str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 200 {
        return invalid(what, format!("{id:?} must have 1 to 200 characters"));
    }
    if let Some(c) = id.chars().find(|c| !is_name_char(*c)) {
        return invalid(
            what,
            format!("{id:?} has {c:?}; only letters, digits, '.', '_' and '-' are allowed"),
        );
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Kafka's own rule for topic names (`Topic.validate`): 1 to 249 of `[a-zA-Z0-9._-]`, and not
/// `.` or `..`.
fn check_kafka_topic(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return invalid(what, format!("{name:?} is not a Kafka topic name"));
    }
    if let Some(c) = name.chars().find(|c| !is_name_char(*c)) {
        return invalid(
            what,
            format!("{name:?} has {c:?}, which Kafka topic names cannot have"),
        );
    }
    Ok(())
}

fn check_annals_topic(name: &str) -> Result<()> {
    annals::validate_topic_name(name).map_err(|e| Error::InvalidConfig {
        what: "annals topic of a route",
        why: e.to_string(),
    })
}

fn check_common(bootstrap: &str, connect_timeout: Duration) -> Result<()> {
    if bootstrap.trim().is_empty() {
        return invalid("bootstrap", "no Kafka address given (host:port)".into());
    }
    if connect_timeout.is_zero() {
        return invalid("connect_timeout", "zero".into());
    }
    Ok(())
}

fn check_positive(what: &'static str, n: usize) -> Result<()> {
    if n == 0 {
        return invalid(what, "zero".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay() -> RelayConfig {
        RelayConfig::new("orders", "127.0.0.1:9092").route("orders", "orders")
    }

    fn why(r: Result<()>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn a_plain_relay_and_mirror_are_valid() {
        relay().validate().unwrap();
        MirrorConfig::new("m", "h:1")
            .route("orders", "orders-copy")
            .validate()
            .unwrap();
        assert_eq!(relay().transactional_id(), "annals-relay.orders");
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            (RelayConfig::new("", "h:1").route("a", "a"), "relay id"),
            (RelayConfig::new("a/b", "h:1").route("a", "a"), "'/'"),
            (RelayConfig::new("r", " ").route("a", "a"), "bootstrap"),
            (RelayConfig::new("r", "h:1"), "no route"),
            (relay().route("orders", "x"), "routed twice"),
            (
                RelayConfig::new("r", "h:1").route("a", "b c"),
                "Kafka topic names",
            ),
            (
                RelayConfig::new("r", "h:1").route("a", ".."),
                "not a Kafka topic name",
            ),
            (
                relay().route("b", "annals-relay-progress"),
                "progress topic",
            ),
            (
                relay().max_transaction_records(0),
                "max_transaction_records",
            ),
            (relay().max_buffered_bytes(10), "max_buffered_bytes"),
            (relay().connect_timeout(Duration::ZERO), "connect_timeout"),
            (
                relay().transaction_timeout(Duration::from_millis(10)),
                "transaction_timeout",
            ),
            (
                relay().max_transaction_time(Duration::from_secs(120)),
                "max_transaction_time",
            ),
        ];
        for (config, want) in cases {
            let msg = why(config.validate());
            assert!(msg.contains(want), "{want}: {msg}");
        }
        let msg = why(RelayConfig::new("r", "h:1").route("", "a").validate());
        assert!(msg.contains("annals topic"), "{msg}");
        let msg = why(MirrorConfig::new("m", "h:1").validate());
        assert!(msg.contains("no route"), "{msg}");
        let msg = why(MirrorConfig::new("m", "h:1")
            .route("a", "x")
            .route("b", "x")
            .validate());
        assert!(msg.contains("two routes"), "{msg}");
    }
}
