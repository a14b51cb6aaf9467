//! The open-file budget (`LogBuilder::max_open_files`) under a real `ulimit -n`: a log with far
//! more files than the process may open works, and one without a budget that fits fails with a
//! clear error and loses nothing.
//!
//! The limit applies to a child process: this test binary re-executed through `sh -c 'ulimit
//! -n …'` with `--exact open_files::low_ulimit_child` and [`ENV_DIR`] set; without that
//! variable `low_ulimit_child` returns at once (it is the child's entry point, not a test).
#![cfg(unix)]

use std::path::Path;
use std::process::Command;

use annals::{Error, Log, Record, TopicConfig};

const ENV_DIR: &str = "ANNALS_OPEN_FILES_CHILD_DIR";
/// The child's `ulimit -n`.
const FILE_LIMIT: u64 = 128;
/// The child's budget: half the limit, leaving the rest to the test harness and the log's
/// directory handles.
const BUDGET: usize = 64;
const TOPICS: u32 = 20;
const PARTITIONS: u32 = 10;
const RECORDS: u64 = 12;

#[test]
fn a_log_with_more_files_than_the_ulimit_allows() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {FILE_LIMIT} && exec \"$0\" \"$@\""))
        .arg(&exe)
        .args(["--exact", "open_files::low_ulimit_child", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(ENV_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD DONE"),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The child's work survives in a process without the limit too.
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.topics().len(), TOPICS as usize);
    for (topic, p) in partitions() {
        let p = log.partition(&topic, p).unwrap();
        assert_eq!(p.high_watermark(), RECORDS + 1, "{topic}/{}", p.id());
    }
}

/// The child's part; does nothing unless the parent test set [`ENV_DIR`].
#[test]
fn low_ulimit_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    assert_eq!(
        open_file_limit(),
        Some(FILE_LIMIT),
        "the shell did not apply the limit"
    );
    let fails_without_a_budget = without_a_budget(dir);
    println!("without a budget: {fails_without_a_budget}");

    let log = Log::builder(dir).max_open_files(BUDGET).open().unwrap();
    assert_eq!(
        log.topics().len(),
        0,
        "the topic creation that failed left nothing behind"
    );
    for t in 0..TOPICS {
        log.create_topic(&topic_name(t), config()).unwrap();
        assert_within_budget(&log);
    }
    for (topic, p) in partitions() {
        let p = log.partition(&topic, p).unwrap();
        for i in 0..RECORDS {
            p.append(&[record(&topic, p.id(), i)]).unwrap();
        }
        assert_within_budget(&log);
    }
    let written_segments: usize = partitions()
        .map(|(topic, p)| log.partition(&topic, p).unwrap().segment_count())
        .sum();
    assert!(
        written_segments as u64 * 3 > 4 * FILE_LIMIT,
        "the test must need many more files than the limit: {written_segments} segments"
    );
    read_back(&log, RECORDS);
    log.close().unwrap();

    let log = Log::builder(dir).max_open_files(BUDGET).open().unwrap();
    assert_within_budget(&log);
    read_back(&log, RECORDS);
    for (topic, p) in partitions() {
        let p = log.partition(&topic, p).unwrap();
        p.append(&[record(&topic, p.id(), RECORDS)]).unwrap();
        // The time index of a sealed segment still answers.
        let at = p.offset_for_timestamp(timestamp(1)).unwrap();
        assert_eq!(at, Some(1), "{topic}/{}", p.id());
    }
    read_back(&log, RECORDS + 1);
    assert_within_budget(&log);
    log.close().unwrap();
    println!("CHILD DONE");
}

/// Opens the log without a budget that fits the limit and creates topics until the limit is
/// hit: the error names the file and the operation, and it is an error, not a panic.
fn without_a_budget(dir: &Path) -> String {
    let log = Log::builder(dir).max_open_files(1 << 20).open().unwrap();
    let err = (0..TOPICS)
        .find_map(|t| log.create_topic(&topic_name(t), config()).err())
        .expect("without a budget, 200 partitions cannot fit in 128 descriptors");
    let message = err.to_string();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(message.contains("os error 24"), "{message}");
    assert!(message.contains(&dir.display().to_string()), "{message}");
    // The topics that were created are whole: drop their data so the budgeted run starts
    // from an empty log.
    for topic in log.topics() {
        log.delete_topic(&topic).unwrap();
    }
    drop(log);
    message
}

fn config() -> TopicConfig {
    TopicConfig::default()
        .partitions(PARTITIONS)
        .segment_bytes(1024)
        .segment_index_bytes(4096)
}

fn topic_name(t: u32) -> String {
    format!("aggregate-{t:03}")
}

fn partitions() -> impl Iterator<Item = (String, u32)> {
    (0..TOPICS).flat_map(|t| (0..PARTITIONS).map(move |p| (topic_name(t), p)))
}

/// Record `i` of a partition: about 300 bytes, so a 1 KiB segment holds three.
fn record(topic: &str, p: u32, i: u64) -> Record {
    Record::new(format!("{topic}/{p}/{i}/{}", "x".repeat(280)))
        .key(format!("{i}"))
        .timestamp(timestamp(i))
}

fn timestamp(i: u64) -> i64 {
    1_700_000_000_000 + i as i64 * 1000
}

fn read_back(log: &Log, records: u64) {
    for (topic, p) in partitions() {
        let partition = log.partition(&topic, p).unwrap();
        let read: Vec<_> = partition.iter(0).map(|r| r.unwrap()).collect();
        assert_eq!(read.len() as u64, records, "{topic}/{p}");
        for (i, r) in read.iter().enumerate() {
            let want = record(&topic, p, i as u64);
            assert_eq!(r.offset, i as u64);
            assert_eq!(r.value.as_deref(), want.value.as_deref(), "{topic}/{p}@{i}");
        }
        assert_within_budget(log);
    }
}

fn assert_within_budget(log: &Log) {
    let open = log.metrics().files.open_files;
    assert!(open <= BUDGET as u64, "{open} files open, budget {BUDGET}");
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A budget far below the files in use, with writers rolling segments, readers reading old
/// ones and retention retiring segments under them (renames of files the budget may have
/// closed): every read sees exactly what was written, in order, and nothing fails.
#[test]
fn a_tiny_budget_under_writers_readers_and_retention() {
    const TOPIC_PARTITIONS: u32 = 12;
    const PER_PARTITION: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path())
        .max_open_files(16)
        .maintenance_interval(None)
        .open()
        .unwrap();
    let config = TopicConfig::default()
        .partitions(TOPIC_PARTITIONS)
        .segment_bytes(2048)
        .segment_index_bytes(4096)
        .retention_bytes(Some(16 << 10));
    log.create_topic("busy", config).unwrap();
    let value = |p: u32, i: u64| format!("{p}:{i}:{}", "v".repeat(100));
    std::thread::scope(|s| {
        for w in 0..2u32 {
            let log = &log;
            s.spawn(move || {
                for i in 0..PER_PARTITION {
                    for p in (w..TOPIC_PARTITIONS).step_by(2) {
                        let part = log.partition("busy", p).unwrap();
                        part.append(&[Record::new(value(p, i))]).unwrap();
                    }
                }
            });
        }
        let log = &log;
        s.spawn(move || {
            for _ in 0..20 {
                log.run_maintenance().unwrap();
                std::thread::yield_now();
            }
        });
        for r in 0..2u32 {
            s.spawn(move || {
                for round in 0..5 {
                    for p in (r..TOPIC_PARTITIONS).step_by(2) {
                        let part = log.partition("busy", p).unwrap();
                        let mut next: Option<u64> = None;
                        for record in part.iter(part.log_start_offset()) {
                            // Retention may move the start past a reader: it then sees an
                            // error for the removed range, never wrong data.
                            let record = match record {
                                Ok(record) => record,
                                Err(e) => {
                                    assert!(
                                        matches!(e, annals::Error::OffsetOutOfRange { .. }),
                                        "p{p} round {round}: {e:?}"
                                    );
                                    break;
                                }
                            };
                            if let Some(n) = next {
                                assert_eq!(record.offset, n, "p{p} round {round}");
                            }
                            assert_eq!(
                                record.value_str(),
                                Some(value(p, record.offset).as_str()),
                                "p{p} round {round}"
                            );
                            next = Some(record.offset + 1);
                        }
                    }
                }
            });
        }
    });
    log.run_maintenance().unwrap();
    for p in 0..TOPIC_PARTITIONS {
        let part = log.partition("busy", p).unwrap();
        assert_eq!(part.high_watermark(), PER_PARTITION);
        assert!(
            part.log_start_offset() > 0,
            "retention removed old segments"
        );
        let offsets: Vec<u64> = part
            .iter(part.log_start_offset())
            .map(|r| r.unwrap().offset)
            .collect();
        assert_eq!(
            offsets,
            (part.log_start_offset()..PER_PARTITION).collect::<Vec<_>>()
        );
    }
    assert!(log.metrics().files.open_files <= 16);
    log.close().unwrap();
    let log = Log::builder(dir.path()).max_open_files(16).open().unwrap();
    assert_eq!(
        log.partition("busy", 0).unwrap().high_watermark(),
        PER_PARTITION
    );
}
