//! [`ProducerConfig`] and [`Durability`].

use std::sync::Arc;
use std::time::Duration;

use super::partitioner::Partitioner;
use crate::config::check_duration;
use crate::error::{Error, Result};
use crate::format::Compression;

/// When a send is acknowledged (Kafka's `acks`, as an in-process log can promise it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Durability {
    /// Acknowledged when accepted into the producer's buffer (`acks=0`): nothing is promised,
    /// and [`RecordMetadata::offset`](super::RecordMetadata) is not known.
    None,
    /// Acknowledged when the batch is written to the operating system (`acks=1`): survives a
    /// crash of the process (kill -9), not a power loss.
    #[default]
    Written,
    /// Acknowledged when the batch is on stable storage (`acks=all`): survives power loss.
    /// Concurrent batches share fsyncs (group commit).
    Synced,
}

/// Configuration of a [`Producer`](super::Producer). Every field documents its default and
/// bounds; [`validate`](Self::validate) rejects values out of bounds rather than clamping them.
///
/// ```
/// use std::time::Duration;
/// use annals::{Compression, Durability, ProducerConfig};
/// let cfg = ProducerConfig::default()
///     .durability(Durability::Synced)
///     .linger(Duration::from_millis(2))
///     .compression(Compression::Lz4);
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
// A file names only the fields it changes, and a misspelt one is an error rather than ignored.
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct ProducerConfig {
    /// Default [`Durability::Written`].
    pub durability: Durability,
    /// How long a batch waits for more records before it is written (`linger.ms`). A record
    /// sent once and never followed is written within this time without any further call.
    /// Default 5 ms; at most 1 hour. Zero writes each batch as soon as the writer thread can.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub linger: Duration,
    /// Close a batch once its records take this many bytes uncompressed (`batch.size`).
    /// Default 64 KiB; 1 KiB to 64 MiB (and never more than the topic's `max_message_bytes`).
    pub batch_size: usize,
    /// Bound on the bytes of records sent but not yet written (`buffer.memory`). Default
    /// 32 MiB; at least 64 KiB and at least `batch_size`.
    pub buffer_memory: usize,
    /// How long `send` may block waiting for buffer space before failing with
    /// [`Error::BufferFull`] (`max.block.ms`). Default 60 s; at most `i64::MAX` ms. `try_send`
    /// never blocks.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub max_block: Duration,
    /// Codec for this producer's batches; `None` (default) uses each topic's `compression`.
    pub compression: Option<Compression>,
    /// Idempotent writes (`enable.idempotence`): batches carry a producer id, epoch and
    /// sequence, and a retried batch is never written twice. Default true.
    pub idempotence: bool,
    /// A name that survives restarts (like Kafka's `transactional.id`): a producer opened with
    /// it keeps its producer id, gets the next epoch, and fences any older instance. Default none.
    pub stable_id: Option<String>,
    /// Makes the producer transactional (Kafka's `transactional.id`): call
    /// [`init_transactions`](super::Producer::init_transactions) once, then group sends (and
    /// consumer offsets, with `send_offsets_to_transaction`) into transactions that become
    /// visible all together or not at all. The id survives restarts: a new instance's
    /// `init_transactions` fences the old one and ends what it left open. Implies idempotence;
    /// excludes `stable_id` (it does that job). 1 to 32767 bytes. Default none.
    pub transactional_id: Option<String>,
    /// Longest a transaction may stay open (`transaction.timeout.ms`): past it, the log's
    /// maintenance aborts it and fences the producer. Default 60 s; 1 ms to 15 minutes.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub transaction_timeout: Duration,
    /// Times a batch is retried after a retriable I/O error (`retries`). Default 3; at most 1000.
    pub retries: u32,
    /// Pause before each retry (`retry.backoff.ms`). Default 50 ms; at most 1 minute.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_millis"))]
    pub retry_backoff: Duration,
    /// Where records go; default: murmur2 of the key as Kafka, sticky for keyless records.
    ///
    /// With feature `serde`, a custom partitioner is code, not data: a file cannot name one
    /// (a deserialized configuration has the default), and serializing a configuration that
    /// has one is an error rather than a file that would send keys to other partitions.
    #[cfg_attr(
        feature = "serde",
        serde(
            skip_deserializing,
            skip_serializing_if = "Option::is_none",
            serialize_with = "refuse_partitioner"
        )
    )]
    pub partitioner: Option<Arc<dyn Partitioner>>,
}

/// Serializes the `partitioner` of a configuration that has one: refuses (see the field).
#[cfg(feature = "serde")]
fn refuse_partitioner<S: serde::Serializer>(
    partitioner: &Option<Arc<dyn Partitioner>>,
    _: S,
) -> std::result::Result<S::Ok, S::Error> {
    // Only called for `Some` (`skip_serializing_if`); the name is for the message alone.
    let name = partitioner
        .as_ref()
        .map_or(String::new(), |p| format!(" {p:?}"));
    Err(serde::ser::Error::custom(format_args!(
        "the custom partitioner{name} is code and cannot be serialized; serialize the \
         configuration without it and set it again after reading"
    )))
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            durability: Durability::Written,
            linger: Duration::from_millis(5),
            batch_size: 64 << 10,
            buffer_memory: 32 << 20,
            max_block: Duration::from_secs(60),
            compression: None,
            idempotence: true,
            stable_id: None,
            transactional_id: None,
            transaction_timeout: crate::txn::DEFAULT_TRANSACTION_TIMEOUT,
            retries: 3,
            retry_backoff: Duration::from_millis(50),
            partitioner: None,
        }
    }
}

impl ProducerConfig {
    setter!(/// Sets `durability`.
        durability: Durability);
    setter!(/// Sets `linger`.
        linger: Duration);
    setter!(/// Sets `batch_size`.
        batch_size: usize);
    setter!(/// Sets `buffer_memory`.
        buffer_memory: usize);
    setter!(/// Sets `max_block`.
        max_block: Duration);
    setter!(/// Sets `idempotence`.
        idempotence: bool);
    setter!(/// Sets `retries`.
        retries: u32);
    setter!(/// Sets `retry_backoff`.
        retry_backoff: Duration);
    setter!(/// Sets `transaction_timeout`.
        transaction_timeout: Duration);

    /// Sets `transactional_id`.
    #[must_use]
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// Compress this producer's batches with `codec` instead of the topic's codec.
    #[must_use]
    pub fn compression(mut self, codec: Compression) -> Self {
        self.compression = Some(codec);
        self
    }

    /// Sets `stable_id`.
    #[must_use]
    pub fn stable_id(mut self, id: impl Into<String>) -> Self {
        self.stable_id = Some(id.into());
        self
    }

    /// Uses a custom partitioner.
    #[must_use]
    pub fn partitioner(mut self, partitioner: Arc<dyn Partitioner>) -> Self {
        self.partitioner = Some(partitioner);
        self
    }

    /// Checks every field against its documented bounds.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: String| Err(Error::invalid_config(field, reason));
        if self.linger > Duration::from_secs(3600) {
            return bad("linger", format!("{:?} is more than 1 hour", self.linger));
        }
        if !(1024..=64 << 20).contains(&self.batch_size) {
            return bad(
                "batch_size",
                format!("{} is outside 1 KiB..=64 MiB", self.batch_size),
            );
        }
        if self.buffer_memory < (64 << 10) || self.buffer_memory < self.batch_size {
            return bad(
                "buffer_memory",
                format!(
                    "{} must be at least 64 KiB and at least batch_size",
                    self.buffer_memory
                ),
            );
        }
        // Added to an Instant when `send` blocks for buffer space.
        check_duration("max_block", self.max_block)?;
        if self.retries > 1000 {
            return bad("retries", format!("{} is more than 1000", self.retries));
        }
        if self.retry_backoff > Duration::from_secs(60) {
            return bad(
                "retry_backoff",
                format!("{:?} is more than 1 minute", self.retry_backoff),
            );
        }
        if let Some(Compression::Zstd { level }) = self.compression {
            if !(1..=22).contains(&level) {
                return bad(
                    "compression",
                    format!("zstd level {level} is outside 1..=22"),
                );
            }
        }
        if self.stable_id.is_some() && !self.idempotence {
            return bad("stable_id", "needs idempotence".into());
        }
        if let Some(id) = &self.transactional_id {
            if id.is_empty() || id.len() > i16::MAX as usize {
                return bad(
                    "transactional_id",
                    format!("is {} bytes; must be 1 to 32767", id.len()),
                );
            }
            if !self.idempotence {
                return bad("transactional_id", "needs idempotence".into());
            }
            if self.stable_id.is_some() {
                return bad(
                    "transactional_id",
                    "excludes stable_id (a transactional id fences older instances itself)".into(),
                );
            }
        }
        let timeout = self.transaction_timeout;
        if timeout < Duration::from_millis(1) || timeout > crate::txn::MAX_TRANSACTION_TIMEOUT {
            return bad(
                "transaction_timeout",
                format!("{timeout:?} is outside 1 ms..=15 minutes"),
            );
        }
        Ok(())
    }
}
