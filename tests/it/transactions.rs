//! Transactions end to end through the public API: visibility under both isolation levels,
//! the last stable offset, markers that readers step over, offsets in a transaction, fencing,
//! calls out of order, timeouts, and what a restart does with a transaction left open.

use std::time::Duration;

use annals::{
    ConsumerConfig, ConsumerGroupMetadata, Error, IsolationLevel, Log, OffsetAndMetadata,
    ProducerConfig, Record, TopicConfig, TopicPartition, TransactionState,
};

use crate::common::*;

const TOPIC: &str = "out";

fn open() -> (tempfile::TempDir, Log) {
    TestLog::temp()
        .no_maintenance()
        .topic(TOPIC, TopicConfig::default().partitions(3))
        .open_temp()
}

fn txn_producer(log: &Log, id: &str) -> annals::Producer {
    let p = log
        .producer(ProducerConfig::default().transactional_id(id))
        .expect("transactional producer");
    p.init_transactions().expect("init_transactions");
    p
}

/// Every value a consumer at `isolation` reads from the whole topic, as strings, and its
/// positions afterwards.
fn read_all(log: &Log, isolation: IsolationLevel) -> (Vec<String>, Vec<u64>) {
    let mut c = log
        .consumer(ConsumerConfig::new("reader").isolation_level(isolation))
        .unwrap();
    let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new(TOPIC, p)).collect();
    c.assign(&tps).unwrap();
    let mut values = Vec::new();
    for _ in 0..20 {
        let got = c.poll(Duration::from_millis(20)).unwrap();
        if got.is_empty() {
            break;
        }
        values.extend(
            got.iter()
                .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()),
        );
    }
    let positions = (0..3).map(|p| c.position(TOPIC, p).unwrap()).collect();
    values.sort();
    (values, positions)
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:03}")).collect();
    v.sort();
    v
}

#[test]
fn committed_records_appear_together_and_aborted_ones_never() {
    let (_dir, log) = open();
    let p = txn_producer(&log, "t1");
    p.begin_transaction().unwrap();
    for i in 0..30 {
        p.send(TOPIC, Record::new(format!("c-{i:03}")).key(format!("k{i}")))
            .unwrap();
    }
    p.flush().unwrap();
    // Open: written, not stable.
    for id in 0..3 {
        let part = log.partition(TOPIC, id).unwrap();
        assert!(part.high_watermark() > 0, "partition {id} got records");
        assert_eq!(part.last_stable_offset(), 0, "partition {id}");
    }
    assert_eq!(
        read_all(&log, IsolationLevel::ReadCommitted).0,
        Vec::<String>::new()
    );
    assert_eq!(
        read_all(&log, IsolationLevel::ReadUncommitted).0,
        values("c", 30)
    );
    let open = log.transactions().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].transactional_id, "t1");
    assert_eq!(open[0].state, TransactionState::Ongoing);
    assert_eq!(open[0].partitions.len(), 3);
    p.commit_transaction().unwrap();
    assert!(log.transactions().unwrap().is_empty());
    let (committed, positions) = read_all(&log, IsolationLevel::ReadCommitted);
    assert_eq!(committed, values("c", 30));
    for id in 0..3 {
        let part = log.partition(TOPIC, id).unwrap();
        // Data + the COMMIT marker, which the reader stepped over.
        assert_eq!(part.last_stable_offset(), part.high_watermark());
        assert_eq!(
            positions[id as usize],
            part.high_watermark(),
            "partition {id}"
        );
    }

    p.begin_transaction().unwrap();
    for i in 0..30 {
        p.send(TOPIC, Record::new(format!("a-{i:03}")).key(format!("k{i}")))
            .unwrap();
    }
    p.abort_transaction().unwrap();
    let (committed, positions) = read_all(&log, IsolationLevel::ReadCommitted);
    assert_eq!(
        committed,
        values("c", 30),
        "aborted records are never read committed"
    );
    let mut all = values("c", 30);
    all.extend(values("a", 30));
    all.sort();
    assert_eq!(read_all(&log, IsolationLevel::ReadUncommitted).0, all);
    for id in 0..3 {
        let part = log.partition(TOPIC, id).unwrap();
        assert_eq!(
            positions[id as usize],
            part.high_watermark(),
            "partition {id}"
        );
        // Partition::read never returns a marker either.
        let records = part.read(0, 1 << 20).unwrap();
        assert!(records
            .iter()
            .all(|r| r.key.as_deref() != Some(&[0u8, 0, 0, 0][..])));
    }

    // A third transaction after an abort still commits (its epoch moved on twice).
    let (_, e0) = p.producer_id().unwrap();
    p.begin_transaction().unwrap();
    p.send(TOPIC, Record::new("z-000").key("k")).unwrap();
    p.commit_transaction().unwrap();
    assert_eq!(p.producer_id().unwrap().1, e0 + 1);
    assert_eq!(read_all(&log, IsolationLevel::ReadCommitted).0.len(), 31);
    log.close().unwrap();
}

#[test]
fn offsets_sent_to_a_transaction_count_exactly_when_it_commits() {
    let (_dir, log) = open();
    log.create_topic("in", TopicConfig::default()).unwrap();
    let p = txn_producer(&log, "copier");
    let tp = TopicPartition::new("in", 0);
    let group = ConsumerGroupMetadata::new("copy-group");

    p.begin_transaction().unwrap();
    p.send(TOPIC, Record::new("x")).unwrap();
    p.send_offsets_to_transaction(&[(tp.clone(), OffsetAndMetadata::new(7))], &group)
        .unwrap();
    assert_eq!(log.committed_offset("copy-group", "in", 0).unwrap(), None);
    p.abort_transaction().unwrap();
    assert_eq!(log.committed_offset("copy-group", "in", 0).unwrap(), None);

    p.begin_transaction().unwrap();
    p.send(TOPIC, Record::new("y")).unwrap();
    p.send_offsets_to_transaction(&[(tp.clone(), OffsetAndMetadata::new(9))], &group)
        .unwrap();
    p.commit_transaction().unwrap();
    let got = log
        .committed_offset("copy-group", "in", 0)
        .unwrap()
        .unwrap();
    assert_eq!(got.offset, 9);
    let dir = log.dir().to_path_buf();
    log.close().unwrap();

    // The offsets cache replays the markers.
    let log = Log::open(&dir).unwrap();
    let got = log
        .committed_offset("copy-group", "in", 0)
        .unwrap()
        .unwrap();
    assert_eq!(got.offset, 9);
    log.close().unwrap();
}

#[test]
fn a_new_instance_fences_the_old_one_and_aborts_what_it_left_open() {
    let (_dir, log) = open();
    let old = txn_producer(&log, "worker");
    old.begin_transaction().unwrap();
    old.send(TOPIC, Record::new("zombie").key("k")).unwrap();
    old.flush().unwrap();

    let new = txn_producer(&log, "worker");
    // The old instance's open transaction was aborted by the new instance's init.
    assert!(log.transactions().unwrap().is_empty());
    assert_eq!(
        read_all(&log, IsolationLevel::ReadCommitted).0,
        Vec::<String>::new()
    );
    let err = old.commit_transaction().unwrap_err();
    assert!(matches!(err, Error::ProducerFenced { .. }), "{err}");
    assert!(err.is_fatal(), "{err}");
    // Every later call of the zombie fails for good.
    let err = old.begin_transaction().unwrap_err();
    assert!(err.is_fatal(), "{err}");

    new.begin_transaction().unwrap();
    new.send(TOPIC, Record::new("fresh").key("k")).unwrap();
    new.commit_transaction().unwrap();
    assert_eq!(
        read_all(&log, IsolationLevel::ReadCommitted).0,
        vec!["fresh"]
    );
    log.close().unwrap();
}

#[test]
fn calls_out_of_order_are_refused_with_invalid_txn_state() {
    let (_dir, log) = open();
    let p = log
        .producer(ProducerConfig::default().transactional_id("order"))
        .unwrap();
    let invalid = |r: annals::Result<()>, what: &str| match r {
        Err(e @ Error::InvalidTxnState { .. }) => {
            assert!(!e.is_fatal() && !e.requires_abort(), "{what}: {e}")
        }
        other => panic!("{what}: {other:?}"),
    };
    invalid(p.begin_transaction(), "begin before init");
    invalid(
        p.send(TOPIC, Record::new("x")).map(|_| ()),
        "send before init",
    );
    p.init_transactions().unwrap();
    invalid(p.init_transactions(), "init twice");
    invalid(p.commit_transaction(), "commit without begin");
    invalid(p.abort_transaction(), "abort without begin");
    invalid(
        p.send(TOPIC, Record::new("x")).map(|_| ()),
        "send outside a transaction",
    );
    p.begin_transaction().unwrap();
    invalid(p.begin_transaction(), "begin twice");
    // An empty transaction commits.
    p.commit_transaction().unwrap();

    // A plain producer has no transactions.
    let plain = log.producer(ProducerConfig::default()).unwrap();
    invalid(plain.begin_transaction(), "begin on a plain producer");

    // Bad configurations.
    for bad in [
        ProducerConfig::default().transactional_id(""),
        ProducerConfig::default()
            .transactional_id("x")
            .idempotence(false),
        ProducerConfig::default()
            .transactional_id("x")
            .stable_id("y"),
        ProducerConfig::default()
            .transactional_id("x")
            .transaction_timeout(Duration::from_secs(16 * 60)),
        ProducerConfig::default()
            .transactional_id("x")
            .transaction_timeout(Duration::ZERO),
    ] {
        assert!(
            matches!(log.producer(bad.clone()), Err(Error::InvalidConfig { .. })),
            "{bad:?}"
        );
    }
    log.close().unwrap();
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let (_dir, log) = open();
    let p = log
        .producer(
            ProducerConfig::default()
                .transactional_id("slow")
                .transaction_timeout(Duration::from_millis(50)),
        )
        .unwrap();
    p.init_transactions().unwrap();
    p.begin_transaction().unwrap();
    p.send(TOPIC, Record::new("late").key("k")).unwrap();
    p.flush().unwrap();
    let part = log
        .partition(TOPIC, annals::partition_for_key(b"k", 3))
        .unwrap();
    assert!(part.last_stable_offset() < part.high_watermark());
    std::thread::sleep(Duration::from_millis(120));
    let report = log.run_maintenance().unwrap();
    assert_eq!(report.transactions_timed_out, 1);
    assert_eq!(part.last_stable_offset(), part.high_watermark());
    let err = p.commit_transaction().unwrap_err();
    assert!(matches!(err, Error::TransactionTimedOut { .. }), "{err}");
    assert!(err.is_fatal());
    assert_eq!(
        read_all(&log, IsolationLevel::ReadCommitted).0,
        Vec::<String>::new()
    );
    log.close().unwrap();
}

#[test]
fn a_transaction_left_open_at_close_is_aborted_when_the_log_opens_again() {
    let (dir, log) = open();
    let p = txn_producer(&log, "crashy");
    p.begin_transaction().unwrap();
    for i in 0..10 {
        p.send(TOPIC, Record::new(format!("lost-{i}")).key(format!("k{i}")))
            .unwrap();
    }
    p.flush().unwrap();
    drop(p);
    log.close().unwrap();

    let log = Log::open(dir.path()).unwrap();
    for id in 0..3 {
        let part = log.partition(TOPIC, id).unwrap();
        assert_eq!(
            part.last_stable_offset(),
            part.high_watermark(),
            "partition {id}"
        );
    }
    assert_eq!(
        read_all(&log, IsolationLevel::ReadCommitted).0,
        Vec::<String>::new()
    );
    assert_eq!(read_all(&log, IsolationLevel::ReadUncommitted).0.len(), 10);
    // The id goes on with a new instance.
    let p = txn_producer(&log, "crashy");
    p.begin_transaction().unwrap();
    p.send(TOPIC, Record::new("kept").key("k")).unwrap();
    p.commit_transaction().unwrap();
    assert_eq!(
        read_all(&log, IsolationLevel::ReadCommitted).0,
        vec!["kept"]
    );
    log.close().unwrap();
}

#[test]
fn a_failed_send_makes_the_commit_require_an_abort() {
    let (_dir, log) = open();
    let p = txn_producer(&log, "failing");
    p.begin_transaction().unwrap();
    p.send(TOPIC, Record::new("ok").key("k")).unwrap();
    p.flush().unwrap();
    // The topic goes away under the transaction: the next batch to it fails.
    let doomed = "doomed";
    log.create_topic(doomed, TopicConfig::default()).unwrap();
    let delivery = p.send(doomed, Record::new("x")).unwrap();
    log.delete_topic(doomed).unwrap();
    let _ = delivery.wait();
    match p.commit_transaction() {
        Err(e) if e.requires_abort() => {}
        // The batch may have been written before the deletion; then the commit goes through.
        Ok(()) => return log.close().unwrap(),
        other => panic!("{other:?}"),
    }
    p.abort_transaction().unwrap();
    p.begin_transaction().unwrap();
    p.send(TOPIC, Record::new("after").key("k")).unwrap();
    p.commit_transaction().unwrap();
    assert_eq!(
        read_all(&log, IsolationLevel::ReadCommitted).0,
        vec!["after"]
    );
    log.close().unwrap();
}

#[test]
fn an_idle_transactional_id_expires_and_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Log::builder(dir.path())
            .maintenance_interval(None)
            .transactional_id_expiration(Duration::from_millis(50))
            .open()
            .unwrap()
    };
    let log = open();
    log.create_topic(TOPIC, TopicConfig::default()).unwrap();
    let old = txn_producer(&log, "idle");
    old.begin_transaction().unwrap();
    old.send(TOPIC, Record::new("kept")).unwrap();
    old.commit_transaction().unwrap();
    let (first_id, _) = old.producer_id().unwrap();
    std::thread::sleep(Duration::from_millis(120));
    log.run_maintenance().unwrap();
    // The instance that held it cannot go on.
    old.begin_transaction().unwrap();
    let err = old.send(TOPIC, Record::new("late")).unwrap_err();
    assert!(matches!(err, Error::InvalidTxnState { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    log.close().unwrap();
    // Forgotten durably: a new instance after a reopen gets a new producer id.
    let log = open();
    let new = txn_producer(&log, "idle");
    assert_ne!(new.producer_id().unwrap().0, first_id);
    new.begin_transaction().unwrap();
    new.send(TOPIC, Record::new("fresh")).unwrap();
    new.commit_transaction().unwrap();
    log.close().unwrap();
    // Bad values are refused.
    for bad in [Duration::ZERO, Duration::from_micros(1500)] {
        let err = Log::builder(dir.path())
            .transactional_id_expiration(bad)
            .open()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
    }
}
