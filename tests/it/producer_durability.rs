//! The producer's durability levels on `SimStorage`: what an acknowledged record survives, group
//! commit (many waiting senders share fsyncs), and failing fsyncs.
//!
//! Knobs: `ANNALS_TEST_CASES` (crash rounds, default 6), `ANNALS_GROUP_COMMIT_RECORDS` (records
//! per sender thread in the group-commit test, default 200).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use annals::storage::{CrashMode, SimOpKind, SimStorage};
use annals::{Durability, Error, Log, Producer, ProducerConfig, Record, TopicConfig};

const DIR: &str = "/sim/producer";

fn sim_log(partitions: u32) -> (Arc<SimStorage>, Log) {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR)
        .topic(
            "t",
            TopicConfig::default()
                .partitions(partitions)
                .segment_bytes(8 << 10)
                .segment_index_bytes(4096),
        )
        .open();
    (sim, log)
}

/// Counts successful-or-not `sync_data` calls on `.log` files.
fn count_log_syncs(sim: &SimStorage) -> Arc<AtomicU64> {
    let n = Arc::new(AtomicU64::new(0));
    let c = n.clone();
    sim.set_fault_hook(move |op| {
        if op.kind == SimOpKind::SyncData && op.path.extension().is_some_and(|e| e == "log") {
            c.fetch_add(1, Ordering::Relaxed);
        }
        None
    });
    n
}

/// Sends `n` keyed records and returns `(partition, offset) -> value` of those acknowledged.
fn send_and_wait(producer: &Producer, tag: &str, n: usize) -> HashMap<(u32, u64), String> {
    let ds: Vec<_> = (0..n)
        .map(|i| {
            // Values up to ~400 bytes, so the 8 KiB segments roll now and then.
            let value = format!("{tag}-{i}-{}", "x".repeat(i * 7 % 400));
            let d = producer
                .send("t", Record::new(value.clone()).key(format!("k{}", i % 5)))
                .unwrap();
            (value, d)
        })
        .collect();
    ds.into_iter()
        .map(|(v, d)| {
            let m = d.wait().unwrap();
            assert!(m.offset.is_some());
            ((m.partition, m.offset.unwrap()), v)
        })
        .collect()
}

#[track_caller]
fn assert_present(log: &Log, acked: &HashMap<(u32, u64), String>, ctx: &str) {
    let stored: HashMap<(u32, u64), String> = read_topic(log, "t")
        .into_iter()
        .map(|(p, r)| {
            (
                (p, r.offset),
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    for (pos, v) in acked {
        assert_eq!(
            stored.get(pos),
            Some(v),
            "{ctx}: acknowledged record {v} at {pos:?} lost"
        );
    }
}

#[test]
fn synced_records_survive_power_loss() {
    let rounds = cases(6);
    let mut rolled = false;
    for round in 0..rounds {
        let (sim, log) = sim_log(3);
        let producer = log
            .producer(
                ProducerConfig::default()
                    .durability(Durability::Synced)
                    .linger(Duration::from_millis(round as u64 % 3)),
            )
            .unwrap();
        let acked = send_and_wait(&producer, &format!("r{round}"), 20 + round * 37);
        rolled |= (0..3).any(|p| log.partition("t", p).unwrap().segment_count() > 1);
        let mode = if round % 2 == 0 {
            CrashMode::PowerLossDropUnsynced
        } else {
            CrashMode::PowerLossTorn { seed: round as u64 }
        };
        crash(&sim, log, mode);
        drop(producer);
        let log = TestLog::sim(&sim, DIR).open();
        assert_present(&log, &acked, &format!("round {round}, {mode:?}"));
    }
    if rounds >= 6 {
        assert!(
            rolled,
            "no round rolled a segment: the rounds prove less than they should"
        );
    }
}

#[test]
fn written_is_not_power_loss_durable_control() {
    // Control: without an fsync a power loss drops the record, so the Synced test above is
    // not passing by accident.
    let (sim, log) = sim_log(1);
    let producer = log
        .producer(ProducerConfig::default().durability(Durability::Written))
        .unwrap();
    let acked = send_and_wait(&producer, "w", 10);
    assert_eq!(acked.len(), 10);
    crash(&sim, log, CrashMode::PowerLossDropUnsynced);
    drop(producer);
    let log = TestLog::sim(&sim, DIR).open();
    assert_eq!(log.partition("t", 0).unwrap().high_watermark(), 0);
}

#[test]
fn written_records_survive_process_kill() {
    let (sim, mut log) = sim_log(3);
    let mut acked = HashMap::new();
    for round in 0..cases(6).max(1) {
        let producer = log
            .producer(
                ProducerConfig::default()
                    .durability(Durability::Written)
                    .linger(Duration::from_millis(round as u64 % 2)),
            )
            .unwrap();
        acked.extend(send_and_wait(
            &producer,
            &format!("k{round}"),
            30 + round * 11,
        ));
        crash(&sim, log, CrashMode::ProcessKill);
        drop(producer);
        log = TestLog::sim(&sim, DIR).open();
        assert_present(&log, &acked, &format!("round {round}, kill -9"));
    }
}

#[test]
fn group_commit_shares_fsyncs_between_waiting_senders() {
    let threads = 16;
    let per_thread = env_usize("ANNALS_GROUP_COMMIT_RECORDS", 200);
    let (sim, log) = sim_log(1);
    let producer = log
        .producer(
            ProducerConfig::default()
                .durability(Durability::Synced)
                .linger(Duration::ZERO),
        )
        .unwrap();
    let syncs = count_log_syncs(&sim);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let producer = producer.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    producer
                        .send("t", Record::new(format!("t{t}-{i}")))
                        .unwrap()
                        .wait()
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let records = (threads * per_thread) as u64;
    let n = syncs.load(Ordering::Relaxed);
    assert_eq!(log.partition("t", 0).unwrap().high_watermark(), records);
    eprintln!("{records} synced records from {threads} threads took {n} fsyncs");
    assert!(n >= 1);
    assert!(
        n < records / 4,
        "{n} fsyncs for {records} records from {threads} waiting threads: no group commit"
    );
    producer.close().unwrap();
}

#[test]
fn a_single_waiting_sender_pays_one_fsync_per_record() {
    let records = env_usize("ANNALS_GROUP_COMMIT_RECORDS", 200) as u64;
    let (sim, log) = sim_log(1);
    let producer = log
        .producer(
            ProducerConfig::default()
                .durability(Durability::Synced)
                .linger(Duration::ZERO),
        )
        .unwrap();
    let syncs = count_log_syncs(&sim);
    let p = log.partition("t", 0).unwrap();
    for i in 0..records {
        let m = producer
            .send("t", Record::new(format!("v{i}")))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(m.offset, Some(i));
        // Acknowledged means durable: the active .log is durable up to its end, which holds
        // this record (nothing else is being written).
        let active = sim
            .paths()
            .into_iter()
            .filter(|f| f.parent() == Some(p.dir()) && f.extension().is_some_and(|e| e == "log"))
            .max()
            .unwrap();
        let len = sim.read_file(&active).unwrap().len() as u64;
        assert!(len > 0);
        assert_eq!(
            sim.durable_len(&active),
            Some(len),
            "record {i} acknowledged, not durable"
        );
    }
    let n = syncs.load(Ordering::Relaxed);
    // Rolls (segment_bytes 8 KiB) fsync sealed segments too: allow a little slack.
    assert!(
        n >= records / 2 && n <= records + 20,
        "{n} fsyncs for {records} records sent and waited one at a time"
    );
    producer.close().unwrap();
}

fn fail_log_fsyncs(sim: &SimStorage) {
    sim.set_fault_hook(|op| {
        (op.kind == SimOpKind::SyncData && op.path.extension().is_some_and(|e| e == "log"))
            .then(|| io::Error::other("injected fsync failure"))
    });
}

#[test]
fn a_failed_fsync_fails_the_delivery_and_flush_and_poisons_the_partition() {
    let (sim, log) = sim_log(1);
    let producer = log
        .producer(
            ProducerConfig::default()
                .durability(Durability::Synced)
                .linger(Duration::ZERO),
        )
        .unwrap();
    let ok = producer
        .send("t", Record::new("ok"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(ok.offset, Some(0));
    producer.flush().unwrap();

    fail_log_fsyncs(&sim);
    let failed = producer.send("t", Record::new("fsync fails")).unwrap();
    match failed.wait() {
        Err(Error::Io { .. }) => {}
        other => panic!("delivery of a batch whose fsync failed: {other:?}"),
    }
    assert!(
        producer.flush().is_err(),
        "flush must report the failed fsync"
    );
    sim.clear_fault_hook();

    // The page cache can no longer be trusted: the partition refuses writes.
    let later = producer.send("t", Record::new("later")).unwrap();
    match later.wait() {
        Err(Error::Poisoned { partition: 0, .. }) => {}
        other => panic!("write after a failed fsync: {other:?}"),
    }
    assert!(matches!(producer.flush(), Err(Error::Poisoned { .. })));
    // Nothing after the failure was acknowledged, and the first record is intact.
    let p = log.partition("t", 0).unwrap();
    assert_eq!(
        p.read(0, 1 << 20).unwrap()[0].value.as_deref(),
        Some(&b"ok"[..])
    );
    let _ = producer.close();
}

#[test]
fn a_failed_fsync_under_written_durability_is_not_involved() {
    // Written never fsyncs on the write path: a failing fsync hook changes nothing for it.
    let (sim, log) = sim_log(1);
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::ZERO))
        .unwrap();
    fail_log_fsyncs(&sim);
    let acked = send_and_wait(&producer, "w", 25);
    producer.flush().unwrap();
    sim.clear_fault_hook();
    assert_present(&log, &acked, "written with failing fsyncs");
    producer.close().unwrap();
}

#[test]
fn write_errors_under_durability_none_reach_flush() {
    let (sim, log) = sim_log(1);
    let producer = log
        .producer(
            ProducerConfig::default()
                .durability(Durability::None)
                .retries(0)
                .linger(Duration::ZERO),
        )
        .unwrap();
    sim.set_fault_hook(|op| {
        (op.kind == SimOpKind::Write && op.path.extension().is_some_and(|e| e == "log"))
            .then(|| io::Error::new(io::ErrorKind::StorageFull, "injected: disk full"))
    });
    let d = producer.send("t", Record::new("lost")).unwrap();
    // Acknowledged at send: the failure can only be reported by flush.
    assert!(d.wait().unwrap().offset.is_none());
    assert!(
        matches!(producer.flush(), Err(Error::Io { .. })),
        "flush must report the failed write"
    );
    // Reported once: the next flush covers only what came after.
    producer.flush().unwrap();
    sim.clear_fault_hook();
    assert_eq!(log.partition("t", 0).unwrap().high_watermark(), 0);
    producer.close().unwrap();
}
