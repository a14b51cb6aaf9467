//! Cross-checks annals' RecordBatch v2 codec against independent Kafka implementations:
//!
//! - the `kafka-protocol` crate, in both directions (annals encodes / it decodes, it encodes /
//!   annals decodes), for uncompressed, LZ4 and zstd batches and for transaction markers;
//! - batches written by kafka-python (a pure-Python Kafka client), checked in under
//!   `tests/fixtures/` by `make_kafka_python_batch.py`.

use std::fs;
use std::path::Path;

use annals::format::{
    decode_batch, decode_control_record, encode_batch, encode_end_txn_marker_batch, peek_batch_len,
    verify_crc, BatchHeader, BatchOptions, Compression, ControlRecord, ControlType, EndTxnMarker,
    TimestampType,
};
use annals::{Header, Record, StoredRecord};
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KTimestampType,
};

const MIB: usize = 1 << 20;

/// Records exercising every nullable field; header keys are unique per record because
/// kafka-protocol keeps headers in a map.
fn annals_records() -> Vec<Record> {
    vec![
        Record::new("first value")
            .key("k1")
            .header("trace", "t-1")
            .timestamp(1_700_000_000_000),
        Record::tombstone("deleted-key").timestamp(1_700_000_000_123),
        Record {
            key: None,
            value: None,
            headers: vec![
                Header {
                    key: "null-value".into(),
                    value: None,
                },
                Header::new("empty", ""),
                Header::new("ünïcødé ключ", vec![0u8, 255, 7]),
            ],
            // Earlier than the first record: a negative timestamp delta.
            timestamp: Some(1_699_999_000_000),
        },
        Record::new(Bytes::new()).key(Bytes::new()),
        Record::new(vec![b'x'; 5_000])
            .key("big")
            .timestamp(1_700_000_001_000),
    ]
}

fn kafka_codec(compression: Compression) -> KCompression {
    match compression {
        Compression::None => KCompression::None,
        Compression::Lz4 => KCompression::Lz4,
        Compression::Zstd { .. } => KCompression::Zstd,
    }
}

fn header_list(record: &KRecord) -> Vec<(String, Option<Bytes>)> {
    record
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn annals_header_list(headers: &[Header]) -> Vec<(String, Option<Bytes>)> {
    headers
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect()
}

#[test]
fn annals_batches_decode_with_kafka_protocol() {
    let records = annals_records();
    let default_timestamp = 1_700_000_000_500;
    for compression in [Compression::None, Compression::Lz4, Compression::zstd()] {
        let options = BatchOptions {
            base_offset: 1_000,
            compression,
            timestamp_type: TimestampType::CreateTime,
            partition_leader_epoch: 9,
            producer_id: 77,
            producer_epoch: 5,
            base_sequence: 10,
            transactional: true,
            control: false,
        };
        // Two batches back to back, as they sit in a segment.
        let mut log = Vec::new();
        encode_batch(&mut log, &options, &records, default_timestamp).unwrap();
        let second = BatchOptions {
            base_offset: 1_005,
            base_sequence: 15,
            ..options
        };
        encode_batch(&mut log, &second, &records[..2], default_timestamp).unwrap();

        let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(log)).unwrap();
        assert_eq!(sets.len(), 2, "{compression:?}");
        assert_eq!(sets[0].compression, kafka_codec(compression));
        assert_eq!(sets[0].version, 2);
        let decoded: Vec<&KRecord> = sets.iter().flat_map(|s| &s.records).collect();
        let expected: Vec<&Record> = records.iter().chain(&records[..2]).collect();
        assert_eq!(decoded.len(), expected.len());
        for (i, (got, want)) in decoded.iter().zip(expected).enumerate() {
            assert_eq!(got.offset, 1_000 + i as i64, "{compression:?} record {i}");
            assert_eq!(got.sequence, 10 + i as i32);
            assert_eq!(got.timestamp, want.timestamp.unwrap_or(default_timestamp));
            assert_eq!(got.key, want.key);
            assert_eq!(got.value, want.value);
            assert_eq!(header_list(got), annals_header_list(&want.headers));
            assert_eq!((got.producer_id, got.producer_epoch), (77, 5));
            assert_eq!(got.partition_leader_epoch, 9);
            assert!(got.transactional && !got.control);
            assert_eq!(got.timestamp_type, KTimestampType::Creation);
        }
    }
}

#[test]
fn annals_flags_are_read_by_kafka_protocol() {
    let options = BatchOptions {
        timestamp_type: TimestampType::LogAppendTime,
        control: true,
        ..BatchOptions::default()
    };
    let mut out = Vec::new();
    encode_batch(&mut out, &options, &[Record::new("marker").key("k")], 42).unwrap();
    let set = RecordBatchDecoder::decode(&mut Bytes::from(out)).unwrap();
    let record = &set.records[0];
    assert!(record.control && !record.transactional);
    assert_eq!(record.timestamp_type, KTimestampType::LogAppend);
    assert_eq!(
        (record.producer_id, record.producer_epoch, record.sequence),
        (-1, -1, -1)
    );
}

#[test]
fn annals_txn_markers_decode_with_kafka_protocol() {
    for (control_type, type_id) in [(ControlType::Abort, 0u8), (ControlType::Commit, 1)] {
        let marker = EndTxnMarker {
            control_type,
            coordinator_epoch: 0x0A0B_0C0D,
        };
        let mut out = Vec::new();
        encode_end_txn_marker_batch(&mut out, 4_321, 9_001, 17, marker, 1_700_000_000_777).unwrap();
        let set = RecordBatchDecoder::decode(&mut Bytes::from(out)).unwrap();
        assert_eq!((set.version, set.compression), (2, KCompression::None));
        let [record] = &set.records[..] else {
            panic!(
                "{control_type:?}: expected one record, got {:?}",
                set.records
            )
        };
        assert!(record.control && record.transactional, "{control_type:?}");
        assert_eq!((record.producer_id, record.producer_epoch), (9_001, 17));
        assert_eq!(record.sequence, -1);
        assert_eq!(record.offset, 4_321);
        assert_eq!(record.partition_leader_epoch, 0);
        assert_eq!(record.timestamp, 1_700_000_000_777);
        assert_eq!(record.timestamp_type, KTimestampType::Creation);
        assert!(record.headers.is_empty());
        // Key: version 0, type; value: version 0, coordinator epoch.
        assert_eq!(record.key.as_deref(), Some(&[0, 0, 0, type_id][..]));
        assert_eq!(
            record.value.as_deref(),
            Some(&[0, 0, 0x0A, 0x0B, 0x0C, 0x0D][..])
        );
    }
}

#[test]
fn kafka_protocol_txn_markers_decode_with_annals() {
    for (control_type, type_id) in [(ControlType::Abort, 0u8), (ControlType::Commit, 1)] {
        let record = KRecord {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 6,
            producer_id: 31,
            producer_epoch: 4,
            timestamp_type: KTimestampType::Creation,
            offset: 70,
            sequence: -1,
            timestamp: 1_650_000_000_000,
            key: Some(Bytes::from(vec![0, 0, 0, type_id])),
            value: Some(Bytes::from_static(&[0, 0, 0xFF, 0xFF, 0xFF, 0xFD])),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: KCompression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
        let mut records = Vec::new();
        let header = decode_batch(&buf.freeze(), 0, MIB, &mut records).unwrap();
        assert!(header.is_control() && header.is_transactional());
        assert_eq!((header.producer_id, header.producer_epoch), (31, 4));
        assert_eq!(header.base_sequence, -1);
        let [stored] = &records[..] else {
            panic!("{control_type:?}: expected one record, got {records:?}")
        };
        let decoded =
            decode_control_record(stored.key.as_deref().unwrap(), stored.value.as_deref());
        assert_eq!(
            decoded.unwrap(),
            ControlRecord::EndTxn(EndTxnMarker {
                control_type,
                coordinator_epoch: -3,
            })
        );
    }
}

/// Records as kafka-protocol's producer side would hand them to its encoder.
fn kafka_records(base_offset: i64, offsets: &[i64]) -> Vec<KRecord> {
    offsets
        .iter()
        .enumerate()
        .map(|(i, &offset)| {
            let mut headers = Vec::new();
            if i % 2 == 0 {
                headers.push((
                    StrBytes::from_string(format!("h{i}")),
                    Some(Bytes::from(vec![i as u8; i])),
                ));
                headers.push((StrBytes::from_static_str("nul"), None));
            }
            KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 3,
                producer_id: 555,
                producer_epoch: 2,
                timestamp_type: KTimestampType::Creation,
                offset,
                // Keeps offset - sequence constant, or the encoder splits the batch.
                sequence: 20 + (offset - base_offset) as i32,
                timestamp: 1_650_000_000_000 + 7 * (i as i64 % 3),
                key: (i % 3 != 1).then(|| Bytes::from(format!("key-{i}"))),
                value: (i % 4 != 3).then(|| Bytes::from(format!("value {i} ").repeat(i + 1))),
                headers: headers.into_iter().collect(),
            }
        })
        .collect()
}

fn assert_same(got: &[StoredRecord], want: &[&KRecord]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.offset as i64, w.offset);
        assert_eq!(g.timestamp, w.timestamp);
        assert_eq!(g.key, w.key);
        assert_eq!(g.value, w.value);
        assert_eq!(annals_header_list(&g.headers), header_list(w));
    }
}

#[test]
fn kafka_protocol_batches_decode_with_annals() {
    // A gap in the offsets, as compaction leaves behind.
    let offsets = [500, 501, 502, 504, 505, 509];
    let records = kafka_records(500, &offsets);
    for compression in [Compression::None, Compression::Lz4, Compression::zstd()] {
        let mut buf = BytesMut::new();
        let encode_options = RecordEncodeOptions {
            version: 2,
            compression: kafka_codec(compression),
        };
        RecordBatchEncoder::encode(&mut buf, &records, &encode_options).unwrap();
        let batch = buf.freeze();

        assert_eq!(peek_batch_len(&batch).unwrap(), Some(batch.len()));
        verify_crc(&batch).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(
            header.compression().unwrap().codec_id(),
            compression.codec_id()
        );
        assert_eq!(header.base_offset, 500);
        assert_eq!(header.last_offset_delta, 9);
        assert_eq!(header.record_count, 6);
        assert_eq!(header.partition_leader_epoch, 3);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (555, 2, 20)
        );
        assert!(!header.is_transactional() && !header.is_control());

        let mut out = Vec::new();
        let decoded_header = decode_batch(&batch, 0, MIB, &mut out).unwrap();
        assert_eq!(decoded_header, header);
        assert_same(&out, &records.iter().collect::<Vec<_>>());

        // Filtering from inside the gap starts at the next record present.
        out.clear();
        decode_batch(&batch, 503, MIB, &mut out).unwrap();
        assert_same(&out, &records[3..].iter().collect::<Vec<_>>());
    }
}

#[test]
fn kafka_protocol_gzip_and_snappy_are_reported_unsupported() {
    let records = kafka_records(0, &[0, 1]);
    for (codec, id) in [(KCompression::Gzip, 1u8), (KCompression::Snappy, 2)] {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        let batch = buf.freeze();
        verify_crc(&batch).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.codec_id(), id);
        assert!(header.compression().is_err());
        // Only the public names are used here, so the variant is recognised by its message.
        let err = decode_batch(&batch, 0, MIB, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("unsupported compression codec id {id}")),
            "{err}"
        );
    }
}

/// The records `tests/fixtures/make_kafka_python_batch.py` writes: (offset, timestamp, key,
/// value, headers).
type Expected = (
    u64,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(&'static str, Option<Vec<u8>>)>,
);

fn kafka_python_records() -> Vec<Expected> {
    let mut fourth_value = b"\xff\x00 unicode: ".to_vec();
    fourth_value.extend("ü".repeat(30).as_bytes());
    vec![
        (
            0,
            1_700_000_000_000,
            Some(b"key-0".to_vec()),
            Some(b"value-0 ".repeat(20)),
            vec![("trace", Some(b"abc".to_vec()))],
        ),
        (
            1,
            1_700_000_000_005,
            None,
            Some(b"value-1 ".repeat(20)),
            vec![],
        ),
        (
            2,
            1_699_999_999_990,
            Some(b"key-2".to_vec()),
            None,
            vec![("h1", Some(vec![])), ("h2", None)],
        ),
        (
            3,
            1_700_000_000_010,
            Some(vec![]),
            Some(fourth_value),
            vec![("ключ", Some("значение".as_bytes().to_vec()))],
        ),
    ]
}

#[test]
fn kafka_python_fixtures_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (name, codec) in [("none", 0u8), ("lz4", 3), ("zstd", 4)] {
        let path = dir.join(format!("kafka_python_v2_{name}.bin"));
        let batch =
            Bytes::from(fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        verify_crc(&batch).unwrap();
        let mut out = Vec::new();
        let header = decode_batch(&batch, 0, MIB, &mut out).unwrap();
        assert_eq!(header.codec_id(), codec, "{name}");
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (1234, 5, 42)
        );
        assert_eq!(header.max_timestamp, 1_700_000_000_010);
        let expected = kafka_python_records();
        assert_eq!(out.len(), expected.len(), "{name}");
        for (got, (offset, timestamp, key, value, headers)) in out.iter().zip(expected) {
            assert_eq!(got.offset, offset, "{name}");
            assert_eq!(got.timestamp, timestamp, "{name} record {offset}");
            assert_eq!(got.key.as_deref(), key.as_deref(), "{name} record {offset}");
            assert_eq!(
                got.value.as_deref(),
                value.as_deref(),
                "{name} record {offset}"
            );
            let got_headers: Vec<(&str, Option<&[u8]>)> = got
                .headers
                .iter()
                .map(|h| (h.key.as_str(), h.value.as_deref()))
                .collect();
            let want_headers: Vec<(&str, Option<&[u8]>)> =
                headers.iter().map(|(k, v)| (*k, v.as_deref())).collect();
            assert_eq!(got_headers, want_headers, "{name} record {offset}");
        }
    }
}
