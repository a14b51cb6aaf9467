//! Consumer groups: ownership per generation, rebalances on join / leave / a silent member,
//! commit-on-revoke giving exactly-once consumption across rebalances, commits during a
//! rebalance, and independent groups.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::TestLog;
use annals::{
    Assignor, Consumer, ConsumerConfig, Error, Log, OffsetAndMetadata, RebalanceListener, Record,
    TopicConfig, TopicPartition,
};

fn setup(partitions: u32, records_per_partition: u64) -> (tempfile::TempDir, Log) {
    let (dir, log) = TestLog::temp()
        .topic("t", TopicConfig::default().partitions(partitions))
        .open_temp();
    for p in 0..partitions {
        if records_per_partition > 0 {
            let recs: Vec<Record> = (0..records_per_partition)
                .map(|i| Record::new(format!("p{p}-{i}")))
                .collect();
            log.partition("t", p).unwrap().append(&recs).unwrap();
        }
    }
    (dir, log)
}

struct CommitOnRevoke;
impl RebalanceListener for CommitOnRevoke {
    fn on_revoked(&mut self, consumer: &mut Consumer, _partitions: &[TopicPartition]) {
        consumer
            .commit()
            .expect("a member may commit what it still owns");
    }
}

fn member(log: &Log, group: &str, assignor: Assignor) -> Consumer {
    let mut c = log
        .consumer(
            ConsumerConfig::new(group)
                .assignor(assignor)
                .max_poll_records(10),
        )
        .unwrap();
    c.subscribe_with(&["t"], CommitOnRevoke).unwrap();
    c
}

/// Polls every member (without consuming meaningfully) until the assignment stops changing.
fn settle(members: &mut [Consumer]) {
    let mut last = Vec::new();
    let mut stable = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stable < 3 {
        assert!(Instant::now() < deadline, "group never settled");
        for m in members.iter_mut() {
            m.pause(&m.assignment()).unwrap();
            m.poll(Duration::from_millis(5)).unwrap();
        }
        let now: Vec<Vec<TopicPartition>> = members.iter().map(|m| m.assignment()).collect();
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
    }
    for m in members.iter_mut() {
        m.resume(&m.assignment()).unwrap();
    }
}

fn owners(members: &[Consumer]) -> BTreeMap<TopicPartition, usize> {
    let mut out = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        for tp in m.assignment() {
            assert!(out.insert(tp.clone(), i).is_none(), "{tp} owned twice");
        }
    }
    out
}

#[test]
fn three_partitions_split_between_one_to_four_members() {
    for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
        for n in 1..=4usize {
            let (_d, log) = setup(3, 0);
            let mut members: Vec<Consumer> = (0..n).map(|_| member(&log, "g", assignor)).collect();
            settle(&mut members);
            let owned = owners(&members);
            assert_eq!(owned.len(), 3, "{assignor:?} n={n}");
            let idle = members.iter().filter(|m| m.assignment().is_empty()).count();
            assert_eq!(idle, n.saturating_sub(3), "{assignor:?} n={n}");
            let groups = log.groups().unwrap();
            assert_eq!(groups[0].members.len(), n);
            assert!(groups[0].generation >= n as u32);
        }
    }
}

#[test]
fn join_and_leave_rebalance_and_every_record_is_consumed_exactly_once() {
    let (_d, log) = setup(3, 300);
    let mut seen: BTreeMap<(u32, u64), usize> = BTreeMap::new();
    let mut members = vec![member(&log, "g", Assignor::Range)];
    let mut step = 0;
    let total = 900;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < total {
        assert!(Instant::now() < deadline, "stuck at {} records", seen.len());
        step += 1;
        // Membership churn: members come and go while records are being consumed.
        if step % 7 == 0 && members.len() < 4 {
            members.push(member(&log, "g", Assignor::Range));
        }
        if step % 11 == 0 && members.len() > 1 {
            let mut gone = members.remove(step % members.len());
            gone.close().unwrap(); // on_revoked commits
        }
        for m in members.iter_mut() {
            for r in m.poll(Duration::from_millis(2)).unwrap() {
                *seen.entry((r.partition, r.offset)).or_default() += 1;
            }
            // Every member owns what it holds until it releases it: its commit always succeeds.
            m.commit().unwrap();
        }
        owners(&members);
    }
    let dups: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(dups.is_empty(), "re-delivered: {dups:?}");
    assert_eq!(seen.len(), total);
}

#[test]
fn a_commit_during_a_rebalance_succeeds_for_partitions_still_owned() {
    let (_d, log) = setup(3, 5);
    let mut a = member(&log, "g", Assignor::Range);
    // Every partition gets a position (so every one has a commit to hand over).
    let mut polled = 0;
    while polled < 15 {
        polled += a.poll(Duration::from_millis(10)).unwrap().len();
    }
    a.commit().unwrap();
    // b's join starts a generation a has not seen; a still owns all three partitions.
    let mut b = member(&log, "g", Assignor::Range);
    a.commit().unwrap();
    a.poll(Duration::from_millis(10)).unwrap(); // finishes the rebalance (revoke + commit)
    a.commit().unwrap();
    // What a released is b's now: a's commit of it is refused.
    let released: Vec<TopicPartition> = (0..3)
        .map(|p| TopicPartition::new("t", p))
        .filter(|tp| !a.assignment().contains(tp))
        .collect();
    assert_eq!(released.len(), 1);
    let refused = a.commit_offsets(&[(released[0].clone(), OffsetAndMetadata::new(0))]);
    assert!(
        matches!(refused, Err(Error::NotAssigned { .. })),
        "{refused:?}"
    );
    b.poll(Duration::from_millis(10)).unwrap();
    assert_eq!(a.assignment().len() + b.assignment().len(), 3);
    // b resumed where a's on_revoked commit left the partitions it took over.
    for tp in b.assignment() {
        assert_eq!(
            b.position(&tp.topic, tp.partition).unwrap(),
            log.committed_offset("g", &tp.topic, tp.partition)
                .unwrap()
                .map_or(0, |c| c.offset)
        );
    }
}

#[derive(Default)]
struct Record_ {
    lost: Mutex<Vec<TopicPartition>>,
    revoked: AtomicBool,
}

struct Watch(Arc<Record_>);
impl RebalanceListener for Watch {
    fn on_revoked(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
        self.0.revoked.store(true, Ordering::SeqCst);
    }
    fn on_lost(&mut self, _: &mut Consumer, partitions: &[TopicPartition]) {
        self.0.lost.lock().unwrap().extend_from_slice(partitions);
    }
}

#[test]
fn a_member_that_stops_polling_is_removed_and_its_partitions_move() {
    let (_d, log) = setup(2, 50);
    let config = || {
        ConsumerConfig::new("g")
            .max_poll_interval(Duration::from_millis(300))
            .max_poll_records(5)
    };
    let events = Arc::new(Record_::default());
    let mut silent = log.consumer(config()).unwrap();
    silent
        .subscribe_with(&["t"], Watch(events.clone()))
        .unwrap();
    let mut live = log.consumer(config()).unwrap();
    live.subscribe(&["t"]).unwrap();
    let mut settled = [silent, live];
    settle(&mut settled);
    let [mut silent, mut live] = settled;
    assert_eq!(silent.assignment().len(), 1);
    let first = silent.poll(Duration::from_millis(50)).unwrap();
    assert!(!first.is_empty());
    // `silent` stops polling; `live` keeps going and takes over after max_poll_interval.
    let tp = &first[0];
    let mut taken_over = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while taken_over.is_empty() {
        assert!(Instant::now() < deadline);
        let got = live.poll(Duration::from_millis(50)).unwrap();
        taken_over.extend(got.into_iter().filter(|r| r.partition == tp.partition));
    }
    assert_eq!(live.assignment().len(), 2);
    assert!(matches!(silent.commit(), Err(Error::MemberFenced { .. })));
    // It never committed, so `live` re-reads what it had consumed: at-least-once, nothing
    // skipped.
    assert_eq!(taken_over[0].offset, 0);
    // Its next poll reports the loss (not a revoke: it may not commit) and rejoins.
    silent.poll(Duration::from_millis(10)).unwrap();
    assert_eq!(events.lost.lock().unwrap().len(), 1);
    assert!(!events.revoked.load(Ordering::SeqCst));
    assert_eq!(log.groups().unwrap()[0].members.len(), 2);
}

#[test]
fn sticky_assignor_moves_only_what_balance_requires() {
    let (_d, log) = setup(6, 0);
    let mut members = vec![
        member(&log, "g", Assignor::Sticky),
        member(&log, "g", Assignor::Sticky),
    ];
    settle(&mut members);
    let before = owners(&members);
    members.push(member(&log, "g", Assignor::Sticky));
    settle(&mut members);
    let after = owners(&members);
    let moved = after
        .iter()
        .filter(|(tp, owner)| before.get(*tp) != Some(owner))
        .count();
    assert_eq!(moved, 2, "before {before:?} after {after:?}");
    assert!(members.iter().all(|m| m.assignment().len() == 2));
}

#[test]
fn groups_read_the_same_topic_independently() {
    let (_d, log) = setup(2, 20);
    let mut a = member(&log, "alpha", Assignor::Range);
    let mut b = member(&log, "beta", Assignor::RoundRobin);
    let drain = |c: &mut Consumer| {
        let mut got = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < 40 {
            assert!(Instant::now() < deadline);
            for r in c.poll(Duration::from_millis(20)).unwrap() {
                got.insert((r.partition, r.offset));
            }
        }
        c.commit().unwrap();
        got
    };
    assert_eq!(drain(&mut a), drain(&mut b));
    let names: Vec<String> = log.groups().unwrap().into_iter().map(|g| g.group).collect();
    assert_eq!(names, vec!["alpha", "beta"]);
    assert!(log.group_lag("alpha").unwrap().iter().all(|l| l.lag == 0));
}

#[test]
fn parked_members_rebalance_promptly_in_threads() {
    // Members block in long polls in their own threads; a join must still reach them quickly
    // (the coordinator wakes parked members) and the new member gets partitions.
    let (_d, log) = setup(4, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..2 {
        let log = log.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut c = member(&log, "g", Assignor::RoundRobin);
            while !stop.load(Ordering::SeqCst) {
                c.poll(Duration::from_secs(30)).unwrap();
            }
            c.close().unwrap();
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut third = member(&log, "g", Assignor::RoundRobin);
    let t = Instant::now();
    while third.assignment().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "parked members never released"
        );
        third.poll(Duration::from_millis(100)).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    // Wake the parked threads with data.
    for p in 0..4 {
        log.partition("t", p)
            .unwrap()
            .append(&[Record::new("x")])
            .unwrap();
    }
    for h in handles {
        h.join().unwrap();
    }
}
