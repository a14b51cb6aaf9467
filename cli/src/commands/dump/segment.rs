//! Walking a `.log` file batch by batch, read-only, with plain `std::fs` (no lock, no mmap), so
//! a segment a running process is appending to can be read: the file's length is taken once,
//! when it is opened, and nothing past it is looked at.
//!
//! Every position yields one of three things: a whole batch (whose CRC may still be wrong),
//! bytes that are not a batch but are followed by a valid one (garbage mid-file: damage), or
//! bytes that are not a whole batch and are followed by nothing valid (a torn tail: the shape
//! an interrupted write leaves, which opening the log truncates). That is the rule annals'
//! recovery applies (`valid_batch_after` in the library), so `dump` calls damage what recovery
//! would refuse or cut.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use annals::format::{peek_batch_len, verify_crc, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use annals::Bytes;

/// Bytes read per I/O while searching for the next valid batch after garbage.
const SEARCH_CHUNK: usize = 1 << 20;
/// Bytes read ahead per I/O while walking batches: small batches then cost no system call
/// each.
const READ_AHEAD: usize = 1 << 20;

/// A whole batch as stored.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Byte position of the batch in the file.
    pub position: u64,
    pub header: BatchHeader,
    /// The whole batch, header included.
    pub bytes: Bytes,
    /// Why the batch's CRC check failed (`None`: it passed).
    pub crc_error: Option<String>,
    /// Set when the batch's base offset lies below the previous batch's next offset (the
    /// expected one): offsets never go backwards in a log.
    pub offset_regression: Option<u64>,
}

/// One step of the walk.
#[derive(Debug, Clone)]
pub enum Item {
    Batch(Batch),
    /// Bytes `[position, end)` are not a valid batch, and a CRC-valid batch starts at `end`.
    Garbage {
        position: u64,
        end: u64,
        reason: String,
    },
    /// Bytes from `position` to the end of the file are not a whole batch, and hold no valid
    /// batch either.
    TornTail {
        position: u64,
        len: u64,
        reason: String,
    },
}

/// A `.log` file opened read-only.
#[derive(Debug)]
pub struct Segment {
    file: File,
    len: u64,
    position: u64,
    /// The offset the next batch may start at, at the earliest.
    next_offset: u64,
    done: bool,
    /// The bytes last read: from `window_start` on.
    window: Bytes,
    window_start: u64,
}

impl Segment {
    /// Opens `path`; batches are expected from offset `base` (the file name's) on.
    pub fn open(path: &Path, base: u64) -> io::Result<Segment> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Segment {
            file,
            len,
            position: 0,
            next_offset: base,
            done: false,
            window: Bytes::new(),
            window_start: 0,
        })
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The next batch, garbage run or torn tail; `None` at the end of the file.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        if self.done || self.position >= self.len {
            return Ok(None);
        }
        let position = self.position;
        let remaining = self.len - position;
        let head = self.read(position, remaining.min(HEADER_LEN as u64) as usize)?;
        match whole_batch_len(&head, remaining) {
            Ok(total) => {
                let bytes = self.read(position, total)?;
                // `whole_batch_len` parsed this header already.
                let header = BatchHeader::parse(&bytes).map_err(io::Error::other)?;
                let crc_error = verify_crc(&bytes).err().map(|e| e.to_string());
                let offset_regression =
                    (header.base_offset < self.next_offset).then_some(self.next_offset);
                if offset_regression.is_none() {
                    self.next_offset = header.next_offset();
                }
                self.position += total as u64;
                Ok(Some(Item::Batch(Batch {
                    position,
                    header,
                    bytes,
                    crc_error,
                    offset_regression,
                })))
            }
            Err(reason) => match self.valid_batch_after(position)? {
                Some(end) => {
                    self.position = end;
                    Ok(Some(Item::Garbage {
                        position,
                        end,
                        reason,
                    }))
                }
                None => {
                    self.done = true;
                    Ok(Some(Item::TornTail {
                        position,
                        len: remaining,
                        reason,
                    }))
                }
            },
        }
    }

    /// `len` bytes from `position` (which the caller keeps within the file), out of the
    /// read-ahead window, refilled as needed.
    fn read(&mut self, position: u64, len: usize) -> io::Result<Bytes> {
        let covered = position >= self.window_start
            && position + len as u64 <= self.window_start + self.window.len() as u64;
        if !covered {
            let want = (len.max(READ_AHEAD) as u64).min(self.len - position) as usize;
            let mut buf = vec![0u8; want.max(len)];
            self.file.read_exact_at(&mut buf, position)?;
            self.window = Bytes::from(buf);
            self.window_start = position;
        }
        let at = (position - self.window_start) as usize;
        Ok(self.window.slice(at..at + len))
    }

    /// The first position after `from` where a CRC-valid batch starts whose offsets do not go
    /// backwards. A random match needs a valid header and a 4-byte CRC to agree by chance.
    fn valid_batch_after(&mut self, from: u64) -> io::Result<Option<u64>> {
        let mut window_start = from + 1;
        while window_start + HEADER_LEN as u64 <= self.len {
            let window_len = (self.len - window_start).min((SEARCH_CHUNK + HEADER_LEN - 1) as u64);
            let window = self.read(window_start, window_len as usize)?;
            let window = &window[..];
            let candidates = window.len().saturating_sub(HEADER_LEN - 1);
            for i in 0..candidates.min(SEARCH_CHUNK) {
                let at = window_start + i as u64;
                let Ok(header) = BatchHeader::parse(window.get(i..).unwrap_or_default()) else {
                    continue;
                };
                let total = header.total_len();
                if header.base_offset < self.next_offset || total as u64 > self.len - at {
                    continue;
                }
                let valid = match window.get(i..i + total) {
                    Some(batch) => verify_crc(batch).is_ok(),
                    None => verify_crc(&self.read(at, total)?).is_ok(),
                };
                if valid {
                    return Ok(Some(at));
                }
            }
            window_start += SEARCH_CHUNK as u64;
        }
        Ok(None)
    }
}

/// The length of the batch `head` starts, if the file holds all of it (`remaining` bytes are
/// left from its start) and its header parses; else why not.
fn whole_batch_len(head: &[u8], remaining: u64) -> Result<usize, String> {
    if remaining < LOG_OVERHEAD as u64 {
        return Err(format!(
            "{remaining} byte(s) are too few for a batch's offset and length fields"
        ));
    }
    let total = match peek_batch_len(head) {
        Ok(Some(total)) => total,
        Ok(None) => return Err("the batch's length field is cut short".to_string()),
        Err(e) => return Err(e.to_string()),
    };
    if total as u64 > remaining {
        return Err(format!(
            "the batch's length field says {total} bytes, but only {remaining} remain in the file"
        ));
    }
    // `peek_batch_len` guarantees `total >= HEADER_LEN`, so `head` is a whole header here.
    BatchHeader::parse(head).map_err(|e| e.to_string())?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_lying_lengths_are_not_whole_batches() {
        assert!(whole_batch_len(&[0; 5], 5).unwrap_err().contains("too few"));
        let mut head = [0u8; HEADER_LEN];
        head[8..12].copy_from_slice(&1000i32.to_be_bytes());
        head[16] = 2;
        let e = whole_batch_len(&head, 100).unwrap_err();
        assert!(e.contains("1012 bytes, but only 100 remain"), "{e}");
        head[8..12].copy_from_slice(&0i32.to_be_bytes());
        assert!(whole_batch_len(&head, 100).unwrap_err().contains("shorter"));
    }
}
