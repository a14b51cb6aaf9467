//! Back-pressure and bad input: a stalled or slow sink fills `buffer_memory`, `send` blocks for
//! `max_block` and fails with `BufferFull`, `try_send` fails at once, the buffer never exceeds
//! its bound, and nothing accepted is lost. Then the errors `send` and `Log::producer` report
//! for unusable records and configurations.
//!
//! Knobs: `ANNALS_TEST_CASES` (records through the slow sink, default 300).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use annals::storage::{SimOpKind, SimStorage};
use annals::{Compression, Error, Log, ProducerConfig, Record, TopicConfig};

const DIR: &str = "/sim/bp";
const BUFFER: usize = 64 << 10;

fn sim_log(partitions: u32) -> (Arc<SimStorage>, Log) {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR)
        .topic("t", TopicConfig::default().partitions(partitions))
        .open();
    (sim, log)
}

fn is_log_write(op: &annals::storage::SimOp) -> bool {
    op.kind == SimOpKind::Write && op.path.extension().is_some_and(|e| e == "log")
}

/// Every `.log` write waits while `gate` is closed (true): a sink that makes no progress.
fn stall_log_writes(sim: &SimStorage) -> Arc<AtomicBool> {
    let gate = Arc::new(AtomicBool::new(true));
    let g = gate.clone();
    sim.set_fault_hook(move |op| -> Option<io::Error> {
        if is_log_write(op) {
            while g.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        None
    });
    gate
}

fn stored_values(log: &Log) -> Vec<String> {
    let mut v: Vec<String> = read_topic(log, "t")
        .into_iter()
        .map(|(_, r)| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn a_full_buffer_blocks_for_max_block_then_fails_and_loses_nothing_accepted() {
    let (sim, log) = sim_log(2);
    let producer = log
        .producer(
            ProducerConfig::default()
                .buffer_memory(BUFFER)
                .batch_size(16 << 10)
                .linger(Duration::ZERO)
                .max_block(Duration::from_millis(100)),
        )
        .unwrap();
    let gate = stall_log_writes(&sim);
    let mut accepted = Vec::new();
    let mut deliveries = Vec::new();
    let (failed_after, err) = loop {
        let value = format!("{:0>1000}", accepted.len());
        let start = Instant::now();
        match producer.send(
            "t",
            Record::new(value.clone()).key(format!("k{}", accepted.len())),
        ) {
            Ok(d) => {
                accepted.push(value);
                deliveries.push(d);
                assert!(producer.buffered_bytes() <= BUFFER);
                assert!(accepted.len() < 1000, "the buffer never filled");
            }
            Err(e) => break (start.elapsed(), e),
        }
    };
    match err {
        Error::BufferFull { buffer_memory } => assert_eq!(buffer_memory, BUFFER),
        other => panic!("a send into a full buffer: {other:?}"),
    }
    assert!(
        failed_after >= Duration::from_millis(90) && failed_after < Duration::from_secs(2),
        "send failed after {failed_after:?}, expected about max_block (100 ms)"
    );
    let used = producer.buffered_bytes();
    assert!(
        used <= BUFFER && used > BUFFER - 2048,
        "buffered {used} of {BUFFER} bytes when full"
    );
    // try_send never blocks.
    let start = Instant::now();
    assert!(matches!(
        producer.try_send("t", Record::new("x")),
        Err(Error::BufferFull {
            buffer_memory: BUFFER
        })
    ));
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "try_send blocked"
    );
    assert!(
        deliveries.iter().all(|d| !d.is_done()),
        "the sink is stalled"
    );

    gate.store(false, Ordering::Release);
    producer.flush().unwrap();
    for d in &deliveries {
        d.wait().unwrap();
    }
    assert_eq!(
        producer.buffered_bytes(),
        0,
        "memory of written batches is released"
    );
    accepted.sort();
    assert_eq!(
        stored_values(&log),
        accepted,
        "exactly the accepted records are stored"
    );
    // And the producer works normally again.
    producer
        .send("t", Record::new("after"))
        .unwrap()
        .wait()
        .unwrap();
    producer.close().unwrap();
}

#[test]
fn a_blocked_send_proceeds_when_space_frees_up() {
    let (sim, log) = sim_log(1);
    let producer = log
        .producer(
            ProducerConfig::default()
                .buffer_memory(BUFFER)
                .batch_size(16 << 10)
                .linger(Duration::ZERO)
                .max_block(Duration::from_secs(20)),
        )
        .unwrap();
    let gate = stall_log_writes(&sim);
    let mut n = 0;
    while producer
        .try_send("t", Record::new(format!("{n:0>1000}")))
        .is_ok()
    {
        n += 1;
    }
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            gate.store(false, Ordering::Release);
        })
    };
    let start = Instant::now();
    // The same size as the record try_send could not fit.
    let d = producer
        .send("t", Record::new(format!("{n:0>1000}")))
        .unwrap();
    let blocked = start.elapsed();
    assert!(
        blocked >= Duration::from_millis(50) && blocked < Duration::from_secs(10),
        "blocked for {blocked:?}; the sink opened after 100 ms"
    );
    d.wait().unwrap();
    opener.join().unwrap();
    producer.flush().unwrap();
    assert_eq!(log.partition("t", 0).unwrap().high_watermark(), n + 1);
    producer.close().unwrap();
}

#[test]
fn a_slow_sink_keeps_the_buffer_within_bounds() {
    let (sim, log) = sim_log(3);
    let producer = log
        .producer(
            ProducerConfig::default()
                .buffer_memory(BUFFER)
                .batch_size(8 << 10)
                .linger(Duration::from_millis(1))
                .max_block(Duration::from_secs(30)),
        )
        .unwrap();
    // Every .log write takes 20 ms.
    let slow = Arc::new(AtomicBool::new(true));
    let s = slow.clone();
    sim.set_fault_hook(move |op| -> Option<io::Error> {
        if is_log_write(op) && s.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    let done = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let producer = producer.clone();
        let done = done.clone();
        let max_seen = max_seen.clone();
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !done.load(Ordering::Acquire) {
                let used = producer.buffered_bytes();
                max_seen.fetch_max(used, Ordering::Relaxed);
                assert!(used <= BUFFER, "buffered {used} > buffer_memory {BUFFER}");
                samples += 1;
                std::thread::yield_now();
            }
            samples
        })
    };
    let records = cases(300);
    let threads = 3;
    let senders: Vec<_> = (0..threads)
        .map(|t| {
            let producer = producer.clone();
            std::thread::spawn(move || {
                let mut longest = Duration::ZERO;
                let mut sent = Vec::new();
                for i in 0..records / threads {
                    let value = format!("t{t}-{i}-{}", "x".repeat(700));
                    let start = Instant::now();
                    let d = producer
                        .send(
                            "t",
                            Record::new(value.clone()).key(format!("k{t}-{}", i % 4)),
                        )
                        .unwrap();
                    longest = longest.max(start.elapsed());
                    sent.push((value, d));
                }
                (longest, sent)
            })
        })
        .collect();
    let mut longest = Duration::ZERO;
    let mut sent = Vec::new();
    for s in senders {
        let (l, v) = s.join().unwrap();
        longest = longest.max(l);
        sent.extend(v);
    }
    for (_, d) in &sent {
        d.wait().unwrap();
    }
    done.store(true, Ordering::Release);
    let samples = sampler.join().unwrap();
    slow.store(false, Ordering::Release);
    producer.flush().unwrap();
    let max_seen = max_seen.load(Ordering::Relaxed);
    assert!(samples > 10);
    // ~250 KB through a 64 KiB buffer and a sink writing one batch per 20 ms: senders had to wait.
    assert!(
        max_seen > BUFFER / 2,
        "the buffer never filled (max {max_seen} bytes): no back-pressure was exercised"
    );
    assert!(
        longest >= Duration::from_millis(5),
        "no send ever blocked (longest {longest:?})"
    );
    let mut want: Vec<String> = sent.into_iter().map(|(v, _)| v).collect();
    want.sort();
    assert_eq!(stored_values(&log), want);
    producer.close().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bad input.

#[test]
fn unknown_topic_is_refused_at_send() {
    let (_sim, log) = sim_log(1);
    let producer = log.producer(ProducerConfig::default()).unwrap();
    for result in [
        producer.send("nope", Record::new("v")),
        producer.try_send("nope", Record::new("v")),
        producer.send_to("nope", 0, Record::new("v")),
    ] {
        match result {
            Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "nope"),
            other => panic!("send to an unknown topic: {other:?}"),
        }
    }
    assert_eq!(producer.buffered_bytes(), 0);
    producer.flush().unwrap();
    producer.close().unwrap();
}

#[test]
fn a_record_over_max_message_bytes_is_refused_at_send() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    let max = 1024;
    for codec in [Compression::None, Compression::Lz4, Compression::zstd()] {
        let topic = format!("small-{}", codec.codec_id());
        log.create_topic(
            &topic,
            TopicConfig::default()
                .max_message_bytes(max)
                .compression(codec),
        )
        .unwrap();
        let producer = log.producer(ProducerConfig::default()).unwrap();
        match producer.send(&topic, Record::new(vec![7u8; 2000])) {
            Err(Error::RecordTooLarge { size, max: m }) => {
                assert_eq!(m, max);
                assert!(
                    size > max,
                    "reported size {size} is not over the limit {max}"
                );
            }
            other => panic!("{codec:?}: a 2000-byte record on a 1024-byte topic: {other:?}"),
        }
        // Just over the limit with a key and headers counted too.
        let r = Record::new(vec![1u8; 900])
            .key(vec![2u8; 100])
            .header("h", vec![3u8; 100]);
        assert!(matches!(
            producer.send(&topic, r),
            Err(Error::RecordTooLarge { .. })
        ));
        assert_eq!(producer.buffered_bytes(), 0);
        producer.close().unwrap();
    }
}

/// The largest record `send` accepts on a topic whose limit is `max`, and its delivery.
fn largest_accepted(
    producer: &annals::Producer,
    topic: &str,
    max: usize,
) -> (usize, annals::Delivery) {
    for len in (max / 2..max).rev() {
        // Incompressible bytes: a codec cannot shrink them under the limit.
        let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ len as u64;
        let value: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        if let Ok(d) = producer.send(topic, Record::new(value)) {
            return (len, d);
        }
    }
    panic!("no record under the limit of {max} bytes is accepted");
}

#[test]
fn the_largest_record_accepted_at_send_is_written() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    let max = 1024;
    log.create_topic("plain", TopicConfig::default().max_message_bytes(max))
        .unwrap();
    let producer = log.producer(ProducerConfig::default()).unwrap();
    let (len, d) = largest_accepted(&producer, "plain", max);
    assert!(len > max - 100, "only {len} of {max} bytes usable");
    d.wait().unwrap();
    producer.close().unwrap();
}

/// `send` promises that a record too large for its topic is refused there, with
/// `RecordTooLarge`; write errors are for the storage. On a compressed topic, a record that fits
/// uncompressed but not after the codec's framing (incompressible data) must then be refused at
/// `send` too (or be written some other way), not accepted and failed at write time.
#[test]
fn a_record_accepted_at_send_is_written_on_a_compressed_topic() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    let max = 1024;
    let mut failures = Vec::new();
    for codec in [Compression::Lz4, Compression::zstd()] {
        let topic = format!("c{}", codec.codec_id());
        log.create_topic(
            &topic,
            TopicConfig::default()
                .max_message_bytes(max)
                .compression(codec),
        )
        .unwrap();
        let producer = log.producer(ProducerConfig::default()).unwrap();
        let (len, d) = largest_accepted(&producer, &topic, max);
        if let Err(e) = d.wait() {
            failures.push(format!(
                "{codec:?}: a {len}-byte record accepted at send: {e:?}"
            ));
        }
        let _ = producer.close();
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_record_larger_than_the_buffer_is_refused() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic("big", TopicConfig::default().max_message_bytes(1 << 20))
        .unwrap();
    let producer = log
        .producer(
            ProducerConfig::default()
                .buffer_memory(BUFFER)
                .batch_size(16 << 10),
        )
        .unwrap();
    let start = Instant::now();
    match producer.send("big", Record::new(vec![0u8; 100 << 10])) {
        Err(Error::RecordTooLarge { max, .. }) => assert_eq!(max, BUFFER),
        other => panic!("a record larger than buffer_memory: {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "it can never fit: no waiting"
    );
    producer.close().unwrap();
}

#[test]
fn a_negative_timestamp_is_refused() {
    let (_sim, log) = sim_log(1);
    let producer = log.producer(ProducerConfig::default()).unwrap();
    for ts in [-1, i64::MIN] {
        assert!(matches!(
            producer.send("t", Record::new("v").timestamp(ts)),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(producer.buffered_bytes(), 0);
    producer
        .send("t", Record::new("v").timestamp(0))
        .unwrap()
        .wait()
        .unwrap();
    producer.close().unwrap();
}

#[test]
fn invalid_producer_configs_are_refused_not_clamped() {
    let (_sim, log) = sim_log(1);
    let d = ProducerConfig::default;
    let bad: Vec<(&str, ProducerConfig)> = vec![
        ("batch_size", d().batch_size(0)),
        ("batch_size", d().batch_size(1023)),
        ("batch_size", d().batch_size((64 << 20) + 1)),
        (
            "buffer_memory",
            d().batch_size(128 << 10).buffer_memory(64 << 10),
        ),
        ("buffer_memory", d().buffer_memory((64 << 10) - 1)),
        ("linger", d().linger(Duration::from_secs(3601))),
        (
            "compression",
            d().compression(Compression::Zstd { level: 0 }),
        ),
        (
            "compression",
            d().compression(Compression::Zstd { level: 23 }),
        ),
        ("stable_id", d().stable_id("x").idempotence(false)),
        ("retries", d().retries(5000)),
        ("retries", d().retries(1001)),
        ("retry_backoff", d().retry_backoff(Duration::from_secs(61))),
        ("stable_id", d().stable_id("")),
    ];
    for (field, cfg) in bad {
        match log.producer(cfg.clone()) {
            Err(Error::InvalidConfig { field: f, .. }) => {
                assert_eq!(f, field, "{cfg:?}")
            }
            other => panic!("{field}: {cfg:?} gave {other:?}"),
        }
    }
    // The bounds themselves are fine.
    let good = [
        d().batch_size(1024).buffer_memory(64 << 10),
        d().batch_size(64 << 10).buffer_memory(64 << 10),
        d().linger(Duration::from_secs(3600)),
        d().compression(Compression::Zstd { level: 1 }),
        d().compression(Compression::Zstd { level: 22 }),
        d().retries(1000).retry_backoff(Duration::from_secs(60)),
        d().idempotence(false).retries(0),
    ];
    for cfg in good {
        let p = log
            .producer(cfg.clone())
            .unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
        p.close().unwrap();
    }
}

#[test]
fn a_producer_on_a_closed_log_is_refused() {
    let (_sim, log) = sim_log(1);
    let producer = log.producer(ProducerConfig::default()).unwrap();
    producer
        .send("t", Record::new("v"))
        .unwrap()
        .wait()
        .unwrap();
    producer.close().unwrap();
    log.close().unwrap();
    assert!(matches!(
        log.producer(ProducerConfig::default()),
        Err(Error::Closed)
    ));
}

#[test]
fn a_producer_whose_log_closed_fails_its_sends() {
    let (_sim, log) = sim_log(1);
    let producer = log
        .producer(ProducerConfig::default().linger(Duration::ZERO))
        .unwrap();
    producer
        .send("t", Record::new("v"))
        .unwrap()
        .wait()
        .unwrap();
    log.close().unwrap();
    // The topic handle is cached: the send may be accepted, but the write cannot succeed.
    match producer.send("t", Record::new("after close")) {
        Ok(d) => {
            assert!(matches!(d.wait(), Err(Error::Closed)), "{:?}", d.wait());
            assert!(matches!(producer.flush(), Err(Error::Closed)));
        }
        Err(e) => assert!(matches!(e, Error::Closed), "{e:?}"),
    }
}
