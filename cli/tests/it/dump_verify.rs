//! `dump --verify-index`: clean indexes pass; a corrupted entry is named and exits 3; a log a
//! running process holds open is dumped and verified without its lock.

use std::path::Path;

use crate::common::{
    append_indexed, arg, batch_positions, indexed_log, json_lines, open, run, segments,
};

fn index_of(log: &Path, ext: &str) -> std::path::PathBuf {
    log.with_extension(ext)
}

#[test]
fn clean_indexes_verify() {
    let dir = tempfile::tempdir().unwrap();
    let partition = indexed_log(dir.path());
    let logs = segments(&partition);
    let ran = run(&["dump", "--verify-index", arg(&partition)], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    for log in &logs {
        for ext in ["index", "timeindex"] {
            let verified = format!("Verified {}: its ", index_of(log, ext).display());
            assert!(
                ran.stdout.contains(&verified),
                "{verified:?} in {}",
                ran.stdout
            );
        }
    }
    assert!(!ran.stdout.contains("Damage"), "{}", ran.stdout);
    let json = run(&["dump", "--verify-index", "--json", arg(&logs[0])], "");
    assert_eq!(json.code, 0);
    let verified: Vec<_> = json_lines(&json.stdout)
        .into_iter()
        .filter(|l| l["kind"] == "index_verified")
        .collect();
    assert_eq!(verified.len(), 2);
    assert!(
        verified.iter().all(|v| v["complete"] == true),
        "{verified:?}"
    );
    // The first segment really has entries to check: every batch but its first is indexed.
    let read = |ext| std::fs::read(index_of(&logs[0], ext)).unwrap();
    let batches = batch_positions(&logs[0]).len();
    let offsets = annals::format::offset_index_entries(&read("index"));
    assert_eq!(offsets.entries.len(), batches - 1, "{offsets:?}");
    assert!(!annals::format::time_index_entries(&read("timeindex"))
        .entries
        .is_empty());

    // A missing index is no damage: annals rebuilds it.
    let time_index = index_of(&logs[0], "timeindex");
    std::fs::remove_file(&time_index).unwrap();
    let ran = run(&["dump", "--verify-index", arg(&logs[0])], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let note = format!(
        "Note: there is no {}; annals rebuilds",
        time_index.display()
    );
    assert!(ran.stdout.contains(&note), "{note:?} in {}", ran.stdout);
}

#[test]
fn an_offset_index_entry_pointing_inside_a_batch_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let partition = indexed_log(dir.path());
    let log = segments(&partition).remove(0);
    let index = index_of(&log, "index");
    let mut bytes = std::fs::read(&index).unwrap();
    assert!(bytes.len() >= 24, "three entries at least");
    // Entry 1's position, one byte further: still increasing, but inside its batch.
    let offset = u32::from_be_bytes(bytes[8..12].try_into().unwrap());
    let position = u32::from_be_bytes(bytes[12..16].try_into().unwrap());
    bytes[12..16].copy_from_slice(&(position + 1).to_be_bytes());
    std::fs::write(&index, bytes).unwrap();

    let ran = run(&["dump", "--verify-index", arg(&partition)], "");
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    let mismatch = format!(
        "Damage: {} at byte 8: entry for offset {offset} points at byte {}, which is not a batch",
        index.display(),
        position + 1
    );
    assert!(
        ran.stdout.contains(&mismatch),
        "{mismatch:?} in {}",
        ran.stdout
    );
    assert_eq!(ran.stdout.matches("Damage").count(), 1, "{}", ran.stdout);
    // The other indexes still verify.
    assert!(ran.stdout.contains(&format!(
        "Verified {}",
        index_of(&log, "timeindex").display()
    )));

    let json = run(&["dump", "--verify-index", "--json", arg(&partition)], "");
    let problems: Vec<_> = json_lines(&json.stdout)
        .into_iter()
        .filter(|l| l["kind"] == "problem" && l["damage"] == true)
        .collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let named = (&problems[0]["file"], &problems[0]["entry"]);
    assert_eq!(named, (&index.display().to_string().into(), &1.into()));

    // Dumping the index file itself with --verify-index finds the same.
    let ran = run(&["dump", "--verify-index", arg(&index)], "");
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains(&mismatch), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("offset: "),
        "the index entries: {}",
        ran.stdout
    );
    assert!(
        !ran.stdout.contains("baseOffset"),
        "the log's batches are not printed"
    );
}

#[test]
fn a_time_index_entry_with_the_wrong_timestamp_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let partition = indexed_log(dir.path());
    let log = segments(&partition).remove(0);
    let index = index_of(&log, "timeindex");
    let mut bytes = std::fs::read(&index).unwrap();
    // Entry 0's timestamp one ms later: still increasing, but no batch carries it.
    let ts = i64::from_be_bytes(bytes[..8].try_into().unwrap());
    bytes[..8].copy_from_slice(&(ts + 1).to_be_bytes());
    std::fs::write(&index, &bytes).unwrap();

    let ran = run(&["dump", "--verify-index", arg(&log)], "");
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    let mismatch = format!(
        "Damage: {} at byte 0: entry for offset {} says timestamp {}, the largest up to there is",
        index.display(),
        u32::from_be_bytes(bytes[8..12].try_into().unwrap()),
        ts + 1
    );
    assert!(
        ran.stdout.contains(&mismatch),
        "{mismatch:?} in {}",
        ran.stdout
    );
    // The time index alone: the same finding, and nothing about the offset index.
    let ran = run(&["dump", "--verify-index", arg(&index)], "");
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains(&mismatch), "{}", ran.stdout);
    assert!(!ran.stdout.contains(".index"), "{}", ran.stdout);
}

/// A process holds the log open (its lock, its preallocated active index): `dump` reads it
/// anyway, and the zero fill of the active segment's index is no damage.
#[test]
fn a_log_held_open_by_another_owner_is_dumped_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let config = annals::TopicConfig::default().index_interval_bytes(0);
    let log = open(dir.path());
    log.create_topic("v", config).unwrap();
    let p = log.partition("v", 0).unwrap();
    append_indexed(&p, 0..10);
    let partition = dir.path().join("v-0");
    let ran = run(&["dump", "--verify-index", arg(&partition)], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert_eq!(ran.stdout.matches("baseOffset: ").count(), 10);
    assert!(ran.stdout.contains("Verified "), "{}", ran.stdout);
    let active = segments(&partition).pop().unwrap();
    let ran = run(&["dump", arg(&index_of(&active, "index"))], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert_eq!(ran.stdout.matches("offset: ").count(), 9, "{}", ran.stdout);
    assert!(
        ran.stdout
            .contains("zero entries of preallocated space follow"),
        "{}",
        ran.stdout
    );
    // The owner is undisturbed.
    append_indexed(&p, 10..11);
    log.close().unwrap();
}
