//! The reading commands (`topics`, `describe`, `tail`, `groups`, `transactions`, `verify`) on
//! logs the tests build — also while the test process owns the log and writes to it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use annals::{
    ConsumerConfig, Log, OffsetAndMetadata, ProducerConfig, Record, TopicConfig, TopicPartition,
};

use crate::common::{arg, assert_one_line_error, json_lines, open, run, T0};

/// Topic `orders` (2 partitions, 1 KiB segments) with 30 records in partition 0 and 5 in 1,
/// all with keys and timestamps `T0 + offset`.
fn orders(dir: &Path) -> Log {
    let log = open(dir);
    log.create_topic(
        "orders",
        TopicConfig::default().partitions(2).segment_bytes(1024),
    )
    .unwrap();
    for (partition, n) in [(0u32, 30u64), (1, 5)] {
        let p = log.partition("orders", partition).unwrap();
        for i in 0..n {
            p.append(&[Record::new(format!("p{partition}-v{i:03}"))
                .key(format!("k{i}"))
                .header("h", "x")
                .timestamp(T0 + i as i64)])
                .unwrap();
        }
    }
    log
}

#[test]
fn topics_and_describe_show_offsets_segments_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let log = orders(dir.path());
    // The test process owns the log (holds its lock) while the commands read it.
    let ran = run(&["topics", arg(dir.path())], "");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(lines[0].starts_with("topic"), "{}", ran.stdout);
    assert!(
        lines[1].starts_with("orders") && lines[1].contains(" 35 "),
        "{}",
        ran.stdout
    );

    let ran = run(&["--json", "describe", arg(dir.path()), "orders"], "");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let objects = json_lines(&ran.stdout);
    let config = &objects[0];
    assert_eq!(config["kind"], "config");
    assert_eq!(config["partitions"], 2);
    assert_eq!(config["segment_bytes"], 1024);
    let partitions: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == "partition")
        .collect();
    assert_eq!(partitions.len(), 2);
    assert_eq!(partitions[0]["high_watermark"], 30);
    assert_eq!(partitions[0]["last_stable"], 30);
    assert_eq!(partitions[1]["high_watermark"], 5);
    assert_eq!(partitions[0]["tail"], "clean");
    let segments = objects.iter().filter(|o| o["kind"] == "segment").count();
    assert!(segments > 2, "{}", ran.stdout);
    assert_eq!(
        partitions[0]["segments"].as_u64().unwrap() + partitions[1]["segments"].as_u64().unwrap(),
        segments as u64
    );

    let ran = run(&["describe", arg(dir.path()), "orders"], "");
    assert!(
        ran.stdout.contains("cleanup_policy: delete"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("high watermark"), "{}", ran.stdout);
    log.close().unwrap();
}

#[test]
fn tail_prints_from_where_it_is_told_and_what_it_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let log = orders(dir.path());
    let d = arg(dir.path());
    // Default: the end, so nothing without -f.
    let ran = run(&["tail", d, "orders"], "");
    assert_eq!((ran.code, ran.stdout.as_str()), (0, ""), "{}", ran.stderr);

    let ran = run(
        &["tail", d, "orders", "--from-beginning", "--partition", "1"],
        "",
    );
    assert_eq!(
        ran.stdout.lines().collect::<Vec<_>>(),
        (0..5).map(|i| format!("p1-v{i:03}")).collect::<Vec<_>>()
    );

    let ran = run(
        &[
            "tail",
            d,
            "orders",
            "--partition",
            "0",
            "--offset",
            "27",
            "--print-key",
            "--print-offset",
            "--print-timestamp",
            "--print-headers",
        ],
        "",
    );
    assert_eq!(
        ran.stdout,
        format!(
            "CreateTime:{}\tPartition:0\tOffset:27\th=x\tk27\tp0-v027\n\
             CreateTime:{}\tPartition:0\tOffset:28\th=x\tk28\tp0-v028\n\
             CreateTime:{}\tPartition:0\tOffset:29\th=x\tk29\tp0-v029\n",
            T0 + 27,
            T0 + 28,
            T0 + 29
        )
    );

    let ran = run(
        &[
            "tail",
            d,
            "orders",
            "--time",
            &(T0 + 3).to_string(),
            "--max-records",
            "4",
        ],
        "",
    );
    assert_eq!(ran.stdout.lines().count(), 4, "{}", ran.stdout);
    assert!(ran.stdout.starts_with("p0-v003\n"), "{}", ran.stdout);

    // --group starts where the group committed.
    let mut c = log.consumer(ConsumerConfig::new("billing")).unwrap();
    c.assign(&[("orders", 0), ("orders", 1)]).unwrap();
    c.commit_offsets(&[(TopicPartition::new("orders", 0), OffsetAndMetadata::new(28))])
        .unwrap();
    let ran = run(
        &[
            "--json",
            "tail",
            d,
            "orders",
            "--group",
            "billing",
            "--partition",
            "0",
        ],
        "",
    );
    let records = json_lines(&ran.stdout);
    assert_eq!(records.len(), 2, "{}", ran.stdout);
    assert_eq!(records[0]["offset"], 28);
    assert_eq!(records[0]["key"], "k28");
    assert_eq!(records[0]["headers"]["h"], "x");
    assert_eq!(records[0]["timestamp"], T0 + 28);

    // Past the end: a clear error.
    let ran = run(
        &["tail", d, "orders", "--partition", "1", "--offset", "99"],
        "",
    );
    assert_one_line_error(&ran, 1, &["tail", "offset 99"]);
    log.close().unwrap();
}

#[test]
fn tail_read_committed_hides_open_transactions_and_groups_and_transactions_show_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = orders(dir.path());
    let d = arg(dir.path());
    let p = log
        .producer(ProducerConfig::default().transactional_id("payments"))
        .unwrap();
    p.init_transactions().unwrap();
    p.begin_transaction().unwrap();
    p.send_to("orders", 1, Record::new("uncommitted")).unwrap();
    p.flush().unwrap();

    let committed = run(
        &[
            "tail",
            d,
            "orders",
            "--partition",
            "1",
            "--from-beginning",
            "--isolation",
            "read_committed",
        ],
        "",
    );
    assert_eq!(committed.stdout.lines().count(), 5, "{}", committed.stdout);
    let uncommitted = run(
        &["tail", d, "orders", "--partition", "1", "--from-beginning"],
        "",
    );
    assert_eq!(uncommitted.stdout.lines().last(), Some("uncommitted"));

    let ran = run(&["--json", "transactions", d], "");
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let open = json_lines(&ran.stdout);
    assert_eq!(open.len(), 1, "{}", ran.stdout);
    assert_eq!(open[0]["transactional_id"], "payments");
    assert_eq!(open[0]["state"], "Ongoing");
    assert_eq!(open[0]["partitions"], "orders-1");
    assert_eq!(open[0]["hanging"], false);
    p.commit_transaction().unwrap();
    let ran = run(&["transactions", d], "");
    assert_eq!(ran.stdout, "no open transactions\n");

    let mut c = log.consumer(ConsumerConfig::new("billing")).unwrap();
    c.assign(&[("orders", 0), ("orders", 1)]).unwrap();
    c.commit_offsets(&[
        (TopicPartition::new("orders", 0), OffsetAndMetadata::new(10)),
        (
            TopicPartition::new("orders", 1),
            OffsetAndMetadata::new(6).with_metadata("m"),
        ),
    ])
    .unwrap();
    let ran = run(&["--json", "groups", d, "billing"], "");
    let rows = json_lines(&ran.stdout);
    assert_eq!(rows.len(), 2, "{}", ran.stdout);
    assert_eq!(
        (rows[0]["committed"].as_u64(), rows[0]["lag"].as_u64()),
        (Some(10), Some(20))
    );
    assert_eq!(
        (rows[1]["committed"].as_u64(), rows[1]["lag"].as_u64()),
        (Some(6), Some(1))
    );
    assert_eq!(rows[1]["metadata"], "m");
    let ran = run(&["groups", d, "nobody"], "");
    assert_one_line_error(&ran, 1, &["groups", "\"nobody\" has committed no offsets"]);
    log.close().unwrap();
}

#[test]
fn tail_follow_sees_every_record_an_owner_appends_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.create_topic("live", TopicConfig::default().segment_bytes(2048))
        .unwrap();
    let p = log.partition("live", 0).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args([
            "tail",
            arg(dir.path()),
            "live",
            "-f",
            "--from-beginning",
            "--poll-interval-ms",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let pipe = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    const N: usize = 600;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..N / 3 {
        let batch: Vec<Record> = (0..3)
            .map(|j| Record::new(format!("r{:05}", i * 3 + j)))
            .collect();
        p.append(&batch).unwrap();
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
        got.extend(rx.try_iter());
    }
    while got.len() < N {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {} of {N} records arrived", got.len());
        if let Ok(line) = rx.recv_timeout(left) {
            got.push(line);
        }
    }
    let want: Vec<String> = (0..N).map(|i| format!("r{i:05}")).collect();
    assert_eq!(got, want);
    assert!(
        log.partition("live", 0).unwrap().segment_count() > 3,
        "the follower crossed rolls"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    pipe.join().unwrap();
    log.close().unwrap();
}

#[test]
fn produce_then_tail_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let d = arg(dir.path());
    let ran = run(
        &[
            "produce",
            d,
            "notes",
            "--create-partitions",
            "1",
            "--key-separator",
            ":",
        ],
        "a:first\nb:second\nc:third:with:colons\n",
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = run(&["tail", d, "notes", "--from-beginning", "--print-key"], "");
    assert_eq!(ran.stdout, "a\tfirst\nb\tsecond\nc\tthird:with:colons\n");
}

#[test]
fn verify_reports_clean_and_damaged_logs_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    orders(dir.path()).close().unwrap();
    let d = arg(dir.path());
    let ran = run(&["verify", d], "");
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.starts_with("clean: "), "{}", ran.stdout);

    let first = dir.path().join("orders-0").join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[70] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();
    let ran = run(&["verify", d], "");
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains(&format!("damage: {} at byte 0", first.display())),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.lines().last().unwrap().starts_with("DAMAGED: "),
        "{}",
        ran.stdout
    );
    let ran = run(&["--json", "verify", d], "");
    assert_eq!(ran.code, 3);
    let objects = json_lines(&ran.stdout);
    let summary = objects.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["damage"], 1);

    // A damaged topic list is damage too, named.
    let topics = dir.path().join("topics.meta");
    std::fs::write(&topics, b"not a topic list").unwrap();
    let ran = run(&["verify", d], "");
    assert_eq!(ran.code, 3, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .starts_with(&format!("damage: {}: ", topics.display())),
        "{}",
        ran.stdout
    );
}

#[test]
fn reading_commands_refuse_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    for command in ["topics", "verify", "transactions", "groups"] {
        let ran = run(&[command, arg(&missing)], "");
        assert_one_line_error(
            &ran,
            1,
            &[
                command,
                &missing.display().to_string(),
                "no such log directory",
            ],
        );
    }
    let ran = run(&["describe", arg(dir.path()), "orders"], "");
    assert_one_line_error(&ran, 1, &["describe", "not an annals log directory"]);
    assert!(std::fs::read_dir(dir.path())
        .unwrap()
        .all(|e| e.unwrap().file_name() != ".lock"));
    orders(dir.path()).close().unwrap();
    for command in ["describe", "tail"] {
        let ran = run(&[command, arg(dir.path()), "nope"], "");
        assert_one_line_error(&ran, 1, &[command, "unknown topic \"nope\""]);
    }
    let ran = run(&["tail", arg(dir.path()), "orders", "--offset", "3"], "");
    assert_eq!(ran.code, 2, "--offset needs --partition: {}", ran.stderr);
}
