//! `Log::recovery_report`: whatever recovery removes at open is reported — topic-partition,
//! segment file, byte range and offsets — never dropped silently.

use crate::common;

use std::path::PathBuf;

use annals::storage::{CrashMode, SimStorage};
use annals::{RecoveryAction, RecoveryMode, TopicConfig};
use common::*;

const DIR: &str = "/sim/log";
const TOPIC: &str = "t";
const RECORDS: u64 = 60;

/// A partition of several segments (one record per batch), left by a kill -9 so the next open
/// scans every segment.
fn killed_log() -> (Snapshot, PathBuf) {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .segment_bytes(1024)
            .segment_index_bytes(1024)
            .index_interval_bytes(1),
    )
    .unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    for i in 0..RECORDS {
        p.append(&simple_records(i, 1)).unwrap();
    }
    assert!(p.segment_count() >= 3, "{} segments", p.segment_count());
    let dir = p.dir().to_path_buf();
    drop(p);
    sim.crash(CrashMode::ProcessKill);
    std::mem::forget(log);
    // Without a checkpoint nothing vouches for any segment.
    let mut snap = snapshot(&sim);
    remove(&mut snap, "partition.ckpt");
    (snap, dir)
}

#[test]
fn truncate_corrupt_reports_the_cut_and_every_segment_removed_after_it() {
    let (mut snap, dir) = killed_log();
    let logs = files_with_ext(&snap, &dir, "log");
    let first = logs[0].clone();
    let mut bytes = get(&snap, &first).to_vec();
    let in_first = batches(&bytes);
    let victim = in_first[in_first.len() / 2];
    // A CRC-covered byte (inside the record) of a batch in the middle of the first segment.
    bytes[victim.pos + victim.len - 3] ^= 0x40;
    replace(&mut snap, &first, bytes.clone());

    let sim = restore(&snap);
    let Err(strict) = TestLog::sim(&sim, DIR).try_open() else {
        panic!("Strict opened a log damaged in the middle");
    };
    assert!(matches!(strict, annals::Error::Corrupt { .. }), "{strict}");

    let log = TestLog::sim(&sim, DIR)
        .recovery_mode(RecoveryMode::TruncateCorrupt)
        .open();
    let report = log.recovery_report();
    let events = report.events();
    assert_eq!(events.len(), logs.len(), "{events:#?}");

    let cut = &events[0];
    assert_eq!(cut.action, RecoveryAction::TruncatedCorrupt);
    assert_eq!((cut.topic.as_str(), cut.partition), (TOPIC, 0));
    assert_eq!(cut.segment, first);
    assert_eq!(cut.bytes, victim.pos as u64..bytes.len() as u64);
    let last_in_first = in_first.last().unwrap();
    assert_eq!(
        cut.offsets,
        victim.base_offset..last_in_first.base_offset + last_in_first.records,
        "the damaged batch itself is unreadable; the valid ones after it are counted"
    );
    assert!(
        cut.reason.contains("crc") || cut.reason.contains("CRC"),
        "{}",
        cut.reason
    );
    let shown = cut.to_string();
    assert!(
        shown.contains("t-0") && shown.contains(&*first.to_string_lossy()),
        "{shown}"
    );

    for (event, path) in events[1..].iter().zip(&logs[1..]) {
        let old = get(&snap, path);
        let in_segment = batches(old);
        let last = in_segment.last().unwrap();
        assert_eq!(event.action, RecoveryAction::RemovedSegment);
        assert_eq!(&event.segment, path);
        assert_eq!(event.bytes, 0..old.len() as u64);
        assert_eq!(
            event.offsets,
            in_segment[0].base_offset..last.base_offset + last.records
        );
    }
    // The offsets reported lost are exactly the ones the log no longer has.
    let p = log.partition(TOPIC, 0).unwrap();
    assert_eq!(p.high_watermark(), victim.base_offset);
    assert_eq!(events.last().unwrap().offsets.end, RECORDS);
    drop(p);
    log.close().unwrap();

    // The next open has nothing to repair, and says so.
    let log = TestLog::sim(&sim, DIR).open();
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
}

#[test]
fn a_torn_tail_is_reported_with_no_offsets_lost() {
    let (mut snap, dir) = killed_log();
    let last = files_with_ext(&snap, &dir, "log").pop().unwrap();
    let mut bytes = get(&snap, &last).to_vec();
    let whole = bytes.len() as u64;
    // Half of a batch, as an interrupted write leaves it.
    bytes.extend_from_within(..40);
    let torn = bytes.len() as u64;
    replace(&mut snap, &last, bytes);

    let sim = restore(&snap);
    let log = TestLog::sim(&sim, DIR).open();
    let report = log.recovery_report();
    let [event] = report.events() else {
        panic!("one event expected: {report:#?}");
    };
    assert_eq!(event.action, RecoveryAction::TornTail);
    assert_eq!(event.segment, last);
    assert_eq!(event.bytes, whole..torn);
    assert_eq!(event.offsets, RECORDS..RECORDS);
    assert_eq!(
        log.partition(TOPIC, 0).unwrap().high_watermark(),
        RECORDS,
        "nothing readable was lost"
    );
}

#[test]
fn a_clean_open_reports_nothing() {
    let (snap, _) = killed_log();
    let log = TestLog::sim(&restore(&snap), DIR).open();
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
}
