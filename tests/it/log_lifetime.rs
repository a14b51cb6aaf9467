//! What a producer or consumer that outlives its log does: only `Log` handles keep a log open.
//! Dropping the last one (or `close`) releases the directory, flushes what producers accepted,
//! and leaves the producers and consumers answering `Error::Closed`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use annals::{
    ConsumerConfig, Delivery, Durability, Error, Log, ProducerConfig, Record, TopicConfig,
};

/// Generous: the machine running the tests is loaded; this only bounds a hang.
const WAIT: Duration = Duration::from_secs(60);

fn wait(d: &Delivery) -> annals::Result<annals::RecordMetadata> {
    d.wait_timeout(WAIT)
        .expect("a delivery must complete once its log closed, not hang")
}

fn total_records(log: &Log, topic: &str) -> u64 {
    let partitions = log.topic_config(topic).unwrap().partitions;
    (0..partitions)
        .map(|p| log.partition(topic, p).unwrap().high_watermark())
        .sum()
}

#[test]
fn dropping_the_last_log_closes_it_under_a_live_producer_and_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    log.partition("t", 0)
        .unwrap()
        .append(&[Record::new("before")])
        .unwrap();

    // A linger far longer than the test: only the close can be what writes these records.
    let producer = log
        .producer(
            ProducerConfig::default()
                .durability(Durability::Synced)
                .linger(Duration::from_secs(3600)),
        )
        .unwrap();
    let deliveries: Vec<Delivery> = (0..3)
        .map(|i| {
            producer
                .send("t", Record::new(format!("r{i}")).key("k"))
                .unwrap()
        })
        .collect();
    let mut consumer = log.consumer(ConsumerConfig::new("g")).unwrap();
    consumer.assign(&[("t", 0)]).unwrap();
    let first = consumer.poll(Duration::from_secs(5)).unwrap();
    assert_eq!(first.len(), 1);

    drop(log);

    // What the producer accepted was written before the log closed.
    for d in &deliveries {
        let meta = wait(d).expect("accepted before the close, so written by it");
        assert!(meta.offset.is_some());
    }
    // The directory is free: a new log opens it (no `Error::Locked`) and finds everything.
    let reopened = Log::open(dir.path()).expect("the old log released its directory");
    assert_eq!(total_records(&reopened, "t"), 4);

    // The old handles only say `Closed`.
    assert!(matches!(
        producer.send("t", Record::new("late")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        producer.try_send("t", Record::new("late")),
        Err(Error::Closed)
    ));
    assert!(matches!(producer.flush(), Err(Error::Closed)));
    assert!(matches!(producer.close(), Err(Error::Closed)));
    assert!(matches!(
        consumer.poll(Duration::from_millis(10)),
        Err(Error::Closed)
    ));
    assert!(matches!(consumer.commit(), Err(Error::Closed)));
    assert!(matches!(consumer.position("t", 0), Err(Error::Closed)));
    assert!(matches!(consumer.committed("t", 0), Err(Error::Closed)));
    assert!(matches!(consumer.close(), Err(Error::Closed)));
    // Nothing they did reached the new log.
    assert_eq!(total_records(&reopened, "t"), 4);
    assert_eq!(reopened.committed_offset("g", "t", 0).unwrap(), None);
    reopened.close().unwrap();
}

#[test]
fn close_with_clones_alive_also_closes_producers_and_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let clone = log.clone();
    log.create_topic("t", TopicConfig::default()).unwrap();
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::from_secs(3600)))
        .unwrap();
    let pending = producer.send("t", Record::new("v")).unwrap();
    let mut consumer = log.consumer(ConsumerConfig::new("g")).unwrap();
    consumer.subscribe(&["t"]).unwrap();

    log.close().unwrap();

    assert_eq!(wait(&pending).unwrap().offset, Some(0));
    let reopened = Log::open(dir.path()).expect("close released the directory");
    assert_eq!(total_records(&reopened, "t"), 1);
    assert!(matches!(
        producer.send("t", Record::new("late")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        consumer.poll(Duration::from_millis(10)),
        Err(Error::Closed)
    ));
    assert!(matches!(
        clone.producer(ProducerConfig::default()),
        Err(Error::Closed)
    ));
    assert!(matches!(
        clone.consumer(ConsumerConfig::new("g")),
        Err(Error::Closed)
    ));
    drop(clone);
    drop(producer);
    drop(consumer);
    reopened.close().unwrap();
}

/// A send racing with the close either is turned away with `Closed` or is written: no record
/// is accepted and then lost, and no delivery is left waiting.
#[test]
fn sends_racing_with_the_close_are_written_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::default().partitions(3))
        .unwrap();
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::from_millis(20)))
        .unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let sender = {
        let producer = producer.clone();
        let started = started.clone();
        thread::spawn(move || {
            let mut accepted = Vec::new();
            for i in 0u64.. {
                match producer.send("t", Record::new(i.to_string())) {
                    Ok(d) => accepted.push(d),
                    Err(Error::Closed) => break,
                    Err(e) => panic!("send {i}: {e}"),
                }
                if i == 100 {
                    started.store(true, Ordering::Release);
                }
            }
            accepted
        })
    };
    while !started.load(Ordering::Acquire) {
        thread::yield_now();
    }
    drop(log);
    let accepted = sender.join().unwrap();
    for d in &accepted {
        wait(d).expect("accepted before the close, so written by it");
    }
    let reopened = Log::open(dir.path()).unwrap();
    assert_eq!(total_records(&reopened, "t"), accepted.len() as u64);
    reopened.close().unwrap();
}
