//! What the tests against the real broker share: its address, a bound on every wait, topics
//! made fresh for each test (and deleted after it), and a read_committed reader.
#![allow(dead_code)] // each test binary uses its own part

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};

/// One bound for every wait on the broker: generous, so that only a hang trips it
/// (`ANNALS_KAFKA_TEST_SECS`, default 120 s).
pub fn hang_guard() -> Duration {
    let secs = match std::env::var("ANNALS_KAFKA_TEST_SECS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("ANNALS_KAFKA_TEST_SECS={v:?} is not a number of seconds")),
        Err(_) => 120,
    };
    Duration::from_secs(secs)
}

/// The broker's address; without one the test fails with how to start it.
pub fn bootstrap() -> String {
    annals_kafka::broker_from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// A name no earlier run used, so that a run after a failed one (whose topics may still exist)
/// against the same broker starts clean.
pub fn fresh_name(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("annals-kafka-{what}-{}-{nanos}", std::process::id())
}

pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(hang_guard()))
        .operation_timeout(Some(hang_guard()))
}

/// A Kafka topic of one test; deleted when dropped, also when an assertion failed.
pub struct Topic {
    admin: AdminClient<DefaultClientContext>,
    pub name: String,
}

impl Topic {
    pub fn create(bootstrap: &str, what: &str, partitions: u32) -> Topic {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("create the admin client");
        let name = fresh_name(what);
        let new = NewTopic::new(&name, partitions as i32, TopicReplication::Fixed(1));
        let results = block_on(admin.create_topics([&new], &admin_options()))
            .unwrap_or_else(|e| panic!("create topic {name} on {bootstrap}: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("create topic {topic} on {bootstrap}: {code}");
            }
        }
        wait_until_visible(bootstrap, &name, partitions);
        Topic { admin, name }
    }
}

/// Waits until the broker's metadata shows `topic` with `partitions` partitions, each with a
/// leader. CreateTopics answers once the controller committed the topic; the broker that
/// serves metadata learns of it a moment later, and a relay started in that moment would
/// rightly report the topic missing.
fn wait_until_visible(bootstrap: &str, topic: &str, partitions: u32) {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("create the metadata client");
    let deadline = Instant::now() + hang_guard();
    loop {
        let ready = client
            .fetch_metadata(Some(topic), hang_guard())
            .ok()
            .and_then(|m| {
                let t = m.topics().iter().find(|t| t.name() == topic)?;
                let leaders = t.partitions().iter().filter(|p| p.leader() >= 0).count();
                (t.error().is_none() && leaders == partitions as usize).then_some(())
            })
            .is_some();
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} not in the metadata of {bootstrap} within {:?} of its creation",
            hang_guard()
        );
        std::thread::sleep(Duration::from_millis(50));
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

/// One Kafka record as a read_committed consumer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub partition: u32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Seen {
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Reads `topic` from the start of each of its `partitions`, read_committed, until `count`
/// records came (or the hang guard trips); then `settle` more to catch any record too many.
pub fn read_committed(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    count: usize,
    settle: Duration,
) -> Vec<Seen> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Only assign() is used, never a group protocol or a commit; librdkafka still wants one.
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("create the consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p as i32, Offset::Beginning)
            .expect("add a partition to the assignment");
    }
    consumer.assign(&assignment).expect("assign the partitions");

    let deadline = Instant::now() + hang_guard();
    let mut seen = Vec::with_capacity(count);
    let mut settle_until = None;
    loop {
        if seen.len() >= count && settle_until.is_none() {
            settle_until = Some(Instant::now() + settle);
        }
        if settle_until.is_some_and(|t| Instant::now() >= t) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "read {} of {count} records from {topic} within {:?}",
            seen.len(),
            hang_guard()
        );
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = polled.unwrap_or_else(|e| panic!("consume {topic}: {e}"));
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let timestamp = match m.timestamp() {
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
            Timestamp::NotAvailable => None,
        };
        seen.push(Seen {
            partition: u32::try_from(m.partition()).expect("a partition number"),
            offset: m.offset(),
            timestamp,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
}
