//! kill -9 rounds against a real Kafka broker. A child process — this test binary again, with
//! the child's environment — runs the relay (or the mirror) while records keep coming, and is
//! SIGKILLed at random moments and restarted; a last child runs until it has caught up. Then a
//! read_committed reader must find every record exactly once, in order per partition.
//!
//! - Relay: the child owns the annals log, appends `p<partition>-<offset>` records to it from a
//!   thread (so each restart continues where the log ends) and relays them to Kafka.
//! - Mirror: this process writes `p<partition>-<n>` records to Kafka in Kafka transactions (one
//!   aborted in every ten), the child mirrors them into its annals log.
//!
//! Environment: `ANNALS_KAFKA_KILL_ROUNDS` (kills per test, default 20),
//! `ANNALS_KAFKA_KILL_RECORDS` (records per test, default 6,000), `ANNALS_TEST_SEED`.
#![cfg(unix)]

mod common;

use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use annals::{ConsumerConfig, IsolationLevel, Log, ProducerConfig, Record, TopicConfig};
use annals_kafka::{Mirror, MirrorConfig, Relay, RelayConfig};
use common::{bootstrap, fresh_name, hang_guard, read_committed, Topic};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const PARTITIONS: u32 = 3;
const TOPIC: &str = "orders";
const ROLE_ENV: &str = "ANNALS_KAFKA_KILL_CHILD";

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn rounds() -> usize {
    env_usize("ANNALS_KAFKA_KILL_ROUNDS", 20)
}

fn records() -> u64 {
    env_usize("ANNALS_KAFKA_KILL_RECORDS", 6_000) as u64
}

/// A small xorshift generator: the kill moments, reproducible from the seed printed.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("ANNALS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("ANNALS_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn value(partition: u32, n: u64) -> String {
    format!("p{partition}-{n:08}")
}

/// This test binary run again as the child `test`, its stdout lines sent to the receiver.
fn spawn_child(test: &str, envs: &[(&str, &str)]) -> (Child, Receiver<String>) {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, test)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line starting with `want`; an `ERROR` line or the child's end fails the test.
fn wait_for(rx: &Receiver<String>, want: &str, child: &mut Child) {
    let deadline = Instant::now() + hang_guard() * 2;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) if line.starts_with(want) => return,
            Ok(line) if line.starts_with("ERROR") => {
                let _ = child.kill();
                panic!("the child failed: {line}");
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "no {want} from the child ({e:?}); it exited: {:?}",
                    child.try_wait()
                );
            }
        }
    }
}

/// Runs `rounds()` children killed at random moments, then one to the end.
fn kill_rounds(test: &str, envs: &[(&str, &str)], rng: &mut Rng) {
    for round in 0..rounds() {
        let (mut child, rx) = spawn_child(test, envs);
        wait_for(&rx, "READY", &mut child);
        std::thread::sleep(Duration::from_millis(100 + rng.below(1200)));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        // Only the last child may end by itself: every other one dies by the signal.
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}: the child was not killed: {status}"
        );
        println!("round {round}: killed");
    }
    let mut last = envs.to_vec();
    last.push(("KILL_FINAL", "1"));
    let (mut child, rx) = spawn_child(test, &last);
    wait_for(&rx, "DONE", &mut child);
    assert!(child.wait().expect("reap the last child").success());
}

fn child_role(test: &str) -> bool {
    std::env::var(ROLE_ENV).is_ok_and(|r| r == test)
}

/// Whether this child is the last one, which runs to the end; the others run until killed.
fn final_child() -> bool {
    std::env::var("KILL_FINAL").is_ok()
}

fn wait_to_be_killed() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The pause between two writes of a batch, so that the writing spans the kill rounds (each
/// about 0.8 s of work on average) instead of being over in the first.
fn pace(batches: u64) -> Duration {
    Duration::from_millis(rounds() as u64 * 1000 / batches.max(1))
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set for the child"))
}

// ---- relay ----

#[test]
fn relay_child() {
    if !child_role("relay_child") {
        return; // only as the child of `relay_forwards_exactly_once_across_kills`
    }
    if let Err(e) = relay_child_run() {
        println!("\nERROR {e}");
    }
}

fn relay_child_run() -> Result<(), Box<dyn std::error::Error>> {
    let log = Log::builder(env("KILL_DIR"))
        .maintenance_interval(None)
        .open()?;
    let relay = Relay::start(
        &log,
        RelayConfig::new(env("KILL_RELAY_ID"), env("KILL_BOOTSTRAP"))
            .progress_topic(env("KILL_PROGRESS"))
            .connect_timeout(hang_guard())
            .max_transaction_records(200)
            .route(TOPIC, env("KILL_KAFKA_TOPIC")),
    )?;
    println!("\nREADY");
    let total = records();
    let pause = pace(total / (5 * u64::from(PARTITIONS)));
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || -> annals::Result<()> {
            let producer = log.producer(ProducerConfig::default())?;
            loop {
                let mut written = 0;
                for p in 0..PARTITIONS {
                    let next = log.partition(TOPIC, p)?.high_watermark();
                    written += next;
                    if next * u64::from(PARTITIONS) < total {
                        for n in next..next + 5 {
                            producer.send_to(TOPIC, p, Record::new(value(p, n)))?;
                        }
                    }
                }
                producer.flush()?;
                if written >= total {
                    return Ok(());
                }
                std::thread::sleep(pause);
            }
        })
    };
    writer.join().expect("the writer thread")?;
    if !final_child() {
        wait_to_be_killed();
    }
    if !relay.wait_until_caught_up(hang_guard())? {
        return Err(format!("not caught up: {:?}", relay.metrics()).into());
    }
    relay.stop()?;
    println!("\nDONE");
    Ok(())
}

#[test]
fn relay_forwards_exactly_once_across_kills() {
    if std::env::var(ROLE_ENV).is_ok() {
        return;
    }
    let bootstrap = bootstrap();
    let mut rng = Rng::from_env();
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path()).unwrap();
        log.create_topic(
            TOPIC,
            TopicConfig::default()
                .partitions(PARTITIONS)
                .segment_bytes(64 << 10),
        )
        .unwrap();
    }
    let kafka = Topic::create(&bootstrap, "relay-kill", PARTITIONS);
    let id = fresh_name("relay-kill");
    let progress = format!("{id}-progress");
    let envs = [
        ("KILL_DIR", dir.path().to_str().unwrap()),
        ("KILL_BOOTSTRAP", bootstrap.as_str()),
        ("KILL_RELAY_ID", id.as_str()),
        ("KILL_PROGRESS", progress.as_str()),
        ("KILL_KAFKA_TOPIC", kafka.name.as_str()),
    ];
    kill_rounds("relay_child", &envs, &mut rng);

    let log = Log::open(dir.path()).unwrap();
    let mut expected = 0;
    for p in 0..PARTITIONS {
        let hw = log.partition(TOPIC, p).unwrap().high_watermark();
        expected += hw as usize;
        for r in log.partition(TOPIC, p).unwrap().read(0, 1 << 30).unwrap() {
            assert_eq!(
                r.value.as_deref(),
                Some(value(p, r.offset).as_bytes()),
                "annals {p}@{}",
                r.offset
            );
        }
    }
    assert!(
        expected as u64 >= records(),
        "the children wrote {expected} records"
    );
    let seen = read_committed(
        &bootstrap,
        &kafka.name,
        PARTITIONS,
        expected,
        Duration::from_secs(2),
    );
    assert_eq!(seen.len(), expected, "Kafka has a record too many");
    for p in 0..PARTITIONS {
        let on_p: Vec<_> = seen.iter().filter(|s| s.partition == p).collect();
        for (n, s) in on_p.iter().enumerate() {
            assert_eq!(
                s.value.as_deref(),
                Some(value(p, n as u64).as_bytes()),
                "Kafka partition {p}, record {n}"
            );
            assert_eq!(s.header("annals.offset"), Some(n.to_string().as_bytes()));
        }
    }
}

// ---- mirror ----

#[test]
fn mirror_child() {
    if !child_role("mirror_child") {
        return; // only as the child of `mirror_copies_exactly_once_across_kills`
    }
    if let Err(e) = mirror_child_run() {
        println!("\nERROR {e}");
    }
}

fn mirror_child_run() -> Result<(), Box<dyn std::error::Error>> {
    let log = Log::builder(env("KILL_DIR"))
        .maintenance_interval(None)
        .open()?;
    let mirror = Mirror::start(
        &log,
        MirrorConfig::new(env("KILL_MIRROR_ID"), env("KILL_BOOTSTRAP"))
            .connect_timeout(hang_guard())
            .max_transaction_records(200)
            .route(env("KILL_KAFKA_TOPIC"), TOPIC),
    )?;
    println!("\nREADY");
    // The parent says when Kafka has everything by creating this file.
    if !final_child() {
        wait_to_be_killed();
    }
    // The parent says when Kafka has everything by creating this file.
    let done_file = env("KILL_SOURCE_DONE");
    while !Path::new(&done_file).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !mirror.wait_until_caught_up(hang_guard())? {
        return Err(format!("not caught up: {:?}", mirror.metrics()).into());
    }
    mirror.stop()?;
    println!("\nDONE");
    Ok(())
}

/// Writes `total` records to Kafka, spread over the partitions, in transactions of 30; every
/// tenth transaction is aborted after its records were sent (and written again, committed).
fn write_kafka(bootstrap: &str, topic: &str, total: u64, stop: &AtomicBool) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", format!("{topic}-writer"))
        .create()
        .expect("create the Kafka writer");
    producer
        .init_transactions(hang_guard())
        .expect("init_transactions");
    let mut next = [0u64; PARTITIONS as usize];
    let mut txn = 0;
    let mut written = 0;
    let pause = pace(total / 30);
    while written < total && !stop.load(Ordering::Relaxed) {
        txn += 1;
        let abort = txn % 10 == 0;
        producer.begin_transaction().expect("begin");
        let mut sent = [0u64; PARTITIONS as usize];
        for i in 0..30u64 {
            let p = ((written + i) % u64::from(PARTITIONS)) as u32;
            let v = if abort {
                format!("aborted-{txn}")
            } else {
                value(p, next[p as usize] + sent[p as usize])
            };
            let mut record = BaseRecord::<(), str>::to(topic)
                .partition(p as i32)
                .payload(&v);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => panic!("send to Kafka: {e}"),
                }
            }
            sent[p as usize] += 1;
        }
        if abort {
            producer
                .flush(hang_guard())
                .expect("flush the aborted records");
            producer.abort_transaction(hang_guard()).expect("abort");
        } else {
            producer.commit_transaction(hang_guard()).expect("commit");
            for p in 0..PARTITIONS as usize {
                next[p] += sent[p];
            }
            written += 30;
        }
        std::thread::sleep(pause);
    }
}

#[test]
fn mirror_copies_exactly_once_across_kills() {
    if std::env::var(ROLE_ENV).is_ok() {
        return;
    }
    let bootstrap = bootstrap();
    let mut rng = Rng::from_env();
    let dir = tempfile::tempdir().unwrap();
    let kafka = Topic::create(&bootstrap, "mirror-kill", PARTITIONS);
    let id = fresh_name("mirror-kill");
    let done_file = dir.path().join("source-done");
    let log_dir = dir.path().join("log");
    let total = records().div_ceil(30) * 30;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (bootstrap, topic, stop) = (bootstrap.clone(), kafka.name.clone(), stop.clone());
        let done_file = done_file.clone();
        std::thread::spawn(move || {
            write_kafka(&bootstrap, &topic, total, &stop);
            std::fs::write(done_file, b"").expect("mark the source done");
        })
    };
    let envs = [
        ("KILL_DIR", log_dir.to_str().unwrap()),
        ("KILL_BOOTSTRAP", bootstrap.as_str()),
        ("KILL_MIRROR_ID", id.as_str()),
        ("KILL_KAFKA_TOPIC", kafka.name.as_str()),
        ("KILL_SOURCE_DONE", done_file.to_str().unwrap()),
    ];
    let rounds = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        kill_rounds("mirror_child", &envs, &mut rng)
    }));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the Kafka writer");
    if let Err(panic) = rounds {
        std::panic::resume_unwind(panic);
    }

    let log = Log::open(&log_dir).unwrap();
    let mut consumer = log
        .consumer(ConsumerConfig::default().isolation_level(IsolationLevel::ReadCommitted))
        .unwrap();
    let tps: Vec<(&str, u32)> = (0..PARTITIONS).map(|p| (TOPIC, p)).collect();
    consumer.assign(&tps).unwrap();
    let mut copied: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS as usize];
    loop {
        let polled = consumer.poll(Duration::from_millis(50)).unwrap();
        let at_end = (0..PARTITIONS).all(|p| {
            consumer.position(TOPIC, p).unwrap()
                >= log.partition(TOPIC, p).unwrap().last_stable_offset()
        });
        if polled.is_empty() && at_end {
            break;
        }
        for r in polled {
            copied[r.partition as usize].push(r.value_str().unwrap().to_owned());
        }
    }
    let in_kafka = read_committed(
        &bootstrap,
        &kafka.name,
        PARTITIONS,
        total as usize,
        Duration::from_secs(1),
    );
    assert_eq!(in_kafka.len() as u64, total);
    assert_eq!(
        copied.iter().map(Vec::len).sum::<usize>() as u64,
        total,
        "annals has a record too few or too many"
    );
    for p in 0..PARTITIONS {
        for (n, v) in copied[p as usize].iter().enumerate() {
            assert_eq!(v, &value(p, n as u64), "annals partition {p}, record {n}");
        }
    }
}
