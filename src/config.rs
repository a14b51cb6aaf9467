//! Per-topic configuration, named after the Kafka settings it mirrors.
//!
//! Every field documents its default and bounds; [`TopicConfig::validate`] rejects values out of
//! bounds with [`Error::InvalidConfig`] instead of clamping them.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{Compression, TimestampType};

/// What the log does with old data (Kafka's `cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Delete whole old segments past `retention_ms` / `retention_bytes`.
    #[default]
    Delete,
    /// Keep the latest record per key (compaction).
    Compact,
    /// Both.
    CompactAndDelete,
}

/// Configuration of one topic.
///
/// ```
/// use annals::{Compression, TopicConfig};
/// let cfg = TopicConfig::default()
///     .partitions(3)
///     .segment_bytes(64 << 20)
///     .compression(Compression::Lz4);
/// assert_eq!(cfg.partitions, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicConfig {
    /// Number of partitions. Default 1; 1 to 10,000. Fixed at creation.
    pub partitions: u32,
    /// Roll to a new segment once the active one would exceed this many bytes
    /// (`segment.bytes`). Default 1 GiB; 1 KiB to 2 GiB - 1 (index positions are 32-bit).
    pub segment_bytes: u64,
    /// Roll when a batch's timestamp is this much newer than the segment's first batch
    /// (`segment.ms`). Default 7 days; at least 1 ms.
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
    pub retention_ms: Option<Duration>,
    /// Delete old segments while a partition is larger than this (`retention.bytes`).
    /// Default `None`: no size limit.
    pub retention_bytes: Option<u64>,
}

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

    /// Sets `retention_ms` (`None` keeps data forever).
    pub fn retention_ms(mut self, value: impl Into<Option<Duration>>) -> Self {
        self.retention_ms = value.into();
        self
    }

    /// Sets `retention_bytes` (`None` means no size limit).
    pub fn retention_bytes(mut self, value: impl Into<Option<u64>>) -> Self {
        self.retention_bytes = value.into();
        self
    }

    /// Checks every field against its documented bounds.
    pub fn validate(&self) -> Result<()> {
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
        Ok(())
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
