//! Indexes are caches: whatever happens to the `.index` and `.timeindex` files of sealed or
//! active segments, reads and time lookups after a reopen must equal a brute-force scan.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use annals::storage::{CrashMode, SimStorage};
use annals::{Log, Record, TopicConfig};
use common::*;

const DIR: &str = "/sim/log";
const TOPIC: &str = "t";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shutdown {
    Clean,
    CleanMarkerRemoved,
    Kill,
}

struct Fixture {
    snap: Snapshot,
    model: Vec<ModelRecord>,
    batch_ends: BTreeSet<u64>,
    index_files: Vec<PathBuf>,
}

fn fixture(shutdown: Shutdown, seed: u64) -> Fixture {
    let mut rng = Rng::new(seed);
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .segment_bytes(2048)
            .index_interval_bytes(64)
            .segment_index_bytes(1024),
    )
    .unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let mut model = Vec::new();
    let mut batch_ends = BTreeSet::from([0]);
    let base = 1_700_000_000_000i64;
    for _ in 0..80 {
        let n = rng.usize(1, 5);
        let batch: Vec<Record> = (0..n)
            .map(|_| {
                let ts = random_timestamp(&mut rng, base + model.len() as i64 * 100);
                let len = rng.usize(0, 40);
                Record::new(rng.bytes(len))
                    .key(format!("k{}", rng.below(9)))
                    .timestamp(ts)
            })
            .collect();
        p.append(&batch).unwrap();
        model.extend(model_of(&batch));
        batch_ends.insert(model.len() as u64);
    }
    assert!(
        p.segment_count() >= 3,
        "want several segments, got {}",
        p.segment_count()
    );
    let dir = p.dir().to_path_buf();
    drop(p);
    match shutdown {
        Shutdown::Clean | Shutdown::CleanMarkerRemoved => log.close().unwrap(),
        Shutdown::Kill => {
            sim.crash(CrashMode::ProcessKill);
            std::mem::forget(log);
        }
    }
    let mut snap = snapshot(&sim);
    if shutdown == Shutdown::CleanMarkerRemoved {
        assert!(remove(&mut snap, ".clean-shutdown"));
    }
    let mut index_files = files_with_ext(&snap, &dir, "index");
    index_files.extend(files_with_ext(&snap, &dir, "timeindex"));
    Fixture {
        snap,
        model,
        batch_ends,
        index_files,
    }
}

/// Every offset read one batch at a time, and time lookups, against brute force.
fn check(log: &Log, fx: &Fixture, rng: &mut Rng, ctx: &str) {
    let p = log.partition(TOPIC, 0).unwrap();
    assert_partition_matches(&p, &fx.model, ctx);
    let n = fx.model.len() as u64;
    for o in 0..n {
        let got = p
            .read(o, 1)
            .unwrap_or_else(|e| panic!("{ctx}: read({o}, 1): {e}"));
        let end = *fx.batch_ends.range(o + 1..).next().unwrap();
        assert_eq!(
            got.len() as u64,
            end - o,
            "{ctx}: read({o}, 1) returns the rest of its batch"
        );
        for (i, r) in got.iter().enumerate() {
            assert_record(r, o + i as u64, &fx.model[(o + i as u64) as usize], ctx);
        }
    }
    let mut probes: BTreeSet<i64> = [-1, 0, 1, i64::MAX].into_iter().collect();
    for r in &fx.model {
        probes.extend([r.timestamp - 1, r.timestamp, r.timestamp + 1]);
    }
    for _ in 0..50 {
        probes.insert(rng.range(0, 1_800_000_000_000) as i64);
    }
    for t in probes {
        let want = fx
            .model
            .iter()
            .position(|r| r.timestamp >= t)
            .map(|i| i as u64);
        assert_eq!(
            p.offset_for_timestamp(t)
                .unwrap_or_else(|e| panic!("{ctx}: {e}")),
            want,
            "{ctx}: offset_for_timestamp({t})"
        );
    }
}

fn damages(rng: &mut Rng, original: &[u8], entry: usize) -> Vec<(String, Option<Vec<u8>>)> {
    let len = original.len();
    let mut v: Vec<(String, Option<Vec<u8>>)> = vec![
        ("deleted".into(), None),
        ("emptied".into(), Some(Vec::new())),
        ("cut in half".into(), Some(original[..len / 2].to_vec())),
        ("zeroed".into(), Some(vec![0; len])),
        (
            "random bytes".into(),
            Some((0..len).map(|_| rng.next_u64() as u8).collect()),
        ),
        (
            "random bytes, longer".into(),
            Some((0..len + 100).map(|_| rng.next_u64() as u8).collect()),
        ),
        ("0xff".into(), Some(vec![0xff; len.max(64)])),
    ];
    if len > 0 {
        v.push(("last byte cut".into(), Some(original[..len - 1].to_vec())));
        let mut flipped = original.to_vec();
        flipped[rng.below(len as u64) as usize] ^= 0x04;
        v.push(("one byte flipped".into(), Some(flipped)));
    }
    // Plausible-looking entries (strictly increasing) that point to the wrong places.
    let mut plausible = Vec::new();
    for i in 1..=40u64 {
        if entry == 8 {
            plausible.extend_from_slice(&(i as u32 * 3).to_be_bytes());
            plausible.extend_from_slice(&(i as u32 * 37 + 5).to_be_bytes());
        } else {
            plausible.extend_from_slice(&(1_700_000_000_000i64 + i as i64 * 1000).to_be_bytes());
            plausible.extend_from_slice(&(i as u32 * 2).to_be_bytes());
        }
    }
    v.push(("plausible garbage entries".into(), Some(plausible)));
    v
}

fn run(shutdown: Shutdown) {
    let seed = base_seed();
    let _g = SeedGuard::new(&format!("index damage {shutdown:?}"), seed);
    let mut rng = Rng::new(seed);
    let fx = fixture(shutdown, seed);
    // Baseline: undamaged.
    let sim = restore(&fx.snap);
    check(
        &TestLog::sim(&sim, DIR).open(),
        &fx,
        &mut rng,
        &format!("{shutdown:?} undamaged"),
    );

    // Every index file of the first, a middle and the last segment, each damaged alone.
    let segs = fx.index_files.len() / 2;
    let chosen: BTreeSet<usize> = [0, segs / 2, segs - 1].into_iter().collect();
    let mut targets = Vec::new();
    for &i in &chosen {
        targets.push(fx.index_files[i].clone());
        targets.push(fx.index_files[segs + i].clone());
    }
    for path in &targets {
        let original = get(&fx.snap, path).to_vec();
        let entry = if path.extension().unwrap() == "index" {
            8
        } else {
            12
        };
        for (what, bytes) in damages(&mut rng, &original, entry) {
            let ctx = format!("seed {seed} {shutdown:?}: {} {what}", path.display());
            let mut s = fx.snap.clone();
            match bytes {
                Some(b) => replace(&mut s, path, b),
                None => assert!(remove(&mut s, &path.file_name().unwrap().to_string_lossy())),
            }
            let sim = restore(&s);
            let log = TestLog::sim(&sim, DIR)
                .try_open()
                .unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
            check(&log, &fx, &mut rng, &ctx);
        }
    }

    // All index files damaged at once, then appends, then a clean reopen.
    for what in ["deleted", "random bytes"] {
        let ctx = format!("seed {seed} {shutdown:?}: every index {what}");
        let mut s = fx.snap.clone();
        for path in &fx.index_files {
            if what == "deleted" {
                assert!(remove(&mut s, &path.file_name().unwrap().to_string_lossy()));
            } else {
                let len = get(&s, path).len().max(24);
                replace(
                    &mut s,
                    path,
                    (0..len).map(|_| rng.next_u64() as u8).collect(),
                );
            }
        }
        let sim = restore(&s);
        let log = TestLog::sim(&sim, DIR)
            .try_open()
            .unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
        check(&log, &fx, &mut rng, &ctx);
        let p = log.partition(TOPIC, 0).unwrap();
        let extra = simple_records(fx.model.len() as u64, 40);
        for r in &extra {
            p.append(std::slice::from_ref(r)).unwrap();
        }
        drop(p);
        log.close().unwrap();
        let mut fx2 = Fixture {
            snap: Vec::new(),
            model: fx.model.clone(),
            batch_ends: fx.batch_ends.clone(),
            index_files: Vec::new(),
        };
        fx2.model.extend(model_of(&extra));
        for i in 0..extra.len() as u64 {
            fx2.batch_ends.insert(fx.model.len() as u64 + i + 1);
        }
        let log = TestLog::sim(&sim, DIR).open();
        check(
            &log,
            &fx2,
            &mut rng,
            &format!("{ctx}, appended and reopened"),
        );
    }
}

#[test]
fn damaged_indexes_after_clean_close() {
    run(Shutdown::Clean);
}

#[test]
fn damaged_indexes_after_clean_close_without_marker() {
    run(Shutdown::CleanMarkerRemoved);
}

#[test]
fn damaged_indexes_after_kill() {
    run(Shutdown::Kill);
}

/// Index files damaged on disk while the log is open (behind the mappings' back) are not the
/// log's problem until the next open, which must rebuild them.
#[test]
fn index_files_garbage_while_open_then_reopen() {
    let seed = base_seed();
    let _g = SeedGuard::new("index_files_garbage_while_open_then_reopen", seed);
    let mut rng = Rng::new(seed);
    let fx = fixture(Shutdown::Kill, seed);
    let sim = restore(&fx.snap);
    let log = TestLog::sim(&sim, DIR).open();
    for path in &fx.index_files {
        let len = sim.read_file(path).map(|b| b.len()).unwrap_or(0);
        sim.write_file(path, &vec![0x7f; len]);
    }
    sim.crash(CrashMode::ProcessKill);
    std::mem::forget(log);
    let log = TestLog::sim(&sim, DIR).open();
    check(
        &log,
        &fx,
        &mut rng,
        &format!("seed {seed}: garbage written while open"),
    );
}

/// An index whose checksum was taken over bad entries (here: the active segment's `.index`
/// overwritten behind the log's back before a clean close) is trusted by the next open. Its
/// positions are only hints: a hint that lands on a batch boundary *after* the wanted offset
/// must not make a read skip records.
#[test]
fn trusted_index_with_wrong_positions_does_not_skip_records() {
    // A fixture whose active segment holds at least three batches.
    let (seed, fx, active_log, batches) = (base_seed()..)
        .find_map(|seed| {
            let fx = fixture(Shutdown::Kill, seed);
            let dir = fx.index_files[0].parent().unwrap().to_path_buf();
            let active_log = files_with_ext(&fx.snap, &dir, "log").pop().unwrap();
            let batches = common::batches(get(&fx.snap, &active_log));
            (batches.len() >= 3).then_some((seed, fx, active_log, batches))
        })
        .unwrap();
    let _g = SeedGuard::new("trusted_index_with_wrong_positions", seed);
    let mut rng = Rng::new(seed);
    let sim = restore(&fx.snap);
    let log = TestLog::sim(&sim, DIR).open();
    // Entries "relative offset 0 is in the batch at the last batch's position": strictly
    // increasing, on a batch boundary, and wrong.
    let last = batches.last().unwrap();
    let base = batches[0].base_offset;
    let mut garbage = Vec::new();
    garbage.extend_from_slice(&0u32.to_be_bytes());
    garbage.extend_from_slice(&(last.pos as u32).to_be_bytes());
    garbage.resize(1024, 0);
    let index = active_log.with_extension("index");
    sim.write_file(&index, &garbage);
    log.close().unwrap();
    let log = TestLog::sim(&sim, DIR).open();
    let p = log.partition(TOPIC, 0).unwrap();
    for o in base + 1..p.high_watermark() {
        let got = p.read(o, 1).unwrap();
        assert_eq!(
            got[0].offset, o,
            "seed {seed}: read({o}, 1) with a lying index"
        );
    }
    check(
        &log,
        &fx,
        &mut rng,
        &format!("seed {seed}: lying trusted index"),
    );
}
