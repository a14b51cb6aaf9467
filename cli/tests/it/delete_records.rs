//! `delete-records`: the log start offset moves, durably.

use annals::{Record, TopicConfig};

use crate::common::{arg, assert_one_line_error, json_lines, open, run};

fn five_records(dir: &std::path::Path) {
    let log = open(dir);
    log.create_topic("t", TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..5 {
        p.append(&[Record::new(format!("v{i}"))]).unwrap();
    }
    log.close().unwrap();
}

#[test]
fn delete_records_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path());
    let ran = run(&["delete-records", arg(dir.path()), "t", "0", "3"], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert_eq!(
        ran.stdout,
        "t-0: log start offset 3 (was 0; high watermark 5)\n"
    );
    let log = open(dir.path());
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.log_start_offset(), 3);
    let values: Vec<String> = p
        .iter(3)
        .map(|r| r.unwrap().value_str().unwrap().to_string())
        .collect();
    assert_eq!(values, ["v3", "v4"]);
    log.close().unwrap();

    // At or below the start: nothing changes.
    let ran = run(
        &["delete-records", "--json", arg(dir.path()), "t", "0", "1"],
        "",
    );
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let line = &json_lines(&ran.stdout)[0];
    assert_eq!(
        (line["before"].as_u64(), line["log_start_offset"].as_u64()),
        (Some(3), Some(3))
    );
}

#[test]
fn an_offset_past_the_high_watermark_or_an_unknown_topic_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path());
    let ran = run(&["delete-records", arg(dir.path()), "t", "0", "6"], "");
    assert_one_line_error(&ran, 1, &["delete-records ", "offset 6 is out of range"]);
    let ran = run(
        &["delete-records", arg(dir.path()), "missing", "0", "1"],
        "",
    );
    assert_one_line_error(&ran, 1, &["unknown topic \"missing\""]);
    let ran = run(&["delete-records", arg(dir.path()), "t", "4", "1"], "");
    assert_one_line_error(&ran, 1, &["partition 4 does not exist"]);
}
