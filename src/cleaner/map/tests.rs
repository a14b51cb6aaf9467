//! Keep-sets of the compaction rule for each strategy, tombstones around the delete horizon,
//! and a map too small for the dirty part.

use bytes::Bytes;

use super::*;
use crate::format::Header;

/// (key, value, timestamp, version header) → a stored record at `offset`.
fn rec(
    offset: u64,
    key: Option<&str>,
    value: Option<&str>,
    ts: i64,
    version: Option<i64>,
) -> StoredRecord {
    StoredRecord {
        offset,
        timestamp: ts,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: version
            .map(|v| {
                vec![Header {
                    key: "v".into(),
                    value: Some(Bytes::copy_from_slice(&v.to_be_bytes())),
                }]
            })
            .unwrap_or_default(),
    }
}

/// One pass the way the executor runs it: map over `[first_dirty, ..)` until full, then decide
/// every record in offset order. Returns the kept offsets and where the map ended.
fn pass(
    records: &[StoredRecord],
    strategy: &CompactionStrategy,
    first_dirty: u64,
    memory: usize,
    horizon_passed: impl Fn(u64) -> bool,
) -> (Vec<u64>, u64) {
    let mut map = KeyMap::with_memory(memory);
    let mut map_end = records.last().map_or(0, |r| r.offset + 1);
    for r in records.iter().filter(|r| r.offset >= first_dirty) {
        let Some(k) = &r.key else { continue };
        let e = Entry {
            version: version_of(strategy, r),
            offset: r.offset,
        };
        if !map.offer(map.hash(k), e) {
            map_end = r.offset;
            break;
        }
    }
    let kept = records
        .iter()
        .filter(|r| {
            let key = r.key.as_deref().map(|k| map.hash(k));
            let e = Entry {
                version: version_of(strategy, r),
                offset: r.offset,
            };
            decide(
                &mut map,
                key,
                e,
                r.value.is_none(),
                map_end,
                horizon_passed(r.offset),
            ) == Decision::Keep
        })
        .map(|r| r.offset)
        .collect();
    (kept, map_end)
}

fn never(_: u64) -> bool {
    false
}

#[test]
fn offset_strategy_keeps_the_latest_per_key_and_keyless_records() {
    let rs = vec![
        rec(0, Some("a"), Some("1"), 100, None),
        rec(1, Some("b"), Some("1"), 100, None),
        rec(2, None, Some("x"), 100, None),
        rec(3, Some("a"), Some("2"), 50, None),
        rec(4, Some("c"), Some("1"), 100, None),
        rec(5, Some("b"), Some("2"), 100, None),
    ];
    let (kept, end) = pass(&rs, &CompactionStrategy::Offset, 0, 4096, never);
    assert_eq!(kept, vec![2, 3, 4, 5]);
    assert_eq!(end, 6);
}

#[test]
fn timestamp_strategy_keeps_the_newest_timestamp_ties_to_the_later_offset() {
    let rs = vec![
        rec(0, Some("a"), Some("new"), 300, None),
        rec(1, Some("a"), Some("old"), 100, None),
        rec(2, Some("b"), Some("x"), 200, None),
        rec(3, Some("b"), Some("y"), 200, None),
    ];
    let (kept, _) = pass(&rs, &CompactionStrategy::Timestamp, 0, 4096, never);
    assert_eq!(kept, vec![0, 3]);
}

#[test]
fn header_strategy_uses_the_version_and_treats_missing_as_lowest() {
    let s = CompactionStrategy::Header("v".into());
    let rs = vec![
        rec(0, Some("a"), Some("v7"), 0, Some(7)),
        rec(1, Some("a"), Some("v3"), 0, Some(3)),
        rec(2, Some("a"), Some("none"), 0, None),
        rec(3, Some("b"), Some("none1"), 0, None),
        rec(4, Some("b"), Some("none2"), 0, None),
        rec(5, Some("c"), Some("neg"), 0, Some(-5)),
        rec(6, Some("c"), Some("missing"), 0, None),
    ];
    let (kept, _) = pass(&rs, &s, 0, 4096, never);
    // a: version 7 wins; b: both unversioned, the later offset wins; c: -5 beats "missing".
    assert_eq!(kept, vec![0, 4, 5]);
    // A header that is not 8 bytes counts as missing.
    let mut bad = rec(7, Some("a"), Some("bad"), 0, None);
    bad.headers = vec![Header {
        key: "v".into(),
        value: Some(Bytes::from_static(b"99")),
    }];
    assert_eq!(version_of(&s, &bad), i64::MIN);
}

#[test]
fn a_clean_record_with_a_higher_version_beats_the_dirty_winner() {
    let s = CompactionStrategy::Header("v".into());
    // Offsets 0-1 were compacted before (the clean part); 2-3 are dirty.
    let rs = vec![
        rec(0, Some("a"), Some("v9"), 0, Some(9)),
        rec(1, Some("b"), Some("v1"), 0, Some(1)),
        rec(2, Some("a"), Some("v4"), 0, Some(4)),
        rec(3, Some("b"), Some("v2"), 0, Some(2)),
    ];
    let (kept, _) = pass(&rs, &s, 2, 4096, never);
    assert_eq!(kept, vec![0, 3], "one record per key survives");
}

#[test]
fn tombstones_delete_their_key_and_go_after_the_horizon() {
    let rs = vec![
        rec(0, Some("a"), Some("1"), 0, None),
        rec(1, Some("a"), None, 0, None),
        rec(2, Some("b"), None, 0, None),
        rec(3, Some("b"), Some("back"), 0, None),
    ];
    // Before the horizon: the tombstone stays and hides the older value.
    let (kept, _) = pass(&rs, &CompactionStrategy::Offset, 0, 4096, never);
    assert_eq!(kept, vec![1, 3]);
    // After it: the tombstone goes too; a tombstone that lost to a later value went anyway.
    let (kept, _) = pass(&rs, &CompactionStrategy::Offset, 0, 4096, |_| true);
    assert_eq!(kept, vec![3]);
    // Horizon passed for offset 1 only matters if 1 is the winner.
    let (kept, _) = pass(&rs, &CompactionStrategy::Offset, 0, 4096, |o| o == 2);
    assert_eq!(kept, vec![1, 3]);
}

#[test]
fn a_full_map_ends_the_pass_and_keeps_everything_after_it() {
    let memory = 8 * BYTES_PER_SLOT; // the smallest map: 8 slots, 7 keys
    let map = KeyMap::with_memory(memory);
    assert_eq!(map.capacity(), 7);
    let rs: Vec<StoredRecord> = (0..20)
        .map(|i| rec(i, Some(&format!("k{}", i % 10)), Some("v"), 0, None))
        .collect();
    let (kept, end) = pass(&rs, &CompactionStrategy::Offset, 0, memory, never);
    assert_eq!(end, 7, "the 8th distinct key does not fit");
    // Keys k0..k6 are in the map: their only records below 7 are their winners.
    assert_eq!(
        kept,
        (0..20).collect::<Vec<_>>(),
        "nothing below 7 is superseded within [0, 7)"
    );
    // A second pass from 7 covers k7..k9 and k0..k3 (7 keys), superseding records before it.
    let (kept, end) = pass(&rs, &CompactionStrategy::Offset, 7, memory, never);
    assert_eq!(end, 14);
    assert_eq!(kept, (4..20).collect::<Vec<_>>());
}

#[test]
fn memory_bounds_the_capacity() {
    for bytes in [1024usize, 64 << 10, 1 << 20, 16 << 20] {
        let m = KeyMap::with_memory(bytes);
        let slots = m.capacity() * 8 / 7;
        assert!(
            slots * BYTES_PER_SLOT <= bytes.max(8 * BYTES_PER_SLOT),
            "{bytes}"
        );
        assert!(
            slots * 2 * BYTES_PER_SLOT > bytes,
            "{bytes}: could use more"
        );
    }
}

#[test]
fn hashes_differ_for_different_keys() {
    let m = KeyMap::with_memory(1 << 20);
    let mut seen = std::collections::HashSet::new();
    for i in 0..100_000u32 {
        assert!(seen.insert(m.hash(&i.to_be_bytes())));
    }
    assert_ne!(m.hash(b""), m.hash(b"\0"));
}

/// Each map draws its own SipHash key: the same key hashes alike within a map and (with
/// overwhelming probability) differently across maps, so keys cannot be chosen to collide.
#[test]
fn hashes_are_keyed_per_map() {
    let (a, b) = (KeyMap::with_memory(1 << 10), KeyMap::with_memory(1 << 10));
    assert_eq!(a.hash(b"user-1"), a.hash(b"user-1"));
    assert_ne!(a.hash(b"user-1"), b.hash(b"user-1"));
}
