//! Property tests: arbitrary records round-trip through every codec, and no input, however
//! mangled, makes the decoder panic.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::header::compute_crc;
use super::record::{Header, Record, StoredRecord};
use super::*;

const MIB: usize = 1 << 20;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn header() -> impl Strategy<Value = Header> {
    // Any Unicode key, including the empty string; null and empty values.
    (".{0,8}", option::of(bytes(16))).prop_map(|(key, value)| Header { key, value })
}

fn record() -> impl Strategy<Value = Record> {
    (
        option::of(bytes(24)),
        option::of(bytes(64)),
        vec(header(), 0..4),
    )
        .prop_map(|(key, value, headers)| Record {
            key,
            value,
            headers,
            timestamp: None,
        })
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Lz4),
        (1..=5i32).prop_map(|level| Compression::Zstd { level }),
    ]
}

/// Small timestamps, huge ones and everything between, in any order.
fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        0..2_000i64,
        1_600_000_000_000..1_800_000_000_000i64,
        0..=i64::MAX
    ]
}

fn build(options: BatchOptions, records: &[(Record, i64)]) -> Bytes {
    let mut builder = BatchBuilder::new(options);
    for (record, timestamp) in records {
        let before = builder.uncompressed_len();
        builder.push(record, *timestamp).unwrap();
        let delta = timestamp - records[0].1;
        let offset_delta = builder.record_count() as i32 - 1;
        assert_eq!(
            builder.uncompressed_len() - before,
            record_encoded_len(record, delta, offset_delta)
        );
    }
    let mut out = Vec::new();
    builder.finish_into(&mut out).unwrap();
    Bytes::from(out)
}

/// Fixes the length field and CRC so a mangled batch reaches the record decoder.
fn reseal(batch: &mut [u8]) {
    if batch.len() < HEADER_LEN {
        return;
    }
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// What any successful decode must satisfy, whatever the input.
fn check_decoded(header: &BatchHeader, records: &[StoredRecord], from_offset: u64) {
    assert!(records.len() <= header.record_count as usize);
    for pair in records.windows(2) {
        assert!(pair[0].offset < pair[1].offset);
    }
    for r in records {
        assert!(r.offset >= from_offset && r.offset >= header.base_offset);
        assert!(r.offset <= header.last_offset());
    }
}

proptest! {
    #[test]
    fn round_trip(
        records in vec((record(), timestamp()), 1..20),
        compression in compression(),
        base_offset in prop_oneof![0..1_000u64, 0..(i64::MAX as u64 - 100)],
        skip in 0..25u64,
        log_append in any::<bool>(),
        producer in any::<(i64, i16, i32)>(),
    ) {
        let options = BatchOptions {
            base_offset,
            compression,
            timestamp_type: if log_append {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            producer_id: producer.0,
            producer_epoch: producer.1,
            base_sequence: producer.2,
            ..BatchOptions::default()
        };
        let batch = build(options, &records);
        verify_crc(&batch).unwrap();
        let from_offset = base_offset + skip;
        let mut out = Vec::new();
        let header = decode_batch(&batch, from_offset, MIB, &mut out).unwrap();
        prop_assert_eq!(header.record_count as usize, records.len());
        prop_assert_eq!(header.compression().unwrap().codec_id(), compression.codec_id());
        let producer_fields = (header.producer_id, header.producer_epoch, header.base_sequence);
        prop_assert_eq!(producer_fields, producer);
        let max_timestamp = records.iter().map(|r| r.1).max().unwrap();
        prop_assert_eq!(header.max_timestamp, max_timestamp);
        prop_assert_eq!(header.base_timestamp, records[0].1);

        let expected: Vec<_> = records
            .iter()
            .enumerate()
            .filter(|(i, _)| base_offset + *i as u64 >= from_offset)
            .collect();
        prop_assert_eq!(out.len(), expected.len());
        for (got, (i, (want, timestamp))) in out.iter().zip(expected) {
            prop_assert_eq!(got.offset, base_offset + i as u64);
            prop_assert_eq!(got.timestamp, if log_append { max_timestamp } else { *timestamp });
            prop_assert_eq!(&got.key, &want.key);
            prop_assert_eq!(&got.value, &want.value);
            prop_assert_eq!(&got.headers, &want.headers);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..300), from_offset in any::<u64>()) {
        let data = Bytes::from(data);
        let _ = BatchHeader::parse(&data);
        let _ = peek_batch_len(&data);
        let _ = verify_crc(&data);
        let mut out = Vec::new();
        if let Ok(header) = decode_batch(&data, from_offset, MIB, &mut out) {
            check_decoded(&header, &out, from_offset);
        }
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_header_never_panic(
        tail in vec(any::<u8>(), 0..300),
        count in 0..40i32,
        last_delta in 0..40i32,
        attributes in any::<i16>(),
        from_offset in 0..50u64,
    ) {
        let mut batch = vec![0u8; HEADER_LEN];
        batch[16] = MAGIC_V2 as u8;
        batch[21..23].copy_from_slice(&attributes.to_be_bytes());
        batch[23..27].copy_from_slice(&last_delta.to_be_bytes());
        batch[57..61].copy_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&tail);
        reseal(&mut batch);
        let batch = Bytes::from(batch);
        let mut out = Vec::new();
        if let Ok(header) = decode_batch(&batch, from_offset, MIB, &mut out) {
            check_decoded(&header, &out, from_offset);
        }
    }

    #[test]
    fn mangled_batches_never_panic(
        records in vec((record(), 0..5_000i64), 1..6),
        compression in compression(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in option::of(any::<prop::sample::Index>()),
    ) {
        let options = BatchOptions { compression, ..BatchOptions::default() };
        let mut batch = build(options, &records).to_vec();
        // Edit only past the CRC field so the resealed batch reaches the record decoder.
        let body = HEADER_LEN - 40..batch.len();
        for (at, value) in edits {
            let at = body.start + at.index(body.len());
            batch[at] = value;
        }
        if let Some(cut) = cut {
            batch.truncate(HEADER_LEN + cut.index(batch.len() - HEADER_LEN + 1));
        }
        reseal(&mut batch);
        let batch = Bytes::from(batch);
        let mut out = Vec::new();
        if let Ok(header) = decode_batch(&batch, 0, MIB, &mut out) {
            check_decoded(&header, &out, 0);
        }
    }
}

/// Keys and values of every varint length class up to three bytes, and none.
fn payload() -> impl Strategy<Value = Option<Bytes>> {
    option::of(prop_oneof![
        4 => bytes(24),
        2 => bytes(300),
        1 => vec(any::<u8>(), 16_380..16_400).prop_map(Bytes::from),
    ])
}

/// Mostly plain records (no headers), some with headers, with and without their own timestamp,
/// including timestamps that `push` refuses (negative) or writes the long way (deltas of more
/// than 8 varint bytes).
fn mixed_record() -> impl Strategy<Value = Record> {
    (
        payload(),
        payload(),
        prop_oneof![4 => Just(Vec::new()), 1 => vec(header(), 1..3)],
        option::of(prop_oneof![
            8 => 1_700_000_000_000..1_700_000_100_000i64,
            1 => 0..=i64::MAX,
            1 => Just(-3i64),
        ]),
    )
        .prop_map(|(key, value, headers, timestamp)| Record {
            key,
            value,
            headers,
            timestamp,
        })
}

proptest! {
    /// `encode_batch` (which writes runs of plain records in one go) gives the bytes, or the
    /// error, that pushing the records one at a time gives.
    #[test]
    fn encode_batch_matches_pushing_one_at_a_time(
        records in vec(mixed_record(), 1..40),
        compression in compression(),
        prefix in vec(any::<u8>(), 0..3),
        base_offset in 0..1_000u64,
    ) {
        let options = BatchOptions { base_offset, compression, ..BatchOptions::default() };
        let default_timestamp = 1_700_000_050_000;
        let mut fast = prefix.clone();
        let fast_result = encode_batch(&mut fast, &options, &records, default_timestamp);

        let mut builder = BatchBuilder::new(options);
        let mut slow = prefix.clone();
        let slow_result = records
            .iter()
            .try_for_each(|r| builder.push(r, r.timestamp.unwrap_or(default_timestamp)))
            .and_then(|()| builder.finish_into(&mut slow));
        match (fast_result, slow_result) {
            (Ok(fast_header), Ok(slow_header)) => {
                prop_assert_eq!(fast_header, slow_header);
                prop_assert_eq!(fast, slow);
            }
            (Err(fast_error), Err(slow_error)) => {
                prop_assert_eq!(fast_error.to_string(), slow_error.to_string());
                prop_assert_eq!(&fast, &prefix, "a failed encode leaves `out` as it was");
            }
            (fast, slow) => prop_assert!(false, "encode_batch {fast:?}, one at a time {slow:?}"),
        }
    }
}
