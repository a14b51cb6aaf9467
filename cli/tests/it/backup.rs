//! `annals backup`: a copy that opens without recovery, and its refusals.

use annals::{Record, TopicConfig};

use crate::common::{arg, assert_one_line_error, json_lines, open, run};

#[test]
fn a_backup_holds_every_record_and_opens_without_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("log");
    let log = open(&src);
    log.create_topic(
        "orders",
        TopicConfig::default().partitions(2).segment_bytes(1024),
    )
    .unwrap();
    for i in 0..60 {
        log.partition("orders", i % 2)
            .unwrap()
            .append(&[Record::new(format!("v{i:03}"))])
            .unwrap();
    }
    log.close().unwrap();
    let dest = dir.path().join("copy");
    let ran = run(&["--json", "backup", arg(&src), arg(&dest)], "");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let objects = json_lines(&ran.stdout);
    let hws: Vec<u64> = objects
        .iter()
        .filter(|o| o["kind"] == "partition" && o["topic"] == "orders")
        .map(|o| o["high_watermark"].as_u64().unwrap())
        .collect();
    assert_eq!(hws, vec![30, 30]);
    let summary = objects.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert!(
        summary["segments_linked"].as_u64().unwrap() > 0,
        "{summary}"
    );

    let ran = run(&["verify", arg(&dest)], "");
    assert_eq!(ran.code, 0, "{}", ran.stdout);
    let copy = open(&dest);
    assert!(copy.recovery_report().is_empty());
    // Every segment's records (one `read` stops at a segment's end).
    let records: Vec<_> = copy
        .partition("orders", 1)
        .unwrap()
        .iter(0)
        .collect::<annals::Result<_>>()
        .unwrap();
    assert_eq!(records.len(), 30);
    assert_eq!(records[29].value_str(), Some("v059"));
    copy.close().unwrap();

    // The same dest again: it exists and is not empty.
    let ran = run(&["backup", arg(&src), arg(&dest)], "");
    assert_one_line_error(&ran, 1, &["backup", &dest.display().to_string()]);
}

#[test]
fn a_log_owned_elsewhere_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let dest = tempfile::tempdir().unwrap();
    let target = dest.path().join("copy");
    let ran = run(&["backup", arg(dir.path()), arg(&target)], "");
    assert_one_line_error(&ran, 1, &["backup", "locked", "Log::checkpoint"]);
    assert!(!target.exists());
    log.close().unwrap();
}
