//! The producer: one `send` per record; annals turns them into batches per partition, writes
//! them from a background thread, and acknowledges each at the durability asked for.
//!
//! Threads and locks: `send` runs on the caller's thread and only touches the partition's queue
//! (a short mutex) and the memory budget; one writer thread per producer compresses, appends and,
//! for `Durability::Synced`, fsyncs each partition once per round for every batch written in that
//! round (group commit). See `docs/ARCHITECTURE.md`.

mod accumulator;
mod buffer_pool;
mod config;
mod delivery;
mod identity;
mod partitioner;
#[cfg(feature = "tokio")]
mod send_async;
mod sender;
mod transaction;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::catalog::{Catalog, LogClient, ProducerProbe};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::format::Record;
use crate::format::{record_encoded_len, BatchBuilder, Compression, HEADER_LEN};

use accumulator::{batch_options, Memory, OpenBatch, PartitionSlot, TopicSlot};
use buffer_pool::BufferPool;
pub use config::{Durability, ProducerConfig};
#[cfg(feature = "tokio")]
pub use delivery::DeliveryFuture;
use delivery::{BatchCloser, BatchCompletion, Outstanding};
pub use delivery::{Delivery, RecordMetadata};
pub(crate) use identity::ProducerIdentity;
pub use partitioner::{murmur2, partition_for_key, Partitioner};
use sender::Signal;
pub(crate) use transaction::Transactional;

/// Writes records to a [`Log`](crate::Log), batching, compressing and partitioning them. Cheap
/// to clone and safe to share between threads; all clones are one producer. Dropping the last
/// clone flushes and stops its writer thread (call [`close`](Producer::close) to see errors).
///
/// A producer does not keep its log open. When the log closes ([`Log::close`](crate::Log::close)
/// or its last handle dropped), it first closes the producer as `close` does: every record a
/// `send` had accepted is written, and its [`Delivery`] reports the outcome (a send racing with
/// the close is either accepted and written or refused with [`Error::Closed`]). From then on
/// every `send`, `try_send`, `flush` and `close` returns [`Error::Closed`].
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{Durability, Log, ProducerConfig, Record, TopicConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path())?;
/// log.create_topic("orders", TopicConfig::default().partitions(3))?;
/// let producer = log.producer(ProducerConfig::default().durability(Durability::Synced))?;
/// let delivery = producer.send("orders", Record::new("created").key("order-1"))?;
/// let meta = delivery.wait()?; // on disk: survives power loss
/// assert_eq!(meta.partition, annals::partition_for_key(b"order-1", 3));
/// producer.close()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Producer {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// The log's topics, not the log: a producer does not keep its log open (see `catalog.rs`).
    catalog: Catalog,
    config: ProducerConfig,
    identity: Option<ProducerIdentity>,
    /// Set for a producer with a `transactional_id`.
    txn: Option<Transactional>,
    /// Topics this producer has sent to. A short list scanned by name: producers write to a few
    /// topics, and comparing a short name beats hashing it on every send.
    topics: RwLock<Vec<Arc<TopicSlot>>>,
    memory: Memory,
    /// Buffers of batches already written, for new batches to encode into.
    buffers: BufferPool,
    /// Shared with the deliveries, whose `wait` closes their batch (see `Delivery::wait`).
    signal: Arc<Signal>,
    outstanding: Outstanding,
    /// The first failure since the last `flush`, which `flush` reports (so errors under
    /// `Durability::None`, whose deliveries complete early, are not lost).
    first_error: Mutex<Option<Error>>,
    /// Every `send` holds this shared for its whole run; `close` takes it exclusively to set
    /// `closed`, so no send can slip a record in after close has drained the queues.
    gate: RwLock<()>,
    closed: AtomicBool,
    /// Set when the log closed this producer: `flush` and `close` then say [`Error::Closed`].
    log_closed: AtomicBool,
    /// Set once if the writer thread panicked: the error every pending and later record fails
    /// with (see `die`).
    dead: OnceLock<Error>,
    /// For `Log::metrics`: this producer's serial there, and what it counted.
    serial: u64,
    counters: crate::metrics::ProducerCounters,
}

impl Producer {
    pub(crate) fn start(
        catalog: Catalog,
        config: ProducerConfig,
        identity: Option<ProducerIdentity>,
        txn: Option<Transactional>,
    ) -> Result<Producer> {
        config.validate()?;
        let shared = Arc::new(Shared {
            catalog: catalog.clone(),
            memory: Memory::new(config.buffer_memory),
            buffers: BufferPool::new(config.batch_size),
            config,
            identity,
            txn,
            topics: RwLock::new(Vec::new()),
            signal: Arc::default(),
            outstanding: Outstanding::default(),
            first_error: Mutex::new(None),
            gate: RwLock::new(()),
            closed: AtomicBool::new(false),
            log_closed: AtomicBool::new(false),
            dead: OnceLock::new(),
            serial: catalog.next_producer_serial(),
            counters: Default::default(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name(sender::THREAD_NAME.into())
            .spawn(move || sender::run(worker))?;
        let handle = Arc::new(Handle {
            shared,
            thread: Mutex::new(Some(thread)),
        });
        // A log that started closing meanwhile refuses it; dropping `handle` stops the thread.
        let client: Arc<dyn LogClient> = handle.clone();
        catalog.register(Arc::downgrade(&client))?;
        let probe: Arc<dyn ProducerProbe> = handle.shared.clone();
        catalog.register_producer(Arc::downgrade(&probe));
        Ok(Producer { handle })
    }

    /// Sends a record to `topic`, on the partition its key hashes to (or the configured
    /// partitioner's choice). Blocks only while the buffer is full, for at most `max_block`.
    ///
    /// Errors here are about the record or the producer ([`Error::UnknownTopic`],
    /// [`Error::RecordTooLarge`], [`Error::BufferFull`], [`Error::Closed`], ...); errors of the
    /// write itself arrive through [`Delivery::wait`] and [`flush`](Self::flush).
    ///
    /// If the writer thread panicked (a bug), the producer is dead: every record it had not
    /// acknowledged fails with [`Error::ThreadPanicked`], and so does every later `send`,
    /// `flush` and the first `close`. Create a new producer to go on.
    pub fn send(&self, topic: &str, record: Record) -> Result<Delivery> {
        let block = self.handle.shared.config.max_block;
        let sent = self.handle.shared.send(topic, None, &record, Some(block));
        self.handle.shared.count_refused(sent)
    }

    /// Sends a record to an explicit partition.
    pub fn send_to(&self, topic: &str, partition: u32, record: Record) -> Result<Delivery> {
        let block = self.handle.shared.config.max_block;
        let sent = self
            .handle
            .shared
            .send(topic, Some(partition), &record, Some(block));
        self.handle.shared.count_refused(sent)
    }

    /// Like [`send`](Self::send), but never blocks: a full buffer is [`Error::BufferFull`] at once.
    pub fn try_send(&self, topic: &str, record: Record) -> Result<Delivery> {
        let sent = self.handle.shared.send(topic, None, &record, None);
        self.handle.shared.count_refused(sent)
    }

    /// Writes every record sent so far and waits until each is acknowledged (or failed).
    /// Returns the first error any batch hit since the previous `flush`; [`Error::Closed`]
    /// once the log closed the producer.
    pub fn flush(&self) -> Result<()> {
        if self.handle.shared.log_closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.handle.shared.flush()
    }

    /// Flushes, then stops the writer thread. Later sends fail with [`Error::Closed`].
    /// Idempotent; also done by dropping the last clone, and by closing the log (after which
    /// this returns [`Error::Closed`]).
    pub fn close(&self) -> Result<()> {
        if self.handle.shared.log_closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.handle.close()
    }

    /// This producer's id and epoch, if it is idempotent (a transactional producer's move on
    /// with every transaction; `(-1, -1)` before `init_transactions`).
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.handle.shared.identity.as_ref().map(|i| i.get())
    }

    /// Bytes of records sent and not yet written (bounded by `buffer_memory`).
    pub fn buffered_bytes(&self) -> usize {
        self.handle.shared.memory.used()
    }
}

impl Handle {
    fn close(&self) -> Result<()> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let flushed = shared.flush();
        {
            // Waits for sends in progress (they can still get buffer space: the writer thread is
            // running) and turns away every later one.
            let _exclusive = shared.gate.write();
            shared.closed.store(true, Ordering::Release);
        }
        // Write what those last sends added, then stop the thread.
        let flushed = flushed.and(shared.flush());
        shared.signal.close();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
        shared.signal.forget_slots();
        // Nothing should be left: the writer drains the queues before it stops, and `die` fails
        // them if it panicked. Should anything be left all the same, fail it rather than leave
        // its deliveries waiting forever.
        shared.fail_queued(&Error::Closed);
        flushed
    }
}

impl LogClient for Handle {
    fn log_closing(&self) {
        // Errors of this last flush reach the records' deliveries; the producer's own calls
        // answer `Closed` from now on.
        let _ = self.close();
        self.shared.log_closed.store(true, Ordering::Release);
        // Keep no partition (and so none of its files) alive past the log.
        self.shared.topics.write().clear();
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Errors cannot be returned from drop; `close` reports them.
        let _ = self.close();
    }
}

impl ProducerProbe for Shared {
    fn metrics(&self) -> crate::metrics::ProducerMetrics {
        crate::metrics::ProducerMetrics {
            serial: self.serial,
            producer_id: self.identity.as_ref().map(|i| i.get()),
            transactional_id: self.config.transactional_id.clone(),
            buffer_bytes: self.memory.used() as u64,
            buffer_memory: self.memory.limit() as u64,
            counts: self.counters.snapshot(self.memory.waits()),
        }
    }
}

impl Shared {
    /// Counts a send that returned an error (nothing was accepted), and passes its result on.
    fn count_refused(&self, sent: Result<Delivery>) -> Result<Delivery> {
        if sent.is_err() {
            self.counters.refused();
        }
        sent
    }

    fn topic(&self, name: &str) -> Result<Arc<TopicSlot>> {
        // A deleted topic's partitions are closed; the name may belong to a new topic now.
        let live =
            |t: &Arc<TopicSlot>| &*t.name == name && !t.partitions[0].partition.inner.is_closed();
        if let Some(t) = self.topics.read().iter().find(|t| live(t)) {
            return Ok(t.clone());
        }
        let config = self.catalog.topic_config(name)?;
        let sticky = Arc::new(AtomicU32::new(0));
        let partitions = (0..config.partitions)
            .map(|id| {
                Ok(Arc::new(PartitionSlot {
                    partition: self.catalog.partition(name, id)?,
                    id,
                    partition_count: config.partitions,
                    sticky: sticky.clone(),
                    queue: Mutex::new(Default::default()),
                    next_sequence: Mutex::new(0),
                    txn_serial: AtomicU64::new(0),
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        let slot = Arc::new(TopicSlot {
            name: name.into(),
            partitions,
            max_message_bytes: config.max_message_bytes,
            compression: self.config.compression.unwrap_or(config.compression),
        });
        let mut topics = self.topics.write();
        if let Some(t) = topics.iter().find(|t| live(t)) {
            return Ok(t.clone());
        }
        topics.retain(|t| &*t.name != name);
        topics.push(slot.clone());
        Ok(slot)
    }

    /// Largest uncompressed batch for a topic: `batch_size`, but leaving room under
    /// `max_message_bytes` for the header and for a codec that expands incompressible data.
    fn batch_cap(&self, topic: &TopicSlot) -> usize {
        let max = topic.max_message_bytes;
        self.config.batch_size.min(max - max / 32 - 64)
    }

    fn send(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: &Record,
        block: Option<Duration>,
    ) -> Result<Delivery> {
        let _shared = self.gate.read();
        if let Some(e) = self.dead.get() {
            return Err(e.clone());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // A transactional producer sends only inside a transaction.
        let txn_serial = self.txn.as_ref().map(|txn| txn.sending()).transpose()?;
        let t = self.topic(topic)?;
        let timestamp = match record.timestamp {
            Some(ts) if ts < 0 => {
                return Err(Error::InvalidArgument(format!(
                    "record timestamp {ts} is negative"
                )))
            }
            Some(ts) => ts,
            None => now_ms(),
        };
        // The record's bytes in a batch, with slack for its timestamp and offset deltas, and
        // what a codec may add to incompressible data (LZ4's bound plus frame headers), so a
        // record accepted here always fits the topic's limit when written.
        let size = record_encoded_len(record, 0, 0) + 12;
        let codec_slack = match t.compression {
            Compression::None => 0,
            _ => size / 255 + 64,
        };
        if size + HEADER_LEN + codec_slack > t.max_message_bytes {
            return Err(Error::RecordTooLarge {
                size: size + HEADER_LEN,
                max: t.max_message_bytes,
            });
        }
        if size > self.memory.limit() {
            return Err(Error::RecordTooLarge {
                size,
                max: self.memory.limit(),
            });
        }
        let count = t.partitions.len() as u32;
        let sticky =
            partition.is_none() && self.config.partitioner.is_none() && record.key.is_none();
        let mut p = self.choose_partition(&t, topic, partition, record)?;
        self.memory.reserve(size, block)?;
        let cap = self.batch_cap(&t);
        let linger = self.config.linger;
        loop {
            let slot = &t.partitions[p as usize];
            if let (Some(txn), Some(serial)) = (&self.txn, txn_serial) {
                // Before the transaction's first record on this partition is accepted.
                if let Err(e) = txn.add_partition(self, slot, topic, serial) {
                    self.memory.release(size);
                    return Err(e);
                }
            }
            let mut q = slot.queue.lock();
            let full = q
                .open
                .as_ref()
                .is_some_and(|b| b.builder.uncompressed_len() + size > cap);
            if full {
                q.close_open();
                drop(q);
                slot.batch_closed();
                self.signal.ready(slot);
                if sticky {
                    // A keyless record starts its new batch on the next partition.
                    p = t.partitions[0].sticky.load(Ordering::Relaxed) % count;
                }
                continue;
            }
            let mut new_batch_at = None;
            if q.open.is_none() {
                let producer = self.identity.as_ref().map(|i| i.get());
                let options = batch_options(t.compression, producer, self.txn.is_some());
                let now = Instant::now();
                q.open = Some(OpenBatch {
                    id: self.outstanding.register(),
                    builder: BatchBuilder::reusing(
                        options,
                        self.buffers.take(),
                        cap.min(size.max(4096)),
                    ),
                    completion: Arc::new(BatchCompletion::default()),
                    created: now,
                    reserved: 0,
                    records: 0,
                });
                new_batch_at = Some(now + linger);
            }
            let open = q.open.as_mut().expect("just ensured");
            if let Err(e) = open.builder.push(record, timestamp) {
                // Only a field the wire format cannot express gets here; leave no empty batch.
                if open.builder.is_empty() {
                    let empty = q.open.take().expect("present");
                    drop(q);
                    self.complete(empty, Err(e.clone()));
                }
                self.memory.release(size);
                return Err(e);
            }
            open.reserved += size;
            open.records += 1;
            let index = open.builder.record_count() as u32 - 1;
            let completion = open.completion.clone();
            let close_now = linger.is_zero() || open.builder.uncompressed_len() >= cap;
            if close_now {
                q.close_open();
            }
            drop(q);
            if close_now {
                slot.batch_closed();
                self.signal.ready(slot);
            } else if let Some(at) = new_batch_at {
                self.signal.deadline(slot, at);
            }
            let waits = self.config.durability != Durability::None;
            return Ok(Delivery {
                closer: (waits && !close_now).then(|| BatchCloser {
                    slot: Arc::downgrade(slot),
                    signal: Arc::downgrade(&self.signal),
                }),
                batch: waits.then_some(completion),
                index,
                topic: t.name.clone(),
                partition: p,
                timestamp,
            });
        }
    }

    fn choose_partition(
        &self,
        t: &TopicSlot,
        topic: &str,
        partition: Option<u32>,
        record: &Record,
    ) -> Result<u32> {
        let count = t.partitions.len() as u32;
        match (partition, &self.config.partitioner, record.key.as_deref()) {
            (Some(p), _, _) if p < count => Ok(p),
            (Some(p), _, _) => Err(Error::UnknownPartition {
                topic: topic.to_string(),
                partition: p,
                partitions: count,
            }),
            (None, Some(custom), key) => {
                let p = custom.partition(topic, key, count);
                if p >= count {
                    return Err(Error::InvalidArgument(format!(
                        "partitioner chose partition {p} of a {count}-partition topic"
                    )));
                }
                Ok(p)
            }
            (None, None, Some(key)) => Ok(partition_for_key(key, count)),
            (None, None, None) => Ok(t.partitions[0].sticky.load(Ordering::Relaxed) % count),
        }
    }

    fn flush(&self) -> Result<()> {
        let upto = self.outstanding.newest();
        let topics: Vec<Arc<TopicSlot>> = self.topics.read().clone();
        for t in &topics {
            for slot in &t.partitions {
                let mut q = slot.queue.lock();
                let closed = q.close_open();
                let has_work = !q.ready.is_empty();
                drop(q);
                if closed {
                    slot.batch_closed();
                }
                if has_work {
                    self.signal.ready(slot);
                }
            }
        }
        if let Some(upto) = upto {
            self.outstanding.wait_upto(upto);
        }
        let first = self.first_error.lock().take();
        // A dead producer writes nothing more: every flush says so, not only the first.
        match (self.dead.get(), first) {
            (Some(dead), _) => Err(dead.clone()),
            (None, Some(e)) => Err(e),
            (None, None) => Ok(()),
        }
    }

    /// The writer thread panicked (`error`): fails the batches it held (`in_flight`) and every
    /// queued or open one, and turns every later send away with `error`. Runs on the dying
    /// writer thread, after the panic was caught.
    fn die(&self, error: Error, in_flight: Vec<OpenBatch>) {
        let _ = self.dead.set(error.clone());
        for batch in in_flight {
            self.complete(batch, Err(error.clone()));
        }
        // Failing the queued batches frees their memory, which wakes sends blocked on a full
        // buffer; then the gate waits for every send in progress (which may have queued a record
        // after the first pass), and a second pass fails what they added. Later sends see `dead`.
        self.fail_queued(&error);
        drop(self.gate.write());
        self.fail_queued(&error);
    }

    /// Fails every open and ready batch of every partition with `error`.
    fn fail_queued(&self, error: &Error) {
        let topics: Vec<Arc<TopicSlot>> = self.topics.read().clone();
        for topic in &topics {
            for slot in &topic.partitions {
                let mut q = slot.queue.lock();
                q.close_open();
                let left: Vec<OpenBatch> = q.ready.drain(..).collect();
                drop(q);
                for batch in left {
                    self.complete(batch, Err(error.clone()));
                }
            }
        }
    }

    /// Finishes a batch: releases its memory, completes its deliveries, lets `flush` go on.
    fn complete(&self, batch: OpenBatch, result: Result<delivery::BatchAck>) {
        self.memory.release(batch.reserved);
        self.counters.completed(batch.records, result.is_ok());
        if let Err(e) = &result {
            self.first_error.lock().get_or_insert_with(|| e.clone());
        }
        batch.completion.complete(result);
        self.outstanding.finish(batch.id);
    }
}
