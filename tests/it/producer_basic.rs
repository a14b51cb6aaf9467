//! The producer's everyday behaviour on the real file system: partitioning (Kafka's murmur2,
//! sticky keyless placement, explicit and custom partitions), linger, many concurrent senders,
//! flush, compression, timestamps, `Durability::None`, the `Delivery` API, close and drop,
//! sends racing with close, and a topic deleted and re-created under a live producer.
//!
//! Knobs: `ANNALS_TEST_CASES` scales the number of keys and records (default: small).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use annals::{
    murmur2, partition_for_key, Compression, Durability, Error, Log, Partitioner, Producer,
    ProducerConfig, Record, RecordMetadata, TimestampType, TopicConfig,
};

fn open_with_topic(partitions: u32) -> (tempfile::TempDir, Log) {
    TestLog::temp()
        .topic("t", TopicConfig::default().partitions(partitions))
        .open_temp()
}

fn value_of(log: &Log, m: &RecordMetadata) -> Vec<u8> {
    let p = log.partition(&m.topic, m.partition).unwrap();
    let got = p.read(m.offset.unwrap(), 1 << 20).unwrap();
    assert_eq!(got[0].offset, m.offset.unwrap());
    got[0].value.as_deref().unwrap().to_vec()
}

#[test]
fn murmur2_matches_kafka_reference_values() {
    // Kafka's UtilsTest.testMurmur2 vectors.
    assert_eq!(murmur2(b"21"), -973_932_308);
    assert_eq!(murmur2(b"foobar"), -790_332_482);
    assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
    assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
    assert_eq!(
        murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
        -58_897_971
    );
    assert_eq!(murmur2(b"abc"), 479_470_107);
    // toPositive(h) % n, never negative even for negative hashes.
    for n in [1u32, 2, 3, 7, 100] {
        assert_eq!(
            partition_for_key(b"21", n),
            ((-973_932_308i32 & 0x7fff_ffff) as u32) % n
        );
    }
}

#[test]
fn keyed_records_go_to_partition_for_key() {
    let keys = cases(200);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let counts = [1u32, 2, 3, 6, 7, 12, 32];
    for n in counts {
        log.create_topic(&format!("t{n}"), TopicConfig::default().partitions(n))
            .unwrap();
    }
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::from_millis(1)))
        .unwrap();
    let mut sent = Vec::new();
    for n in counts {
        for k in 0..keys {
            // Keys of many lengths (tails of 0-3 bytes) and some binary ones.
            let key: Vec<u8> = if k % 5 == 0 {
                (0..(k % 11) as u8)
                    .map(|b| b.wrapping_mul(37) ^ k as u8)
                    .collect()
            } else {
                format!("key-{k}-{}", "x".repeat(k % 4)).into_bytes()
            };
            let want = partition_for_key(&key, n);
            assert!(want < n);
            let d = producer
                .send(
                    &format!("t{n}"),
                    Record::new(format!("v{k}")).key(key.clone()),
                )
                .unwrap();
            sent.push((n, key, want, d));
        }
    }
    producer.flush().unwrap();
    for (n, key, want, d) in sent {
        let m = d.wait().unwrap();
        assert_eq!(m.partition, want, "key {key:?} on {n} partitions");
        let stored = log
            .partition(&format!("t{n}"), m.partition)
            .unwrap()
            .read(m.offset.unwrap(), 1 << 20)
            .unwrap();
        assert_eq!(stored[0].key.as_deref(), Some(&key[..]));
    }
    producer.close().unwrap();
}

#[test]
fn keyless_records_stick_to_a_partition_until_its_batch_closes() {
    let (_dir, log) = open_with_topic(4);
    // Small batches, and a linger long enough that only size closes them.
    let producer = log
        .producer(
            ProducerConfig::default()
                .batch_size(1024)
                .linger(Duration::from_secs(30)),
        )
        .unwrap();
    let n = cases(120).max(60);
    let ds: Vec<_> = (0..n)
        .map(|i| {
            producer
                .send("t", Record::new(format!("{i:0>100}")))
                .unwrap()
        })
        .collect();
    producer.flush().unwrap();
    let placed: Vec<u32> = ds.iter().map(|d| d.wait().unwrap().partition).collect();
    // Runs of consecutive records on one partition.
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for &p in &placed {
        match runs.last_mut() {
            Some((q, len)) if *q == p => *len += 1,
            _ => runs.push((p, 1)),
        }
    }
    // ~110-byte records in 1 KiB batches: several records per run, not one partition per
    // record, and not everything on one partition.
    assert!(runs.len() >= 4, "records never moved on: {runs:?}");
    for (i, &(_, len)) in runs.iter().enumerate() {
        if i + 1 < runs.len() {
            assert!(
                (4..=12).contains(&len),
                "run {i} has {len} records: {runs:?}"
            );
        }
    }
    for w in runs.windows(2) {
        assert_eq!(
            w[1].0,
            (w[0].0 + 1) % 4,
            "sticky partition moves to the next: {runs:?}"
        );
    }
    let used: HashSet<u32> = placed.iter().copied().collect();
    assert_eq!(used.len(), 4, "keyless records spread over all partitions");
    // Every record is stored where its delivery says.
    let total: u64 = (0..4)
        .map(|p| log.partition("t", p).unwrap().high_watermark())
        .sum();
    assert_eq!(total, n as u64);
    producer.close().unwrap();
}

/// A batch that closes because its linger passed (or a flush closed it) is closed as much as
/// one that filled up: the next keyless record must go to the next partition. Otherwise
/// low-rate keyless traffic, whose batches always linger out before they fill, all lands on
/// one partition forever.
#[test]
fn keyless_records_move_on_when_their_batch_lingers_out() {
    let (_dir, log) = open_with_topic(4);
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::from_millis(5)))
        .unwrap();
    let mut placed = Vec::new();
    for i in 0..12 {
        // Waiting for each record means its batch closed by linger before the next send.
        let m = producer
            .send("t", Record::new(format!("v{i}")))
            .unwrap()
            .wait()
            .unwrap();
        placed.push(m.partition);
    }
    let used: HashSet<u32> = placed.iter().copied().collect();
    assert!(
        used.len() > 1,
        "every keyless record went to partition(s) {used:?} although each batch closed: {placed:?}"
    );
    // The same after flushes.
    let mut placed = Vec::new();
    for i in 0..8 {
        let d = producer.send("t", Record::new(format!("f{i}"))).unwrap();
        producer.flush().unwrap();
        placed.push(d.wait().unwrap().partition);
    }
    let used: HashSet<u32> = placed.iter().copied().collect();
    assert!(used.len() > 1, "keyless records after flushes: {placed:?}");
    producer.close().unwrap();
}

#[test]
fn send_to_an_explicit_partition() {
    let (_dir, log) = open_with_topic(6);
    let producer = log.producer(ProducerConfig::default()).unwrap();
    let mut ds = Vec::new();
    for i in 0..50 {
        // The key would hash elsewhere; the explicit partition wins.
        ds.push(
            producer
                .send_to("t", 4, Record::new(format!("v{i}")).key(format!("k{i}")))
                .unwrap(),
        );
    }
    for (i, d) in ds.iter().enumerate() {
        let m = d.wait().unwrap();
        assert_eq!((m.partition, m.offset), (4, Some(i as u64)));
    }
    assert_eq!(log.partition("t", 4).unwrap().high_watermark(), 50);
    match producer.send_to("t", 6, Record::new("x")) {
        Err(Error::UnknownPartition {
            partition: 6,
            partitions: 6,
            ..
        }) => {}
        other => panic!("send_to partition 6 of 6: {other:?}"),
    }
    assert!(matches!(
        producer.send_to("t", u32::MAX, Record::new("x")),
        Err(Error::UnknownPartition { .. })
    ));
    assert_eq!(
        producer.buffered_bytes(),
        0,
        "a rejected record holds no memory"
    );
    producer.close().unwrap();
}

/// What a partitioner was asked: topic, key, partition count.
type Call = (String, Option<Vec<u8>>, u32);

#[derive(Debug, Default)]
struct ByLength {
    calls: Mutex<Vec<Call>>,
}

impl Partitioner for ByLength {
    fn partition(&self, topic: &str, key: Option<&[u8]>, partitions: u32) -> u32 {
        self.calls
            .lock()
            .unwrap()
            .push((topic.to_string(), key.map(<[u8]>::to_vec), partitions));
        key.map_or(partitions - 1, |k| k.len() as u32 % partitions)
    }
}

#[derive(Debug)]
struct OutOfRange;

impl Partitioner for OutOfRange {
    fn partition(&self, _topic: &str, _key: Option<&[u8]>, partitions: u32) -> u32 {
        partitions
    }
}

#[test]
fn a_custom_partitioner_is_used() {
    let (_dir, log) = open_with_topic(5);
    let custom = Arc::new(ByLength::default());
    let producer = log
        .producer(ProducerConfig::default().partitioner(custom.clone()))
        .unwrap();
    let keys = ["", "a", "ab", "abc", "abcd", "abcde", "abcdefg"];
    let mut ds = Vec::new();
    for k in keys {
        ds.push((
            Some(k.len() as u32 % 5),
            producer.send("t", Record::new("v").key(k)).unwrap(),
        ));
    }
    ds.push((Some(4), producer.send("t", Record::new("keyless")).unwrap()));
    for (want, d) in &ds {
        assert_eq!(Some(d.wait().unwrap().partition), *want);
    }
    let calls = custom.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), keys.len() + 1, "called once per record");
    assert!(
        calls.iter().all(|(t, _, n)| t == "t" && *n == 5),
        "{calls:?}"
    );
    assert_eq!(
        calls.last().unwrap().1,
        None,
        "keyless records reach the partitioner"
    );
    // send_to bypasses the partitioner.
    producer
        .send_to("t", 0, Record::new("v").key("abc"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(custom.calls.lock().unwrap().len(), keys.len() + 1);
    producer.close().unwrap();

    let bad = log
        .producer(ProducerConfig::default().partitioner(Arc::new(OutOfRange)))
        .unwrap();
    assert!(matches!(
        bad.send("t", Record::new("v").key("k")),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(bad.buffered_bytes(), 0);
    bad.close().unwrap();
}

#[test]
fn a_lingering_record_is_written_without_further_calls() {
    for linger_ms in [50u64, 0] {
        let (_dir, log) = open_with_topic(1);
        let producer = log
            .producer(ProducerConfig::default().linger(Duration::from_millis(linger_ms)))
            .unwrap();
        let p = log.partition("t", 0).unwrap();
        let start = Instant::now();
        let _d = producer.send("t", Record::new("alone")).unwrap();
        let took = poll_until(Duration::from_secs(2), || p.high_watermark() == 1)
            .unwrap_or_else(|| panic!("linger {linger_ms} ms: record not written within 2 s"));
        // Never before the linger has passed (scheduling can only make it later).
        assert!(
            start.elapsed() >= Duration::from_millis(linger_ms.saturating_sub(5)),
            "linger {linger_ms} ms: written after {took:?}"
        );
        assert_eq!(
            p.read(0, 1 << 20).unwrap()[0].value.as_deref(),
            Some(&b"alone"[..])
        );
        producer.close().unwrap();
    }
}

#[test]
fn many_threads_many_keys_no_loss_no_duplicates_per_key_order() {
    let threads = 8;
    let per_thread = cases(400);
    let keys_per_thread = 7;
    let (_dir, log) = open_with_topic(6);
    let producer = log
        .producer(
            ProducerConfig::default()
                .linger(Duration::from_millis(1))
                .batch_size(4096),
        )
        .unwrap();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let producer: Producer = producer.clone();
            std::thread::spawn(move || {
                let mut counters = vec![0u32; keys_per_thread];
                let mut out = Vec::new();
                for i in 0..per_thread {
                    let k = (i * 5 + t) % keys_per_thread;
                    let key = format!("t{t}-k{k}");
                    let value = format!("{key}-{}", counters[k]);
                    counters[k] += 1;
                    let d = producer
                        .send("t", Record::new(value.clone()).key(key.clone()))
                        .unwrap();
                    out.push((key, value, d));
                }
                out
            })
        })
        .collect();
    let sent: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let mut by_pos = HashMap::new();
    let mut per_key: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for (key, value, d) in &sent {
        let m = d.wait().unwrap();
        assert_eq!(m.partition, partition_for_key(key.as_bytes(), 6), "{key}");
        assert!(
            by_pos
                .insert((m.partition, m.offset.unwrap()), value.clone())
                .is_none(),
            "two deliveries at {}:{}",
            m.partition,
            m.offset.unwrap()
        );
        per_key
            .entry(key.clone())
            .or_default()
            .push((m.offset.unwrap(), value.clone()));
    }
    producer.flush().unwrap();
    // Reading everything back yields exactly what was sent, at the acknowledged offsets.
    let stored = read_topic(&log, "t");
    assert_eq!(stored.len(), sent.len(), "record count");
    let mut per_partition = [0u64; 6];
    for (p, r) in &stored {
        let want = by_pos
            .get(&(*p, r.offset))
            .unwrap_or_else(|| panic!("{p}:{} was never acknowledged", r.offset));
        assert_eq!(r.value.as_deref(), Some(want.as_bytes()));
        assert_eq!(r.offset, per_partition[*p as usize], "offsets are dense");
        per_partition[*p as usize] += 1;
    }
    // Per key, offsets follow the order the key's (only) sender sent in.
    for (key, mut list) in per_key {
        let in_send_order: Vec<String> = list.iter().map(|(_, v)| v.clone()).collect();
        list.sort();
        let in_offset_order: Vec<String> = list.into_iter().map(|(_, v)| v).collect();
        assert_eq!(in_offset_order, in_send_order, "order of key {key}");
    }
    producer.close().unwrap();
}

#[test]
fn flush_waits_for_everything_without_waiting_out_the_linger() {
    let (_dir, log) = open_with_topic(3);
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::from_secs(30)))
        .unwrap();
    let n = cases(300);
    let ds: Vec<_> = (0..n)
        .map(|i| {
            producer
                .send(
                    "t",
                    Record::new(format!("v{i}")).key(format!("k{}", i % 13)),
                )
                .unwrap()
        })
        .collect();
    assert!(
        ds.iter().any(|d| !d.is_done()),
        "linger 30 s: nothing written yet"
    );
    let start = Instant::now();
    producer.flush().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "flush waited out the linger"
    );
    for d in &ds {
        assert!(d.is_done());
        assert!(d.try_result().unwrap().unwrap().offset.is_some());
    }
    let total: u64 = (0..3)
        .map(|p| log.partition("t", p).unwrap().high_watermark())
        .sum();
    assert_eq!(total, n as u64);
    // A flush with nothing outstanding returns at once.
    producer.flush().unwrap();
    producer.close().unwrap();
}

#[test]
fn producer_compression_overrides_the_topic_codec() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("lz4", TopicConfig::default().compression(Compression::Lz4))
        .unwrap();
    log.create_topic(
        "zstd",
        TopicConfig::default().compression(Compression::zstd()),
    )
    .unwrap();
    let cases_: [(&str, Option<Compression>, u8); 4] = [
        ("lz4", None, 3),                      // the topic's codec
        ("zstd", None, 4),                     // the topic's codec
        ("lz4", Some(Compression::zstd()), 4), // the producer's codec wins
        ("zstd", Some(Compression::None), 0),
    ];
    let mut expect_batches: HashMap<&str, Vec<u8>> = HashMap::new();
    for (topic, codec, want) in cases_ {
        let mut cfg = ProducerConfig::default();
        if let Some(c) = codec {
            cfg = cfg.compression(c);
        }
        let producer = log.producer(cfg).unwrap();
        for i in 0..20 {
            producer
                .send(
                    topic,
                    Record::new(format!("compressible value {i} {}", "abc".repeat(50))),
                )
                .unwrap();
        }
        producer.close().unwrap();
        expect_batches.entry(topic).or_default().push(want);
    }
    for (topic, wants) in expect_batches {
        let p = log.partition(topic, 0).unwrap();
        let headers = stored_batches_fs(p.dir());
        // Each producer's records form their own batches (producers never share one).
        let mut codecs: Vec<u8> = headers.iter().map(|h| h.codec_id()).collect();
        codecs.dedup();
        assert_eq!(codecs, wants, "{topic}: codecs of the stored batches");
        let records = read_partition(&p);
        assert_eq!(records.len(), 40);
        assert!(records.iter().all(|r| r
            .value
            .as_deref()
            .unwrap()
            .starts_with(b"compressible value ")));
    }
}

#[test]
fn log_append_time_topic_reports_the_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic(
        "lat",
        TopicConfig::default().message_timestamp_type(TimestampType::LogAppendTime),
    )
    .unwrap();
    let producer = log.producer(ProducerConfig::default()).unwrap();
    let before = now_ms();
    let explicit = producer
        .send("lat", Record::new("old").timestamp(1_000))
        .unwrap();
    let implicit = producer.send("lat", Record::new("now")).unwrap();
    let metas = [explicit.wait().unwrap(), implicit.wait().unwrap()];
    let after = now_ms();
    let p = log.partition("lat", 0).unwrap();
    for m in &metas {
        let stored = p.read(m.offset.unwrap(), 1 << 20).unwrap();
        assert_eq!(stored[0].offset, m.offset.unwrap());
        assert_eq!(
            m.timestamp, stored[0].timestamp,
            "metadata = stored timestamp"
        );
        assert!(
            (before..=after).contains(&m.timestamp),
            "append time {} not within [{before}, {after}]",
            m.timestamp
        );
    }
    producer.close().unwrap();
}

#[test]
fn create_time_topic_keeps_the_callers_timestamp_or_now() {
    let (_dir, log) = open_with_topic(1);
    let producer = log.producer(ProducerConfig::default()).unwrap();
    let before = now_ms();
    let explicit = producer
        .send("t", Record::new("old").timestamp(1_000))
        .unwrap();
    let implicit = producer.send("t", Record::new("now")).unwrap();
    let after = now_ms();
    let m1 = explicit.wait().unwrap();
    let m2 = implicit.wait().unwrap();
    let p = log.partition("t", 0).unwrap();
    assert_eq!(m1.timestamp, 1_000);
    assert_eq!(
        p.read(m1.offset.unwrap(), 1 << 20).unwrap()[0].timestamp,
        1_000
    );
    assert!(
        (before..=after).contains(&m2.timestamp),
        "{} not in [{before}, {after}]",
        m2.timestamp
    );
    assert_eq!(
        p.read(m2.offset.unwrap(), 1 << 20).unwrap()[0].timestamp,
        m2.timestamp
    );
    producer.close().unwrap();
}

#[test]
fn durability_none_acknowledges_without_offsets_and_still_writes() {
    let (_dir, log) = open_with_topic(2);
    let producer = log
        .producer(
            ProducerConfig::default()
                .durability(Durability::None)
                .linger(Duration::from_secs(30)),
        )
        .unwrap();
    let n = 50;
    let ds: Vec<_> = (0..n)
        .map(|i| {
            producer
                .send("t", Record::new(format!("v{i}")).key("k"))
                .unwrap()
        })
        .collect();
    for d in &ds {
        // Acknowledged at once, without an offset, though nothing is written yet (linger 30 s).
        assert!(d.is_done());
        let m = d.try_result().unwrap().unwrap();
        assert!(m.offset.is_none());
        assert_eq!(m.offset, None);
        assert_eq!(d.wait().unwrap(), m);
        assert_eq!(m.partition, partition_for_key(b"k", 2));
    }
    producer.flush().unwrap();
    let p = log.partition("t", partition_for_key(b"k", 2)).unwrap();
    let records = read_partition(&p);
    let values: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
    let want: Vec<_> = (0..n).map(|i| format!("v{i}")).collect();
    assert_eq!(values, want.iter().map(|v| bytes_of(v)).collect::<Vec<_>>());
    producer.close().unwrap();
}

fn bytes_of(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn delivery_try_result_is_done_and_wait_timeout() {
    let (_dir, log) = open_with_topic(1);
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::from_secs(30)))
        .unwrap();
    let d = producer.send("t", Record::new("v")).unwrap();
    assert!(d.try_result().is_none());
    assert!(!d.is_done());
    let start = Instant::now();
    assert!(d.wait_timeout(Duration::from_millis(50)).is_none());
    assert!(
        start.elapsed() >= Duration::from_millis(45),
        "wait_timeout returned early"
    );
    let clone = d.clone();
    let waiter = std::thread::spawn(move || clone.wait());
    producer.flush().unwrap();
    assert!(d.is_done());
    let m = d.try_result().unwrap().unwrap();
    assert_eq!(d.wait_timeout(Duration::ZERO).unwrap().unwrap(), m);
    assert_eq!(d.wait().unwrap(), m);
    assert_eq!(
        waiter.join().unwrap().unwrap(),
        m,
        "a cloned delivery sees the same result"
    );
    assert_eq!((&*m.topic, m.partition, m.offset), ("t", 0, Some(0)));
    assert_eq!(value_of(&log, &m), b"v");
    producer.close().unwrap();
}

#[test]
fn close_is_idempotent_and_later_sends_fail() {
    let (_dir, log) = open_with_topic(2);
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::from_secs(30)))
        .unwrap();
    let clone = producer.clone();
    let d = producer
        .send("t", Record::new("before close").key("k"))
        .unwrap();
    producer.close().unwrap();
    // close flushed what was sent.
    assert!(d.wait().unwrap().offset.is_some());
    producer.close().unwrap();
    clone.close().unwrap();
    assert!(matches!(
        producer.send("t", Record::new("x")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        producer.try_send("t", Record::new("x")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        producer.send_to("t", 0, Record::new("x")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        clone.send("t", Record::new("x")),
        Err(Error::Closed)
    ));
    producer.flush().unwrap();
    let total: u64 = (0..2)
        .map(|p| log.partition("t", p).unwrap().high_watermark())
        .sum();
    assert_eq!(total, 1);
}

#[test]
fn dropping_the_producer_flushes() {
    let (_dir, log) = open_with_topic(3);
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::from_secs(30)))
        .unwrap();
    let clone = producer.clone();
    let n = 100;
    for i in 0..n {
        clone
            .send("t", Record::new(format!("v{i}")).key(format!("k{i}")))
            .unwrap();
    }
    drop(clone);
    // One clone is still alive: nothing need be written yet (linger 30 s).
    let total = || -> u64 {
        (0..3)
            .map(|p| log.partition("t", p).unwrap().high_watermark())
            .sum()
    };
    assert_eq!(total(), 0, "written before the linger or a flush");
    drop(producer);
    assert_eq!(total(), n, "dropping the last handle wrote everything");
    let mut values: Vec<String> = read_topic(&log, "t")
        .into_iter()
        .map(|(_, r)| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    values.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(values, want);
}

/// Sends racing with `close` (some of them blocked for buffer space behind a slow disk) each
/// end one way or the other: refused with `Closed`, or a delivery that completes. None is left
/// waiting forever, and every acknowledged record is stored.
#[test]
fn sends_racing_with_close_all_complete() {
    use annals::storage::{SimOpKind, SimStorage};
    let rounds = cases(10);
    for round in 0..rounds {
        let sim = SimStorage::new();
        let log = TestLog::sim(&sim, "/sim/race").open();
        log.create_topic("t", TopicConfig::default().partitions(3))
            .unwrap();
        if round % 2 == 1 {
            sim.set_fault_hook(|op| {
                if op.kind == SimOpKind::Write && op.path.extension().is_some_and(|e| e == "log") {
                    std::thread::sleep(Duration::from_millis(1));
                }
                None
            });
        }
        let producer = log
            .producer(
                ProducerConfig::default()
                    .buffer_memory(64 << 10)
                    .batch_size(4 << 10)
                    .linger(Duration::from_millis(1)),
            )
            .unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let producer = producer.clone();
                let accepted = accepted.clone();
                std::thread::spawn(move || {
                    let mut ds = Vec::new();
                    for i in 0.. {
                        let r = Record::new(format!("t{t}-{i}-{}", "x".repeat(300)));
                        match producer.send("t", r) {
                            Ok(d) => {
                                ds.push(d);
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(Error::Closed) => break,
                            Err(e) => panic!("send: {e}"),
                        }
                    }
                    ds
                })
            })
            .collect();
        // Close while the senders are busy: once some sends were accepted (a fixed sleep was not
        // enough on a loaded machine, where the threads may not have run yet), plus a varying
        // pause so the close lands at different points of the writer's round.
        let deadline = Instant::now() + Duration::from_secs(60);
        while accepted.load(Ordering::Relaxed) < 8 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(round as u64 % 7));
        producer.close().unwrap();
        let mut acked = 0u64;
        for s in senders {
            for d in s.join().unwrap() {
                match d.wait_timeout(Duration::from_secs(60)) {
                    None => panic!("round {round}: a delivery never completed after close"),
                    Some(Ok(_)) => acked += 1,
                    Some(Err(Error::Closed)) => {}
                    Some(Err(e)) => panic!("round {round}: {e}"),
                }
            }
        }
        let stored: u64 = (0..3)
            .map(|p| log.partition("t", p).unwrap().high_watermark())
            .sum();
        assert_eq!(stored, acked, "round {round}: stored vs acknowledged");
        assert!(acked > 0, "round {round}: nothing was sent before close");
    }
}

/// A producer addresses topics by name. After a topic is deleted, sends to it are refused as
/// for any unknown topic (or fail), and once a topic of that name exists again the producer
/// writes to it, with its partition count, instead of failing with `Closed` forever on the
/// deleted topic's partitions.
#[test]
fn a_recreated_topic_is_written_by_an_existing_producer() {
    let (_dir, log) = open_with_topic(2);
    let producer = log.producer(ProducerConfig::default()).unwrap();
    producer
        .send("t", Record::new("a"))
        .unwrap()
        .wait()
        .unwrap();
    log.delete_topic("t").unwrap();
    if let Ok(d) = producer.send("t", Record::new("into the void")) {
        assert!(d.wait().is_err(), "a write to a deleted topic succeeded");
    }
    let _ = producer.flush();
    log.create_topic("t", TopicConfig::default().partitions(3))
        .unwrap();
    let got = producer
        .send_to("t", 2, Record::new("b"))
        .and_then(|d| d.wait());
    match got {
        Ok(m) => assert_eq!((m.partition, m.offset), (2, Some(0))),
        Err(e) => panic!("send to the re-created topic: {e:?}"),
    }
    producer.close().unwrap();
}

/// Waiting on a delivery closes its batch: with a linger of ten minutes, `wait` returns once
/// the record is written, at every durability that waits, while a record nobody waits on (or
/// that is only polled with `wait_timeout`) stays in its open batch.
#[test]
fn waiting_on_a_delivery_closes_its_batch() {
    for durability in [Durability::Written, Durability::Synced] {
        let (_dir, log) = open_with_topic(1);
        let producer = log
            .producer(
                ProducerConfig::default()
                    .durability(durability)
                    .linger(Duration::from_secs(600)),
            )
            .unwrap();
        let first = producer.send_to("t", 0, Record::new("first")).unwrap();
        let second = producer.send_to("t", 0, Record::new("second")).unwrap();
        // Polling does not close the batch: it lingers (ten minutes), nothing is written.
        assert!(second.wait_timeout(Duration::from_millis(50)).is_none());
        assert!(
            !first.is_done(),
            "{durability:?}: written before anyone waited"
        );
        assert_eq!(log.partition("t", 0).unwrap().high_watermark(), 0);
        // `wait` closes it. The guard is far below the linger: a wait that had to linger out
        // would fail it.
        let waited = |d: annals::Delivery| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(d.wait()).unwrap());
            rx.recv_timeout(Duration::from_secs(120))
                .expect("waiting closed the batch")
                .unwrap()
        };
        assert_eq!(waited(second).offset, Some(1), "{durability:?}");
        // Both records were in that batch.
        assert_eq!(first.try_result().unwrap().unwrap().offset, Some(0));
        // A later record opens a new batch, and waiting closes that one too.
        let third = producer.send_to("t", 0, Record::new("third")).unwrap();
        let m = waited(third);
        assert_eq!(m.offset, Some(2), "{durability:?}");
        assert_eq!(value_of(&log, &m), b"third");
        producer.close().unwrap();
    }
}
