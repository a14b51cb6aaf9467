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

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

const PARTITIONS: u32 = 3;
const COMMITTED: usize = 100;
const ABORTED: usize = 10;

/// One bound for every wait on the broker: generous, so that only a hang trips it.
fn hang_guard() -> Duration {
    let secs = match std::env::var("ANNALS_KAFKA_TEST_SECS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("ANNALS_KAFKA_TEST_SECS={v:?} is not a number of seconds")),
        Err(_) => 120,
    };
    Duration::from_secs(secs)
}

fn bootstrap() -> String {
    annals_kafka::broker_from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// A topic name no earlier run used, so that a run after a failed one (whose topic may still
/// exist) against the same broker starts clean.
fn fresh_topic_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("annals-kafka-broker-{}-{nanos}", std::process::id())
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(hang_guard()))
        .operation_timeout(Some(hang_guard()))
}

/// The test's topic; deleted when dropped, also when an assertion failed.
struct Topic {
    admin: AdminClient<DefaultClientContext>,
    name: String,
}

impl Topic {
    fn create(bootstrap: &str, partitions: u32) -> Topic {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("create the admin client");
        let name = fresh_topic_name();
        let new = NewTopic::new(&name, partitions as i32, TopicReplication::Fixed(1));
        let results = block_on(admin.create_topics([&new], &admin_options()))
            .unwrap_or_else(|e| panic!("create topic {name} on {bootstrap}: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("create topic {topic} on {bootstrap}: {code}");
            }
        }
        Topic { admin, name }
    }
}

impl Drop for Topic {
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

/// One record as the consumer saw it.
#[derive(Debug)]
struct Seen {
    partition: u32,
    offset: i64,
    key: String,
    value: String,
}

/// Reads `topic` from the start of every partition, read_committed, until `count` records came
/// (or the hang guard trips).
fn read_committed(bootstrap: &str, topic: &Topic, count: usize) -> Vec<Seen> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Only assign() is used, never a group protocol or a commit; librdkafka still wants one.
        .set("group.id", format!("{}-reader", topic.name))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("create the consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(&topic.name, p as i32, Offset::Beginning)
            .expect("add a partition to the assignment");
    }
    consumer.assign(&assignment).expect("assign the partitions");

    let deadline = Instant::now() + hang_guard();
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} records from {} within {:?}: {seen:#?}",
            seen.len(),
            topic.name,
            hang_guard()
        );
        let Some(polled) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = polled.unwrap_or_else(|e| panic!("consume {}: {e}", topic.name));
        let text =
            |bytes: Option<&[u8]>| String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned();
        seen.push(Seen {
            partition: u32::try_from(m.partition()).expect("a partition number"),
            offset: m.offset(),
            key: text(m.key()),
            value: text(m.payload()),
        });
    }
    seen
}

#[test]
fn committed_keyed_records_land_where_annals_puts_them() {
    let bootstrap = bootstrap();
    let topic = Topic::create(&bootstrap, PARTITIONS);
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
    let seen = read_committed(&bootstrap, &topic, COMMITTED);

    let mut by_key: BTreeMap<&str, &Seen> = BTreeMap::new();
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
        let on_p: Vec<&Seen> = seen.iter().filter(|s| s.partition == p).collect();
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
