//! Crash tests on `SimStorage`: power loss (dropped or torn unsynced writes) at random points
//! and at every storage operation of a workload, failing fsyncs, and a full disk.
//!
//! Invariants after every crash: the log opens (in the default Strict mode), everything below
//! the high watermark of the last successful `sync()` is there and identical, everything
//! present is a prefix of what was appended (whole batches, no gaps, no garbage), and the log
//! takes appends again.
//!
//! Knobs: `ANNALS_TEST_CASES` (rounds, default 100), `ANNALS_CRASH_POINTS` (crash points per
//! workload, default 150), `ANNALS_TEST_SEED`.

use crate::common;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use annals::storage::{CrashMode, SimOpKind, SimStorage};
use annals::{Compression, Error, Log, Partition, Record, TopicConfig};
use common::*;

const DIR: &str = "/sim/log";
const TOPIC: &str = "t";

/// What was appended, and what `sync()` acknowledged.
#[derive(Default, Clone)]
struct Model {
    records: Vec<ModelRecord>,
    batch_ends: BTreeSet<u64>,
    synced: u64,
}

impl Model {
    fn new() -> Model {
        Model {
            batch_ends: BTreeSet::from([0]),
            ..Model::default()
        }
    }

    fn push_batch(&mut self, batch: &[Record]) {
        self.records.extend(model_of(batch));
        self.batch_ends.insert(self.records.len() as u64);
    }

    /// After recovery: a whole-batch prefix of what was appended, covering every synced record.
    #[track_caller]
    fn check_recovered(&self, p: &Partition, ctx: &str) {
        let hw = p.high_watermark();
        assert!(
            hw >= self.synced,
            "{ctx}: lost synced data: hw {hw} < synced {}",
            self.synced
        );
        assert!(
            hw <= self.records.len() as u64,
            "{ctx}: hw {hw} beyond the {} records appended",
            self.records.len()
        );
        assert!(
            self.batch_ends.contains(&hw),
            "{ctx}: hw {hw} is inside a batch"
        );
        assert_partition_matches(p, &self.records[..hw as usize], ctx);
    }

    /// Forgets what did not survive.
    fn truncate(&mut self, hw: u64) {
        self.records.truncate(hw as usize);
        self.batch_ends.retain(|&e| e <= hw);
        self.synced = self.synced.min(hw);
    }
}

fn random_batch(rng: &mut Rng, next_offset: u64) -> Vec<Record> {
    let n = rng.usize(1, 12);
    (0..n)
        .map(|i| {
            let len = if rng.chance(5) {
                rng.usize(500, 2500)
            } else {
                rng.usize(0, 80)
            };
            let mut r = Record::new(rng.bytes(len))
                .timestamp(1_700_000_000_000 + (next_offset + i as u64) as i64);
            if rng.chance(60) {
                r = r.key(format!("key-{}", rng.below(20)));
            }
            if rng.chance(20) {
                r = r.header("trace", rng.bytes(8));
            }
            r
        })
        .collect()
}

fn random_config(rng: &mut Rng) -> TopicConfig {
    TopicConfig::default()
        .segment_bytes(rng.range(1024, 4096))
        .index_interval_bytes(rng.usize(0, 300))
        .segment_index_bytes(1024)
        .compression(*rng.pick(&[
            Compression::None,
            Compression::Lz4,
            Compression::Zstd { level: 1 },
        ]))
}

fn crash_mode(rng: &mut Rng) -> CrashMode {
    if rng.chance(60) {
        CrashMode::PowerLossTorn {
            seed: rng.next_u64(),
        }
    } else {
        CrashMode::PowerLossDropUnsynced
    }
}

/// Crashes the simulated machine and "restarts the process": the old `Log` is never dropped.
fn crash(sim: &SimStorage, log: Log, mode: CrashMode) {
    sim.crash(mode);
    std::mem::forget(log);
}

fn reopen(sim: &Arc<SimStorage>, ctx: &str) -> (Log, Partition) {
    let log = TestLog::sim(sim, DIR)
        .try_open()
        .unwrap_or_else(|e| panic!("{ctx}: reopen after crash failed: {e}"));
    let p = log
        .partition(TOPIC, 0)
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    (log, p)
}

/// After recovery the log takes appends, and they survive a power loss once synced.
fn append_after_recovery(
    sim: &Arc<SimStorage>,
    log: Log,
    p: Partition,
    model: &mut Model,
    ctx: &str,
) {
    model.truncate(p.high_watermark());
    let batch = random_batch(
        &mut Rng::new(model.records.len() as u64),
        model.records.len() as u64,
    );
    let base = p
        .append(&batch)
        .unwrap_or_else(|e| panic!("{ctx}: append after recovery: {e}"));
    assert_eq!(base, model.records.len() as u64, "{ctx}");
    model.push_batch(&batch);
    p.sync()
        .unwrap_or_else(|e| panic!("{ctx}: sync after recovery: {e}"));
    model.synced = p.high_watermark();
    drop(p);
    crash(sim, log, CrashMode::PowerLossTorn { seed: 99 });
    let (_log, p) = reopen(sim, &format!("{ctx}, second crash"));
    model.check_recovered(&p, &format!("{ctx}, second crash"));
    assert_eq!(
        p.high_watermark(),
        model.records.len() as u64,
        "{ctx}: synced append lost"
    );
}

/// Returns whether the crash lost unsynced records.
fn power_loss_round(seed: u64) -> bool {
    let _g = SeedGuard::new("power_loss_round", seed);
    let mut rng = Rng::new(seed);
    let sim = SimStorage::new();
    let mut log = TestLog::sim(&sim, DIR).open();
    log.create_topic(TOPIC, random_config(&mut rng)).unwrap();
    let mut p = log.partition(TOPIC, 0).unwrap();
    let mut model = Model::new();
    let steps = rng.usize(1, 60);
    let mut crashed_after_roll = false;
    for _ in 0..steps {
        let segments = p.segment_count();
        let batch = random_batch(&mut rng, model.records.len() as u64);
        p.append(&batch).unwrap();
        model.push_batch(&batch);
        if rng.chance(25) {
            p.sync().unwrap();
            model.synced = p.high_watermark();
        }
        if rng.chance(4) {
            // A clean close makes everything durable.
            drop(p);
            log.close().unwrap();
            model.synced = model.records.len() as u64;
            log = TestLog::sim(&sim, DIR).open();
            p = log.partition(TOPIC, 0).unwrap();
        }
        if p.segment_count() > segments && rng.chance(30) {
            crashed_after_roll = true;
            break; // crash right after a roll
        }
    }
    let mode = crash_mode(&mut rng);
    let ctx = format!("seed {seed}: {mode:?} after {} records (synced {}), right after a roll: {crashed_after_roll}",
        model.records.len(), model.synced);
    drop(p);
    crash(&sim, log, mode);
    let (log, p) = reopen(&sim, &ctx);
    model.check_recovered(&p, &ctx);
    let lost = p.high_watermark() < model.records.len() as u64;
    append_after_recovery(&sim, log, p, &mut model, &ctx);
    lost
}

#[test]
fn power_loss_at_random_points() {
    let base = base_seed();
    let rounds = cases(100);
    let mut lost_unsynced = 0;
    for i in 0..rounds as u64 {
        lost_unsynced += power_loss_round(base.wrapping_add(i)) as usize;
    }
    // The rounds must actually exercise losing data, or they prove nothing.
    if rounds >= 50 {
        assert!(lost_unsynced > 0, "no round lost any unsynced record");
    }
    eprintln!("{lost_unsynced} of {rounds} rounds lost unsynced records");
}

/// The workload of [`crash_at_operation`]: appends, syncs, rolls and one clean close/reopen.
/// Stops at the first error (the machine is dead by then). Returns the log if it is still alive.
fn workload(sim: &Arc<SimStorage>, seed: u64, model: &mut Model) -> Option<Log> {
    let mut rng = Rng::new(seed);
    let mut log = TestLog::sim(sim, DIR).try_open().ok()?;
    let mut p = log.partition(TOPIC, 0).ok()?;
    for step in 0..25 {
        let batch = random_batch(&mut rng, model.records.len() as u64);
        match p.append(&batch) {
            Ok(_) => model.push_batch(&batch),
            Err(_) => return Some(log),
        }
        if rng.chance(30) {
            match p.sync() {
                Ok(()) => model.synced = p.high_watermark(),
                Err(_) => return Some(log),
            }
        }
        if step == 12 {
            drop(p);
            if log.close().is_err() {
                return Some(log);
            }
            model.synced = model.records.len() as u64;
            log = TestLog::sim(sim, DIR).try_open().ok()?;
            p = log.partition(TOPIC, 0).ok()?;
        }
    }
    Some(log)
}

/// Crashes the machine at the `at`-th storage operation of the workload (and fails that and
/// every later operation of the dead process).
fn crash_at_operation(setup: &Snapshot, seed: u64, at: u64, mode: CrashMode) {
    let ctx = format!("seed {seed}: {mode:?} at operation {at}");
    let sim = restore(setup);
    let dead = common::crash_at_operation_n(&sim, at, mode);
    let mut model = Model::new();
    let log = workload(&sim, seed, &mut model);
    let crashed = dead.load(Ordering::SeqCst);
    if !crashed {
        // `at` is past the end of the workload: crash now.
        sim.crash(mode);
    }
    sim.clear_fault_hook();
    std::mem::forget(log);
    let (log, p) = reopen(&sim, &ctx);
    model.check_recovered(&p, &ctx);
    append_after_recovery(&sim, log, p, &mut model, &ctx);
}

fn setup_snapshot(config: TopicConfig) -> Snapshot {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(TOPIC, config).unwrap();
    log.close().unwrap();
    snapshot(&sim)
}

#[test]
fn power_loss_at_every_storage_operation() {
    let seed = base_seed();
    let _g = SeedGuard::new("power_loss_at_every_storage_operation", seed);
    let mut rng = Rng::new(seed);
    let config = TopicConfig::default()
        .segment_bytes(1500)
        .index_interval_bytes(100)
        .segment_index_bytes(1024)
        .compression(Compression::Lz4);
    let setup = setup_snapshot(config);
    // Count the operations of an undisturbed run.
    let sim = restore(&setup);
    let before = sim.op_count();
    let mut model = Model::new();
    let log = workload(&sim, seed, &mut model).unwrap();
    let total = sim.op_count() - before;
    drop(log);
    assert!(
        total > 100,
        "the workload is too small ({total} operations)"
    );
    let points = env_usize("ANNALS_CRASH_POINTS", 150) as u64;
    let ats: BTreeSet<u64> = if points >= total {
        (0..=total).collect()
    } else {
        (0..points).map(|_| rng.below(total + 1)).collect()
    };
    for at in ats {
        crash_at_operation(&setup, seed, at, crash_mode(&mut rng));
    }
}

/// A crash while a topic is being created leaves either no topic or a usable one.
#[test]
fn power_loss_during_create_topic() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.close().unwrap();
    let setup = snapshot(&sim);
    let mut at = 0;
    loop {
        let sim = restore(&setup);
        let dead = crash_at_operation_n(&sim, at, CrashMode::PowerLossTorn { seed: at });
        let log = TestLog::sim(&sim, DIR).try_open();
        let created = log
            .as_ref()
            .map(|l| {
                l.create_topic(
                    "new",
                    TopicConfig::default()
                        .partitions(3)
                        .segment_index_bytes(1024),
                )
            })
            .map(|r| r.is_ok())
            .unwrap_or(false);
        let finished = !dead.load(Ordering::SeqCst);
        sim.clear_fault_hook();
        if finished {
            sim.crash(CrashMode::PowerLossTorn { seed: at });
        }
        std::mem::forget(log);
        let ctx = format!("crash at operation {at}");
        let log = TestLog::sim(&sim, DIR)
            .try_open()
            .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        if created {
            assert_eq!(
                log.topics(),
                vec!["new".to_string()],
                "{ctx}: acknowledged topic lost"
            );
        }
        if log.topics().is_empty() {
            for path in sim.paths() {
                assert!(
                    !path.to_string_lossy().contains("new-"),
                    "{ctx}: leftover {path:?}"
                );
            }
            log.create_topic(
                "new",
                TopicConfig::default()
                    .partitions(3)
                    .segment_index_bytes(1024),
            )
            .unwrap();
        }
        for id in 0..3 {
            let p = log.partition("new", id).unwrap();
            assert_eq!(p.high_watermark(), 0, "{ctx}");
            p.append(&[Record::new("v")])
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        }
        if finished {
            break;
        }
        at += 1;
    }
    assert!(at > 10, "create_topic took only {at} operations?");
    eprintln!("create_topic crashed at each of {at} operations");
}

fn poisoned(r: annals::Result<impl std::fmt::Debug>, what: &str) {
    match r {
        Err(Error::Poisoned {
            topic, partition, ..
        }) => {
            assert_eq!((topic.as_str(), partition), (TOPIC, 0), "{what}");
        }
        other => panic!("{what}: expected Poisoned, got {other:?}"),
    }
}

#[test]
fn failed_fsync_poisons_the_partition() {
    for reopen_after_crash in [true, false] {
        let sim = SimStorage::new();
        let log = TestLog::sim(&sim, DIR).open();
        log.create_topic(
            TOPIC,
            TopicConfig::default()
                .partitions(2)
                .segment_index_bytes(1024),
        )
        .unwrap();
        let p = log.partition(TOPIC, 0).unwrap();
        let other = log.partition(TOPIC, 1).unwrap();
        let mut model = Model::new();
        let first = simple_records(0, 5);
        p.append(&first).unwrap();
        model.push_batch(&first);
        p.sync().unwrap();
        model.synced = 5;
        let second = simple_records(5, 5);
        p.append(&second).unwrap();
        model.push_batch(&second);

        sim.fail_when(SimOpKind::SyncData, "t-0/", ErrorKind::Other);
        match p.sync() {
            Err(Error::Io { .. }) => {}
            other => panic!("sync with a failing fdatasync: {other:?}"),
        }
        poisoned(
            p.append(&simple_records(10, 1)),
            "append after a failed fsync",
        );
        poisoned(p.sync(), "sync after a failed fsync");
        poisoned(p.flush(), "flush after a failed fsync");
        poisoned(
            p.append_batch(&[0u8; 70]),
            "append_batch after a failed fsync",
        );
        sim.clear_fault_hook();
        poisoned(
            p.append(&simple_records(10, 1)),
            "append once fsync works again",
        );
        poisoned(p.sync(), "sync once fsync works again");
        assert_eq!(
            p.high_watermark(),
            10,
            "nothing was appended while poisoned"
        );
        // Reads still work, and the other partition is unaffected.
        assert_partition_matches(&p, &model.records, "poisoned partition reads");
        other.append(&simple_records(0, 3)).unwrap();
        other.sync().unwrap();

        drop((p, other));
        if reopen_after_crash {
            crash(&sim, log, CrashMode::PowerLossDropUnsynced);
        } else {
            // Close reports the poisoned partition and writes no clean-shutdown marker.
            assert!(matches!(log.close(), Err(Error::Poisoned { .. })));
        }
        let (log, p) = reopen(&sim, "after a failed fsync");
        model.check_recovered(&p, &format!("failed fsync, crash {reopen_after_crash}"));
        assert_eq!(log.partition(TOPIC, 1).unwrap().high_watermark(), 3);
        append_after_recovery(&sim, log, p, &mut model, "after a failed fsync");
    }
}

/// A failed fsync while sealing a segment (a roll) poisons too, and recovery copes.
#[test]
fn failed_fsync_during_roll_poisons_the_partition() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .segment_bytes(1024)
            .segment_index_bytes(1024),
    )
    .unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let mut model = Model::new();
    let mut i = 0;
    sim.fail_when(SimOpKind::SyncData, ".log", ErrorKind::Other);
    let err = loop {
        let batch = simple_records(i, 4);
        match p.append(&batch) {
            Ok(_) => model.push_batch(&batch),
            Err(e) => break e,
        }
        i += 4;
        assert!(i < 10_000, "never rolled");
    };
    assert!(
        matches!(err, Error::Io { .. }),
        "roll with a failing fsync: {err:?}"
    );
    assert_eq!(p.segment_count(), 1);
    sim.clear_fault_hook();
    poisoned(
        p.append(&simple_records(i, 1)),
        "append after a failed roll",
    );
    assert_partition_matches(&p, &model.records, "reads after a failed roll");
    drop(p);
    crash(&sim, log, CrashMode::PowerLossTorn { seed: 5 });
    let (log, p) = reopen(&sim, "after a failed roll");
    model.check_recovered(&p, "after a failed roll");
    append_after_recovery(&sim, log, p, &mut model, "after a failed roll");
}

fn log_file(p: &Partition) -> std::path::PathBuf {
    p.dir().join(format!("{:020}.log", 0))
}

#[test]
fn disk_full_append_fails_cleanly_and_recovers() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .segment_bytes(1 << 20)
            .segment_index_bytes(1024),
    )
    .unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let mut model = Model::new();
    let first = simple_records(0, 10);
    p.append(&first).unwrap();
    model.push_batch(&first);
    p.sync().unwrap();
    model.synced = 10;
    let log_len = sim.read_file(log_file(&p)).unwrap().len();

    sim.set_capacity(Some(sim.used_bytes() + 100));
    let big = vec![Record::new(vec![7u8; 5000]).timestamp(1_700_000_000_000)];
    match p.append(&big) {
        Err(e @ Error::Io { .. }) => {
            assert_eq!(e.io_kind(), Some(ErrorKind::StorageFull), "{e}")
        }
        other => panic!("append on a full disk: {other:?}"),
    }
    assert_eq!(p.high_watermark(), 10, "nothing partial is visible");
    assert_eq!(
        sim.read_file(log_file(&p)).unwrap().len(),
        log_len,
        "no partial batch in the file"
    );
    assert_partition_matches(&p, &model.records, "after ENOSPC");
    // A small record still fits.
    let small = simple_records(10, 1);
    p.append(&small).unwrap();
    model.push_batch(&small);

    sim.set_capacity(None);
    p.append(&big)
        .unwrap_or_else(|e| panic!("append after space was freed: {e}"));
    model.push_batch(&big);
    p.sync().unwrap();
    model.synced = model.records.len() as u64;
    assert_partition_matches(&p, &model.records, "after space was freed");
    drop(p);
    crash(&sim, log, CrashMode::PowerLossDropUnsynced);
    let (log, p) = reopen(&sim, "disk full");
    model.check_recovered(&p, "disk full");
    assert_eq!(p.high_watermark(), model.records.len() as u64);
    append_after_recovery(&sim, log, p, &mut model, "disk full");
}

/// Makes the creation of the next segment's index file fail as on a full disk (no room for the
/// new directory entry; index files allocate nothing until their first entry), and appends until
/// an append needs that segment. The append must fail with an I/O error, leaving nothing partial
/// visible. Returns the model of what was appended.
fn fill_until_roll_fails(sim: &SimStorage, p: &Partition) -> Model {
    let mut model = Model::new();
    let mut i = 0;
    sim.fail_when(SimOpKind::Open, ".index", ErrorKind::StorageFull);
    let err = loop {
        let batch = simple_records(i, 4);
        match p.append(&batch) {
            Ok(_) => model.push_batch(&batch),
            Err(e) => break e,
        }
        i += 4;
        assert!(i < 10_000, "never rolled");
    };
    match &err {
        e @ Error::Io { .. } => assert_eq!(e.io_kind(), Some(ErrorKind::StorageFull), "{e}"),
        e => panic!("append on a full disk during a roll: {e:?}"),
    }
    assert_eq!(p.segment_count(), 1, "no new segment");
    assert_eq!(
        p.high_watermark(),
        model.records.len() as u64,
        "nothing partial is visible"
    );
    assert_partition_matches(p, &model.records, "after ENOSPC during a roll");
    sim.clear_fault_hook();
    model
}

fn roll_config() -> TopicConfig {
    TopicConfig::default()
        .segment_bytes(1024)
        .segment_index_bytes(4096)
}

/// The disk fills up exactly when the next append needs a new segment; after a crash (or a
/// close) and a reopen, everything acknowledged is there and appends work.
#[test]
fn disk_full_during_roll_then_reopen() {
    for kill in [true, false] {
        let ctx = format!("disk full during roll, reopen after kill: {kill}");
        let sim = SimStorage::new();
        let log = TestLog::sim(&sim, DIR).open();
        log.create_topic(TOPIC, roll_config()).unwrap();
        let p = log.partition(TOPIC, 0).unwrap();
        let mut model = fill_until_roll_fails(&sim, &p);
        drop(p);
        if kill {
            crash(&sim, log, CrashMode::ProcessKill);
        } else {
            log.close().unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
        }
        let (log, p) = reopen(&sim, &ctx);
        model.check_recovered(&p, &ctx);
        assert_eq!(
            p.high_watermark(),
            model.records.len() as u64,
            "{ctx}: every append kept"
        );
        append_after_recovery(&sim, log, p, &mut model, &ctx);
    }
}

/// As above, but without a reopen: once there is space again, appends should work again, as
/// they do after ENOSPC on a plain append.
#[test]
fn disk_full_during_roll_appends_resume_after_space_is_freed() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(TOPIC, roll_config()).unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let mut model = fill_until_roll_fails(&sim, &p);
    let next = model.records.len() as u64;
    let batch = simple_records(next, 4);
    match p.append(&batch) {
        Ok(base) => {
            assert_eq!(base, next);
            model.push_batch(&batch);
        }
        Err(e) => panic!("append after space was freed failed: {e:?}"),
    }
    assert_eq!(p.segment_count(), 2);
    assert_partition_matches(&p, &model.records, "after space was freed");
    p.sync().unwrap();
    drop(p);
    log.close().unwrap();
    let log = TestLog::sim(&sim, DIR).open();
    assert_partition_matches(
        &log.partition(TOPIC, 0).unwrap(),
        &model.records,
        "reopened",
    );
}

/// A crash while a topic is being deleted leaves either the whole topic (every record) or no
/// trace of it; the name can be reused either way.
#[test]
fn power_loss_during_delete_topic() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    let config = TopicConfig::default()
        .partitions(2)
        .segment_bytes(1024)
        .segment_index_bytes(1024);
    log.create_topic("doomed", config.clone()).unwrap();
    log.create_topic("kept", config.clone()).unwrap();
    let records = simple_records(0, 60);
    for name in ["doomed", "kept"] {
        for id in 0..2 {
            let p = log.partition(name, id).unwrap();
            for chunk in records.chunks(6) {
                p.append(chunk).unwrap();
            }
        }
    }
    log.close().unwrap();
    let setup = snapshot(&sim);
    let model = model_of(&records);
    let mut at = 0;
    loop {
        let sim = restore(&setup);
        let log = TestLog::sim(&sim, DIR).open();
        let dead = crash_at_operation_n(&sim, at, CrashMode::PowerLossTorn { seed: at });
        let deleted = log.delete_topic("doomed").is_ok();
        let finished = !dead.load(Ordering::SeqCst);
        sim.clear_fault_hook();
        if finished {
            sim.crash(CrashMode::PowerLossTorn { seed: at });
        }
        std::mem::forget(log);
        let ctx = format!("crash at operation {at} of delete_topic");
        let log = TestLog::sim(&sim, DIR)
            .try_open()
            .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        for id in 0..2 {
            assert_partition_matches(&log.partition("kept", id).unwrap(), &model, &ctx);
        }
        if log.topics().contains(&"doomed".to_string()) {
            assert!(!deleted, "{ctx}: an acknowledged delete came back");
            for id in 0..2 {
                assert_partition_matches(&log.partition("doomed", id).unwrap(), &model, &ctx);
            }
        } else {
            for path in sim.paths() {
                assert!(
                    !path.to_string_lossy().contains("doomed"),
                    "{ctx}: leftover {path:?}"
                );
            }
            log.create_topic("doomed", config.clone()).unwrap();
            assert_eq!(
                log.partition("doomed", 1).unwrap().high_watermark(),
                0,
                "{ctx}"
            );
        }
        if finished {
            break;
        }
        at += 1;
    }
    assert!(at > 3, "delete_topic took only {at} operations?");
}

/// After a failed fsync the partition is poisoned, and `Log::close` skips its work. A reopen
/// must then not believe the unsynced records are durable: `sync()` after the reopen has to
/// make them so (or they must not be served as if they were).
#[test]
fn sync_after_reopening_a_poisoned_log_is_durable() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(TOPIC, TopicConfig::default().segment_index_bytes(1024))
        .unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    p.append(&simple_records(0, 5)).unwrap();
    p.sync().unwrap();
    p.append(&simple_records(5, 5)).unwrap();
    sim.fail_when(SimOpKind::SyncData, ".log", ErrorKind::Other);
    assert!(p.sync().is_err());
    sim.clear_fault_hook();
    drop(p);
    assert!(matches!(log.close(), Err(Error::Poisoned { .. })));

    let log = TestLog::sim(&sim, DIR).open();
    let p = log.partition(TOPIC, 0).unwrap();
    let hw = p.high_watermark();
    p.sync().unwrap();
    drop(p);
    crash(&sim, log, CrashMode::PowerLossDropUnsynced);
    let (_log, p) = reopen(&sim, "poisoned, closed, reopened, synced, power loss");
    assert_eq!(
        p.high_watermark(),
        hw,
        "records served and acknowledged by sync() after the reopen were lost"
    );
}
