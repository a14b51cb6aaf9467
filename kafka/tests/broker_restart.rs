//! The broker stopped and started again while a relay and a mirror run: they resume by
//! themselves, and nothing is lost or duplicated. The test restarts the broker the other tests
//! use, with `kafka/scripts/broker stop` / `start` (same ports, same data), so it is the only
//! test of its binary (cargo runs test binaries one after another).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{ConsumerConfig, IsolationLevel, Log, ProducerConfig, Record, TopicConfig};
use annals_kafka::{Mirror, MirrorConfig, Relay, RelayConfig, WorkerState};
use common::{bootstrap, fresh_name, hang_guard, read_committed, Topic};

const PARTITIONS: u32 = 2;

fn broker(command: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/broker");
    let status = Command::new("bash")
        .arg(&script)
        .arg(command)
        .status()
        .unwrap_or_else(|e| panic!("run {} {command}: {e}", script.display()));
    assert!(status.success(), "{} {command}: {status}", script.display());
}

fn value(p: u32, n: u64) -> String {
    format!("p{p}-{n:06}")
}

#[test]
fn relay_and_mirror_resume_by_themselves_after_a_broker_restart() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path().join("source"))
        .maintenance_interval(None)
        .open()
        .unwrap();
    log.create_topic("t", TopicConfig::default().partitions(PARTITIONS))
        .unwrap();
    let kafka = Topic::create(&bootstrap, "restart", PARTITIONS);
    let id = fresh_name("restart");
    let relay = Relay::start(
        &log,
        RelayConfig::new(id.as_str(), bootstrap.as_str())
            .progress_topic(format!("{id}-progress"))
            .connect_timeout(Duration::from_secs(5))
            .transaction_timeout(Duration::from_secs(20))
            .retry_backoff(Duration::from_millis(500))
            .route("t", kafka.name.as_str()),
    )
    .unwrap();
    let replica = Log::builder(dir.path().join("replica"))
        .maintenance_interval(None)
        .open()
        .unwrap();
    let mirror = Mirror::start(
        &replica,
        MirrorConfig::new(id.as_str(), bootstrap.as_str())
            .connect_timeout(Duration::from_secs(5))
            .route(kafka.name.as_str(), "t"),
    )
    .unwrap();

    // Records keep coming into annals the whole time: before, during and after the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let producer = log.producer(ProducerConfig::default()).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                for p in 0..PARTITIONS {
                    producer.send_to("t", p, Record::new(value(p, n))).unwrap();
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            producer.flush().unwrap();
            n
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    broker("stop");
    std::thread::sleep(Duration::from_secs(3));
    broker("start");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let per_partition = writer.join().unwrap();
    let total = per_partition as usize * PARTITIONS as usize;

    assert!(
        relay.wait_until_caught_up(hang_guard()).unwrap(),
        "the relay did not catch up after the restart: {:?}",
        relay.metrics()
    );
    let metrics = relay.stop().unwrap();
    assert_eq!(metrics.state, WorkerState::Stopped);
    println!("relay after the restart: {metrics:?}");
    assert!(
        mirror.wait_until_caught_up(hang_guard()).unwrap(),
        "the mirror did not catch up after the restart: {:?}",
        mirror.metrics()
    );
    let metrics = mirror.stop().unwrap();
    println!("mirror after the restart: {metrics:?}");

    let seen = read_committed(
        &bootstrap,
        &kafka.name,
        PARTITIONS,
        total,
        Duration::from_secs(1),
    );
    assert_eq!(seen.len(), total, "Kafka has a record too many");
    let mut copy = replica
        .consumer(ConsumerConfig::default().isolation_level(IsolationLevel::ReadCommitted))
        .unwrap();
    let tps: Vec<(&str, u32)> = (0..PARTITIONS).map(|p| ("t", p)).collect();
    copy.assign(&tps).unwrap();
    let mut copied = vec![Vec::new(); PARTITIONS as usize];
    let deadline = Instant::now() + hang_guard();
    while copied.iter().map(Vec::len).sum::<usize>() < total {
        assert!(Instant::now() < deadline, "the replica has too few records");
        for r in copy.poll(Duration::from_millis(50)).unwrap() {
            copied[r.partition as usize].push(r.value_str().unwrap().to_owned());
        }
    }
    assert!(
        copy.poll(Duration::from_millis(200)).unwrap().is_empty(),
        "the replica has a record too many"
    );
    for p in 0..PARTITIONS {
        let in_kafka: Vec<_> = seen.iter().filter(|s| s.partition == p).collect();
        for n in 0..per_partition {
            let want = value(p, n);
            assert_eq!(
                in_kafka[n as usize].value.as_deref(),
                Some(want.as_bytes()),
                "Kafka {p}/{n}"
            );
            assert_eq!(copied[p as usize][n as usize], want, "replica {p}/{n}");
        }
    }
}
