//! `dump` and `dump --deep` of a log holding every kind of batch, against golden files
//! (`golden/*.txt`; `ANNALS_BLESS=1` rewrites them from the current output).

use std::path::Path;

use crate::common::{arg, json_lines, mixed_log, run};

/// The output with the temp directory replaced by `<DIR>` and the one value that is not
/// fixed: the commit marker is stamped with the commit's wall-clock time (so are its CRC and
/// its record's timestamp).
fn normalise(stdout: &str, dir: &Path) -> String {
    let mut in_control = false;
    let mut out = String::new();
    for line in stdout.replace(arg(dir), "<DIR>").lines() {
        if line.starts_with("baseOffset: ") {
            in_control = line.contains("isControl: true");
        }
        let line = if in_control {
            mask(&mask(line, "CreateTime"), "crc")
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `name: value` → `name: <masked>`.
fn mask(line: &str, name: &str) -> String {
    let key = format!("{name}: ");
    let Some(at) = line.find(&key) else {
        return line.to_string();
    };
    let start = at + key.len();
    let end = line[start..].find(' ').map_or(line.len(), |i| start + i);
    format!("{}<masked>{}", &line[..start], &line[end..])
}

#[track_caller]
fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/golden")
        .join(name);
    if std::env::var_os("ANNALS_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (ANNALS_BLESS=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "dump output differs from {} (ANNALS_BLESS=1 rewrites it)",
        path.display()
    );
}

#[test]
fn dump_matches_the_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let partition = mixed_log(dir.path());
    let ran = run(&["dump", arg(&partition)], "");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stderr, "");
    check_golden("dump.txt", &normalise(&ran.stdout, dir.path()));
}

#[test]
fn dump_deep_matches_the_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let partition = mixed_log(dir.path());
    let ran = run(&["dump", "--deep", arg(&partition)], "");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    check_golden("dump_deep.txt", &normalise(&ran.stdout, dir.path()));
}

/// The JSON lines carry the same facts, typed: one object per batch and per record.
#[test]
fn dump_deep_json_has_an_object_per_batch_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let partition = mixed_log(dir.path());
    let ran = run(&["dump", "--deep", "--json", arg(&partition)], "");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let lines = json_lines(&ran.stdout);
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["kind"] == kind).collect()
    };
    assert_eq!(of("file").len(), 2, "segments 0 and 10");
    let batches = of("batch");
    let records = of("record");
    assert_eq!(batches.len(), 7);
    assert_eq!(records.len(), 12, "offsets 0..=11, the marker included");
    assert!(batches.iter().all(|b| b["is_valid"] == true));
    let lz4 = batches
        .iter()
        .find(|b| b["compresscodec"] == "lz4")
        .unwrap();
    assert_eq!(
        (lz4["base_offset"].as_u64(), lz4["count"].as_u64()),
        (Some(5), Some(3))
    );
    let txn = batches
        .iter()
        .find(|b| b["is_transactional"] == true && b["is_control"] == false)
        .unwrap();
    assert_eq!(
        (txn["base_sequence"].as_i64(), txn["last_sequence"].as_i64()),
        (Some(0), Some(1))
    );
    let record = |offset: u64| records.iter().find(|r| r["offset"] == offset).unwrap();
    assert_eq!(
        record(0)["header_keys"],
        serde_json::json!(["trace", "source"])
    );
    assert_eq!(record(0)["key"], "order-1");
    assert_eq!(record(2)["payload"], serde_json::Value::Null, "a tombstone");
    assert_eq!(record(2)["value_size"], -1);
    assert_eq!(record(3)["key_hex"], "c328");
    assert_eq!(record(3)["header_keys"], serde_json::json!(["bell"]));
    assert_eq!(record(3)["payload_hex"], "ff007f");
    assert_eq!(record(4)["payload"], "line one\nline two");
    assert_eq!(record(4)["key"], serde_json::Value::Null);
    assert_eq!(
        record(10)["end_txn_marker"],
        serde_json::json!({"type": "COMMIT", "coordinator_epoch": 0})
    );
    assert!(of("problem").is_empty(), "{:?}", of("problem"));
}

/// An aborted transaction leaves an entry in the segment's `.txnindex`.
#[test]
fn dump_of_a_txnindex_lists_aborted_transactions() {
    use annals::{ProducerConfig, Record, TopicConfig};
    let dir = tempfile::tempdir().unwrap();
    let log = crate::common::open(dir.path());
    log.create_topic("a", TopicConfig::default()).unwrap();
    let producer = log
        .producer(ProducerConfig::default().transactional_id("aborter"))
        .unwrap();
    producer.init_transactions().unwrap();
    producer.begin_transaction().unwrap();
    producer.send_to("a", 0, Record::new("doomed")).unwrap();
    producer.flush().unwrap();
    producer.abort_transaction().unwrap();
    producer.close().unwrap();
    log.close().unwrap();
    let txn_index = dir.path().join("a-0/00000000000000000000.txnindex");
    let ran = run(&["dump", arg(&txn_index)], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let expected = format!(
        "Dumping {}\nversion: 0 producerId: {} firstOffset: 0 lastOffset: 1 lastStableOffset: 2\n",
        txn_index.display(),
        1u64 << 62
    );
    assert_eq!(ran.stdout, expected);

    let json = run(&["dump", "--json", arg(&txn_index)], "");
    let entry = json_lines(&json.stdout)
        .into_iter()
        .find(|l| l["kind"] == "aborted_txn")
        .unwrap();
    assert_eq!(
        (
            entry["first_offset"].as_u64(),
            entry["last_offset"].as_u64()
        ),
        (Some(0), Some(1))
    );
}
