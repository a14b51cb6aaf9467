//! Kafka's control records (transaction markers) and its aborted-transaction index entry.
//!
//! A transaction ends with a *control batch* in every partition it wrote to: a transactional
//! batch with the control attribute bit set, holding one record whose key names the control type
//! and whose value carries the coordinator epoch. Kafka calls that record an
//! `EndTransactionMarker`. Its key and value are fixed-width big-endian structs:
//!
//! ```text
//! key:   version i16 (0) | type i16 (ABORT 0, COMMIT 1, other types for KRaft's own logs)
//! value: version i16 (0) | coordinator_epoch i32
//! ```
//!
//! The `.txnindex` file next to each segment lists the transactions that aborted in it, one
//! fixed 34-byte entry each (Kafka's `AbortedTxn`):
//!
//! ```text
//! version i16 (0) | producerId i64 | firstOffset i64 | lastOffset i64 | lastStableOffset i64
//! ```

use super::{
    encode_batch, invalid, BatchHeader, BatchOptions, Compression, Record, TimestampType,
    NO_SEQUENCE,
};
use crate::error::Result;

/// Key and value version annals writes; Kafka has only ever defined version 0 of either.
const CONTROL_VERSION: i16 = 0;
/// Bytes of a version-0 control record key: version + type.
const CONTROL_KEY_LEN: usize = 4;
/// Bytes of a version-0 end-transaction marker value: version + coordinator epoch.
const END_TXN_VALUE_LEN: usize = 6;

/// The two control record types that end a transaction (Kafka's `ControlRecordType` ABORT and
/// COMMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// Kafka's `ABORT`, wire type 0: the transaction's records must be skipped by
    /// read-committed consumers.
    Abort,
    /// Kafka's `COMMIT`, wire type 1: the transaction's records become visible.
    Commit,
}

impl ControlType {
    /// The i16 type stored in the control record key.
    pub fn id(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }

    /// The end-transaction type for a key's type id; `None` for every other control type.
    pub fn from_id(id: i16) -> Option<Self> {
        match id {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// The record a transaction coordinator writes to end a transaction (Kafka's
/// `EndTransactionMarker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndTxnMarker {
    /// Commit or abort.
    pub control_type: ControlType,
    /// The epoch of the coordinator that wrote the marker (Kafka's `coordinator_epoch`); a
    /// partition fences markers from a coordinator older than the last one it saw.
    pub coordinator_epoch: i32,
}

impl EndTxnMarker {
    /// The control record key: version 0, then the type.
    fn key(&self) -> [u8; CONTROL_KEY_LEN] {
        let mut key = [0u8; CONTROL_KEY_LEN];
        let (version, kind) = key.split_at_mut(2);
        version.copy_from_slice(&CONTROL_VERSION.to_be_bytes());
        kind.copy_from_slice(&self.control_type.id().to_be_bytes());
        key
    }

    /// The marker value: version 0, then the coordinator epoch.
    fn value(&self) -> [u8; END_TXN_VALUE_LEN] {
        let mut value = [0u8; END_TXN_VALUE_LEN];
        let (version, epoch) = value.split_at_mut(2);
        version.copy_from_slice(&CONTROL_VERSION.to_be_bytes());
        epoch.copy_from_slice(&self.coordinator_epoch.to_be_bytes());
        value
    }
}

/// A decoded control record (the record of a batch whose control attribute is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecord {
    /// An ABORT or COMMIT marker (Kafka's `EndTransactionMarker`).
    EndTxn(EndTxnMarker),
    /// Any other control type, undecoded: Kafka's KRaft logs define `LEADER_CHANGE` (2),
    /// `SNAPSHOT_HEADER` (3), `SNAPSHOT_FOOTER` (4), `KRAFT_VERSION` (5) and `KRAFT_VOTERS` (6),
    /// and later versions may add more. A data partition has no use for them, but their
    /// presence is not corruption.
    Other {
        /// The key's version field.
        key_version: i16,
        /// The key's type field.
        control_type: i16,
    },
}

/// Appends one whole control batch ending a transaction, as Kafka's partition leader writes it
/// for a `WriteTxnMarkers` request: a RecordBatch v2 with the transactional and control
/// attributes, uncompressed, CreateTime at `timestamp`, base sequence -1, partition leader
/// epoch 0 (as every batch annals writes), and one record holding `marker` with no headers.
///
/// Errors (leaving `out` as it was) on a negative timestamp or a `base_offset` above
/// `i64::MAX`.
pub fn encode_end_txn_marker_batch(
    out: &mut Vec<u8>,
    base_offset: u64,
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp: i64,
) -> Result<BatchHeader> {
    let options = BatchOptions {
        base_offset,
        compression: Compression::None,
        timestamp_type: TimestampType::CreateTime,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        // Kafka's markers carry no sequence: they are not part of the producer's numbering.
        base_sequence: NO_SEQUENCE,
        transactional: true,
        control: true,
    };
    let record = Record::new(marker.value().to_vec()).key(marker.key().to_vec());
    encode_batch(out, &options, &[record], timestamp)
}

/// Reads a big-endian i16 at `at`, or `None` when `bytes` is too short.
fn i16_at(bytes: &[u8], at: usize) -> Option<i16> {
    let field = bytes.get(at..at.checked_add(2)?)?;
    Some(i16::from_be_bytes(field.try_into().ok()?))
}

/// Reads a big-endian i32 at `at`, or `None` when `bytes` is too short.
fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes(field.try_into().ok()?))
}

/// Reads a big-endian i64 at `at`, or `None` when `bytes` is too short.
fn i64_at(bytes: &[u8], at: usize) -> Option<i64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    Some(i64::from_be_bytes(field.try_into().ok()?))
}

/// Decodes the key and value of one control record (Kafka's `ControlRecordType.parse` and
/// `EndTransactionMarker.deserialize`).
///
/// As Kafka's reader does, a key or marker value of a version above 0 is read as its version-0
/// prefix, so a newer writer's extra trailing fields are skipped; a version-0 key or value must
/// be exactly its version-0 size. Control types other than ABORT and COMMIT come back as
/// [`ControlRecord::Other`] without looking at the value. Errors with
/// [`Error::InvalidBatch`](crate::Error::InvalidBatch) on a missing or short key, a negative
/// version, and, for ABORT and COMMIT, a null, short or over-long value.
pub fn decode_control_record(key: &[u8], value: Option<&[u8]>) -> Result<ControlRecord> {
    let (Some(key_version), Some(control_type)) = (i16_at(key, 0), i16_at(key, 2)) else {
        return Err(invalid(format!(
            "control record key is {} bytes; it needs at least {CONTROL_KEY_LEN} (version, type)",
            key.len()
        )));
    };
    check_version(
        "control record key",
        key_version,
        key.len(),
        CONTROL_KEY_LEN,
    )?;
    let Some(control_type_enum) = ControlType::from_id(control_type) else {
        return Ok(ControlRecord::Other {
            key_version,
            control_type,
        });
    };
    let Some(value) = value else {
        return Err(invalid(format!(
            "{control_type_enum:?} marker has a null value; it needs version and coordinator epoch"
        )));
    };
    let (Some(value_version), Some(coordinator_epoch)) = (i16_at(value, 0), i32_at(value, 2))
    else {
        return Err(invalid(format!(
            "{control_type_enum:?} marker value is {} bytes; it needs at least \
             {END_TXN_VALUE_LEN} (version, coordinator epoch)",
            value.len()
        )));
    };
    check_version(
        "end transaction marker value",
        value_version,
        value.len(),
        END_TXN_VALUE_LEN,
    )?;
    Ok(ControlRecord::EndTxn(EndTxnMarker {
        control_type: control_type_enum,
        coordinator_epoch,
    }))
}

/// A negative version is corruption (Kafka says so too); version 0 must have exactly its size.
fn check_version(what: &str, version: i16, len: usize, v0_len: usize) -> Result<()> {
    if version < 0 {
        return Err(invalid(format!("{what} has negative version {version}")));
    }
    if version == CONTROL_VERSION && len != v0_len {
        return Err(invalid(format!(
            "{what} version 0 is {len} bytes; version 0 is exactly {v0_len}"
        )));
    }
    Ok(())
}

/// Bytes of one entry of the aborted-transaction index (Kafka's `AbortedTxn.TOTAL_SIZE`).
pub const ABORTED_TXN_LEN: usize = 34;

/// One entry of a segment's aborted-transaction index, the `.txnindex` file (Kafka's
/// `AbortedTxn`): a transaction that aborted with its abort marker in this segment.
///
/// Offsets are unsigned here, as elsewhere in annals, and stored as Kafka's i64: they must not
/// exceed `i64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    /// The aborting producer (Kafka's `producerId`).
    pub producer_id: i64,
    /// Offset of the transaction's first batch in the partition (Kafka's `firstOffset`).
    pub first_offset: u64,
    /// Offset of its abort marker (Kafka's `lastOffset`).
    pub last_offset: u64,
    /// The partition's last stable offset once the abort completed (Kafka's
    /// `lastStableOffset`); a read-committed fetch up to it needs this entry.
    pub last_stable_offset: u64,
}

impl AbortedTxn {
    /// Whether the data batch `header` belongs to this aborted transaction: the same producer,
    /// starting between the transaction's first batch and its marker.
    pub fn covers(&self, header: &super::BatchHeader) -> bool {
        header.is_transactional()
            && !header.is_control()
            && header.producer_id == self.producer_id
            && self.first_offset <= header.base_offset
            && header.base_offset <= self.last_offset
    }

    /// The 34-byte entry: version 0 (i16), then producer id, first, last and last stable offset
    /// (i64 each), big-endian.
    pub fn encode(&self) -> [u8; ABORTED_TXN_LEN] {
        let mut out = [0u8; ABORTED_TXN_LEN];
        let (version, rest) = out.split_at_mut(2);
        version.copy_from_slice(&CONTROL_VERSION.to_be_bytes());
        let fields = [
            self.producer_id.to_be_bytes(),
            self.first_offset.to_be_bytes(),
            self.last_offset.to_be_bytes(),
            self.last_stable_offset.to_be_bytes(),
        ];
        for (slot, field) in rest.chunks_exact_mut(8).zip(fields) {
            slot.copy_from_slice(&field);
        }
        out
    }

    /// Parses one entry. Errors with [`Error::InvalidBatch`](crate::Error::InvalidBatch) unless
    /// `bytes` is exactly [`ABORTED_TXN_LEN`] long with version 0, a non-negative producer id
    /// and offsets, and `first_offset <= last_offset`.
    pub fn decode(bytes: &[u8]) -> Result<AbortedTxn> {
        if bytes.len() != ABORTED_TXN_LEN {
            return Err(invalid(format!(
                "aborted transaction entry is {} bytes; it must be {ABORTED_TXN_LEN}",
                bytes.len()
            )));
        }
        let field = |at: usize, name: &str| -> Result<i64> {
            let v = i64_at(bytes, at).ok_or_else(|| invalid(format!("{name} is cut short")))?;
            if v < 0 {
                return Err(invalid(format!(
                    "aborted transaction entry has negative {name} {v}"
                )));
            }
            Ok(v)
        };
        let version = i16_at(bytes, 0).unwrap_or(-1);
        if version != CONTROL_VERSION {
            return Err(invalid(format!(
                "aborted transaction entry has version {version}; only version 0 exists"
            )));
        }
        let producer_id = field(2, "producer id")?;
        // Non-negative i64s, so the casts are exact.
        let first_offset = field(10, "first offset")? as u64;
        let last_offset = field(18, "last offset")? as u64;
        let last_stable_offset = field(26, "last stable offset")? as u64;
        if first_offset > last_offset {
            return Err(invalid(format!(
                "aborted transaction entry's first offset {first_offset} is after its last \
                 offset {last_offset}"
            )));
        }
        Ok(AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may panic on what they check
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::error::Error;
    use crate::format::{decode_batch, BatchHeader};

    fn reason(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::InvalidBatch { reason }) => reason,
            other => panic!("expected InvalidBatch, got {other:?}"),
        }
    }

    /// The batch Kafka's format prescribes for a marker at base offset 0x1234 from producer
    /// 0x0102030405060708 epoch 3, coordinator epoch 7, timestamp 1_700_000_000_000, with the
    /// CRC left as zero (it is computed separately below).
    fn expected_marker_batch(control_type: u8) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x12, 0x34]); // baseOffset i64
        b.extend_from_slice(&[0, 0, 0, 66]); // batchLength i32: 78 bytes - 12
        b.extend_from_slice(&[0, 0, 0, 0]); // partitionLeaderEpoch i32: 0
        b.push(2); // magic i8
        b.extend_from_slice(&[0, 0, 0, 0]); // crc u32, filled in by the caller
        b.extend_from_slice(&[0x00, 0x30]); // attributes i16: transactional 0x10 | control 0x20
        b.extend_from_slice(&[0, 0, 0, 0]); // lastOffsetDelta i32: one record
        let ts = [0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x00]; // 1_700_000_000_000
        b.extend_from_slice(&ts); // baseTimestamp i64
        b.extend_from_slice(&ts); // maxTimestamp i64
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // producerId i64
        b.extend_from_slice(&[0, 3]); // producerEpoch i16
        b.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // baseSequence i32: -1
        b.extend_from_slice(&[0, 0, 0, 1]); // recordCount i32
        assert_eq!(b.len(), 61);
        // The record; varints are zigzag, so n is written as 2n.
        b.push(32); // length varint: 16 bytes follow
        b.push(0); // attributes i8
        b.push(0); // timestampDelta varlong: 0
        b.push(0); // offsetDelta varint: 0
        b.push(8); // keyLength varint: 4
        b.extend_from_slice(&[0, 0, 0, control_type]); // key: version i16 0, type i16
        b.push(12); // valueLength varint: 6
        b.extend_from_slice(&[0, 0, 0, 0, 0, 7]); // value: version i16 0, coordinator epoch i32
        b.push(0); // header count varint: 0
        assert_eq!(b.len(), 78);
        b
    }

    fn golden(control_type: ControlType, type_byte: u8, crc: u32) {
        let mut want = expected_marker_batch(type_byte);
        // The CRC is CRC-32C from the attributes (byte 21) to the end. The constant was computed
        // once with a separate bitwise CRC-32C and is pinned so that a change in the hand-written
        // bytes or in what annals checksums shows up here.
        assert_eq!(crc32c::crc32c(&want[21..]), crc, "{control_type:?}");
        want[17..21].copy_from_slice(&crc.to_be_bytes());

        let marker = EndTxnMarker {
            control_type,
            coordinator_epoch: 7,
        };
        let mut out = vec![0xAA]; // something already there, which must stay
        let header = encode_end_txn_marker_batch(
            &mut out,
            0x1234,
            0x0102_0304_0506_0708,
            3,
            marker,
            1_700_000_000_000,
        )
        .unwrap();
        assert_eq!(out[0], 0xAA);
        assert_eq!(&out[1..], &want[..], "{control_type:?}");
        assert_eq!(header, BatchHeader::parse(&want).unwrap());
    }

    #[test]
    fn commit_batch_golden_bytes() {
        golden(ControlType::Commit, 1, 0x698C_2942);
    }

    #[test]
    fn abort_batch_golden_bytes() {
        golden(ControlType::Abort, 0, 0x9DB2_FF0A);
    }

    #[test]
    fn marker_batch_decodes_as_a_control_batch() {
        for control_type in [ControlType::Abort, ControlType::Commit] {
            let marker = EndTxnMarker {
                control_type,
                coordinator_epoch: -5,
            };
            let mut out = Vec::new();
            encode_end_txn_marker_batch(&mut out, 900, 42, 0, marker, 5).unwrap();
            let header = BatchHeader::parse(&out).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.base_offset, header.record_count), (900, 1));
            assert_eq!((header.producer_id, header.producer_epoch), (42, 0));
            assert_eq!(header.base_sequence, -1);
            assert_eq!(header.partition_leader_epoch, 0);
            assert_eq!(header.compression().unwrap(), Compression::None);
            assert_eq!(header.timestamp_type(), TimestampType::CreateTime);

            let mut records = Vec::new();
            let decoded = decode_batch(&Bytes::from(out), 0, 1 << 20, &mut records).unwrap();
            assert_eq!(decoded, header);
            let [record] = &records[..] else {
                panic!("expected one record, got {records:?}")
            };
            assert_eq!((record.offset, record.timestamp), (900, 5));
            assert!(record.headers.is_empty());
            let got =
                decode_control_record(record.key.as_deref().unwrap(), record.value.as_deref());
            assert_eq!(got.unwrap(), ControlRecord::EndTxn(marker));
        }
    }

    #[test]
    fn marker_batch_rejects_what_the_builder_rejects() {
        let marker = EndTxnMarker {
            control_type: ControlType::Commit,
            coordinator_epoch: 0,
        };
        let mut out = vec![1, 2, 3];
        assert!(encode_end_txn_marker_batch(&mut out, 0, 1, 0, marker, -1).is_err());
        assert!(encode_end_txn_marker_batch(&mut out, u64::MAX, 1, 0, marker, 0).is_err());
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn control_records_decode() {
        let commit = |epoch: i32| {
            ControlRecord::EndTxn(EndTxnMarker {
                control_type: ControlType::Commit,
                coordinator_epoch: epoch,
            })
        };
        let got = decode_control_record(&[0, 0, 0, 1], Some(&[0, 0, 0x7F, 0xFF, 0xFF, 0xFF]));
        assert_eq!(got.unwrap(), commit(i32::MAX));
        let got = decode_control_record(&[0, 0, 0, 0], Some(&[0, 0, 0xFF, 0xFF, 0xFF, 0xFE]));
        assert_eq!(
            got.unwrap(),
            ControlRecord::EndTxn(EndTxnMarker {
                control_type: ControlType::Abort,
                coordinator_epoch: -2,
            })
        );
        // A newer version's extra fields are skipped, as Kafka skips them.
        let got = decode_control_record(&[0, 1, 0, 1, 9], Some(&[0, 2, 0, 0, 0, 3, 9, 9]));
        assert_eq!(got.unwrap(), commit(3));
        // KRaft's types and unknown ones are reported, whatever their value holds.
        for (key, control_type) in [
            (&[0, 0, 0, 2][..], 2),
            (&[0, 0, 0, 6][..], 6),
            (&[0, 0, 0x7F, 0xFF][..], i16::MAX),
            (&[0, 0, 0xFF, 0xFF][..], -1),
            (&[0, 3, 0, 2, 0][..], 2),
        ] {
            let key_version = i16::from_be_bytes([key[0], key[1]]);
            for value in [None, Some(&b""[..]), Some(&b"anything"[..])] {
                assert_eq!(
                    decode_control_record(key, value).unwrap(),
                    ControlRecord::Other {
                        key_version,
                        control_type
                    }
                );
            }
        }
    }

    #[test]
    fn malformed_control_records_are_errors() {
        let epoch = Some(&[0u8, 0, 0, 0, 0, 1][..]);
        for key in [&[][..], &[0], &[0, 0, 0]] {
            assert!(reason(decode_control_record(key, epoch)).contains("at least 4"));
        }
        let r = reason(decode_control_record(&[0xFF, 0xFF, 0, 1], epoch));
        assert!(r.contains("negative version -1"), "{r}");
        let r = reason(decode_control_record(&[0, 0, 0, 1, 0], epoch));
        assert!(r.contains("key version 0 is 5 bytes"), "{r}");
        let r = reason(decode_control_record(&[0, 0, 0, 1], None));
        assert!(r.contains("Commit marker has a null value"), "{r}");
        for value in [&[][..], &[0, 0], &[0, 0, 0, 0, 0]] {
            let r = reason(decode_control_record(&[0, 0, 0, 0], Some(value)));
            assert!(
                r.contains("Abort marker value is") && r.contains("at least 6"),
                "{r}"
            );
        }
        let r = reason(decode_control_record(
            &[0, 0, 0, 1],
            Some(&[0x80, 0, 0, 0, 0, 1]),
        ));
        assert!(r.contains("value has negative version -32768"), "{r}");
        let r = reason(decode_control_record(
            &[0, 0, 0, 1],
            Some(&[0, 0, 0, 0, 0, 1, 0]),
        ));
        assert!(r.contains("value version 0 is 7 bytes"), "{r}");
    }

    #[test]
    fn control_type_ids() {
        for t in [ControlType::Abort, ControlType::Commit] {
            assert_eq!(ControlType::from_id(t.id()), Some(t));
        }
        assert_eq!(ControlType::Abort.id(), 0);
        assert_eq!(ControlType::Commit.id(), 1);
        assert_eq!(ControlType::from_id(2), None);
        assert_eq!(ControlType::from_id(-1), None);
    }

    fn sample_aborted() -> AbortedTxn {
        AbortedTxn {
            producer_id: 0x0102_0304_0506_0708,
            first_offset: 0x10,
            last_offset: 0x1_0000_0020,
            last_stable_offset: 0x7FFF_FFFF_FFFF_FFFF,
        }
    }

    #[test]
    fn aborted_txn_golden_bytes() {
        #[rustfmt::skip]
        let want: [u8; ABORTED_TXN_LEN] = [
            0, 0,                                           // version i16: 0
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // producerId i64
            0, 0, 0, 0, 0, 0, 0, 0x10,                      // firstOffset i64
            0, 0, 0, 0x01, 0, 0, 0, 0x20,                   // lastOffset i64
            0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // lastStableOffset i64
        ];
        assert_eq!(sample_aborted().encode(), want);
        assert_eq!(AbortedTxn::decode(&want).unwrap(), sample_aborted());
        // first == last is one batch-and-marker transaction squeezed together: still valid.
        let tight = AbortedTxn {
            producer_id: 0,
            first_offset: 5,
            last_offset: 5,
            last_stable_offset: 0,
        };
        assert_eq!(AbortedTxn::decode(&tight.encode()).unwrap(), tight);
    }

    #[test]
    fn malformed_aborted_txns_are_errors() {
        let good = sample_aborted().encode();
        for len in [0, 1, 33, 35, 68] {
            let mut bytes = good.to_vec();
            bytes.resize(len, 0);
            let r = reason(AbortedTxn::decode(&bytes));
            assert!(r.contains(&format!("is {len} bytes; it must be 34")), "{r}");
        }
        for version in [[0, 1], [0xFF, 0xFF], [1, 0]] {
            let mut bytes = good;
            bytes[..2].copy_from_slice(&version);
            assert!(reason(AbortedTxn::decode(&bytes)).contains("only version 0"));
        }
        for (at, name) in [
            (2, "producer id"),
            (10, "first offset"),
            (18, "last offset"),
            (26, "last stable offset"),
        ] {
            let mut bytes = good;
            bytes[at] = 0x80;
            let r = reason(AbortedTxn::decode(&bytes));
            assert!(r.contains(&format!("negative {name}")), "{r}");
        }
        let backwards = AbortedTxn {
            first_offset: 11,
            last_offset: 10,
            ..sample_aborted()
        };
        let r = reason(AbortedTxn::decode(&backwards.encode()));
        assert!(
            r.contains("first offset 11 is after its last offset 10"),
            "{r}"
        );
    }

    proptest::proptest! {
        /// Arbitrary keys, values and index entries are decoded or refused, never a panic.
        #[test]
        fn decoding_never_panics(
            key in proptest::collection::vec(proptest::num::u8::ANY, 0..10),
            value in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..10)),
            entry in proptest::collection::vec(proptest::num::u8::ANY, 30..38),
        ) {
            let _ = decode_control_record(&key, value.as_deref());
            if let Ok(txn) = AbortedTxn::decode(&entry) {
                proptest::prop_assert_eq!(&txn.encode()[..], &entry[..]);
            }
        }
    }
}
