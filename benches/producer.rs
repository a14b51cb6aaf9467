//! Producer throughput and acknowledgement latency, each next to the baseline it is judged
//! against, measured in the same run.
//!
//! ```text
//! cargo bench --bench producer                  # everything, ~1.5 minutes after the build (2 cores)
//! cargo bench --bench producer -- --quick       # criterion's quick mode
//! cargo bench --bench producer -- send/         # one group
//! ```
//!
//! Benchmarks (all report records/s via `Throughput::Elements`). Records are prebuilt (12-byte
//! key, 100-byte JSON-like value, the same generator as `benches/partition.rs`); `send` takes a
//! `Record` by value, so the timed loops include one `Record::clone` (two refcount increments)
//! per send.
//!
//! Group `send` (one sending thread, `Durability::Written`, default linger 5 ms and batch size
//! 64 KiB, topic of one partition):
//!
//! - `send/written/<codec>`: `SEND_RECORDS_PER_ITER` records sent one at a time, then
//!   `flush()`, all timed; codecs none / lz4 / zstd (level 3) set with
//!   `ProducerConfig::compression`. Every criterion sample (and warm-up round) uses a fresh
//!   producer and a fresh topic that are closed and deleted afterwards, untimed; a sample larger
//!   than 256 MiB is split into several, so disk use stays bounded whatever the iteration count.
//!   Targets: `written/none` >= 5 M records/s and >= 0.5x `raw_file/buffered_write`;
//!   `written/<codec>` >= 0.8x `codec_standalone/<codec>`.
//! - `send/raw_file/buffered_write`: the same records as `u32 len | key | u32 len | value`
//!   through a 256 KiB `BufWriter` into a plain file (fresh per stretch, no fsync); the final
//!   flush is timed.
//! - `send/codec_standalone/<codec>`: compressing the bytes the producer compresses for the same
//!   records — their Kafka v2 records sections, cut into 64 KiB batches exactly where the
//!   producer closes its batches — with an lz4_flex frame per batch (Kafka's frame settings, as
//!   the producer writes them) or zstd level 3 through one reused `zstd::bulk::Compressor`.
//!   Nothing is written to disk.
//!
//! Group `synced` (`Durability::Synced`, linger 0, topic of one partition):
//!
//! - `synced/<threads>` (1, 4, 16): each thread sends `SYNCED_RECORDS_PER_THREAD` records per
//!   iteration, waiting for each delivery before the next send. One producer per configuration.
//! - `synced/outbox_default_linger/4`: the same with 4 threads and the default linger (5 ms):
//!   waiting on a delivery closes its batch, so this pays no linger. Target (issue 14): >= 0.9x
//!   `synced/4`.
//! - `synced/raw_fdatasync/1`: one thread, one `write` of one record then `fdatasync`, per record,
//!   on a plain file. Target: `synced/1` >= 0.9x this.
//! - `synced/one_fsync_per_record/16`: 16 threads, each doing `write` + `fdatasync` per record on
//!   its own plain file. Target: `synced/16` >= 10x this.
//!
//! Every `synced` benchmark also prints (stderr) the p50 / p99 of the per-record acknowledgement
//! latency (send to `wait` returning; write to fdatasync returning for the baselines) over all
//! iterations criterion ran, warm-up included — criterion cannot report percentiles itself.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use annals::format::{BatchBuilder, BatchOptions, HEADER_LEN};
use annals::{Compression, Durability, Log, ProducerConfig, Record, TopicConfig};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};

/// Distinct prebuilt records; sends cycle through them.
mod common;
use common::{codecs, in_stretches, make_records, write_raw, VALUE_LEN};

const POOL: usize = 1000;
/// Records per `send` group iteration (then one `flush`).
const SEND_RECORDS_PER_ITER: usize = 10_000;
const RAW_BUF_BYTES: usize = 256 << 10;
/// The producer's default `batch_size`, and the chunk the standalone codecs compress.
const BATCH_BYTES: usize = 64 << 10;
/// Records each thread sends (synchronously) per `synced` iteration. An fsync costs 0.1-10 ms on
/// the machines this runs on, so this keeps one iteration around 5-100 ms.
const SYNCED_RECORDS_PER_THREAD: usize = 32;
const SYNCED_THREADS: [usize; 3] = [1, 4, 16];
const BASELINE_THREADS: usize = 16;
/// Threads of the outbox case (issue 14: an outbox service waiting on each `Synced` send).
const OUTBOX_THREADS: usize = 4;
/// Large enough that no timed stretch rolls (a roll seals and fsyncs the segment).
const SEGMENT_BYTES: u64 = 1 << 30;
/// Most bytes one timed stretch may write before its topic (or file) is thrown away and a fresh
/// one started, untimed. Bounds disk use however many iterations criterion asks for.
const MAX_BYTES_PER_STRETCH: u64 = 256 << 20;
/// Upper bound of the bytes one record takes in a batch (key, value, record overhead).
const RECORD_BYTES_BOUND: u64 = (VALUE_LEN + 12 + 16) as u64;

fn topic_config() -> TopicConfig {
    TopicConfig::default().segment_bytes(SEGMENT_BYTES)
}

fn raw_bytes(r: &Record) -> Vec<u8> {
    let mut v = Vec::new();
    write_raw(&mut v, r).expect("write to vec");
    v
}

/// The uncompressed records sections of the batches the producer builds from the first
/// `SEND_RECORDS_PER_ITER` records of the cycle: a batch is closed, as in `Shared::send`, when
/// the next record (plus 12 bytes of slack) would take it past `BATCH_BYTES`.
fn producer_batches(records: &[Record]) -> Vec<Vec<u8>> {
    let now = 1_700_000_000_000;
    let mut out = Vec::new();
    let mut builder: Option<BatchBuilder> = None;
    let finish = |b: BatchBuilder, out: &mut Vec<Vec<u8>>| {
        let mut batch = Vec::new();
        b.finish_into(&mut batch).expect("finish batch");
        out.push(batch[HEADER_LEN..].to_vec());
    };
    for j in 0..SEND_RECORDS_PER_ITER {
        let r = &records[j % POOL];
        let size = r.encoded_len(0, 0) + 12;
        if builder
            .as_ref()
            .is_some_and(|b| b.uncompressed_len() + size > BATCH_BYTES)
        {
            finish(builder.take().expect("present"), &mut out);
        }
        builder
            .get_or_insert_with(|| {
                BatchBuilder::with_capacity(BatchOptions::default(), BATCH_BYTES)
            })
            .push(r, now)
            .expect("push");
    }
    if let Some(b) = builder {
        finish(b, &mut out);
    }
    out
}

fn lz4_frame_info() -> FrameInfo {
    // The frame layout the producer writes (Kafka's): 64 KiB independent blocks, no checksums.
    FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent)
        .block_checksums(false)
        .content_checksum(false)
        .content_size(None)
}

fn bench_send(c: &mut Criterion) {
    let records = make_records(POOL);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open log");
    let mut seq = 0u64;
    let n_per_iter = SEND_RECORDS_PER_ITER as u64;

    let mut group = c.benchmark_group("send");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(n_per_iter));

    for (codec_name, compression) in codecs() {
        group.bench_function(BenchmarkId::new("written", codec_name), |b| {
            b.iter_custom(|iters| {
                in_stretches(
                    MAX_BYTES_PER_STRETCH,
                    iters,
                    n_per_iter * RECORD_BYTES_BOUND,
                    |first, n| {
                        // A fresh topic and producer per stretch keep disk use bounded (a producer
                        // caches its topics, so it cannot outlive a deleted one).
                        seq += 1;
                        let topic = format!("send-{codec_name}-{seq}");
                        log.create_topic(&topic, topic_config())
                            .expect("create topic");
                        let producer = log
                            .producer(
                                ProducerConfig::default()
                                    .durability(Durability::Written)
                                    .compression(compression),
                            )
                            .expect("producer");

                        let start = Instant::now();
                        for i in first..first + n {
                            let base = (i * n_per_iter) as usize;
                            for j in 0..SEND_RECORDS_PER_ITER {
                                let record = records[(base + j) % POOL].clone();
                                black_box(producer.send(&topic, record).expect("send"));
                            }
                            producer.flush().expect("flush");
                        }
                        let elapsed = start.elapsed();

                        producer.close().expect("close producer");
                        drop(producer);
                        let p = log.partition(&topic, 0).expect("partition");
                        assert_eq!(p.high_watermark(), n * n_per_iter);
                        drop(p);
                        log.delete_topic(&topic).expect("delete topic");
                        elapsed
                    },
                )
            })
        });
    }

    group.bench_function("raw_file/buffered_write", |b| {
        b.iter_custom(|iters| {
            in_stretches(
                MAX_BYTES_PER_STRETCH,
                iters,
                n_per_iter * RECORD_BYTES_BOUND,
                |first, n| {
                    seq += 1;
                    let path = dir.path().join(format!("raw-{seq}.bin"));
                    let file = File::create(&path).expect("create raw file");

                    let start = Instant::now();
                    let mut w = BufWriter::with_capacity(RAW_BUF_BYTES, file);
                    for i in first..first + n {
                        let base = (i * n_per_iter) as usize;
                        for j in 0..SEND_RECORDS_PER_ITER {
                            write_raw(&mut w, &records[(base + j) % POOL]).expect("raw write");
                        }
                    }
                    w.flush().expect("flush");
                    let elapsed = start.elapsed();

                    drop(w);
                    std::fs::remove_file(&path).expect("remove raw file");
                    elapsed
                },
            )
        })
    });

    // SEND_RECORDS_PER_ITER is a multiple of POOL, so every iteration sends the same batches.
    assert_eq!(SEND_RECORDS_PER_ITER % POOL, 0);
    let batches = producer_batches(&records);
    let in_bytes: usize = batches.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(2 * BATCH_BYTES);
    for (codec_name, compression) in codecs() {
        if compression == Compression::None {
            continue;
        }
        let mut zstd = zstd::bulk::Compressor::new(3).expect("zstd compressor");
        let mut compress = |chunk: &[u8], out: &mut Vec<u8>| -> usize {
            out.clear();
            match compression {
                Compression::Lz4 => {
                    let mut enc = FrameEncoder::with_frame_info(lz4_frame_info(), &mut *out);
                    enc.write_all(chunk).expect("lz4 write");
                    enc.finish().expect("lz4 finish");
                }
                _ => {
                    out.reserve(zstd::compress_bound(chunk.len()));
                    zstd.compress_to_buffer(chunk, out).expect("zstd");
                }
            }
            out.len()
        };
        let out_bytes: usize = batches.iter().map(|b| compress(b, &mut out)).sum();
        eprintln!(
            "codec_standalone/{codec_name}: {} batches, {in_bytes} -> {out_bytes} bytes ({:.2}x) per iteration",
            batches.len(),
            in_bytes as f64 / out_bytes as f64
        );
        group.bench_function(BenchmarkId::new("codec_standalone", codec_name), |b| {
            b.iter(|| {
                let mut total = 0;
                for batch in &batches {
                    total += compress(batch, &mut out);
                    black_box(&out);
                }
                total
            })
        });
    }
    group.finish();
    log.close().expect("close log");
}

/// Per-record latencies in nanoseconds, sorted in place; prints p50 and p99.
fn report_latency(name: &str, lat: &mut [u64]) {
    if lat.is_empty() {
        return;
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1e3;
    eprintln!(
        "{name}: ack latency p50 {:.1} us, p99 {:.1} us, max {:.1} us ({} records)",
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1] as f64 / 1e3,
        lat.len()
    );
}

/// Runs `threads` threads, each calling `work(thread, iters)` (which returns the latencies it
/// measured), released together; returns the wall time from release until all finished, and
/// adds the latencies to `lat`.
fn run_threads(
    threads: usize,
    lat: &mut Vec<u64>,
    work: impl Fn(usize) -> Vec<u64> + Sync,
) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    barrier.wait();
                    work(t)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<Vec<u64>> = handles
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect();
        let elapsed = start.elapsed();
        for r in results {
            lat.extend(r);
        }
        elapsed
    })
}

fn bench_synced(c: &mut Criterion) {
    let records = make_records(POOL);
    let raw: Vec<Vec<u8>> = records.iter().map(raw_bytes).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open log");
    let k = SYNCED_RECORDS_PER_THREAD as u64;

    let mut group = c.benchmark_group("synced");
    // An iteration is milliseconds of fsyncs: flat sampling keeps the minimum number of
    // iterations at sample_size.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    // Linger 0 (the waiting thread's record goes out at once), then the outbox of issue 14: four
    // threads waiting on each send with the default linger, where waiting closes the batch.
    let default_linger = ProducerConfig::default().linger;
    let cases = SYNCED_THREADS
        .into_iter()
        .map(|t| (t.to_string(), t, Duration::ZERO))
        .chain([(
            format!("outbox_default_linger/{OUTBOX_THREADS}"),
            OUTBOX_THREADS,
            default_linger,
        )]);
    for (id, threads, linger) in cases {
        group.throughput(Throughput::Elements(threads as u64 * k));
        let topic = format!("synced-{}", id.replace('/', "-"));
        // Created lazily, so a filter that skips this benchmark also skips its setup.
        let mut producer = None;
        let mut lat = Vec::new();
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            let producer = producer.get_or_insert_with(|| {
                log.create_topic(&topic, topic_config())
                    .expect("create topic");
                log.producer(
                    ProducerConfig::default()
                        .durability(Durability::Synced)
                        .linger(linger),
                )
                .expect("producer")
            });
            let mut next = 0u64;
            b.iter_custom(|iters| {
                let per_thread = (iters * k) as usize;
                let first = next;
                next += iters * k * threads as u64;
                run_threads(threads, &mut lat, |t| {
                    let mut mine = Vec::with_capacity(per_thread);
                    let base = first as usize + t * per_thread;
                    for j in 0..per_thread {
                        let record = records[(base + j) % POOL].clone();
                        let sent = Instant::now();
                        let meta = producer
                            .send(&topic, record)
                            .expect("send")
                            .wait()
                            .expect("delivery");
                        mine.push(sent.elapsed().as_nanos() as u64);
                        black_box(meta);
                    }
                    mine
                })
            })
        });
        if let Some(p) = producer.take() {
            p.close().expect("close producer");
            let hw = log
                .partition(&topic, 0)
                .expect("partition")
                .high_watermark();
            assert_eq!(hw, lat.len() as u64);
            report_latency(&format!("synced/{id}"), &mut lat);
        }
    }

    // Baselines: plain files, one write + fdatasync per record.
    let baselines = [
        ("raw_fdatasync", 1usize),
        ("one_fsync_per_record", BASELINE_THREADS),
    ];
    for (name, threads) in baselines {
        group.throughput(Throughput::Elements(threads as u64 * k));
        let mut files: Vec<File> = Vec::new();
        let mut lat = Vec::new();
        group.bench_function(BenchmarkId::new(name, threads), |b| {
            if files.is_empty() {
                files = (0..threads)
                    .map(|t| {
                        File::create(dir.path().join(format!("{name}-{t}.bin")))
                            .expect("create baseline file")
                    })
                    .collect();
            }
            let files = &files;
            let mut next = 0u64;
            b.iter_custom(|iters| {
                let per_thread = (iters * k) as usize;
                let first = next;
                next += iters * k * threads as u64;
                let work = |t: usize| {
                    let mut mine = Vec::with_capacity(per_thread);
                    let mut f = &files[t];
                    let base = first as usize + t * per_thread;
                    for j in 0..per_thread {
                        let sent = Instant::now();
                        f.write_all(&raw[(base + j) % POOL]).expect("write");
                        f.sync_data().expect("fdatasync");
                        mine.push(sent.elapsed().as_nanos() as u64);
                    }
                    mine
                };
                if threads == 1 {
                    // No thread handoff for the single-writer baseline.
                    let start = Instant::now();
                    let mine = work(0);
                    let elapsed = start.elapsed();
                    lat.extend(mine);
                    elapsed
                } else {
                    run_threads(threads, &mut lat, work)
                }
            })
        });
        if !files.is_empty() {
            report_latency(&format!("synced/{name}/{threads}"), &mut lat);
        }
    }
    group.finish();
    log.close().expect("close log");
}

criterion_group!(benches, bench_send, bench_synced);
criterion_main!(benches);
