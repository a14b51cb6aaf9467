//! Committed offsets across restarts: clean and unclean reopen, simulated power loss (storage
//! seam) and real kill -9 of a consuming child process.
//!
//! The kill -9 test re-executes this binary as a child
//! (`--exact consumer_restart::consumer_child`) that polls, prints every record it got, commits,
//! and prints each commit once `commit` returned. The parent
//! kills it at a random moment and checks the two promises: a committed offset is never
//! re-delivered (it survived), and nothing is skipped (the commit never passes what the child
//! consumed). Rounds: `ANNALS_CRASH_ROUNDS` (default 50, capped at 20 here).
#![cfg(unix)]

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use annals::storage::{CrashMode, SimStorage};
use annals::{ConsumerConfig, Log, Record, TopicConfig};
use common::{Rng, TestLog};

const TOPIC: &str = "events";
const ENV_DIR: &str = "ANNALS_CKILL9_DIR";

fn fill(log: &Log, partitions: u32, per_partition: u64) {
    log.create_topic(TOPIC, TopicConfig::default().partitions(partitions))
        .unwrap();
    for p in 0..partitions {
        let part = log.partition(TOPIC, p).unwrap();
        for chunk in 0..per_partition.div_ceil(100) {
            let n = 100.min(per_partition - chunk * 100);
            let recs: Vec<Record> = (0..n).map(|i| Record::new(format!("{p}/{i}"))).collect();
            part.append(&recs).unwrap();
        }
    }
}

fn consume_and_commit(log: &Log, group: &str, n: usize) -> BTreeMap<u32, u64> {
    let mut c = log
        .consumer(ConsumerConfig::new(group).max_poll_records(n))
        .unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    let mut got = 0;
    while got < n {
        got += c.poll(Duration::from_millis(50)).unwrap().len();
    }
    c.commit().unwrap();
    let mut out = BTreeMap::new();
    for tp in c.assignment() {
        out.insert(tp.partition, c.position(TOPIC, tp.partition).unwrap());
    }
    out
}

#[test]
fn a_restarted_group_resumes_at_exactly_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    fill(&log, 2, 500);
    let positions = consume_and_commit(&log, "g", 300);
    log.close().unwrap();
    drop(log);
    for clean in [true, false] {
        let log = Log::open(dir.path()).unwrap();
        let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
        c.assign(&[(TOPIC, 0), (TOPIC, 1)]).unwrap();
        for (&p, &pos) in &positions {
            assert_eq!(c.position(TOPIC, p).unwrap(), pos, "clean={clean}");
        }
        let first = c.poll(Duration::from_secs(1)).unwrap();
        for (&p, &pos) in &positions {
            if let Some(r) = first.iter().find(|r| r.partition == p) {
                assert_eq!(r.offset, pos, "clean={clean}");
            }
        }
        drop(c);
        if clean {
            log.close().unwrap();
        } else {
            std::mem::forget(log); // no clean shutdown: the next open recovers by scanning
        }
    }
}

#[test]
fn acknowledged_commits_survive_power_loss() {
    let seed = common::base_seed();
    let _guard = common::SeedGuard::new("acknowledged_commits_survive_power_loss", seed);
    let mut rng = Rng::new(seed);
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, "/db").open();
    fill(&log, 1, 200);
    drop(log);
    let mut acked: Option<u64> = None;
    for round in 0..common::cases(30) {
        let log = TestLog::sim(&sim, "/db").open();
        let got = log
            .committed_offset("g", TOPIC, 0)
            .unwrap()
            .map(|c| c.offset);
        assert!(
            got >= acked,
            "round {round}: acknowledged commit {acked:?} lost, found {got:?}"
        );
        acked = got;
        let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
        c.assign(&[(TOPIC, 0)]).unwrap();
        for _ in 0..rng.usize(1, 5) {
            let target = rng.below(201);
            c.seek(TOPIC, 0, target).unwrap();
            c.commit().unwrap();
            acked = Some(target);
        }
        let mode = if rng.chance(50) {
            CrashMode::PowerLossDropUnsynced
        } else {
            CrashMode::PowerLossTorn {
                seed: rng.next_u64(),
            }
        };
        sim.crash(mode);
        std::mem::forget(c);
        std::mem::forget(log);
        // The last acknowledged commit is what a reopen must find.
        let log = TestLog::sim(&sim, "/db").open();
        assert_eq!(
            log.committed_offset("g", TOPIC, 0)
                .unwrap()
                .map(|c| c.offset),
            acked,
            "round {round}"
        );
        log.close().unwrap();
    }
}

/// The kill -9 child: consume from the committed offsets, printing `GOT p o` per record and
/// `COMMITTED p o` per partition after each successful commit.
#[test]
fn consumer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let log = Log::open(&dir).unwrap();
    let mut c = log
        .consumer(ConsumerConfig::new("g").max_poll_records(37))
        .unwrap();
    c.assign(&[(TOPIC, 0), (TOPIC, 1)]).unwrap();
    let out = std::io::stdout();
    writeln!(out.lock(), "READY").unwrap();
    loop {
        let records = c.poll(Duration::from_millis(20)).unwrap();
        let mut lock = out.lock();
        for r in &records {
            writeln!(lock, "GOT {} {}", r.partition, r.offset).unwrap();
        }
        lock.flush().unwrap();
        drop(lock);
        c.commit().unwrap();
        let mut lock = out.lock();
        for tp in c.assignment() {
            let pos = c.position(&tp.topic, tp.partition).unwrap();
            writeln!(lock, "COMMITTED {} {pos}", tp.partition).unwrap();
        }
        lock.flush().unwrap();
    }
}

#[test]
fn kill9_between_consume_and_commit_redelivers_and_never_skips() {
    if std::env::var(ENV_DIR).is_ok() {
        return;
    }
    let rounds = common::env_usize("ANNALS_CRASH_ROUNDS", 50).min(20);
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        fill(&log, 2, 20_000);
        log.close().unwrap();
    }
    let mut rng = Rng::new(common::base_seed());
    // Everything any child printed as consumed, across rounds.
    let mut consumed: [Vec<bool>; 2] = [vec![false; 20_000], vec![false; 20_000]];
    let mut last_committed = [0u64; 2];
    for round in 0..rounds {
        let (mut child, rx) = common::spawn_child(
            &common::test_path(module_path!(), "consumer_child"),
            &[(ENV_DIR, dir.path().as_os_str())],
        );
        let delay = Duration::from_millis(rng.range(2, 60));
        let mut ready_at: Option<Instant> = None;
        let started = Instant::now();
        let mut lines = Vec::new();
        // Every other round also waits for the child's first commit before the delay starts,
        // so commits happen whatever the load (a loaded machine may otherwise kill every child
        // before it commits); the other rounds can die before any.
        let wait_for_commit = round % 2 == 0;
        let mut committed_once = false;
        while ready_at.is_none_or(|t| t.elapsed() < delay) || (wait_for_commit && !committed_once) {
            assert!(
                started.elapsed() < common::hang_bound(),
                "child never ready or never committed"
            );
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(1)) {
                if line.ends_with("READY") {
                    ready_at = Some(Instant::now());
                }
                committed_once |= line.starts_with("COMMITTED");
                lines.push(line);
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(20)) {
            lines.push(line);
        }
        let mut max_got = [None::<u64>; 2];
        for line in &lines {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["GOT", p, o] => {
                    let (p, o): (usize, u64) = (p.parse().unwrap(), o.parse().unwrap());
                    consumed[p][o as usize] = true;
                    max_got[p] = max_got[p].max(Some(o));
                }
                ["COMMITTED", p, o] => {
                    let p: usize = p.parse().unwrap();
                    last_committed[p] = last_committed[p].max(o.parse().unwrap());
                }
                _ => {}
            }
        }
        let log = Log::open(dir.path()).unwrap();
        for p in 0..2u32 {
            let committed = log
                .committed_offset("g", TOPIC, p)
                .unwrap()
                .map_or(0, |c| c.offset);
            assert!(
                committed >= last_committed[p as usize],
                "round {round}: acknowledged commit {} of partition {p} lost (found {committed})",
                last_committed[p as usize]
            );
            // The commit never runs ahead of what was delivered: everything below it was
            // consumed by some child.
            let skipped = consumed[p as usize][..committed as usize]
                .iter()
                .position(|&c| !c);
            assert_eq!(
                skipped, None,
                "round {round}: partition {p} skipped a record"
            );
            last_committed[p as usize] = committed;
        }
        log.close().unwrap();
    }
    assert!(
        last_committed.iter().sum::<u64>() > 0,
        "no child committed anything in {rounds} rounds"
    );
}
