//! Per-topic configuration, named after the Kafka settings it mirrors.
//!
//! Every field documents its default and bounds; [`TopicConfig::validate`] rejects values out of
//! bounds with [`Error::InvalidConfig`] instead of clamping them.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{Compression, TimestampType};

/// The longest duration any configuration accepts: `i64::MAX` milliseconds (about 292 million
/// years). Millisecond timestamps are `i64`, so every configured duration can be compared with
/// them, stored as `u64` milliseconds and added to an [`Instant`] without overflowing.
pub(crate) const MAX_DURATION: Duration = Duration::from_millis(i64::MAX as u64);

/// `d` in milliseconds, exactly, for a duration that is stored (in `topics.meta`) or compared
/// with millisecond timestamps. Refuses, naming `field`, a duration above [`MAX_DURATION`] and
/// one with a sub-millisecond part (which storing would silently drop, so the reopened log
/// would differ from the one configured). The result always fits an `i64` as well.
pub(crate) fn duration_to_millis(field: &'static str, d: Duration) -> Result<u64> {
    check_duration(field, d)?;
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(Error::invalid_config(
            field,
            format!("is {d:?}, which is not a whole number of milliseconds (it is stored in ms)"),
        ));
    }
    // At most i64::MAX, checked above, so the narrowing is exact.
    Ok(d.as_millis() as u64)
}

/// Refuses, naming `field`, a duration above [`MAX_DURATION`]: for configured durations that are
/// only ever waited for (added to an [`Instant`]), never stored.
pub(crate) fn check_duration(field: &'static str, d: Duration) -> Result<()> {
    if d > MAX_DURATION {
        return Err(Error::invalid_config(
            field,
            format!("is {d:?}, more than i64::MAX milliseconds"),
        ));
    }
    Ok(())
}

/// `now + d` for a caller's timeout, which may be anything up to `Duration::MAX`: a sum past what
/// an `Instant` can hold means "wait as long as it takes", so it becomes a century from now.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(CENTURY))
        // No platform's Instant stops short of a century; a deadline of now still returns.
        .unwrap_or(now)
}

/// What the log does with old data (Kafka's `cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CleanupPolicy {
    /// Delete whole old segments past `retention_ms` / `retention_bytes`.
    #[default]
    Delete,
    /// Keep the latest record per key (compaction).
    Compact,
    /// Both.
    CompactAndDelete,
}

/// Which record survives compaction for a key (KIP-280's `compaction.strategy`).
///
/// Every strategy orders a key's records by a *version* and keeps the highest; equal versions
/// are broken by offset (the later record wins), so the order is total and compaction is
/// deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CompactionStrategy {
    /// Kafka's classic rule: the record with the highest offset (the newest append) wins.
    #[default]
    Offset,
    /// The record with the highest timestamp wins (ties: the higher offset).
    Timestamp,
    /// The record whose header of this name holds the highest version wins (ties: the higher
    /// offset). The header value is the version as a **signed 64-bit big-endian integer**
    /// (exactly 8 bytes). A record without that header, with a null value or with a value that
    /// is not 8 bytes has the lowest version (`i64::MIN`), so any well-versioned record beats it
    /// and among unversioned records the latest offset wins, as under `Offset`.
    Header(String),
}

/// Configuration of one topic.
///
/// Durations are kept in `topics.meta` as milliseconds, like Kafka's `*.ms` settings: each must
/// be a whole number of milliseconds and at most `i64::MAX` ms, so that the reopened log has
/// exactly the configuration it was given.
///
/// ```
/// use annals::{Compression, TopicConfig};
/// let cfg = TopicConfig::default()
///     .partitions(3)
///     .segment_bytes(64 << 20)
///     .compression(Compression::Lz4);
/// assert_eq!(cfg.partitions, 3);
/// ```
#[cfg_attr(
    feature = "serde",
    doc = r##"
With feature `serde` it is read from a file (here JSON, with `serde_json`): fields and variants by
their Rust names, durations in whole milliseconds. A field left out keeps its default; a field
misspelt is an error. What is read is checked where it is used, as any configuration is:
`create_topic` refuses one out of bounds with `Error::InvalidConfig`.

```
# fn main() -> annals::Result<()> {
use std::time::Duration;
use annals::{CleanupPolicy, Log, TopicConfig};

let cfg: TopicConfig = serde_json::from_str(r#"{
    "partitions": 3,
    "cleanup_policy": "CompactAndDelete",
    "retention_ms": 604800000,
    "compression": { "Zstd": { "level": 3 } }
}"#).unwrap();
assert_eq!(cfg.cleanup_policy, CleanupPolicy::CompactAndDelete);
assert_eq!(cfg.retention_ms, Some(Duration::from_secs(7 * 24 * 3600)));
assert_eq!(cfg.segment_bytes, TopicConfig::default().segment_bytes);

let typo = serde_json::from_str::<TopicConfig>(r#"{ "partition": 3 }"#).unwrap_err();
assert!(typo.to_string().contains("unknown field `partition`"), "{typo}");

let dir = tempfile::tempdir().unwrap();
let log = Log::open(dir.path())?;
log.create_topic("orders", cfg)?;
# Ok(()) }
```"##
)]
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
// A file names only the fields it changes, and a misspelt one is an error rather than ignored.
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct TopicConfig {
    /// Number of partitions. Default 1; 1 to 10,000. Fixed at creation.
    pub partitions: u32,
    /// Roll to a new segment once the active one would exceed this many bytes
    /// (`segment.bytes`). Default 1 GiB; 1 KiB to 2 GiB - 1 (index positions are 32-bit).
    pub segment_bytes: u64,
    /// Roll when a batch's timestamp is this much newer than the segment's first batch
    /// (`segment.ms`). Default 7 days; at least 1 ms.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub segment_ms: Duration,
    /// Size of each index file of the active segment, preallocated (`segment.index.bytes`).
    /// A full index rolls the segment. Default 4 MiB; 1 KiB to 1 GiB.
    pub segment_index_bytes: usize,
    /// Bytes of log between two offset-index entries (`index.interval.bytes`). Default 4 KiB;
    /// 0 to 16 MiB.
    pub index_interval_bytes: usize,
    /// Largest record batch, and so the largest record, the topic accepts
    /// (`max.message.bytes`). Default 1 MiB; 128 B to 512 MiB.
    pub max_message_bytes: usize,
    /// Codec for batches the log encodes (`compression.type`). Default none. zstd levels 1-22.
    pub compression: Compression,
    /// Whether record timestamps are the producer's or the append time
    /// (`message.timestamp.type`). Default CreateTime.
    pub message_timestamp_type: TimestampType,
    /// Default delete.
    pub cleanup_policy: CleanupPolicy,
    /// Delete segments whose newest record is older than this (`retention.ms`).
    /// Default `None`: keep forever. (Kafka defaults to 7 days; an embedded event store losing
    /// history after a week by default would surprise more people than it helps.)
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis::option"))]
    pub retention_ms: Option<Duration>,
    /// Delete old segments while a partition is larger than this (`retention.bytes`).
    /// Default `None`: no size limit.
    pub retention_bytes: Option<u64>,
    /// Compaction runs on a partition once this share of its cleanable bytes is dirty (not yet
    /// compacted) (`min.cleanable.dirty.ratio`). Default 0.5; 0.0 to 1.0.
    pub min_cleanable_dirty_ratio: f64,
    /// A record stays uncompacted at least this long after its segment's newest timestamp
    /// (`min.compaction.lag.ms`): consumers get this window to see every update. Default 0.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub min_compaction_lag_ms: Duration,
    /// Compact a partition whose dirty part is older than this even below the dirty ratio
    /// (`max.compaction.lag.ms`). Default `None` (no deadline); when set, positive and at least
    /// `min_compaction_lag_ms`.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis::option"))]
    pub max_compaction_lag_ms: Option<Duration>,
    /// How long a tombstone survives after the cleaner first compacted the segment holding it
    /// (`delete.retention.ms`), so consumers that are behind still see the delete. Default 1 day;
    /// zero removes tombstones on the next pass after they were first compacted.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub delete_retention_ms: Duration,
    /// Which record per key compaction keeps (KIP-280). Default [`CompactionStrategy::Offset`].
    pub compaction_strategy: CompactionStrategy,
    /// Consumer groups whose progress holds retention back (beyond Kafka): a segment is deleted
    /// by `retention_ms`/`retention_bytes` only once every group listed here has committed an
    /// offset at or past the segment's end. A group that never committed holds everything.
    /// Default empty; at most 100 groups, each id 1 to 255 bytes, no duplicates.
    pub retain_for_groups: Vec<String>,
    /// Hard cap on age that overrides `retain_for_groups`: a segment whose newest record is
    /// older than this is deleted even if a listed group has not consumed it, so a dead group
    /// cannot fill the disk. Default `None`; when set, positive and at least `retention_ms`.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis::option"))]
    pub max_retention_ms: Option<Duration>,
    /// Hard cap on partition size that overrides `retain_for_groups`. Default `None`; when set,
    /// positive and at least `retention_bytes`.
    pub max_retention_bytes: Option<u64>,
}

// `min_cleanable_dirty_ratio` is an f64, so `Eq` cannot be derived; `validate` rejects NaN, the
// one value for which equality is not reflexive.
impl Eq for TopicConfig {}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            segment_bytes: 1 << 30,
            segment_ms: Duration::from_secs(7 * 24 * 3600),
            segment_index_bytes: 4 << 20,
            index_interval_bytes: 4096,
            max_message_bytes: 1 << 20,
            compression: Compression::None,
            message_timestamp_type: TimestampType::CreateTime,
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: None,
            retention_bytes: None,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: Duration::ZERO,
            max_compaction_lag_ms: None,
            delete_retention_ms: Duration::from_secs(24 * 3600),
            compaction_strategy: CompactionStrategy::Offset,
            retain_for_groups: Vec::new(),
            max_retention_ms: None,
            max_retention_bytes: None,
        }
    }
}

impl TopicConfig {
    setter!(/// Sets `partitions`.
        partitions: u32);
    setter!(/// Sets `segment_bytes`.
        segment_bytes: u64);
    setter!(/// Sets `segment_ms`.
        segment_ms: Duration);
    setter!(/// Sets `segment_index_bytes`.
        segment_index_bytes: usize);
    setter!(/// Sets `index_interval_bytes`.
        index_interval_bytes: usize);
    setter!(/// Sets `max_message_bytes`.
        max_message_bytes: usize);
    setter!(/// Sets `compression`.
        compression: Compression);
    setter!(/// Sets `message_timestamp_type`.
        message_timestamp_type: TimestampType);
    setter!(/// Sets `cleanup_policy`.
        cleanup_policy: CleanupPolicy);
    setter!(/// Sets `min_cleanable_dirty_ratio`.
        min_cleanable_dirty_ratio: f64);
    setter!(/// Sets `min_compaction_lag_ms`.
        min_compaction_lag_ms: Duration);
    setter!(/// Sets `delete_retention_ms`.
        delete_retention_ms: Duration);
    setter!(/// Sets `compaction_strategy`.
        compaction_strategy: CompactionStrategy);

    /// Sets `max_compaction_lag_ms` (`None`: no deadline).
    #[must_use]
    pub fn max_compaction_lag_ms(mut self, value: impl Into<Option<Duration>>) -> Self {
        self.max_compaction_lag_ms = value.into();
        self
    }

    /// Sets `retain_for_groups`.
    #[must_use]
    pub fn retain_for_groups<S: Into<String>>(
        mut self,
        groups: impl IntoIterator<Item = S>,
    ) -> Self {
        self.retain_for_groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `max_retention_ms` (`None`: no hard cap on age).
    #[must_use]
    pub fn max_retention_ms(mut self, value: impl Into<Option<Duration>>) -> Self {
        self.max_retention_ms = value.into();
        self
    }

    /// Sets `max_retention_bytes` (`None`: no hard cap on size).
    #[must_use]
    pub fn max_retention_bytes(mut self, value: impl Into<Option<u64>>) -> Self {
        self.max_retention_bytes = value.into();
        self
    }

    /// Whether compaction applies (`Compact` or `CompactAndDelete`).
    pub fn compacts(&self) -> bool {
        matches!(
            self.cleanup_policy,
            CleanupPolicy::Compact | CleanupPolicy::CompactAndDelete
        )
    }

    /// Whether time/size retention applies (`Delete` or `CompactAndDelete`).
    pub fn deletes(&self) -> bool {
        matches!(
            self.cleanup_policy,
            CleanupPolicy::Delete | CleanupPolicy::CompactAndDelete
        )
    }

    /// Sets `retention_ms` (`None` keeps data forever).
    #[must_use]
    pub fn retention_ms(mut self, value: impl Into<Option<Duration>>) -> Self {
        self.retention_ms = value.into();
        self
    }

    /// Sets `retention_bytes` (`None` means no size limit).
    #[must_use]
    pub fn retention_bytes(mut self, value: impl Into<Option<u64>>) -> Self {
        self.retention_bytes = value.into();
        self
    }

    /// Checks every field against its documented bounds.
    pub fn validate(&self) -> Result<()> {
        // First, so that a duration out of range is reported under its own name rather than as
        // breaking a relation with another field.
        for (field, d) in self.durations() {
            if let Some(d) = d {
                duration_to_millis(field, d)?;
            }
        }
        check("partitions", self.partitions as u64, 1, 10_000)?;
        check("segment_bytes", self.segment_bytes, 1024, i32::MAX as u64)?;
        if self.segment_ms.is_zero() {
            return Err(Error::invalid_config("segment_ms", "must be at least 1 ms"));
        }
        check(
            "segment_index_bytes",
            self.segment_index_bytes as u64,
            1024,
            1 << 30,
        )?;
        check(
            "index_interval_bytes",
            self.index_interval_bytes as u64,
            0,
            16 << 20,
        )?;
        check(
            "max_message_bytes",
            self.max_message_bytes as u64,
            128,
            512 << 20,
        )?;
        if let Compression::Zstd { level } = self.compression {
            if !(1..=22).contains(&level) {
                return Err(Error::invalid_config(
                    "compression",
                    format!("zstd level {level} is outside 1..=22"),
                ));
            }
        }
        if self.retention_ms.is_some_and(|d| d.is_zero()) {
            return Err(Error::invalid_config(
                "retention_ms",
                "must be positive (use None to keep data forever)",
            ));
        }
        if self.retention_bytes == Some(0) {
            return Err(Error::invalid_config(
                "retention_bytes",
                "must be positive (use None for no size limit)",
            ));
        }
        self.validate_cleaner()
    }

    /// The retention-for-groups and compaction fields.
    fn validate_cleaner(&self) -> Result<()> {
        let ratio = self.min_cleanable_dirty_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::invalid_config(
                "min_cleanable_dirty_ratio",
                format!("is {ratio}, must be between 0.0 and 1.0"),
            ));
        }
        if let Some(max) = self.max_compaction_lag_ms {
            if max.is_zero() || max < self.min_compaction_lag_ms {
                return Err(Error::invalid_config(
                    "max_compaction_lag_ms",
                    "must be positive and at least min_compaction_lag_ms (use None for no deadline)",
                ));
            }
        }
        if let CompactionStrategy::Header(name) = &self.compaction_strategy {
            if name.is_empty() || name.len() > 1024 {
                return Err(Error::invalid_config(
                    "compaction_strategy",
                    "the version header name must be 1 to 1024 bytes",
                ));
            }
        }
        for (i, g) in self.retain_for_groups.iter().enumerate() {
            if g.is_empty() || g.len() > 255 {
                return Err(Error::invalid_config(
                    "retain_for_groups",
                    format!("group id {g:?} must be 1 to 255 bytes"),
                ));
            }
            if self.retain_for_groups[..i].contains(g) {
                return Err(Error::invalid_config(
                    "retain_for_groups",
                    format!("group id {g:?} is listed twice"),
                ));
            }
        }
        if self.retain_for_groups.len() > 100 {
            return Err(Error::invalid_config(
                "retain_for_groups",
                "lists more than 100 groups",
            ));
        }
        if let Some(max) = self.max_retention_ms {
            if max.is_zero() || self.retention_ms.is_some_and(|r| max < r) {
                return Err(Error::invalid_config(
                    "max_retention_ms",
                    "must be positive and at least retention_ms (use None for no hard cap)",
                ));
            }
        }
        if let Some(max) = self.max_retention_bytes {
            if max == 0 || self.retention_bytes.is_some_and(|r| max < r) {
                return Err(Error::invalid_config(
                    "max_retention_bytes",
                    "must be positive and at least retention_bytes (use None for no hard cap)",
                ));
            }
        }
        Ok(())
    }

    /// Every duration field, by name (`None`: an optional one that is unset).
    fn durations(&self) -> [(&'static str, Option<Duration>); 6] {
        [
            ("segment_ms", Some(self.segment_ms)),
            ("retention_ms", self.retention_ms),
            ("min_compaction_lag_ms", Some(self.min_compaction_lag_ms)),
            ("max_compaction_lag_ms", self.max_compaction_lag_ms),
            ("delete_retention_ms", Some(self.delete_retention_ms)),
            ("max_retention_ms", self.max_retention_ms),
        ]
    }

    /// Largest uncompressed size a batch of this topic may decompress to. Compressed batches
    /// are capped at `max_message_bytes` on disk; this bounds what one of them may expand to
    /// when read, so a corrupt or hostile batch cannot make a reader allocate without limit.
    pub(crate) fn max_uncompressed_bytes(&self) -> usize {
        self.max_message_bytes.saturating_mul(16).max(64 << 20)
    }
}

fn check(field: &'static str, value: u64, min: u64, max: u64) -> Result<()> {
    if value < min || value > max {
        return Err(Error::invalid_config(
            field,
            format!("is {value}, must be between {min} and {max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        TopicConfig::default().validate().unwrap();
    }

    #[test]
    fn boundary_values_are_accepted() {
        let good = [
            TopicConfig::default().min_cleanable_dirty_ratio(0.0),
            TopicConfig::default().min_cleanable_dirty_ratio(1.0),
            TopicConfig::default().delete_retention_ms(Duration::ZERO),
            TopicConfig::default()
                .min_compaction_lag_ms(Duration::from_secs(5))
                .max_compaction_lag_ms(Duration::from_secs(5)),
            TopicConfig::default().compaction_strategy(CompactionStrategy::Header("v".into())),
            TopicConfig::default()
                .retain_for_groups(["a", "b"])
                .max_retention_ms(Duration::from_secs(1)),
        ];
        for cfg in good {
            cfg.validate().unwrap();
        }
    }

    #[test]
    fn out_of_bounds_values_are_rejected_not_clamped() {
        let bad = [
            TopicConfig::default().partitions(0),
            TopicConfig::default().partitions(10_001),
            TopicConfig::default().segment_bytes(10),
            TopicConfig::default().segment_bytes(1 << 31),
            TopicConfig::default().segment_ms(Duration::ZERO),
            TopicConfig::default().segment_index_bytes(8),
            TopicConfig::default().max_message_bytes(1),
            TopicConfig::default().compression(Compression::Zstd { level: 0 }),
            TopicConfig::default().compression(Compression::Zstd { level: 23 }),
            TopicConfig::default().retention_ms(Duration::ZERO),
            TopicConfig::default().retention_bytes(0),
            TopicConfig::default().min_cleanable_dirty_ratio(-0.1),
            TopicConfig::default().min_cleanable_dirty_ratio(1.5),
            TopicConfig::default().min_cleanable_dirty_ratio(f64::NAN),
            TopicConfig::default().max_compaction_lag_ms(Duration::ZERO),
            TopicConfig::default()
                .min_compaction_lag_ms(Duration::from_secs(10))
                .max_compaction_lag_ms(Duration::from_secs(5)),
            TopicConfig::default().compaction_strategy(CompactionStrategy::Header(String::new())),
            TopicConfig::default().retain_for_groups([""]),
            TopicConfig::default().retain_for_groups(["a", "a"]),
            TopicConfig::default().max_retention_ms(Duration::ZERO),
            TopicConfig::default()
                .retention_ms(Duration::from_secs(60))
                .max_retention_ms(Duration::from_secs(59)),
            TopicConfig::default().max_retention_bytes(0),
            TopicConfig::default()
                .retention_bytes(100)
                .max_retention_bytes(99),
        ];
        for cfg in bad {
            let err = cfg.validate().unwrap_err();
            assert!(
                matches!(err, Error::InvalidConfig { .. }),
                "{cfg:?} gave {err}"
            );
        }
    }
}
