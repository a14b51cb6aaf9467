//! A consumer at the edges of its life: its topic deleted while it polls, its log closed under
//! it, and a panic unwinding through it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::TestLog;
use annals::{
    Consumer, ConsumerConfig, Error, Log, OffsetAndMetadata, ProducerConfig, RebalanceListener,
    Record, TopicConfig, TopicPartition,
};

fn open() -> (tempfile::TempDir, Log) {
    TestLog::temp().open_temp()
}

fn append(log: &Log, topic: &str, partition: u32, n: usize) {
    let recs: Vec<Record> = (0..n).map(|i| Record::new(format!("v{i}"))).collect();
    log.partition(topic, partition)
        .unwrap()
        .append(&recs)
        .unwrap();
}

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn is_unknown(r: &annals::Result<Vec<annals::ConsumedRecord>>, topic: &str) -> bool {
    matches!(r, Err(Error::UnknownTopic { topic: t }) if t == topic)
}

#[test]
fn a_manual_consumer_gets_unknown_topic_once_when_its_topic_is_deleted_while_it_polls() {
    let (_d, log) = open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    // Parked in a long poll when the topic goes.
    let polling = std::thread::spawn(move || {
        let r = c.poll(Duration::from_secs(20));
        (c, r)
    });
    std::thread::sleep(Duration::from_millis(200));
    log.delete_topic("t").unwrap();
    let (mut c, r) = polling.join().unwrap();
    assert!(is_unknown(&r, "t"), "{r:?}");
    assert!(c.assignment().is_empty());
    // Once: the assignment is empty now, and polling it is not a misuse.
    for _ in 0..3 {
        let r = c.poll(Duration::from_millis(10));
        assert!(matches!(&r, Ok(v) if v.is_empty()), "{r:?}");
    }
    // A topic created again under the name is another topic: assign it to read it.
    log.create_topic("t", TopicConfig::default()).unwrap();
    append(&log, "t", 0, 2);
    c.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(c.poll(Duration::from_secs(5)).unwrap().len(), 2);
}

#[test]
fn records_read_in_the_poll_that_finds_a_deleted_topic_are_returned_first() {
    let (_d, log) = open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    log.create_topic("u", TopicConfig::default()).unwrap();
    append(&log, "u", 0, 5);
    let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
    c.assign(&[tp("t", 0), tp("u", 0)]).unwrap();
    log.delete_topic("t").unwrap();
    // One pass finds t gone and reads u: the records come back, the error at the next poll.
    let got = c.poll(Duration::from_secs(5)).unwrap();
    assert_eq!(got.len(), 5);
    let r = c.poll(Duration::from_millis(10));
    assert!(is_unknown(&r, "t"), "{r:?}");
    assert_eq!(c.assignment(), vec![tp("u", 0)]);
    append(&log, "u", 0, 1);
    let got = c.poll(Duration::from_secs(5)).unwrap();
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![5]);
}

#[test]
fn a_manual_consumer_of_a_topic_deleted_and_created_again_gets_unknown_topic() {
    let (_d, log) = open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    append(&log, "t", 0, 3);
    let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(c.poll(Duration::from_secs(5)).unwrap().len(), 3);
    log.delete_topic("t").unwrap();
    log.create_topic("t", TopicConfig::default()).unwrap();
    append(&log, "t", 0, 1);
    let r = c.poll(Duration::from_millis(100));
    assert!(is_unknown(&r, "t"), "{r:?}");
    assert!(c.assignment().is_empty());
}

#[derive(Default)]
struct Events {
    assigned: Vec<TopicPartition>,
    revoked: Vec<TopicPartition>,
    lost: Vec<TopicPartition>,
}

struct Watch(Arc<Mutex<Events>>);
impl RebalanceListener for Watch {
    fn on_assigned(&mut self, _: &mut Consumer, p: &[TopicPartition]) {
        self.0.lock().unwrap().assigned.extend_from_slice(p);
    }
    fn on_revoked(&mut self, _: &mut Consumer, p: &[TopicPartition]) {
        self.0.lock().unwrap().revoked.extend_from_slice(p);
    }
    fn on_lost(&mut self, _: &mut Consumer, p: &[TopicPartition]) {
        self.0.lock().unwrap().lost.extend_from_slice(p);
    }
}

/// Polls until `done` holds (or panics after a generous deadline); every poll must succeed.
fn poll_until(c: &mut Consumer, what: &str, mut done: impl FnMut(&Consumer) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(c) {
        assert!(Instant::now() < deadline, "never: {what}");
        c.poll(Duration::from_millis(20)).unwrap();
    }
}

#[test]
fn a_group_member_gets_on_lost_when_its_topic_is_deleted_while_it_polls() {
    let (_d, log) = open();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    log.create_topic("u", TopicConfig::default()).unwrap();
    let events = Arc::new(Mutex::new(Events::default()));
    let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
    c.subscribe_with(&["t", "u"], Watch(events.clone()))
        .unwrap();
    poll_until(&mut c, "all three partitions", |c| {
        c.assignment().len() == 3
    });

    // Parked in long polls when the topic goes.
    let watching = events.clone();
    let polling = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while watching.lock().unwrap().lost.is_empty() {
            assert!(Instant::now() < deadline, "on_lost never ran");
            c.poll(Duration::from_millis(500)).unwrap();
        }
        c
    });
    std::thread::sleep(Duration::from_millis(200));
    log.delete_topic("t").unwrap();
    let mut c = polling.join().unwrap();
    {
        let e = events.lock().unwrap();
        assert_eq!(e.lost, vec![tp("t", 0), tp("t", 1)]);
        assert!(e.revoked.is_empty(), "{:?}", e.revoked);
    }
    assert_eq!(c.assignment(), vec![tp("u", 0)]);
    assert_eq!(c.subscription(), vec!["t", "u"]);
    let group = &log.groups().unwrap()[0];
    assert_eq!(group.members[0].assignment, vec![tp("u", 0)]);
    c.poll(Duration::from_millis(10)).unwrap();
    append(&log, "u", 0, 1);
    poll_until(&mut c, "u still read", |c| {
        c.lag().unwrap()[0].position == Some(1)
    });

    // The subscription stays: a topic created again under the name is assigned afresh.
    events.lock().unwrap().assigned.clear();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    poll_until(&mut c, "the new t assigned", |c| c.assignment().len() == 3);
    assert_eq!(
        events.lock().unwrap().assigned,
        vec![tp("t", 0), tp("t", 1)]
    );

    // Deleted and created again between two polls: the coordinator sees the same partition
    // counts, the member sees its handles closed — lost, then granted again.
    events.lock().unwrap().lost.clear();
    events.lock().unwrap().assigned.clear();
    log.delete_topic("t").unwrap();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    append(&log, "t", 1, 4);
    let mut from_t1 = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while from_t1.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the new t-1 never read: {from_t1:?}"
        );
        let got = c.poll(Duration::from_millis(20)).unwrap();
        from_t1.extend(
            got.iter()
                .filter(|r| &*r.topic == "t" && r.partition == 1)
                .map(|r| r.offset),
        );
    }
    assert_eq!(from_t1, vec![0, 1, 2, 3]);
    assert_eq!(events.lock().unwrap().lost, vec![tp("t", 0), tp("t", 1)]);
    assert_eq!(c.assignment().len(), 3);
}

#[test]
fn a_fenced_member_whose_only_topic_was_deleted_keeps_its_subscription() {
    let (_d, log) = open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    let events = Arc::new(Mutex::new(Events::default()));
    let mut c = log
        .consumer(ConsumerConfig::new("g").max_poll_interval(Duration::from_millis(50)))
        .unwrap();
    c.subscribe_with(&["t"], Watch(events.clone())).unwrap();
    poll_until(&mut c, "t-0 assigned", |c| c.assignment().len() == 1);
    // (A stall of the loaded machine may have fenced it already: count from here.)
    events.lock().unwrap().lost.clear();
    // Silent past max_poll_interval, and meanwhile the topic goes.
    std::thread::sleep(Duration::from_millis(200));
    log.delete_topic("t").unwrap();
    for _ in 0..5 {
        let r = c.poll(Duration::from_millis(20));
        assert!(matches!(&r, Ok(v) if v.is_empty()), "{r:?}");
    }
    assert_eq!(events.lock().unwrap().lost, vec![tp("t", 0)]);
    assert_eq!(c.subscription(), vec!["t"]);
    log.create_topic("t", TopicConfig::default()).unwrap();
    poll_until(&mut c, "the new t-0 assigned", |c| {
        c.assignment().len() == 1
    });
}

/// A commit for a partition whose topic was deleted — found before any poll noticed, even when
/// a topic of that name was created again — must not land on the new topic: a new reader would
/// start past records it never read.
#[test]
fn a_commit_for_a_deleted_topic_never_lands_on_a_topic_created_again_under_its_name() {
    for subscribed in [false, true] {
        let (_d, log) = open();
        log.create_topic("t", TopicConfig::default()).unwrap();
        append(&log, "t", 0, 5);
        let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
        if subscribed {
            c.subscribe(&["t"]).unwrap();
        } else {
            c.assign(&[tp("t", 0)]).unwrap();
        }
        poll_until(&mut c, "5 records read", |c| {
            c.lag().unwrap().first().and_then(|l| l.position) == Some(5)
        });
        log.delete_topic("t").unwrap();
        log.create_topic("t", TopicConfig::default()).unwrap();
        append(&log, "t", 0, 10);
        let r = c.commit();
        assert!(
            matches!(&r, Err(Error::UnknownTopic { topic }) if topic == "t"),
            "subscribed {subscribed}: {r:?}"
        );
        assert_eq!(log.committed_offset("g", "t", 0).unwrap(), None);
        drop(c);
        let mut fresh = log.consumer(ConsumerConfig::new("g")).unwrap();
        fresh.assign(&[tp("t", 0)]).unwrap();
        let first = fresh.poll(Duration::from_secs(5)).unwrap();
        assert_eq!(first[0].offset, 0, "subscribed {subscribed}");
    }
}

/// Asserts that each expression is `Err(Error::Closed)`, naming the one that is not.
macro_rules! all_closed {
    ($($call:expr),+ $(,)?) => {
        $(
            let r = $call;
            assert!(matches!(r, Err(Error::Closed)), "{} returned {:?}", stringify!($call), r);
        )+
    };
}

struct NoListener;
impl RebalanceListener for NoListener {}

#[test]
fn after_log_close_every_call_on_the_log_and_its_consumers_returns_closed() {
    let (_d, log) = open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    append(&log, "t", 0, 3);
    let mut member = log.consumer(ConsumerConfig::new("g")).unwrap();
    member.subscribe(&["t"]).unwrap();
    poll_until(&mut member, "member reads", |c| {
        c.lag().unwrap().first().and_then(|l| l.position) == Some(3)
    });
    member.commit().unwrap();
    let mut manual = log.consumer(ConsumerConfig::new("m")).unwrap();
    manual.assign(&[tp("t", 0)]).unwrap();
    assert_eq!(manual.poll(Duration::from_secs(5)).unwrap().len(), 3);
    log.close().unwrap();

    all_closed!(
        log.create_topic("v", TopicConfig::default()),
        log.delete_topic("t"),
        log.alter_topic("t", TopicConfig::default()),
        log.topic_config("t"),
        log.partition("t", 0),
        log.producer(ProducerConfig::default()),
        log.sync(),
        log.run_maintenance(),
        log.consumer(ConsumerConfig::new("g")),
        log.groups(),
        log.group_lag("g"),
        log.committed_offset("g", "t", 0),
    );
    // `topics` returns a plain list by contract: empty once closed.
    assert!(log.topics().is_empty());
    log.close().unwrap();

    for c in [&mut member, &mut manual] {
        let mut records = Vec::new();
        let mut batches = Vec::new();
        all_closed!(
            c.poll(Duration::from_millis(10)),
            c.poll_into(Duration::from_millis(10), &mut records),
            c.poll_batches(Duration::from_millis(10), &mut batches),
            c.position("t", 0),
            c.seek("t", 0, 0),
            c.seek_to_beginning::<TopicPartition>(&[]),
            c.seek_to_end::<TopicPartition>(&[]),
            c.seek_to_timestamp(0),
            c.pause(&[tp("t", 0)]),
            c.resume(&[tp("t", 0)]),
            c.commit(),
            c.commit_offsets(&[(tp("t", 0), OffsetAndMetadata::new(1))]),
            c.committed("t", 0),
            c.lag(),
            c.assign(&[tp("t", 0)]),
            c.subscribe(&["t"]),
            c.subscribe_with(&["t"], NoListener),
            c.unsubscribe(),
            c.close(),
        );
        // Closing twice is fine.
        c.close().unwrap();
    }
}

fn auto_committing(log: &Log) -> Consumer {
    let mut c = log
        .consumer(ConsumerConfig::new("g").enable_auto_commit(true))
        .unwrap();
    c.assign(&[tp("t", 0)]).unwrap();
    c
}

#[test]
fn a_consumer_dropped_while_unwinding_from_a_panic_does_not_auto_commit() {
    let (_d, log) = open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    append(&log, "t", 0, 5);

    let c = auto_committing(&log);
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let mut c = c;
        let got = c.poll(Duration::from_secs(5)).unwrap();
        assert_eq!(got.len(), 5);
        panic!("the application failed while processing the records");
    }));
    assert!(outcome.is_err());
    // The records were never processed: they are read again, not skipped.
    assert_eq!(log.committed_offset("g", "t", 0).unwrap(), None);
    let mut again = auto_committing(&log);
    assert_eq!(again.poll(Duration::from_secs(5)).unwrap()[0].offset, 0);

    // Without a panic, drop auto-commits as before.
    drop(again);
    assert_eq!(
        log.committed_offset("g", "t", 0).unwrap().unwrap().offset,
        5
    );
}

#[test]
fn a_group_member_dropped_while_unwinding_leaves_without_committing() {
    let (_d, log) = open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    append(&log, "t", 0, 5);
    let mut c = log
        .consumer(ConsumerConfig::new("g").enable_auto_commit(true))
        .unwrap();
    c.subscribe(&["t"]).unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let mut got = 0;
        while got < 5 {
            got += c.poll(Duration::from_secs(5)).unwrap().len();
        }
        panic!("the application failed while processing the records");
    }));
    assert!(outcome.is_err());
    assert_eq!(log.committed_offset("g", "t", 0).unwrap(), None);
    // It left the group: its partition is free for the next member at once.
    assert!(log.groups().unwrap().iter().all(|g| g.members.is_empty()));
}
