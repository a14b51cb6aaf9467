//! The transactional outbox, with annals as the outbox and a real Kafka cluster downstream.
//!
//! An order service writes each order's state and its `OrderPlaced` event in one annals
//! transaction: both or neither, with no network call on the request path. A `Relay` forwards the
//! events topic to Kafka exactly once, in Kafka transactions; a failed request's aborted
//! transaction never leaves annals. At the end a read_committed Kafka consumer shows what other
//! services see.
//!
//! ```text
//! bash kafka/scripts/broker start
//! export ANNALS_KAFKA_BOOTSTRAP=$(cat target/kafka-broker/run/bootstrap)
//! cargo run --release -p annals-kafka --example outbox_to_kafka
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annals::{CleanupPolicy, Log, ProducerConfig, Record, TopicConfig};
use annals_kafka::{broker_from_env, Relay, RelayConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

const PARTITIONS: u32 = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = broker_from_env()?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let kafka_topic = format!("order-events-{stamp}");

    // Downstream, the Kafka topic exists with as many partitions as annals' events topic.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let new = NewTopic::new(&kafka_topic, PARTITIONS as i32, TopicReplication::Fixed(1));
    for result in futures_executor::block_on(admin.create_topics([&new], &options))? {
        result.map_err(|(t, code)| format!("create {t}: {code}"))?;
    }

    // The service's own log: the orders' state (compacted) and the outbox of events.
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path())?;
    log.create_topic(
        "orders",
        TopicConfig::default()
            .partitions(PARTITIONS)
            .cleanup_policy(CleanupPolicy::Compact),
    )?;
    log.create_topic(
        "order-events",
        TopicConfig::default().partitions(PARTITIONS),
    )?;
    let relay = Relay::start(
        &log,
        RelayConfig::new(format!("outbox-{stamp}"), bootstrap.as_str())
            .progress_topic(format!("outbox-progress-{stamp}"))
            .route("order-events", kafka_topic.as_str()),
    )?;

    let producer = log.producer(ProducerConfig::default().transactional_id("order-service"))?;
    producer.init_transactions()?;
    for (i, customer) in ["ada", "grace", "edsger", "barbara", "ken"]
        .iter()
        .enumerate()
    {
        let order = format!("order-{i}");
        producer.begin_transaction()?;
        producer.send(
            "orders",
            Record::new(format!(
                "{{\"customer\":\"{customer}\",\"status\":\"placed\"}}"
            ))
            .key(&order),
        )?;
        producer.send(
            "order-events",
            Record::new(format!(
                "{{\"type\":\"OrderPlaced\",\"order\":\"{order}\"}}"
            ))
            .key(&order)
            .header("event-type", "OrderPlaced"),
        )?;
        if *customer == "ken" {
            // The request failed after writing: nothing of it is kept, nothing reaches Kafka.
            producer.abort_transaction()?;
        } else {
            producer.commit_transaction()?;
        }
    }

    if !relay.wait_until_caught_up(Duration::from_secs(60))? {
        return Err(format!("the relay did not catch up: {:?}", relay.metrics()).into());
    }
    let metrics = relay.stop()?;
    // Four orders committed; the fifth was aborted and stays in annals, unseen.
    assert_eq!(metrics.records_forwarded, 4);
    println!(
        "relay: {} events forwarded in {} Kafka transactions, lag {}",
        metrics.records_forwarded,
        metrics.transactions_committed,
        metrics.lag()
    );

    // What another service reading the Kafka topic sees.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("billing-{stamp}"))
        .set("isolation.level", "read_committed")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        assignment.add_partition_offset(&kafka_topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = 0;
    while seen < metrics.records_forwarded {
        let Some(message) = consumer.poll(Duration::from_secs(30)) else {
            return Err("Kafka returned nothing for 30 s".into());
        };
        let message = message?;
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        println!(
            "kafka {kafka_topic}/{} @{}: {} = {}",
            message.partition(),
            message.offset(),
            text(message.key()),
            text(message.payload())
        );
        seen += 1;
    }
    let _ = futures_executor::block_on(admin.delete_topics(
        &[&kafka_topic, &format!("outbox-progress-{stamp}")],
        &options,
    ));
    Ok(())
}
