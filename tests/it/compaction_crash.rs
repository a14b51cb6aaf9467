//! Crashes (kill -9 and power loss, dropped or torn) at every step of compaction's swap and of
//! retention's deletion, on `SimStorage`. After each crash the log must open in Strict mode and
//! hold either the old or the new state: every record read is one that was written at that
//! offset, offsets strictly increase, every key still reads back with its latest value, and the
//! interrupted work completes on the next run.
//!
//! Every operation that changes the namespace or makes something durable (open, rename, remove,
//! fsync) is a crash point; of the plain reads and writes, `ANNALS_CRASH_ROUNDS` (default 20)
//! are sampled. Knobs: `ANNALS_CRASH_ROUNDS`, `ANNALS_TEST_SEED`.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use annals::storage::{CrashMode, SimOpKind, SimStorage};
use annals::{CleanupPolicy, Compression, Log, Partition, Record, TopicConfig};
use bytes::Bytes;
use common::*;
use parking_lot::Mutex;

const DIR: &str = "/sim/log";
const T: &str = "t";

/// offset → (key, value) of everything the setup wrote.
type Written = BTreeMap<u64, (Bytes, Option<Bytes>)>;

fn open(sim: &Arc<SimStorage>) -> annals::Result<Log> {
    TestLog::sim(sim, DIR)
        .no_maintenance()
        .cleaner_buffer_bytes(2048) // several passes
        .try_open()
}

/// A compacted topic with several sealed segments of updates and a few tombstones, closed
/// cleanly (so all of it is durable).
fn setup(seed: u64, compression: Compression) -> (Snapshot, Written) {
    let mut rng = Rng::new(seed);
    let sim = SimStorage::new();
    let log = open(&sim).unwrap();
    log.create_topic(
        T,
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::CompactAndDelete)
            .segment_bytes(1500)
            .index_interval_bytes(200)
            .segment_index_bytes(1024)
            .min_cleanable_dirty_ratio(0.0)
            .delete_retention_ms(Duration::from_secs(3600))
            .compression(compression),
    )
    .unwrap();
    let p = log.partition(T, 0).unwrap();
    let mut written = Written::new();
    for _ in 0..60 {
        let batch: Vec<Record> = (0..rng.usize(1, 5))
            .map(|_| {
                let key = format!("k{}", rng.below(25));
                if rng.chance(10) {
                    Record::tombstone(key)
                } else {
                    let n = rng.usize(5, 60);
                    Record::new(rng.bytes(n)).key(key)
                }
            })
            .collect();
        let base = p.append(&batch).unwrap();
        for (i, r) in batch.into_iter().enumerate() {
            written.insert(base + i as u64, (r.key.unwrap(), r.value));
        }
    }
    drop(p);
    log.close().unwrap();
    (snapshot(&sim), written)
}

fn latest(written: &Written, from: u64) -> HashMap<Bytes, u64> {
    written
        .range(from..)
        .map(|(o, (k, _))| (k.clone(), *o))
        .collect()
}

/// Reads everything and checks it against what was written. Returns the records read.
#[track_caller]
fn check(p: &Partition, written: &Written, ctx: &str) -> usize {
    let start = p.log_start_offset();
    let hw = p.high_watermark();
    assert_eq!(hw, written.len() as u64, "{ctx}: high watermark");
    let mut at = start;
    let mut seen: HashMap<Bytes, u64> = HashMap::new();
    let mut count = 0;
    while at < hw {
        let got = p
            .read(at, 500)
            .unwrap_or_else(|e| panic!("{ctx}: read({at}): {e}"));
        let Some(last) = got.last() else { break };
        let next = last.offset + 1;
        for r in got {
            assert!(r.offset >= at, "{ctx}: offset {} below {at}", r.offset);
            let (k, v) = &written[&r.offset];
            assert_eq!(r.key.as_ref(), Some(k), "{ctx}: key at {}", r.offset);
            assert_eq!(&r.value, v, "{ctx}: value at {}", r.offset);
            seen.insert(k.clone(), r.offset);
            at = r.offset + 1;
            count += 1;
        }
        at = at.max(next);
    }
    for (k, o) in latest(written, start) {
        assert_eq!(
            seen.get(&k),
            Some(&o),
            "{ctx}: key {k:?} lost its latest record"
        );
    }
    count
}

/// Runs `work` on a fresh copy of `setup`, crashing the machine at operation `at` (the op fails
/// and so does everything after it), then reopens and checks.
fn crash_at(
    setup: &Snapshot,
    written: &Written,
    at: u64,
    mode: CrashMode,
    work: &dyn Fn(&Log) -> annals::Result<()>,
    ctx: &str,
) {
    let sim = restore(setup);
    let dead = common::crash_at_operation_n(&sim, at, mode);
    if let Ok(log) = open(&sim) {
        let _ = work(&log);
        std::mem::forget(log);
    }
    if !dead.load(Ordering::SeqCst) {
        sim.crash(mode);
    }
    sim.clear_fault_hook();
    let log = open(&sim).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let p = log.partition(T, 0).unwrap();
    let before = check(&p, written, ctx);
    // Whatever was interrupted can be done now, and leaves the same contents.
    work(&log).unwrap_or_else(|e| panic!("{ctx}: rerun failed: {e}"));
    let after = check(&p, written, &format!("{ctx}, rerun"));
    assert!(after <= before, "{ctx}: rerun brought records back");
    drop(p);
    log.close().unwrap();
    let log = open(&sim).unwrap();
    check(
        &log.partition(T, 0).unwrap(),
        written,
        &format!("{ctx}, reopened"),
    );
}

/// The operations of an undisturbed run: (index, kind).
fn operations(setup: &Snapshot, work: &dyn Fn(&Log) -> annals::Result<()>) -> Vec<SimOpKind> {
    let sim = restore(setup);
    let log = open(&sim).unwrap();
    let kinds = Arc::new(Mutex::new(Vec::new()));
    {
        let kinds = kinds.clone();
        sim.set_fault_hook(move |op| {
            kinds.lock().push(op.kind);
            None
        });
    }
    work(&log).unwrap();
    sim.clear_fault_hook();
    drop(log);
    let v = kinds.lock().clone();
    v
}

fn run(name: &str, compression: Compression, work: &dyn Fn(&Log) -> annals::Result<()>) {
    let seed = base_seed();
    let _g = SeedGuard::new(name, seed);
    let mut rng = Rng::new(seed);
    let (setup, written) = setup(seed, compression);
    let kinds = operations(&setup, work);
    // The workload runs after an open, whose operations come first: count them too.
    let sim = restore(&setup);
    let before = sim.op_count();
    let log = open(&sim).unwrap();
    let opened = sim.op_count() - before;
    std::mem::forget(log);
    let sampled = env_usize("ANNALS_CRASH_ROUNDS", 20) as u64;
    let mut points: Vec<u64> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| {
            !matches!(
                k,
                SimOpKind::Read | SimOpKind::Write | SimOpKind::Len | SimOpKind::Exists
            )
        })
        .map(|(i, _)| opened + i as u64)
        .collect();
    for _ in 0..sampled {
        points.push(opened + rng.below(kinds.len() as u64 + 1));
    }
    points.sort_unstable();
    points.dedup();
    assert!(
        points.len() > 20,
        "{name}: too few crash points ({})",
        points.len()
    );
    eprintln!(
        "{name}: {} crash points of {} operations",
        points.len(),
        kinds.len()
    );
    for at in points {
        let mode = match rng.below(3) {
            0 => CrashMode::ProcessKill,
            1 => CrashMode::PowerLossDropUnsynced,
            _ => CrashMode::PowerLossTorn {
                seed: rng.next_u64(),
            },
        };
        let ctx = format!("{name} seed {seed}: {mode:?} at operation {at}");
        crash_at(&setup, &written, at, mode, work, &ctx);
    }
}

fn compact(log: &Log) -> annals::Result<()> {
    log.run_maintenance().map(drop)
}

#[test]
fn crash_at_every_step_of_compaction() {
    run("compaction", Compression::None, &compact);
}

#[test]
fn crash_at_every_step_of_compaction_lz4() {
    run("compaction lz4", Compression::Lz4, &compact);
}

#[test]
fn crash_at_every_step_of_retention() {
    run("retention", Compression::None, &|log: &Log| {
        let p = log.partition(T, 0)?;
        let hw = p.high_watermark();
        p.delete_records(hw / 3)?;
        log.alter_topic(T, log.topic_config(T)?.retention_bytes(p.size_bytes() / 2))?;
        log.run_maintenance()?;
        Ok(())
    });
}

/// An I/O error (not a crash) at each durable step of a compaction: the process goes on. Reads
/// through the same `Log` stay correct; a failure after the swap's commit point poisons the
/// partition (writes and further maintenance are refused, rather than acting on a stale
/// segment list); closing and reopening completes or rolls back the swap.
#[test]
fn io_error_at_every_step_of_compaction() {
    let seed = base_seed();
    let _g = SeedGuard::new("io_error_at_every_step_of_compaction", seed);
    let (setup, written) = setup(seed, Compression::None);
    let kinds = operations(&setup, &compact);
    let sim = restore(&setup);
    let before = sim.op_count();
    std::mem::forget(open(&sim).unwrap());
    let opened = sim.op_count() - before;
    let mut poisoned_runs = 0;
    for (i, kind) in kinds.iter().enumerate() {
        if matches!(
            kind,
            SimOpKind::Read | SimOpKind::Write | SimOpKind::Len | SimOpKind::Exists
        ) {
            continue;
        }
        let at = opened + i as u64;
        let ctx = format!("seed {seed}: {kind:?} fails at operation {at}");
        let sim = restore(&setup);
        let count = std::sync::atomic::AtomicU64::new(0);
        sim.set_fault_hook(move |_| {
            (count.fetch_add(1, Ordering::SeqCst) == at)
                .then(|| std::io::Error::other("injected I/O error"))
        });
        let log = open(&sim).unwrap();
        let failed = compact(&log).is_err();
        sim.clear_fault_hook();
        let p = log.partition(T, 0).unwrap();
        check(&p, &written, &format!("{ctx}, same process"));
        let poisoned = matches!(
            p.append(&[Record::new("x").key("late")]),
            Err(annals::Error::Poisoned { .. })
        );
        if poisoned {
            assert!(failed, "{ctx}: poisoned by a run that succeeded");
            assert!(
                matches!(compact(&log), Err(annals::Error::Poisoned { .. })),
                "{ctx}: a poisoned partition must refuse further maintenance"
            );
            poisoned_runs += 1;
        }
        drop(p);
        let _ = log.close(); // reports Poisoned, and then writes no clean-shutdown marker
        let log = open(&sim).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
        let p = log.partition(T, 0).unwrap();
        let mut written = written.clone();
        if !poisoned {
            written.insert(
                written.len() as u64,
                (Bytes::from("late"), Some(Bytes::from("x"))),
            );
        }
        check(&p, &written, &format!("{ctx}, reopened"));
        compact(&log).unwrap_or_else(|e| panic!("{ctx}: rerun failed: {e}"));
        check(&p, &written, &format!("{ctx}, rerun"));
        drop(p);
        log.close().unwrap();
    }
    assert!(
        poisoned_runs > 0,
        "no failure landed after a swap's commit point"
    );
}
