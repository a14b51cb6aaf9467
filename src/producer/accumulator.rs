//! The accumulator: per-partition open batches that callers' `send`s fill and the writer thread
//! drains, and the memory budget that bounds them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::delivery::BatchCompletion;
use crate::error::{Error, Result};
use crate::format::{BatchBuilder, BatchOptions, Compression, TimestampType};
use crate::partition::Partition;

/// A topic as the producer sees it: its partitions and the settings `send` needs per record.
#[derive(Debug)]
pub(crate) struct TopicSlot {
    pub name: crate::TopicName,
    pub partitions: Vec<Arc<PartitionSlot>>,
    pub max_message_bytes: usize,
    pub compression: Compression,
}

/// One partition's queue of batches.
#[derive(Debug)]
pub(crate) struct PartitionSlot {
    pub partition: Partition,
    pub id: u32,
    /// The topic's partition count and its keyless records' current partition (sticky
    /// partitioning), shared by all of the topic's slots.
    pub partition_count: u32,
    pub sticky: Arc<AtomicU32>,
    pub queue: Mutex<PartitionQueue>,
    /// Sequence number of the next record written (idempotence), per partition as in Kafka.
    /// Only the writer thread touches it: sequences are assigned when a batch is written, so a
    /// batch that fails for good leaves no gap.
    pub next_sequence: Mutex<i32>,
    /// The serial of the transaction this partition was last added to (transactional
    /// producers; see `transaction.rs`).
    pub txn_serial: AtomicU64,
}

impl PartitionSlot {
    /// Keyless records move on to the next partition once a batch here closes (Kafka's sticky
    /// partitioner: fill a batch on one partition, then move on).
    pub(crate) fn batch_closed(&self) {
        let next = (self.id + 1) % self.partition_count;
        let _ = self
            .sticky
            .compare_exchange(self.id, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
pub(crate) struct PartitionQueue {
    /// The batch `send` is filling.
    pub open: Option<OpenBatch>,
    /// Closed batches, oldest first, waiting for the writer thread.
    pub ready: VecDeque<OpenBatch>,
}

/// A batch being filled or waiting to be written.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    pub id: u64,
    pub builder: BatchBuilder,
    pub completion: Arc<BatchCompletion>,
    pub created: Instant,
    /// Buffer memory reserved for its records, released once it is written.
    pub reserved: usize,
    /// Records in it (the builder's count, kept here because writing moves the builder out).
    pub records: u32,
}

impl PartitionQueue {
    /// Closes the open batch (if any) and queues it for writing; whether there was one.
    pub(crate) fn close_open(&mut self) -> bool {
        match self.open.take() {
            Some(batch) => {
                self.ready.push_back(batch);
                true
            }
            None => false,
        }
    }
}

/// The options of a new batch: the codec, and the producer id and epoch when the producer is
/// idempotent (the base sequence is set when the batch is written).
pub(crate) fn batch_options(
    compression: Compression,
    producer: Option<(i64, i16)>,
    transactional: bool,
) -> BatchOptions {
    let (producer_id, producer_epoch, base_sequence) = match producer {
        Some((id, epoch)) => (id, epoch, 0),
        None => (-1, -1, -1),
    };
    BatchOptions {
        base_offset: 0,
        compression,
        timestamp_type: TimestampType::CreateTime,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        base_sequence,
        transactional,
        control: false,
    }
}

/// The `buffer_memory` budget: bytes of records accepted by `send` and not yet written.
#[derive(Debug)]
pub(crate) struct Memory {
    limit: usize,
    used: AtomicUsize,
    waiters: Mutex<Waiting>,
    freed: Condvar,
    /// Reservations that had to wait for space, and the time they waited in all (nanoseconds),
    /// for `Log::metrics`. Only the waiting paths touch them.
    waits: AtomicU64,
    wait_nanos: AtomicU64,
}

/// Who waits for buffer space.
#[derive(Debug, Default)]
struct Waiting {
    /// Threads blocked in `reserve`.
    threads: usize,
    /// How many releases there were (feature `tokio`): an async sender that found the buffer
    /// full waits for this to move.
    #[cfg(feature = "tokio")]
    releases: u64,
    /// Tasks waiting for the next release.
    #[cfg(feature = "tokio")]
    tasks: Vec<std::task::Waker>,
}

impl Memory {
    pub(crate) fn new(limit: usize) -> Memory {
        Memory {
            limit,
            used: AtomicUsize::new(0),
            waiters: Mutex::new(Waiting::default()),
            freed: Condvar::new(),
            waits: AtomicU64::new(0),
            wait_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Counts one wait for space that took `waited` (whether it got the space or not).
    pub(crate) fn record_wait(&self, waited: Duration) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Waits for space so far, and the time they took in all.
    pub(crate) fn waits(&self) -> (u64, Duration) {
        (
            self.waits.load(Ordering::Relaxed),
            Duration::from_nanos(self.wait_nanos.load(Ordering::Relaxed)),
        )
    }

    fn try_take(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur + n > self.limit {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Reserves `n` bytes, waiting up to `block` for space (`None`: do not wait).
    pub(crate) fn reserve(&self, n: usize, block: Option<Duration>) -> Result<()> {
        if self.try_take(n) {
            return Ok(());
        }
        let full = || Error::BufferFull {
            buffer_memory: self.limit,
        };
        let Some(block) = block else {
            return Err(full());
        };
        let started = Instant::now();
        let deadline = crate::config::deadline_after(started, block);
        let mut waiters = self.waiters.lock();
        waiters.threads += 1;
        // `release` frees space before it takes this lock to notify, and we check for space
        // while holding it, so no wake-up is lost between the check and the wait.
        let result = loop {
            if self.try_take(n) {
                break Ok(());
            }
            if self.freed.wait_until(&mut waiters, deadline).timed_out() {
                break if self.try_take(n) {
                    Ok(())
                } else {
                    Err(full())
                };
            }
        };
        waiters.threads -= 1;
        drop(waiters);
        self.record_wait(started.elapsed());
        result
    }

    pub(crate) fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        #[allow(unused_mut)]
        let mut waiters = self.waiters.lock();
        if waiters.threads > 0 {
            self.freed.notify_all();
        }
        #[cfg(feature = "tokio")]
        {
            waiters.releases += 1;
            let tasks = std::mem::take(&mut waiters.tasks);
            drop(waiters);
            tasks.into_iter().for_each(std::task::Waker::wake);
        }
    }

    /// The count of releases so far: read it before trying to reserve, and a failed try can
    /// wait for [`released_since`](Self::released_since) it without missing a release in
    /// between.
    #[cfg(feature = "tokio")]
    pub(crate) fn releases(&self) -> u64 {
        self.waiters.lock().releases
    }

    /// Completes once some buffer space was released after `releases` was read.
    #[cfg(feature = "tokio")]
    pub(crate) fn released_since(
        &self,
        releases: u64,
    ) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut waiters = self.waiters.lock();
            if waiters.releases != releases {
                return std::task::Poll::Ready(());
            }
            if !waiters.tasks.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.tasks.push(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_blocks_then_fails_and_wakes_on_release() {
        let m = Arc::new(Memory::new(100));
        m.reserve(80, None).unwrap();
        assert!(matches!(
            m.reserve(30, None),
            Err(Error::BufferFull { buffer_memory: 100 })
        ));
        let started = Instant::now();
        assert!(m.reserve(30, Some(Duration::from_millis(30))).is_err());
        assert!(started.elapsed() >= Duration::from_millis(30));
        let m2 = m.clone();
        let t = std::thread::spawn(move || m2.reserve(30, Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(20));
        m.release(80);
        t.join().unwrap().unwrap();
        assert_eq!(m.used(), 30);
        // The timed-out reservation waited (and so, unless the release came before it ran, did
        // the thread's); the ones that found space or would not block did not.
        let (waits, waited) = m.waits();
        assert!((1..=2).contains(&waits), "{waits} waits");
        assert!(waited >= Duration::from_millis(30));
    }
}
