//! The commit protocol under crashes on `SimStorage`: power loss and kill -9 at every fsync
//! and rename of a transaction's commit (its data, `__consumer_offsets`, `__transaction_state`,
//! the markers). After each crash the reopened log must show the transaction all-or-nothing —
//! its records on both partitions and its offsets together, or none of them — with none left
//! open, and an acknowledged commit must have survived.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::storage::{CrashMode, SimOpKind, SimStorage};
use annals::{
    ConsumerConfig, ConsumerGroupMetadata, IsolationLevel, Log, OffsetAndMetadata, ProducerConfig,
    Record, TopicConfig, TopicPartition,
};

use crate::common::*;

const DIR: &str = "/sim/txn";
const OUT: &str = "out";

fn open(sim: &Arc<SimStorage>) -> annals::Result<Log> {
    TestLog::sim(sim, DIR).no_maintenance().try_open()
}

fn producer(log: &Log) -> annals::Result<annals::Producer> {
    let p = log.producer(ProducerConfig::default().transactional_id("crashing"))?;
    p.init_transactions()?;
    Ok(p)
}

/// One transaction over `partitions` of `out` and the offsets of `in-0`.
fn transaction_on(
    p: &annals::Producer,
    tag: &str,
    offset: u64,
    partitions: &[u32],
) -> annals::Result<()> {
    p.begin_transaction()?;
    for &part in partitions {
        for i in 0..3 {
            p.send_to(OUT, part, Record::new(format!("{tag}-{part}-{i}")))?;
        }
    }
    p.send_offsets_to_transaction(
        &[(TopicPartition::new("in", 0), OffsetAndMetadata::new(offset))],
        &ConsumerGroupMetadata::new("g"),
    )?;
    p.commit_transaction()
}

/// One transaction over both partitions by a new instance.
fn transaction(log: &Log, tag: &str, offset: u64) -> annals::Result<()> {
    transaction_on(&producer(log)?, tag, offset, &[0, 1])
}

/// The workload crashed into: two transactions of one instance, the second on partition 1
/// only — so its commit point can be durable while the first one's marker on partition 0, which
/// no fsync of its own covers, is not.
fn two_transactions(log: &Log, acked: &mut [bool; 2]) -> annals::Result<()> {
    let p = producer(log)?;
    transaction_on(&p, "second", 20, &[0, 1])?;
    acked[0] = true;
    transaction_on(&p, "third", 25, &[1])?;
    acked[1] = true;
    Ok(())
}

fn setup() -> Snapshot {
    let sim = SimStorage::new();
    let log = open(&sim).unwrap();
    log.create_topic("in", TopicConfig::default()).unwrap();
    log.create_topic(OUT, TopicConfig::default().partitions(2))
        .unwrap();
    transaction(&log, "first", 10).unwrap();
    log.close().unwrap();
    snapshot(&sim)
}

/// What read_committed shows of `out`, sorted.
fn committed_values(log: &Log) -> Vec<String> {
    let mut c = log
        .consumer(ConsumerConfig::new("check").isolation_level(IsolationLevel::ReadCommitted))
        .unwrap();
    c.assign(&[TopicPartition::new(OUT, 0), TopicPartition::new(OUT, 1)])
        .unwrap();
    let mut out = Vec::new();
    loop {
        let got = c.poll(Duration::from_millis(10)).unwrap();
        if got.is_empty() {
            break;
        }
        out.extend(
            got.iter()
                .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()),
        );
    }
    out.sort();
    out
}

fn values_on(tag: &str, partitions: &[u32]) -> Vec<String> {
    partitions
        .iter()
        .flat_map(|p| (0..3).map(move |i| format!("{tag}-{p}-{i}")))
        .collect()
}

fn values(tag: &str) -> Vec<String> {
    let mut v = values_on(tag, &[0, 1]);
    v.sort();
    v
}

#[test]
fn a_transaction_is_all_or_nothing_after_a_crash_at_any_fsync_or_rename() {
    let setup = setup();
    // The operations of an undisturbed commit, after those of the open.
    let sim = restore(&setup);
    let log = open(&sim).unwrap();
    let opened = sim.op_count();
    let kinds = Arc::new(Mutex::new(Vec::new()));
    {
        let kinds = kinds.clone();
        sim.set_fault_hook(move |op| {
            kinds.lock().unwrap().push(op.kind);
            None
        });
    }
    two_transactions(&log, &mut [false; 2]).unwrap();
    sim.clear_fault_hook();
    drop(log);
    let kinds = kinds.lock().unwrap().clone();
    let points: Vec<u64> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| {
            matches!(
                k,
                SimOpKind::SyncData | SimOpKind::SyncAll | SimOpKind::SyncDir | SimOpKind::Rename
            )
        })
        .map(|(i, _)| opened + i as u64)
        .chain([opened + kinds.len() as u64 + 1])
        .collect();
    assert!(points.len() >= 8, "only {} crash points", points.len());
    let mut committed_after = 0;
    for &at in &points {
        for mode in [CrashMode::PowerLossDropUnsynced, CrashMode::ProcessKill] {
            let ctx = format!("{mode:?} at operation {at}");
            let sim = restore(&setup);
            let dead = crash_at_operation_n(&sim, at, mode);
            let mut acked = [false; 2];
            if let Ok(log) = open(&sim) {
                let _ = two_transactions(&log, &mut acked);
                std::mem::forget(log);
            }
            if !dead.load(Ordering::SeqCst) {
                sim.crash(mode);
            }
            sim.clear_fault_hook();
            let log = open(&sim).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            assert!(log.transactions().unwrap().is_empty(), "{ctx}: left open");
            for part in 0..2 {
                let p = log.partition(OUT, part).unwrap();
                assert_eq!(
                    p.last_stable_offset(),
                    p.high_watermark(),
                    "{ctx}: LSO {part}"
                );
            }
            let seen = committed_values(&log);
            let offset = log
                .committed_offset("g", "in", 0)
                .unwrap()
                .map(|c| c.offset);
            // Each transaction all or nothing, in order, and every acknowledged one there.
            let mut outcomes = vec![(values("first"), Some(10))];
            let mut both = values("first");
            both.extend(values("second"));
            both.sort();
            outcomes.push((both.clone(), Some(20)));
            both.extend(values_on("third", &[1]));
            both.sort();
            outcomes.push((both, Some(25)));
            let committed = outcomes
                .iter()
                .position(|o| *o == (seen.clone(), offset))
                .unwrap_or_else(|| {
                    panic!("{ctx}: partly visible: {seen:?} with offset {offset:?}")
                });
            let acked_count = acked.iter().filter(|a| **a).count();
            assert!(
                committed >= acked_count,
                "{ctx}: {acked_count} commits acknowledged, {committed} survived"
            );
            if committed > 0 {
                committed_after += 1;
            }
            // The transactional id goes on.
            transaction(&log, "third", 30).unwrap_or_else(|e| panic!("{ctx}: after: {e}"));
            assert_eq!(
                log.committed_offset("g", "in", 0)
                    .unwrap()
                    .map(|c| c.offset),
                Some(30),
                "{ctx}"
            );
            log.close().unwrap();
        }
    }
    // Crashes after the commit point commit; the last point (after everything) always does.
    assert!(
        committed_after >= 2,
        "{committed_after} crash points committed"
    );
}
