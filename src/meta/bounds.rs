//! `partition.bounds`: the durable home of a partition's log start offset and of compaction's
//! progress (format in `docs/FORMAT.md`).

use std::path::Path;

use super::{corrupt, open_envelope, seal_envelope, Reader, Writer};
use crate::error::Result;
use crate::storage::{read_whole, write_atomic, Storage};

pub(crate) const BOUNDS_FILE: &str = "partition.bounds";
pub(crate) const BOUNDS_MAGIC: [u8; 4] = *b"ANPB";
/// At most this many compaction passes are remembered for tombstone horizons; older ones are
/// merged (conservatively: the merged pass takes the later time, so tombstones live longer).
pub(crate) const MAX_PASSES: usize = 64;

/// Where a partition's data begins and how far compaction has reached: the durable state that
/// retention and compaction move, kept apart from `partition.ckpt` so that losing the
/// checkpoint (a cache of what scanning finds) can never bring deleted records back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// No record below this offset may be read (retention and `delete_records` move it).
    pub log_start_offset: u64,
    /// Everything below this offset has been compacted at least once (Kafka's "first dirty
    /// offset"); segments starting below it may hold offset gaps.
    pub cleaned_end: u64,
    /// Compaction passes, ascending: `(end, at_ms)` says the records below `end` (and at or
    /// above the previous pass's end) were first compacted at `at_ms`. A tombstone may be
    /// dropped once `delete_retention_ms` has passed since then (Kafka's delete horizon).
    pub passes: Vec<(u64, i64)>,
}

impl Bounds {
    /// When the record at `offset` was first compacted, if it has been.
    pub(crate) fn first_cleaned_at(&self, offset: u64) -> Option<i64> {
        let i = self.passes.partition_point(|&(end, _)| end <= offset);
        self.passes.get(i).map(|&(_, at)| at)
    }

    /// Records a pass that compacted everything below `end` at `at_ms`.
    pub(crate) fn add_pass(&mut self, end: u64, at_ms: i64) {
        if self.passes.last().is_some_and(|&(e, _)| e >= end) {
            return;
        }
        self.passes.push((end, at_ms));
        while self.passes.len() > MAX_PASSES {
            // Merge the two oldest: the later end with the later time.
            let (_, first_at) = self.passes.remove(0);
            if let Some(next) = self.passes.first_mut() {
                next.1 = next.1.max(first_at);
            }
        }
        self.cleaned_end = self.cleaned_end.max(end);
    }

    /// Forgets passes wholly below the log start (their records are gone).
    pub(crate) fn trim_below(&mut self, log_start: u64) {
        let i = self.passes.partition_point(|&(end, _)| end <= log_start);
        self.passes.drain(..i);
    }
}

pub(crate) fn encode_bounds(b: &Bounds) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(b.log_start_offset);
    w.u64(b.cleaned_end);
    w.u32(b.passes.len() as u32);
    for &(end, at) in &b.passes {
        w.u64(end);
        w.i64(at);
    }
    seal_envelope(BOUNDS_MAGIC, &w.0)
}

pub(crate) fn decode_bounds(file: &Path, bytes: &[u8]) -> Result<Bounds> {
    let parse = || -> std::result::Result<Bounds, String> {
        let payload = open_envelope(BOUNDS_MAGIC, bytes)?;
        let mut r = Reader::new(payload);
        let log_start_offset = r.u64()?;
        let cleaned_end = r.u64()?;
        let n = r.u32()? as usize;
        if n > payload.len() / 16 {
            return Err(format!("claims {n} passes in {} bytes", payload.len()));
        }
        let mut passes = Vec::with_capacity(n);
        for _ in 0..n {
            passes.push((r.u64()?, r.i64()?));
        }
        if !r.is_empty() {
            return Err("trailing bytes".into());
        }
        if passes.windows(2).any(|w| matches!(w, [a, b] if a.0 >= b.0)) {
            return Err("compaction passes are not in offset order".into());
        }
        Ok(Bounds {
            log_start_offset,
            cleaned_end,
            passes,
        })
    };
    parse().map_err(|e| corrupt(file, e))
}

pub(crate) fn load_bounds(storage: &dyn Storage, dir: &Path) -> Result<Option<Bounds>> {
    let path = dir.join(BOUNDS_FILE);
    if !storage.exists(&path)? {
        return Ok(None);
    }
    decode_bounds(&path, &read_whole(storage, &path)?).map(Some)
}

/// Replaces `partition.bounds` atomically (temp file, fsync, rename, fsync directory).
pub(crate) fn store_bounds(storage: &dyn Storage, dir: &Path, b: &Bounds) -> Result<()> {
    Ok(write_atomic(
        storage,
        &dir.join(BOUNDS_FILE),
        &encode_bounds(b),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_round_trip_and_damage() {
        let mut b = Bounds {
            log_start_offset: 10,
            ..Bounds::default()
        };
        b.add_pass(100, 1_000);
        b.add_pass(250, 2_000);
        assert_eq!(b.cleaned_end, 250);
        assert_eq!(b.first_cleaned_at(10), Some(1_000));
        assert_eq!(b.first_cleaned_at(99), Some(1_000));
        assert_eq!(b.first_cleaned_at(100), Some(2_000));
        assert_eq!(b.first_cleaned_at(250), None);
        let bytes = encode_bounds(&b);
        assert_eq!(decode_bounds(Path::new("b"), &bytes).unwrap(), b);
        for i in 0..bytes.len() {
            let mut d = bytes.clone();
            d[i] ^= 1;
            assert!(decode_bounds(Path::new("b"), &d).is_err(), "flip at {i}");
        }
        b.trim_below(100);
        assert_eq!(b.passes, vec![(250, 2_000)]);
    }

    #[test]
    fn bounds_passes_stay_bounded_and_merge_conservatively() {
        let mut b = Bounds::default();
        for i in 1..=(MAX_PASSES as u64 + 10) {
            b.add_pass(i * 10, 1_000 + i as i64);
        }
        assert_eq!(b.passes.len(), MAX_PASSES);
        // Offset 0 was first cleaned at 1001, but after merging the answer may only be later.
        assert!(b.first_cleaned_at(0).unwrap() >= 1_001);
        assert_eq!(
            b.first_cleaned_at(b.cleaned_end - 1),
            Some(1_000 + MAX_PASSES as i64 + 10)
        );
    }
}
