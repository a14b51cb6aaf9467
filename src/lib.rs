//! # annals
//!
//! An embeddable, in-process commit log: Apache Kafka's storage model — topics, partitions,
//! offsets and byte-compatible RecordBatch v2 segments — as a library your service links and
//! drives itself. No broker, no network.
//!
//! ```
//! # fn main() -> annals::Result<()> {
//! use annals::{Log, Record, TopicConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path())?;
//! log.create_topic("orders", TopicConfig::default().partitions(3))?;
//!
//! let p = log.partition("orders", 0)?;
//! let base = p.append(&[
//!     Record::new("created").key("order-1").header("trace", "abc"),
//!     Record::new("paid").key("order-1"),
//! ])?;
//! p.sync()?; // durable against power loss
//!
//! for r in p.read(base, 1 << 20)? {
//!     println!("{} {:?}", r.offset, r.value);
//! }
//! # Ok(()) }
//! ```
//!
//! ## Feature `serde`
//!
//! Typed events (`DomainEvent`) stored as JSON, and `Serialize`/`Deserialize` for the
//! configurations — [`TopicConfig`], [`ProducerConfig`], [`ConsumerConfig`],
//! [`EventStoreConfig`] and their enums — and for the reports and descriptions
//! ([`MaintenanceReport`], [`CheckpointReport`], [`RecoveryReport`], [`VerifyReport`],
//! [`PartitionDescription`], [`GroupDescription`], [`PartitionLag`], …). A configuration names
//! its fields and variants as the Rust API does, and its durations in whole milliseconds; a
//! field left out keeps its default (a consumer's `group_id` has none), a misspelt one is an
//! error, and what is read is validated where it is used, as any configuration is (see the
//! example on [`TopicConfig`]). Custom partitioners and stream hashers are code and are not
//! serialized. A report's measured times keep their nanoseconds, in serde's
//! `{"secs", "nanos"}`.
//!
//! ## Metrics
//!
//! [`Log::metrics`] returns a [`Metrics`] snapshot: per topic and partition the records, bytes
//! and batches appended and read, compression, retention and compaction; fsyncs with a latency
//! histogram; open files and mapped bytes; producers' buffers and outcomes; every consumer
//! group's lag. The counters cost the hot paths a few relaxed atomic adds. With feature
//! `metrics`, `Metrics::publish` hands a snapshot to the
//! [`metrics`](https://docs.rs/metrics) facade as counters and gauges.
//!
//! See `docs/ARCHITECTURE.md` for the layers, the write path and the crash story, and
//! `docs/FORMAT.md` for every byte annals writes.

// `unsafe` is allowed only where a module says why it needs it (the mmap contract in `storage`
// and its one caller in `segment::index`); each block carries its `// SAFETY:` argument.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]
// A builder setter takes `self` and returns the changed copy: dropping it is always a bug.
#![warn(clippy::return_self_not_must_use)]

// The storage layer is built on Unix file APIs (`pread`/`pwrite`, `fdatasync`, `flock`,
// `fallocate`, `mmap`): say so instead of failing on a missing import.
#[cfg(not(unix))]
compile_error!(
    "annals builds only on Unix-like systems (Linux, macOS, the BSDs): its storage layer uses \
     Unix file APIs (pread/pwrite, fdatasync, flock, mmap)"
);

/// `pub fn field(mut self, value: T) -> Self` for the typed configuration builders.
macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    };
}

mod catalog;
mod cleaner;
mod clock;
mod config;
mod consumer;
mod error;
mod event_store;
pub mod format;
mod group;
mod log;
mod meta;
mod metrics;
#[cfg(feature = "tokio")]
mod offload;
mod offsets;
mod partition;
mod producer;
mod read_only;
mod segment;
#[cfg(feature = "serde")]
mod serde_millis;
pub mod storage;
mod topic_partition;
mod txn;
mod wait;

/// The byte buffer records are made of, re-exported so callers need no `bytes` dependency of
/// their own.
pub use bytes::Bytes;
pub use cleaner::{CompactionReport, MaintenanceReport, PartitionReport, RetentionReport};
pub use config::{CleanupPolicy, CompactionStrategy, TopicConfig};
pub use consumer::{
    AutoOffsetReset, ConsumedBatch, ConsumedRecord, Consumer, ConsumerConfig, IsolationLevel,
    PartitionLag, RebalanceListener,
};
#[cfg(feature = "tokio")]
pub use consumer::{BatchStream, RecordStream};
pub use error::{Error, Result};
#[cfg(feature = "serde")]
pub use event_store::DomainEvent;
pub use event_store::{
    AppendResult, Checkpoint, EventPosition, EventStore, EventStoreConfig, ExpectedVersion, Loaded,
    NewEvent, Position, RecordedEvent, Snapshot, StreamAppend, StreamPosition, StreamSubscription,
    Subscription, MAX_STREAM_NAME_LEN,
};
pub use format::{Compression, TimestampType};
pub use format::{Header, Record, StoredRecord};
pub use group::{
    Assignor, ConsumerGroupMetadata, GroupDescription, MemberDescription, MAX_GROUP_ID_LEN,
};
pub use log::backup::CheckpointReport;
pub use log::{Log, LogBuilder};
pub use metrics::{
    CompactionCounts, CompressionCounts, FileMetrics, FsyncMetrics, GroupMetrics, Histogram,
    HistogramBucket, MaintenanceMetrics, Metrics, PartitionCounts, PartitionMetrics,
    ProducerCounts, ProducerMetrics, RetentionCounts, TopicMetrics,
};
pub use offsets::{OffsetAndMetadata, MAX_METADATA_BYTES, OFFSETS_TOPIC};
pub use partition::{
    validate_topic_name, Partition, Records, RecoveryAction, RecoveryEvent, RecoveryMode,
    RecoveryReport, MAX_TOPIC_NAME_LEN,
};
#[cfg(feature = "tokio")]
pub use producer::DeliveryFuture;
pub use producer::{
    murmur2, partition_for_key, Delivery, Durability, Partitioner, Producer, ProducerConfig,
    RecordMetadata,
};
pub use read_only::{
    verify_segment, CommittedOffset, Finding, PartitionDescription, PartitionReader, ReadOnlyLog,
    SegmentDescription, TailDamage, VerifyReport,
};
pub use topic_partition::TopicPartition;
pub use txn::{
    TransactionInfo, TransactionState, DEFAULT_TRANSACTION_TIMEOUT, MAX_TRANSACTION_TIMEOUT,
    TRANSACTION_STATE_TOPIC,
};
/// Event ids ([`NewEvent::id`]) are UUIDs; re-exported so callers need no own dependency.
pub use uuid::Uuid;

/// Compiles the README's example as a doctest so it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
