//! Consumers meet retention and compaction: `__consumer_offsets` compacts to one record per key,
//! a position that retention deleted follows `auto_offset_reset`, and `retain_for_groups` holds
//! segments until the listed groups have committed past them.

use std::time::Duration;

use annals::{
    AutoOffsetReset, ConsumerConfig, Error, Log, OffsetAndMetadata, Record, TopicConfig,
    TopicPartition,
};

fn dir_log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn thousands_of_commits_compact_to_one_record_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Log::builder(dir.path())
            .maintenance_interval(None)
            .offsets_topic_segment_bytes(16 << 10)
            .open()
            .unwrap()
    };
    let log = open();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    for p in 0..2 {
        let recs: Vec<Record> = (0..100).map(|i| Record::new(format!("{i}"))).collect();
        log.partition("t", p).unwrap().append(&recs).unwrap();
    }
    let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
    c.assign(&[("t", 0), ("t", 1)]).unwrap();
    for i in 0..3000u64 {
        let tp = TopicPartition::new("t", (i % 2) as u32);
        c.commit_offsets(&[(tp, OffsetAndMetadata::new(i % 101))])
            .unwrap();
    }
    let offsets_dir = dir.path().join("__consumer_offsets-0");
    let before = dir_log_bytes(&offsets_dir);
    log.run_maintenance().unwrap();
    let after = dir_log_bytes(&offsets_dir);
    // Everything but the active segment shrinks to the two live keys.
    eprintln!("__consumer_offsets: {before} -> {after} bytes");
    assert!(after * 4 < before, "{before} -> {after} bytes");
    let want = [
        log.committed_offset("g", "t", 0).unwrap().unwrap().offset,
        log.committed_offset("g", "t", 1).unwrap().unwrap().offset,
    ];
    assert_eq!(want, [2998 % 101, 2999 % 101]);
    drop(c);
    log.close().unwrap();
    // The rebuilt cache (from the compacted topic) has the same answers.
    let log = open();
    for p in 0..2 {
        assert_eq!(
            log.committed_offset("g", "t", p).unwrap().unwrap().offset,
            want[p as usize]
        );
    }
}

#[test]
fn a_position_deleted_by_retention_follows_auto_offset_reset() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path())
        .maintenance_interval(None)
        .open()
        .unwrap();
    log.create_topic("t", TopicConfig::default().segment_bytes(4096))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..100 {
        p.append(&[Record::new(format!("value-{i:04}-{}", "x".repeat(80)))])
            .unwrap();
    }
    let consumer = |reset| {
        let mut c = log
            .consumer(ConsumerConfig::new("g").auto_offset_reset(reset))
            .unwrap();
        c.assign(&[("t", 0)]).unwrap();
        c.seek("t", 0, 5).unwrap();
        c
    };
    let mut earliest = consumer(AutoOffsetReset::Earliest);
    let mut latest = consumer(AutoOffsetReset::Latest);
    let mut strict = consumer(AutoOffsetReset::Error);
    p.delete_records(60).unwrap();
    let start = p.log_start_offset();
    assert!(start > 5);
    let got = earliest.poll(Duration::from_secs(1)).unwrap();
    assert_eq!(got.first().map(|r| r.offset), Some(start));
    assert!(latest.poll(Duration::from_millis(10)).unwrap().is_empty());
    assert_eq!(latest.position("t", 0).unwrap(), 100);
    assert!(matches!(
        strict.poll(Duration::ZERO),
        Err(Error::OffsetOutOfRange { .. })
    ));
}

#[test]
fn retain_for_groups_holds_segments_until_the_group_commits_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path())
        .maintenance_interval(None)
        .open()
        .unwrap();
    log.create_topic(
        "t",
        TopicConfig::default()
            .segment_bytes(4096)
            .retention_bytes(4096)
            .retain_for_groups(["audit"]),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..200 {
        p.append(&[Record::new(format!("value-{i:04}-{}", "x".repeat(80)))])
            .unwrap();
    }
    let segments = p.segment_count();
    assert!(segments > 3);
    log.run_maintenance().unwrap();
    assert_eq!(p.log_start_offset(), 0, "the audit group has not committed");
    assert_eq!(p.segment_count(), segments);
    let mut c = log.consumer(ConsumerConfig::new("audit")).unwrap();
    c.assign(&[("t", 0)]).unwrap();
    c.commit_offsets(&[(TopicPartition::new("t", 0), OffsetAndMetadata::new(100))])
        .unwrap();
    log.run_maintenance().unwrap();
    let start = p.log_start_offset();
    assert!(start > 0 && start <= 100, "start {start}");
    // The hard cap deletes regardless of the group.
    let mut capped = log.topic_config("t").unwrap();
    capped = capped.max_retention_bytes(4096);
    log.alter_topic("t", capped).unwrap();
    log.run_maintenance().unwrap();
    assert!(p.log_start_offset() > 100);
}
