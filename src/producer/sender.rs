//! The producer's writer thread: writes closed and lingered-out batches, fsyncs them as a group
//! when the durability asks for it, and completes their deliveries.

use std::collections::{BinaryHeap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::accumulator::{OpenBatch, PartitionSlot};
use super::delivery::BatchAck;
use super::{Durability, Shared};
use crate::error::{Error, Result};
use crate::format::{
    set_base_sequence, BatchBuilder, BatchOptions, Compression, TimestampType, HEADER_LEN,
};
use crate::partition::Appended;
use crate::wait::SPIN;

/// How `send`s and `flush` hand work to the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    state: Mutex<SignalState>,
    wake: Condvar,
    /// Set with every state change, so the writer can spin on it briefly before it sleeps.
    pending: AtomicBool,
}

#[derive(Debug, Default)]
struct SignalState {
    /// Partitions with closed batches to write.
    ready: Vec<Arc<PartitionSlot>>,
    /// When open batches linger out.
    deadlines: BinaryHeap<Deadline>,
    closing: bool,
}

#[derive(Debug)]
struct Deadline {
    at: Instant,
    slot: Arc<PartitionSlot>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    // Earliest first out of the max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at)
    }
}

impl Signal {
    /// `slot` has a closed batch.
    pub(crate) fn ready(&self, slot: &Arc<PartitionSlot>) {
        self.state.lock().ready.push(slot.clone());
        self.pending.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// `slot`'s new open batch lingers out at `at`.
    pub(crate) fn deadline(&self, slot: &Arc<PartitionSlot>, at: Instant) {
        self.state.lock().deadlines.push(Deadline {
            at,
            slot: slot.clone(),
        });
        self.pending.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub(crate) fn close(&self) {
        self.state.lock().closing = true;
        self.pending.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Lets go of the partitions still named here — lingering deadlines the writer never
    /// reached, as it stops at the close — once the writer thread is gone, so that a closed
    /// producer holds no partition (and so none of its files) open.
    pub(crate) fn forget_slots(&self) {
        let mut st = self.state.lock();
        st.ready.clear();
        st.deadlines.clear();
    }

    /// Blocks until there is work: the partitions to look at, or `None` when closing.
    fn next(&self) -> Option<Vec<Arc<PartitionSlot>>> {
        let mut st = self.state.lock();
        let mut spun = false;
        loop {
            self.pending.store(false, Ordering::Release);
            let now = Instant::now();
            let mut due = std::mem::take(&mut st.ready);
            while st.deadlines.peek().is_some_and(|d| d.at <= now) {
                due.push(st.deadlines.pop().expect("peeked").slot);
            }
            if !due.is_empty() {
                due.sort_by_key(|s| Arc::as_ptr(s) as usize);
                due.dedup_by(|a, b| Arc::ptr_eq(a, b));
                return Some(due);
            }
            if st.closing {
                return None;
            }
            if !spun {
                // Sleeping costs a futex wake-up (tens of microseconds on a busy machine) on the
                // next send; a send that comes within SPIN is picked up without it.
                spun = true;
                parking_lot::MutexGuard::unlocked(&mut st, || {
                    let until = Instant::now() + SPIN;
                    while !self.pending.load(Ordering::Acquire) && Instant::now() < until {
                        std::thread::yield_now();
                    }
                });
                continue;
            }
            match st.deadlines.peek().map(|d| d.at) {
                Some(at) => {
                    self.wake.wait_until(&mut st, at);
                }
                None => self.wake.wait(&mut st),
            }
        }
    }
}

/// The name of the writer thread, also the `thread` of the error its panic turns into.
pub(crate) const THREAD_NAME: &str = "annals-producer";

/// The batches the writer has taken out of the queues and not completed yet. They live here,
/// not on the stack of the code writing them, so that a panic anywhere in a round leaves them
/// where `run` can still fail them.
#[derive(Default)]
struct Round {
    /// The current partition's batches, oldest first; the front one is being written.
    writing: VecDeque<OpenBatch>,
    /// Written batches waiting for the round's fsync (`Durability::Synced`).
    to_sync: Vec<(Arc<PartitionSlot>, OpenBatch, BatchAck)>,
}

/// The thread body. A panic in a round is caught here, as a poison guard would: the producer is
/// marked dead and every batch it holds fails, so that no `flush`, `Delivery::wait`, `close` or
/// drop waits forever for a thread that is gone.
pub(crate) fn run(shared: Arc<Shared>) {
    let mut round = Round::default();
    // Unwind safety: after a panic the only state used is `round`'s batches, each of which is
    // failed as a whole, and `Shared`, whose locks do not poison and whose queues hold batches
    // only while unlocked and consistent.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| write_rounds(&shared, &mut round)));
    if let Err(payload) = outcome {
        let error = Error::thread_panicked(THREAD_NAME, &*payload);
        let in_flight = round
            .writing
            .into_iter()
            .chain(round.to_sync.into_iter().map(|(_, batch, _)| batch));
        shared.die(error, in_flight.collect());
    }
}

fn write_rounds(shared: &Shared, round: &mut Round) {
    while let Some(slots) = shared.signal.next() {
        let now = Instant::now();
        for slot in &slots {
            {
                let mut q = slot.queue.lock();
                let lingered = q
                    .open
                    .as_ref()
                    .is_some_and(|b| now >= b.created + shared.config.linger);
                if lingered {
                    q.close_open();
                }
                round.writing.extend(q.ready.drain(..));
                drop(q);
                if lingered {
                    slot.batch_closed();
                }
            }
            while let Some(batch) = round.writing.front_mut() {
                let result = write(shared, slot, batch);
                let batch = round.writing.pop_front().expect("front exists");
                match result {
                    Ok(ack) if shared.config.durability == Durability::Synced => {
                        round.to_sync.push((slot.clone(), batch, ack))
                    }
                    result => shared.complete(batch, result),
                }
            }
        }
        sync_group(shared, &mut round.to_sync);
    }
}

/// One fsync per partition for every batch written in this round: group commit. Senders that
/// wait meanwhile keep filling the next round's batches.
fn sync_group(shared: &Shared, to_sync: &mut Vec<(Arc<PartitionSlot>, OpenBatch, BatchAck)>) {
    to_sync.sort_by_key(|(slot, batch, _)| (Arc::as_ptr(slot) as usize, batch.id));
    while let Some((slot, _, _)) = to_sync.first() {
        let slot = slot.clone();
        let result = slot.partition.sync();
        let n = to_sync
            .iter()
            .take_while(|(s, _, _)| Arc::ptr_eq(s, &slot))
            .count();
        // Complete this partition's batches in order.
        for (_, batch, ack) in to_sync.drain(..n) {
            shared.complete(batch, result.clone().map(|()| ack));
        }
    }
}

/// Encodes (compresses) and appends one batch, retrying retriable failures. The batch's
/// records move out of its builder into the encoded buffer (no copy for an uncompressed batch).
fn write(shared: &Shared, slot: &PartitionSlot, batch: &mut OpenBatch) -> Result<BatchAck> {
    if let Some(identity) = &shared.identity {
        if let Some(current_epoch) = identity.is_fenced() {
            let (producer_id, epoch) = identity.get();
            if identity.first_fence_report() {
                warn!(
                    producer_id,
                    epoch,
                    current_epoch,
                    "producer fenced: a newer instance took over its id; its batches fail"
                );
            }
            return Err(Error::ProducerFenced {
                producer_id,
                epoch,
                current_epoch,
            });
        }
    }
    let count = batch.builder.record_count() as i64;
    let idempotent = batch.builder.options().producer_id >= 0;
    let builder = std::mem::replace(
        &mut batch.builder,
        BatchBuilder::new(BatchOptions::default()),
    );
    let compressed = builder.options().compression != Compression::None;
    let uncompressed = builder.uncompressed_len();
    let mut buf = Vec::new();
    builder.finish_into(&mut buf)?;
    if compressed {
        // What the codec did, by the records sections it took and gave (the headers around
        // them are the same size either way).
        let section = |batch_len: usize| batch_len.saturating_sub(HEADER_LEN);
        slot.partition
            .inner
            .metrics
            .compressed(section(uncompressed), section(buf.len()));
    }
    // Sequences are assigned here, in write order, and advance only for batches that made it
    // into the log: a batch that failed for good leaves no gap for the next one to trip on.
    let mut next_sequence = slot.next_sequence.lock();
    if idempotent {
        set_base_sequence(&mut buf, *next_sequence);
    }
    let mut attempt = 0;
    let appended: Appended = loop {
        match slot.partition.inner.append_encoded(&mut buf) {
            Ok(a) => break a,
            // An I/O error that did not poison the partition left the log as it was (the
            // partial write was cut off), so the same batch can go again; if it did land after
            // all, idempotence turns the retry into a duplicate acknowledgement.
            Err(Error::Io { .. }) if attempt < shared.config.retries => {
                attempt += 1;
                std::thread::sleep(shared.config.retry_backoff);
            }
            Err(e) => return Err(e),
        }
    };
    if idempotent {
        *next_sequence = ((*next_sequence as i64 + count) % (i32::MAX as i64 + 1)) as i32;
    }
    drop(next_sequence);
    shared.buffers.give_back(buf);
    let log_append_time = (slot.partition.inner.config().message_timestamp_type
        == TimestampType::LogAppendTime)
        .then_some(appended.timestamp);
    Ok(BatchAck {
        base_offset: appended.base_offset,
        log_append_time,
    })
}
