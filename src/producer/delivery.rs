//! Delivery reports: how a caller learns what became of a record it sent.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::accumulator::PartitionSlot;
use super::sender::Signal;
use crate::error::Result;

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RecordMetadata {
    pub topic: crate::TopicName,
    pub partition: u32,
    /// The record's offset; `None` under `Durability::None`, where the acknowledgement comes
    /// before the record is written.
    pub offset: Option<u64>,
    /// The record's timestamp as stored (the append time on LogAppendTime topics).
    pub timestamp: i64,
}

/// What the writer thread learned about a whole batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchAck {
    pub base_offset: u64,
    /// Set on LogAppendTime topics: every record's timestamp.
    pub log_append_time: Option<i64>,
}

/// The completion of one batch, shared by the deliveries of all its records.
#[derive(Debug, Default)]
pub(crate) struct BatchCompletion {
    state: Mutex<CompletionState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct CompletionState {
    result: Option<Result<BatchAck>>,
    /// Tasks awaiting a delivery of this batch (feature `tokio`), woken at completion. One
    /// slot per awaiting future, which replaces its own waker when polled again.
    #[cfg(feature = "tokio")]
    wakers: Vec<std::task::Waker>,
}

impl BatchCompletion {
    pub(crate) fn complete(&self, result: Result<BatchAck>) {
        let mut state = self.state.lock();
        if state.result.is_none() {
            state.result = Some(result);
            self.done.notify_all();
            #[cfg(feature = "tokio")]
            {
                let wakers = std::mem::take(&mut state.wakers);
                drop(state);
                wakers.into_iter().for_each(std::task::Waker::wake);
            }
        }
    }

    fn peek(&self) -> Option<Result<BatchAck>> {
        self.state.lock().result.clone()
    }

    fn wait(&self, deadline: Option<Instant>) -> Option<Result<BatchAck>> {
        let mut state = self.state.lock();
        while state.result.is_none() {
            match deadline {
                None => self.done.wait(&mut state),
                Some(d) => {
                    if self.done.wait_until(&mut state, d).timed_out() {
                        break;
                    }
                }
            }
        }
        state.result.clone()
    }

    /// The result, or `None` after making completion wake `waker`. `slot` is the awaiting
    /// future's place among the wakers (set on its first pending poll), so polling again
    /// replaces its waker instead of adding one.
    #[cfg(feature = "tokio")]
    fn poll_result(
        &self,
        waker: &std::task::Waker,
        slot: &mut Option<usize>,
    ) -> Option<Result<BatchAck>> {
        let mut state = self.state.lock();
        if let Some(result) = &state.result {
            return Some(result.clone());
        }
        match *slot {
            Some(i) if state.wakers[i].will_wake(waker) => {}
            Some(i) => state.wakers[i] = waker.clone(),
            None => {
                *slot = Some(state.wakers.len());
                state.wakers.push(waker.clone());
            }
        }
        None
    }
}

/// What a waiting [`Delivery`] uses to close the batch its record is in: a caller that waits
/// for its record wants it written now, not after `linger` (request/response code, an outbox
/// writer waiting on each record). Weak, so a delivery kept around holds neither the
/// producer's state nor the partition's queue.
#[derive(Debug, Clone)]
pub(crate) struct BatchCloser {
    pub slot: Weak<PartitionSlot>,
    pub signal: Weak<Signal>,
}

impl BatchCloser {
    /// Closes the open batch of `completion` if it is still being filled, and hands it to the
    /// writer thread.
    fn close(&self, completion: &Arc<BatchCompletion>) {
        let (Some(slot), Some(signal)) = (self.slot.upgrade(), self.signal.upgrade()) else {
            return;
        };
        let mut q = slot.queue.lock();
        let ours = q
            .open
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(&b.completion, completion));
        if !ours {
            // Closed already (full, lingered out, flushed): the writer has it.
            return;
        }
        q.close_open();
        drop(q);
        slot.batch_closed();
        signal.ready(&slot);
    }
}

/// The pending result of one [`Producer::send`](super::Producer::send).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `None` once the batch was closed when the record went in.
    pub(crate) closer: Option<BatchCloser>,
    pub(crate) batch: Option<Arc<BatchCompletion>>,
    pub(crate) index: u32,
    pub(crate) topic: crate::TopicName,
    pub(crate) partition: u32,
    pub(crate) timestamp: i64,
}

impl Delivery {
    /// Blocks until the record is acknowledged at the producer's durability, or failed.
    ///
    /// Waiting closes the batch the record is in, if it is still open: it is written now
    /// instead of after the producer's `linger`, so code that waits on each send pays no
    /// linger (records sent meanwhile by other threads still share the batch, and a `Synced`
    /// producer still shares its fsyncs).
    pub fn wait(&self) -> Result<RecordMetadata> {
        match &self.batch {
            None => Ok(self.metadata(None)),
            Some(b) => {
                self.close_batch(b);
                self.finish(b.wait(None).expect("waiting without deadline"))
            }
        }
    }

    /// Waits up to `timeout` for the result (`None` if still pending). Unlike
    /// [`wait`](Self::wait) it does not close the batch: it observes, so it can poll (a zero
    /// timeout) or bound a wait for a batch that others keep filling.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<RecordMetadata>> {
        match &self.batch {
            None => Some(Ok(self.metadata(None))),
            Some(b) => b
                .wait(Some(crate::config::deadline_after(Instant::now(), timeout)))
                .map(|r| self.finish(r)),
        }
    }

    fn close_batch(&self, completion: &Arc<BatchCompletion>) {
        if completion.peek().is_none() {
            if let Some(closer) = &self.closer {
                closer.close(completion);
            }
        }
    }

    /// The result if it is already known; never blocks.
    pub fn try_result(&self) -> Option<Result<RecordMetadata>> {
        match &self.batch {
            None => Some(Ok(self.metadata(None))),
            Some(b) => b.peek().map(|r| self.finish(r)),
        }
    }

    /// Whether [`try_result`](Self::try_result) would return a result.
    pub fn is_done(&self) -> bool {
        self.try_result().is_some()
    }

    fn finish(&self, result: Result<BatchAck>) -> Result<RecordMetadata> {
        result.map(|ack| self.metadata(Some(ack)))
    }

    fn metadata(&self, ack: Option<BatchAck>) -> RecordMetadata {
        RecordMetadata {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: ack.map(|a| a.base_offset + self.index as u64),
            timestamp: ack
                .and_then(|a| a.log_append_time)
                .unwrap_or(self.timestamp),
        }
    }
}

/// Awaiting a [`Delivery`] (feature `tokio`) does what [`Delivery::wait`] does without
/// blocking: it closes the record's batch if it is still open, then yields the result.
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{Durability, Log, ProducerConfig, Record, TopicConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path())?;
/// log.create_topic("orders", TopicConfig::default())?;
/// let producer = log.producer(ProducerConfig::default().durability(Durability::Synced))?;
/// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let meta = runtime.block_on(async {
///     producer.send_async("orders", Record::new("created")).await?.await
/// })?;
/// assert_eq!((meta.partition, meta.offset), (0, Some(0)));
/// # Ok(()) }
/// ```
#[cfg(feature = "tokio")]
impl std::future::IntoFuture for Delivery {
    type Output = Result<RecordMetadata>;
    type IntoFuture = DeliveryFuture;
    fn into_future(self) -> DeliveryFuture {
        DeliveryFuture {
            delivery: self,
            closed: false,
            slot: None,
        }
    }
}

/// A [`Delivery`] being awaited (feature `tokio`). Dropping it leaves the record's fate
/// unchanged: the record is written all the same.
#[cfg(feature = "tokio")]
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct DeliveryFuture {
    delivery: Delivery,
    closed: bool,
    slot: Option<usize>,
}

#[cfg(feature = "tokio")]
impl std::future::Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let Some(batch) = &this.delivery.batch else {
            return std::task::Poll::Ready(Ok(this.delivery.metadata(None)));
        };
        if !this.closed {
            this.closed = true;
            this.delivery.close_batch(batch);
        }
        match batch.poll_result(cx.waker(), &mut this.slot) {
            Some(result) => std::task::Poll::Ready(this.delivery.finish(result)),
            None => std::task::Poll::Pending,
        }
    }
}

/// Ids of batches not yet completed, so `flush` can wait for exactly the batches that existed
/// when it was called.
#[derive(Debug, Default)]
pub(crate) struct Outstanding {
    ids: Mutex<std::collections::BTreeSet<u64>>,
    changed: Condvar,
    next: std::sync::atomic::AtomicU64,
}

impl Outstanding {
    pub(crate) fn register(&self) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.ids.lock().insert(id);
        id
    }

    pub(crate) fn finish(&self, id: u64) {
        let mut ids = self.ids.lock();
        ids.remove(&id);
        self.changed.notify_all();
    }

    /// Id of the newest batch registered so far.
    pub(crate) fn newest(&self) -> Option<u64> {
        self.next
            .load(std::sync::atomic::Ordering::Relaxed)
            .checked_sub(1)
    }

    /// Waits until no batch with id <= `upto` is outstanding.
    pub(crate) fn wait_upto(&self, upto: u64) {
        let mut ids = self.ids.lock();
        while ids.first().is_some_and(|&first| first <= upto) {
            self.changed.wait(&mut ids);
        }
    }
}
