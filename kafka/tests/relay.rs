//! The relay and the mirror against a real Apache Kafka broker (`kafka/scripts/broker start`,
//! address in `ANNALS_KAFKA_BOOTSTRAP`): the round trip annals → relay → Kafka → mirror →
//! annals with every record equal, a restarted relay that forwards nothing twice, fencing, and
//! bad input (an unreachable broker, missing topics, mismatched partition counts).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use annals::{
    CleanupPolicy, ConsumedRecord, ConsumerConfig, Header, IsolationLevel, Log, ProducerConfig,
    Record, TopicConfig,
};
use annals_kafka::{Error, Mirror, MirrorConfig, Relay, RelayConfig, WorkerState};
use common::{bootstrap, fresh_name, hang_guard, read_committed, Seen, Topic};

const OFFSET_HEADER: &str = "annals.offset";

/// Every record of `topic` in `log`, read_committed, by partition.
fn annals_records(log: &Log, topic: &str) -> BTreeMap<u32, Vec<ConsumedRecord>> {
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
        let records = consumer.poll(Duration::from_millis(20)).unwrap();
        if records.is_empty() {
            let done = (0..partitions).all(|p| {
                consumer.position(topic, p).unwrap()
                    >= log.partition(topic, p).unwrap().last_stable_offset()
            });
            if done {
                return out;
            }
        }
        for r in records {
            out.get_mut(&r.partition).unwrap().push(r);
        }
    }
}

fn count(records: &BTreeMap<u32, Vec<ConsumedRecord>>) -> usize {
    records.values().map(Vec::len).sum()
}

fn kafka_headers(r: &ConsumedRecord) -> Vec<(String, Option<Vec<u8>>)> {
    let mut headers: Vec<(String, Option<Vec<u8>>)> = r
        .headers
        .iter()
        .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
        .collect();
    headers.push((
        OFFSET_HEADER.into(),
        Some(r.offset.to_string().into_bytes()),
    ));
    headers
}

/// Kafka's copy of annals' records: per partition, in order, key, value, timestamp and headers
/// equal, plus the offset header holding the annals offset.
fn assert_forwarded(annals: &BTreeMap<u32, Vec<ConsumedRecord>>, kafka: &[Seen]) {
    for (p, records) in annals {
        let on_p: Vec<&Seen> = kafka.iter().filter(|s| s.partition == *p).collect();
        assert_eq!(
            on_p.len(),
            records.len(),
            "partition {p}: Kafka has {} records, annals {}",
            on_p.len(),
            records.len()
        );
        for (a, k) in records.iter().zip(on_p) {
            let ctx = format!("partition {p}, annals offset {}", a.offset);
            assert_eq!(k.key.as_deref(), a.key.as_deref(), "{ctx}: key");
            assert_eq!(k.value.as_deref(), a.value.as_deref(), "{ctx}: value");
            assert_eq!(k.timestamp, Some(a.timestamp), "{ctx}: timestamp");
            assert_eq!(k.headers, kafka_headers(a), "{ctx}: headers");
        }
    }
}

/// Records with everything Kafka can carry: keys (and none), null values, headers with null
/// values, explicit timestamps.
fn varied_record(i: usize) -> Record {
    let mut r = Record::new(format!("{{\"order\":{i},\"amount\":{}}}", i * 7 % 1000))
        .header("trace", format!("t-{i}"))
        .timestamp(1_700_000_000_000 + i as i64);
    if !i.is_multiple_of(5) {
        r = r.key(format!("customer-{}", i % 37));
    }
    if i.is_multiple_of(11) {
        r.headers.push(Header {
            key: "nullable".into(),
            value: None,
        });
    }
    if i.is_multiple_of(13) && r.key.is_some() {
        r.value = None; // a tombstone
    }
    r
}

fn relay_config(id: &str, bootstrap: &str) -> RelayConfig {
    RelayConfig::new(id, bootstrap)
        .progress_topic(format!("{id}-progress"))
        .connect_timeout(hang_guard())
}

#[test]
fn round_trip_through_kafka_keeps_every_record_and_forwards_nothing_twice() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path())
        .maintenance_interval(None)
        .open()
        .unwrap();
    log.create_topic("orders", TopicConfig::default().partitions(3))
        .unwrap();
    // A compacted topic with small segments: compaction leaves offset gaps in what it keeps.
    log.create_topic(
        "profiles",
        TopicConfig::default()
            .partitions(2)
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(2048)
            .min_cleanable_dirty_ratio(0.0),
    )
    .unwrap();
    let orders = Topic::create(&bootstrap, "orders", 3);
    let profiles = Topic::create(&bootstrap, "profiles", 2);

    let producer = log.producer(ProducerConfig::default()).unwrap();
    for i in 0..300 {
        producer.send("orders", varied_record(i)).unwrap();
    }
    // Ten records a batch, so the segments roll and compaction has sealed ones to clean.
    for i in 0..400 {
        let key = format!("user-{}", i % 10);
        let record = Record::new(format!("profile {i}"))
            .key(key)
            .timestamp(1_700_000_000_000 + i);
        log.partition("profiles", (i % 2) as u32)
            .unwrap()
            .append(&[record])
            .unwrap();
    }
    producer.flush().unwrap();
    log.run_maintenance().unwrap();
    let kept = annals_records(&log, "profiles");
    let high: u64 = (0..2)
        .map(|p| log.partition("profiles", p).unwrap().high_watermark())
        .sum();
    assert!(
        (count(&kept) as u64) < high,
        "compaction left no gap to relay over ({} records, high watermarks {high})",
        count(&kept)
    );

    // An aborted annals transaction and a committed one: read_committed forwards only the
    // second, and no marker.
    let txn = log
        .producer(ProducerConfig::default().transactional_id("orders-writer"))
        .unwrap();
    txn.init_transactions().unwrap();
    txn.begin_transaction().unwrap();
    for p in 0..3 {
        txn.send_to("orders", p, Record::new("aborted").key("never"))
            .unwrap();
    }
    txn.abort_transaction().unwrap();
    txn.begin_transaction().unwrap();
    for i in 300..310 {
        txn.send("orders", varied_record(i)).unwrap();
    }
    txn.commit_transaction().unwrap();

    let id = fresh_name("round-trip");
    let config = relay_config(&id, &bootstrap)
        .route("orders", orders.name.as_str())
        .route("profiles", profiles.name.as_str());
    let relay = Relay::start(&log, config.clone()).unwrap();
    // More while it runs: the live tail is forwarded too.
    for i in 310..400 {
        producer.send("orders", varied_record(i)).unwrap();
    }
    producer.flush().unwrap();
    assert!(
        relay.wait_until_caught_up(hang_guard()).unwrap(),
        "{:?}",
        relay.metrics()
    );
    let metrics = relay.stop().unwrap();
    assert_eq!(metrics.state, WorkerState::Stopped);
    assert_eq!(metrics.lag(), 0, "{metrics:?}");
    assert_eq!(metrics.partitions.len(), 5);

    // A second run with the same id resumes after the first: only the new records go.
    let relay = Relay::start(&log, config).unwrap();
    for i in 400..420 {
        producer.send("orders", varied_record(i)).unwrap();
    }
    producer.flush().unwrap();
    assert!(
        relay.wait_until_caught_up(hang_guard()).unwrap(),
        "{:?}",
        relay.metrics()
    );
    let metrics = relay.stop().unwrap();
    assert_eq!(metrics.records_forwarded, 20, "{metrics:?}");

    let orders_annals = annals_records(&log, "orders");
    assert_eq!(count(&orders_annals), 420);
    let orders_kafka = read_committed(&bootstrap, &orders.name, 3, 420, Duration::from_secs(1));
    assert_forwarded(&orders_annals, &orders_kafka);
    assert!(orders_kafka
        .iter()
        .all(|s| s.value.as_deref() != Some(&b"aborted"[..])));
    let profiles_kafka = read_committed(
        &bootstrap,
        &profiles.name,
        2,
        count(&kept),
        Duration::from_secs(1),
    );
    assert_forwarded(&kept, &profiles_kafka);

    // And back: Kafka → mirror → a second annals log, equal record for record.
    let replica_dir = tempfile::tempdir().unwrap();
    let replica = Log::builder(replica_dir.path())
        .maintenance_interval(None)
        .open()
        .unwrap();
    let mirror_config = MirrorConfig::new(fresh_name("mirror"), bootstrap.as_str())
        .connect_timeout(hang_guard())
        .route(orders.name.as_str(), "orders-copy")
        .route(profiles.name.as_str(), "profiles-copy");
    let mirror = Mirror::start(&replica, mirror_config).unwrap();
    assert!(
        mirror.wait_until_caught_up(hang_guard()).unwrap(),
        "{:?}",
        mirror.metrics()
    );
    let metrics = mirror.stop().unwrap();
    assert_eq!(
        metrics.records_copied as usize,
        420 + count(&kept),
        "{metrics:?}"
    );
    for (source, copy) in [(&orders_annals, "orders-copy"), (&kept, "profiles-copy")] {
        let copied = annals_records(&replica, copy);
        assert_eq!(copied.len(), source.len(), "{copy}: partition count");
        for (p, records) in source {
            let got = &copied[p];
            assert_eq!(got.len(), records.len(), "{copy}/{p}: record count");
            for (a, b) in records.iter().zip(got) {
                let ctx = format!("{copy}/{p}: annals offset {}", a.offset);
                assert_eq!(b.key, a.key, "{ctx}: key");
                assert_eq!(b.value, a.value, "{ctx}: value");
                assert_eq!(b.timestamp, a.timestamp, "{ctx}: timestamp");
                let mut want = a.headers.clone();
                want.push(Header::new(OFFSET_HEADER, a.offset.to_string()));
                assert_eq!(b.headers, want, "{ctx}: headers");
            }
        }
    }
}

#[test]
fn a_route_by_key_puts_each_key_where_kafka_would() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("events", TopicConfig::default().partitions(3))
        .unwrap();
    let kafka = Topic::create(&bootstrap, "by-key", 2);
    let producer = log.producer(ProducerConfig::default()).unwrap();
    for i in 0..100 {
        producer
            .send_to(
                "events",
                i % 3,
                Record::new(format!("v{i}")).key(format!("k{}", i % 17)),
            )
            .unwrap();
    }
    producer.flush().unwrap();

    let id = fresh_name("by-key");
    // Same partition for partition: 3 against 2 is refused, naming both.
    let err = Relay::start(
        &log,
        relay_config(&id, &bootstrap).route("events", kafka.name.as_str()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PartitionMismatch {
                annals_partitions: 3,
                kafka_partitions: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("route_by_key"), "{err}");

    let relay = Relay::start(
        &log,
        relay_config(&id, &bootstrap).route_by_key("events", kafka.name.as_str()),
    )
    .unwrap();
    assert!(relay.wait_until_caught_up(hang_guard()).unwrap());
    relay.stop().unwrap();
    let seen = read_committed(&bootstrap, &kafka.name, 2, 100, Duration::from_secs(1));
    assert_eq!(seen.len(), 100);
    for s in &seen {
        let key = s.key.as_deref().unwrap();
        assert_eq!(s.partition, annals::partition_for_key(key, 2), "{s:?}");
    }
}

#[test]
fn a_second_relay_with_the_same_id_fences_the_first() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::default().partitions(1))
        .unwrap();
    let kafka = Topic::create(&bootstrap, "fence", 1);
    let id = fresh_name("fence");
    let config = relay_config(&id, &bootstrap).route("t", kafka.name.as_str());
    let first = Relay::start(&log, config.clone()).unwrap();
    let second = Relay::start(&log, config).unwrap();

    let producer = log.producer(ProducerConfig::default()).unwrap();
    producer
        .send("t", Record::new("one"))
        .unwrap()
        .wait()
        .unwrap();
    assert!(second.wait_until_caught_up(hang_guard()).unwrap());
    // The first tries to forward the same record and finds itself fenced.
    let deadline = Instant::now() + hang_guard();
    while first.metrics().state != WorkerState::Failed {
        assert!(Instant::now() < deadline, "{:?}", first.metrics());
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = first.stop().unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    assert!(err.to_string().contains(&id), "{err}");
    second.stop().unwrap();
    let seen = read_committed(&bootstrap, &kafka.name, 1, 1, Duration::from_secs(1));
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[test]
fn an_unreachable_broker_is_a_clear_error_and_annals_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::default().partitions(1))
        .unwrap();
    let producer = log.producer(ProducerConfig::default()).unwrap();
    producer
        .send("t", Record::new("kept"))
        .unwrap()
        .wait()
        .unwrap();

    // Nothing listens on port 1 of the loopback address.
    let nowhere = "127.0.0.1:1";
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = Relay::start(
        &log,
        RelayConfig::new("nowhere", nowhere)
            .route("t", "t")
            .connect_timeout(timeout),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(!err.is_fatal());
    let msg = err.to_string();
    assert!(msg.contains(nowhere) && msg.contains("2s"), "{msg}");
    // Within the timeout, give or take the machine's load (a hang guard, not a speed check).
    assert!(
        started.elapsed() < timeout + Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    let err = Mirror::start(
        &log,
        MirrorConfig::new("nowhere", nowhere)
            .route("t", "copy")
            .connect_timeout(timeout),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(
        !log.has_topic("copy"),
        "the mirror created a topic without a broker"
    );

    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.high_watermark(), 1);
    assert_eq!(
        p.read(0, 1 << 20).unwrap()[0].value.as_deref(),
        Some(&b"kept"[..])
    );
}

#[test]
fn missing_topics_and_bad_settings_are_refused_by_name() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    let absent = fresh_name("absent");

    let err = Relay::start(
        &log,
        relay_config(&fresh_name("missing"), &bootstrap).route("t", absent.as_str()),
    )
    .unwrap_err();
    assert!(matches!(err, Error::MissingKafkaTopic { .. }), "{err}");
    assert!(
        err.to_string().contains(&absent) && err.to_string().contains("2 partitions"),
        "{err}"
    );

    let kafka = Topic::create(&bootstrap, "bad-input", 2);
    let err = Relay::start(
        &log,
        relay_config(&fresh_name("missing"), &bootstrap).route("nope", kafka.name.as_str()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Annals {
                source: annals::Error::UnknownTopic { .. },
                ..
            }
        ),
        "{err}"
    );

    let err = Relay::start(
        &log,
        relay_config("bad/id", &bootstrap).route("t", kafka.name.as_str()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                what: "relay id",
                ..
            }
        ),
        "{err}"
    );

    let err = Mirror::start(
        &log,
        MirrorConfig::new(fresh_name("m"), bootstrap.as_str()).route(absent.as_str(), "copy"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::MissingKafkaTopic { .. }), "{err}");

    // An annals topic with another partition count than the Kafka topic it would mirror.
    log.create_topic("three", TopicConfig::default().partitions(3))
        .unwrap();
    let err = Mirror::start(
        &log,
        MirrorConfig::new(fresh_name("m"), bootstrap.as_str()).route(kafka.name.as_str(), "three"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PartitionMismatch {
                annals_partitions: 3,
                kafka_partitions: 2,
                ..
            }
        ),
        "{err}"
    );
    // Without create_topics a missing annals topic is an error, not created.
    let err = Mirror::start(
        &log,
        MirrorConfig::new(fresh_name("m"), bootstrap.as_str())
            .route(kafka.name.as_str(), "absent-copy")
            .create_topics(false),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Annals {
                source: annals::Error::UnknownTopic { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn progress_that_does_not_fit_the_log_stops_the_relay_with_the_reason() {
    let bootstrap = bootstrap();
    let kafka = Topic::create(&bootstrap, "misfit", 1);
    let id = fresh_name("misfit");
    let config = relay_config(&id, &bootstrap).route("t", kafka.name.as_str());
    let records: Vec<Record> = (0..10).map(|i| Record::new(format!("r{i}"))).collect();

    // The relay forwards ten records of one log…
    let first = tempfile::tempdir().unwrap();
    let log = Log::open(first.path()).unwrap();
    log.create_topic("t", TopicConfig::default().partitions(1))
        .unwrap();
    log.partition("t", 0).unwrap().append(&records).unwrap();
    let relay = Relay::start(&log, config.clone()).unwrap();
    assert!(relay.wait_until_caught_up(hang_guard()).unwrap());
    relay.stop().unwrap();

    // …and is then pointed at a log that ends before that: not the log it forwarded.
    let second = tempfile::tempdir().unwrap();
    let other = Log::open(second.path()).unwrap();
    other
        .create_topic("t", TopicConfig::default().partitions(1))
        .unwrap();
    other
        .partition("t", 0)
        .unwrap()
        .append(&records[..5])
        .unwrap();
    let err = Relay::start(&other, config.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::AheadOfLog {
                next: 10,
                high_watermark: 5,
                ..
            }
        ),
        "{err}"
    );

    // At a log whose records after the progress were deleted before they were forwarded.
    let p = other.partition("t", 0).unwrap();
    p.append(&records).unwrap();
    p.delete_records(12).unwrap();
    let err = Relay::start(&other, config).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                next: 10,
                log_start: 12,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("deleted before they were forwarded"),
        "{err}"
    );
}

#[test]
fn a_small_buffer_holds_the_relay_back_without_losing_anything() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    let kafka = Topic::create(&bootstrap, "small-buffer", 2);
    let value = "x".repeat(1000);
    for p in 0..2 {
        for _ in 0..50 {
            let batch: Vec<Record> = (0..100).map(|_| Record::new(value.as_str())).collect();
            log.partition("t", p).unwrap().append(&batch).unwrap();
        }
    }
    // 64 KiB of librdkafka queue for 10 MB of records: the relay waits for Kafka over and over.
    let relay = Relay::start(
        &log,
        relay_config(&fresh_name("small-buffer"), &bootstrap)
            .max_buffered_bytes(64 << 10)
            .route("t", kafka.name.as_str()),
    )
    .unwrap();
    assert!(
        relay.wait_until_caught_up(hang_guard()).unwrap(),
        "{:?}",
        relay.metrics()
    );
    let metrics = relay.stop().unwrap();
    assert_eq!(metrics.records_forwarded, 10_000);
    assert_eq!(metrics.delivery_failures, 0);
    let seen = read_committed(&bootstrap, &kafka.name, 2, 10_000, Duration::from_secs(1));
    assert_eq!(seen.len(), 10_000);
}

#[test]
fn an_annals_topic_deleted_under_a_running_relay_stops_it_with_the_reason() {
    let bootstrap = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::default().partitions(1))
        .unwrap();
    let kafka = Topic::create(&bootstrap, "deleted", 1);
    let relay = Relay::start(
        &log,
        relay_config(&fresh_name("deleted"), &bootstrap)
            .retry_backoff(Duration::from_millis(100))
            .route("t", kafka.name.as_str()),
    )
    .unwrap();
    log.delete_topic("t").unwrap();
    let deadline = Instant::now() + hang_guard();
    while relay.metrics().state != WorkerState::Failed {
        assert!(Instant::now() < deadline, "{:?}", relay.metrics());
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = relay.stop().unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(matches!(err, Error::Annals { .. }), "{err}");
}
