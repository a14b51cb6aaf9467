//! Storage-layer throughput: `Partition::append`, `Partition::read_into`, and the baseline the
//! append path is judged against (a plain buffered file write of the same records).
//!
//! ```text
//! cargo bench --bench partition                 # everything, ~1 minute after the build (2 cores)
//! cargo bench --bench partition -- --quick      # criterion's quick mode
//! cargo bench --bench partition -- read/        # one group
//! ```
//!
//! Benchmarks (all report records/s via `Throughput::Elements`):
//!
//! - `append/<codec>/batch_<n>`: `append` of `n` prebuilt records (12-byte key, 100-byte
//!   JSON-like value) per call, codecs none / lz4 / zstd (level 3). Every criterion sample
//!   (and warm-up round) writes into a fresh topic that is deleted afterwards, outside the
//!   timed region; a sample larger than 512 MiB is split into several such topics, so disk
//!   use stays below ~0.5 GB per benchmark whatever the iteration count. Segments are 1 GiB,
//!   so no segment roll (which fsyncs) lands inside a timed stretch.
//! - `raw_file/buffered_write`: the same 1000 records per iteration written as
//!   `u32 len | key | u32 len | value` through a 256 KiB `BufWriter` into a fresh plain file
//!   per sample (no fsync; split at 512 MiB like the appends); the final flush is inside the
//!   timed region. Compare with `append/none/batch_{100,1000}` (target: append >= 0.8x this).
//! - `read/<codec>`: a full sequential scan, with `read_into(offset, 1 MiB, &mut vec)` from
//!   offset 0 to the high watermark (clearing the vec between calls), of a partition
//!   pre-written with 1,000,000 records in batches of 1000 (target: >= 20 M records/s
//!   uncompressed). One iteration is one whole scan. `read/batches/<codec>` is the same scan
//!   through `read_batches` (borrowing batch views, records decoded while iterated, every key
//!   and value length touched).
//! - `format/encode/<codec>` and `format/decode/<codec>`: `encode_batch` of 1000 records into a
//!   reused buffer, and `decode_batch` of that batch, with no I/O, to tell the cost of the
//!   format layer from that of the file system.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use annals::format::{decode_batch, encode_batch, BatchOptions, BatchView};
use annals::{Compression, Log, Partition, Record, StoredRecord, TopicConfig};
use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

/// Distinct prebuilt records; batches cycle through them.
mod common;
use common::{codecs, in_stretches, make_records, scan_batches, write_raw, VALUE_LEN};

const POOL: usize = 1000;
const BATCH_SIZES: [usize; 3] = [1, 100, 1000];
/// Records per `raw_file/buffered_write` iteration.
const RAW_RECORDS_PER_ITER: usize = 1000;
const RAW_BUF_BYTES: usize = 256 << 10;
/// Records in each pre-written `read/<codec>` partition, and the batch size they are written in.
const READ_RECORDS: u64 = 1_000_000;
const READ_WRITE_BATCH: usize = 1000;
const READ_MAX_BYTES: usize = 1 << 20;
/// Large enough that no timed stretch rolls (a roll seals and fsyncs the segment).
const SEGMENT_BYTES: u64 = 1 << 30;
/// Most bytes one timed stretch may write before its topic (or file) is thrown away and a fresh
/// one started, untimed. Bounds disk use (and keeps every stretch inside one segment) however
/// many iterations criterion asks for, including in `--quick` mode.
const MAX_BYTES_PER_STRETCH: u64 = 512 << 20;
/// Upper bound of the bytes one record takes in a batch (key, value, record overhead).
const RECORD_BYTES_BOUND: u64 = (VALUE_LEN + 12 + 16) as u64;
/// Batch header size, for the same estimate.
const BATCH_HEADER_BYTES: u64 = 61;

fn topic_config(compression: Compression) -> TopicConfig {
    TopicConfig::default()
        .compression(compression)
        .segment_bytes(SEGMENT_BYTES)
}

fn bench_append(c: &mut Criterion) {
    let records = make_records(POOL);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open log");
    let mut seq = 0u64;
    let mut rolled = false;

    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (codec_name, compression) in codecs() {
        for batch in BATCH_SIZES {
            let chunks: Vec<&[Record]> = records.chunks(batch).collect();
            group.throughput(Throughput::Elements(batch as u64));
            let id = BenchmarkId::new(codec_name, format!("batch_{batch}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let bytes_per_iter = BATCH_HEADER_BYTES + batch as u64 * RECORD_BYTES_BOUND;
                    in_stretches(MAX_BYTES_PER_STRETCH, iters, bytes_per_iter, |first, n| {
                        // A fresh topic per stretch keeps disk use bounded.
                        seq += 1;
                        let topic = format!("append-{codec_name}-{batch}-{seq}");
                        log.create_topic(&topic, topic_config(compression))
                            .expect("create topic");
                        let p = log.partition(&topic, 0).expect("partition");

                        let start = Instant::now();
                        for i in first..first + n {
                            black_box(p.append(chunks[i as usize % chunks.len()]).expect("append"));
                        }
                        let elapsed = start.elapsed();

                        assert_eq!(p.high_watermark(), n * batch as u64);
                        if p.segment_count() > 1 && !rolled {
                            rolled = true;
                            eprintln!(
                                "note: {topic} rolled segments inside a timed stretch (an fsync)"
                            );
                        }
                        drop(p);
                        log.delete_topic(&topic).expect("delete topic");
                        elapsed
                    })
                })
            });
        }
    }
    group.finish();
    log.close().expect("close log");
}

fn bench_raw_file(c: &mut Criterion) {
    let records = make_records(POOL);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seq = 0u64;

    let mut group = c.benchmark_group("raw_file");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(RAW_RECORDS_PER_ITER as u64));
    group.bench_function("buffered_write", |b| {
        b.iter_custom(|iters| {
            let bytes_per_iter = RAW_RECORDS_PER_ITER as u64 * RECORD_BYTES_BOUND;
            in_stretches(MAX_BYTES_PER_STRETCH, iters, bytes_per_iter, |first, n| {
                seq += 1;
                let path = dir.path().join(format!("raw-{seq}.bin"));
                let file = File::create(&path).expect("create raw file");

                let start = Instant::now();
                let mut w = BufWriter::with_capacity(RAW_BUF_BYTES, file);
                for i in first as usize..(first + n) as usize {
                    for j in 0..RAW_RECORDS_PER_ITER {
                        write_raw(&mut w, &records[(i * RAW_RECORDS_PER_ITER + j) % POOL])
                            .expect("raw write");
                    }
                }
                w.flush().expect("flush");
                let elapsed = start.elapsed();

                drop(w);
                std::fs::remove_file(&path).expect("remove raw file");
                elapsed
            })
        })
    });
    group.finish();
}

/// Writes `READ_RECORDS` records in batches of `READ_WRITE_BATCH` into a new topic.
fn prewrite(log: &Log, topic: &str, compression: Compression, records: &[Record]) -> Partition {
    log.create_topic(topic, topic_config(compression))
        .expect("create topic");
    let p = log.partition(topic, 0).expect("partition");
    let chunks: Vec<&[Record]> = records.chunks(READ_WRITE_BATCH).collect();
    let mut written = 0u64;
    let mut i = 0;
    while written < READ_RECORDS {
        let chunk = chunks[i % chunks.len()];
        p.append(chunk).expect("append");
        written += chunk.len() as u64;
        i += 1;
    }
    // Settle the page cache so write-back does not run during the measurement.
    p.sync().expect("sync");
    p
}

/// Reads the whole partition front to back; returns the number of records seen.
fn scan(p: &Partition, out: &mut Vec<StoredRecord>) -> u64 {
    let hw = p.high_watermark();
    let mut offset = 0;
    let mut seen = 0u64;
    while offset < hw {
        out.clear();
        p.read_into(offset, READ_MAX_BYTES, out).expect("read");
        let last = out
            .last()
            .expect("a read below the high watermark returns records");
        offset = last.offset + 1;
        seen += out.len() as u64;
        black_box(&*out);
    }
    seen
}

/// `scan` through `read_batches`: iterates every record of every view, touching its key and
/// value lengths (the views decode nothing until iterated).
fn scan_views(p: &Partition, out: &mut Vec<BatchView>) -> u64 {
    let (seen, bytes) = scan_batches(p, READ_MAX_BYTES, out);
    black_box(bytes);
    seen
}

fn bench_read(c: &mut Criterion) {
    let records = make_records(POOL);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open log");

    let mut group = c.benchmark_group("read");
    // One iteration is a whole scan (tens to hundreds of ms): flat sampling keeps the minimum
    // number of iterations at sample_size instead of sample_size * (sample_size + 1) / 2.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(READ_RECORDS));
    for (codec_name, compression) in codecs() {
        // Written lazily, so a filter that skips this benchmark also skips its setup.
        let mut partition: Option<Partition> = None;
        let mut out = Vec::new();
        group.bench_function(codec_name, |b| {
            let p = partition.get_or_insert_with(|| {
                let p = prewrite(&log, &format!("read-{codec_name}"), compression, &records);
                assert_eq!(p.high_watermark(), READ_RECORDS);
                p
            });
            b.iter(|| {
                let seen = scan(p, &mut out);
                assert_eq!(seen, READ_RECORDS);
                seen
            })
        });
        let mut views = Vec::new();
        group.bench_function(format!("batches/{codec_name}"), |b| {
            let p = partition.get_or_insert_with(|| {
                prewrite(&log, &format!("read-{codec_name}"), compression, &records)
            });
            b.iter(|| {
                let seen = scan_views(p, &mut views);
                assert_eq!(seen, READ_RECORDS);
                seen
            })
        });
        if let Some(p) = partition.take() {
            eprintln!(
                "read/{codec_name}: {} records in {} batches, {:.1} MB on disk",
                p.high_watermark(),
                READ_RECORDS / READ_WRITE_BATCH as u64,
                p.size_bytes() as f64 / 1e6
            );
        }
    }
    group.finish();
    log.close().expect("close log");
}

fn bench_format(c: &mut Criterion) {
    let records = make_records(READ_WRITE_BATCH);
    let mut group = c.benchmark_group("format");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(records.len() as u64));
    for (codec_name, compression) in codecs() {
        let options = BatchOptions {
            compression,
            ..BatchOptions::default()
        };
        let mut buf = Vec::new();
        group.bench_function(BenchmarkId::new("encode", codec_name), |b| {
            b.iter(|| {
                buf.clear();
                encode_batch(&mut buf, &options, &records, 1_700_000_000_000).expect("encode");
                black_box(buf.len())
            })
        });
        let batch = Bytes::from(buf);
        let mut out = Vec::with_capacity(records.len());
        group.bench_function(BenchmarkId::new("decode", codec_name), |b| {
            b.iter(|| {
                out.clear();
                decode_batch(&batch, 0, 64 << 20, &mut out).expect("decode");
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_append,
    bench_raw_file,
    bench_read,
    bench_format
);
criterion_main!(benches);
