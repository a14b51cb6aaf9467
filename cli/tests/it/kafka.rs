//! `relay` and `mirror` (feature `kafka`) against the real Kafka broker whose address is in
//! `ANNALS_KAFKA_BOOTSTRAP` (`bash kafka/scripts/broker start`): a log relayed to Kafka and
//! mirrored back into a second log has every record equal, a relay killed and restarted
//! forwards nothing twice, and missing topics, an unreachable broker and bad routes are clear
//! one-line errors. Without a broker address these tests fail with how to start one.
#![cfg(feature = "kafka")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annals::{ConsumedRecord, ConsumerConfig, IsolationLevel, Log, Record, TopicConfig};
use futures_executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::common::{arg, assert_one_line_error, json_lines, open, run, Ran};

/// The header the relay adds, holding the annals offset (annals-kafka's default).
const OFFSET_HEADER: &str = "annals.offset";

/// A bound on every wait: only a hang trips it.
const HANG_GUARD: Duration = Duration::from_secs(180);

/// The broker's address; without one the test fails with how to start it.
fn bootstrap() -> String {
    annals_kafka::broker_from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// A name no earlier run used: a run after a failed one, whose topics and relay progress may
/// still be on the broker, starts clean.
fn fresh(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("annals-cli-{what}-{}-{nanos}", std::process::id())
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(HANG_GUARD))
        .operation_timeout(Some(HANG_GUARD))
}

/// A Kafka topic of one test, deleted when dropped (also when an assertion failed).
struct KafkaTopic {
    admin: AdminClient<DefaultClientContext>,
    name: String,
}

impl KafkaTopic {
    fn create(bootstrap: &str, what: &str, partitions: u32) -> KafkaTopic {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("create the admin client");
        let name = fresh(what);
        let new = NewTopic::new(&name, partitions as i32, TopicReplication::Fixed(1));
        let results = block_on(admin.create_topics([&new], &admin_options()))
            .unwrap_or_else(|e| panic!("create topic {name} on {bootstrap}: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("create topic {topic} on {bootstrap}: {code}");
            }
        }
        KafkaTopic { admin, name }
    }
}

impl Drop for KafkaTopic {
    fn drop(&mut self) {
        let deleted = block_on(self.admin.delete_topics(&[&self.name], &admin_options()));
        let failure = match deleted {
            Err(e) => Some(e.to_string()),
            Ok(results) => results
                .into_iter()
                .find_map(|r| r.err().map(|(_, code)| code.to_string())),
        };
        if let Some(why) = failure {
            // A panic while a failed assertion unwinds would abort and hide that assertion.
            if std::thread::panicking() {
                eprintln!("could not delete topic {}: {why}", self.name);
            } else {
                panic!("delete topic {}: {why}", self.name);
            }
        }
    }
}

/// A log at `dir` with topic `orders` of `partitions` partitions holding `count` records:
/// keys (and none), a tombstone, headers, explicit timestamps. The log is closed.
fn orders_log(dir: &Path, partitions: u32, count: usize) {
    let log = open(dir);
    log.create_topic("orders", TopicConfig::default().partitions(partitions))
        .unwrap();
    for i in 0..count {
        let mut record = Record::new(format!("order {i}"))
            .header("trace", format!("t-{i}"))
            .timestamp(1_700_000_000_000 + i as i64);
        if i % 4 != 0 {
            record = record.key(format!("customer-{}", i % 7));
        }
        if i % 9 == 5 {
            record.value = None;
        }
        let p = log.partition("orders", i as u32 % partitions).unwrap();
        p.append(&[record]).unwrap();
    }
    log.close().unwrap();
}

/// Every record of `topic` in the log at `dir`, read_committed, by partition.
fn records(dir: &Path, topic: &str) -> BTreeMap<u32, Vec<ConsumedRecord>> {
    let log = open(dir);
    let out = read_committed(&log, topic);
    log.close().unwrap();
    out
}

fn read_committed(log: &Log, topic: &str) -> BTreeMap<u32, Vec<ConsumedRecord>> {
    let partitions = log.topic_config(topic).unwrap().partitions;
    let mut consumer = log
        .consumer(ConsumerConfig::default().isolation_level(IsolationLevel::ReadCommitted))
        .unwrap();
    let tps: Vec<(&str, u32)> = (0..partitions).map(|p| (topic, p)).collect();
    consumer.assign(&tps).unwrap();
    consumer.seek_to_beginning(&tps).unwrap();
    let mut out: BTreeMap<u32, Vec<ConsumedRecord>> =
        (0..partitions).map(|p| (p, Vec::new())).collect();
    loop {
        let polled = consumer.poll(Duration::from_millis(20)).unwrap();
        if polled.is_empty() {
            let done = (0..partitions).all(|p| {
                consumer.position(topic, p).unwrap()
                    >= log.partition(topic, p).unwrap().last_stable_offset()
            });
            if done {
                return out;
            }
        }
        for r in polled {
            out.get_mut(&r.partition).unwrap().push(r);
        }
    }
}

fn headers(r: &ConsumedRecord) -> Vec<(String, Option<Vec<u8>>)> {
    r.headers
        .iter()
        .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
        .collect()
}

/// The copy went annals → Kafka → annals: per partition, in order, key, value, timestamp and
/// headers equal, plus the relay's header holding the original offset.
fn assert_copied(
    original: &BTreeMap<u32, Vec<ConsumedRecord>>,
    copy: &BTreeMap<u32, Vec<ConsumedRecord>>,
) {
    assert_eq!(
        original.keys().collect::<Vec<_>>(),
        copy.keys().collect::<Vec<_>>(),
        "partitions"
    );
    for (p, records) in original {
        let copied = &copy[p];
        assert_eq!(copied.len(), records.len(), "partition {p}: record count");
        for (a, c) in records.iter().zip(copied) {
            let ctx = format!("partition {p}, offset {}", a.offset);
            assert_eq!(c.key, a.key, "{ctx}: key");
            assert_eq!(c.value, a.value, "{ctx}: value");
            assert_eq!(c.timestamp, a.timestamp, "{ctx}: timestamp");
            let mut want = headers(a);
            want.push((
                OFFSET_HEADER.into(),
                Some(a.offset.to_string().into_bytes()),
            ));
            assert_eq!(headers(c), want, "{ctx}: headers");
        }
    }
}

fn relay_args<'a>(dir: &'a Path, bootstrap: &'a str, id: &'a str, route: &'a str) -> Vec<&'a str> {
    vec![
        "relay",
        arg(dir),
        "--bootstrap",
        bootstrap,
        "--id",
        id,
        "--route",
        route,
    ]
}

fn mirror_args<'a>(dir: &'a Path, bootstrap: &'a str, id: &'a str, route: &'a str) -> Vec<&'a str> {
    vec![
        "mirror",
        arg(dir),
        "--bootstrap",
        bootstrap,
        "--id",
        id,
        "--route",
        route,
    ]
}

#[track_caller]
fn run_ok(args: &[&str]) -> Ran {
    let ran = run(args, "");
    assert_eq!(
        ran.code, 0,
        "{args:?}\nstdout: {}\nstderr: {}",
        ran.stdout, ran.stderr
    );
    ran
}

/// The last line a command printed.
fn last_line(ran: &Ran) -> &str {
    ran.stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {}", ran.stderr))
}

#[test]
fn relay_then_mirror_until_caught_up_copies_every_record_once() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let copy = dir.path().join("copy");
    orders_log(&source, 3, 60);
    let topic = KafkaTopic::create(&bootstrap, "orders", 3);
    let relay_id = fresh("relay");
    let mirror_id = fresh("mirror");
    let to_kafka = format!("orders:{}", topic.name);
    let from_kafka = format!("{}:orders-copy", topic.name);

    let mut relay = relay_args(&source, &bootstrap, &relay_id, &to_kafka);
    relay.push("--until-caught-up");
    let ran = run_ok(&relay);
    let line = last_line(&ran);
    assert!(
        line.starts_with(&format!(
            "relay {relay_id}: stopped, 60 record(s) forwarded"
        )),
        "{line}"
    );
    assert!(line.contains("lag 0"), "{line}");

    // The copy's log directory does not exist yet: the mirror creates it, and the topic.
    let mut mirror = mirror_args(&copy, &bootstrap, &mirror_id, &from_kafka);
    mirror.push("--until-caught-up");
    let ran = run_ok(&mirror);
    let line = last_line(&ran);
    assert!(
        line.starts_with(&format!("mirror {mirror_id}: stopped, 60 record(s) copied")),
        "{line}"
    );
    assert!(line.contains("lag 0"), "{line}");

    let original = records(&source, "orders");
    assert_eq!(original.values().map(Vec::len).sum::<usize>(), 60);
    assert_copied(&original, &records(&copy, "orders-copy"));

    // Run again with the same ids: both resume where they committed, copying nothing twice.
    let ran = run_ok(&relay);
    assert!(
        last_line(&ran).contains(": stopped, 0 record(s) forwarded"),
        "{}",
        ran.stdout
    );
    let ran = run_ok(&mirror);
    assert!(
        last_line(&ran).contains(": stopped, 0 record(s) copied"),
        "{}",
        ran.stdout
    );
    assert_copied(&original, &records(&copy, "orders-copy"));
}

#[test]
fn json_lines_report_state_counts_lag_and_last_error() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    orders_log(&source, 2, 10);
    let topic = KafkaTopic::create(&bootstrap, "json", 2);
    let relay_id = fresh("relay");
    let route = format!("orders:{}", topic.name);
    let mut args = relay_args(&source, &bootstrap, &relay_id, &route);
    args.extend(["--until-caught-up", "--json"]);
    let ran = run_ok(&args);
    let lines = json_lines(&ran.stdout);
    let last = lines.last().expect("a metrics line");
    for line in &lines {
        assert_eq!(line["kind"], "relay", "{line}");
    }
    assert_eq!(last["id"], relay_id.as_str());
    assert_eq!(last["state"], "stopped");
    assert_eq!(last["records_forwarded"], 10);
    assert_eq!(last["lag"], 0);
    assert!(last["last_error"].is_null(), "{last}");
    assert!(
        last["transactions_committed"].as_u64().unwrap() >= 1,
        "{last}"
    );

    let copy = dir.path().join("copy");
    let mirror_id = fresh("mirror");
    let mut args = mirror_args(&copy, &bootstrap, &mirror_id, &topic.name);
    args.extend(["--until-caught-up", "--json"]);
    let ran = run_ok(&args);
    let lines = json_lines(&ran.stdout);
    let last = lines.last().expect("a metrics line");
    assert_eq!(last["kind"], "mirror");
    assert_eq!(last["id"], mirror_id.as_str());
    assert_eq!(last["state"], "stopped");
    assert_eq!(last["records_copied"], 10);
    assert_eq!(last["lag"], 0);
    assert!(last["last_error"].is_null(), "{last}");
    // Without ":ANNALS_TOPIC" the annals topic is named like the Kafka topic.
    assert_eq!(
        records(&copy, &topic.name)
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        10
    );
}

/// Reads a child's stdout lines on a thread, so a wait for one can be bounded.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_relay_running_until_killed_prints_metrics_and_resumes_after_sigkill() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    orders_log(&source, 2, 20);
    let topic = KafkaTopic::create(&bootstrap, "killed", 2);
    let relay_id = fresh("relay");
    let route = format!("orders:{}", topic.name);
    let args = relay_args(&source, &bootstrap, &relay_id, &route);

    // A plain std Command: assert_cmd's waits for the end, and this one runs until killed.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(&args)
        .args(["--json", "--stats-interval", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    // Metrics lines keep coming until it forwarded everything; then it is killed mid-run.
    let mut seen = 0;
    loop {
        let line = match lines.recv_timeout(HANG_GUARD) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("no metrics line with everything forwarded ({e}) after {seen} line(s)");
            }
        };
        seen += 1;
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["kind"], "relay", "{line}");
        assert_eq!(v["state"], "running", "{line}");
        if v["records_forwarded"] == 20 && v["lag"] == 0 {
            break;
        }
    }
    child.kill().expect("SIGKILL the relay");
    child.wait().unwrap();

    // Killed, then restarted with the same id: nothing more to forward.
    let mut again = args.clone();
    again.push("--until-caught-up");
    let ran = run_ok(&again);
    assert!(
        last_line(&ran).contains(": stopped, 0 record(s) forwarded"),
        "{}",
        ran.stdout
    );

    // And Kafka holds each record once.
    let copy = dir.path().join("copy");
    let mirror_id = fresh("mirror");
    let from_kafka = format!("{}:orders", topic.name);
    let mut mirror = mirror_args(&copy, &bootstrap, &mirror_id, &from_kafka);
    mirror.push("--until-caught-up");
    run_ok(&mirror);
    assert_copied(&records(&source, "orders"), &records(&copy, "orders"));
}

#[test]
fn a_missing_kafka_topic_is_named() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    orders_log(&source, 1, 1);
    let missing = fresh("missing");
    let route = format!("orders:{missing}");
    let ran = run(
        &relay_args(&source, &bootstrap, &fresh("relay"), &route),
        "",
    );
    assert_one_line_error(
        &ran,
        1,
        &[
            "relay ",
            &format!("Kafka topic \"{missing}\" does not exist"),
        ],
    );

    let copy = dir.path().join("copy");
    let ran = run(
        &mirror_args(&copy, &bootstrap, &fresh("mirror"), &missing),
        "",
    );
    assert_one_line_error(
        &ran,
        1,
        &[
            "mirror ",
            &format!("Kafka topic \"{missing}\" does not exist"),
        ],
    );
}

#[test]
fn an_unreachable_broker_says_no_broker_answered() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    orders_log(&source, 1, 1);
    let mut args = relay_args(&source, "127.0.0.1:1", "unreachable", "orders");
    args.extend(["--connect-timeout", "2"]);
    let ran = run(&args, "");
    assert_one_line_error(
        &ran,
        1,
        &["relay ", "no Kafka broker at 127.0.0.1:1 answered"],
    );
    // annals still has every record: the relay read nothing before it connected.
    assert_eq!(records(&source, "orders")[&0].len(), 1);

    let copy = dir.path().join("copy");
    let mut args = mirror_args(&copy, "127.0.0.1:1", "unreachable", "orders");
    args.extend(["--connect-timeout", "2"]);
    let ran = run(&args, "");
    assert_one_line_error(
        &ran,
        1,
        &["mirror ", "no Kafka broker at 127.0.0.1:1 answered"],
    );
}

#[test]
fn bad_routes_and_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    orders_log(&source, 1, 1);
    for (route, why) in [
        ("orders:a:b", "at most one ':'"),
        (":kafka", "the topic to read, before any ':', is empty"),
        ("orders:", "the topic to write, after ':', is empty"),
    ] {
        for command in ["relay", "mirror"] {
            let ran = run(
                &[
                    command,
                    arg(&source),
                    "--bootstrap",
                    "127.0.0.1:1",
                    "--id",
                    "r",
                    "--route",
                    route,
                ],
                "",
            );
            assert_eq!(ran.code, 2, "{command} {route}: {}", ran.stderr);
            assert!(
                ran.stderr
                    .contains(&format!("invalid value '{route}' for '--route")),
                "{}",
                ran.stderr
            );
            assert!(ran.stderr.contains(why), "{}", ran.stderr);
            assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
        }
    }
    // Names the configuration check refuses come back as one line, before any connection.
    let ran = run(&relay_args(&source, "127.0.0.1:1", "bad id!", "orders"), "");
    assert_one_line_error(&ran, 1, &["relay ", "invalid relay id", "\"bad id!\""]);
    let ran = run(
        &relay_args(&source, "127.0.0.1:1", "r", "orders:bad/topic"),
        "",
    );
    assert_one_line_error(&ran, 1, &["relay ", "bad/topic"]);
    // The relay opens only an existing log.
    let ran = run(
        &relay_args(&dir.path().join("nothing"), "127.0.0.1:1", "r", "orders"),
        "",
    );
    assert_one_line_error(&ran, 1, &["relay ", "no such log directory"]);
    // --timeout only means something with --until-caught-up.
    let mut args = relay_args(&source, "127.0.0.1:1", "r", "orders");
    args.extend(["--timeout", "5"]);
    let ran = run(&args, "");
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--until-caught-up"), "{}", ran.stderr);
}
