//! `maintain`: one maintenance pass, reported as a table or JSON lines.

use std::time::Duration;

use annals::{Record, TopicConfig};

use crate::common::{arg, json_lines, open, run, T0};

/// Topic `old`: 1 KiB segments of records from 2023, kept for a minute: all but the active
/// segment are due for deletion.
fn expired_log(dir: &std::path::Path) -> u64 {
    let log = open(dir);
    let config = TopicConfig::default()
        .segment_bytes(1024)
        .retention_ms(Duration::from_secs(60));
    log.create_topic("old", config).unwrap();
    let p = log.partition("old", 0).unwrap();
    for i in 0..40 {
        p.append(&[Record::new(vec![b'x'; 100]).timestamp(T0 + i)])
            .unwrap();
    }
    let segments = p.segment_count() as u64;
    log.close().unwrap();
    segments
}

#[test]
fn maintain_deletes_expired_segments_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let segments = expired_log(dir.path());
    assert!(segments > 2);
    let ran = run(&["maintain", arg(dir.path())], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines[0].starts_with("topic  partition  segments deleted"),
        "{}",
        ran.stdout
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..3],
        ["old", "0", &(segments - 1).to_string()],
        "{}",
        ran.stdout
    );
    assert!(
        lines[2].starts_with("1 partition(s) changed"),
        "{}",
        ran.stdout
    );

    let log = open(dir.path());
    assert_eq!(log.partition("old", 0).unwrap().segment_count(), 1);
    log.close().unwrap();

    // Nothing is due any more.
    let ran = run(&["maintain", "--json", arg(dir.path())], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let lines = json_lines(&ran.stdout);
    assert_eq!(lines.len(), 1, "{}", ran.stdout);
    assert_eq!(lines[0]["kind"], "summary");
    assert_eq!(lines[0]["partitions_changed"], 0);
}

#[test]
fn maintain_json_has_a_line_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let segments = expired_log(dir.path());
    let ran = run(&["maintain", arg(dir.path()), "--json"], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let lines = json_lines(&ran.stdout);
    let partition = lines.iter().find(|l| l["kind"] == "partition").unwrap();
    assert_eq!(partition["topic"], "old");
    assert_eq!(partition["segments_deleted"], segments - 1);
    let summary = lines.iter().find(|l| l["kind"] == "summary").unwrap();
    assert_eq!(summary["segments_deleted"], segments - 1);
}
