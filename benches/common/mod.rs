//! What the benches share (these and, included by path, the peers' in `peers/`): the records they
//! measure, the raw-file baseline's record layout, and
//! splitting long runs so disk use stays bounded.
#![allow(dead_code)] // each bench uses its own subset

use std::io::Write;
use std::time::Duration;

use annals::{Compression, Record};
use bytes::Bytes;

/// Value size of the benchmark records.
pub const VALUE_LEN: usize = 100;

pub fn codecs() -> [(&'static str, Compression); 3] {
    [
        ("none", Compression::None),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd { level: 3 }),
    ]
}

/// Deterministic xorshift, so every run benchmarks the same bytes.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `n` records with 12-byte keys (`user-0001234`) and exactly 100-byte small-JSON values whose
/// numbers and words vary the way real events do (so compression ratios are realistic, not the
/// best case of identical records).
pub fn make_records(n: usize) -> Vec<Record> {
    make_records_len(n, VALUE_LEN)
}

/// Like [`make_records`] with values of exactly `value_len` bytes. From 256 bytes up the value
/// also carries an `"items"` array of small order lines (repeated field names, varying numbers),
/// the shape of a larger event, before the random padding. At `VALUE_LEN` the bytes are the
/// same as `make_records` has always produced, so older bench results stay comparable.
pub fn make_records_len(n: usize, value_len: usize) -> Vec<Record> {
    const EVENTS: [&str; 6] = ["click", "view", "purchase", "signup", "logout", "search"];
    const PAD: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    /// `],"t":"`, at least 8 padding bytes, and the closing `"}`.
    const ITEMS_TAIL: usize = 7 + 8 + 2;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let user = rng.below(10_000_000);
            let key = format!("user-{user:07}");
            assert_eq!(key.len(), 12);
            let mut value = format!(
                r#"{{"id":{},"u":"{}","ev":"{}","amt":{},"ts":{},"ok":{},"#,
                1_000_000 + i,
                key,
                EVENTS[rng.below(EVENTS.len() as u64) as usize],
                rng.below(10_000),
                1_700_000_000_000u64 + rng.below(86_400_000),
                rng.below(2) == 0,
            )
            .into_bytes();
            if value_len >= 256 {
                value.extend_from_slice(b"\"items\":[");
                let mut sep = "";
                loop {
                    let item = format!(
                        r#"{sep}{{"sku":"SKU-{:05}","qty":{},"p":{}}}"#,
                        rng.below(100_000),
                        1 + rng.below(9),
                        rng.below(100_000),
                    );
                    if value.len() + item.len() + ITEMS_TAIL > value_len {
                        break;
                    }
                    value.extend_from_slice(item.as_bytes());
                    sep = ",";
                }
                value.extend_from_slice(b"],");
            }
            value.extend_from_slice(br#""t":""#);
            // Pad the "t" string so the value is exactly value_len bytes with its `"}`.
            assert!(
                value.len() + 2 <= value_len,
                "value template too long: {}",
                value.len()
            );
            while value.len() < value_len - 2 {
                value.push(PAD[rng.below(PAD.len() as u64) as usize]);
            }
            value.extend_from_slice(b"\"}");
            assert_eq!(value.len(), value_len);
            Record::new(Bytes::from(value)).key(Bytes::from(key))
        })
        .collect()
}

/// Runs `iters` iterations as consecutive stretches of at most `max_bytes_per_stretch` bytes
/// (at `bytes_per_iter` each): `stretch(first_iter, n_iters)` sets up, times and cleans up one
/// stretch and returns only its timed part. Returns the total timed duration.
pub fn in_stretches(
    max_bytes_per_stretch: u64,
    iters: u64,
    bytes_per_iter: u64,
    mut stretch: impl FnMut(u64, u64) -> Duration,
) -> Duration {
    let per_stretch = (max_bytes_per_stretch / bytes_per_iter.max(1)).max(1);
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = per_stretch.min(iters - done);
        total += stretch(done, n);
        done += n;
    }
    total
}

/// One record as the baseline writes it: `u32 len | key | u32 len | value`.
pub fn write_raw(w: &mut impl Write, r: &Record) -> std::io::Result<()> {
    let key = r.key.as_deref().unwrap_or(&[]);
    let value = r.value.as_deref().unwrap_or(&[]);
    w.write_all(&(key.len() as u32).to_be_bytes())?;
    w.write_all(key)?;
    w.write_all(&(value.len() as u32).to_be_bytes())?;
    w.write_all(value)
}

/// Reads `p` from offset 0 to its high watermark with `read_batches` (`max_bytes` per read),
/// touching every record's key and value; returns (records, payload bytes).
pub fn scan_batches(
    p: &annals::Partition,
    max_bytes: usize,
    out: &mut Vec<annals::format::BatchView>,
) -> (u64, usize) {
    let hw = p.high_watermark();
    let (mut offset, mut seen, mut bytes) = (0u64, 0u64, 0usize);
    while offset < hw {
        out.clear();
        p.read_batches(offset, max_bytes, out).expect("read");
        for view in out.iter() {
            for r in view.records() {
                let r = r.expect("valid record");
                bytes += r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len);
                seen += 1;
            }
        }
        offset = out.last().expect("a batch below the hw").next_offset();
    }
    (seen, bytes)
}
