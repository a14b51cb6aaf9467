//! The one reader of a `.log` file's batches: every walk over a segment (recovery's scan, index
//! rebuilding, the read path, the compactor) goes through a [`BatchCursor`].
//!
//! The cursor owns the buffer of the current positioned read and refills it only when the bytes
//! it is asked for are not in it, reading `max(want, need)` bytes (capped at the end it was
//! given) from the position asked for. It parses each batch's length and header and says
//! whether the bytes there are a batch, the end, a cut-off batch or not a batch at all; what
//! that means (a torn tail to truncate, corruption to report, a read to stop) and which checks
//! the offsets must pass are the caller's. Positions in its answers are byte positions in the
//! file, so callers can name the segment and the byte in their errors.
// These bytes come from disk or from a caller: a malformed input must become an error, never
// a panic, so nothing here may unwrap or index unchecked.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io;

use bytes::{Bytes, BytesMut};

use crate::format::{peek_batch_len, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use crate::storage::StorageFile;

use super::Segment;

/// Where a cursor's bytes come from: one positioned read of exactly `len` bytes at `pos`.
pub(crate) trait ChunkSource {
    fn read_chunk(&self, pos: u64, len: usize) -> io::Result<Bytes>;
}

/// A live segment reads through its per-thread arena (see [`Segment::read`]), so records
/// sliced from the chunk are zero-copy and the next read can reuse the memory.
impl ChunkSource for Segment {
    fn read_chunk(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.read(pos, len)
    }
}

/// A bare file (recovery, before the segment exists): a fresh buffer per read, filled through
/// [`StorageFile::read_exact_at_into`] (straight into spare capacity where the storage can).
impl ChunkSource for dyn StorageFile + '_ {
    fn read_chunk(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::with_capacity(len);
        self.read_exact_at_into(&mut buf, pos, len)?;
        Ok(buf.freeze())
    }
}

/// One batch found by [`BatchCursor::next_header`]: its position, total length and header.
#[derive(Debug, Clone)]
pub(crate) struct BatchAt {
    pub position: u64,
    pub len: usize,
    pub header: BatchHeader,
}

impl BatchAt {
    /// Position right after the batch.
    pub(crate) fn end(&self) -> u64 {
        self.position + self.len as u64
    }
}

/// How the bytes at a batch position were cut short by the end of the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Torn {
    /// Fewer bytes than a batch header are left.
    Header,
    /// The header's length field runs past the end.
    Body,
}

impl Torn {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Torn::Header => "segment ends inside a batch header",
            Torn::Body => "batch runs past the end of the segment",
        }
    }
}

/// What is at the cursor's position.
#[derive(Debug, Clone)]
pub(crate) enum Next {
    /// A batch whose header parses and whose length fits before the end.
    Batch(BatchAt),
    /// The position is the end: the range ends right after the last batch.
    End,
    /// The range ends inside a batch at `position`: the shape of a torn write.
    Torn { position: u64, torn: Torn },
    /// The bytes at `position` are not a batch (bad length or header).
    Invalid { position: u64, reason: String },
}

/// Walks the batches of `[start, end)` of one file with as few, as large reads as it can.
pub(crate) struct BatchCursor<'s, S: ChunkSource + ?Sized> {
    source: &'s S,
    end: u64,
    pos: u64,
    /// Bytes a refill reads at least (fewer only at `end`).
    want: usize,
    /// A length field claiming more than this (plus the log overhead) is `Invalid`.
    max_batch_bytes: Option<usize>,
    chunk_pos: u64,
    chunk: Bytes,
}

impl<'s, S: ChunkSource + ?Sized> BatchCursor<'s, S> {
    /// A cursor at `start` that never reads at or past `end`; refills read `want` bytes.
    pub(crate) fn new(source: &'s S, start: u64, end: u64, want: usize) -> Self {
        BatchCursor {
            source,
            end,
            pos: start,
            want,
            max_batch_bytes: None,
            chunk_pos: start,
            chunk: Bytes::new(),
        }
    }

    /// Length fields above `max` (batch bytes after the log overhead) are `Invalid`.
    pub(crate) fn max_batch_bytes(mut self, max: usize) -> Self {
        self.max_batch_bytes = Some(max);
        self
    }

    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Whether `[pos, pos + len)` is in the buffer (a read for it would need no I/O).
    pub(crate) fn holds(&self, pos: u64, len: usize) -> bool {
        pos >= self.chunk_pos && pos + len as u64 <= self.chunk_pos + self.chunk.len() as u64
    }

    /// Makes sure `[pos, pos + need)` is buffered, reading `max(want, need)` bytes (capped at
    /// the end) from `pos` if it is not. The caller makes sure `pos + need <= end`.
    pub(crate) fn cover(&mut self, pos: u64, need: usize) -> io::Result<()> {
        if !self.holds(pos, need) {
            let len = (self.end - pos).min(self.want.max(need) as u64) as usize;
            self.chunk = self.source.read_chunk(pos, len)?;
            self.chunk_pos = pos;
            if !self.holds(pos, need) {
                // A source that handed back fewer bytes than asked for: an error, not a panic.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read {} bytes at byte {pos} where {need} were needed", len),
                ));
            }
        }
        Ok(())
    }

    /// The buffered bytes `[pos, pos + len)`; [`cover`](Self::cover) them first.
    // The caller covered the range (the documented contract), so the slice is in the buffer; a
    // breach is a bug in annals, not bad input, and panicking on it is right.
    #[allow(clippy::indexing_slicing)]
    pub(crate) fn bytes(&self, pos: u64, len: usize) -> &[u8] {
        let at = (pos - self.chunk_pos) as usize;
        &self.chunk[at..at + len]
    }

    /// What is at the cursor's position. Reads only if the header is not buffered; does not
    /// move the cursor (see [`skip`](Self::skip) and [`body`](Self::body)).
    pub(crate) fn next_header(&mut self) -> io::Result<Next> {
        let pos = self.pos;
        if pos >= self.end {
            return Ok(Next::End);
        }
        let remaining = self.end - pos;
        if remaining < HEADER_LEN as u64 {
            return Ok(Next::Torn {
                position: pos,
                torn: Torn::Header,
            });
        }
        self.cover(pos, HEADER_LEN)?;
        let head = self.bytes(pos, HEADER_LEN);
        let invalid = |reason: String| {
            Ok(Next::Invalid {
                position: pos,
                reason,
            })
        };
        let len = match peek_batch_len(head) {
            Ok(Some(len)) => len,
            // Only fewer than LOG_OVERHEAD bytes answer None, and HEADER_LEN are buffered.
            Ok(None) => {
                return Ok(Next::Torn {
                    position: pos,
                    torn: Torn::Body,
                })
            }
            Err(e) => return invalid(e.to_string()),
        };
        if self
            .max_batch_bytes
            .is_some_and(|max| len > max + LOG_OVERHEAD)
        {
            return invalid(format!("batch length {len} exceeds the limit"));
        }
        if len as u64 > remaining {
            return Ok(Next::Torn {
                position: pos,
                torn: Torn::Body,
            });
        }
        match BatchHeader::parse(head) {
            Ok(header) => Ok(Next::Batch(BatchAt {
                position: pos,
                len,
                header,
            })),
            Err(e) => invalid(e.to_string()),
        }
    }

    /// Moves past `batch` without reading its body.
    pub(crate) fn skip(&mut self, batch: &BatchAt) {
        self.pos = batch.end();
    }

    /// The whole of `batch` (a zero-copy slice of the buffer, which is refilled if it does not
    /// hold the batch and `ahead` more bytes), and moves past it. `ahead` must fit before the
    /// end.
    pub(crate) fn body(&mut self, batch: &BatchAt, ahead: usize) -> io::Result<Bytes> {
        self.cover(batch.position, batch.len + ahead)?;
        let at = (batch.position - self.chunk_pos) as usize;
        self.pos = batch.end();
        Ok(self.chunk.slice(at..at + batch.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Record;
    use crate::format::{BatchBuilder, BatchOptions};
    use crate::storage::{OpenMode, SimStorage, Storage};
    use std::cell::Cell;
    use std::path::Path;
    use std::sync::Arc;

    fn batch(base: u64, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(BatchOptions {
            base_offset: base,
            ..BatchOptions::default()
        });
        for i in 0..n {
            b.push(&Record::new(format!("v{i}")), 1_000 + i as i64)
                .unwrap();
        }
        let mut out = Vec::new();
        b.finish_into(&mut out).unwrap();
        out
    }

    /// Counts the reads a cursor issues.
    struct Counting<'a> {
        file: &'a dyn StorageFile,
        reads: Cell<usize>,
    }

    impl ChunkSource for Counting<'_> {
        fn read_chunk(&self, pos: u64, len: usize) -> io::Result<Bytes> {
            self.reads.set(self.reads.get() + 1);
            self.file.read_chunk(pos, len)
        }
    }

    fn file_with(bytes: &[u8]) -> Arc<dyn StorageFile> {
        let sim = SimStorage::new();
        let file = sim.open(Path::new("/s.log"), OpenMode::Create).unwrap();
        file.write_all_at(bytes, 0).unwrap();
        file
    }

    #[test]
    fn yields_whole_batches_then_the_end_in_one_read() {
        let mut log = batch(0, 3);
        let first = log.len();
        log.extend(batch(3, 2));
        let file = file_with(&log);
        let source = Counting {
            file: &*file,
            reads: Cell::new(0),
        };
        let mut cursor = BatchCursor::new(&source, 0, log.len() as u64, 1 << 20);
        let Next::Batch(a) = cursor.next_header().unwrap() else {
            panic!("no first batch");
        };
        assert_eq!((a.position, a.len, a.header.base_offset), (0, first, 0));
        assert_eq!(&cursor.body(&a, 0).unwrap()[..], &log[..first]);
        let Next::Batch(b) = cursor.next_header().unwrap() else {
            panic!("no second batch");
        };
        assert_eq!((b.position, b.header.base_offset), (first as u64, 3));
        cursor.skip(&b);
        assert!(matches!(cursor.next_header().unwrap(), Next::End));
        assert_eq!(source.reads.get(), 1);
    }

    #[test]
    fn a_cut_batch_is_torn_and_a_bad_length_invalid() {
        let log = batch(0, 3);
        let file = file_with(&log);
        let cut = log.len() as u64 - 1;
        let mut cursor = BatchCursor::new(&*file, 0, cut, 64);
        assert!(matches!(
            cursor.next_header().unwrap(),
            Next::Torn {
                position: 0,
                torn: Torn::Body
            }
        ));
        let mut cursor = BatchCursor::new(&*file, 0, HEADER_LEN as u64 - 1, 64);
        assert!(matches!(
            cursor.next_header().unwrap(),
            Next::Torn {
                position: 0,
                torn: Torn::Header
            }
        ));
        let mut cursor = BatchCursor::new(&*file, 0, log.len() as u64, 64).max_batch_bytes(8);
        let Next::Invalid { position, reason } = cursor.next_header().unwrap() else {
            panic!("a batch over the limit passed");
        };
        assert_eq!(position, 0);
        assert!(reason.contains("exceeds the limit"), "{reason}");
    }

    /// A batch larger than `want` is read whole, in one read from its start.
    #[test]
    fn a_batch_larger_than_the_refill_is_read_on_its_own() {
        let mut log = batch(0, 200);
        log.extend(batch(200, 1));
        let file = file_with(&log);
        let source = Counting {
            file: &*file,
            reads: Cell::new(0),
        };
        let mut cursor = BatchCursor::new(&source, 0, log.len() as u64, HEADER_LEN);
        let Next::Batch(a) = cursor.next_header().unwrap() else {
            panic!("no batch");
        };
        let body = cursor.body(&a, 0).unwrap();
        assert_eq!(body.len(), a.len);
        assert_eq!(source.reads.get(), 2);
        assert!(cursor.holds(a.position, a.len));
    }
}
