//! Unit tests of encoding, decoding and header handling, including hand-built malformed batches.

use bytes::Bytes;

use super::header::compute_crc;
use super::record::{Header, Record, StoredRecord};
use super::varint::{put_varint, put_varlong};
use super::*;
use crate::error::Error;

const MIB: usize = 1 << 20;
const CODECS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::zstd()];

fn options(compression: Compression) -> BatchOptions {
    BatchOptions {
        base_offset: 100,
        compression,
        ..BatchOptions::default()
    }
}

fn sample_records() -> Vec<Record> {
    vec![
        Record::new("v0").key("k0").timestamp(1_700_000_000_000),
        Record::tombstone("k1").timestamp(1_699_999_999_000),
        Record {
            key: None,
            value: Some(Bytes::new()),
            headers: vec![
                Header::new("trace", "abc"),
                Header {
                    key: "nil".into(),
                    value: None,
                },
                Header::new("ключ", ""),
            ],
            timestamp: None,
        },
    ]
}

fn encode(compression: Compression, records: &[Record]) -> Bytes {
    let mut out = Vec::new();
    encode_batch(&mut out, &options(compression), records, 1_700_000_000_500).unwrap();
    Bytes::from(out)
}

fn decode(batch: &Bytes, from_offset: u64) -> Result<Vec<StoredRecord>> {
    let mut out = Vec::new();
    decode_batch(batch, from_offset, MIB, &mut out)?;
    Ok(out)
}

fn is_invalid(result: &Result<impl std::fmt::Debug>) -> bool {
    matches!(result, Err(Error::InvalidBatch { .. }))
}

/// Recomputes the length field and CRC after a test edited a batch by hand.
fn reseal(batch: &mut [u8]) {
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// One record's bytes, written field by field independently of the builder.
fn raw_record(offset_delta: i32, key_len: i32, body: &[u8], header_count: i32) -> Vec<u8> {
    let mut fields = vec![0u8];
    put_varlong(&mut fields, 0);
    put_varint(&mut fields, offset_delta);
    put_varint(&mut fields, key_len);
    fields.extend_from_slice(body);
    put_varint(&mut fields, header_count);
    let mut rec = Vec::new();
    put_varint(&mut rec, fields.len() as i32);
    rec.extend_from_slice(&fields);
    rec
}

/// A null-key, null-value record at `offset_delta`.
fn plain_record(offset_delta: i32) -> Vec<u8> {
    let mut value = Vec::new();
    put_varint(&mut value, -1);
    raw_record(offset_delta, -1, &value, 0)
}

/// A batch around hand-written records, with the given header counts.
fn raw_batch(records: &[Vec<u8>], record_count: i32, last_offset_delta: i32) -> Bytes {
    let mut batch = vec![0u8; HEADER_LEN];
    batch[16] = 2;
    batch[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    batch[57..61].copy_from_slice(&record_count.to_be_bytes());
    for r in records {
        batch.extend_from_slice(r);
    }
    reseal(&mut batch);
    Bytes::from(batch)
}

#[test]
fn round_trip_every_codec() {
    let records = sample_records();
    for compression in CODECS {
        let batch = encode(compression, &records);
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.compression().unwrap(), compression);
        assert_eq!(header.base_offset, 100);
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset(), 102);
        assert_eq!(header.next_offset(), 103);
        assert_eq!(header.total_len(), batch.len());
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
        assert_eq!(header.max_timestamp, 1_700_000_000_500);
        assert_eq!(header.producer_id, NO_PRODUCER_ID);
        verify_crc(&batch).unwrap();

        let decoded = decode(&batch, 0).unwrap();
        assert_eq!(decoded.len(), 3);
        let timestamps = [1_700_000_000_000, 1_699_999_999_000, 1_700_000_000_500];
        for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
            assert_eq!(got.offset, 100 + i as u64);
            assert_eq!(got.timestamp, timestamps[i]);
            assert_eq!(got.key, want.key);
            assert_eq!(got.value, want.value);
            assert_eq!(got.headers, want.headers);
        }
    }
}

#[test]
fn uncompressed_values_are_slices_of_the_batch() {
    let batch = encode(Compression::None, &sample_records());
    let decoded = decode(&batch, 0).unwrap();
    let value = decoded[0].value.as_ref().unwrap();
    let range = batch.as_ptr() as usize..batch.as_ptr() as usize + batch.len();
    assert!(
        range.contains(&(value.as_ptr() as usize)),
        "value was copied"
    );
}

#[test]
fn from_offset_filters() {
    let records = sample_records();
    for compression in CODECS {
        let batch = encode(compression, &records);
        let offsets = |from| {
            decode(&batch, from)
                .unwrap()
                .iter()
                .map(|r| r.offset)
                .collect::<Vec<_>>()
        };
        assert_eq!(offsets(0), [100, 101, 102]);
        assert_eq!(offsets(101), [101, 102]);
        assert_eq!(offsets(102), [102]);
        assert!(offsets(103).is_empty());
    }
}

#[test]
fn header_fields_round_trip() {
    let opts = BatchOptions {
        base_offset: 7,
        compression: Compression::Lz4,
        timestamp_type: TimestampType::LogAppendTime,
        partition_leader_epoch: 12,
        producer_id: 4242,
        producer_epoch: 3,
        base_sequence: 99,
        transactional: true,
        control: true,
    };
    let mut out = vec![1, 2, 3];
    let header = encode_batch(&mut out, &opts, &[Record::new("x").timestamp(5)], 0).unwrap();
    assert_eq!(&out[..3], &[1, 2, 3], "encode_batch appends");
    let parsed = BatchHeader::parse(&out[3..]).unwrap();
    assert_eq!(parsed, header);
    assert_eq!(parsed.partition_leader_epoch, 12);
    assert_eq!(
        (
            parsed.producer_id,
            parsed.producer_epoch,
            parsed.base_sequence
        ),
        (4242, 3, 99)
    );
    assert!(parsed.is_transactional() && parsed.is_control());
    assert_eq!(parsed.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(parsed.codec_id(), 3);
}

#[test]
fn parse_rejects_bad_headers() {
    let good = encode(Compression::None, &sample_records()).to_vec();
    assert!(BatchHeader::parse(&good).is_ok());
    assert!(is_invalid(&BatchHeader::parse(&good[..HEADER_LEN - 1])));
    assert!(is_invalid(&BatchHeader::parse(&[])));

    let edit = |at: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        BatchHeader::parse(&b)
    };
    assert!(is_invalid(&edit(16, &[1])), "magic 1");
    assert!(is_invalid(&edit(16, &[3])), "magic 3");
    assert!(
        is_invalid(&edit(8, &(-1i32).to_be_bytes())),
        "negative length"
    );
    assert!(
        is_invalid(&edit(8, &48i32.to_be_bytes())),
        "length below a header"
    );
    assert!(
        edit(8, &49i32.to_be_bytes()).is_ok(),
        "an empty batch's length"
    );
    assert!(
        is_invalid(&edit(0, &(-1i64).to_be_bytes())),
        "negative base offset"
    );
    assert!(
        is_invalid(&edit(23, &(-1i32).to_be_bytes())),
        "negative last offset delta"
    );
    assert!(
        is_invalid(&edit(57, &(-1i32).to_be_bytes())),
        "negative record count"
    );
}

#[test]
fn peek_batch_len_cases() {
    let good = encode(Compression::None, &sample_records());
    assert_eq!(peek_batch_len(&good).unwrap(), Some(good.len()));
    assert_eq!(
        peek_batch_len(&good[..LOG_OVERHEAD]).unwrap(),
        Some(good.len())
    );
    assert_eq!(peek_batch_len(&good[..LOG_OVERHEAD - 1]).unwrap(), None);
    assert_eq!(peek_batch_len(&[]).unwrap(), None);
    let mut bad = good.to_vec();
    bad[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(is_invalid(&peek_batch_len(&bad)));
    bad[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(is_invalid(&peek_batch_len(&bad)));
}

#[test]
fn crc_mismatch_is_detected() {
    let good = encode(Compression::None, &sample_records());
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    assert!(is_invalid(&verify_crc(&bad)));
    let err = decode(&Bytes::from(bad), 0).unwrap_err();
    assert!(err.to_string().contains("CRC"), "{err}");
    // A batch given with extra or missing bytes is not "one whole batch".
    let mut longer = good.to_vec();
    longer.push(0);
    assert!(is_invalid(&verify_crc(&longer)));
    assert!(is_invalid(&verify_crc(&good[..good.len() - 1])));
}

#[test]
fn every_byte_flip_is_caught_or_harmless() {
    let records = sample_records();
    for compression in CODECS {
        let good = encode(compression, &records);
        let expected = decode(&good, 0).unwrap();
        for at in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bytes = good.to_vec();
                bytes[at] ^= mask;
                let result = decode(&Bytes::from(bytes), 0);
                match at {
                    // Base offset: outside the CRC. Either still valid (records shift) or negative.
                    0..=7 => match result {
                        Ok(got) => {
                            assert_eq!(got.len(), expected.len());
                            assert_ne!(got[0].offset, expected[0].offset, "offset byte {at}");
                        }
                        Err(e) => assert!(matches!(e, Error::InvalidBatch { .. })),
                    },
                    // Partition leader epoch: outside the CRC and irrelevant to the records.
                    12..=15 => assert_eq!(result.unwrap(), expected, "epoch byte {at}"),
                    // Length, magic, CRC and everything the CRC covers.
                    _ => assert!(
                        result.is_err(),
                        "{compression:?}: flip {mask:#x} at {at} went unnoticed"
                    ),
                }
            }
        }
    }
}

#[test]
fn truncations_never_panic_and_fail() {
    for compression in CODECS {
        let good = encode(compression, &sample_records());
        for len in 0..good.len() {
            assert!(
                decode(&good.slice(..len), 0).is_err(),
                "{compression:?} truncated to {len}"
            );
        }
    }
}

#[test]
fn unsupported_codecs_are_reported() {
    let good = encode(Compression::None, &sample_records()).to_vec();
    for codec in [1u8, 2, 5, 6, 7] {
        let mut bytes = good.clone();
        bytes[22] = (bytes[22] & !0x07) | codec;
        reseal(&mut bytes);
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.codec_id(), codec);
        let unsupported = header.compression().unwrap_err();
        assert!(matches!(unsupported, Error::UnsupportedCompression { codec: c } if c == codec));
        let err = decode(&Bytes::from(bytes), 0).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedCompression { codec: c } if c == codec),
            "{err}"
        );
    }
}

#[test]
fn decompression_bombs_are_rejected() {
    let bomb = [Record::new(vec![0u8; 16 * MIB])];
    for compression in [Compression::Lz4, Compression::zstd()] {
        let batch = encode(compression, &bomb);
        assert!(
            batch.len() < MIB / 8,
            "{compression:?} did not compress the bomb"
        );
        let mut out = Vec::new();
        let result = decode_batch(&batch, 0, MIB, &mut out);
        assert!(is_invalid(&result), "{compression:?}: {result:?}");
        assert!(out.is_empty());
        // With room for it, the same batch decodes.
        decode_batch(&batch, 0, 17 * MIB, &mut out).unwrap();
        assert_eq!(out[0].value.as_ref().unwrap().len(), 16 * MIB);
    }
}

#[test]
fn set_base_offset_keeps_the_crc() {
    let mut bytes = encode(Compression::Lz4, &sample_records()).to_vec();
    set_base_offset(&mut bytes, 5_000);
    verify_crc(&bytes).unwrap();
    let offsets: Vec<u64> = decode(&Bytes::from(bytes), 0)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, [5_000, 5_001, 5_002]);
    set_base_offset(&mut [0u8; 3], 1); // too short: left alone, no panic
}

#[test]
fn set_log_append_time_rewrites_timestamps() {
    for compression in CODECS {
        let mut bytes = encode(compression, &sample_records()).to_vec();
        set_log_append_time(&mut bytes, 42);
        verify_crc(&bytes).unwrap();
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, 42);
        assert_eq!(header.compression().unwrap(), compression);
        let decoded = decode(&Bytes::from(bytes), 0).unwrap();
        assert!(decoded.iter().all(|r| r.timestamp == 42));
    }
    set_log_append_time(&mut [0u8; 20], 1); // too short: left alone, no panic
}

#[test]
fn builder_accounting() {
    let records = sample_records();
    let mut builder = BatchBuilder::new(BatchOptions::default());
    assert!(builder.is_empty());
    assert_eq!(builder.uncompressed_len(), HEADER_LEN);
    let base = 1_000;
    for (i, record) in records.iter().enumerate() {
        let timestamp = base + 10 - 7 * i as i64; // later records earlier: negative deltas
        let before = builder.uncompressed_len();
        builder.push(record, timestamp).unwrap();
        let delta = timestamp - (base + 10);
        assert_eq!(
            builder.uncompressed_len() - before,
            record_encoded_len(record, delta, i as i32)
        );
        assert_eq!(
            record.encoded_len(delta, i as i32),
            record_encoded_len(record, delta, i as i32)
        );
    }
    assert!(!builder.is_empty());
    assert_eq!(builder.record_count(), 3);
    let expected_len = builder.uncompressed_len();
    let mut out = Vec::new();
    let header = builder.finish_into(&mut out).unwrap();
    assert_eq!(out.len(), expected_len);
    assert_eq!(header.max_timestamp, base + 10);
    assert_eq!(header.base_timestamp, base + 10);
    let decoded = decode(&Bytes::from(out), 0).unwrap();
    assert_eq!(decoded[2].timestamp, base + 10 - 14);
}

#[test]
fn builder_rejects_bad_input() {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    assert!(matches!(
        builder.push(&Record::new("x"), -1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(builder.is_empty(), "a failed push must not count");
    let mut out = vec![9];
    assert!(matches!(
        builder.clone().finish_into(&mut out),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        encode_batch(&mut out, &BatchOptions::default(), &[], 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(encode_batch(
        &mut out,
        &BatchOptions::default(),
        &[Record::new("a"), Record::new("b").timestamp(-3)],
        0
    )
    .is_err());
    let bad_level = BatchOptions {
        compression: Compression::Zstd { level: 99 },
        ..BatchOptions::default()
    };
    assert!(encode_batch(&mut out, &bad_level, &[Record::new("a")], 0).is_err());
    let huge_offset = BatchOptions {
        base_offset: i64::MAX as u64,
        ..BatchOptions::default()
    };
    assert!(encode_batch(
        &mut out,
        &huge_offset,
        &[Record::new("a"), Record::new("b")],
        0
    )
    .is_err());
    assert_eq!(out, [9], "failed encodes leave the output alone");
    builder.push(&Record::new("x"), 0).unwrap();
    builder.finish_into(&mut out).unwrap();
    assert_eq!(out[0], 9);
    decode(&Bytes::from(out.split_off(1)), 0).unwrap();
}

#[test]
fn compression_helpers() {
    assert_eq!(Compression::zstd(), Compression::Zstd { level: 3 });
    assert_eq!(Compression::None.codec_id(), 0);
    assert_eq!(Compression::Lz4.codec_id(), 3);
    assert_eq!(Compression::zstd().codec_id(), 4);
    for id in 0..8u8 {
        match Compression::from_codec_id(id) {
            Ok(c) => assert_eq!(c.codec_id(), id),
            Err(e) => assert!(matches!(e, Error::UnsupportedCompression { codec } if codec == id)),
        }
    }
}

#[test]
fn hand_built_batches_decode() {
    let batch = raw_batch(&[plain_record(0), plain_record(2)], 2, 2);
    let decoded = decode(&batch, 0).unwrap();
    assert_eq!(decoded.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 2]);
    assert!(decoded[0].key.is_none() && decoded[0].value.is_none());
    // An empty batch (all records compacted away) is valid.
    assert!(decode(&raw_batch(&[], 0, 5), 0).unwrap().is_empty());
}

#[test]
fn malformed_records_are_rejected() {
    let cases: Vec<(&str, Bytes)> = vec![
        ("count above records", raw_batch(&[plain_record(0)], 2, 1)),
        (
            "count below records",
            raw_batch(&[plain_record(0), plain_record(1)], 1, 0),
        ),
        (
            "deltas equal",
            raw_batch(&[plain_record(0), plain_record(0)], 2, 0),
        ),
        (
            "deltas decrease",
            raw_batch(&[plain_record(1), plain_record(0)], 2, 1),
        ),
        (
            "last delta short of header",
            raw_batch(&[plain_record(0)], 1, 3),
        ),
        (
            "delta past header",
            raw_batch(&[plain_record(0), plain_record(4)], 2, 3),
        ),
        ("negative delta", raw_batch(&[plain_record(-1)], 1, 0)),
        (
            "key length -2",
            raw_batch(&[raw_record(0, -2, &[1], 0)], 1, 0),
        ),
        (
            "key longer than record",
            raw_batch(&[raw_record(0, 50, &[1], 0)], 1, 0),
        ),
        (
            "negative header count",
            raw_batch(&[raw_record(0, -1, &[1], -1)], 1, 0),
        ),
        (
            "header count beyond bytes",
            raw_batch(&[raw_record(0, -1, &[1], 1_000_000)], 1, 0),
        ),
        ("trailing byte in record", {
            let mut rec = raw_record(0, -1, &[1, 0], 0);
            rec[0] += 2; // length covers one byte past the header count
            raw_batch(&[rec], 1, 0)
        }),
        (
            "trailing bytes after records",
            raw_batch(&[plain_record(0), vec![0]], 1, 0),
        ),
        ("negative record length", raw_batch(&[vec![0x01]], 1, 0)),
        ("zero record length", raw_batch(&[vec![0x00]], 1, 0)),
    ];
    for (what, batch) in cases {
        let mut out = Vec::new();
        let result = decode_batch(&batch, 0, MIB, &mut out);
        assert!(is_invalid(&result), "{what}: {result:?}");
        assert!(out.is_empty(), "{what}: output must be rolled back");
    }
}

#[test]
fn header_keys_must_be_utf8() {
    // One header: key [0xff] (invalid UTF-8), null value.
    let mut fields = vec![0u8, 0, 0]; // attributes, timestamp delta 0, offset delta 0
    put_varint(&mut fields, -1); // key
    put_varint(&mut fields, -1); // value
    put_varint(&mut fields, 1); // one header
    put_varint(&mut fields, 1);
    fields.push(0xff);
    put_varint(&mut fields, -1);
    let mut rec = Vec::new();
    put_varint(&mut rec, fields.len() as i32);
    rec.extend_from_slice(&fields);
    let result = decode(&raw_batch(&[rec.clone()], 1, 0), 0);
    assert!(is_invalid(&result), "{result:?}");
    // The same record with a valid key decodes, with a null header value.
    let at = rec.len() - 2;
    rec[at] = b'h';
    let decoded = decode(&raw_batch(&[rec], 1, 0), 0).unwrap();
    assert_eq!(
        decoded[0].headers,
        [Header {
            key: "h".into(),
            value: None
        }]
    );
}

#[test]
fn errors_roll_back_but_keep_earlier_output() {
    let good = encode(Compression::None, &sample_records());
    let mut out = Vec::new();
    decode_batch(&good, 0, MIB, &mut out).unwrap();
    let bad = raw_batch(&[plain_record(0), plain_record(0)], 2, 0);
    assert!(decode_batch(&bad, 0, MIB, &mut out).is_err());
    assert_eq!(out.len(), 3);
}
