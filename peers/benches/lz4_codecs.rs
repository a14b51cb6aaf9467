//! lz4_flex (pure Rust, annals' LZ4 codec) against the C LZ4 library (the `lz4` crate, which
//! builds the bundled C source) on the bytes annals compresses: the records sections of real
//! batches, in Kafka's LZ4 frame layout (64 KiB independent blocks, no checksums). Issue 13 asks
//! to choose the codec by these numbers.
//!
//! ```text
//! cargo bench -p annals-peers --bench lz4_codecs
//! ```
//!
//! Two inputs: producer-sized batches (64 KiB of 12-byte keys and ~90-byte JSON values, as
//! `Producer::send` fills them) and W4's batches of 1000 records with 1 KiB values. Each is
//! compressed by both libraries at their default (fast) level and decompressed by both; at set-up
//! every frame is checked to decode, with the other library too, to the same bytes. Throughput is
//! of uncompressed bytes.

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use annals::format::{encode_batch, BatchOptions, HEADER_LEN};
use annals::Record;
use annals_peers::common::{make_records, make_records_len};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

/// A producer batch's records section holds at most this much (the default batch size).
const PRODUCER_BATCH_BYTES: usize = 64 * 1024;

/// The records sections of batches of `records`, `per_batch` records each.
fn sections(records: &[Record], per_batch: usize) -> Vec<Vec<u8>> {
    records
        .chunks(per_batch)
        .map(|chunk| {
            let mut batch = Vec::new();
            encode_batch(
                &mut batch,
                &BatchOptions::default(),
                chunk,
                1_700_000_000_000,
            )
            .expect("encode batch");
            batch.split_off(HEADER_LEN)
        })
        .collect()
}

/// Records of ~100 bytes, as many to a batch as fill a producer's 64 KiB.
fn producer_sections() -> Vec<Vec<u8>> {
    let records = make_records(10_000);
    let one = sections(&records[..1], 1)[0].len();
    sections(&records, PRODUCER_BATCH_BYTES / one)
}

fn flex_compress(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let info = FrameInfo::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent)
        .block_checksums(false)
        .content_checksum(false)
        .content_size(None);
    let mut encoder = FrameEncoder::with_frame_info(info, &mut *out);
    encoder.write_all(data).expect("lz4_flex write");
    encoder.finish().expect("lz4_flex finish");
}

fn c_compress(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut encoder = lz4::EncoderBuilder::new()
        .block_size(lz4::BlockSize::Max64KB)
        .block_mode(lz4::BlockMode::Independent)
        .checksum(lz4::ContentChecksum::NoChecksum)
        .build(&mut *out)
        .expect("lz4 encoder");
    encoder.write_all(data).expect("lz4 write");
    let (_, result) = encoder.finish();
    result.expect("lz4 finish");
}

fn flex_decompress(frame: &[u8], out: &mut Vec<u8>) {
    out.clear();
    FrameDecoder::new(frame)
        .read_to_end(out)
        .expect("lz4_flex decode");
}

fn c_decompress(frame: &[u8], out: &mut Vec<u8>) {
    out.clear();
    lz4::Decoder::new(frame)
        .expect("lz4 decoder")
        .read_to_end(out)
        .expect("lz4 decode");
}

type Codec = fn(&[u8], &mut Vec<u8>);
const COMPRESSORS: [(&str, Codec); 2] = [("lz4_flex", flex_compress), ("c_lz4", c_compress)];
const DECOMPRESSORS: [(&str, Codec); 2] = [("lz4_flex", flex_decompress), ("c_lz4", c_decompress)];

fn bench_input(c: &mut Criterion, input: &str, sections: &[Vec<u8>]) {
    let bytes: usize = sections.iter().map(Vec::len).sum();
    let mut frames = Vec::new();
    let mut out = Vec::new();
    for (name, compress) in COMPRESSORS {
        let mine: Vec<Vec<u8>> = sections
            .iter()
            .map(|s| {
                compress(s, &mut out);
                out.clone()
            })
            .collect();
        for (frame, section) in mine.iter().zip(sections) {
            for (reader, decompress) in DECOMPRESSORS {
                decompress(frame, &mut out);
                assert!(
                    out == *section,
                    "{reader} decodes {name}'s frame to other bytes"
                );
            }
        }
        let compressed: usize = mine.iter().map(Vec::len).sum();
        eprintln!(
            "{input}/{name}: {} sections, {bytes} -> {compressed} bytes ({:.2}x)",
            sections.len(),
            bytes as f64 / compressed as f64
        );
        frames.push((name, mine));
    }

    let mut group = c.benchmark_group(format!("lz4_{input}"));
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(bytes as u64));
    for (name, compress) in COMPRESSORS {
        group.bench_function(BenchmarkId::new("compress", name), |b| {
            b.iter(|| {
                for section in sections {
                    compress(section, &mut out);
                    black_box(&out);
                }
            })
        });
    }
    // Each library decompresses the frames it wrote itself.
    for ((name, decompress), (_, mine)) in DECOMPRESSORS.into_iter().zip(&frames) {
        group.bench_function(BenchmarkId::new("decompress", name), |b| {
            b.iter(|| {
                for frame in mine {
                    decompress(frame, &mut out);
                    black_box(&out);
                }
            })
        });
    }
    group.finish();
}

fn bench_lz4(c: &mut Criterion) {
    bench_input(c, "producer_batches", &producer_sections());
    bench_input(
        c,
        "w4_batches",
        &sections(&make_records_len(20_000, 1024), 1000),
    );
}

criterion_group!(benches, bench_lz4);
criterion_main!(benches);
