//! The fixed 61-byte batch header: parsing, writing, the CRC, and the two in-place edits the log
//! makes to a batch on append (offset assignment and LogAppendTime).

use super::{invalid, BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, TIMESTAMP_TYPE_BIT};
use crate::error::Result;

// Byte positions of the header fields, from the start of the batch.
const BASE_OFFSET_AT: usize = 0;
const LENGTH_AT: usize = 8;
const EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC covers everything from here to the end of the batch.
pub(crate) const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// Smallest legal `batch_length`: a header with no records.
const MIN_BATCH_LENGTH: usize = HEADER_LEN - LOG_OVERHEAD;

// Fixed-width big-endian accessors on a header-sized array. The positions are the constants above,
// all of which leave room for their field inside HEADER_LEN, so the indexing cannot fail.
#[allow(clippy::indexing_slicing)] // see above: every `at` is a constant inside HEADER_LEN
fn get<const N: usize>(h: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[at..at + N]);
    out
}

#[allow(clippy::indexing_slicing)] // see above
fn put(h: &mut [u8; HEADER_LEN], at: usize, bytes: &[u8]) {
    h[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The first `HEADER_LEN` bytes of `buf` as an array, or an error naming what is short.
fn header_bytes(buf: &[u8]) -> Result<&[u8; HEADER_LEN]> {
    buf.get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| {
            invalid(format!(
                "{} bytes are too few for a {HEADER_LEN}-byte batch header",
                buf.len()
            ))
        })
}

/// A non-negative wire i32 as u32, or an error naming the field.
fn non_negative(value: i32, field: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| invalid(format!("negative {field} {value}")))
}

impl BatchHeader {
    /// Parses the first [`HEADER_LEN`] bytes of `buf` (which may hold more).
    ///
    /// Checks that the magic is 2, that `batch_length` covers at least a header, and that the base
    /// offset, last offset delta and record count are not negative. Does *not* check the CRC (see
    /// [`verify_crc`]) nor that `buf` holds the whole batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        let h = header_bytes(buf)?;
        let magic = i8::from_be_bytes(get(h, MAGIC_AT));
        if magic != MAGIC_V2 {
            return Err(invalid(format!(
                "magic byte is {magic}; only RecordBatch v2 (magic 2) is supported"
            )));
        }
        let batch_length = non_negative(i32::from_be_bytes(get(h, LENGTH_AT)), "batch length")?;
        if (batch_length as usize) < MIN_BATCH_LENGTH {
            return Err(invalid(format!(
                "batch length {batch_length} is shorter than a batch header"
            )));
        }
        let base_offset = i64::from_be_bytes(get(h, BASE_OFFSET_AT));
        let base_offset = u64::try_from(base_offset)
            .map_err(|_| invalid(format!("negative base offset {base_offset}")))?;
        let last_offset_delta = non_negative(
            i32::from_be_bytes(get(h, LAST_OFFSET_DELTA_AT)),
            "last offset delta",
        )?;
        let record_count =
            non_negative(i32::from_be_bytes(get(h, RECORD_COUNT_AT)), "record count")?;
        Ok(BatchHeader {
            base_offset,
            batch_length,
            partition_leader_epoch: i32::from_be_bytes(get(h, EPOCH_AT)),
            crc: u32::from_be_bytes(get(h, CRC_AT)),
            attributes: i16::from_be_bytes(get(h, ATTRIBUTES_AT)),
            last_offset_delta,
            base_timestamp: i64::from_be_bytes(get(h, BASE_TIMESTAMP_AT)),
            max_timestamp: i64::from_be_bytes(get(h, MAX_TIMESTAMP_AT)),
            producer_id: i64::from_be_bytes(get(h, PRODUCER_ID_AT)),
            producer_epoch: i16::from_be_bytes(get(h, PRODUCER_EPOCH_AT)),
            base_sequence: i32::from_be_bytes(get(h, BASE_SEQUENCE_AT)),
            record_count,
        })
    }

    /// The header as it sits on the wire, magic included. The caller is responsible for the
    /// fields being in range (the builder checks them before calling).
    pub(crate) fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        put(&mut h, BASE_OFFSET_AT, &self.base_offset.to_be_bytes());
        put(&mut h, LENGTH_AT, &self.batch_length.to_be_bytes());
        put(&mut h, EPOCH_AT, &self.partition_leader_epoch.to_be_bytes());
        put(&mut h, MAGIC_AT, &MAGIC_V2.to_be_bytes());
        put(&mut h, CRC_AT, &self.crc.to_be_bytes());
        put(&mut h, ATTRIBUTES_AT, &self.attributes.to_be_bytes());
        put(
            &mut h,
            LAST_OFFSET_DELTA_AT,
            &self.last_offset_delta.to_be_bytes(),
        );
        put(
            &mut h,
            BASE_TIMESTAMP_AT,
            &self.base_timestamp.to_be_bytes(),
        );
        put(&mut h, MAX_TIMESTAMP_AT, &self.max_timestamp.to_be_bytes());
        put(&mut h, PRODUCER_ID_AT, &self.producer_id.to_be_bytes());
        put(
            &mut h,
            PRODUCER_EPOCH_AT,
            &self.producer_epoch.to_be_bytes(),
        );
        put(&mut h, BASE_SEQUENCE_AT, &self.base_sequence.to_be_bytes());
        put(&mut h, RECORD_COUNT_AT, &self.record_count.to_be_bytes());
        h
    }
}

/// The total length of the batch starting at `buf`, read from its first [`LOG_OVERHEAD`] bytes.
///
/// `Ok(None)` when fewer than `LOG_OVERHEAD` bytes are available (the caller should read more);
/// an error when the length field is negative or too small to hold a batch header, since no
/// amount of further reading can make such a batch valid.
pub fn peek_batch_len(buf: &[u8]) -> Result<Option<usize>> {
    let Some(&[a, b, c, d]) = buf.get(LENGTH_AT..LOG_OVERHEAD) else {
        return Ok(None);
    };
    let length = i32::from_be_bytes([a, b, c, d]);
    let length = non_negative(length, "batch length")? as usize;
    if length < MIN_BATCH_LENGTH {
        return Err(invalid(format!(
            "batch length {length} is shorter than a batch header"
        )));
    }
    Ok(Some(LOG_OVERHEAD + length))
}

/// CRC-32C of the CRC-covered part of a batch (attributes to end). `batch` must be at least
/// `ATTRIBUTES_AT` bytes long; callers check.
pub(crate) fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or(&[]))
}

/// Checks the CRC of one whole batch: `batch` must be exactly the bytes its length field
/// announces, and their CRC-32C must match the stored one.
pub fn verify_crc(batch: &[u8]) -> Result<()> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(invalid(format!(
            "batch length field says {} bytes but {} were given",
            header.total_len(),
            batch.len()
        )));
    }
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(invalid(format!(
            "CRC mismatch: stored {:#010x}, computed {actual:#010x}",
            header.crc
        )));
    }
    Ok(())
}

/// Overwrites the 4 bytes at `at` with `crc`. No-op if `batch` is too short.
fn store_crc(batch: &mut [u8], crc: u32) {
    if let Some(dst) = batch.get_mut(CRC_AT..ATTRIBUTES_AT) {
        dst.copy_from_slice(&crc.to_be_bytes());
    }
}

/// Writes the header of a finished batch occupying exactly `batch` and fills in its CRC, which
/// covers the header's tail as well as the records, so the records must already be in place.
pub(crate) fn seal(batch: &mut [u8], header: &mut BatchHeader) {
    if let Some(dst) = batch.get_mut(..HEADER_LEN) {
        dst.copy_from_slice(&header.to_bytes());
    }
    header.crc = compute_crc(batch);
    store_crc(batch, header.crc);
}

/// Rewrites the base offset of the batch starting at `batch[0]`, in place.
///
/// The base offset is outside the CRC, so the checksum stays valid. Offsets above `i64::MAX`
/// cannot be represented on the wire (the batch would then fail to parse), and a slice shorter
/// than the 8-byte field is left untouched; the log never produces either.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    if let Some(dst) = batch.get_mut(BASE_OFFSET_AT..LENGTH_AT) {
        dst.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Marks the batch (exactly `batch`) as LogAppendTime with `timestamp` as its max timestamp and
/// recomputes the CRC, as Kafka's broker does for topics with `message.timestamp.type =
/// LogAppendTime`. Every record then reads back with `timestamp`.
///
/// The records are not touched, only attribute bit 3, `maxTimestamp` and the CRC. A slice shorter
/// than a batch header is left untouched.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    rewrite_header(batch, |h| {
        let attributes = i16::from_be_bytes(get(h, ATTRIBUTES_AT)) | TIMESTAMP_TYPE_BIT;
        put(h, ATTRIBUTES_AT, &attributes.to_be_bytes());
        put(h, MAX_TIMESTAMP_AT, &timestamp.to_be_bytes());
    });
}

/// Sets the batch's base sequence (and so its records' sequences) and recomputes the CRC. The
/// producer assigns sequences when a batch is written, not when it is filled, so a batch that
/// fails for good leaves no gap in the sequence the partition expects. A slice shorter than a
/// batch header is left untouched.
pub fn set_base_sequence(batch: &mut [u8], base_sequence: i32) {
    rewrite_header(batch, |h| {
        put(h, BASE_SEQUENCE_AT, &base_sequence.to_be_bytes())
    });
}

/// Edits CRC-covered header fields in place and recomputes the CRC; a slice shorter than a
/// header is left untouched.
fn rewrite_header(batch: &mut [u8], edit: impl FnOnce(&mut [u8; HEADER_LEN])) {
    let Some(h) = batch
        .get_mut(..HEADER_LEN)
        .and_then(|h| <&mut [u8; HEADER_LEN]>::try_from(h).ok())
    else {
        return;
    };
    edit(h);
    let crc = compute_crc(batch);
    store_crc(batch, crc);
}
