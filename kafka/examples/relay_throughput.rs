//! The relay's throughput against rdkafka's own producer, same records, same broker, same run:
//! `N` records of 100 bytes over 3 partitions, first sent by a plain rdkafka producer, then
//! forwarded from annals by a `Relay` (transactions, progress records, the offset header and
//! the annals read included). Prints both rates and their ratio.
//!
//! ```text
//! bash kafka/scripts/broker start
//! export ANNALS_KAFKA_BOOTSTRAP=$(cat target/kafka-broker/run/bootstrap)
//! cargo run --release -p annals-kafka --example relay_throughput
//! ```
//!
//! `ANNALS_RELAY_BENCH_RECORDS` sets N (default 200,000).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use annals::{Log, Record, TopicConfig};
use annals_kafka::{broker_from_env, Relay, RelayConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const PARTITIONS: u32 = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = broker_from_env()?;
    let n: u32 = match std::env::var("ANNALS_RELAY_BENCH_RECORDS") {
        Ok(v) => v.parse()?,
        Err(_) => 200_000,
    };
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let direct_topic = format!("bench-direct-{stamp}");
    let relay_topic = format!("bench-relay-{stamp}");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let topics: Vec<NewTopic> = [&direct_topic, &relay_topic]
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS as i32, TopicReplication::Fixed(1)))
        .collect();
    for result in futures_executor::block_on(admin.create_topics(&topics, &options))? {
        result.map_err(|(t, code)| format!("create {t}: {code}"))?;
    }

    // The same 100-byte values for both: a JSON-ish body padded to 100 bytes.
    let value = |i: u32| {
        format!(
            "{{\"order\":{i:010},\"status\":\"created\",\"note\":\"{}\"}}",
            "x".repeat(51)
        )
    };
    assert_eq!(value(0).len(), 100);
    let key = |i: u32| format!("customer-{:04}", i % 1000);

    // rdkafka alone: every record handed to the producer, then a flush until Kafka acked all.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    // Connected and the topic's metadata known before the clock starts, as the relay is once
    // `Relay::start` returns.
    producer
        .send(
            BaseRecord::<str, str>::to(&direct_topic)
                .partition(0)
                .payload("warm-up"),
        )
        .map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(60))?;
    let started = Instant::now();
    for i in 0..n {
        let (k, v) = (key(i), value(i));
        let mut record = BaseRecord::to(&direct_topic)
            .partition((i % PARTITIONS) as i32)
            .key(&k)
            .payload(&v);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    let direct = started.elapsed();

    // The relay: the same records in annals first (not timed), then forwarded until committed.
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path())?;
    log.create_topic("orders", TopicConfig::default().partitions(PARTITIONS))?;
    for p in 0..PARTITIONS {
        let partition = log.partition("orders", p)?;
        let mut batch = Vec::with_capacity(1000);
        for i in (p..n).step_by(PARTITIONS as usize) {
            batch.push(Record::new(value(i)).key(key(i)));
            if batch.len() == 1000 {
                partition.append(&batch)?;
                batch.clear();
            }
        }
        partition.append(&batch)?;
        // Synced before the clock starts: the relay's own fsyncs (`sync_annals`) then cost what
        // they cost a relay that keeps up, not the flush of the whole setup.
        partition.sync()?;
    }
    let relay = Relay::start(
        &log,
        RelayConfig::new(format!("bench-{stamp}"), bootstrap.as_str())
            .progress_topic(format!("bench-progress-{stamp}"))
            .route("orders", relay_topic.as_str()),
    )?;
    let started = Instant::now();
    if !relay.wait_until_caught_up(Duration::from_secs(600))? {
        return Err(format!("the relay did not catch up: {:?}", relay.metrics()).into());
    }
    let relayed = started.elapsed();
    let metrics = relay.stop()?;
    assert_eq!(metrics.records_forwarded, u64::from(n));

    let rate = |d: Duration| f64::from(n) / d.as_secs_f64();
    println!("{n} records of 100 bytes, {PARTITIONS} partitions, broker {bootstrap}");
    println!(
        "rdkafka producer: {:>10.0} records/s ({direct:.2?})",
        rate(direct)
    );
    println!(
        "annals relay:     {:>10.0} records/s ({relayed:.2?}, {} transactions)",
        rate(relayed),
        metrics.transactions_committed
    );
    println!("relay / rdkafka:  {:.2}x", rate(relayed) / rate(direct));
    let _ = futures_executor::block_on(admin.delete_topics(
        &[
            &direct_topic,
            &relay_topic,
            &format!("bench-progress-{stamp}"),
        ],
        &options,
    ));
    Ok(())
}
