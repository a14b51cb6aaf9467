//! The compactor's key map and the rule deciding which records a pass keeps. Pure; no files.
//!
//! The map holds, per key of the dirty part, the winning `(version, offset)`: the highest version
//! (see [`CompactionStrategy`]), ties broken by the higher offset. Keys are stored as 128-bit
//! hashes, like Kafka's `SkimpyOffsetMap` (which keeps 16-byte MD5 digests), so memory per key is
//! fixed whatever the key length and the map can be sized to `cleaner_buffer_bytes` up front.
//! The hash is SipHash-1-3 with 128-bit output (the "SipHash128" variant of Aumasson and
//! Bernstein's spec, with one compression and three finalization rounds, like std's hasher)
//! under a random key drawn per map, so chosen keys cannot be made to collide; two distinct
//! keys share a hash with probability about n²/2¹²⁹ for n keys (below 10⁻²⁰ for a billion).
//! A collision would drop the older of the two keys' records: the price of bounded memory,
//! which Kafka pays too.

use std::collections::hash_map::{Entry as Slot, HashMap};
use std::hash::{BuildHasher, Hasher, RandomState};

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::config::CompactionStrategy;
use crate::format::StoredRecord;

/// Bytes one map slot takes: a 16-byte key hash, a 16-byte entry, and the hash table's control
/// byte.
pub(crate) const BYTES_PER_SLOT: usize = 33;

/// The winner so far for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub version: i64,
    pub offset: u64,
}

impl Entry {
    fn beats(self, other: Entry) -> bool {
        (self.version, self.offset) > (other.version, other.offset)
    }
}

/// Key hash → winning entry, with a capacity fixed at creation.
#[derive(Debug)]
pub(crate) struct KeyMap {
    /// The SipHash key.
    key: (u64, u64),
    map: HashMap<u128, Entry, PassThrough>,
    capacity: usize,
}

impl KeyMap {
    /// A map using at most about `bytes` of memory.
    pub(crate) fn with_memory(bytes: usize) -> KeyMap {
        // The table has a power-of-two number of slots and fills to 7/8 of them before growing,
        // so size it to the largest power of two that fits and never go past 7/8 of it.
        let mut slots = 8usize;
        while slots * 2 * BYTES_PER_SLOT <= bytes {
            slots *= 2;
        }
        let capacity = slots / 8 * 7;
        // Two random words from std's per-process random source.
        let random = || RandomState::new().hash_one(0u64);
        KeyMap {
            key: (random(), random()),
            map: HashMap::with_capacity_and_hasher(capacity, PassThrough),
            capacity,
        }
    }

    /// How many keys fit.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The 128-bit hash of `key`.
    pub(crate) fn hash(&self, key: &[u8]) -> u128 {
        siphash13_128(self.key, key)
    }

    /// Offers a dirty record: it becomes its key's entry if it beats the current one. Returns
    /// `false`, changing nothing, when the key is new and the map is full (the pass ends here).
    pub(crate) fn offer(&mut self, key: u128, candidate: Entry) -> bool {
        let full = self.map.len() >= self.capacity;
        match self.map.entry(key) {
            Slot::Occupied(mut e) => {
                if candidate.beats(*e.get()) {
                    e.insert(candidate);
                }
                true
            }
            Slot::Vacant(_) if full => false,
            Slot::Vacant(e) => {
                e.insert(candidate);
                true
            }
        }
    }

    /// The key's entry, for reading and (when a clean record beats it) replacing.
    fn entry_mut(&mut self, key: u128) -> Option<&mut Entry> {
        self.map.get_mut(&key)
    }
}

/// SipHash-1-3 with 128-bit output (the `siphasher` crate).
fn siphash13_128(key: (u64, u64), msg: &[u8]) -> u128 {
    let mut hasher = SipHasher13::new_with_keys(key.0, key.1);
    hasher.write(msg);
    hasher.finish128().as_u128()
}

/// The version a record carries under `strategy` (the offset breaks ties, so `Offset` needs
/// none).
pub(crate) fn version_of(strategy: &CompactionStrategy, r: &StoredRecord) -> i64 {
    match strategy {
        CompactionStrategy::Offset => 0,
        CompactionStrategy::Timestamp => r.timestamp,
        CompactionStrategy::Header(name) => r
            .headers
            .iter()
            .rev()
            .find(|h| h.key == *name)
            .and_then(|h| h.value.as_deref())
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(i64::from_be_bytes)
            .unwrap_or(i64::MIN),
    }
}

/// What a pass does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Keep,
    /// Another record of the same key wins.
    Superseded,
    /// A winning tombstone past its delete horizon.
    ExpiredTombstone,
}

/// Decides one record's fate. `key` is its key's hash (`None` for a keyless record, which
/// compaction cannot judge and keeps); `map_end` is the end of the offsets this pass's map
/// covers (records at or past it are kept as they are); `horizon_passed` says whether, were it a
/// tombstone, its delete horizon has passed.
///
/// Records are offered in offset order. A record below the dirty part can still beat the dirty
/// winner under a version strategy (an old record with a higher version); it then takes the
/// entry over, so the dirty record it beats is dropped when its turn comes and one record per
/// key survives.
pub(crate) fn decide(
    map: &mut KeyMap,
    key: Option<u128>,
    this: Entry,
    is_tombstone: bool,
    map_end: u64,
    horizon_passed: bool,
) -> Decision {
    let Some(key) = key else {
        return Decision::Keep;
    };
    if this.offset >= map_end {
        return Decision::Keep;
    }
    let wins = match map.entry_mut(key) {
        None => true,
        Some(e) if this.beats(*e) => {
            *e = this;
            true
        }
        Some(e) => *e == this,
    };
    match (wins, is_tombstone && horizon_passed) {
        (false, _) => Decision::Superseded,
        (true, true) => Decision::ExpiredTombstone,
        (true, false) => Decision::Keep,
    }
}

/// A `Hasher` for keys that are already uniformly random hashes.
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough;

#[derive(Debug, Default)]
struct PassThroughHasher(u64);

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

impl Hasher for PassThroughHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used for the map's keys; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests;
