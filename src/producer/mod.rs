//! The producer: one `send` per record; annals turns them into batches per partition, writes
//! them from a background thread, and acknowledges each at the durability asked for.
//!
//! Threads and locks: `send` runs on the caller's thread and only touches the partition's queue
//! (a short mutex) and the memory budget; one writer thread per producer compresses, appends and,
//! for `Durability::Synced`, fsyncs each partition once per round for every batch written in that
//! round (group commit). See `docs/ARCHITECTURE.md`.

mod accumulator;
mod config;
mod delivery;
mod partitioner;
mod sender;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::{record_encoded_len, BatchBuilder, HEADER_LEN};
use crate::log::{Log, ProducerIdentity};
use crate::partition::now_ms;
use crate::record::Record;

use accumulator::{batch_options, Memory, OpenBatch, PartitionSlot, TopicSlot};
pub use config::{Durability, ProducerConfig};
use delivery::{BatchCompletion, Outstanding};
pub use delivery::{Delivery, RecordMetadata};
use partitioner::StickyPartitioner;
pub use partitioner::{murmur2, partition_for_key, Partitioner};
use sender::Signal;

/// Writes records to a [`Log`], batching, compressing and partitioning them. Cheap to clone and
/// safe to share between threads; all clones are one producer. Dropping the last clone flushes
/// and stops its writer thread (call [`close`](Producer::close) to see errors).
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
    log: Log,
    config: ProducerConfig,
    identity: Option<ProducerIdentity>,
    topics: RwLock<HashMap<String, Arc<TopicSlot>>>,
    memory: Memory,
    signal: Signal,
    outstanding: Outstanding,
    /// The first failure since the last `flush`, which `flush` reports (so errors under
    /// `Durability::None`, whose deliveries complete early, are not lost).
    first_error: Mutex<Option<Error>>,
    closed: AtomicBool,
    sticky: StickyPartitioner,
}

impl Producer {
    pub(crate) fn start(
        log: Log,
        config: ProducerConfig,
        identity: Option<ProducerIdentity>,
    ) -> Result<Producer> {
        config.validate()?;
        let shared = Arc::new(Shared {
            log,
            memory: Memory::new(config.buffer_memory),
            config,
            identity,
            topics: RwLock::new(HashMap::new()),
            signal: Signal::default(),
            outstanding: Outstanding::default(),
            first_error: Mutex::new(None),
            closed: AtomicBool::new(false),
            sticky: StickyPartitioner,
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("annals-producer".into())
            .spawn(move || sender::run(worker))?;
        Ok(Producer {
            handle: Arc::new(Handle {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Sends a record to `topic`, on the partition its key hashes to (or the configured
    /// partitioner's choice). Blocks only while the buffer is full, for at most `max_block`.
    ///
    /// Errors here are about the record or the producer ([`Error::UnknownTopic`],
    /// [`Error::RecordTooLarge`], [`Error::BufferFull`], [`Error::Closed`], ...); errors of the
    /// write itself arrive through [`Delivery::wait`] and [`flush`](Self::flush).
    pub fn send(&self, topic: &str, record: Record) -> Result<Delivery> {
        let block = self.handle.shared.config.max_block;
        self.handle.shared.send(topic, None, record, Some(block))
    }

    /// Sends a record to an explicit partition.
    pub fn send_to(&self, topic: &str, partition: u32, record: Record) -> Result<Delivery> {
        let block = self.handle.shared.config.max_block;
        self.handle
            .shared
            .send(topic, Some(partition), record, Some(block))
    }

    /// Like [`send`](Self::send), but never blocks: a full buffer is [`Error::BufferFull`] at once.
    pub fn try_send(&self, topic: &str, record: Record) -> Result<Delivery> {
        self.handle.shared.send(topic, None, record, None)
    }

    /// Writes every record sent so far and waits until each is acknowledged (or failed).
    /// Returns the first error any batch hit since the previous `flush`.
    pub fn flush(&self) -> Result<()> {
        self.handle.shared.flush()
    }

    /// Flushes, then stops the writer thread. Later sends fail with [`Error::Closed`].
    /// Idempotent; also done by dropping the last clone.
    pub fn close(&self) -> Result<()> {
        self.handle.close()
    }

    /// This producer's id and epoch, if it is idempotent.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.handle
            .shared
            .identity
            .as_ref()
            .map(|i| (i.producer_id, i.epoch))
    }

    /// Bytes of records sent and not yet written (bounded by `buffer_memory`).
    pub fn buffered_bytes(&self) -> usize {
        self.handle.shared.memory.used()
    }
}

impl Handle {
    fn close(&self) -> Result<()> {
        let shared = &self.shared;
        let flushed = if shared.closed.load(Ordering::Acquire) {
            Ok(())
        } else {
            shared.flush()
        };
        shared.closed.store(true, Ordering::Release);
        shared.signal.close();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
        // A send that raced with close may have queued a batch the thread never saw: fail it
        // rather than leave its deliveries waiting forever.
        for topic in shared.topics.read().values() {
            for slot in &topic.partitions {
                let mut q = slot.queue.lock();
                q.close_open();
                let left: Vec<OpenBatch> = q.ready.drain(..).collect();
                drop(q);
                for batch in left {
                    shared.complete(batch, Err(Error::Closed));
                }
            }
        }
        flushed
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Errors cannot be returned from drop; `close` reports them.
        let _ = self.close();
    }
}

impl Shared {
    fn topic(&self, name: &str) -> Result<Arc<TopicSlot>> {
        if let Some(t) = self.topics.read().get(name) {
            return Ok(t.clone());
        }
        let config = self.log.topic_config(name)?;
        let name_arc: Arc<str> = Arc::from(name);
        let partitions = (0..config.partitions)
            .map(|id| {
                Ok(Arc::new(PartitionSlot {
                    partition: self.log.partition(name, id)?,
                    queue: Mutex::new(Default::default()),
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        let slot = Arc::new(TopicSlot {
            name: name_arc,
            partitions,
            sticky: AtomicU32::new(0),
            max_message_bytes: config.max_message_bytes,
            compression: self.config.compression.unwrap_or(config.compression),
        });
        Ok(self
            .topics
            .write()
            .entry(name.to_string())
            .or_insert(slot)
            .clone())
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
        record: Record,
        block: Option<Duration>,
    ) -> Result<Delivery> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
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
        // The record's bytes in a batch, with slack for its timestamp and offset deltas.
        let size = record_encoded_len(&record, 0, 0) + 12;
        if size + HEADER_LEN > t.max_message_bytes {
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
        let p = match partition {
            Some(p) if p < count => p,
            Some(p) => {
                return Err(Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition: p,
                    partitions: count,
                })
            }
            None => match &self.config.partitioner {
                Some(custom) => {
                    let p = custom.partition(topic, record.key.as_deref(), count);
                    if p >= count {
                        return Err(Error::InvalidArgument(format!(
                            "partitioner chose partition {p} of a {count}-partition topic"
                        )));
                    }
                    p
                }
                None => self
                    .sticky
                    .partition(record.key.as_deref(), count, &t.sticky),
            },
        };
        self.memory.reserve(size, block)?;
        let slot = &t.partitions[p as usize];
        let cap = self.batch_cap(&t);
        let linger = self.config.linger;
        let mut closed_one = false;
        let mut new_batch_at = None;
        let mut q = slot.queue.lock();
        if q.open
            .as_ref()
            .is_some_and(|b| b.builder.uncompressed_len() + size > cap)
        {
            closed_one = q.close_open();
        }
        if q.open.is_none() {
            let producer = self.identity.as_ref().map(|i| (i.producer_id, i.epoch));
            let options = batch_options(t.compression, producer, q.next_sequence);
            let now = Instant::now();
            q.open = Some(OpenBatch {
                id: self.outstanding.register(),
                builder: BatchBuilder::with_capacity(options, cap.min(size.max(4096))),
                completion: Arc::new(BatchCompletion::default()),
                created: now,
                reserved: 0,
            });
            new_batch_at = Some(now + linger);
        }
        let open = q.open.as_mut().expect("just ensured");
        if let Err(e) = open.builder.push(&record, timestamp) {
            // Only a field the wire format cannot express gets here; leave no empty batch behind.
            if open.builder.is_empty() {
                let empty = q.open.take().expect("present");
                drop(q);
                self.complete(empty, Err(e.clone()));
            }
            self.memory.release(size);
            return Err(e);
        }
        open.reserved += size;
        let index = open.builder.record_count() as u32 - 1;
        let completion = open.completion.clone();
        if linger.is_zero() || open.builder.uncompressed_len() >= cap {
            closed_one |= q.close_open();
        }
        drop(q);
        if closed_one {
            self.sticky.on_batch_closed(p, count, &t.sticky);
            self.signal.ready(slot);
        }
        if let Some(at) = new_batch_at.filter(|_| !linger.is_zero()) {
            self.signal.deadline(slot, at);
        }
        Ok(Delivery {
            batch: (self.config.durability != Durability::None).then_some(completion),
            index,
            topic: t.name.clone(),
            partition: p,
            timestamp,
        })
    }

    fn flush(&self) -> Result<()> {
        let upto = self.outstanding.newest();
        let topics: Vec<Arc<TopicSlot>> = self.topics.read().values().cloned().collect();
        for t in &topics {
            for slot in &t.partitions {
                let mut q = slot.queue.lock();
                q.close_open();
                let has_work = !q.ready.is_empty();
                drop(q);
                if has_work {
                    self.signal.ready(slot);
                }
            }
        }
        if let Some(upto) = upto {
            self.outstanding.wait_upto(upto);
        }
        match self.first_error.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Finishes a batch: releases its memory, completes its deliveries, lets `flush` go on.
    fn complete(&self, batch: OpenBatch, result: Result<delivery::BatchAck>) {
        self.memory.release(batch.reserved);
        if let Err(e) = &result {
            self.first_error.lock().get_or_insert_with(|| e.clone());
        }
        batch.completion.complete(result);
        self.outstanding.finish(batch.id);
    }
}
