//! Compaction of a topic with transactions, after Kafka's `LogCleanerTest` transaction cases:
//! committed records compact like any others, an aborted transaction's records go whatever
//! their keys (also when it spans segments), they never shadow an older record of their key,
//! markers stay, nothing at or past the last stable offset is cleaned, the producer goes on
//! after an abort, and every reopen — clean, or with the checkpoint lost — still hides what was
//! aborted.

use std::collections::BTreeMap;
use std::time::Duration;

use annals::{
    CleanupPolicy, IsolationLevel, Log, Partition, ProducerConfig, Record, StoredRecord,
    TopicConfig,
};

use crate::common::*;

const TOPIC: &str = "compacted";

fn config() -> TopicConfig {
    TopicConfig::default()
        .cleanup_policy(CleanupPolicy::Compact)
        .segment_bytes(1024)
        .min_cleanable_dirty_ratio(0.0)
        .min_compaction_lag_ms(Duration::ZERO)
}

fn all(p: &Partition, isolation: IsolationLevel) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let mut at = p.log_start_offset();
    let end = match isolation {
        IsolationLevel::ReadCommitted => p.last_stable_offset(),
        _ => p.high_watermark(),
    };
    while at < end {
        let mut got = Vec::new();
        let next = p
            .read_isolated_into(at, 1 << 20, isolation, &mut got)
            .unwrap();
        out.extend(got);
        assert!(next > at, "a read from {at} made no progress");
        at = next;
    }
    out
}

/// Key → value of the latest record of each key, as read at `isolation`.
fn latest(p: &Partition, isolation: IsolationLevel) -> BTreeMap<String, String> {
    all(p, isolation)
        .iter()
        .filter_map(|r| {
            let k = String::from_utf8(r.key.as_ref()?.to_vec()).unwrap();
            let v = String::from_utf8(r.value.as_ref()?.to_vec()).unwrap();
            Some((k, v))
        })
        .collect()
}

fn values_of(p: &Partition, isolation: IsolationLevel, key: &str) -> Vec<String> {
    all(p, isolation)
        .iter()
        .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

fn txn(p: &annals::Producer, records: &[(&str, String)], commit: bool) {
    p.begin_transaction().unwrap();
    for (k, v) in records {
        p.send(TOPIC, Record::new(v.clone()).key(k.to_string()))
            .unwrap();
    }
    if commit {
        p.commit_transaction().unwrap();
    } else {
        p.abort_transaction().unwrap();
    }
}

/// Rolls the active segment away with plain filler records, so what came before is cleanable.
fn roll(p: &Partition, tag: &str) {
    for i in 0..12 {
        p.append(&[
            Record::new(format!("{tag} filler {i:02} {}", "-".repeat(60)))
                .key(format!("filler-{tag}-{i}")),
        ])
        .unwrap();
    }
}

fn keyed(prefix: &str, n: usize, value: &str) -> Vec<(&'static str, String)> {
    (0..n)
        .map(|i| {
            let k: &'static str = Box::leak(format!("{prefix}{i}").into_boxed_str());
            (k, format!("{value} {i}"))
        })
        .collect()
}

#[test]
fn compaction_keeps_what_committed_drops_what_aborted_and_stops_at_the_stable_offset() {
    let (dir, log) = TestLog::temp().no_maintenance().open_temp();
    log.create_topic(TOPIC, config()).unwrap();
    let part = log.partition(TOPIC, 0).unwrap();
    let producer = log
        .producer(ProducerConfig::default().transactional_id("cleaner-test"))
        .unwrap();
    producer.init_transactions().unwrap();

    // A plain record that an aborted transaction must not shadow.
    part.append(&[Record::new("plain five").key("k5")]).unwrap();
    // Committed twice: the second wins.
    txn(&producer, &keyed("k", 10, "first"), true);
    txn(&producer, &keyed("k", 5, "second"), true);
    // Aborted: unique keys (nothing else would remove them), and k5 again.
    let mut aborted = keyed("gone", 30, "aborted");
    aborted.push(("k5", "aborted five".into()));
    txn(&producer, &aborted, false);
    // An aborted transaction spanning segments: larger values, one per segment or so.
    let big: Vec<(&str, String)> = (0..8)
        .map(|i| {
            let k: &'static str = Box::leak(format!("span{i}").into_boxed_str());
            (k, format!("spanning {i} {}", "x".repeat(400)))
        })
        .collect();
    txn(&producer, &big, false);
    roll(&part, "a");
    assert!(
        part.segment_count() >= 4,
        "{} segments",
        part.segment_count()
    );

    let report = part.compact().unwrap();
    assert!(report.records_removed >= 5 + 31 + 8, "{report:?}");
    let committed = latest(&part, IsolationLevel::ReadCommitted);
    for i in 0..5 {
        assert_eq!(committed[&format!("k{i}")], format!("second {i}"));
    }
    for i in 6..10 {
        assert_eq!(committed[&format!("k{i}")], format!("first {i}"));
    }
    // k5: the first transaction's value superseded the plain one; the aborted one never counts.
    assert_eq!(committed["k5"], "first 5");
    // Aborted records are gone from the log altogether, whatever their keys.
    let uncommitted = all(&part, IsolationLevel::ReadUncommitted);
    assert!(
        uncommitted.iter().all(|r| {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
            !v.starts_with("aborted") && !v.starts_with("spanning")
        }),
        "aborted records survived compaction"
    );
    // Superseded committed records are gone too.
    assert_eq!(
        values_of(&part, IsolationLevel::ReadUncommitted, "k0"),
        ["second 0"]
    );

    // Nothing at or past the stable offset is cleaned: an open transaction holds it back.
    producer.begin_transaction().unwrap();
    producer
        .send(TOPIC, Record::new("open seven").key("k7"))
        .unwrap();
    producer.flush().unwrap();
    let stable = part.last_stable_offset();
    part.append(&[Record::new("old eight").key("k8")]).unwrap();
    part.append(&[Record::new("new eight").key("k8")]).unwrap();
    roll(&part, "b");
    part.compact().unwrap();
    assert_eq!(part.last_stable_offset(), stable);
    assert_eq!(
        values_of(&part, IsolationLevel::ReadUncommitted, "k8"),
        ["first 8", "old eight", "new eight"],
        "records past the stable offset were cleaned"
    );
    // Once it commits, the rest compacts.
    producer.commit_transaction().unwrap();
    roll(&part, "c");
    part.compact().unwrap();
    assert_eq!(
        values_of(&part, IsolationLevel::ReadUncommitted, "k8"),
        ["new eight"]
    );
    assert_eq!(
        latest(&part, IsolationLevel::ReadCommitted)["k7"],
        "open seven"
    );

    // The producer goes on after the aborts and the cleaning (its last batches were kept).
    txn(&producer, &keyed("after", 3, "after"), false);
    txn(&producer, &keyed("after", 3, "after"), true);
    roll(&part, "d");
    part.compact().unwrap();
    let want = latest(&part, IsolationLevel::ReadCommitted);
    assert_eq!(want["after0"], "after 0");
    drop(part);
    producer.close().unwrap();
    log.close().unwrap();

    // Reopen cleanly, then with the checkpoint gone (the indexes are rebuilt from the log):
    // read_committed shows the same.
    let log = Log::open(dir.path()).unwrap();
    let part = log.partition(TOPIC, 0).unwrap();
    assert_eq!(latest(&part, IsolationLevel::ReadCommitted), want);
    drop(part);
    log.close().unwrap();
    std::fs::remove_file(dir.path().join(format!("{TOPIC}-0")).join("partition.ckpt")).unwrap();
    let log = Log::open(dir.path()).unwrap();
    let part = log.partition(TOPIC, 0).unwrap();
    assert_eq!(latest(&part, IsolationLevel::ReadCommitted), want);
    assert_eq!(part.last_stable_offset(), part.high_watermark());
    drop(part);
    log.close().unwrap();
}

#[test]
fn aborted_records_stay_hidden_when_compaction_keeps_them_and_the_log_reopens() {
    // An open transaction holds the stable offset back: compaction cleans what lies before it
    // and copies the rest — aborted transactions included — whole into the new segment, whose
    // .txnindex must keep hiding them after every kind of reopen.
    let (dir, log) = TestLog::temp().no_maintenance().open_temp();
    log.create_topic(TOPIC, config()).unwrap();
    let part = log.partition(TOPIC, 0).unwrap();
    for round in 0..3 {
        part.append(&[Record::new(format!("plain {round}")).key("p")])
            .unwrap();
    }
    let holder = log
        .producer(ProducerConfig::default().transactional_id("holder"))
        .unwrap();
    holder.init_transactions().unwrap();
    holder.begin_transaction().unwrap();
    holder.send(TOPIC, Record::new("held").key("h")).unwrap();
    holder.flush().unwrap();
    let producer = log
        .producer(ProducerConfig::default().transactional_id("hidden"))
        .unwrap();
    producer.init_transactions().unwrap();
    for round in 0..4 {
        txn(
            &producer,
            &keyed("a", 6, &format!("aborted round {round}")),
            false,
        );
        txn(
            &producer,
            &keyed("c", 6, &format!("committed round {round}")),
            true,
        );
    }
    roll(&part, "x");
    let report = part.compact().unwrap();
    assert!(report.records_removed >= 2, "{report:?}");
    assert_eq!(
        values_of(&part, IsolationLevel::ReadUncommitted, "p"),
        ["plain 2"]
    );
    let kept_aborted = all(&part, IsolationLevel::ReadUncommitted)
        .iter()
        .filter(|r| {
            r.value
                .as_deref()
                .is_some_and(|v| v.starts_with(b"aborted"))
        })
        .count();
    assert_eq!(
        kept_aborted, 24,
        "aborted records past the stable offset were touched"
    );
    holder.commit_transaction().unwrap();
    let want = latest(&part, IsolationLevel::ReadCommitted);
    assert!(want.keys().all(|k| !k.starts_with('a')), "{want:?}");
    assert_eq!(want["c0"], "committed round 3 0");
    assert_eq!(want["h"], "held");
    drop(part);
    holder.close().unwrap();
    producer.close().unwrap();
    drop(log); // closed by the drop
    for damage in ["none", "checkpoint", "txnindex", "flipped"] {
        let pdir = dir.path().join(format!("{TOPIC}-0"));
        let txn_indexes: Vec<_> = std::fs::read_dir(&pdir)
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|f| f.extension().is_some_and(|e| e == "txnindex"))
            .collect();
        assert!(!txn_indexes.is_empty(), "no .txnindex to damage");
        match damage {
            "checkpoint" => std::fs::remove_file(pdir.join("partition.ckpt")).unwrap(),
            // A torn index does not parse; it is rebuilt from the markers.
            "txnindex" => std::fs::write(&txn_indexes[0], b"torn").unwrap(),
            // A flipped byte parses, but its checksum is not the checkpoint's.
            "flipped" => {
                let mut bytes = std::fs::read(&txn_indexes[0]).unwrap();
                bytes[9] ^= 0x01; // the producer id's last byte
                std::fs::write(&txn_indexes[0], bytes).unwrap();
            }
            _ => {}
        }
        let log = Log::open(dir.path()).unwrap();
        let part = log.partition(TOPIC, 0).unwrap();
        assert_eq!(
            latest(&part, IsolationLevel::ReadCommitted),
            want,
            "after {damage}"
        );
        drop(part);
        log.close().unwrap();
    }
}

/// Control batches in `partition`'s segment files, read straight from the bytes.
fn markers_on_disk(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let h = annals::format::BatchHeader::parse(&bytes[at..]).unwrap();
            n += usize::from(h.is_control());
            at += h.total_len();
        }
    }
    n
}

#[test]
fn markers_go_once_their_transaction_left_nothing_and_the_delete_horizon_passed() {
    let (dir, log) = TestLog::temp().no_maintenance().open_temp();
    log.create_topic(TOPIC, config().delete_retention_ms(Duration::ZERO))
        .unwrap();
    let part = log.partition(TOPIC, 0).unwrap();
    let producer = log
        .producer(ProducerConfig::default().transactional_id("markers"))
        .unwrap();
    producer.init_transactions().unwrap();
    // Ten transactions over the same keys (each supersedes the one before), two aborted, and
    // a last one whose records stay.
    for t in 0..10 {
        txn(&producer, &keyed("k", 4, &format!("round {t}")), t % 5 != 3);
    }
    txn(&producer, &keyed("kept", 2, "kept"), true);
    roll(&part, "a");
    let pdir = dir.path().join(format!("{TOPIC}-0"));
    assert_eq!(markers_on_disk(&pdir), 11);
    // The first pass starts the delete horizon; the second, past it, removes every marker whose
    // transaction left no batch: all but round 9's (its records win) and the last one's.
    part.compact().unwrap();
    assert_eq!(
        markers_on_disk(&pdir),
        11,
        "markers went before the delete horizon"
    );
    roll(&part, "b"); // something new to clean, so a second pass runs
    part.compact().unwrap();
    assert_eq!(markers_on_disk(&pdir), 2, "markers left");
    let want = latest(&part, IsolationLevel::ReadCommitted);
    assert_eq!(want["k0"], "round 9 0");
    assert_eq!(want["kept0"], "kept 0");
    assert_eq!(part.last_stable_offset(), part.high_watermark());
    // The producer goes on; a reopen without the checkpoint (the state replayed from the log)
    // finds no transaction left open by a missing marker.
    txn(&producer, &keyed("k", 1, "after"), true);
    let want = latest(&part, IsolationLevel::ReadCommitted);
    drop(part);
    producer.close().unwrap();
    log.close().unwrap();
    std::fs::remove_file(pdir.join("partition.ckpt")).unwrap();
    let log = Log::open(dir.path()).unwrap();
    let part = log.partition(TOPIC, 0).unwrap();
    assert_eq!(latest(&part, IsolationLevel::ReadCommitted), want);
    assert_eq!(part.last_stable_offset(), part.high_watermark());
    assert!(log.transactions().unwrap().is_empty());
    drop(part);
    log.close().unwrap();
}
