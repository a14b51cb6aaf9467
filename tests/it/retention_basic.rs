//! Retention and `delete_records` on a live log: what goes, what stays, what reads see, and that
//! the log start survives reopening — even without `partition.ckpt`.

use crate::common;

use std::time::Duration;

use annals::storage::SimStorage;
use annals::{Error, Log, Partition, Record};
use common::*;

const DIR: &str = "/sim/log";
const T: &str = "t";
const OLD: i64 = 1_000_000_000_000; // 2001: long past any retention below

fn open(sim: &std::sync::Arc<SimStorage>) -> Log {
    TestLog::sim(sim, DIR).no_maintenance().open()
}

/// Appends `n` records of ~100 bytes with timestamps `ts(i)`; returns the high watermark.
fn fill(p: &Partition, n: u64, ts: impl Fn(u64) -> i64) -> u64 {
    for i in 0..n {
        p.append(&[Record::new(format!("{i:0>100}"))
            .key(format!("k{i}"))
            .timestamp(ts(i))])
            .unwrap();
    }
    p.high_watermark()
}

/// Reads from the log start to the high watermark; every record must be the one `fill` wrote.
fn check_contents(p: &Partition) -> u64 {
    let all = read_all(p, 4096).unwrap();
    for r in &all {
        assert_eq!(
            r.value.as_deref().unwrap(),
            format!("{:0>100}", r.offset).as_bytes()
        );
    }
    assert_eq!(all.first().map(|r| r.offset), Some(p.log_start_offset()));
    all.len() as u64
}

#[test]
fn time_retention_deletes_old_segments_only() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic(T, small_segments().retention_ms(Duration::from_secs(3600)))
        .unwrap();
    let p = log.partition(T, 0).unwrap();
    let now = annals_now();
    // 40 old records, then 40 fresh ones.
    fill(&p, 80, |i| if i < 40 { OLD + i as i64 } else { now });
    let segments = p.segment_count();
    let report = p.retain().unwrap();
    assert!(report.segments_deleted > 0, "{report:?}");
    assert_eq!(p.segment_count(), segments - report.segments_deleted);
    let start = p.log_start_offset();
    assert_eq!(start, report.log_start_offset);
    assert!(
        start > 0 && start <= 40,
        "start {start}: only old records may go"
    );
    assert!(matches!(
        p.read(start - 1, 1024),
        Err(Error::OffsetOutOfRange { requested, earliest, .. }) if requested == start - 1 && earliest == start
    ));
    assert_eq!(check_contents(&p), 80 - start);
    // Nothing more is due.
    assert_eq!(p.retain().unwrap().segments_deleted, 0);
    // The deleted files are gone (no reader held them).
    let names: Vec<String> = sim
        .paths()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".deleted")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(&format!("{:020}.log", 0))));
}

fn annals_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn size_retention_keeps_at_least_the_limit() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic(T, small_segments().retention_bytes(3000))
        .unwrap();
    let p = log.partition(T, 0).unwrap();
    fill(&p, 100, |_| annals_now());
    let before = p.size_bytes();
    let report = p.retain().unwrap();
    assert!(report.segments_deleted > 0);
    assert_eq!(before - report.bytes_deleted, p.size_bytes());
    assert!(p.size_bytes() >= 3000, "deleted below the limit");
    // One more segment would have been too many.
    assert_eq!(p.retain().unwrap().segments_deleted, 0);
    check_contents(&p);
}

#[test]
fn compact_only_topics_are_not_trimmed_by_retention() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic(
        T,
        small_segments()
            .retention_ms(Duration::from_millis(1))
            .cleanup_policy(annals::CleanupPolicy::Compact),
    )
    .unwrap();
    let p = log.partition(T, 0).unwrap();
    fill(&p, 50, |i| OLD + i as i64);
    assert_eq!(p.retain().unwrap().segments_deleted, 0);
    assert_eq!(p.log_start_offset(), 0);
}

#[test]
fn listed_groups_hold_segments_until_the_hard_cap() {
    let sim = SimStorage::new();
    let log = open(&sim);
    let config = small_segments()
        .retention_ms(Duration::from_secs(1))
        .retain_for_groups(["billing"]);
    log.create_topic(T, config.clone()).unwrap();
    let p = log.partition(T, 0).unwrap();
    fill(&p, 60, |i| OLD + i as i64);
    // No group offsets are known yet: the group holds everything.
    assert_eq!(p.retain().unwrap().segments_deleted, 0);
    assert_eq!(log.run_maintenance().unwrap().segments_deleted(), 0);
    // A hard cap deletes regardless.
    log.alter_topic(T, config.max_retention_ms(Duration::from_secs(2)))
        .unwrap();
    let report = log.run_maintenance().unwrap();
    assert!(report.segments_deleted() > 0, "{report:?}");
    assert_eq!(report.partitions[0].topic, T);
    assert_eq!(p.segment_count(), 1, "every sealed segment is past the cap");
}

#[test]
fn delete_records_moves_the_start_and_survives_a_lost_checkpoint() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic(T, small_segments()).unwrap();
    let p = log.partition(T, 0).unwrap();
    let hw = fill(&p, 50, |i| OLD + i as i64);
    assert!(matches!(
        p.delete_records(hw + 1),
        Err(Error::OffsetOutOfRange { requested, latest, .. }) if requested == hw + 1 && latest == hw
    ));
    let segments = p.segment_count();
    assert_eq!(p.delete_records(23).unwrap(), 23);
    assert!(
        p.segment_count() < segments,
        "whole segments below 23 are deleted"
    );
    assert!(matches!(
        p.read(22, 1024),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(p.read(23, 1).unwrap()[0].offset, 23);
    // Lower than the start: nothing changes.
    assert_eq!(p.delete_records(5).unwrap(), 23);
    assert_eq!(check_contents(&p), hw - 23);
    let dir = p.dir().to_path_buf();
    drop(p);
    log.close().unwrap();

    // Reopen without the checkpoint: the start must not fall back to the first segment.
    let mut snap = snapshot(&sim);
    assert!(remove(&mut snap, "partition.ckpt"));
    let sim2 = restore(&snap);
    let log = open(&sim2);
    let p = log.partition(T, 0).unwrap();
    assert_eq!(p.log_start_offset(), 23);
    assert_eq!(check_contents(&p), hw - 23);
    drop(p);
    log.close().unwrap();

    // A damaged bounds file is refused rather than guessed at.
    let mut snap = snapshot(&sim2);
    let bounds = dir.join("partition.bounds");
    let mut bytes = get(&snap, &bounds).to_vec();
    bytes[14] ^= 1;
    replace(&mut snap, &bounds, bytes);
    match Log::builder(DIR)
        .storage(restore(&snap))
        .maintenance_interval(None)
        .open()
    {
        Err(Error::CorruptMetadata { file, .. }) => assert_eq!(file, bounds),
        other => panic!("expected CorruptMetadata, got {other:?}"),
    }
    // TruncateCorrupt opens with the checkpoint's start and repairs the file for later opens.
    let sim3 = restore(&snap);
    let log = Log::builder(DIR)
        .storage(sim3.clone())
        .maintenance_interval(None)
        .recovery_mode(annals::RecoveryMode::TruncateCorrupt)
        .open()
        .unwrap();
    assert_eq!(log.partition(T, 0).unwrap().log_start_offset(), 23);
    log.close().unwrap();
    let log = open(&sim3);
    assert_eq!(log.partition(T, 0).unwrap().log_start_offset(), 23);
}

#[test]
fn delete_records_up_to_the_high_watermark_keeps_the_active_segment() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic(T, small_segments()).unwrap();
    let p = log.partition(T, 0).unwrap();
    let hw = fill(&p, 30, |i| OLD + i as i64);
    assert_eq!(p.delete_records(hw).unwrap(), hw);
    assert_eq!(p.segment_count(), 1);
    assert!(p.read(hw, 1024).unwrap().is_empty());
    p.append(&[Record::new("after")]).unwrap();
    assert_eq!(
        p.read(hw, 1024).unwrap()[0].value.as_deref(),
        Some(&b"after"[..])
    );
}

#[test]
fn alter_topic_validates_persists_and_applies() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic(T, small_segments().partitions(2)).unwrap();
    assert!(matches!(
        log.alter_topic("nope", small_segments()),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        log.alter_topic(T, small_segments().partitions(3)),
        Err(Error::InvalidConfig {
            field: "partitions",
            ..
        })
    ));
    assert!(matches!(
        log.alter_topic(
            T,
            small_segments()
                .partitions(2)
                .min_cleanable_dirty_ratio(2.0)
        ),
        Err(Error::InvalidConfig {
            field: "min_cleanable_dirty_ratio",
            ..
        })
    ));
    assert!(matches!(
        log.alter_topic(T, small_segments().partitions(2).max_message_bytes(1000)),
        Err(Error::InvalidConfig {
            field: "max_message_bytes",
            ..
        })
    ));
    let p = log.partition(T, 1).unwrap();
    fill(&p, 30, |i| OLD + i as i64);
    assert_eq!(p.retain().unwrap().segments_deleted, 0);
    let altered = small_segments()
        .partitions(2)
        .retention_ms(Duration::from_secs(10));
    log.alter_topic(T, altered.clone()).unwrap();
    assert!(
        p.retain().unwrap().segments_deleted > 0,
        "the live partition uses the new config"
    );
    drop(p);
    log.close().unwrap();
    let log = open(&sim);
    assert_eq!(log.topic_config(T).unwrap(), altered);
}

#[test]
fn builder_rejects_bad_maintenance_options() {
    let sim = SimStorage::new();
    for b in [
        Log::builder(DIR).maintenance_interval(Some(Duration::ZERO)),
        Log::builder(DIR).cleaner_buffer_bytes(10),
    ] {
        assert!(matches!(
            b.storage(sim.clone()).open(),
            Err(Error::InvalidConfig { .. })
        ));
    }
}

#[test]
fn background_thread_applies_retention_and_stops_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path())
        .maintenance_interval(Some(Duration::from_millis(20)))
        .open()
        .unwrap();
    log.create_topic(T, small_segments().retention_ms(Duration::from_secs(1)))
        .unwrap();
    let p = log.partition(T, 0).unwrap();
    fill(&p, 40, |i| OLD + i as i64);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while p.log_start_offset() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "background retention never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(p);
    log.close().unwrap();
    // Closed and joined: the directory can be opened again at once.
    let log = Log::open(dir.path()).unwrap();
    assert!(log.partition(T, 0).unwrap().log_start_offset() > 0);
}

#[test]
fn background_errors_are_kept_for_the_host() {
    let sim = SimStorage::new();
    let log = Log::builder(DIR)
        .storage(sim.clone())
        .maintenance_interval(Some(Duration::from_millis(5)))
        .open()
        .unwrap();
    log.create_topic(T, small_segments().retention_ms(Duration::from_secs(1)))
        .unwrap();
    let p = log.partition(T, 0).unwrap();
    assert!(log.last_maintenance_error().is_none());
    // Retention's commit point is the bounds file: make writing it fail.
    sim.fail_when(
        annals::storage::SimOpKind::Rename,
        "partition.bounds",
        std::io::ErrorKind::StorageFull,
    );
    fill(&p, 40, |i| OLD + i as i64);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while log.last_maintenance_error().is_none() {
        assert!(std::time::Instant::now() < deadline, "no error surfaced");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(matches!(
        log.last_maintenance_error(),
        Some(Error::Io { .. })
    ));
    assert_eq!(
        p.log_start_offset(),
        0,
        "nothing moved without its commit point"
    );
    sim.clear_fault_hook();
    while p.log_start_offset() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention never recovered"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    while log.last_maintenance_error().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the error was never cleared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A partition directory no topic names is removed on open even when it holds the files
/// retention and compaction leave (bounds, retired segments, an uncommitted or committed swap);
/// one with a file annals never writes stays.
#[test]
fn leftover_directories_with_maintenance_files_are_cleaned_up() {
    let sim = SimStorage::new();
    drop(open(&sim));
    let ours = [
        "00000000000000000000.log",
        "partition.bounds",
        "partition.bounds.tmp",
        "00000000000000000000.log.deleted",
        "00000000000000000000.index.deleted",
        "00000000000000000010.log.cleaned",
        "00000000000000000000-00000000000000000010.swap",
    ];
    for name in ours {
        sim.write_file(format!("{DIR}/orphan-0/{name}"), b"x");
        sim.write_file(format!("{DIR}/kept-0/{name}"), b"x");
    }
    sim.write_file(format!("{DIR}/kept-0/notes.txt"), b"mine");
    drop(open(&sim));
    let paths: Vec<String> = sim
        .paths()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert!(!paths.iter().any(|p| p.contains("/orphan-0/")), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.ends_with("/kept-0/notes.txt")),
        "{paths:?}"
    );
}
