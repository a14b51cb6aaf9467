//! `Log::metrics`: exact counts after known workloads — appends and reads by every path,
//! compression, producers, fsyncs (against `SimStorage`'s own count), maintenance, consumer
//! lag, open files — and what a deleted topic, a dropped producer and a closed log leave.

use crate::common;

use std::io::ErrorKind;
use std::time::Duration;

use annals::format::{BatchBuilder, BatchOptions};
use annals::storage::{SimOpKind, SimStorage};
use annals::{
    CleanupPolicy, Compression, ConsumerConfig, Durability, Error, EventStore, EventStoreConfig,
    ExpectedVersion, Log, Metrics, NewEvent, OffsetAndMetadata, PartitionCounts, ProducerConfig,
    Record, TopicConfig, TopicPartition,
};
use common::*;

const DIR: &str = "/sim/log";

fn open(sim: &std::sync::Arc<SimStorage>) -> Log {
    TestLog::sim(sim, DIR).no_maintenance().open()
}

fn counts(m: &Metrics, topic: &str, partition: u32) -> PartitionCounts {
    m.topic(topic)
        .unwrap_or_else(|| panic!("no topic {topic} in {m:#?}"))
        .partition(partition)
        .unwrap_or_else(|| panic!("no partition {topic}-{partition}"))
        .counts
}

fn values(n: usize) -> Vec<Record> {
    (0..n).map(|i| Record::new(format!("value {i}"))).collect()
}

#[test]
fn appends_and_reads_are_counted_exactly() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    let p = log.partition("t", 0).unwrap();
    let fresh = log.metrics();
    assert_eq!(counts(&fresh, "t", 0), PartitionCounts::default());

    // Three batches of 1, 2 and 3 records through `append`, one of 4 through `append_batch`.
    for n in 1..=3 {
        p.append(&values(n)).unwrap();
    }
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for r in values(4) {
        builder.push(&r, 1_700_000_000_000).unwrap();
    }
    let mut batch = Vec::new();
    builder.finish_into(&mut batch).unwrap();
    p.append_batch(&batch).unwrap();
    let stored = p.size_bytes();

    let m = log.metrics();
    let c = counts(&m, "t", 0);
    assert_eq!(
        (c.records_in, c.batches_in, c.bytes_in, c.markers_in),
        (10, 4, stored, 0)
    );
    assert_eq!((c.records_out, c.batches_out, c.bytes_out), (0, 0, 0));
    assert_eq!(c.compression, Default::default(), "no codec ran");
    let t0 = m.topic("t").unwrap().partition(0).unwrap();
    assert_eq!((t0.high_watermark, t0.size_bytes), (10, stored));
    assert_eq!(counts(&m, "t", 1), PartitionCounts::default());
    assert_eq!(m.topic("t").unwrap().totals, c);
    assert!(!m.topic("t").unwrap().internal);

    // A whole read: every record, every batch, every byte.
    assert_eq!(p.read(0, 1 << 20).unwrap().len(), 10);
    let c = counts(&log.metrics(), "t", 0);
    assert_eq!((c.records_out, c.batches_out, c.bytes_out), (10, 4, stored));

    // Batch views from offset 4: the third batch (offsets 3..=5) from part way, and the
    // fourth; the records counted are those the views yield.
    let mut views = Vec::new();
    p.read_batches(4, 1 << 20, &mut views).unwrap();
    let yielded: usize = views.iter().map(|v| v.records().count()).sum();
    assert_eq!(yielded, 6);
    let c = counts(&log.metrics(), "t", 0);
    assert_eq!((c.records_out, c.batches_out), (16, 6));

    // The iterator reads through `read_into`; a read at the high watermark returns nothing and
    // counts nothing; a failed read counts nothing.
    assert_eq!(p.iter(0).count(), 10);
    assert!(p.read(10, 1 << 20).unwrap().is_empty());
    assert!(matches!(
        p.read(11, 1 << 20),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let c = counts(&log.metrics(), "t", 0);
    assert_eq!((c.records_out, c.batches_out), (26, 10));
    assert_eq!(
        c.bytes_out,
        2 * stored
            + views
                .iter()
                .map(|v| v.header().total_len() as u64)
                .sum::<u64>()
    );
    assert_eq!(c.records_in, 10, "reads change no write count");
}

#[test]
fn compression_counts_the_codec_on_both_append_paths() {
    let (_dir, log) = TestLog::temp().no_maintenance().open_temp();
    let lz4 = TopicConfig::default().compression(Compression::Lz4);
    log.create_topic("lz4", lz4).unwrap();
    log.create_topic("plain", TopicConfig::default()).unwrap();
    let compressible: Vec<Record> = (0..100)
        .map(|i| Record::new("the same words again and again ".repeat(8)).key(format!("k{i}")))
        .collect();

    log.partition("lz4", 0)
        .unwrap()
        .append(&compressible)
        .unwrap();
    let c = counts(&log.metrics(), "lz4", 0).compression;
    assert_eq!(c.batches, 1);
    assert!(c.bytes_before > 4 * c.bytes_after, "{c:?}");

    // The producer's writer thread compresses with the producer's codec.
    let producer = log
        .producer(ProducerConfig::default().compression(Compression::Lz4))
        .unwrap();
    for r in &compressible {
        producer.send("plain", r.clone()).unwrap();
    }
    producer.flush().unwrap();
    let m = log.metrics();
    let plain = counts(&m, "plain", 0);
    assert!(plain.compression.batches >= 1);
    assert!(
        plain.compression.bytes_before > 4 * plain.compression.bytes_after,
        "{plain:?}"
    );
    assert_eq!(
        (plain.records_in, plain.batches_in),
        (100, plain.compression.batches)
    );
    assert_eq!(
        plain.bytes_in,
        log.partition("plain", 0).unwrap().size_bytes()
    );
}

#[test]
fn producers_count_sent_failed_refused_and_waits() {
    let (_dir, log) = TestLog::temp().no_maintenance().open_temp();
    log.create_topic("t", TopicConfig::default().partitions(3))
        .unwrap();
    let producer = log
        .producer(ProducerConfig::default().durability(Durability::Written))
        .unwrap();
    for i in 0..30 {
        producer
            .send("t", Record::new(format!("v{i}")).key(format!("k{i}")))
            .unwrap();
    }
    producer.flush().unwrap();
    assert!(matches!(
        producer.send("missing", Record::new("x")),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        producer.send("t", Record::new(vec![0u8; 2 << 20])),
        Err(Error::RecordTooLarge { .. })
    ));

    let m = log.metrics();
    assert_eq!(m.producers.len(), 1);
    let p = &m.producers[0];
    assert!(p.producer_id.is_some(), "idempotent by default");
    assert_eq!(p.transactional_id, None);
    assert_eq!((p.buffer_bytes, p.buffer_memory), (0, 32 << 20));
    let c = p.counts;
    assert_eq!(
        (c.records_sent, c.records_failed, c.sends_refused),
        (30, 0, 2)
    );
    assert_eq!(c.buffer_waits, 0);
    assert_eq!(m.topic("t").unwrap().totals.records_in, 30);

    // A full buffer: records held by a long linger fill it (a record reserves a little more
    // than it adds to its batch, so the buffer is full before the batch is and nothing is
    // written), and a blocking send waits out its `max_block` and is refused.
    let small = log
        .producer(
            ProducerConfig::default()
                .buffer_memory(64 << 10)
                .batch_size(64 << 10)
                .linger(Duration::from_secs(3600))
                .max_block(Duration::from_millis(20)),
        )
        .unwrap();
    let record = || Record::new(vec![7u8; 1000]).key("k");
    let mut accepted = 0;
    while small.try_send("t", record()).is_ok() {
        accepted += 1;
    }
    let buffered = small.buffered_bytes() as u64;
    assert!(matches!(
        small.send("t", record()),
        Err(Error::BufferFull { .. })
    ));
    let m = log.metrics();
    assert_eq!(m.producers.len(), 2);
    let s = &m.producers[1];
    assert!(s.serial > m.producers[0].serial);
    assert_eq!((s.buffer_bytes, s.buffer_memory), (buffered, 64 << 10));
    assert!(buffered > 0);
    assert_eq!(
        s.counts.sends_refused, 2,
        "the try_send that found it full, and the send"
    );
    assert_eq!(s.counts.buffer_waits, 1);
    assert!(s.counts.buffer_wait_time >= Duration::from_millis(20));
    small.flush().unwrap();
    assert_eq!(log.metrics().producers[1].counts.records_sent, accepted);

    // A dropped producer leaves the snapshot, counts and all.
    drop(small);
    let m = log.metrics();
    assert_eq!(m.producers.len(), 1);
    assert_eq!(m.producers[0].counts.records_sent, 30);
}

#[test]
fn a_failed_write_counts_as_failed_records() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic("t", TopicConfig::default()).unwrap();
    let producer = log
        .producer(
            ProducerConfig::default()
                .durability(Durability::Synced)
                .retries(0),
        )
        .unwrap();
    sim.fail_when(SimOpKind::SyncData, "t-0", ErrorKind::Other);
    let delivery = producer.send("t", Record::new("lost")).unwrap();
    assert!(delivery.wait().is_err());
    let m = log.metrics();
    let c = m.producers[0].counts;
    assert_eq!((c.records_sent, c.records_failed), (0, 1));
    assert_eq!(m.fsync.failures, 1);
}

#[test]
fn fsyncs_match_what_the_storage_saw() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic("t", TopicConfig::default()).unwrap();
    // The log is the sim's only user: every sync the sim counts, the log counted.
    let check = |m: &Metrics| {
        let f = &m.fsync;
        assert_eq!(
            f.count - f.failures,
            sim.sync_count() + sim.dir_sync_count(),
            "{f:?}"
        );
        assert_eq!(f.directories, sim.dir_sync_count());
        assert_eq!(f.histogram.count(), f.count);
        assert_eq!(f.histogram.total_time, f.total_time);
        assert_eq!(f.histogram.buckets.len(), 32);
    };
    let opened = log.metrics();
    check(&opened);
    assert!(
        opened.fsync.count > 0,
        "creating a topic syncs its directory"
    );

    let p = log.partition("t", 0).unwrap();
    p.append(&values(3)).unwrap();
    p.sync().unwrap();
    let synced = log.metrics();
    check(&synced);
    assert!(synced.fsync.count > opened.fsync.count);

    // A Synced producer that waits for each record: one group commit per record at least.
    let producer = log
        .producer(ProducerConfig::default().durability(Durability::Synced))
        .unwrap();
    for i in 0..5 {
        producer
            .send("t", Record::new(format!("{i}")))
            .unwrap()
            .wait()
            .unwrap();
    }
    let after = log.metrics();
    check(&after);
    assert!(after.fsync.count >= synced.fsync.count + 5);
    assert_eq!(after.fsync.failures, 0);

    // A failed fsync is counted as one, and poisons the partition.
    sim.fail_when(SimOpKind::SyncData, "", ErrorKind::Other);
    p.append(&values(1)).unwrap();
    assert!(p.sync().is_err());
    sim.clear_fault_hook();
    let failed = log.metrics();
    check(&failed);
    assert_eq!(failed.fsync.failures, 1);
}

#[test]
fn maintenance_counts_add_up_the_reports() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic(
        "old",
        small_segments().retention_ms(Duration::from_secs(3600)),
    )
    .unwrap();
    log.create_topic(
        "keyed",
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::Compact)
            .segment_bytes(2048)
            .min_cleanable_dirty_ratio(0.0),
    )
    .unwrap();
    let old = log.partition("old", 0).unwrap();
    for i in 0..40 {
        old.append(&[Record::new(format!("{i:0>100}")).timestamp(1_000_000 + i)])
            .unwrap();
    }
    let keyed = log.partition("keyed", 0).unwrap();
    for round in 0..30 {
        for k in 0..5 {
            keyed
                .append(&[Record::new(format!("{round}")).key(format!("k{k}"))])
                .unwrap();
        }
    }
    // Roll, so the updates are in sealed segments.
    keyed
        .append(&[Record::new(vec![0u8; 1900]).key("filler")])
        .unwrap();
    keyed.append(&[Record::new("x").key("filler")]).unwrap();

    let report = log.run_maintenance().unwrap();
    let m = log.metrics();
    assert_eq!((m.maintenance.runs, m.maintenance.failed_runs), (1, 0));
    let of = |topic: &str| {
        report
            .partitions
            .iter()
            .find(|p| p.topic == topic)
            .unwrap_or_else(|| panic!("no report for {topic}: {report:?}"))
    };
    let retention = &of("old").retention;
    assert!(retention.segments_deleted > 0);
    let r = counts(&m, "old", 0).retention;
    assert_eq!(
        (r.segments_deleted, r.bytes_deleted, r.offsets_removed),
        (
            retention.segments_deleted as u64,
            retention.bytes_deleted,
            retention.offsets_removed
        )
    );
    let compaction = &of("keyed").compaction;
    assert!(compaction.records_removed > 0);
    let c = counts(&m, "keyed", 0).compaction;
    assert_eq!(
        (c.passes, c.segments_read, c.segments_written),
        (
            compaction.passes as u64,
            compaction.segments_read as u64,
            compaction.segments_written as u64
        )
    );
    assert_eq!(
        (
            c.bytes_read,
            c.bytes_written,
            c.records_read,
            c.records_removed
        ),
        (
            compaction.bytes_read,
            compaction.bytes_written,
            compaction.records_read,
            compaction.records_removed
        )
    );

    // `delete_records` is retention too; a second run adds up.
    let start = old.log_start_offset();
    old.delete_records(start + 1).unwrap();
    log.run_maintenance().unwrap();
    let later = log.metrics();
    assert_eq!(later.maintenance.runs, 2);
    assert_eq!(
        counts(&later, "old", 0).retention.offsets_removed,
        retention.offsets_removed + 1
    );
}

#[test]
fn lag_per_group_follows_commits() {
    let (_dir, log) = TestLog::temp().no_maintenance().open_temp();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    log.partition("t", 0).unwrap().append(&values(10)).unwrap();
    log.partition("t", 1).unwrap().append(&values(4)).unwrap();
    assert!(log.metrics().groups.is_empty());

    let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
    c.assign(&[TopicPartition::new("t", 0), TopicPartition::new("t", 1)])
        .unwrap();
    c.commit_offsets(&[
        (TopicPartition::new("t", 0), OffsetAndMetadata::new(3)),
        (TopicPartition::new("t", 1), OffsetAndMetadata::new(4)),
    ])
    .unwrap();
    let m = log.metrics();
    assert_eq!(m.groups_error, None);
    let g = m.group("g").expect("the group");
    assert_eq!(g.lag, 7);
    let per: Vec<(u32, Option<u64>, u64)> = g
        .partitions
        .iter()
        .map(|p| (p.partition, p.committed, p.lag))
        .collect();
    assert_eq!(per, [(0, Some(3), 7), (1, Some(4), 0)]);
    // The commits went to `__consumer_offsets`, which the snapshot lists as internal.
    let offsets = m
        .topic("__consumer_offsets")
        .expect("internal topic listed");
    assert!(offsets.internal);
    assert!(offsets.totals.records_in >= 2);

    // More records: more lag, computed at the snapshot.
    log.partition("t", 1).unwrap().append(&values(5)).unwrap();
    assert_eq!(log.metrics().group("g").unwrap().lag, 12);
}

#[test]
fn transactions_and_event_stores_are_counted_on_their_topics() {
    let (_dir, log) = TestLog::temp().no_maintenance().open_temp();
    log.create_topic("t", TopicConfig::default()).unwrap();
    let producer = log
        .producer(
            // A linger no test outlasts: the three records go out as one batch, at the commit.
            ProducerConfig::default()
                .transactional_id("tx")
                .linger(Duration::from_secs(3600)),
        )
        .unwrap();
    producer.init_transactions().unwrap();
    producer.begin_transaction().unwrap();
    for i in 0..3 {
        producer.send("t", Record::new(format!("{i}"))).unwrap();
    }
    producer.commit_transaction().unwrap();
    let m = log.metrics();
    let c = counts(&m, "t", 0);
    // Three records in one batch, then the COMMIT marker, which is no record.
    assert_eq!((c.records_in, c.markers_in, c.batches_in), (3, 1, 2));
    assert_eq!(c.bytes_in, log.partition("t", 0).unwrap().size_bytes());
    assert_eq!(m.producers[0].transactional_id.as_deref(), Some("tx"));
    assert!(m.topic("__transaction_state").unwrap().internal);

    let store = EventStore::open(
        &log,
        "events",
        EventStoreConfig::default().durability(Durability::Written),
    )
    .unwrap();
    store
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            &[NewEvent::new("Created", "{}"), NewEvent::new("Paid", "{}")],
        )
        .unwrap();
    let events = log
        .metrics()
        .topic("events")
        .expect("the store's topic")
        .totals;
    assert!(events.records_in >= 2, "{events:?}");
}

#[test]
fn open_files_and_mappings_follow_topics_and_close() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic("kept", TopicConfig::default()).unwrap();
    let before = log.metrics().files;
    // A new segment's index files are mapped, empty: nothing is allocated before an entry.
    assert!(before.open_files > 0 && before.mappings > 0, "{before:?}");

    // An entry per batch: the second batch makes the indexes take their first page.
    let gone = TopicConfig::default().partitions(3).index_interval_bytes(0);
    log.create_topic("gone", gone).unwrap();
    let p = log.partition("gone", 0).unwrap();
    p.append(&values(2)).unwrap();
    p.append(&values(2)).unwrap();
    let with = log.metrics();
    assert!(with.files.open_files >= before.open_files + 3, "{with:?}");
    assert!(with.files.mapped_bytes > before.mapped_bytes);
    assert!(with.files.files_opened > before.files_opened);
    assert!(with.topic("gone").is_some());

    // A deleted topic leaves the snapshot, and its files close once no handle holds them.
    drop(p);
    log.delete_topic("gone").unwrap();
    let without = log.metrics();
    assert!(without.topic("gone").is_none());
    assert!(without.topic("kept").is_some());
    assert_eq!(without.files.open_files, before.open_files);
    assert_eq!(without.files.mappings, before.mappings);
    assert_eq!(without.files.mapped_bytes, before.mapped_bytes);

    let producer = log.producer(ProducerConfig::default()).unwrap();
    producer.send("kept", Record::new("x")).unwrap();
    producer.flush().unwrap();
    log.close().unwrap();
    // Closed: no topics, producers or groups, as `topics()` has none; the log-wide counts keep
    // their last values, and nothing is open or mapped any more.
    let closed = log.metrics();
    assert!(log.topics().is_empty());
    assert!(closed.topics.is_empty());
    assert!(closed.producers.is_empty());
    assert!(closed.groups.is_empty());
    assert_eq!((closed.files.open_files, closed.files.mappings), (0, 0));
    assert_eq!(closed.files.mapped_bytes, 0);
    assert!(
        closed.fsync.count > without.fsync.count,
        "the close sealed segments"
    );
    assert_eq!(
        closed.fsync.count - closed.fsync.failures,
        sim.sync_count() + sim.dir_sync_count()
    );
    drop(producer);
}

#[cfg(feature = "serde")]
#[test]
fn a_snapshot_round_trips_through_json() {
    let (_dir, log) = TestLog::temp().no_maintenance().open_temp();
    log.create_topic("t", TopicConfig::default()).unwrap();
    log.partition("t", 0).unwrap().append(&values(3)).unwrap();
    let m = log.metrics();
    let json = serde_json::to_string(&m).unwrap();
    let back: Metrics = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
    assert!(json.contains("\"records_in\":3"), "{json}");
}

/// A recorder that keeps the last value of every counter and gauge, by name and labels.
#[cfg(feature = "metrics")]
mod recorder {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use ::metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };

    pub type Values = Arc<Mutex<BTreeMap<String, f64>>>;

    #[derive(Default)]
    pub struct Capture(pub Values);

    struct Slot(Values, String);

    impl CounterFn for Slot {
        fn increment(&self, value: u64) {
            *self.0.lock().unwrap().entry(self.1.clone()).or_default() += value as f64;
        }
        fn absolute(&self, value: u64) {
            self.0.lock().unwrap().insert(self.1.clone(), value as f64);
        }
    }

    impl GaugeFn for Slot {
        fn increment(&self, value: f64) {
            *self.0.lock().unwrap().entry(self.1.clone()).or_default() += value;
        }
        fn decrement(&self, value: f64) {
            *self.0.lock().unwrap().entry(self.1.clone()).or_default() -= value;
        }
        fn set(&self, value: f64) {
            self.0.lock().unwrap().insert(self.1.clone(), value);
        }
    }

    /// `name{a="x",b="y"}`, labels in the order given.
    fn render(key: &Key) -> String {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
            .collect();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Slot(self.0.clone(), render(key))))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Slot(self.0.clone(), render(key))))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }
}

#[cfg(feature = "metrics")]
#[test]
fn publish_hands_the_snapshot_to_the_metrics_facade() {
    let (_dir, log) = TestLog::temp().no_maintenance().open_temp();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    log.partition("t", 1).unwrap().append(&values(3)).unwrap();
    log.sync().unwrap();
    let mut c = log.consumer(ConsumerConfig::new("g")).unwrap();
    c.assign(&[TopicPartition::new("t", 1)]).unwrap();
    c.commit_offsets(&[(TopicPartition::new("t", 1), OffsetAndMetadata::new(1))])
        .unwrap();
    let m = log.metrics();

    let capture = recorder::Capture::default();
    ::metrics::with_local_recorder(&capture, || m.publish());
    let values = capture.0.lock().unwrap();
    let get = |series: &str| {
        *values
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {:#?}", values.keys()))
    };
    assert_eq!(
        get("annals_records_in_total{topic=\"t\",partition=\"1\"}"),
        3.0
    );
    assert_eq!(
        get("annals_records_in_total{topic=\"t\",partition=\"0\"}"),
        0.0
    );
    assert_eq!(
        get("annals_high_watermark{topic=\"t\",partition=\"1\"}"),
        3.0
    );
    assert_eq!(get("annals_fsyncs_total{}"), m.fsync.count as f64);
    assert_eq!(
        get("annals_fsync_latency_microseconds_bucket{le=\"+Inf\"}"),
        m.fsync.count as f64
    );
    assert_eq!(get("annals_group_lag{group=\"g\"}"), 2.0);
    assert_eq!(
        get("annals_group_partition_lag{group=\"g\",topic=\"t\",partition=\"1\"}"),
        2.0
    );
    assert_eq!(get("annals_open_files{}"), m.files.open_files as f64);
}
