//! [`BatchView`]: a stored batch whose records are decoded while you iterate, borrowing their
//! bytes instead of building a [`StoredRecord`](crate::StoredRecord) each.
//!
//! Opening a view checks the batch's length and CRC and decompresses it (under a cap), like
//! [`decode_batch`](super::decode_batch); what it skips is the per-record work a reader may not
//! need: a 100-byte struct, two reference-counted `Bytes` and a header `Vec` per record. Records
//! are parsed with the same code and the same checks as `decode_batch`, one at a time, so a
//! malformed record is reported when the iteration reaches it (after a passing CRC that means a
//! writer bug or a CRC collision, which `append` and `append_batch` both rule out on write).

use std::ops::Range;

use bytes::Bytes;

use super::decode::{open_batch, record_error, walk_headers, RecordParser};
use super::BatchHeader;
use crate::error::Result;

/// One whole batch as stored: its header and its (decompressed) records section.
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{Log, Record, TopicConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path())?;
/// log.create_topic("t", TopicConfig::default())?;
/// let p = log.partition("t", 0)?;
/// p.append(&[Record::new("a").key("k").header("h", "1"), Record::new("b")])?;
/// let mut batches = Vec::new();
/// p.read_batches(1, 1 << 20, &mut batches)?;
/// let records: Vec<_> = batches[0].records().collect::<annals::Result<_>>()?;
/// assert_eq!(records.len(), 1); // offset 1 on: "a" is skipped
/// assert_eq!((records[0].offset, records[0].value), (1, Some(&b"b"[..])));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BatchView {
    header: BatchHeader,
    records: Bytes,
    parser: RecordParser,
    /// Records with a smaller offset delta are parsed (and checked) but not yielded.
    first_wanted_delta: u64,
}

impl BatchView {
    /// Opens `batch` (exactly one whole batch): checks its length and CRC, decompresses it with
    /// at most `max_uncompressed` bytes of output. Iteration yields records at or after
    /// `from_offset`.
    pub fn new(batch: &Bytes, from_offset: u64, max_uncompressed: usize) -> Result<BatchView> {
        let (header, records) = open_batch(batch, max_uncompressed)?;
        Ok(BatchView {
            parser: RecordParser::new(&header),
            first_wanted_delta: from_offset.saturating_sub(header.base_offset),
            header,
            records,
        })
    }

    /// The batch header (offsets, timestamps, producer fields, attributes).
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The offset after this batch's last one (where the next batch starts; compaction may have
    /// removed the records just before it).
    pub fn next_offset(&self) -> u64 {
        self.header.next_offset()
    }

    /// The first offset iteration may yield: where a reader that has not used this view yet
    /// stands.
    #[cfg(feature = "tokio")]
    pub(crate) fn first_wanted_offset(&self) -> u64 {
        self.header.base_offset + self.first_wanted_delta
    }

    /// How many records iteration yields (those at or after the read's offset), for the
    /// log's read counters: worked out from the header when the batch has no offset gaps
    /// (its deltas are then exactly `0..record_count`), else by walking its records, which only
    /// a compacted batch read from part way needs.
    pub(crate) fn wanted_count(&self) -> u64 {
        let count = u64::from(self.header.record_count);
        if self.first_wanted_delta == 0 {
            return count;
        }
        if count == u64::from(self.header.last_offset_delta) + 1 {
            return count.saturating_sub(self.first_wanted_delta);
        }
        self.records().take_while(Result::is_ok).count() as u64
    }

    /// The buffer the records' slices borrow from, so a caller can keep one as a `Bytes`
    /// (`Bytes::slice_ref`) without copying.
    pub(crate) fn record_bytes(&self) -> &Bytes {
        &self.records
    }

    /// The records at or after the read's offset, in order. Each item is a record borrowing the
    /// batch's bytes, or the error that ends the iteration.
    pub fn records(&self) -> RecordRefs<'_> {
        RecordRefs {
            view: self,
            pos: 0,
            index: 0,
            previous: None,
            done: false,
        }
    }
}

/// A record borrowed from a [`BatchView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordRef<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: usize,
}

impl<'a> RecordRef<'a> {
    /// The record's headers, in order: key and nullable value.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let mut found = Vec::new();
        let rec = self.headers;
        // Validated when the record was parsed, so the walk cannot fail.
        let _ = walk_headers(rec, 0..rec.len(), self.header_count, |key, value| {
            found.push((key, value.and_then(|r| rec.get(r))));
        });
        found.into_iter()
    }

    /// The number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count
    }
}

/// Iterator over a [`BatchView`]'s records; see [`BatchView::records`].
#[derive(Debug)]
pub struct RecordRefs<'a> {
    view: &'a BatchView,
    pos: usize,
    index: usize,
    previous: Option<u32>,
    done: bool,
}

impl<'a> Iterator for RecordRefs<'a> {
    type Item = Result<RecordRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let view = self.view;
        let data: &'a [u8] = &view.records;
        loop {
            if self.done {
                return None;
            }
            if self.index == view.parser.record_count {
                self.done = true;
                return view
                    .parser
                    .check_end(self.previous, self.pos, data.len())
                    .err()
                    .map(Err);
            }
            let raw = match view.parser.parse(data, &mut self.pos, self.previous) {
                Ok(raw) => raw,
                Err(reason) => {
                    self.done = true;
                    return Some(Err(record_error(self.index, reason)));
                }
            };
            self.index += 1;
            self.previous = Some(raw.offset_delta);
            if u64::from(raw.offset_delta) < view.first_wanted_delta {
                continue;
            }
            let slice = |r: Range<usize>| data.get(r).unwrap_or_default();
            return Some(Ok(RecordRef {
                offset: view.parser.base_offset + u64::from(raw.offset_delta),
                timestamp: raw.timestamp,
                key: raw.key.map(slice),
                value: raw.value.map(slice),
                headers: slice(raw.headers),
                header_count: raw.header_count,
            }));
        }
    }
}
