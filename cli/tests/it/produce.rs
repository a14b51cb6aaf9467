//! `produce`: lines in, records out, read back with the annals API.

use annals::{partition_for_key, StoredRecord, TopicConfig};

use crate::common::{arg, assert_one_line_error, json_lines, open, run};

fn all_records(dir: &std::path::Path, topic: &str) -> Vec<(u32, StoredRecord)> {
    let log = open(dir);
    let partitions = log.topic_config(topic).unwrap().partitions;
    let mut out = Vec::new();
    for id in 0..partitions {
        let p = log.partition(topic, id).unwrap();
        for r in p.iter(0) {
            out.push((id, r.unwrap()));
        }
    }
    log.close().unwrap();
    out
}

#[test]
fn keyed_lines_round_trip_through_the_default_partitioner() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("orders", TopicConfig::default().partitions(3))
        .unwrap();
    log.close().unwrap();
    let input = "order-1:created\norder-2:paid: in full\norder-3:\norder-1:shipped\r\n";
    let ran = run(
        &["produce", arg(dir.path()), "orders", "--key-separator", ":"],
        input,
    );
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.starts_with("wrote 4 record(s) to orders ("),
        "{}",
        ran.stdout
    );

    let records = all_records(dir.path(), "orders");
    assert_eq!(records.len(), 4);
    for (partition, r) in &records {
        let key = r.key.as_deref().unwrap();
        assert_eq!(*partition, partition_for_key(key, 3), "{r:?}");
    }
    let mut pairs: Vec<(String, String)> = records
        .iter()
        .map(|(_, r)| (r.key_str().unwrap().into(), r.value_str().unwrap().into()))
        .collect();
    pairs.sort();
    let want = [
        ("order-1", "created"),
        ("order-1", "shipped"),
        ("order-2", "paid: in full"),
        ("order-3", ""),
    ];
    assert_eq!(pairs, want.map(|(k, v)| (k.to_string(), v.to_string())));
    // One key keeps its order within its partition.
    let order_1: Vec<&str> = records
        .iter()
        .filter(|(_, r)| r.key_str() == Some("order-1"))
        .map(|(_, r)| r.value_str().unwrap())
        .collect();
    assert_eq!(order_1, ["created", "shipped"]);
}

#[test]
fn json_prints_each_record_with_its_partition_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("new-log");
    let ran = run(
        &[
            "produce",
            arg(&sub),
            "events",
            "--create-partitions",
            "2",
            "--partition",
            "1",
            "--json",
        ],
        "first\nsecond\nthird",
    );
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let lines = json_lines(&ran.stdout);
    let records: Vec<_> = lines.iter().filter(|l| l["kind"] == "record").collect();
    assert_eq!(records.len(), 3);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["partition"], 1);
        assert_eq!(r["offset"], i as u64);
        assert_eq!(r["line"], i as u64 + 1);
        assert_eq!(r["topic"], "events");
    }
    let written = lines.iter().find(|l| l["kind"] == "written").unwrap();
    assert_eq!(written["records"], 3);

    let records = all_records(&sub, "events");
    let values: Vec<(u32, &str)> = records
        .iter()
        .map(|(p, r)| (*p, r.value_str().unwrap()))
        .collect();
    assert_eq!(values, [(1, "first"), (1, "second"), (1, "third")]);
    assert!(records.iter().all(|(_, r)| r.key.is_none()));
}

#[test]
fn a_topic_that_does_not_exist_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).close().unwrap();
    let ran = run(&["produce", arg(dir.path()), "nope"], "x\n");
    assert_one_line_error(
        &ran,
        1,
        &[
            &format!("annals: produce {}: ", dir.path().display()),
            "unknown topic \"nope\"",
            "--create-partitions",
        ],
    );
    let log = open(dir.path());
    assert!(!log.has_topic("nope"));
    log.close().unwrap();
}

#[test]
fn a_log_locked_by_another_owner_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::default()).unwrap();
    let ran = run(&["produce", arg(dir.path()), "t"], "x\n");
    let path = dir.path().display().to_string();
    assert_one_line_error(&ran, 1, &[&format!("produce {path}: "), "locked", &path]);
    assert_eq!(log.partition("t", 0).unwrap().high_watermark(), 0);
    log.close().unwrap();
}

#[test]
fn a_line_without_the_separator_stops_after_the_lines_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run(
        &[
            "produce",
            arg(dir.path()),
            "t",
            "--create-partitions",
            "1",
            "--key-separator",
            "=",
        ],
        "a=1\nno separator\nb=2\n",
    );
    assert_one_line_error(
        &ran,
        1,
        &[
            "line 2 has no key separator \"=\"",
            "1 record(s) before it were written",
        ],
    );
    let records = all_records(dir.path(), "t");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.value_str(), Some("1"));
}

#[test]
fn a_partition_the_topic_does_not_have_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run(
        &[
            "produce",
            arg(dir.path()),
            "t",
            "--create-partitions",
            "2",
            "--partition",
            "2",
        ],
        "x\n",
    );
    assert_one_line_error(&ran, 1, &["partition 2 does not exist"]);
}
