//! [`ConsumerConfig`]: typed settings named after the Kafka consumer settings they mirror.

use std::time::Duration;

use crate::config::check_duration;
use crate::error::{Error, Result};
use crate::group::{validate_group_id, Assignor};

/// Where a consumer starts in a partition its group has no usable committed offset for
/// (Kafka's `auto.offset.reset`). Also applies when a position falls below the log start
/// offset (retention deleted the records) or above the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AutoOffsetReset {
    /// The log start offset: read everything still stored.
    #[default]
    Earliest,
    /// The high watermark: only records written from now on.
    Latest,
    /// Fail with [`Error::NoCommittedOffset`] (or [`Error::OffsetOutOfRange`] for a position
    /// that fell out of the log).
    Error,
}

pub use crate::partition::IsolationLevel;

/// Configuration of one [`Consumer`](crate::Consumer).
///
/// ```
/// use std::time::Duration;
/// use annals::{AutoOffsetReset, ConsumerConfig};
/// let cfg = ConsumerConfig::new("order-fulfillment")
///     .auto_offset_reset(AutoOffsetReset::Latest)
///     .max_poll_records(100)
///     .fetch_max_wait(Duration::from_millis(50));
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
// A misspelt field is an error rather than ignored; a file names only the fields it changes.
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// The consumer group (`group.id`): 1-255 bytes, no control characters. Committed offsets
    /// and group membership are per group. `None` ([`ConsumerConfig::default`]) for a consumer
    /// that only [`assign`](crate::Consumer::assign)s and seeks: it cannot subscribe or
    /// commit, and starts every partition at `auto_offset_reset`.
    pub group_id: Option<String>,
    /// A name for this member in [`Log::groups`](crate::Log::groups) (`client.id`). Default
    /// `"consumer"`; at most 255 bytes.
    pub client_id: String,
    /// Where to start without a committed offset. Default `Earliest`.
    pub auto_offset_reset: AutoOffsetReset,
    /// Commit the current positions every `auto_commit_interval` from `poll`, and on close
    /// (`enable.auto.commit`). Default **false** (Kafka defaults to true): records count as
    /// processed when the *next* poll runs, which is only at-least-once if the application
    /// finishes each batch before polling again; explicit `commit` makes that visible.
    pub enable_auto_commit: bool,
    /// Default 5 s; at least 1 ms, at most `i64::MAX` ms.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub auto_commit_interval: Duration,
    /// Most records one `poll` returns (`max.poll.records`). Default 500; 1 to 1,000,000.
    pub max_poll_records: usize,
    /// `poll` waits (up to its timeout and `fetch_max_wait`) until at least this many bytes of
    /// records are available (`fetch.min.bytes`). Default 1 (return as soon as anything is
    /// there); at most `fetch_max_bytes`.
    pub fetch_min_bytes: usize,
    /// With less than `fetch_min_bytes` available, return what there is after this long
    /// (`fetch.max.wait.ms`). Default 500 ms; at most `i64::MAX` ms.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub fetch_max_wait: Duration,
    /// Upper bound on the bytes of record batches one `poll` reads (`fetch.max.bytes`); at least
    /// one batch is always returned so a consumer cannot get stuck behind a large one. Default
    /// 50 MiB; 1 KiB to 1 GiB.
    pub fetch_max_bytes: usize,
    /// Bytes read per partition per fetch (`max.partition.fetch.bytes`). Default 1 MiB; 1 KiB to
    /// 1 GiB. Bounds the consumer's memory together with `fetch_max_bytes`.
    pub max_partition_fetch_bytes: usize,
    /// A group member that does not poll for this long is removed from its group and its
    /// partitions go to the others (`max.poll.interval.ms`). Default 5 min; at least 10 ms, at
    /// most `i64::MAX` ms.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub max_poll_interval: Duration,
    /// How the group splits partitions; every member of a group must agree. Default `Range`.
    pub assignor: Assignor,
    /// Default `ReadUncommitted` (the only level until transactions exist).
    pub isolation_level: IsolationLevel,
}

/// The defaults, without a group: for a consumer that assigns partitions itself.
impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: None,
            client_id: "consumer".into(),
            auto_offset_reset: AutoOffsetReset::Earliest,
            enable_auto_commit: false,
            auto_commit_interval: Duration::from_secs(5),
            max_poll_records: 500,
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 << 20,
            max_partition_fetch_bytes: 1 << 20,
            max_poll_interval: Duration::from_secs(300),
            assignor: Assignor::Range,
            isolation_level: IsolationLevel::ReadUncommitted,
        }
    }
}

impl ConsumerConfig {
    /// Defaults for a member of `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerConfig {
            group_id: Some(group_id.into()),
            ..ConsumerConfig::default()
        }
    }

    /// Sets [`group_id`](Self::group_id).
    #[must_use]
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Sets [`client_id`](Self::client_id).
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }
    setter!(
        /// Sets [`auto_offset_reset`](Self::auto_offset_reset).
        auto_offset_reset: AutoOffsetReset
    );
    setter!(
        /// Sets [`enable_auto_commit`](Self::enable_auto_commit).
        enable_auto_commit: bool
    );
    setter!(
        /// Sets [`auto_commit_interval`](Self::auto_commit_interval).
        auto_commit_interval: Duration
    );
    setter!(
        /// Sets [`max_poll_records`](Self::max_poll_records).
        max_poll_records: usize
    );
    setter!(
        /// Sets [`fetch_min_bytes`](Self::fetch_min_bytes).
        fetch_min_bytes: usize
    );
    setter!(
        /// Sets [`fetch_max_wait`](Self::fetch_max_wait).
        fetch_max_wait: Duration
    );
    setter!(
        /// Sets [`fetch_max_bytes`](Self::fetch_max_bytes).
        fetch_max_bytes: usize
    );
    setter!(
        /// Sets [`max_partition_fetch_bytes`](Self::max_partition_fetch_bytes).
        max_partition_fetch_bytes: usize
    );
    setter!(
        /// Sets [`max_poll_interval`](Self::max_poll_interval).
        max_poll_interval: Duration
    );
    setter!(
        /// Sets [`assignor`](Self::assignor).
        assignor: Assignor
    );
    setter!(
        /// Sets [`isolation_level`](Self::isolation_level).
        isolation_level: IsolationLevel
    );

    /// Checks every field against its documented bounds.
    pub fn validate(&self) -> Result<()> {
        if let Some(group) = &self.group_id {
            validate_group_id(group)?;
        }
        if self.client_id.len() > 255 || self.client_id.chars().any(char::is_control) {
            return Err(Error::invalid_config(
                "client_id",
                "must be at most 255 bytes without control characters",
            ));
        }
        // Each is added to an Instant (the next auto-commit, poll's wait, a member's expiry).
        for (field, d) in [
            ("auto_commit_interval", self.auto_commit_interval),
            ("fetch_max_wait", self.fetch_max_wait),
            ("max_poll_interval", self.max_poll_interval),
        ] {
            check_duration(field, d)?;
        }
        if self.auto_commit_interval < Duration::from_millis(1) {
            return Err(Error::invalid_config(
                "auto_commit_interval",
                "must be at least 1 ms",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_poll_records) {
            return Err(Error::invalid_config(
                "max_poll_records",
                format!(
                    "is {}, must be between 1 and 1000000",
                    self.max_poll_records
                ),
            ));
        }
        for (field, v) in [
            ("fetch_max_bytes", self.fetch_max_bytes),
            ("max_partition_fetch_bytes", self.max_partition_fetch_bytes),
        ] {
            if !(1024..=1 << 30).contains(&v) {
                return Err(Error::invalid_config(
                    field,
                    format!("is {v}, must be between 1024 and {}", 1u64 << 30),
                ));
            }
        }
        if self.fetch_min_bytes > self.fetch_max_bytes {
            return Err(Error::invalid_config(
                "fetch_min_bytes",
                "must not exceed fetch_max_bytes",
            ));
        }
        if self.max_poll_interval < Duration::from_millis(10) {
            return Err(Error::invalid_config(
                "max_poll_interval",
                "must be at least 10 ms",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_rejected() {
        let bad = [
            ConsumerConfig::new(""),
            ConsumerConfig::new("g").client_id("a\nb"),
            ConsumerConfig::new("g").max_poll_records(0),
            ConsumerConfig::new("g").fetch_max_bytes(10),
            ConsumerConfig::new("g").max_partition_fetch_bytes(0),
            ConsumerConfig::new("g").fetch_min_bytes(100 << 20),
            ConsumerConfig::new("g").max_poll_interval(Duration::ZERO),
            ConsumerConfig::new("g").auto_commit_interval(Duration::ZERO),
            ConsumerConfig::new("g").auto_commit_interval(Duration::MAX),
            ConsumerConfig::new("g").fetch_max_wait(Duration::MAX),
            ConsumerConfig::new("g").max_poll_interval(Duration::MAX),
        ];
        for cfg in bad {
            assert!(cfg.validate().is_err(), "{cfg:?}");
        }
        ConsumerConfig::new("g").validate().unwrap();
        ConsumerConfig::new("g")
            .isolation_level(IsolationLevel::ReadCommitted)
            .validate()
            .unwrap();
    }
}
