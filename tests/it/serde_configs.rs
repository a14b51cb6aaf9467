//! Feature `serde`: the configurations read from and write to JSON (durations as whole
//! milliseconds, fields left out at their defaults, misspelt ones refused, and what is read
//! validated where it is used as any configuration is), and the reports serialize under their
//! field names and read back equal.
#![cfg(feature = "serde")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::storage::SimStorage;
use annals::{
    Assignor, AutoOffsetReset, CheckpointReport, CleanupPolicy, CompactionStrategy, Compression,
    ConsumerConfig, Durability, Error, EventStore, EventStoreConfig, GroupDescription,
    IsolationLevel, Log, MaintenanceReport, PartitionDescription, PartitionLag, Partitioner,
    ProducerConfig, Record, RecoveryMode, RecoveryReport, TimestampType, TopicConfig, VerifyReport,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::{hang_bound, small_segments, TestLog};

const T: &str = "t";
const OLD: i64 = 1_000_000_000_000; // 2001: long past any retention below
/// The longest duration a configuration holds, in milliseconds.
const MAX_MS: u64 = i64::MAX as u64;

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serializes")
}

/// `value` through a JSON string and back.
fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> T {
    let text = serde_json::to_string(value).expect("serializes");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text} does not read back: {e}"))
}

/// The error of reading `json` as a `T`, as text.
fn read_error<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
    match serde_json::from_str::<T>(json) {
        Ok(v) => panic!("{json} was read as {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: annals::Result<T>, field: &str) {
    match result {
        Err(Error::InvalidConfig { field: f, .. }) if f == field => {}
        other => panic!("expected InvalidConfig naming {field}, got {other:?}"),
    }
}

/// A topic configuration with every field away from its default.
fn unusual_topic_config() -> TopicConfig {
    TopicConfig::default()
        .partitions(3)
        .segment_bytes(64 << 20)
        .segment_ms(Duration::from_secs(3600))
        .segment_index_bytes(1 << 20)
        .index_interval_bytes(1024)
        .max_message_bytes(2 << 20)
        .compression(Compression::Zstd { level: 7 })
        .message_timestamp_type(TimestampType::LogAppendTime)
        .cleanup_policy(CleanupPolicy::CompactAndDelete)
        .retention_ms(Duration::from_millis(86_400_001))
        .retention_bytes(1 << 30)
        .min_cleanable_dirty_ratio(0.25)
        .min_compaction_lag_ms(Duration::from_secs(60))
        .max_compaction_lag_ms(Duration::from_secs(600))
        .delete_retention_ms(Duration::from_millis(1))
        .compaction_strategy(CompactionStrategy::Header("version".into()))
        .retain_for_groups(["billing", "audit"])
        .max_retention_ms(Duration::from_secs(30 * 86_400))
        .max_retention_bytes(2 << 30)
}

#[derive(Debug)]
struct AllToZero;
impl Partitioner for AllToZero {
    fn partition(&self, _topic: &str, _key: Option<&[u8]>, _partitions: u32) -> u32 {
        0
    }
}

#[test]
fn every_config_round_trips_through_json() {
    for cfg in [TopicConfig::default(), unusual_topic_config()] {
        cfg.validate().unwrap();
        assert_eq!(round_trip(&cfg), cfg);
    }
    // Durations as whole milliseconds under the field's own name; enums by variant name.
    let json = to_json(&unusual_topic_config());
    assert_eq!(json["segment_ms"], json!(3_600_000));
    assert_eq!(json["retention_ms"], json!(86_400_001));
    assert_eq!(json["delete_retention_ms"], json!(1));
    assert_eq!(json["compression"], json!({"Zstd": {"level": 7}}));
    assert_eq!(json["cleanup_policy"], json!("CompactAndDelete"));
    assert_eq!(json["compaction_strategy"], json!({"Header": "version"}));
    assert_eq!(
        to_json(&TopicConfig::default())["retention_ms"],
        Value::Null
    );

    let producer = ProducerConfig::default()
        .durability(Durability::Synced)
        .linger(Duration::from_millis(20))
        .batch_size(128 << 10)
        .buffer_memory(64 << 20)
        .max_block(Duration::from_millis(MAX_MS))
        .compression(Compression::Lz4)
        .retries(7)
        .retry_backoff(Duration::from_millis(250))
        .transaction_timeout(Duration::from_secs(120))
        .transactional_id("orders-writer");
    producer.validate().unwrap();
    // ProducerConfig has no PartialEq (its partitioner is a trait object): compare Debug.
    assert_eq!(
        format!("{:?}", round_trip(&producer)),
        format!("{producer:?}")
    );
    assert_eq!(to_json(&producer)["max_block"], json!(MAX_MS));
    assert_eq!(to_json(&producer)["durability"], json!("Synced"));
    let json = to_json(&ProducerConfig::default());
    assert!(
        json.get("partitioner").is_none(),
        "no partitioner, no field: {json}"
    );

    let consumer = ConsumerConfig::new("fulfilment")
        .client_id("worker-1")
        .auto_offset_reset(AutoOffsetReset::Latest)
        .enable_auto_commit(true)
        .auto_commit_interval(Duration::from_secs(1))
        .max_poll_records(100)
        .fetch_min_bytes(4096)
        .fetch_max_wait(Duration::from_millis(50))
        .fetch_max_bytes(8 << 20)
        .max_partition_fetch_bytes(2 << 20)
        .max_poll_interval(Duration::from_secs(60))
        .assignor(Assignor::Sticky)
        .isolation_level(IsolationLevel::ReadCommitted);
    consumer.validate().unwrap();
    assert_eq!(round_trip(&consumer), consumer);
    assert_eq!(to_json(&consumer)["fetch_max_wait"], json!(50));

    let store = EventStoreConfig::default()
        .partitions(4)
        .durability(Durability::Written)
        .compression(Compression::zstd())
        .segment_bytes(32 << 20)
        .index_memtable_entries(1024);
    store.validate().unwrap();
    assert_eq!(format!("{:?}", round_trip(&store)), format!("{store:?}"));

    for mode in [RecoveryMode::Strict, RecoveryMode::TruncateCorrupt] {
        assert_eq!(round_trip(&mode), mode);
    }
}

#[test]
fn a_partial_config_takes_the_defaults_for_the_rest() {
    let cfg: TopicConfig =
        serde_json::from_str(r#"{"partitions": 4, "retention_ms": 60000}"#).unwrap();
    assert_eq!(
        cfg,
        TopicConfig::default()
            .partitions(4)
            .retention_ms(Duration::from_secs(60))
    );
    assert_eq!(
        serde_json::from_str::<TopicConfig>("{}").unwrap(),
        TopicConfig::default()
    );

    let cfg: ProducerConfig =
        serde_json::from_str(r#"{"linger": 20, "durability": "Synced"}"#).unwrap();
    let want = ProducerConfig::default()
        .linger(Duration::from_millis(20))
        .durability(Durability::Synced);
    assert_eq!(format!("{cfg:?}"), format!("{want:?}"));

    let cfg: ConsumerConfig =
        serde_json::from_str(r#"{"group_id": "g", "max_poll_records": 10}"#).unwrap();
    assert_eq!(cfg, ConsumerConfig::new("g").max_poll_records(10));
    // Without a group id: a consumer that only assigns, as `ConsumerConfig::default()`.
    let cfg: ConsumerConfig = serde_json::from_str(r#"{"max_poll_records": 10}"#).unwrap();
    assert_eq!(cfg, ConsumerConfig::default().max_poll_records(10));
    assert_eq!(cfg.group_id, None);

    let cfg: EventStoreConfig = serde_json::from_str(r#"{"partitions": 2}"#).unwrap();
    let want = EventStoreConfig::default().partitions(2);
    assert_eq!(format!("{cfg:?}"), format!("{want:?}"));
}

#[test]
fn an_unknown_field_is_an_error_naming_it() {
    for (err, field) in [
        (
            read_error::<TopicConfig>(r#"{"retention": 1000}"#),
            "retention",
        ),
        (
            read_error::<ProducerConfig>(r#"{"linger_ms": 5}"#),
            "linger_ms",
        ),
        (
            read_error::<ConsumerConfig>(r#"{"group_id": "g", "groupid": "h"}"#),
            "groupid",
        ),
        (read_error::<EventStoreConfig>(r#"{"hasher": 1}"#), "hasher"),
        // A partitioner is code: a file cannot name one.
        (
            read_error::<ProducerConfig>(r#"{"partitioner": null}"#),
            "partitioner",
        ),
        (
            read_error::<TopicConfig>(r#"{"compression": {"Zstd": {"levle": 3}}}"#),
            "levle",
        ),
    ] {
        assert!(err.contains(&format!("unknown field `{field}`")), "{err}");
    }
    // A variant misspelt is refused too.
    let err = read_error::<TopicConfig>(r#"{"cleanup_policy": "Compacted"}"#);
    assert!(err.contains("unknown variant `Compacted`"), "{err}");
}

#[test]
fn an_out_of_range_duration_is_an_error_in_both_directions() {
    // i64::MAX ms is the longest a configuration holds; one more is refused on reading.
    let cfg: TopicConfig =
        serde_json::from_str(&format!(r#"{{"retention_ms": {MAX_MS}}}"#)).unwrap();
    assert_eq!(cfg.retention_ms, Some(Duration::from_millis(MAX_MS)));
    for json in [
        format!(r#"{{"retention_ms": {}}}"#, MAX_MS + 1),
        format!(r#"{{"segment_ms": {}}}"#, u64::MAX),
        r#"{"delete_retention_ms": -1}"#.to_string(),
        r#"{"segment_ms": 1.5}"#.to_string(),
        r#"{"segment_ms": "7d"}"#.to_string(),
    ] {
        let err = read_error::<TopicConfig>(&json);
        assert!(err.contains("invalid"), "{json}: {err}");
    }
    let err = read_error::<TopicConfig>(&format!(r#"{{"max_retention_ms": {}}}"#, MAX_MS + 1));
    assert!(err.contains("at most i64::MAX"), "{err}");
    let err = read_error::<ProducerConfig>(&format!(r#"{{"max_block": {}}}"#, MAX_MS + 1));
    assert!(err.contains("at most i64::MAX"), "{err}");
    let err = read_error::<ConsumerConfig>(&format!(
        r#"{{"group_id": "g", "fetch_max_wait": {}}}"#,
        MAX_MS + 1
    ));
    assert!(err.contains("at most i64::MAX"), "{err}");

    // Writing refuses what the file could not carry, rather than dropping it.
    let err = serde_json::to_string(&ProducerConfig::default().linger(Duration::from_micros(1500)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a whole number of milliseconds"), "{err}");
    let err = serde_json::to_string(&TopicConfig::default().retention_ms(Duration::MAX))
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than i64::MAX milliseconds"), "{err}");
    // So does a custom partitioner: a file without it would place keys elsewhere.
    let err = serde_json::to_string(&ProducerConfig::default().partitioner(Arc::new(AllToZero)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("custom partitioner AllToZero"), "{err}");
}

#[test]
fn a_config_read_out_of_bounds_is_refused_where_it_is_used() {
    let (_dir, log) = TestLog::temp().no_maintenance().open_temp();

    let topic: TopicConfig = serde_json::from_str(r#"{"partitions": 0}"#).unwrap();
    assert_invalid(log.create_topic(T, topic), "partitions");
    let topic: TopicConfig =
        serde_json::from_str(r#"{"retention_ms": 60000, "max_retention_ms": 59999}"#).unwrap();
    assert_invalid(log.create_topic(T, topic), "max_retention_ms");
    assert!(log.topics().is_empty(), "{:?}", log.topics());
    log.create_topic(T, serde_json::from_str(r#"{"partitions": 2}"#).unwrap())
        .unwrap();
    assert_eq!(log.topic_config(T).unwrap().partitions, 2);

    let producer: ProducerConfig = serde_json::from_str(r#"{"batch_size": 1}"#).unwrap();
    assert_invalid(log.producer(producer), "batch_size");
    let producer: ProducerConfig = serde_json::from_str(r#"{"transaction_timeout": 0}"#).unwrap();
    assert_invalid(log.producer(producer), "transaction_timeout");

    let consumer: ConsumerConfig =
        serde_json::from_str(r#"{"group_id": "g", "max_poll_records": 0}"#).unwrap();
    assert_invalid(log.consumer(consumer), "max_poll_records");

    let store: EventStoreConfig = serde_json::from_str(r#"{"durability": "None"}"#).unwrap();
    assert_invalid(EventStore::open(&log, "bank", store), "durability");
}

#[test]
fn a_maintenance_report_serializes_with_its_field_names() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, "/sim/log").no_maintenance().open();
    log.create_topic(T, small_segments().retention_ms(Duration::from_secs(3600)))
        .unwrap();
    let p = log.partition(T, 0).unwrap();
    for i in 0..40 {
        p.append(&[Record::new(format!("{i:0>100}")).timestamp(OLD + i)])
            .unwrap();
    }
    let report = log.run_maintenance().unwrap();
    assert!(report.segments_deleted() > 0, "{report:?}");

    let json = to_json(&report);
    let part = &json["partitions"][0];
    assert_eq!(part["topic"], json!(T));
    assert_eq!(part["partition"], json!(0));
    let retention = &report.partitions[0].retention;
    assert_eq!(
        part["retention"]["segments_deleted"],
        json!(retention.segments_deleted)
    );
    assert_eq!(
        part["retention"]["log_start_offset"],
        json!(retention.log_start_offset)
    );
    assert_eq!(part["compaction"]["records_removed"], json!(0));
    assert_eq!(json["transactions_timed_out"], json!(0));
    // A measured time keeps its nanoseconds: serde's own {secs, nanos}.
    assert_eq!(
        json["elapsed"],
        json!({"secs": report.elapsed.as_secs(), "nanos": report.elapsed.subsec_nanos()})
    );
    assert_eq!(round_trip::<MaintenanceReport>(&report), report);
}

/// Polls `consumer` until it has read `n` records, guarding against a hang.
fn consume(consumer: &mut annals::Consumer, n: usize) {
    let deadline = Instant::now() + hang_bound();
    let mut seen = 0;
    while seen < n {
        assert!(Instant::now() < deadline, "read {seen} of {n} records");
        seen += consumer.poll(Duration::from_millis(50)).unwrap().len();
    }
}

#[test]
fn group_descriptions_and_lag_serialize_with_their_field_names() {
    let (_dir, log) = TestLog::temp()
        .no_maintenance()
        .topic(T, TopicConfig::default().partitions(2))
        .open_temp();
    for partition in 0..2 {
        let records: Vec<Record> = (0..3).map(|i| Record::new(format!("r{i}"))).collect();
        log.partition(T, partition)
            .unwrap()
            .append(&records)
            .unwrap();
    }
    let mut consumer = log
        .consumer(ConsumerConfig::new("g").client_id("worker"))
        .unwrap();
    consumer.subscribe(&[T]).unwrap();
    consume(&mut consumer, 6);
    consumer.commit().unwrap();

    let groups = log.groups().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let json = to_json(&groups[0]);
    assert_eq!(json["group"], json!("g"));
    assert_eq!(json["generation"], json!(groups[0].generation));
    assert_eq!(json["assignor"], json!("Range"));
    let member = &json["members"][0];
    assert_eq!(member["member_id"], json!(groups[0].members[0].member_id));
    assert_eq!(member["client_id"], json!("worker"));
    assert_eq!(member["topics"], json!([T]));
    assert_eq!(
        member["assignment"],
        json!([{"topic": T, "partition": 0}, {"topic": T, "partition": 1}])
    );
    assert_eq!(round_trip::<GroupDescription>(&groups[0]), groups[0]);

    let lag = log.group_lag("g").unwrap();
    assert_eq!(lag.len(), 2, "{lag:?}");
    assert_eq!(
        to_json(&lag[1]),
        json!({
            "topic": T,
            "partition": 1,
            "committed": 3,
            "position": null,
            "log_start_offset": 0,
            "high_watermark": 3,
            "last_stable_offset": 3,
            "lag": 0,
        })
    );
    assert_eq!(round_trip::<Vec<PartitionLag>>(&lag), lag);
    assert_eq!(consumer.lag().unwrap()[0].position, Some(3));
    assert_eq!(to_json(&consumer.lag().unwrap()[0])["position"], json!(3));
}

#[test]
fn verify_and_describe_reports_serialize_with_their_field_names() {
    let (dir, log) = TestLog::temp()
        .no_maintenance()
        .topic(T, small_segments())
        .open_temp();
    let p = log.partition(T, 0).unwrap();
    for i in 0..60 {
        p.append(&[Record::new(format!("{i:0>60}"))]).unwrap();
    }
    assert!(p.segment_count() > 2, "the test needs sealed segments");
    drop(p);
    log.close().unwrap();

    let view = Log::open_read_only(dir.path()).unwrap();
    let described = view.describe_partition(T, 0).unwrap();
    let json = to_json(&described);
    for field in [
        "topic",
        "partition",
        "dir",
        "log_start_offset",
        "high_watermark",
        "last_stable_offset",
        "segments",
        "tail_damage",
    ] {
        assert!(json.get(field).is_some(), "no {field} in {json}");
    }
    assert_eq!(json["high_watermark"], json!(60));
    let first = &described.segments[0];
    assert_eq!(
        json["segments"][0],
        json!({
            "base_offset": 0,
            "path": first.path.to_str().unwrap(),
            "size_bytes": first.size_bytes,
        })
    );
    assert_eq!(round_trip::<PartitionDescription>(&described), described);

    // Damage a sealed segment: the report names the file and the byte.
    let sealed = described.segments[1].path.clone();
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[100] ^= 0x5a;
    std::fs::write(&sealed, bytes).unwrap();
    let report = view.verify(|_, _| {}).unwrap();
    assert!(!report.is_clean(), "{report:?}");
    let json = to_json(&report);
    for field in ["files_checked", "bytes_checked", "batches_checked"] {
        assert!(json[field].as_u64().is_some(), "no {field} in {json}");
    }
    let finding = &json["damage"][0];
    assert_eq!(finding["path"], json!(sealed.to_str().unwrap()));
    assert_eq!(finding["position"], json!(report.damage[0].position));
    assert_eq!(finding["what"], json!(report.damage[0].what));
    assert_eq!(json["notes"], json!([]));
    assert_eq!(round_trip::<VerifyReport>(&report), report);
}

#[test]
fn a_checkpoint_report_lists_its_high_watermarks() {
    let (_dir, log) = TestLog::temp()
        .no_maintenance()
        .topic(T, TopicConfig::default().partitions(2))
        .open_temp();
    log.partition(T, 1)
        .unwrap()
        .append(&[Record::new("a"), Record::new("b")])
        .unwrap();
    let backups = tempfile::tempdir().unwrap();
    let report = log.checkpoint(backups.path().join("copy")).unwrap();
    let json = to_json(&report);
    let hw = json["high_watermarks"].as_array().expect("a list");
    assert_eq!(hw.len(), report.high_watermarks.len());
    assert!(
        hw.contains(&json!({"topic": T, "partition": 1, "high_watermark": 2})),
        "{json}"
    );
    assert_eq!(round_trip::<CheckpointReport>(&report), report);

    let twice = r#"{"partitions": 1, "segments_linked": 0, "segments_copied": 1,
        "bytes_copied": 9, "high_watermarks": [
            {"topic": "t", "partition": 0, "high_watermark": 1},
            {"topic": "t", "partition": 0, "high_watermark": 2}]}"#;
    let err = read_error::<CheckpointReport>(twice);
    assert!(err.contains("t-0 is listed twice"), "{err}");

    let recovery = log.recovery_report();
    assert_eq!(to_json(&recovery), json!({"events": []}));
    assert_eq!(round_trip::<RecoveryReport>(&recovery), recovery);
}
