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
//! field left out keeps its default (a consumer's `group_id`: none, for assign-only use), a misspelt one is an
//! error, and what is read is validated where it is used, as any configuration is (see the
//! example on [`TopicConfig`]). Custom partitioners and stream hashers are code and are not
//! serialized. A report's measured times keep their nanoseconds, in serde's
//! `{"secs", "nanos"}`.
//!
//! ## Feature `tracing`
//!
//! [`tracing`](https://docs.rs/tracing) events and spans, with structured fields
//! (`topic`, `partition`, `path`, `group`, `transactional_id`, ...), for what the log does on
//! its own or a host should hear of. Spans: `open_log`, `recover_partition`, `maintenance`,
//! `retention`, `compaction_pass`, `checkpoint`. Events, by level:
//! - `error`: a partition poisoned by a failed fsync or write (with the operation and path),
//!   a failed close, maintenance that failed (with its step), the maintenance thread's panic;
//! - `warn`: each segment recovery cut or removed (path, bytes, offsets lost, why) and an open
//!   that removed data, a fenced or timed-out producer refused, a transaction an earlier
//!   instance left open, a group member removed for not polling;
//! - `info`: the totals of an open, each retention and compaction pass that changed a
//!   partition, each consumer group rebalance (group, generation, reason, members, partitions
//!   moving) and each member's assignment change, topics created, altered and deleted,
//!   checkpoints written, transactional and stable producer ids taken over, index files
//!   rebuilt and interrupted compaction swaps completed at open;
//! - `debug`: segment rolls, each partition's recovery summary (segments trusted and scanned),
//!   each member's target assignment, each maintenance run's totals.
//!
//! Events never carry record keys, values or headers, and nothing is logged per record or per
//! batch. Their targets are the emitting modules (`annals::partition::recovery`, ...). Without
//! the feature the crate has no `tracing` dependency and the diagnostics compile to nothing.
//!
//! ```
//! # fn main() -> annals::Result<()> {
//! // Any subscriber receives annals' events; this one prints those at INFO and above.
//! tracing_subscriber::fmt()
//!     .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
//!     .init();
//! let dir = tempfile::tempdir().unwrap();
//! // With feature `tracing`: INFO open_log{dir=...}: annals::log::open: log opened topics=0 ...
//! let log = annals::Log::open(dir.path())?;
//! // INFO annals::log::topics: topic created topic="orders" partitions=1 ...
//! log.create_topic("orders", annals::TopicConfig::default())?;
//! # Ok(()) }
//! ```
//!
//! ## Feature `tokio`
//!
//! Async without giving up the synchronous core: [`Consumer::stream`] and
//! [`Consumer::batch_stream`] (a `futures::Stream`, woken by appends, cancel-safe),
//! [`Delivery`] as a future, [`Producer::send_async`] awaiting buffer space, and
//! `sync_async` / `flush_async` / `commit_async` for the calls that fsync.
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
//! ## Platform
//!
//! Unix-like systems only (Linux, macOS, the BSDs): the storage layer uses `pread`/`pwrite`,
//! `fdatasync`, `flock` and `mmap`. Other targets stop at compile time with a message saying so.
//!
//! ## Further reading
//!
//! - [`docs::architecture`]: the layers, the write path with every fsync, the crash story.
//! - [`docs::format`]: every byte annals writes.
//! - [`docs::event_store`]: event sourcing with annals.
//! - [`docs::recipes`]: group loops, seeking from `on_assigned`, an outbox, async, config files.
//! - [`docs::performance`]: the comparison with other stores, and the profiles behind it.

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

// First, so that every module below sees its macros (`debug!`, `info!`, `warn!`, `error!`,
// `enter_span!`).
#[macro_use]
mod trace;

mod catalog;
mod cleaner;
mod clock;
mod config;
mod consumer;
mod error;
mod event_store;
mod fan_out;
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
pub use format::{Header, Payload, Record, StoredRecord};
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
pub use topic_partition::{TopicName, TopicPartition};
pub use txn::{
    TransactionInfo, TransactionState, DEFAULT_TRANSACTION_TIMEOUT, MAX_TRANSACTION_TIMEOUT,
    TRANSACTION_STATE_TOPIC,
};
/// Event ids ([`NewEvent::id`]) are UUIDs; re-exported so callers need no own dependency.
pub use uuid::Uuid;

/// The guides of `docs/`, as pages of these API docs (so they are there on docs.rs too).
// Not under doctest: the guides' code blocks are diagrams and byte layouts, not Rust.
#[cfg(all(doc, not(doctest)))]
pub mod docs {
    #[doc = include_str!("../docs/ARCHITECTURE.md")]
    pub mod architecture {}
    #[doc = include_str!("../docs/FORMAT.md")]
    pub mod format {}
    #[doc = include_str!("../docs/EVENT_STORE.md")]
    pub mod event_store {}
    #[doc = include_str!("../docs/RECIPES.md")]
    pub mod recipes {}
    #[doc = include_str!("../docs/PERFORMANCE.md")]
    pub mod performance {}
}

/// Runs the recipes (which use features `tokio`, `serde` and `metrics`) as doctests so they cannot rot.
#[doc = include_str!("../docs/RECIPES.md")]
#[cfg(all(doctest, feature = "tokio", feature = "serde", feature = "metrics"))]
pub struct RecipesDoctests;

/// Compiles the README's example as a doctest so it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
