//! [`EventStoreConfig`].

use std::sync::Arc;

use siphasher::sip::SipHasher13;

use super::index::StreamHasher;
use crate::error::{Error, Result};
use crate::format::Compression;
use crate::producer::Durability;

/// Configuration of an [`EventStore`](super::EventStore). Every field documents its default
/// and bounds; [`validate`](Self::validate) rejects values out of bounds.
///
/// ```
/// use annals::{Durability, EventStoreConfig};
/// let cfg = EventStoreConfig::default().partitions(4).durability(Durability::Written);
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
// A file names only the fields it changes, and a misspelt one is an error rather than ignored.
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct EventStoreConfig {
    /// Partitions of the events topic, used when the store creates it (an existing topic keeps
    /// its own). Default 1: one partition gives every event of the store one total order, which
    /// [`subscribe_all`](super::EventStore::subscribe_all) then delivers; more partitions
    /// spread appends over more writers, with an order per partition (and so per stream).
    /// 1 to 10,000.
    pub partitions: u32,
    /// When an append returns. Default [`Durability::Synced`]: on stable storage, so an
    /// acknowledged event survives power loss (concurrent appends share fsyncs). `Written`
    /// returns once the operating system has the bytes (survives kill -9, not power loss).
    /// `None` is refused: an event store must know its versions.
    pub durability: Durability,
    /// Codec of the events topic's batches, when the store creates it. Default none.
    pub compression: Compression,
    /// Segment size of the topics the store creates. Default 1 GiB; as `TopicConfig`.
    pub segment_bytes: u64,
    /// Index entries (events) kept in memory per partition before they are written to an
    /// index table on disk. Default 131,072 (about 2-10 MiB per partition, depending on how
    /// many streams they belong to); 16 to 16,777,216. After a crash, at most this many
    /// events per partition are replayed from the log at open.
    pub index_memtable_entries: usize,
    // Code, not data, and never needed for correctness (see `stream_hasher`): a file cannot
    // set it, and a configuration read from one hashes with the default.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) hasher: StreamHasher,
}

impl std::fmt::Debug for EventStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStoreConfig")
            .field("partitions", &self.partitions)
            .field("durability", &self.durability)
            .field("compression", &self.compression)
            .field("segment_bytes", &self.segment_bytes)
            .field("index_memtable_entries", &self.index_memtable_entries)
            .finish_non_exhaustive()
    }
}

impl Default for EventStoreConfig {
    fn default() -> Self {
        EventStoreConfig {
            partitions: 1,
            durability: Durability::Synced,
            compression: Compression::None,
            segment_bytes: 1 << 30,
            index_memtable_entries: 1 << 17,
            hasher: Arc::new(sip_hash),
        }
    }
}

/// The default stream hash: SipHash-1-3 under fixed keys (a specified function, so tables
/// written by one build are read by the next).
fn sip_hash(stream: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = SipHasher13::new_with_keys(0x616e_6e61_6c73_2d65, 0x732d_696e_6465_7831);
    h.write(stream.as_bytes());
    h.finish()
}

impl EventStoreConfig {
    setter!(/// Sets `partitions`.
        partitions: u32);
    setter!(/// Sets `durability`.
        durability: Durability);
    setter!(/// Sets `compression`.
        compression: Compression);
    setter!(/// Sets `segment_bytes`.
        segment_bytes: u64);
    setter!(/// Sets `index_memtable_entries`.
        index_memtable_entries: usize);

    /// Replaces the stream hash of the index (default SipHash-1-3). For tests that force
    /// collisions; the store verifies every stream name it reads, so any function is correct,
    /// a poor one only slower. It must return the same value for a name in every process:
    /// index tables written under another function are detected and rebuilt from the log.
    /// Being code, it is not serialized (feature `serde`): a configuration read back hashes
    /// with the default.
    #[must_use]
    pub fn stream_hasher(mut self, hasher: impl Fn(&str) -> u64 + Send + Sync + 'static) -> Self {
        self.hasher = Arc::new(hasher);
        self
    }

    /// A value that changes when the hasher does, stored in each index table.
    pub(crate) fn fingerprint(&self) -> u64 {
        let a = (self.hasher)("annals event store fingerprint, probe 1");
        let b = (self.hasher)("probe 2");
        a ^ b.rotate_left(17)
    }

    /// Checks every field against its bounds.
    pub fn validate(&self) -> Result<()> {
        if !(1..=10_000).contains(&self.partitions) {
            return Err(Error::invalid_config(
                "partitions",
                format!("{} is outside 1..=10000", self.partitions),
            ));
        }
        if self.durability == Durability::None {
            return Err(Error::invalid_config(
                "durability",
                "Durability::None acknowledges before the version is known; use Written or Synced",
            ));
        }
        if !(16..=1 << 24).contains(&self.index_memtable_entries) {
            return Err(Error::invalid_config(
                "index_memtable_entries",
                format!("{} is outside 16..=16777216", self.index_memtable_entries),
            ));
        }
        crate::config::TopicConfig::default()
            .segment_bytes(self.segment_bytes)
            .compression(self.compression)
            .validate()
    }
}
