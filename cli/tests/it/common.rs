//! Logs the tests build with the annals API, and helpers to run the binary on them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use annals::format::{BatchBuilder, BatchOptions};
use annals::{Compression, Log, ProducerConfig, Record, TopicConfig};

/// Every fixture record's timestamp is this plus a small step, so outputs are deterministic.
pub const T0: i64 = 1_700_000_000_000;

/// The binary under test.
pub fn annals() -> assert_cmd::Command {
    assert_cmd::cargo::cargo_bin_cmd!("annals")
}

/// A log directory with background maintenance off (tests run it themselves, if at all).
pub fn open(dir: &Path) -> Log {
    Log::builder(dir)
        .maintenance_interval(None)
        .open()
        .expect("open the fixture log")
}

/// Topic `t` (one partition) holding one of each kind of batch `dump` must show:
///
/// | offsets | batch |
/// |---|---|
/// | 0-1 | keys, two headers on the first record |
/// | 2 | a tombstone (null value) |
/// | 3-4 | a key and a value that are not UTF-8; a value with a line break, no key |
/// | 5-7 | an lz4-compressed batch |
/// | 8-9 | a transactional batch of an idempotent producer |
/// | 10 | its COMMIT marker (a control batch, stamped with the commit time) |
/// | 11 | a plain record after the transaction |
///
/// The marker's timestamp (the commit's wall-clock time) is years after the others, so it
/// rolls a new segment (`segment_ms`): the partition has two segments, at 0 and 10.
///
/// Returns the partition directory. The log is closed (its segment sealed).
pub fn mixed_log(dir: &Path) -> PathBuf {
    let log = open(dir);
    log.create_topic("t", TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&[
        Record::new("created")
            .key("order-1")
            .header("trace", "abc")
            .header("source", "web")
            .timestamp(T0),
        Record::new("paid").key("order-1").timestamp(T0 + 5),
    ])
    .unwrap();
    p.append(&[Record::tombstone("order-2").timestamp(T0 + 10)])
        .unwrap();
    p.append(&[
        Record::new(vec![0xff, 0x00, 0x7f])
            .key(vec![0xc3, 0x28])
            .header("bell", "\x07")
            .timestamp(T0 + 20),
        Record::new("line one\nline two").timestamp(T0 + 21),
    ])
    .unwrap();
    let mut builder = BatchBuilder::new(BatchOptions {
        compression: Compression::Lz4,
        ..BatchOptions::default()
    });
    for i in 0..3 {
        let record = Record::new(format!("compressed value {i} {}", "x".repeat(40))).key("lz");
        builder.push(&record, T0 + 30 + i).unwrap();
    }
    let mut batch = Vec::new();
    builder.finish_into(&mut batch).unwrap();
    p.append_batch(&batch).unwrap();

    // A long linger keeps the transaction's two records in one batch: commit flushes it.
    let producer = log
        .producer(
            ProducerConfig::default()
                .transactional_id("golden")
                .linger(Duration::from_secs(3600)),
        )
        .unwrap();
    producer.init_transactions().unwrap();
    producer.begin_transaction().unwrap();
    for (i, value) in ["in txn 1", "in txn 2"].into_iter().enumerate() {
        let record = Record::new(value).key("txn").timestamp(T0 + 40 + i as i64);
        producer.send_to("t", 0, record).unwrap();
    }
    producer.commit_transaction().unwrap();
    producer.close().unwrap();
    p.append(&[Record::new("after").timestamp(T0 + 50)])
        .unwrap();
    log.close().unwrap();
    dir.join("t-0")
}

/// Topic `v`: 1 KiB segments and an index entry for every batch but a segment's first, 40
/// batches of ~150 bytes with growing timestamps, so there are several segments, each with
/// several index entries. The log is closed (its sealed segments' index files trimmed).
pub fn indexed_log(dir: &Path) -> PathBuf {
    let log = open(dir);
    let config = TopicConfig::default()
        .segment_bytes(1024)
        .index_interval_bytes(0);
    log.create_topic("v", config).unwrap();
    let p = log.partition("v", 0).unwrap();
    append_indexed(&p, 0..40);
    log.close().unwrap();
    dir.join("v-0")
}

/// Appends batches `range` (one record each) as `indexed_log` does.
pub fn append_indexed(p: &annals::Partition, range: std::ops::Range<i64>) {
    for i in range {
        let value = format!("value {i} {}", "y".repeat(100));
        p.append(&[Record::new(value)
            .key(format!("k{i}"))
            .timestamp(T0 + i * 10)])
            .unwrap();
    }
}

/// The `.log` files of a partition directory, in offset order.
pub fn segments(partition_dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// Byte positions of the batches of a `.log` file (read with the format API).
pub fn batch_positions(log_file: &Path) -> Vec<u64> {
    let bytes = std::fs::read(log_file).unwrap();
    let mut positions = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        positions.push(at as u64);
        at += annals::format::peek_batch_len(&bytes[at..])
            .unwrap()
            .unwrap();
    }
    positions
}

/// What one run printed, as strings.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with `args` (and `stdin`) and collects what it printed.
pub fn run(args: &[&str], stdin: &str) -> Ran {
    let output = annals().args(args).write_stdin(stdin).output().unwrap();
    Ran {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `path` as an argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Asserts a failure: exit code `code`, exactly one line on stderr, starting `annals: ` and
/// containing every one of `needles`.
#[track_caller]
pub fn assert_one_line_error(ran: &Ran, code: i32, needles: &[&str]) {
    assert_eq!(
        ran.code, code,
        "stdout: {}\nstderr: {}",
        ran.stdout, ran.stderr
    );
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {:?}", ran.stderr);
    assert!(lines[0].starts_with("annals: "), "{:?}", lines[0]);
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{needle:?} not in {:?}",
            lines[0]
        );
    }
    assert!(
        !ran.stderr.contains("panicked") && !ran.stderr.contains("RUST_BACKTRACE"),
        "{}",
        ran.stderr
    );
}

/// Every stdout line as a JSON object.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.get("kind").is_some_and(|k| k.is_string()), "no kind: {l}");
            v
        })
        .collect()
}
