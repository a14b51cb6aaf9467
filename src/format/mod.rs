//! Kafka RecordBatch v2, byte for byte.
//!
//! Everything annals stores and returns travels as Kafka's on-disk and on-wire batch format
//! (magic 2), so segments written here can be read by Kafka tooling and vice versa. A batch is a
//! fixed [`HEADER_LEN`]-byte header followed by its records, optionally compressed as one blob:
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records...
//! ```
//!
//! All integers are big-endian; the CRC is CRC-32C over everything from `attributes` to the end
//! of the batch, which leaves the base offset, length, leader epoch and magic outside it: the log
//! can assign offsets ([`set_base_offset`]) without re-checksumming. Inside the records section
//! each record is a zigzag-varint length prefix followed by attributes, timestamp and offset
//! deltas (relative to the batch's base timestamp and base offset), key, value and headers.
//!
//! The pieces:
//!
//! - [`BatchBuilder`] (and the one-shot [`encode_batch`]) encode records into a batch,
//!   compressing with [`Compression::Lz4`] (Kafka's LZ4 frame layout) or [`Compression::Zstd`].
//! - [`BatchHeader::parse`], [`peek_batch_len`] and [`verify_crc`] look at a batch without
//!   decoding its records; [`set_base_offset`] and [`set_log_append_time`] are the two edits the
//!   log makes on append.
//! - [`decode_batch`] validates and decodes one whole batch into
//!   [`StoredRecord`]s whose keys, values and header values are zero-copy
//!   slices of the batch (or of its one decompressed buffer).
//! - [`encode_end_txn_marker_batch`] and [`decode_control_record`] write and read the control
//!   batches that end a transaction; [`AbortedTxn`] is one entry of a segment's `.txnindex`.
//! - [`offset_index_entries`] and [`time_index_entries`] read a segment's `.index` and
//!   `.timeindex` the way annals opens them: the valid leading run, then only zeros.
//!
//! Decoding treats its input as untrusted: it never panics, checks every length against the bytes
//! actually present, and bounds decompressed output by a caller-supplied limit, so a corrupt or
//! hostile batch costs an error, not a crash or a huge allocation.
//!
//! Compatibility notes, where annals is stricter or looser than Kafka's own reader:
//!
//! - Stricter: a varint whose last byte carries bits beyond its type, a record whose declared
//!   length disagrees with its fields, bytes after the last record, and offset deltas that do not
//!   strictly increase up to `lastOffsetDelta` are all errors.
//! - Looser, as Kafka: the per-record attributes byte is ignored, and offset deltas may have gaps
//!   (compaction leaves them). A batch with zero records is valid.
//! - LZ4: any frame lz4_flex reads (any block size, linked or independent blocks, optional
//!   checksums and content size, concatenated frames) except frames that need a dictionary,
//!   which no Kafka client writes. zstd: any standard frame whose window is at most
//!   8 MiB, or up to 128 MiB when the caller's decompression cap is that large.
// These bytes come from disk or from a caller: a malformed input must become an error, never
// a panic, so nothing here may unwrap or index unchecked.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod builder;
mod codec;
mod control;
mod decode;
mod header;
mod index;
mod payload;
mod record;
mod varint;
mod view;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub(crate) use builder::encode_batch_measured;
pub use builder::{encode_batch, record_encoded_len, BatchBuilder};
pub use control::{
    decode_control_record, encode_end_txn_marker_batch, AbortedTxn, ControlRecord, ControlType,
    EndTxnMarker, ABORTED_TXN_LEN,
};
pub use decode::decode_batch;
pub use header::{
    peek_batch_len, set_base_offset, set_base_sequence, set_log_append_time, verify_crc,
};
pub use index::{
    offset_index_entries, time_index_entries, IndexEntries, OffsetIndexEntry, Stray,
    TimeIndexEntry, OFFSET_INDEX_ENTRY_LEN, TIME_INDEX_ENTRY_LEN,
};
pub use payload::Payload;
pub(crate) use record::{as_str, last_header};
pub use record::{Header, Record, StoredRecord};
pub use view::{BatchView, RecordRef, RecordRefs};

use crate::error::{Error, Result};

/// Bytes before the batch-length field ends: base offset (8) + batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header, from base offset through record count.
pub const HEADER_LEN: usize = 61;
/// The only magic value annals reads and writes.
pub const MAGIC_V2: i8 = 2;
/// `producer_id` of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;
/// `producer_epoch` of a batch written without idempotence.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `base_sequence` of a batch written without idempotence.
pub const NO_SEQUENCE: i32 = -1;
/// `partition_leader_epoch` of a batch that no leader has stamped (Kafka producers send this).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// Attribute bits 0-2: the compression codec id.
const CODEC_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are LogAppendTime.
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
/// Attribute bit 4: the batch belongs to a transaction.
const TRANSACTIONAL_BIT: i16 = 0x10;
/// Attribute bit 5: the batch holds control records (transaction markers).
const CONTROL_BIT: i16 = 0x20;

/// Per-batch compression codec (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
// `{"Zstd": {"level": 3}}`; a misspelt `level` is an error.
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub enum Compression {
    /// Codec id 0.
    #[default]
    None,
    /// Codec id 3: the LZ4 *frame* format, as Kafka writes it.
    Lz4,
    /// Codec id 4: a zstd frame at this level (1-22; 3 is zstd's default).
    Zstd { level: i32 },
}

impl Compression {
    /// The codec id stored in attribute bits 0-2.
    pub fn codec_id(&self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 3,
            Compression::Zstd { .. } => 4,
        }
    }

    /// zstd at its default level, 3 (also Kafka's default `compression.zstd.level`).
    pub const fn zstd() -> Self {
        Compression::Zstd { level: 3 }
    }

    /// The codec for a codec id, as read from a batch. The zstd level is not stored in a batch,
    /// so id 4 maps to [`Compression::zstd()`]. Gzip (1), snappy (2) and the undefined ids 5-7
    /// are [`Error::UnsupportedCompression`].
    pub fn from_codec_id(codec: u8) -> Result<Self> {
        match codec {
            0 => Ok(Compression::None),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::zstd()),
            codec => Err(Error::UnsupportedCompression { codec }),
        }
    }
}

/// How record timestamps were assigned (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TimestampType {
    /// The producer's timestamp.
    #[default]
    CreateTime,
    /// The time the log appended the batch; every record reads back with the batch's max timestamp.
    LogAppendTime,
}

/// The fixed 61-byte header of a RecordBatch v2.
///
/// Fields that are signed on the wire but can never be negative in a valid batch (offsets,
/// lengths, counts) are unsigned here; [`BatchHeader::parse`] rejects negative values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    /// Bytes after the batch-length field (so the whole batch is `LOG_OVERHEAD + batch_length`).
    pub batch_length: u32,
    pub partition_leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: u32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

impl BatchHeader {
    /// Bytes the whole batch occupies: `LOG_OVERHEAD + batch_length`.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record the batch covers: `base_offset + last_offset_delta`.
    ///
    /// Cannot overflow for a parsed header: the base offset is at most `i64::MAX` and the delta at
    /// most `i32::MAX`.
    pub fn last_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.last_offset_delta))
    }

    /// The offset the batch after this one starts at: `last_offset + 1`.
    pub fn next_offset(&self) -> u64 {
        self.last_offset().saturating_add(1)
    }

    /// Compression codec id (attribute bits 0-2), whether or not annals supports it.
    pub fn codec_id(&self) -> u8 {
        // Masked to 3 bits, so the cast cannot truncate anything meaningful.
        (self.attributes & CODEC_MASK) as u8
    }

    /// The batch's codec; [`Error::UnsupportedCompression`] for gzip, snappy and ids 5-7. The
    /// zstd level is not stored in a batch and is reported as 3.
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_codec_id(self.codec_id())
    }

    /// Attribute bit 3.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Attribute bit 4.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Attribute bit 5.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Everything about a batch except its records.
///
/// The [`Default`] is an uncompressed, non-idempotent, non-transactional CreateTime batch at
/// offset 0 with no leader epoch, the same fields a plain Kafka producer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    pub base_offset: u64,
    pub compression: Compression,
    pub timestamp_type: TimestampType,
    pub partition_leader_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub control: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            base_offset: 0,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
        }
    }
}

impl BatchOptions {
    /// The attributes field these options produce.
    fn attributes(&self) -> i16 {
        let mut attributes = i16::from(self.compression.codec_id());
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= TIMESTAMP_TYPE_BIT;
        }
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        if self.control {
            attributes |= CONTROL_BIT;
        }
        attributes
    }
}

/// The one constructor of malformed-input errors, so every reason reads the same way.
fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidBatch {
        reason: reason.into(),
    }
}
