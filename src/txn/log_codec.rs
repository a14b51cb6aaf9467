//! The records of Kafka's `__transaction_state` topic, byte for byte: the key names a
//! transactional id, the value is the coordinator's state for it.
//!
//! Both are a big-endian i16 version followed by a struct in Kafka's message encoding:
//!
//! ```text
//! key   v0: version i16 | transactionalId string(i16 length)
//! value v0: version i16 | producerId i64 | producerEpoch i16 | timeoutMs i32 | status i8 |
//!           partitions nullable array(i32 count) of { topic string(i16 length),
//!                                                     partitionIds array(i32 count) of i32 } |
//!           lastUpdateTimestampMs i64 | startTimestampMs i64
//! value v1: the same fields, "flexible": strings and arrays carry an unsigned-varint length
//!           plus one (0 is null), every struct (each partitions entry and the value itself)
//!           ends with a tagged-field section, and the value's section holds
//!           tag 0 previousProducerId i64 (default -1), tag 1 nextProducerId i64 (default -1),
//!           tag 2 clientTransactionVersion i16 (default 0), each only when not its default.
//! ```
//!
//! A tagged-field section is an unsigned-varint count, then per field its tag and its size in
//! bytes (both unsigned varints) and the bytes. Kafka 4's coordinator writes value version 1
//! once the cluster's `transaction.version` feature is at least 1 (version 0 before), so this
//! writes version 1 and reads both. The key has only version 0.
//!
//! Decoding treats its input as untrusted: every error names the field that is wrong, and
//! nothing panics or allocates more than the input could describe.

// These bytes come from a log on disk: a malformed record must become an error, never a panic.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fmt;

/// The key version Kafka writes (its only one).
const KEY_VERSION: i16 = 0;
/// The value version written here: Kafka 4's, with `transaction.version` >= 1.
const VALUE_VERSION: i16 = 1;
/// Kafka's string length limit, which its writers enforce even where the length is a varint.
const MAX_STRING_LEN: usize = i16::MAX as usize;

/// Tags of the value's tagged fields in version 1.
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;

/// The default of the producer-id tagged fields: no producer id.
pub(crate) const NO_PRODUCER_ID: i64 = -1;

/// The state of a transactional id, as Kafka's coordinator stores it (its `TransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TxnStatus {
    /// No transaction in progress.
    Empty,
    /// Partitions have been added; the transaction is open.
    Ongoing,
    /// The producer asked to commit; markers are being written.
    PrepareCommit,
    /// The producer (or a timeout) asked to abort; markers are being written.
    PrepareAbort,
    /// Every commit marker is written.
    CompleteCommit,
    /// Every abort marker is written.
    CompleteAbort,
    /// The transactional id expired and is about to be removed.
    Dead,
    /// A newer producer fenced this one; its open transaction is being aborted.
    PrepareEpochFence,
}

impl TxnStatus {
    /// Every status, in id order.
    #[cfg(test)]
    pub(crate) const ALL: [TxnStatus; 8] = [
        TxnStatus::Empty,
        TxnStatus::Ongoing,
        TxnStatus::PrepareCommit,
        TxnStatus::PrepareAbort,
        TxnStatus::CompleteCommit,
        TxnStatus::CompleteAbort,
        TxnStatus::Dead,
        TxnStatus::PrepareEpochFence,
    ];

    /// The i8 Kafka stores for the status.
    pub(crate) fn id(self) -> i8 {
        match self {
            TxnStatus::Empty => 0,
            TxnStatus::Ongoing => 1,
            TxnStatus::PrepareCommit => 2,
            TxnStatus::PrepareAbort => 3,
            TxnStatus::CompleteCommit => 4,
            TxnStatus::CompleteAbort => 5,
            TxnStatus::Dead => 6,
            TxnStatus::PrepareEpochFence => 7,
        }
    }

    /// The status with this id, or `None` for an id Kafka does not define.
    pub(crate) fn from_id(id: i8) -> Option<Self> {
        Some(match id {
            0 => TxnStatus::Empty,
            1 => TxnStatus::Ongoing,
            2 => TxnStatus::PrepareCommit,
            3 => TxnStatus::PrepareAbort,
            4 => TxnStatus::CompleteCommit,
            5 => TxnStatus::CompleteAbort,
            6 => TxnStatus::Dead,
            7 => TxnStatus::PrepareEpochFence,
            _ => return None,
        })
    }
}

/// Kafka's name for the status, as `DescribeTransactions` and its log dumper print it.
impl fmt::Display for TxnStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
            TxnStatus::Dead => "Dead",
            TxnStatus::PrepareEpochFence => "PrepareEpochFence",
        })
    }
}

/// The value of a `__transaction_state` record (Kafka's `TransactionLogValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnLogValue {
    pub(crate) producer_id: i64,
    /// The producer id of the last committed transaction, when the epoch overflowed and a new id
    /// was handed out; [`NO_PRODUCER_ID`] otherwise. Version 1 only (tag 0).
    pub(crate) previous_producer_id: i64,
    /// The producer id handed out while this transaction completes; [`NO_PRODUCER_ID`]
    /// otherwise. Version 1 only (tag 1).
    pub(crate) next_producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) timeout_ms: i32,
    pub(crate) status: TxnStatus,
    /// Topics and their partitions in the transaction, one entry per topic. Kafka stores none
    /// (a null array) for [`TxnStatus::Empty`], and neither does this codec.
    pub(crate) partitions: Vec<(String, Vec<i32>)>,
    pub(crate) last_update_ms: i64,
    pub(crate) start_ms: i64,
    /// The transaction protocol version the client uses (Kafka's `transaction.version` feature
    /// level: 0, 1 or 2). Version 1 only (tag 2), default 0.
    pub(crate) client_transaction_version: i16,
}

/// The record key for `transactional_id`: version 0 and the id. Errors if the id is longer than
/// Kafka's string limit of 32767 bytes.
pub(crate) fn encode_key(transactional_id: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&KEY_VERSION.to_be_bytes());
    put_string(&mut out, transactional_id, false, "transactional id")?;
    Ok(out)
}

/// The transactional id a record key names.
pub(crate) fn decode_key(bytes: &[u8]) -> Result<String, String> {
    let mut r = Reader::new(bytes);
    let version = r.i16("key version")?;
    if version != KEY_VERSION {
        return Err(format!(
            "key version is {version}; only version {KEY_VERSION} exists"
        ));
    }
    let id = r.string(false, "transactional id")?;
    r.finish("key")?;
    Ok(id)
}

/// The record value for `value`, in version 1. An [`TxnStatus::Empty`] value's partitions are
/// written as null whatever the field holds, as Kafka does. Errors if a topic name is longer than
/// 32767 bytes or a list longer than `i32::MAX`.
pub(crate) fn encode_value(value: &TxnLogValue) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&value.producer_id.to_be_bytes());
    out.extend_from_slice(&value.producer_epoch.to_be_bytes());
    out.extend_from_slice(&value.timeout_ms.to_be_bytes());
    out.extend_from_slice(&value.status.id().to_be_bytes());
    if value.status == TxnStatus::Empty {
        put_array_len(&mut out, None, true, "partitions")?;
    } else {
        put_array_len(&mut out, Some(value.partitions.len()), true, "partitions")?;
        for (topic, ids) in &value.partitions {
            put_string(&mut out, topic, true, "topic")?;
            put_array_len(&mut out, Some(ids.len()), true, "partition ids")?;
            for id in ids {
                out.extend_from_slice(&id.to_be_bytes());
            }
            // The partitions entry's own tagged fields: none.
            put_uvarint(&mut out, 0);
        }
    }
    out.extend_from_slice(&value.last_update_ms.to_be_bytes());
    out.extend_from_slice(&value.start_ms.to_be_bytes());

    // Tagged fields in ascending tag order, each only when it differs from its default.
    let mut tagged: Vec<(u32, Vec<u8>)> = Vec::with_capacity(3);
    if value.previous_producer_id != NO_PRODUCER_ID {
        let field = value.previous_producer_id.to_be_bytes().to_vec();
        tagged.push((TAG_PREVIOUS_PRODUCER_ID, field));
    }
    if value.next_producer_id != NO_PRODUCER_ID {
        let field = value.next_producer_id.to_be_bytes().to_vec();
        tagged.push((TAG_NEXT_PRODUCER_ID, field));
    }
    if value.client_transaction_version != 0 {
        let field = value.client_transaction_version.to_be_bytes().to_vec();
        tagged.push((TAG_CLIENT_TRANSACTION_VERSION, field));
    }
    // At most three fields of at most eight bytes: the casts cannot truncate.
    put_uvarint(&mut out, tagged.len() as u32);
    for (tag, field) in tagged {
        put_uvarint(&mut out, tag);
        put_uvarint(&mut out, field.len() as u32);
        out.extend_from_slice(&field);
    }
    Ok(out)
}

/// Parses a record value of version 0 or 1. Fields version 0 lacks get their version-1
/// defaults. Unknown tagged fields are skipped, as Kafka skips them; an Empty value's partitions
/// are dropped, as Kafka's reader drops them.
pub(crate) fn decode_value(bytes: &[u8]) -> Result<TxnLogValue, String> {
    let mut r = Reader::new(bytes);
    let version = r.i16("value version")?;
    let flexible = match version {
        0 => false,
        1 => true,
        _ => return Err(format!("value version is {version}; only 0 and 1 exist")),
    };
    let producer_id = r.i64("producer id")?;
    let producer_epoch = r.i16("producer epoch")?;
    let timeout_ms = r.i32("transaction timeout")?;
    let status_id = r.i8("transaction status")?;
    let status = TxnStatus::from_id(status_id)
        .ok_or_else(|| format!("transaction status: {status_id} is not a known status id"))?;
    let mut partitions = Vec::new();
    if let Some(count) = r.array_len(flexible, true, "partitions", 1)? {
        for _ in 0..count {
            let topic = r.string(flexible, "topic")?;
            // Not nullable, so array_len has already refused a null.
            let id_count = r
                .array_len(flexible, false, "partition ids", 4)?
                .unwrap_or_default();
            let mut ids = Vec::with_capacity(id_count);
            for _ in 0..id_count {
                let id = r.i32("partition id")?;
                if id < 0 {
                    return Err(format!("partition id: {id} of topic {topic:?} is negative"));
                }
                ids.push(id);
            }
            if flexible {
                // Kafka defines no tagged fields here; a newer writer's are skipped.
                r.tagged_fields("partitions entry", &[], |_, _| Ok(()))?;
            }
            partitions.push((topic, ids));
        }
    }
    if status == TxnStatus::Empty {
        partitions.clear();
    }
    let last_update_ms = r.i64("last update timestamp")?;
    let start_ms = r.i64("start timestamp")?;

    let mut value = TxnLogValue {
        producer_id,
        previous_producer_id: NO_PRODUCER_ID,
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch,
        timeout_ms,
        status,
        partitions,
        last_update_ms,
        start_ms,
        client_transaction_version: 0,
    };
    if flexible {
        let known = [
            TAG_PREVIOUS_PRODUCER_ID,
            TAG_NEXT_PRODUCER_ID,
            TAG_CLIENT_TRANSACTION_VERSION,
        ];
        r.tagged_fields("value", &known, |tag, field| {
            let mut f = Reader::new(field);
            // A known tag's size must be its type's: anything else is not the field Kafka means.
            let name = match tag {
                TAG_PREVIOUS_PRODUCER_ID => {
                    let name = "previous producer id (tag 0)";
                    value.previous_producer_id = f.i64(name)?;
                    name
                }
                TAG_NEXT_PRODUCER_ID => {
                    let name = "next producer id (tag 1)";
                    value.next_producer_id = f.i64(name)?;
                    name
                }
                _ => {
                    let name = "client transaction version (tag 2)";
                    value.client_transaction_version = f.i16(name)?;
                    name
                }
            };
            f.finish(name)
        })?;
    }
    r.finish("value")?;
    Ok(value)
}

/// Kafka's unsigned varint: 7 bits a byte, least significant group first, high bit = more.
fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A non-null string: an i16 length, or in flexible versions an unsigned varint of length + 1.
fn put_string(out: &mut Vec<u8>, s: &str, flexible: bool, field: &str) -> Result<(), String> {
    if s.len() > MAX_STRING_LEN {
        return Err(format!(
            "{field}: {} bytes is longer than the {MAX_STRING_LEN} a Kafka string holds",
            s.len()
        ));
    }
    // Bounded by MAX_STRING_LEN above, so both casts are exact.
    if flexible {
        put_uvarint(out, s.len() as u32 + 1);
    } else {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// An array's length (`None` = null): i32 (-1 null), or in flexible versions an unsigned varint
/// of length + 1 (0 null).
fn put_array_len(
    out: &mut Vec<u8>,
    len: Option<usize>,
    flexible: bool,
    field: &str,
) -> Result<(), String> {
    let len = match len {
        None => -1,
        Some(len) => i32::try_from(len)
            .map_err(|_| format!("{field}: {len} entries do not fit Kafka's i32 count"))?,
    };
    if flexible {
        // len + 1 is in 0..=2^31, which fits a u32.
        put_uvarint(out, (i64::from(len) + 1) as u32);
    } else {
        out.extend_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

/// A cursor over untrusted bytes whose every read names its field on failure.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        let taken = self
            .at
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or_else(|| {
                format!(
                    "{field}: needs {n} bytes at byte {}, but only {} remain",
                    self.at,
                    self.remaining()
                )
            })?;
        self.at += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        let bytes = self.take(N, field)?;
        bytes.try_into().map_err(|_| format!("{field}: short read"))
    }

    fn i8(&mut self, field: &str) -> Result<i8, String> {
        self.array(field).map(i8::from_be_bytes)
    }

    fn i16(&mut self, field: &str) -> Result<i16, String> {
        self.array(field).map(i16::from_be_bytes)
    }

    fn i32(&mut self, field: &str) -> Result<i32, String> {
        self.array(field).map(i32::from_be_bytes)
    }

    fn i64(&mut self, field: &str) -> Result<i64, String> {
        self.array(field).map(i64::from_be_bytes)
    }

    /// An unsigned varint of at most 5 bytes whose value fits a u32.
    fn uvarint(&mut self, field: &str) -> Result<u32, String> {
        let mut value: u32 = 0;
        for i in 0..5u32 {
            let [byte] = self.array::<1>(field)?;
            // The fifth byte may only carry the top 4 bits of a u32.
            if i == 4 && byte > 0x0F {
                return Err(format!("{field}: varint does not fit 32 bits"));
            }
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("{field}: varint does not fit 32 bits"))
    }

    /// A length prefix: `None` for null, else a length that the remaining bytes could hold at
    /// `min_item` bytes per item, so a corrupt count cannot make a caller allocate.
    fn array_len(
        &mut self,
        flexible: bool,
        nullable: bool,
        field: &str,
        min_item: usize,
    ) -> Result<Option<usize>, String> {
        let len = if flexible {
            match self.uvarint(field)? {
                0 => None,
                n => Some(n as usize - 1),
            }
        } else {
            match self.i32(field)? {
                -1 => None,
                n if n < 0 => return Err(format!("{field}: length {n} is negative")),
                n => Some(n as usize),
            }
        };
        match len {
            None if nullable => Ok(None),
            None => Err(format!("{field}: is null")),
            Some(n) if n.saturating_mul(min_item) > self.remaining() => Err(format!(
                "{field}: {n} entries cannot fit in the {} bytes that remain",
                self.remaining()
            )),
            Some(n) => Ok(Some(n)),
        }
    }

    /// A non-null UTF-8 string.
    fn string(&mut self, flexible: bool, field: &str) -> Result<String, String> {
        let len = if flexible {
            match self.uvarint(field)? {
                0 => return Err(format!("{field}: is null")),
                n => n as usize - 1,
            }
        } else {
            let n = self.i16(field)?;
            usize::try_from(n).map_err(|_| format!("{field}: length {n} is negative (null)"))?
        };
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{field}: is not UTF-8"))
    }

    /// A tagged-field section: tags strictly ascending; `known` tags go to `on_known` with their
    /// bytes, any other tag is skipped.
    fn tagged_fields(
        &mut self,
        what: &str,
        known: &[u32],
        mut on_known: impl FnMut(u32, &'a [u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let count = self.uvarint(&format!("{what} tagged field count"))?;
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let tag = self.uvarint(&format!("{what} tag"))?;
            if let Some(p) = previous.filter(|&p| tag <= p) {
                return Err(format!(
                    "{what} tag {tag} does not follow tag {p} in ascending order"
                ));
            }
            previous = Some(tag);
            let size = self.uvarint(&format!("{what} tag {tag} size"))?;
            let field = self.take(size as usize, &format!("{what} tag {tag}"))?;
            if known.contains(&tag) {
                on_known(tag, field)?;
            }
        }
        Ok(())
    }

    /// Errors if bytes are left over: they mean the record is not what its version says.
    fn finish(&self, what: &str) -> Result<(), String> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(format!("{what}: {n} bytes left over after the last field")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may panic on what they check
mod tests {
    use super::*;

    fn value(status: TxnStatus, partitions: Vec<(String, Vec<i32>)>) -> TxnLogValue {
        TxnLogValue {
            producer_id: 4_000,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: 12,
            timeout_ms: 60_000,
            status,
            partitions,
            last_update_ms: 1_700_000_000_500,
            start_ms: 1_700_000_000_000,
            client_transaction_version: 0,
        }
    }

    fn many_partitions() -> Vec<(String, Vec<i32>)> {
        vec![
            ("orders".into(), vec![0, 1, 2, 7]),
            ("payments".into(), vec![3]),
            ("ünïcødé".into(), (0..200).collect()),
            ("".into(), vec![]),
            // Long enough that its varint length takes two bytes.
            ("t".repeat(300), vec![i32::MAX]),
        ]
    }

    #[test]
    fn unsigned_varints() {
        for (v, bytes) in [
            (0u32, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (300, &[0xAC, 0x02]),
            (u32::MAX, &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ] {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            let mut r = Reader::new(bytes);
            assert_eq!(r.uvarint("v").unwrap(), v);
            assert_eq!(r.remaining(), 0);
        }
        // Six bytes, or a fifth byte that continues.
        let e = Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x8F, 0x00]).uvarint("v");
        assert!(e.unwrap_err().contains("does not fit 32 bits"));
        assert!(Reader::new(&[0x80])
            .uvarint("v")
            .unwrap_err()
            .contains("needs 1 bytes"));
    }

    #[test]
    fn overlong_strings_are_refused() {
        let v = value(
            TxnStatus::Ongoing,
            vec![("t".repeat(MAX_STRING_LEN + 1), vec![0])],
        );
        assert!(encode_value(&v).unwrap_err().contains("topic: 32768 bytes"));
        let v = value(
            TxnStatus::Ongoing,
            vec![("t".repeat(MAX_STRING_LEN), vec![0])],
        );
        assert_eq!(decode_value(&encode_value(&v).unwrap()).unwrap(), v);
    }

    #[test]
    fn status_ids_and_names_are_kafkas() {
        let names = [
            "Empty",
            "Ongoing",
            "PrepareCommit",
            "PrepareAbort",
            "CompleteCommit",
            "CompleteAbort",
            "Dead",
            "PrepareEpochFence",
        ];
        for (i, (status, name)) in TxnStatus::ALL.iter().zip(names).enumerate() {
            assert_eq!(status.id(), i as i8);
            assert_eq!(TxnStatus::from_id(i as i8), Some(*status));
            assert_eq!(status.to_string(), name);
        }
        for id in [8, 9, 127, -1, -128] {
            assert_eq!(TxnStatus::from_id(id), None);
        }
    }

    #[test]
    fn values_round_trip() {
        let partition_sets = [vec![], vec![("t".to_string(), vec![5])], many_partitions()];
        for status in TxnStatus::ALL {
            for partitions in &partition_sets {
                let mut v = value(status, partitions.clone());
                if status == TxnStatus::Empty {
                    v.partitions.clear();
                }
                let back = decode_value(&encode_value(&v).unwrap()).unwrap();
                assert_eq!(back, v, "{status}");
            }
        }
        // Every tagged field, alone and together, and extreme values.
        let mut v = value(TxnStatus::Ongoing, many_partitions());
        for (previous, next, ctv) in [(7, -1, 0), (-1, 8, 0), (-1, -1, 2), (i64::MAX, 0, -1)] {
            v.previous_producer_id = previous;
            v.next_producer_id = next;
            v.client_transaction_version = ctv;
            assert_eq!(decode_value(&encode_value(&v).unwrap()).unwrap(), v);
        }
    }

    #[test]
    fn empty_status_stores_no_partitions() {
        let v = value(TxnStatus::Empty, vec![("t".into(), vec![1])]);
        let bytes = encode_value(&v).unwrap();
        // version, producer id, epoch, timeout, status, then the null array: varint 0.
        assert_eq!(bytes[17], 0);
        assert!(decode_value(&bytes).unwrap().partitions.is_empty());
        // An empty array for another status is not null.
        let bytes = encode_value(&value(TxnStatus::CompleteCommit, vec![])).unwrap();
        assert_eq!(bytes[17], 1);
    }

    #[test]
    fn key_golden_bytes() {
        let key = encode_key("tx-1").unwrap();
        // version i16 0 | length i16 4 | "tx-1"
        assert_eq!(key, [0, 0, 0, 4, b't', b'x', b'-', b'1']);
        assert_eq!(decode_key(&key).unwrap(), "tx-1");
        assert_eq!(decode_key(&encode_key("").unwrap()).unwrap(), "");
        let long = "x".repeat(MAX_STRING_LEN);
        assert_eq!(decode_key(&encode_key(&long).unwrap()).unwrap(), long);
        let too_long = encode_key(&"x".repeat(MAX_STRING_LEN + 1)).unwrap_err();
        assert!(too_long.contains("transactional id"), "{too_long}");
    }

    #[rustfmt::skip]
    const GOLDEN_V1: [u8; 62] = [
        0x00, 0x01,                                     // version i16: 1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0F, 0xA0, // producerId i64: 4000
        0x00, 0x0C,                                     // producerEpoch i16: 12
        0x00, 0x00, 0xEA, 0x60,                         // transactionTimeoutMs i32: 60000
        0x01,                                           // transactionStatus i8: Ongoing
        0x03,                                           // partitions: varint 2 + 1 entries
        0x02, b'a',                                     //   topic: varint 1 + 1, "a"
        0x03, 0x00, 0x00, 0x00, 0x00,                   //   partitionIds: 2 + 1 | 0
        0x00, 0x00, 0x00, 0x81,                         //     | 129
        0x00,                                           //   entry tagged fields: none
        0x03, b'b', b'c',                               //   topic: varint 2 + 1, "bc"
        0x01,                                           //   partitionIds: 0 + 1, empty
        0x00,                                           //   entry tagged fields: none
        0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x69, 0xF4, // lastUpdateTimestampMs: 1.7e12 + 500
        0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x00, // startTimestampMs: 1.7e12
        0x01,                                           // tagged fields: 1
        0x00, 0x08,                                     //   tag 0 (previousProducerId), 8 bytes
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, //     -2
        // tag 1 (nextProducerId) is at its default -1: absent
    ];

    fn golden_value() -> TxnLogValue {
        TxnLogValue {
            previous_producer_id: -2,
            ..value(
                TxnStatus::Ongoing,
                vec![("a".into(), vec![0, 129]), ("bc".into(), vec![])],
            )
        }
    }

    #[test]
    fn value_golden_bytes() {
        // Tag 2 is absent too: client transaction version 0 is its default.
        assert_eq!(encode_value(&golden_value()).unwrap(), GOLDEN_V1);
        assert_eq!(decode_value(&GOLDEN_V1).unwrap(), golden_value());

        // With tag 2 as well: the section count becomes 2 and the field follows tag 0.
        let mut v = golden_value();
        v.client_transaction_version = 2;
        let mut want = GOLDEN_V1.to_vec();
        want[51] = 0x02;
        want.extend_from_slice(&[0x02, 0x02, 0x00, 0x02]); // tag 2, 2 bytes, i16 2
        assert_eq!(encode_value(&v).unwrap(), want);
        assert_eq!(decode_value(&want).unwrap(), v);
    }

    #[test]
    fn version_0_value_decodes() {
        #[rustfmt::skip]
        let v0: &[u8] = &[
            0x00, 0x00,                                     // version i16: 0
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0F, 0xA0, // producerId i64: 4000
            0x00, 0x0C,                                     // producerEpoch i16: 12
            0x00, 0x00, 0xEA, 0x60,                         // transactionTimeoutMs i32: 60000
            0x02,                                           // transactionStatus: PrepareCommit
            0x00, 0x00, 0x00, 0x01,                         // partitions: i32 1 entry
            0x00, 0x02, b'b', b'c',                         //   topic: i16 2, "bc"
            0x00, 0x00, 0x00, 0x02,                         //   partitionIds: i32 2
            0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x09, //     4, 9
            0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x69, 0xF4, // lastUpdateTimestampMs
            0x00, 0x00, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x00, // startTimestampMs
        ];
        let want = value(TxnStatus::PrepareCommit, vec![("bc".into(), vec![4, 9])]);
        assert_eq!(decode_value(v0).unwrap(), want);

        // Version 0's null partitions array is i32 -1.
        let mut empty = v0[..17].to_vec();
        empty[16] = 0; // Empty
        empty.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        empty.extend_from_slice(&v0[v0.len() - 16..]);
        assert_eq!(
            decode_value(&empty).unwrap(),
            value(TxnStatus::Empty, vec![])
        );
    }

    #[test]
    fn unknown_tagged_fields_are_skipped() {
        // One partitions entry, then tags 1 (known), 100 and 300 (unknown) in the value and a
        // tag 5 inside the entry.
        let mut bytes = GOLDEN_V1[..17].to_vec();
        bytes.extend_from_slice(&[0x02, 0x02, b'a', 0x02, 0, 0, 0, 3]);
        bytes.extend_from_slice(&[0x01, 0x05, 0x03, 1, 2, 3]); // entry: 1 field, tag 5, 3 bytes
        bytes.extend_from_slice(&GOLDEN_V1[35..51]); // the two timestamps
        bytes.extend_from_slice(&[0x03]);
        bytes.extend_from_slice(&[0x01, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x2A]); // tag 1: 42
        bytes.extend_from_slice(&[0x64, 0x00]); // tag 100, empty
        bytes.extend_from_slice(&[0xAC, 0x02, 0x01, 0xEE]); // tag 300 (varint), 1 byte
        let got = decode_value(&bytes).unwrap();
        assert_eq!(got.next_producer_id, 42);
        assert_eq!(got.partitions, vec![("a".to_string(), vec![3])]);
    }

    fn err(bytes: &[u8]) -> String {
        decode_value(bytes).unwrap_err()
    }

    #[test]
    fn truncated_values_are_errors_at_every_length() {
        let full = encode_value(&TxnLogValue {
            next_producer_id: 9,
            client_transaction_version: 2,
            ..golden_value()
        })
        .unwrap();
        for len in 0..full.len() {
            let e = err(&full[..len]);
            assert!(
                e.contains("needs") || e.contains("cannot fit"),
                "{len}: {e}"
            );
        }
        let mut longer = full.clone();
        longer.push(0);
        assert!(err(&longer).contains("1 bytes left over"));
    }

    #[test]
    fn garbage_values_are_errors_naming_the_field() {
        let g = &GOLDEN_V1;
        let with = |at: usize, byte: u8| {
            let mut b = g.to_vec();
            b[at] = byte;
            b
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (with(1, 2), "value version is 2"),
            (with(0, 0xFF), "value version is -255"),
            (with(16, 8), "transaction status: 8"),
            (with(17, 0x7F), "partitions: 126 entries cannot fit"),
            (with(18, 0), "topic: is null"),
            (with(18, 0x7F), "topic: needs 126 bytes"),
            (with(19, 0xFF), "topic: is not UTF-8"),
            (with(20, 0), "partition ids: is null"),
            (with(21, 0x80), "partition id: -2147483648"),
            (with(51, 0x00), "value: 10 bytes left over"),
            (
                with(53, 0x02),
                "previous producer id (tag 0): needs 8 bytes at byte 0",
            ),
            (with(53, 0x09), "value tag 0: needs 9 bytes"),
        ];
        for (bytes, want) in cases {
            let e = err(&bytes);
            assert!(e.contains(want), "want {want:?}, got {e:?}");
        }
        // A known tag longer than its type, tags out of order or repeated, an overlong varint.
        let tagged = |section: &[u8]| {
            let mut b = g[..51].to_vec();
            b.extend_from_slice(section);
            err(&b)
        };
        let e = tagged(&[0x01, 0x02, 0x03, 0x00, 0x02, 0x09]);
        assert!(
            e.contains("client transaction version (tag 2): 1 bytes left over"),
            "{e}"
        );
        assert!(tagged(&[0x02, 0x09, 0x00, 0x08, 0x00]).contains("tag 8 does not follow tag 9"));
        assert!(tagged(&[0x02, 0x07, 0x00, 0x07, 0x00]).contains("tag 7 does not follow tag 7"));
        let mut b = g[..51].to_vec();
        b.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x1F]);
        assert!(err(&b).contains("does not fit 32 bits"));
        // Version 0 lengths.
        let mut b = [0u8; 21];
        b[20] = 0xFE; // partitions count -2 after an Empty status
        b[17..20].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        assert!(err(&b).contains("partitions: length -2 is negative"));
    }

    #[test]
    fn garbage_keys_are_errors() {
        let cases: [(&[u8], &str); 6] = [
            (&[], "key version: needs 2 bytes"),
            (&[0, 1, 0, 0], "key version is 1"),
            (&[0, 0, 0], "transactional id: needs 2 bytes"),
            (&[0, 0, 0xFF, 0xFF], "length -1 is negative"),
            (&[0, 0, 0, 3, b'a'], "transactional id: needs 3 bytes"),
            (&[0, 0, 0, 1, b'a', b'b'], "key: 1 bytes left over"),
        ];
        for (bytes, want) in cases {
            let e = decode_key(bytes).unwrap_err();
            assert!(e.contains(want), "want {want:?}, got {e:?}");
        }
        assert!(decode_key(&[0, 0, 0, 1, 0xC3])
            .unwrap_err()
            .contains("not UTF-8"));
    }

    proptest::proptest! {
        /// Arbitrary bytes, and single-byte corruptions of a valid value, never panic.
        #[test]
        fn decoding_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            at in 0..GOLDEN_V1.len(),
            byte in proptest::num::u8::ANY,
        ) {
            let _ = decode_key(&bytes);
            let _ = decode_value(&bytes);
            let mut corrupt = GOLDEN_V1;
            corrupt[at] = byte;
            if let Ok(v) = decode_value(&corrupt) {
                // Whatever decodes re-encodes to a value that decodes the same.
                let again = decode_value(&encode_value(&v).unwrap()).unwrap();
                proptest::prop_assert_eq!(again, v);
            }
        }
    }
}
