//! `dump` on damaged segments: everything readable is printed, damage is named, and the exit
//! code is 3; a torn tail of the last segment is reported but is no damage.

use std::io::Write;
use std::path::{Path, PathBuf};

use annals::{Record, TopicConfig};

use crate::common::{arg, batch_positions, json_lines, open, run, segments, T0};

/// Topic `d`, one segment of three one-record batches at offsets 0, 1, 2. Returns the `.log`.
fn three_batches(dir: &Path) -> PathBuf {
    let log = open(dir);
    log.create_topic("d", TopicConfig::default()).unwrap();
    let p = log.partition("d", 0).unwrap();
    for i in 0..3 {
        p.append(&[Record::new(format!("value number {i}")).timestamp(T0 + i)])
            .unwrap();
    }
    log.close().unwrap();
    segments(&dir.join("d-0")).remove(0)
}

fn flip_byte(file: &Path, at: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at as usize] ^= 0x55;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_crc_damaged_batch_is_named_and_the_rest_still_printed() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_batches(dir.path());
    let positions = batch_positions(&log);
    // The last byte of the middle batch: inside its value, under the CRC.
    flip_byte(&log, positions[2] - 1);
    let ran = run(&["dump", arg(&log)], "");
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    let batch_lines: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("baseOffset: "))
        .collect();
    assert_eq!(batch_lines.len(), 3, "every batch printed: {}", ran.stdout);
    assert!(batch_lines[0].ends_with("isvalid: true"));
    assert!(batch_lines[1].starts_with("baseOffset: 1 "));
    assert!(
        batch_lines[1].ends_with("isvalid: false"),
        "{}",
        batch_lines[1]
    );
    assert!(batch_lines[2].ends_with("isvalid: true"));
    let damage = format!(
        "Damage: the batch at position {} (offsets 1..=1) of {} fails its CRC check",
        positions[1],
        log.display()
    );
    assert!(ran.stdout.contains(&damage), "{damage:?} in {}", ran.stdout);
    assert!(ran.stderr.starts_with("annals: dump "), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("damage found (1 problem(s)"),
        "{}",
        ran.stderr
    );

    // --deep still prints the good batches' records, and says why the bad one's are not.
    let deep = run(&["dump", "--deep", arg(&log)], "");
    assert_eq!(deep.code, 3);
    assert!(deep.stdout.contains("payload: value number 0"));
    assert!(deep.stdout.contains("payload: value number 2"));
    assert!(deep
        .stdout
        .contains("| records not shown: the batch fails its CRC check"));

    let json = run(&["dump", "--json", arg(&log)], "");
    assert_eq!(json.code, 3);
    let problems: Vec<_> = json_lines(&json.stdout)
        .into_iter()
        .filter(|l| l["kind"] == "problem")
        .collect();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0]["problem"], "crc");
    assert_eq!(problems[0]["damage"], true);
    assert_eq!(problems[0]["position"], positions[1]);
}

#[test]
fn garbage_between_batches_is_damage_and_the_walk_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_batches(dir.path());
    let positions = batch_positions(&log);
    // The middle batch's magic byte: its header no longer parses.
    flip_byte(&log, positions[1] + 16);
    let ran = run(&["dump", arg(&log)], "");
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    let garbage = format!(
        "Damage: bytes {}..{} of {} are not a batch",
        positions[1],
        positions[2],
        log.display()
    );
    assert!(
        ran.stdout.contains(&garbage),
        "{garbage:?} in {}",
        ran.stdout
    );
    assert!(ran.stdout.contains("magic byte is"), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("baseOffset: 2 "),
        "resumed: {}",
        ran.stdout
    );
}

#[test]
fn a_torn_tail_of_the_last_segment_is_reported_but_is_no_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = three_batches(dir.path());
    let len = std::fs::metadata(&log).unwrap().len();
    // The first 30 bytes of a batch: what a write cut short leaves.
    let head = std::fs::read(&log).unwrap()[..30].to_vec();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&head)
        .unwrap();
    let ran = run(&["dump", arg(dir.path().join("d-0").as_path())], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let torn = format!(
        "Torn tail: 30 byte(s) at position {len} of {} after the last whole batch",
        log.display()
    );
    assert!(ran.stdout.contains(&torn), "{torn:?} in {}", ran.stdout);
    assert_eq!(ran.stdout.matches("baseOffset: ").count(), 3);
    assert_eq!(ran.stderr, "");
}

/// The same bytes in a segment that later segments follow cannot be an interrupted write.
#[test]
fn a_torn_tail_before_a_later_segment_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let partition = crate::common::indexed_log(dir.path());
    let logs = segments(&partition);
    assert!(logs.len() > 2, "{logs:?}");
    let first = &logs[0];
    let len = std::fs::metadata(first).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(first)
        .unwrap()
        .write_all(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0])
        .unwrap();
    let ran = run(&["dump", arg(first)], "");
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    let damage = format!(
        "Damage: 10 byte(s) at position {len} of {} are not a whole batch",
        first.display()
    );
    assert!(ran.stdout.contains(&damage), "{damage:?} in {}", ran.stdout);
    assert!(ran.stdout.contains("later segments follow"));
}
