//! Producer ids and epochs, persisted in `producer-ids.meta`.
//!
//! Every idempotent producer gets a producer id that no other producer of this log ever had.
//! Ids are handed out from blocks of [`BLOCK`]: the end of the current block is persisted before
//! any id in it is used, so ids never repeat across restarts (unused ids of a block are skipped,
//! as in Kafka) and most producers cost no disk write. A producer with a stable id keeps its
//! producer id across restarts and gets the next epoch each time it starts; the previous
//! instance is fenced.
//!
//! The log's own ids start at [`FIRST_LOCAL_PRODUCER_ID`] (2^62): the ids below are left to
//! batches built elsewhere (`Partition::append_batch` keeps a foreign batch's producer id and
//! refuses one in the log's range), so a local producer's first batch can never look like a
//! retry of a foreign one. A file written before the split (its block end below 2^62) moves on
//! to the local range, and its stable ids get a fresh local producer id at their next start.
//!
//! Also here: `producer_id_expiration`'s default and bounds (how long partitions remember an
//! idle producer, `partition/producer_state.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, Result};
pub(crate) use crate::meta::PRODUCER_IDS_FILE;
use crate::meta::{decode_producer_ids, encode_producer_ids, ProducerIdsFile};
use crate::partition::{DEFAULT_EXPIRATION_MS, FIRST_LOCAL_PRODUCER_ID};
use crate::producer::ProducerIdentity;
use crate::storage::{read_whole, write_atomic, Storage};

const BLOCK: i64 = 1000;

/// Default `producer_id_expiration`: one day, as Kafka's `producer.id.expiration.ms`.
pub(super) const DEFAULT_EXPIRATION: Duration = Duration::from_millis(DEFAULT_EXPIRATION_MS as u64);

/// `producer_id_expiration` in milliseconds, validated: at least 1 ms (a producer forgotten at
/// once could never have a retry recognised) and at most `i64::MAX` ms (expiry compares
/// millisecond timestamps as i64), through the same check as every stored duration.
pub(super) fn expiration_millis(d: Duration) -> Result<i64> {
    let ms = crate::config::duration_to_millis("producer_id_expiration", d)?;
    if ms == 0 {
        return Err(Error::invalid_config(
            "producer_id_expiration",
            format!("is {d:?}, must be at least 1 ms"),
        ));
    }
    // duration_to_millis bounds it by i64::MAX, so the conversion is exact.
    Ok(ms as i64)
}

#[derive(Debug)]
pub(crate) struct ProducerIds {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next_id: i64,
    block_end: i64,
    stable: HashMap<String, (i64, Arc<AtomicI16>)>,
}

impl ProducerIds {
    pub(crate) fn load(storage: &dyn Storage, dir: &Path) -> Result<ProducerIds> {
        let path = dir.join(PRODUCER_IDS_FILE);
        let mut state = State {
            next_id: FIRST_LOCAL_PRODUCER_ID,
            block_end: FIRST_LOCAL_PRODUCER_ID,
            stable: HashMap::new(),
        };
        if storage.exists(&path)? {
            let file = decode_producer_ids(&path, &read_whole(storage, &path)?)?;
            // Ids of the block in use when the log last ran may have been handed out. A block
            // end below the local range is from before the split: move into it.
            state.block_end = file.block_end.max(FIRST_LOCAL_PRODUCER_ID);
            state.next_id = state.block_end;
            for (name, id, epoch) in file.stable {
                if id < FIRST_LOCAL_PRODUCER_ID {
                    // From before the split: a foreign batch may carry this id. Its next start
                    // takes a fresh local id (no instance of it is running now).
                    continue;
                }
                state
                    .stable
                    .insert(name, (id, Arc::new(AtomicI16::new(epoch))));
            }
        }
        Ok(ProducerIds {
            path,
            state: Mutex::new(state),
        })
    }

    /// A fresh producer id, or — for a stable id — its producer id with the next epoch.
    pub(crate) fn assign(
        &self,
        storage: &dyn Storage,
        stable_id: Option<&str>,
    ) -> Result<ProducerIdentity> {
        let mut state = self.state.lock();
        if let Some(name) = stable_id {
            if name.is_empty() || name.len() > u16::MAX as usize {
                return Err(Error::invalid_config(
                    "stable_id",
                    "must be 1 to 65535 bytes long",
                ));
            }
            let existing = state
                .stable
                .get(name)
                .map(|(id, e)| (*id, e.load(Ordering::Acquire)));
            let (producer_id, epoch) = match existing {
                // Epochs wrap into a new producer id, as Kafka does at Short.MAX_VALUE.
                Some((id, e)) if e < i16::MAX => (id, e + 1),
                _ => (self.next_id(storage, &mut state)?, 0),
            };
            let shared = match state.stable.get(name) {
                Some((_, e)) => e.clone(),
                None => Arc::new(AtomicI16::new(epoch)),
            };
            let previous = shared.load(Ordering::Acquire);
            shared.store(epoch, Ordering::Release);
            state
                .stable
                .insert(name.to_string(), (producer_id, shared.clone()));
            if let Err(e) = self.persist(storage, &state) {
                // Not durable: do not fence the running instance for an epoch that may vanish.
                shared.store(previous, Ordering::Release);
                return Err(e);
            }
            if existing.is_some() {
                info!(
                    stable_id = %name,
                    producer_id,
                    epoch,
                    "stable producer id taken over: any earlier instance is fenced"
                );
            }
            return Ok(ProducerIdentity::new(producer_id, epoch, Some(shared)));
        }
        Ok(ProducerIdentity::new(
            self.next_id(storage, &mut state)?,
            0,
            None,
        ))
    }

    /// A fresh producer id (for a transactional id's producer: its epochs are the
    /// transaction coordinator's to keep, in `__transaction_state`).
    pub(crate) fn allocate(&self, storage: &dyn Storage) -> Result<i64> {
        let mut state = self.state.lock();
        self.next_id(storage, &mut state)
    }

    fn next_id(&self, storage: &dyn Storage, state: &mut State) -> Result<i64> {
        if state.next_id >= state.block_end {
            let end = state.next_id + BLOCK;
            let old = state.block_end;
            state.block_end = end;
            if let Err(e) = self.persist(storage, state) {
                state.block_end = old;
                return Err(e);
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        Ok(id)
    }

    fn persist(&self, storage: &dyn Storage, state: &State) -> Result<()> {
        let mut stable: Vec<_> = state
            .stable
            .iter()
            .map(|(name, (id, epoch))| (name.clone(), *id, epoch.load(Ordering::Acquire)))
            .collect();
        stable.sort();
        let file = ProducerIdsFile {
            block_end: state.block_end,
            stable,
        };
        Ok(write_atomic(
            storage,
            &self.path,
            &encode_producer_ids(&file),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimStorage;

    #[test]
    fn ids_never_repeat_across_restarts_and_stable_ids_bump_their_epoch() {
        let sim = SimStorage::new();
        let dir = Path::new("/p");
        sim.create_dir_all(dir).unwrap();
        let ids = ProducerIds::load(&*sim, dir).unwrap();
        let a = ids.assign(&*sim, None).unwrap();
        let b = ids.assign(&*sim, None).unwrap();
        assert_ne!(a.get().0, b.get().0);
        let s1 = ids.assign(&*sim, Some("orders-writer")).unwrap();
        assert_eq!(s1.get().1, 0);
        assert_eq!(s1.is_fenced(), None);
        let s2 = ids.assign(&*sim, Some("orders-writer")).unwrap();
        assert_eq!(s2.get(), (s1.get().0, 1));
        assert_eq!(s1.is_fenced(), Some(1));
        assert_eq!(s2.is_fenced(), None);

        let again = ProducerIds::load(&*sim, dir).unwrap();
        let c = again.assign(&*sim, None).unwrap();
        assert!(c.get().0 > s1.get().0.max(b.get().0));
        let s3 = again.assign(&*sim, Some("orders-writer")).unwrap();
        assert_eq!(s3.get(), (s1.get().0, 2));
    }

    #[test]
    fn ids_are_the_local_range_and_an_older_file_moves_into_it() {
        let sim = SimStorage::new();
        let dir = Path::new("/p");
        sim.create_dir_all(dir).unwrap();
        let ids = ProducerIds::load(&*sim, dir).unwrap();
        assert_eq!(
            ids.assign(&*sim, None).unwrap().get().0,
            FIRST_LOCAL_PRODUCER_ID
        );
        // As a log from before the split left it: block end 2000, a stable id on producer 3.
        let old = ProducerIdsFile {
            block_end: 2000,
            stable: vec![("old-writer".into(), 3, 4)],
        };
        let path = dir.join(PRODUCER_IDS_FILE);
        write_atomic(&*sim, &path, &encode_producer_ids(&old)).unwrap();
        let ids = ProducerIds::load(&*sim, dir).unwrap();
        let fresh = ids.assign(&*sim, None).unwrap();
        assert!(fresh.get().0 >= FIRST_LOCAL_PRODUCER_ID);
        let stable = ids.assign(&*sim, Some("old-writer")).unwrap();
        assert!(stable.get().0 >= FIRST_LOCAL_PRODUCER_ID);
        assert_ne!(stable.get().0, fresh.get().0);
        assert_eq!(stable.get().1, 0);
        // And it stays there.
        let again = ProducerIds::load(&*sim, dir).unwrap();
        let next = again.assign(&*sim, Some("old-writer")).unwrap();
        assert_eq!(next.get(), (stable.get().0, 1));
    }

    #[test]
    fn expiration_bounds() {
        assert!(expiration_millis(Duration::ZERO).is_err());
        assert!(expiration_millis(Duration::from_micros(999)).is_err());
        assert_eq!(expiration_millis(Duration::from_millis(1)).unwrap(), 1);
        assert_eq!(
            expiration_millis(DEFAULT_EXPIRATION).unwrap(),
            DEFAULT_EXPIRATION_MS
        );
        let max = Duration::from_millis(i64::MAX as u64);
        assert_eq!(expiration_millis(max).unwrap(), i64::MAX);
        assert!(expiration_millis(max + Duration::from_millis(1)).is_err());
        assert!(expiration_millis(Duration::MAX).is_err());
    }

    #[test]
    fn corrupt_file_is_reported() {
        let sim = SimStorage::new();
        let dir = Path::new("/p");
        sim.create_dir_all(dir).unwrap();
        let ids = ProducerIds::load(&*sim, dir).unwrap();
        ids.assign(&*sim, Some("x")).unwrap();
        let path = dir.join(PRODUCER_IDS_FILE);
        let mut bytes = sim.read_file(&path).unwrap();
        bytes[14] ^= 0xff;
        sim.write_file(&path, &bytes);
        assert!(matches!(
            ProducerIds::load(&*sim, dir),
            Err(Error::CorruptMetadata { .. })
        ));
    }
}
