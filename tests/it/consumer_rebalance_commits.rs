//! Commits while a group rebalances: a member's commit for partitions it still owns succeeds
//! whatever the generation, a commit that was accepted lands before its partitions can move, and
//! no committed offset goes backwards because of a member that lost its partitions.

use crate::common;

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use annals::storage::{SimOpKind, SimStorage};
use annals::{ConsumerConfig, Error, Log, Record, TopicConfig};

const PARTITIONS: u32 = 6;

/// Appends a few records to every partition until `stop`, so every poll has something to read
/// and every commit moves.
fn appender(log: Log, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            for p in 0..PARTITIONS {
                let recs: Vec<Record> = (0..5).map(|j| Record::new(format!("{i}-{j}"))).collect();
                log.partition("t", p).unwrap().append(&recs).unwrap();
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

/// Reads every committed offset of group "g" in a loop and fails on the first one that went
/// backwards.
fn monitor(log: Log, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        let mut samples = 0u64;
        while !stop.load(Ordering::SeqCst) {
            for p in 0..PARTITIONS {
                if let Some(c) = log.committed_offset("g", "t", p).unwrap() {
                    let before = last.insert(p, c.offset).unwrap_or(0);
                    assert!(
                        c.offset >= before,
                        "committed offset of t-{p} went back from {before} to {}",
                        c.offset
                    );
                }
            }
            samples += 1;
            std::thread::yield_now();
        }
        samples
    })
}

/// A member that stays for the whole run: it polls and commits after every poll; every commit
/// must succeed (it never loses a partition, it only hands some over cooperatively), and right
/// after it the group's committed offset of each owned partition is exactly its position.
fn steady_member(log: Log, rounds: usize, commits: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut c = log
            .consumer(ConsumerConfig::new("g").max_poll_records(20))
            .unwrap();
        c.subscribe(&["t"]).unwrap();
        for round in 0..rounds {
            c.poll(Duration::from_millis(5)).unwrap();
            if let Err(e) = c.commit() {
                panic!("round {round}: commit of owned partitions failed: {e:?}");
            }
            commits.fetch_add(1, Ordering::Relaxed);
            for l in c.lag().unwrap() {
                if l.position.is_some() {
                    assert_eq!(
                        l.committed, l.position,
                        "round {round}: the commit of {}-{} changed under its owner",
                        l.topic, l.partition
                    );
                }
            }
        }
        c.close().unwrap();
    })
}

/// Members that come and go: join, poll and commit a few times, leave by `close` or by drop.
/// Every third one has a short `max_poll_interval` and sometimes stalls past it before
/// committing: its commit may then be refused as fenced — never for a partition it still owns,
/// and never landing after its partitions moved (the monitor and the steady members check).
fn churn(log: Log, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let (mut joined, mut fenced) = (0u64, 0u64);
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let sloppy = n.is_multiple_of(3);
            let mut config = ConsumerConfig::new("g").max_poll_records(20);
            if sloppy {
                config = config.max_poll_interval(Duration::from_millis(30));
            }
            let mut c = log.consumer(config).unwrap();
            c.subscribe(&["t"]).unwrap();
            joined += 1;
            for step in 0..(n % 5 + 2) {
                c.poll(Duration::from_millis(5)).unwrap();
                if sloppy && step % 2 == 1 {
                    std::thread::sleep(Duration::from_millis(40));
                }
                match c.commit() {
                    Ok(()) => {}
                    Err(Error::MemberFenced { .. }) if sloppy => fenced += 1,
                    Err(e) => panic!("member {n} step {step}: {e:?}"),
                }
            }
            if n.is_multiple_of(2) {
                c.close().unwrap();
            } else {
                drop(c);
            }
        }
        (joined, fenced)
    })
}

#[test]
fn members_join_and_leave_while_others_commit_after_every_poll() {
    let rounds = common::env_usize("ANNALS_REBALANCE_ROUNDS", 1000);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::default().partitions(PARTITIONS))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let appending = appender(log.clone(), stop.clone());
    let watching = monitor(log.clone(), stop.clone());
    let churning = churn(log.clone(), stop.clone());
    let steady: Vec<_> = (0..2)
        .map(|_| steady_member(log.clone(), rounds, commits.clone()))
        .collect();
    let results: Vec<_> = steady.into_iter().map(|h| h.join()).collect();
    stop.store(true, Ordering::SeqCst);
    let churned = churning.join();
    let samples = watching.join();
    appending.join().unwrap();
    for r in results {
        r.unwrap();
    }
    let (joined, fenced) = churned.unwrap();
    let samples = samples.unwrap();
    eprintln!(
        "{} steady commits, {joined} members joined and left ({fenced} fenced commits), \
         {samples} monitor samples",
        commits.load(Ordering::Relaxed)
    );
    assert!(joined >= 3, "the churn thread barely ran: {joined} members");
    // Every partition was consumed and committed by someone.
    for p in 0..PARTITIONS {
        assert!(
            log.committed_offset("g", "t", p).unwrap().is_some(),
            "t-{p}"
        );
    }
}

/// Blocks the first write to `__consumer_offsets` after `armed` is set until `release`.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool, bool)>, // (armed, entered, released)
    changed: Condvar,
}

impl Gate {
    fn hook(self: &Arc<Self>, sim: &SimStorage) {
        let gate = self.clone();
        sim.set_fault_hook(move |op| {
            let ours = op.kind == SimOpKind::Write
                && op.path.to_string_lossy().contains("__consumer_offsets");
            if ours {
                let mut s = gate.state.lock().unwrap();
                if s.0 && !s.1 {
                    s.1 = true;
                    gate.changed.notify_all();
                    while !s.2 {
                        s = gate.changed.wait(s).unwrap();
                    }
                }
            }
            None::<io::Error>
        });
    }

    fn set(&self, f: impl FnOnce(&mut (bool, bool, bool))) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }

    fn wait_entered(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut s = self.state.lock().unwrap();
        while !s.1 {
            assert!(
                Instant::now() < deadline,
                "the commit never reached its write"
            );
            s = self
                .changed
                .wait_timeout(s, Duration::from_millis(100))
                .unwrap()
                .0;
        }
    }
}

#[test]
fn a_commit_in_flight_lands_before_its_partition_moves_even_if_its_member_expires() {
    let sim = SimStorage::new();
    let log = Log::builder("/log")
        .storage(sim.clone())
        .maintenance_interval(None)
        .open()
        .unwrap();
    log.create_topic("t", TopicConfig::default()).unwrap();
    let recs: Vec<Record> = (0..50).map(|i| Record::new(format!("r{i}"))).collect();
    log.partition("t", 0).unwrap().append(&recs).unwrap();
    let config = || {
        ConsumerConfig::new("g")
            .max_poll_records(10)
            .max_poll_interval(Duration::from_millis(300))
    };
    let mut a = log.consumer(config()).unwrap();
    a.subscribe(&["t"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.assignment().is_empty() || a.position("t", 0).unwrap() == 0 {
        assert!(Instant::now() < deadline, "a never got its records");
        a.poll(Duration::from_millis(100)).unwrap();
    }
    let position = a.position("t", 0).unwrap();

    // a's commit passes its ownership check and stops at its write.
    let gate = Arc::new(Gate::default());
    gate.hook(&sim);
    gate.set(|s| s.0 = true);
    let committing = std::thread::spawn(move || {
        let result = a.commit();
        (a, result)
    });
    gate.wait_entered();

    // Meanwhile a stays silent past its max_poll_interval and b joins: the coordinator removes
    // a, but the partition must not move while a's accepted commit is still being written.
    std::thread::sleep(Duration::from_millis(1000));
    let mut b = log.consumer(config()).unwrap();
    b.subscribe(&["t"]).unwrap();
    let watch_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < watch_until {
        let got = b.poll(Duration::from_millis(20)).unwrap();
        assert!(
            got.is_empty() && b.assignment().is_empty(),
            "b took over t-0 (reading from offset {:?}) while a's commit was in flight",
            got.first().map(|r| r.offset)
        );
    }

    gate.set(|s| s.2 = true);
    let (mut a, result) = committing.join().unwrap();
    result.expect("a owned t-0 when its commit was accepted");
    let committed = log.committed_offset("g", "t", 0).unwrap().unwrap().offset;
    assert_eq!(committed, position);

    // Now b gets the partition and starts where a's commit left it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        assert!(Instant::now() < deadline, "b never got t-0");
        if let Some(r) = b
            .poll(Duration::from_millis(50))
            .unwrap()
            .into_iter()
            .next()
        {
            break r;
        }
    };
    assert_eq!(first.offset, position);
    b.commit().unwrap();
    assert!(log.committed_offset("g", "t", 0).unwrap().unwrap().offset > position);
    // a was removed: its commit is refused, and its next poll reports the loss and rejoins.
    let refused = a.commit();
    assert!(
        matches!(refused, Err(Error::MemberFenced { .. })),
        "{refused:?}"
    );
    a.poll(Duration::from_millis(10)).unwrap();
    assert!(a.assignment().is_empty());
    assert!(log.committed_offset("g", "t", 0).unwrap().unwrap().offset > position);
}
