//! Damaged base offsets in compacted segments. Below the cleaned boundary offsets may have
//! gaps, so "each batch starts where the previous one ended" cannot prove a base offset (which
//! lies outside the batch CRC) right. The offset index can: compacted segments index every
//! batch, and the checkpoint's CRC of the index vouches for it. The rule checked here: a
//! flipped base-offset byte is reported as `Error::Corrupt` naming the segment and the damaged
//! batch's position, and no record is ever served at an offset it was not written at.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use annals::storage::SimStorage;
use annals::{CleanupPolicy, Error, Log, Record, TopicConfig};
use common::*;

const DIR: &str = "/sim/log";
const TOPIC: &str = "t";

/// What each offset holds: key and value.
type Model = BTreeMap<u64, (Vec<u8>, Vec<u8>)>;

struct Fixture {
    snap: Snapshot,
    model: Model,
    /// A compacted segment (with gaps) and its batches.
    segment: PathBuf,
    batches: Vec<BatchPos>,
}

fn read_everything(log: &Log) -> Result<Model, Error> {
    let p = log.partition(TOPIC, 0)?;
    let mut model = Model::new();
    let mut at = p.log_start_offset();
    loop {
        let got = p.read(at, 300)?;
        let Some(last) = got.last() else {
            return Ok(model);
        };
        at = last.offset + 1;
        for r in got {
            let kv = (
                r.key.as_deref().unwrap_or_default().to_vec(),
                r.value.as_deref().unwrap_or_default().to_vec(),
            );
            model.insert(r.offset, kv);
        }
    }
}

/// A compacted topic: one record per batch, keys drawn at random so compaction leaves
/// irregular gaps; compacted, then closed cleanly.
fn fixture() -> Fixture {
    let sim = SimStorage::new();
    let log = Log::builder(DIR)
        .storage(sim.clone())
        .maintenance_interval(None)
        .open()
        .unwrap();
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(1024)
            // Small index files keep each of the many reopens below cheap.
            .segment_index_bytes(4096)
            .min_cleanable_dirty_ratio(0.0),
    )
    .unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let mut rng = Rng::new(7);
    for i in 0..600u64 {
        let key = format!("k{:03}", rng.below(200));
        p.append(&[Record::new(format!("v{i:04}")).key(key)])
            .unwrap();
    }
    let report = p.compact().unwrap();
    assert!(report.records_removed > 100, "{report:?}");
    let dir = p.dir().to_path_buf();
    drop(p);
    let model = read_everything(&log).unwrap();
    log.close().unwrap();
    let snap = snapshot(&sim);
    // The compacted segment with the most batches, gaps between them.
    let (segment, batches) = files_with_ext(&snap, &dir, "log")
        .into_iter()
        .map(|path| {
            let b = batches(get(&snap, &path));
            (path, b)
        })
        .filter(|(_, b)| {
            b.windows(2)
                .any(|w| w[1].base_offset > w[0].base_offset + 1)
        })
        .max_by_key(|(_, b)| b.len())
        .expect("a compacted segment with gaps");
    assert!(batches.len() >= 5, "{} batches", batches.len());
    Fixture {
        snap,
        model,
        segment,
        batches,
    }
}

/// Batches to damage: the second, two from the middle and the last (every batch after the
/// first is checked the same way; a few keep the test quick).
fn victims(fx: &Fixture) -> Vec<(usize, BatchPos)> {
    let n = fx.batches.len();
    let mut ks = vec![1, n / 2, n / 2 + 1, n - 1];
    ks.dedup();
    ks.into_iter().map(|k| (k, fx.batches[k])).collect()
}

/// Base offset `base` with `mask` XORed into byte `byte` (0 = most significant) of the field.
fn flipped(base: u64, byte: usize, mask: u8) -> u64 {
    base ^ (u64::from(mask) << (8 * (7 - byte)))
}

/// Opens the damaged copy and reads everything. Ok only if damage is reported as `Corrupt` in
/// `segment` at one of `positions`, at open or at read, and every record read before it is
/// the one written at that offset.
fn check(fx: &Fixture, snap: &Snapshot, positions: &[u64], ctx: &str) {
    let segment = &fx.segment;
    let sim = restore(snap);
    let log = match Log::builder(DIR)
        .storage(sim.clone())
        .maintenance_interval(None)
        .open()
    {
        Ok(log) => log,
        Err(Error::Corrupt {
            segment: s,
            position,
            ..
        }) => {
            assert_eq!(&s, segment, "{ctx}");
            assert!(
                positions.contains(&position),
                "{ctx}: at open, position {position}"
            );
            return;
        }
        Err(e) => panic!("{ctx}: open: {e}"),
    };
    let p = log.partition(TOPIC, 0).unwrap();
    let mut at = p.log_start_offset();
    loop {
        let got = match p.read(at, 300) {
            Ok(got) => got,
            Err(Error::Corrupt {
                segment: s,
                position,
                reason,
            }) => {
                assert_eq!(&s, segment, "{ctx}: {reason}");
                assert!(
                    positions.contains(&position),
                    "{ctx}: read({at}) reported position {position}: {reason}"
                );
                return;
            }
            Err(e) => panic!("{ctx}: read({at}): {e}"),
        };
        let Some(last) = got.last() else {
            panic!("{ctx}: the whole partition was read without an error");
        };
        at = last.offset + 1;
        for r in got {
            let want = fx.model.get(&r.offset).cloned();
            let have = (
                r.key.as_deref().unwrap_or_default().to_vec(),
                r.value.as_deref().unwrap_or_default().to_vec(),
            );
            assert_eq!(
                want.as_ref(),
                Some(&have),
                "{ctx}: record at offset {} was not written there",
                r.offset
            );
        }
    }
}

/// Every batch after the first of a compacted segment is pinned by its index entry: any flip
/// of any byte of its base offset is caught, whether the offsets then go backwards, jump past
/// the next batch or stay in order inside the gap.
#[test]
fn any_flipped_base_offset_byte_after_the_first_batch_is_corruption() {
    let fx = fixture();
    let mut inside_gap = 0;
    for (k, b) in victims(&fx) {
        for byte in [7, 6, 5, 0] {
            for mask in [0x01, 0x04, 0x80] {
                let new = flipped(b.base_offset, byte, mask);
                let prev = fx.batches[k - 1];
                let prev_last = prev.base_offset + prev.records - 1;
                let next_base = fx.batches.get(k + 1).map(|n| n.base_offset);
                if new > prev_last && next_base.is_none_or(|n| new + b.records <= n) {
                    inside_gap += 1; // the order alone cannot tell these from the truth
                }
                let mut s = fx.snap.clone();
                let mut bytes = get(&s, &fx.segment).to_vec();
                bytes[b.pos..b.pos + 8].copy_from_slice(&new.to_be_bytes());
                replace(&mut s, &fx.segment, bytes);
                let ctx = format!(
                    "batch {k} at byte {} of {}: base {} -> {new}",
                    b.pos,
                    fx.segment.display(),
                    b.base_offset
                );
                check(&fx, &s, &[b.pos as u64], &ctx);
            }
        }
    }
    assert!(
        inside_gap > 0,
        "some flips must keep the offsets in order (the case the order check misses)"
    );
}

/// The first batch of a compacted segment has no index entry (position 0 is never indexed):
/// it is pinned only between the segment's base offset and the batch after it. Flips that
/// leave that window are caught; one that stays inside it cannot be (see
/// docs/ARCHITECTURE.md, "Offset gaps").
#[test]
fn a_flipped_first_batch_base_offset_leaving_its_window_is_corruption() {
    let fx = fixture();
    let first = fx.batches[0];
    let second = fx.batches[1];
    let segment_base: u64 = fx
        .segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut tried = 0;
    for byte in [0, 3, 5, 6, 7] {
        for mask in [0x01, 0x04, 0x10, 0x80] {
            let new = flipped(first.base_offset, byte, mask);
            if new >= segment_base && new + first.records <= second.base_offset {
                continue; // inside the window: indistinguishable from the truth
            }
            tried += 1;
            let mut s = fx.snap.clone();
            let mut bytes = get(&s, &fx.segment).to_vec();
            bytes[..8].copy_from_slice(&new.to_be_bytes());
            replace(&mut s, &fx.segment, bytes);
            let ctx = format!("first batch: base {} -> {new}", first.base_offset);
            check(&fx, &s, &[0], &ctx);
        }
    }
    assert!(tried > 8, "{tried}");
}

/// Without a checkpoint (a crash before the first one) nothing vouches for the index: it is
/// rebuilt from the damaged `.log`, and only the order of offsets is left to check. A flip
/// that breaks the order is still reported — at the damaged batch or at the one after it,
/// which is where the order breaks — and never served.
#[test]
fn without_a_checkpoint_a_flip_that_breaks_the_order_is_corruption() {
    let fx = fixture();
    let mut tried = 0;
    for (k, b) in victims(&fx) {
        let Some(next) = fx.batches.get(k + 1) else {
            continue;
        };
        let prev = fx.batches[k - 1];
        for byte in [3, 6, 7] {
            for mask in [0x01, 0x10, 0x80] {
                let new = flipped(b.base_offset, byte, mask);
                let in_order = new > prev.base_offset + prev.records - 1
                    && new + b.records <= next.base_offset;
                if in_order {
                    continue;
                }
                tried += 1;
                let mut s = fx.snap.clone();
                let mut bytes = get(&s, &fx.segment).to_vec();
                bytes[b.pos..b.pos + 8].copy_from_slice(&new.to_be_bytes());
                replace(&mut s, &fx.segment, bytes);
                assert!(remove(&mut s, "partition.ckpt"));
                assert!(remove(&mut s, ".clean-shutdown"));
                let ctx = format!("no checkpoint, batch {k}: base {} -> {new}", b.base_offset);
                check(&fx, &s, &[b.pos as u64, next.pos as u64], &ctx);
            }
        }
    }
    assert!(tried > 10, "{tried}");
}
