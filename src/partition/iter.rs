//! [`Partition::iter`] and [`Partition::range`]: the records of a partition as an iterator, so
//! a caller does not write the read loop (offsets, refills, gaps left by compaction) itself.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

use super::Partition;
use crate::error::Result;
use crate::format::StoredRecord;

/// Bytes one refill reads.
const REFILL_BYTES: usize = 1 << 20;

/// The records of a partition in offset order, read a batch group at a time. See
/// [`Partition::iter`].
#[derive(Debug)]
pub struct Records {
    partition: Partition,
    next: u64,
    /// Exclusive end: the range's, or the high watermark when the iterator was made.
    end: u64,
    buffered: VecDeque<StoredRecord>,
    done: bool,
}

impl Partition {
    /// Every record from `from` up to the high watermark as it is now, in offset order.
    /// Records appended later are not included (iterate again, from the last offset + 1, to
    /// get them); offsets that compaction removed are skipped.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{Log, Record, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// log.create_topic("t", TopicConfig::default())?;
    /// let p = log.partition("t", 0)?;
    /// p.append(&[Record::new("a"), Record::new("b"), Record::new("c")])?;
    /// let values: Vec<String> = p
    ///     .iter(1)
    ///     .map(|r| r.map(|r| r.value_str().unwrap_or_default().to_string()))
    ///     .collect::<annals::Result<_>>()?;
    /// assert_eq!(values, ["b", "c"]);
    /// assert_eq!(p.range(..2).count(), 2);
    /// # Ok(()) }
    /// ```
    ///
    /// Errors arrive as items, after which the iterator ends: [`Error::OffsetOutOfRange`] for a
    /// start outside the partition (or one that retention deleted meanwhile), a closed
    /// partition, corruption, I/O.
    ///
    /// [`Error::OffsetOutOfRange`]: crate::Error::OffsetOutOfRange
    pub fn iter(&self, from: u64) -> Records {
        self.range(from..)
    }

    /// The records whose offsets are in `offsets` (any range syntax: an open start is the log
    /// start offset, an open end the high watermark as it is now), in offset order; an empty
    /// range yields nothing. Errors as [`iter`](Self::iter).
    pub fn range(&self, offsets: impl RangeBounds<u64>) -> Records {
        let hw = self.high_watermark();
        let start = match offsets.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => self.log_start_offset(),
        };
        let end = match offsets.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => hw,
        };
        Records {
            partition: self.clone(),
            next: start,
            end,
            buffered: VecDeque::new(),
            done: start >= end,
        }
    }
}

impl Records {
    fn refill(&mut self) -> Result<()> {
        let mut out = Vec::new();
        self.partition
            .read_into(self.next, REFILL_BYTES, &mut out)?;
        match out.last() {
            Some(last) => self.next = last.offset + 1,
            None => self.done = true,
        }
        self.buffered
            .extend(out.into_iter().take_while(|r| r.offset < self.end));
        if self.next >= self.end {
            self.done = true;
        }
        Ok(())
    }
}

impl Iterator for Records {
    type Item = Result<StoredRecord>;

    fn next(&mut self) -> Option<Result<StoredRecord>> {
        loop {
            if let Some(r) = self.buffered.pop_front() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.refill() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}
