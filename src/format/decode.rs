//! Decoding one whole batch into [`StoredRecord`]s.
//!
//! The input is untrusted (it may come from a corrupt segment or a hostile client), so every
//! length is checked against the bytes actually present, with checked arithmetic, before it is
//! used; nothing here indexes a slice directly. Allocation is proportional to the input: the
//! output vector reserves at most one entry per 7 bytes (the smallest possible record), headers
//! at most one per 2 bytes, and compressed sections are inflated under the caller's cap.
//!
//! Keys, values and header values are `Bytes::slice`s of the batch (or of its one decompressed
//! buffer), so a decoded record costs no copy of its payload, and a record without headers costs
//! no allocation beyond its slot in `out`.

use std::ops::Range;

use bytes::Bytes;

use super::header::compute_crc;
use super::record::{Header, StoredRecord};
use super::varint::{read_varint, read_varlong};
use super::{codec, invalid, BatchHeader, Compression, TimestampType, HEADER_LEN};
use crate::error::{Error, Result};

/// The smallest possible record: 1-byte length, attributes, timestamp delta, offset delta, null
/// key, null value and header count.
const MIN_RECORD_LEN: usize = 7;
/// The smallest possible header: an empty key and a null value.
const MIN_HEADER_LEN: usize = 2;

/// Decodes one whole batch: `batch` must be exactly its bytes.
///
/// Verifies the CRC, decompresses (output capped at `max_uncompressed` bytes: a section that
/// inflates beyond it is `InvalidBatch`, never a large allocation; uncompressed batches are
/// zero-copy and not subject to the cap), decodes every record, and checks that the number of
/// records matches the header and that offset deltas strictly increase and end at
/// `last_offset_delta`. Pushes the records whose offset is at least `from_offset` onto `out`,
/// with `offset = base_offset + delta` and `timestamp = base_timestamp + delta` (or
/// `max_timestamp` for a LogAppendTime batch). Returns the header.
///
/// Every record is validated, including those below `from_offset`. On error `out` is left as it
/// was. Header keys must be UTF-8. The per-record attributes byte is ignored, as in Kafka.
pub fn decode_batch(
    batch: &Bytes,
    from_offset: u64,
    max_uncompressed: usize,
    out: &mut Vec<StoredRecord>,
) -> Result<BatchHeader> {
    let (header, records) = open_batch(batch, max_uncompressed)?;
    let before = out.len();
    let decoded = RecordsDecoder::new(&header, &records, from_offset).decode_into(out);
    if let Err(e) = decoded {
        out.truncate(before);
        return Err(e);
    }
    Ok(header)
}

/// Checks a whole batch's length and CRC and returns its header and its records section
/// (decompressed under `max_uncompressed`; a zero-copy slice when uncompressed).
pub(super) fn open_batch(batch: &Bytes, max_uncompressed: usize) -> Result<(BatchHeader, Bytes)> {
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
    let records = match header.compression()? {
        Compression::None => batch.slice(HEADER_LEN..),
        compression => {
            let section = batch.get(HEADER_LEN..).unwrap_or(&[]);
            Bytes::from(codec::decompress(compression, section, max_uncompressed)?)
        }
    };
    Ok((header, records))
}

/// Decoding state for one records section.
struct RecordsDecoder<'a> {
    parser: RecordParser,
    /// The records section; decoded fields are slices of it.
    records: &'a Bytes,
    /// Records with a smaller offset delta are validated but not returned.
    first_wanted_delta: u64,
}

/// Why a record is invalid, before it is turned into an `Error` (off the hot path).
#[cold]
pub(super) fn record_error(index: usize, reason: &str) -> Error {
    invalid(format!("record {index}: {reason}"))
}

impl<'a> RecordsDecoder<'a> {
    fn new(header: &BatchHeader, records: &'a Bytes, from_offset: u64) -> Self {
        RecordsDecoder {
            parser: RecordParser::new(header),
            records,
            first_wanted_delta: from_offset.saturating_sub(header.base_offset),
        }
    }

    fn decode_into(&self, out: &mut Vec<StoredRecord>) -> Result<()> {
        let data: &[u8] = self.records;
        let count = self.parser.record_count;
        if u64::from(self.parser.last_offset_delta) >= self.first_wanted_delta {
            // The count field is untrusted; the bytes present bound how many records can exist.
            out.reserve(count.min(data.len() / MIN_RECORD_LEN));
        }
        let mut pos = 0;
        let mut previous_delta: Option<u32> = None;
        for index in 0..count {
            let raw = self
                .parser
                .parse(data, &mut pos, previous_delta)
                .map_err(|reason| record_error(index, reason))?;
            previous_delta = Some(raw.offset_delta);
            if u64::from(raw.offset_delta) >= self.first_wanted_delta {
                out.push(self.build(data, raw));
            }
        }
        self.parser.check_end(previous_delta, pos, data.len())
    }

    /// An owned record from a parsed one: its fields become slices of the records section.
    #[inline(always)]
    fn build(&self, data: &[u8], raw: RawRecord) -> StoredRecord {
        let mut headers = Vec::new();
        if raw.header_count > 0 {
            headers.reserve(raw.header_count);
            // Validated by `parse`, so the walk cannot fail here.
            let _ = walk_headers(data, raw.headers.clone(), raw.header_count, |key, value| {
                headers.push(Header {
                    key: key.to_owned(),
                    value: value.map(|range| self.records.slice(range)),
                });
            });
        }
        StoredRecord {
            offset: self.parser.base_offset + u64::from(raw.offset_delta),
            timestamp: raw.timestamp,
            key: raw.key.map(|range| self.records.slice(range)),
            value: raw.value.map(|range| self.records.slice(range)),
            headers,
        }
    }
}

/// One record's fields, located (as ranges) in its records section: what both the owned decoder
/// and the borrowing [`BatchView`](super::BatchView) build records from.
#[derive(Debug, Clone)]
pub(super) struct RawRecord {
    pub offset_delta: u32,
    pub timestamp: i64,
    pub key: Option<Range<usize>>,
    pub value: Option<Range<usize>>,
    /// The headers' bytes (after their count), already validated.
    pub headers: Range<usize>,
    pub header_count: usize,
}

/// What parsing a record needs from its batch header.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecordParser {
    pub base_offset: u64,
    pub record_count: usize,
    pub last_offset_delta: u32,
    base_timestamp: i64,
    max_timestamp: i64,
    log_append_time: bool,
}

impl RecordParser {
    pub(super) fn new(header: &BatchHeader) -> Self {
        RecordParser {
            base_offset: header.base_offset,
            record_count: header.record_count as usize,
            last_offset_delta: header.last_offset_delta,
            base_timestamp: header.base_timestamp,
            max_timestamp: header.max_timestamp,
            log_append_time: header.timestamp_type() == TimestampType::LogAppendTime,
        }
    }

    /// Parses and validates the record at `*pos` (headers included: UTF-8 keys, lengths),
    /// advancing past it.
    #[inline(always)]
    pub(super) fn parse(
        &self,
        data: &[u8],
        pos: &mut usize,
        previous_delta: Option<u32>,
    ) -> Result<RawRecord, &'static str> {
        let len = read_varint(data, pos)?;
        let len = usize::try_from(len).map_err(|_| "negative record length")?;
        let end = pos
            .checked_add(len)
            .filter(|&end| end <= data.len())
            .ok_or("record length runs past the end of the records section")?;
        // From here on every read is confined to this record.
        let rec = data
            .get(..end)
            .ok_or("record length runs past the end of the records section")?;

        // Attributes: unused in v2 and ignored by Kafka's reader as well.
        if *pos >= end {
            return Err("record ends before its attributes");
        }
        *pos += 1;
        let timestamp_delta = read_varlong(rec, pos)?;
        let offset_delta = read_varint(rec, pos)?;
        let offset_delta = u32::try_from(offset_delta).map_err(|_| "negative offset delta")?;
        if previous_delta.is_some_and(|previous| offset_delta <= previous) {
            return Err("offset deltas do not strictly increase");
        }
        if offset_delta > self.last_offset_delta {
            return Err("offset delta exceeds the header's last offset delta");
        }
        let timestamp = if self.log_append_time {
            self.max_timestamp
        } else {
            self.base_timestamp
                .checked_add(timestamp_delta)
                .ok_or("timestamp delta overflows")?
        };
        let key = read_nullable(rec, pos)?;
        let value = read_nullable(rec, pos)?;
        let count = read_varint(rec, pos)?;
        let header_count = usize::try_from(count).map_err(|_| "negative header count")?;
        let headers_start = *pos;
        if header_count > 0 {
            *pos = walk_headers(rec, headers_start..end, header_count, |_, _| {})?;
        }
        if *pos != end {
            return Err("record length does not match its fields");
        }
        Ok(RawRecord {
            offset_delta,
            timestamp,
            key,
            value,
            headers: headers_start..end,
            header_count,
        })
    }

    /// The checks after the last record: the last delta matches the header and nothing follows.
    pub(super) fn check_end(&self, last: Option<u32>, pos: usize, len: usize) -> Result<()> {
        if let Some(last) = last {
            if last != self.last_offset_delta {
                return Err(invalid(format!(
                    "last record has offset delta {last} but the header says {}",
                    self.last_offset_delta
                )));
            }
        }
        if pos != len {
            return Err(invalid(format!(
                "{} bytes follow the {} records the header announces",
                len - pos,
                self.record_count
            )));
        }
        Ok(())
    }
}

/// Walks `count` headers in `rec[range]`, calling `f(key, value range)` for each; checks
/// lengths and that keys are UTF-8 and not null. Returns the position after the last header.
pub(super) fn walk_headers<'r>(
    rec: &'r [u8],
    range: Range<usize>,
    count: usize,
    mut f: impl FnMut(&'r str, Option<Range<usize>>),
) -> Result<usize, &'static str> {
    // Every header takes at least MIN_HEADER_LEN bytes: a count beyond that is a lie, refused
    // before any work proportional to it.
    if count > range.len() / MIN_HEADER_LEN {
        return Err("more headers than bytes to hold them");
    }
    let rec = rec
        .get(..range.end)
        .ok_or("headers run past their record")?;
    let mut pos = range.start;
    for _ in 0..count {
        let key = read_nullable(rec, &mut pos)?.ok_or("null header key")?;
        let key = rec
            .get(key)
            .ok_or("header key runs past the end of its record")?;
        let key = std::str::from_utf8(key).map_err(|_| "header key is not valid UTF-8")?;
        let value = read_nullable(rec, &mut pos)?;
        f(key, value);
    }
    Ok(pos)
}

/// Reads a length-prefixed nullable byte string and returns where its bytes lie in `rec` (`None`
/// for the -1 length that means null), advancing `*pos` past them.
#[inline]
fn read_nullable(rec: &[u8], pos: &mut usize) -> Result<Option<Range<usize>>, &'static str> {
    let len = read_varint(rec, pos)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "length below -1")?;
    let start = *pos;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= rec.len())
        .ok_or("field runs past the end of its record")?;
    *pos = end;
    Ok(Some(start..end))
}
