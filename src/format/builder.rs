//! Encoding: [`BatchBuilder`] appends records one at a time into a single buffer (no per-record
//! allocation), then compresses and seals the batch with its header and CRC.

use std::mem::MaybeUninit;

use super::header::seal;
use super::record::{Header, Record};
use super::varint::{
    length_len, put_varint, put_varlong, varint_len, varlong_len, write_bytes, Packed, Varint,
    PUT_SLACK,
};
use super::{codec, BatchHeader, BatchOptions, Compression, HEADER_LEN, LOG_OVERHEAD};
use crate::error::{Error, Result};

/// Largest byte count a length or count field can hold.
const MAX_WIRE_LEN: usize = i32::MAX as usize;

/// Encoded size of a nullable byte string: its length varint (-1 for null) plus its bytes.
#[inline]
fn nullable_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint_len(-1),
        Some(b) => length_len(b.len()) + b.len(),
    }
}

/// Size of a record without its own length prefix.
#[inline]
fn body_len(record: &Record, timestamp_delta: i64, offset_delta: i32) -> usize {
    let len = 1 // attributes
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + nullable_len(record.key.as_deref())
        + nullable_len(record.value.as_deref())
        + length_len(record.headers.len());
    if record.headers.is_empty() {
        len
    } else {
        len + headers_len(&record.headers)
    }
}

/// Size of the headers after their count.
fn headers_len(headers: &[Header]) -> usize {
    headers.iter().fold(0, |len, header| {
        len + length_len(header.key.len())
            + header.key.len()
            + nullable_len(header.value.as_deref())
    })
}

/// Bytes `record` takes inside a batch (uncompressed), including its own length varint, when
/// written `timestamp_delta` ms after the batch's base timestamp at `offset_delta` past its base
/// offset.
pub fn record_encoded_len(record: &Record, timestamp_delta: i64, offset_delta: i32) -> usize {
    let body = body_len(record, timestamp_delta, offset_delta);
    length_len(body) + body
}

/// Most bytes a record's fields other than its payload can take: length (5), attributes (1),
/// timestamp delta (10), offset delta (5), key and value lengths (5 each) and header count (5).
const RECORD_OVERHEAD_MAX: usize = 36;
/// Most bytes a header's two length varints can take.
const HEADER_OVERHEAD_MAX: usize = 10;

/// At least [`record_encoded_len`] whatever the deltas. Only sizes a buffer, so it sizes no
/// varint: summing payload lengths is all it costs.
fn record_len_bound(record: &Record) -> usize {
    let len = |b: Option<&[u8]>| b.map_or(0, <[u8]>::len);
    let fields = RECORD_OVERHEAD_MAX
        .saturating_add(len(record.key.as_deref()))
        .saturating_add(len(record.value.as_deref()));
    record.headers.iter().fold(fields, |acc, header| {
        acc.saturating_add(HEADER_OVERHEAD_MAX)
            .saturating_add(header.key.len())
            .saturating_add(len(header.value.as_deref()))
    })
}

/// Rejects records whose fields cannot be expressed on the wire, before anything is written, so
/// a failed push leaves the builder unchanged.
fn check_encodable(record: &Record) -> Result<()> {
    let too_long = |what: &str, len: usize| {
        Err(Error::InvalidArgument(format!(
            "record {what} of {len} bytes exceeds the format's {MAX_WIRE_LEN}-byte limit"
        )))
    };
    if let Some(key) = &record.key {
        if key.len() > MAX_WIRE_LEN {
            return too_long("key", key.len());
        }
    }
    if let Some(value) = &record.value {
        if value.len() > MAX_WIRE_LEN {
            return too_long("value", value.len());
        }
    }
    if record.headers.len() > MAX_WIRE_LEN {
        return too_long("header count", record.headers.len());
    }
    for header in &record.headers {
        if header.key.len() > MAX_WIRE_LEN {
            return too_long("header key", header.key.len());
        }
        if let Some(value) = &header.value {
            if value.len() > MAX_WIRE_LEN {
                return too_long("header value", value.len());
            }
        }
    }
    Ok(())
}

/// Lengths already checked against `MAX_WIRE_LEN` fit an i32.
fn wire_len(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

#[inline]
fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, wire_len(b.len()));
            out.extend_from_slice(b);
        }
    }
}

/// Incremental encoder of one batch; the producer pushes records one at a time as callers send
/// them, then [`finish_into`](Self::finish_into) seals the batch.
///
/// Records are written straight into one buffer that already reserves room for the header, so
/// an uncompressed batch is finished without copying its records again when the output is
/// empty.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    options: BatchOptions,
    /// Whatever preceded the batch (see [`encode_batch`]), then a header placeholder at `start`,
    /// then the uncompressed records.
    buf: Vec<u8>,
    start: usize,
    count: u32,
    /// Offset delta of the next record: `count` unless records were pushed at explicit deltas.
    next_delta: u32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new(options: BatchOptions) -> Self {
        Self::with_capacity(options, 0)
    }

    /// An empty builder whose buffer has room for `record_bytes` of records before it reallocates
    /// (see [`record_encoded_len`]).
    pub fn with_capacity(options: BatchOptions, record_bytes: usize) -> Self {
        Self::after(options, Vec::new(), record_bytes)
    }

    /// An empty builder that encodes into `buf`, cleared (a buffer an earlier batch grew, so
    /// this one need not grow it again), with room for at least `record_bytes` of records.
    pub(crate) fn reusing(options: BatchOptions, mut buf: Vec<u8>, record_bytes: usize) -> Self {
        buf.clear();
        Self::after(options, buf, record_bytes)
    }

    /// A builder that writes its batch after the existing contents of `buf`.
    fn after(options: BatchOptions, mut buf: Vec<u8>, record_bytes: usize) -> Self {
        let start = buf.len();
        // The varint writers need a little room past the last byte they keep.
        buf.reserve(
            HEADER_LEN
                .saturating_add(record_bytes)
                .saturating_add(PUT_SLACK),
        );
        buf.resize(start + HEADER_LEN, 0);
        BatchBuilder {
            options,
            buf,
            start,
            count: 0,
            next_delta: 0,
            base_timestamp: None,
            max_timestamp: 0,
        }
    }

    /// Adds `record` with its final `timestamp` (ms since the epoch). The first record's
    /// timestamp becomes the batch's base timestamp; later records may be earlier or later, as
    /// timestamp deltas are signed. `record.timestamp` is ignored in favour of `timestamp`.
    ///
    /// Errors (leaving the builder unchanged) on a negative timestamp, on a field longer than
    /// `i32::MAX` bytes, or when the batch would exceed `i32::MAX` records or bytes.
    pub fn push(&mut self, record: &Record, timestamp: i64) -> Result<()> {
        self.push_at(record, timestamp, self.next_delta)
    }

    /// Like [`push`](Self::push), at an explicit offset delta, which must be larger than the
    /// previous record's: the batch then has offset gaps, as Kafka's log cleaner leaves them
    /// when it drops records from a batch but keeps its base offset. The batch's
    /// `lastOffsetDelta` is the last pushed record's delta.
    pub fn push_at(&mut self, record: &Record, timestamp: i64, offset_delta: u32) -> Result<()> {
        if offset_delta < self.next_delta {
            return Err(Error::InvalidArgument(format!(
                "offset delta {offset_delta} does not follow the previous record's"
            )));
        }
        if timestamp < 0 {
            return Err(Error::InvalidArgument(format!(
                "record timestamp {timestamp} is negative"
            )));
        }
        let offset_delta = i32::try_from(offset_delta)
            .ok()
            .filter(|&d| d < i32::MAX && self.count < i32::MAX as u32)
            .ok_or_else(|| {
                Error::InvalidArgument("a batch holds at most i32::MAX records".into())
            })?;
        check_encodable(record)?;
        let base_timestamp = self.base_timestamp.unwrap_or(timestamp);
        // Both are non-negative, so the difference cannot overflow.
        let timestamp_delta = timestamp - base_timestamp;
        let plain = record.headers.is_empty()
            && self.try_push_plain(
                record.key.as_deref(),
                record.value.as_deref(),
                timestamp_delta,
                offset_delta,
            )?;
        if !plain {
            self.push_any(record, timestamp_delta, offset_delta)?;
        }
        self.count_pushed(base_timestamp, timestamp, offset_delta as u32);
        Ok(())
    }

    /// Counts a record just written at `timestamp` and `offset_delta`, the batch's base
    /// timestamp being `base_timestamp`.
    #[inline]
    fn count_pushed(&mut self, base_timestamp: i64, timestamp: i64, offset_delta: u32) {
        self.base_timestamp = Some(base_timestamp);
        self.max_timestamp = if self.count == 0 {
            timestamp
        } else {
            self.max_timestamp.max(timestamp)
        };
        self.count += 1;
        self.next_delta = offset_delta + 1;
    }

    /// Pushes every record at its own timestamp, or `default_timestamp` if it has none: the
    /// same bytes, and the same error for the same record, as [`push`](Self::push) one at a
    /// time. Runs of records without headers (the common case) are written by
    /// [`push_plain_run`](Self::push_plain_run); any other record by `push`. On an error the
    /// records before the failing one stay pushed.
    pub(crate) fn push_all(&mut self, records: &[Record], default_timestamp: i64) -> Result<()> {
        let mut rest = records;
        while !rest.is_empty() {
            let written = self.push_plain_run(rest, default_timestamp);
            rest = rest.get(written..).unwrap_or_default();
            if let Some((record, tail)) = rest.split_first() {
                self.push(record, record.timestamp.unwrap_or(default_timestamp))?;
                rest = tail;
            }
        }
        Ok(())
    }

    /// Writes the leading records of `records` that have no headers, stopping before the first
    /// that has, or that `push` would refuse or write another way (a negative timestamp, a
    /// timestamp delta of more than 8 varint bytes, the record-count limit), and returns how
    /// many it wrote. The room for the whole run is made once, as a slice the records are
    /// stored into at a cursor: no capacity check or length update per field, as pushing one at
    /// a time pays. Produces exactly the bytes `push` would.
    fn push_plain_run(&mut self, records: &[Record], default_timestamp: i64) -> usize {
        let plain = records.iter().take_while(|r| r.headers.is_empty());
        let (count, bound) = plain.fold((0usize, 0usize), |(n, bound), r| {
            (n + 1, bound.saturating_add(record_len_bound(r)))
        });
        // A run that might not fit the batch's length field goes the careful way, which names
        // the record that does not fit.
        let fits = self
            .uncompressed_len()
            .saturating_add(bound)
            .saturating_sub(LOG_OVERHEAD)
            <= MAX_WIRE_LEN;
        if count == 0 || !fits {
            return 0;
        }
        let start = self.buf.len();
        self.buf.reserve(bound.saturating_add(PUT_SLACK));
        // Records go into uninitialised room rather than zeroes: writing zeroes first cost as
        // much as the encoding (callgrind: 28 % of an append's instructions).
        let mut at = 0;
        let mut written = 0;
        for record in records.get(..count).unwrap_or_default() {
            let timestamp = record.timestamp.unwrap_or(default_timestamp);
            let delta_room = self.next_delta < i32::MAX as u32 && self.count < i32::MAX as u32;
            if timestamp < 0 || !delta_room {
                break;
            }
            let base_timestamp = self.base_timestamp.unwrap_or(timestamp);
            // Both timestamps are non-negative, so the difference cannot overflow; the offset
            // delta is below i32::MAX, checked above; each payload fits the batch, so its
            // length fits an i32.
            let Some(fields) = PlainFields::new(
                record.key.as_deref(),
                record.value.as_deref(),
                timestamp - base_timestamp,
                self.next_delta as i32,
            ) else {
                break;
            };
            // The spare capacity from the batch's end, which stays where it is until the
            // run's bytes are kept below: `at` counts from there.
            let out = self.buf.spare_capacity_mut();
            // The run's room was sized for every record, so this always fits; if it did not,
            // the record would be left to `push` rather than half written.
            let Some(end) = fields.store_at(out, at) else {
                break;
            };
            at = end;
            self.count_pushed(base_timestamp, timestamp, self.next_delta);
            written += 1;
        }
        // SAFETY: every byte of `out` below `at` is initialised: `at` starts at 0 and only ever
        // moves to the end of a record `PlainFields::store_at` has just written, which writes
        // every byte it steps over. Each record's `out` is the same region, the vector's spare
        // capacity from `start` on (nothing changes the vector's length or reallocates it
        // during the run), and `at` never passes its end, so `start + at` is within the
        // capacity.
        #[allow(unsafe_code)]
        unsafe {
            self.buf.set_len(start + at)
        };
        written
    }

    /// Writes a record without headers, the common case, with every varint computed once and
    /// everything before the key's bytes in one store. Returns `false`, having written nothing,
    /// for the rare record whose fields before the key take more than 16 bytes (a timestamp delta
    /// of years, say), which [`push_any`](Self::push_any) then writes.
    ///
    /// Must produce exactly the bytes `push_any` would.
    #[inline]
    fn try_push_plain(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_delta: i64,
        offset_delta: i32,
    ) -> Result<bool> {
        let Some(fields) = PlainFields::new(key, value, timestamp_delta, offset_delta) else {
            return Ok(false);
        };
        let total = fields.len();
        self.check_room(total)?;
        let PlainFields {
            body_len: length,
            timestamp_delta,
            offset_delta,
            key_len,
            value_len,
            ..
        } = fields;
        let prefix_len =
            length.len() + 1 + timestamp_delta.len() + offset_delta.len() + key_len.len();
        if prefix_len > Packed::CAPACITY {
            return Ok(false);
        }

        let buf = &mut self.buf;
        buf.reserve(total.saturating_add(PUT_SLACK));
        let mut prefix = Packed::new();
        prefix.push(length);
        prefix.push(Varint::int(0)); // record attributes: unused in v2, one zero byte
        prefix.push(timestamp_delta);
        prefix.push(offset_delta);
        prefix.push(key_len);
        prefix.append_to(buf);
        if let Some(key) = key {
            buf.extend_from_slice(key);
        }
        value_len.append_to(buf);
        if let Some(value) = value {
            buf.extend_from_slice(value);
        }
        buf.push(0); // no headers
        Ok(true)
    }

    /// Writes any record, field by field.
    fn push_any(&mut self, record: &Record, timestamp_delta: i64, offset_delta: i32) -> Result<()> {
        let body = body_len(record, timestamp_delta, offset_delta);
        let total = length_len(body).saturating_add(body);
        self.check_room(total)?;
        let buf = &mut self.buf;
        buf.reserve(total.saturating_add(PUT_SLACK));
        put_varint(buf, wire_len(body));
        buf.push(0); // record attributes: unused in v2
        put_varlong(buf, timestamp_delta);
        put_varint(buf, offset_delta);
        put_nullable(buf, record.key.as_deref());
        put_nullable(buf, record.value.as_deref());
        put_varint(buf, wire_len(record.headers.len()));
        for header in &record.headers {
            put_varint(buf, wire_len(header.key.len()));
            buf.extend_from_slice(header.key.as_bytes());
            put_nullable(buf, header.value.as_deref());
        }
        Ok(())
    }

    /// Errors if a record of `total` bytes would make the batch too large for its length field.
    #[inline]
    fn check_room(&self, total: usize) -> Result<()> {
        if self.uncompressed_len().saturating_add(total) - LOG_OVERHEAD > MAX_WIRE_LEN {
            return Err(Error::InvalidArgument(format!(
                "a record of {total} bytes would make the batch exceed {MAX_WIRE_LEN} bytes"
            )));
        }
        Ok(())
    }

    /// The options the batch was started with.
    pub fn options(&self) -> &BatchOptions {
        &self.options
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> usize {
        self.count as usize
    }

    /// Size the batch would have if finished now without compression: header plus records.
    pub fn uncompressed_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True until the first successful [`push`](Self::push).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The header for the records pushed so far, with `batch_length` and `crc` still zero.
    fn header(&self) -> Result<BatchHeader> {
        let Some(last_offset_delta) = self.next_delta.checked_sub(1).filter(|_| self.count > 0)
        else {
            return Err(Error::InvalidArgument(
                "cannot finish a batch with no records".into(),
            ));
        };
        let base_offset = self.options.base_offset;
        // The wire stores offsets as i64; the last one must fit too.
        if base_offset.saturating_add(u64::from(last_offset_delta)) > i64::MAX as u64 {
            return Err(Error::InvalidArgument(format!(
                "base offset {base_offset} leaves no room for {} records below i64::MAX",
                self.count
            )));
        }
        Ok(BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: self.options.partition_leader_epoch,
            crc: 0,
            attributes: self.options.attributes(),
            last_offset_delta,
            base_timestamp: self.base_timestamp.unwrap_or(0),
            max_timestamp: self.max_timestamp,
            producer_id: self.options.producer_id,
            producer_epoch: self.options.producer_epoch,
            base_sequence: self.options.base_sequence,
            record_count: self.count,
        })
    }

    /// Appends the finished batch (header, compressed records, CRC) to `out` and returns its
    /// header. Errors if no record was pushed, if the compressed batch is too large for the
    /// format, or on an invalid zstd level; `out` is then left as it was.
    pub fn finish_into(mut self, out: &mut Vec<u8>) -> Result<BatchHeader> {
        if self.options.compression == Compression::None && out.is_empty() {
            // The buffer already ends with the batch: seal it in place and hand it over.
            let header = self.seal_in_place()?;
            *out = self.buf;
            return Ok(header);
        }
        let mut header = self.header()?;
        let start = out.len();
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        let records = self.buf.get(self.start + HEADER_LEN..).unwrap_or(&[]);
        let sealed = codec::compress_into(self.options.compression, records, out)
            .and_then(|()| batch_length(out.len() - start))
            .map(|length| {
                header.batch_length = length;
                if let Some(batch) = out.get_mut(start..) {
                    seal(batch, &mut header);
                }
                header
            });
        if sealed.is_err() {
            out.truncate(start);
        }
        sealed
    }

    /// Turns the uncompressed buffer into the finished batch where it lies.
    fn seal_in_place(&mut self) -> Result<BatchHeader> {
        let mut header = self.header()?;
        header.batch_length = batch_length(self.uncompressed_len())?;
        if let Some(batch) = self.buf.get_mut(self.start..) {
            seal(batch, &mut header);
        }
        Ok(header)
    }
}

/// A record without headers, its varints computed, as the plain writers store it.
struct PlainFields<'a> {
    body_len: Varint,
    /// The record's size after its length varint.
    body: usize,
    timestamp_delta: Varint,
    offset_delta: Varint,
    key_len: Varint,
    key: &'a [u8],
    value_len: Varint,
    value: &'a [u8],
}

impl<'a> PlainFields<'a> {
    /// The record's fields, or `None` if its timestamp delta takes more than 8 bytes (which
    /// `push_any` writes). Lengths are encoded as they are; callers check the batch's room.
    // Always inlined: as a call it cost both writers a sixth more instructions (callgrind).
    #[inline(always)]
    fn new(
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        timestamp_delta: i64,
        offset_delta: i32,
    ) -> Option<Self> {
        let timestamp_delta = Varint::long(timestamp_delta)?;
        let offset_delta = Varint::int(offset_delta);
        let key_len = Varint::int(key.map_or(-1, |key| wire_len(key.len())));
        let value_len = Varint::int(value.map_or(-1, |value| wire_len(value.len())));
        let key = key.unwrap_or_default();
        let value = value.unwrap_or_default();
        let body = key.len().saturating_add(value.len()).saturating_add(
            1 // attributes
                + timestamp_delta.len()
                + offset_delta.len()
                + key_len.len()
                + value_len.len()
                + 1, // header count, zero
        );
        Some(PlainFields {
            body_len: Varint::int(wire_len(body)),
            body,
            timestamp_delta,
            offset_delta,
            key_len,
            key,
            value_len,
            value,
        })
    }

    /// Bytes the record takes, its length varint included.
    #[inline]
    fn len(&self) -> usize {
        self.body_len.len().saturating_add(self.body)
    }

    /// Stores the record at `out[at..]` and returns the position after it, or `None` if it
    /// does not fit (then the bytes from `at` on are not to be kept). Every byte from `at` to
    /// the returned position is written.
    #[inline]
    fn store_at(&self, out: &mut [MaybeUninit<u8>], at: usize) -> Option<usize> {
        let at = self.body_len.store_at(out, at)?;
        let at = write_bytes(out, at, &[0])?; // record attributes: unused in v2
        let at = self.timestamp_delta.store_at(out, at)?;
        let at = self.offset_delta.store_at(out, at)?;
        let at = self.key_len.store_at(out, at)?;
        let at = write_bytes(out, at, self.key)?;
        let at = self.value_len.store_at(out, at)?;
        let at = write_bytes(out, at, self.value)?;
        write_bytes(out, at, &[0]) // no headers
    }
}

/// The `batch_length` field for a batch of `total` bytes.
fn batch_length(total: usize) -> Result<u32> {
    let length = total.saturating_sub(LOG_OVERHEAD);
    if length > MAX_WIRE_LEN {
        return Err(Error::InvalidArgument(format!(
            "encoded batch of {total} bytes exceeds the format's limit"
        )));
    }
    Ok(length as u32)
}

/// Encodes `records` as one batch appended to `out` and returns its header. Each record's
/// timestamp is `record.timestamp.unwrap_or(default_timestamp)`. Errors (leaving `out` as it
/// was) on an empty slice or anything [`BatchBuilder::push`] rejects.
pub fn encode_batch(
    out: &mut Vec<u8>,
    options: &BatchOptions,
    records: &[Record],
    default_timestamp: i64,
) -> Result<BatchHeader> {
    encode_batch_measured(out, options, records, default_timestamp).map(|(header, _)| header)
}

/// [`encode_batch`], also returning the batch's size before compression (header and records as
/// they were before the codec; the encoded size when there is none), for the log's
/// compression counters.
pub(crate) fn encode_batch_measured(
    out: &mut Vec<u8>,
    options: &BatchOptions,
    records: &[Record],
    default_timestamp: i64,
) -> Result<(BatchHeader, usize)> {
    if options.compression != Compression::None {
        // Records go to a scratch buffer and come out compressed into `out`. A bound rather than
        // the exact size: the deltas are unknown until pushed, and sizing every varint twice
        // (here and in `push`) cost as much as writing them.
        let capacity = records
            .iter()
            .fold(0usize, |acc, r| acc.saturating_add(record_len_bound(r)));
        let mut builder = BatchBuilder::with_capacity(*options, capacity);
        builder.push_all(records, default_timestamp)?;
        let uncompressed = builder.uncompressed_len();
        return builder
            .finish_into(out)
            .map(|header| (header, uncompressed));
    }
    // Uncompressed: write the records straight after what `out` holds, so they are copied once.
    // `push_all` makes room for each run of records itself, and `out` is usually a buffer
    // reused from the last batch, so no bound is computed up front.
    let mut builder = BatchBuilder::after(*options, std::mem::take(out), 0);
    let sealed = builder
        .push_all(records, default_timestamp)
        .and_then(|()| builder.seal_in_place());
    if sealed.is_err() {
        builder.buf.truncate(builder.start);
    }
    let len = builder.uncompressed_len();
    *out = builder.buf;
    sealed.map(|header| (header, len))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const LENS: [Option<usize>; 9] = [
        None,
        Some(0),
        Some(1),
        Some(63),
        Some(64),
        Some(127),
        Some(8191),
        Some(8192),
        Some(20_000),
    ];
    const TIMESTAMP_DELTAS: [i64; 12] = [
        0,
        1,
        -1,
        63,
        -64,
        64,
        1 << 20,
        -(1 << 40),
        (1 << 55) - 1,
        1 << 55,
        i64::MAX / 2,
        i64::MIN / 2,
    ];
    const OFFSET_DELTAS: [i32; 7] = [0, 1, 63, 64, 8191, 8192, i32::MAX - 1];

    fn bytes(len: Option<usize>) -> Option<Bytes> {
        len.map(|n| Bytes::from(vec![0x5a; n]))
    }

    /// The writer for records without headers is a fast path of the general one: on every field
    /// size, delta and varint length boundary it must write the same bytes or nothing.
    #[test]
    fn plain_writer_matches_general_writer() {
        let mut plain_writes = 0;
        for key in LENS {
            for value in LENS {
                let record = Record {
                    key: bytes(key),
                    value: bytes(value),
                    ..Record::default()
                };
                for timestamp_delta in TIMESTAMP_DELTAS {
                    for offset_delta in OFFSET_DELTAS {
                        let mut plain = BatchBuilder::new(BatchOptions::default());
                        let mut any = plain.clone();
                        let wrote = plain
                            .try_push_plain(
                                record.key.as_deref(),
                                record.value.as_deref(),
                                timestamp_delta,
                                offset_delta,
                            )
                            .unwrap();
                        any.push_any(&record, timestamp_delta, offset_delta)
                            .unwrap();
                        let written = &any.buf[HEADER_LEN..];
                        assert_eq!(
                            written.len(),
                            record_encoded_len(&record, timestamp_delta, offset_delta)
                        );
                        if wrote {
                            plain_writes += 1;
                            assert_eq!(
                                &plain.buf[HEADER_LEN..],
                                written,
                                "{key:?} {value:?} {timestamp_delta} {offset_delta}"
                            );
                        } else {
                            assert_eq!(plain.buf.len(), HEADER_LEN, "wrote nothing");
                        }
                    }
                }
            }
        }
        // Only the 9- and 10-byte timestamp deltas and 16-byte overflows take the general path.
        assert!(plain_writes > LENS.len() * LENS.len() * 8 * OFFSET_DELTAS.len());
    }

    #[test]
    fn capacity_bound_covers_every_delta() {
        for key in LENS {
            for value in LENS {
                let mut record = Record {
                    key: bytes(key),
                    value: bytes(value),
                    ..Record::default()
                };
                for headers in 0..3 {
                    for timestamp_delta in TIMESTAMP_DELTAS.into_iter().chain([i64::MAX]) {
                        for offset_delta in OFFSET_DELTAS.into_iter().chain([i32::MAX]) {
                            assert!(
                                record_len_bound(&record)
                                    >= record_encoded_len(&record, timestamp_delta, offset_delta)
                            );
                        }
                    }
                    record.headers.push(Header {
                        key: "k".repeat(headers * 100),
                        value: bytes(value),
                    });
                }
            }
        }
    }
}
