//! Against a real Apache Kafka broker (`kafka/scripts/broker start`, address in
//! `ANNALS_KAFKA_BOOTSTRAP`): what the relay of issue 17 will stand on. rdkafka's admin client
//! creates a 3-partition topic, a transactional producer writes an aborted transaction and then
//! 100 keyed records in a committed one, and a read_committed consumer must find exactly the
//! committed records, each on the partition `annals::partition_for_key` picks: annals' keys land
//! where Kafka puts them.
//!
//! Without `ANNALS_KAFKA_BOOTSTRAP` the test fails with the message of
//! `annals_kafka::broker_from_env`, which says how to start the broker; it never skips.
//! The timeouts are hang guards only (`ANNALS_KAFKA_TEST_SECS`, default 120 s each).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{bootstrap, hang_guard, read_committed, Seen, Topic};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const PARTITIONS: u32 = 3;
const COMMITTED: usize = 100;
const ABORTED: usize = 10;

fn transactional_producer(
    bootstrap: &str,
    topic: &Topic,
) -> ThreadedProducer<DefaultProducerContext> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", format!("{}-producer", topic.name))
        // librdkafka's default is `consistent_random` (CRC32). `murmur2_random` is the Java
        // client's default partitioner, the one annals reproduces; this test checks they agree.
        .set("partitioner", "murmur2_random")
        .create()
        .expect("create the transactional producer");
    producer
        .init_transactions(hang_guard())
        .expect("init_transactions");
    producer
}

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, value: &str) {
    let deadline = Instant::now() + hang_guard();
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    // A full local queue is back-pressure, not failure: wait for room (the producer's own
    // thread drains it) and try again.
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(code), back))
                if code == RDKafkaErrorCode::QueueFull && Instant::now() < deadline =>
            {
                record = back;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("send {key} to {topic}: {e}"),
        }
    }
}

/// A record read back, with its key and value as text.
#[derive(Debug)]
struct Text {
    partition: u32,
    offset: i64,
    key: String,
    value: String,
}

impl Text {
    fn of(s: &Seen) -> Text {
        let text = |b: &Option<Vec<u8>>| {
            String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
        };
        Text {
            partition: s.partition,
            offset: s.offset,
            key: text(&s.key),
            value: text(&s.value),
        }
    }
}

#[test]
fn committed_keyed_records_land_where_annals_puts_them() {
    let bootstrap = bootstrap();
    let topic = Topic::create(&bootstrap, "broker", PARTITIONS);
    let producer = transactional_producer(&bootstrap, &topic);

    // An aborted transaction first, flushed so its records are in the log: read_committed must
    // skip them, which the relay will rely on.
    producer
        .begin_transaction()
        .expect("begin the aborted transaction");
    for i in 0..ABORTED {
        send(
            &producer,
            &topic.name,
            &format!("aborted-{i}"),
            &format!("aborted-{i}"),
        );
    }
    producer
        .flush(hang_guard())
        .expect("flush the aborted records");
    producer
        .abort_transaction(hang_guard())
        .expect("abort_transaction");

    let keys: Vec<String> = (0..COMMITTED).map(|i| format!("order-{i}")).collect();
    producer.begin_transaction().expect("begin_transaction");
    for (i, key) in keys.iter().enumerate() {
        send(&producer, &topic.name, key, &format!("value-{i}"));
    }
    producer
        .commit_transaction(hang_guard())
        .expect("commit_transaction");

    // Any aborted record visible would be among the first COMMITTED read (it has a lower
    // offset on its partition), so reading exactly COMMITTED is enough to catch one.
    let seen: Vec<Text> = read_committed(
        &bootstrap,
        &topic.name,
        PARTITIONS,
        COMMITTED,
        Duration::ZERO,
    )
    .iter()
    .map(Text::of)
    .collect();

    let mut by_key: BTreeMap<&str, &Text> = BTreeMap::new();
    for s in &seen {
        assert!(
            !s.key.starts_with("aborted-"),
            "read_committed returned a record of the aborted transaction: {s:?}"
        );
        assert!(
            by_key.insert(&s.key, s).is_none(),
            "{} read twice: {seen:#?}",
            s.key
        );
    }
    for (i, key) in keys.iter().enumerate() {
        let s = by_key
            .get(key.as_str())
            .unwrap_or_else(|| panic!("{key} was not read back: {seen:#?}"));
        assert_eq!(s.value, format!("value-{i}"), "{key}'s value");
        assert_eq!(
            s.partition,
            annals::partition_for_key(key.as_bytes(), PARTITIONS),
            "Kafka put {key} on partition {}; annals::partition_for_key says otherwise",
            s.partition
        );
    }

    // The keys spread over every partition (so the check above compared real choices, not one
    // partition everywhere), and each partition kept the order of the sends.
    for p in 0..PARTITIONS {
        let on_p: Vec<&Text> = seen.iter().filter(|s| s.partition == p).collect();
        assert!(
            !on_p.is_empty(),
            "no key landed on partition {p}: {seen:#?}"
        );
        let numbers: Vec<usize> = on_p
            .iter()
            .map(|s| {
                s.key
                    .trim_start_matches("order-")
                    .parse()
                    .expect("a key number")
            })
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "partition {p} is out of send order: {numbers:?}"
        );
        assert!(
            on_p.windows(2).all(|w| w[0].offset < w[1].offset),
            "partition {p}'s offsets do not increase"
        );
    }
}
