//! Consumer throughput and latency: `Consumer::poll` over a pre-written partition, end-to-end
//! latency from `Producer::send` to a parked `poll` returning, and `commit` throughput. The same
//! scan beside the `commitlog` crate is in the peers' bench (`cargo bench -p annals-peers
//! --bench peers -- w3_`: `w3_poll/annals` against `w3_read/commitlog`), so that this crate's
//! dev-dependencies hold no peer.
//!
//! ```text
//! cargo bench --bench consumer                  # ~2 minutes after the build (2 cores)
//! cargo bench --bench consumer -- --quick
//! ```
//!
//! - `poll/into/<codec>`: one iteration seeks partition 0 to the beginning and calls
//!   `poll_into` (reusing one vector) until all 1,000,000 records (12-byte key, 100-byte
//!   JSON-like value, written in batches of 1000) came back, touching every key and value.
//!   `max_poll_records` 10,000. Target: >= 20 M records/s uncompressed, and >= 1.0x
//!   commitlog's read of the same records (peers' `w3_read/commitlog`). `poll/vec/none` is the
//!   same through `poll`, which returns a fresh vector per call, and `poll/batches/<codec>`
//!   through `poll_batches` (borrowing batch views, records decoded while iterated).
//! - `commit/synced`: one `commit()` of one partition's position per iteration (an append and an
//!   fdatasync of `__consumer_offsets`); criterion's records/s is commits/s.
//! - Latency (printed, not a criterion group): a producer (`linger` 0, `Durability::Written`)
//!   sends 100-byte records paced at 100,000 records/s for `ANNALS_LATENCY_SECS` (default 2)
//!   seconds; a consumer parked in `poll` on another thread notes, per record, the time from
//!   just before `send` to `poll` returning it. Reports p50 / p99 / p99.9 (target p99 <= 10 us).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{
    Compression, Consumer, ConsumerConfig, Durability, Log, ProducerConfig, Record, TopicConfig,
    TopicPartition,
};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

mod common;
use common::{codecs, make_records};

const RECORDS: u64 = 1_000_000;
const BATCH: usize = 1000;

fn prewritten(compression: Compression) -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    log.create_topic("t", TopicConfig::default().compression(compression))
        .expect("topic");
    let p = log.partition("t", 0).expect("partition");
    let records = make_records(BATCH);
    for _ in 0..RECORDS / BATCH as u64 {
        p.append(&records).expect("append");
    }
    (dir, log)
}

/// Touches every key and value, as a real consumer would.
fn payload_bytes(records: &[annals::ConsumedRecord]) -> usize {
    records
        .iter()
        .map(|r| r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()))
        .sum()
}

/// Seeks to the beginning and polls (with `poll_once`, which returns the payload bytes it saw)
/// until every record came back.
fn scan(consumer: &mut Consumer, mut poll_once: impl FnMut(&mut Consumer) -> usize) -> usize {
    consumer
        .seek_to_beginning(&[TopicPartition::new("t", 0)])
        .expect("seek");
    let mut bytes = 0;
    while consumer.position("t", 0).expect("position") < RECORDS {
        bytes += black_box(poll_once(consumer));
    }
    bytes
}

fn bench_poll(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll");
    group
        .throughput(Throughput::Elements(RECORDS))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, codec) in codecs() {
        let (_dir, log) = prewritten(codec);
        let mut consumer = log
            .consumer(ConsumerConfig::new("bench").max_poll_records(10_000))
            .expect("consumer");
        consumer.assign(&[("t", 0)]).expect("assign");
        let mut records = Vec::new();
        group.bench_function(format!("into/{name}"), |b| {
            b.iter(|| {
                scan(&mut consumer, |c| {
                    c.poll_into(Duration::from_secs(1), &mut records)
                        .expect("poll");
                    payload_bytes(&records)
                })
            })
        });
        let mut batches = Vec::new();
        group.bench_function(format!("batches/{name}"), |b| {
            b.iter(|| {
                scan(&mut consumer, |c| {
                    c.poll_batches(Duration::from_secs(1), &mut batches)
                        .expect("poll");
                    batches
                        .iter()
                        .flat_map(|b| b.batch.records())
                        .map(|r| {
                            let r = r.expect("valid record");
                            r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len)
                        })
                        .sum()
                })
            })
        });
        if name == "none" {
            group.bench_function("vec/none", |b| {
                b.iter(|| {
                    scan(&mut consumer, |c| {
                        let records = c.poll(Duration::from_secs(1)).expect("poll");
                        payload_bytes(&records)
                    })
                })
            });
        }
    }
    group.finish();
}

fn bench_commit(c: &mut Criterion) {
    let (_dir, log) = prewritten(Compression::None);
    let mut consumer = log
        .consumer(ConsumerConfig::new("bench"))
        .expect("consumer");
    consumer.assign(&[("t", 0)]).expect("assign");
    let mut group = c.benchmark_group("commit");
    group.throughput(Throughput::Elements(1));
    let mut offset = 0u64;
    group.bench_function("synced", |b| {
        b.iter(|| {
            offset = (offset + 1) % RECORDS;
            consumer.seek("t", 0, offset).expect("seek");
            consumer.commit().expect("commit");
        })
    });
    group.finish();
}

/// Percentile of sorted nanoseconds.
fn pct(sorted: &[u64], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len() - 1);
    Duration::from_nanos(sorted[i])
}

fn report_latency() {
    let secs: u64 = std::env::var("ANNALS_LATENCY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    log.create_topic("lat", TopicConfig::default())
        .expect("topic");
    let producer = log
        .producer(
            ProducerConfig::default()
                .linger(Duration::ZERO)
                .durability(Durability::Written),
        )
        .expect("producer");
    let mut consumer = log
        .consumer(ConsumerConfig::new("lat").fetch_max_wait(Duration::from_secs(1)))
        .expect("consumer");
    consumer.assign(&[("lat", 0)]).expect("assign");
    let origin = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let total = 100_000 * secs;
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut lat = Vec::with_capacity(total as usize);
            while (lat.len() as u64) < total && !done.load(Ordering::Relaxed) {
                let records = consumer.poll(Duration::from_millis(100)).expect("poll");
                let now = origin.elapsed().as_nanos() as u64;
                for r in records {
                    let v = r.value.expect("value");
                    let sent = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
                    lat.push(now.saturating_sub(sent));
                }
            }
            lat
        })
    };
    let pad = [b'x'; 92];
    let interval = Duration::from_nanos(10_000); // 100k records/s
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * i as u32;
        while Instant::now() < due {
            std::thread::yield_now(); // pace without starving the writer and the consumer
        }
        let mut value = Vec::with_capacity(100);
        value.extend_from_slice(&(origin.elapsed().as_nanos() as u64).to_le_bytes());
        value.extend_from_slice(&pad);
        producer.send("lat", Record::new(value)).expect("send");
    }
    producer.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    let mut lat = reader.join().expect("reader");
    lat.sort_unstable();
    println!(
        "latency send->poll at 100k rec/s, {} records: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}",
        lat.len(),
        pct(&lat, 50.0),
        pct(&lat, 99.0),
        pct(&lat, 99.9),
        Duration::from_nanos(*lat.last().unwrap_or(&0)),
    );
}

/// Runs the latency report unless a criterion filter that does not mention it was given.
fn bench_latency(_c: &mut Criterion) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if filters.is_empty() || filters.iter().any(|f| "latency".contains(f.as_str())) {
        report_latency();
    }
}

criterion_group!(benches, bench_poll, bench_commit, bench_latency);
criterion_main!(benches);
