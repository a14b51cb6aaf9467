//! Catch-up subscriptions: every event from a starting point, first the history, then live.
//!
//! [`Subscription`] reads every partition of the events topic with a read_committed consumer
//! (a manual assignment: no group, no rebalance), so history and live are one read and there
//! is no switch to get wrong; waiting is the consumer's long poll, woken by appends. Its
//! [`Checkpoint`] is the next offset of each partition after the last event handed out.
//!
//! [`StreamSubscription`] reads one stream's history through the index up to a boundary
//! offset fixed when it starts (the index's end), then follows its partition live from that
//! offset: events below the boundary come from the index, events at or above it from the
//! live read, so the switch has neither a gap nor a duplicate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::event::{parse_key, validate_stream_name, EventPosition, KeyKind, RecordedEvent};
use super::state::stream_state;
use super::{Access, EventStore};
use crate::consumer::{ConsumedRecord, Consumer, ConsumerConfig, IsolationLevel};
use crate::error::{Error, Result};
use crate::offsets::OffsetAndMetadata;
use crate::topic_partition::TopicPartition;

/// Events a stream subscription reads from the index at a time while catching up.
const HISTORY_CHUNK: usize = 256;

/// Where [`EventStore::subscribe_all`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The oldest event still stored.
    Start,
    /// Only events appended after the subscription started.
    End,
    /// Right after the events a [`Checkpoint`] had seen.
    After(Checkpoint),
}

/// How far a [`Subscription`] got: for each partition of the events topic, the offset after
/// the last event it handed out. Store it (with [`EventStore::save_checkpoint`], or in your
/// own database together with what you derived from the events, as text via `Display` /
/// `FromStr`) and resume with [`Position::After`].
///
/// ```
/// use annals::Checkpoint;
/// let cp: Checkpoint = "12,40".parse().unwrap();
/// assert_eq!(cp.offsets(), &[12, 40]);
/// assert_eq!(cp.to_string(), "12,40");
/// assert!("12,x".parse::<Checkpoint>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    next: Vec<u64>,
}

impl Checkpoint {
    /// The next offset to read in each partition, by partition.
    pub fn offsets(&self) -> &[u64] {
        &self.next
    }
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, o) in self.next.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{o}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Checkpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Checkpoint> {
        let next = s
            .split(',')
            .map(|o| o.trim().parse::<u64>())
            .collect::<std::result::Result<Vec<u64>, _>>()
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "{s:?} is not a checkpoint: expected comma-separated offsets, one per partition"
                ))
            })?;
        Ok(Checkpoint { next })
    }
}

/// Where [`EventStore::subscribe_stream`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamPosition {
    /// The stream's first event still stored.
    Start,
    /// Only events appended after the subscription started.
    End,
    /// Right after this version (the last one the subscriber processed).
    After(u64),
}

/// Every event of the store from a [`Position`] on, in order within each partition (and so
/// within each stream); with one partition, in the store's total order. See
/// [`EventStore::subscribe_all`].
#[derive(Debug)]
pub struct Subscription {
    consumer: Consumer,
    topic: String,
    positions: Vec<u64>,
    pending: VecDeque<RecordedEvent>,
}

/// Every event of one stream from a [`StreamPosition`] on, in version order. See
/// [`EventStore::subscribe_stream`].
#[derive(Debug)]
pub struct StreamSubscription {
    store: EventStore,
    stream: String,
    next_version: u64,
    /// Offsets below this are read from the index, at or above it live.
    boundary: u64,
    history_done: bool,
    consumer: Consumer,
    pending: VecDeque<RecordedEvent>,
}

fn subscription_consumer(store: &EventStore) -> Result<Consumer> {
    let config = ConsumerConfig {
        isolation_level: IsolationLevel::ReadCommitted,
        client_id: "event-store-subscription".into(),
        ..ConsumerConfig::new(format!("__es.{}", store.name()))
    };
    store.inner.log.consumer(config)
}

/// The event in a consumed record of the events topic, if it holds one.
fn consumed_event(r: ConsumedRecord) -> Option<RecordedEvent> {
    let Some(KeyKind::Event { stream, version }) = parse_key(r.key.as_deref()?) else {
        return None;
    };
    let position = EventPosition {
        partition: r.partition,
        offset: r.offset,
    };
    let headers = r.headers.iter().map(|h| (h.key.as_str(), h.value.clone()));
    super::event::decode_event(stream, version, position, r.timestamp, r.value?, headers)
}

impl EventStore {
    /// Subscribes to every event of the store from `from` on: first the history, then, as
    /// they are appended, new events, each delivered once. Waiting for new events is a long
    /// poll woken by the append, not a polling loop.
    ///
    /// Order: per partition of the events topic, which keeps each stream's events in version
    /// order; across partitions there is no order (configure one partition for a total one).
    /// Events of streams deleted later are delivered until compaction removes them.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use std::time::Duration;
    /// use annals::{EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent, Position};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// let store = EventStore::open(&log, "shop", EventStoreConfig::default())?;
    /// store.append("cart-1", ExpectedVersion::Any, &[NewEvent::new("Added", "apple")])?;
    /// let mut sub = store.subscribe_all(Position::Start)?;
    /// let e = sub.next(Duration::from_secs(5))?.expect("the history");
    /// assert_eq!((e.stream.as_str(), e.version), ("cart-1", 0));
    /// store.save_checkpoint("projector", &sub.checkpoint())?;
    /// // Later, or in another process: resume after what was processed.
    /// let cp = store.load_checkpoint("projector")?.expect("saved");
    /// let mut sub = store.subscribe_all(Position::After(cp))?;
    /// assert!(sub.next(Duration::from_millis(10))?.is_none());
    /// # Ok(()) }
    /// ```
    ///
    /// Errors: [`Error::InvalidArgument`] for a checkpoint of another partition count;
    /// [`Error::Closed`]; I/O.
    pub fn subscribe_all(&self, from: Position) -> Result<Subscription> {
        self.check_open()?;
        let topic = self.inner.name.clone();
        let n = self.inner.events.len();
        let mut consumer = subscription_consumer(self)?;
        let tps: Vec<TopicPartition> = (0..n as u32)
            .map(|p| TopicPartition::new(topic.clone(), p))
            .collect();
        consumer.assign(&tps)?;
        let mut positions = Vec::with_capacity(n);
        for (p, slot) in self.inner.events.iter().enumerate() {
            let start = slot.partition.log_start_offset();
            let offset = match &from {
                Position::Start => start,
                Position::End => slot.partition.last_stable_offset(),
                Position::After(cp) => {
                    if cp.next.len() != n {
                        return Err(Error::InvalidArgument(format!(
                            "checkpoint {cp} has {} partitions; event store {:?} has {n}",
                            cp.next.len(),
                            self.inner.name
                        )));
                    }
                    cp.next[p].clamp(start, slot.partition.high_watermark())
                }
            };
            consumer.seek(&topic, p as u32, offset)?;
            positions.push(offset);
        }
        Ok(Subscription {
            consumer,
            topic,
            positions,
            pending: VecDeque::new(),
        })
    }

    /// Subscribes to the events of `stream` from `from` on: its history through the index
    /// (no scan of the partition), then live. Each event is delivered once, in version order.
    ///
    /// Errors: [`Error::StreamDeleted`], an invalid name, [`Error::Closed`], I/O.
    pub fn subscribe_stream(
        &self,
        stream: &str,
        from: StreamPosition,
    ) -> Result<StreamSubscription> {
        self.check_open()?;
        validate_stream_name(stream)?;
        let (p, slot) = self.slot(stream);
        let (boundary, state) = slot.locked(Access::Read, |index| {
            let state = stream_state(index, &slot.partition, stream)?;
            Ok((index.end(), state))
        })?;
        state.check_not_tombstoned(stream)?;
        let next_version = match from {
            StreamPosition::Start => state.meta.truncate_before,
            StreamPosition::End => state.next_version,
            StreamPosition::After(v) => v.saturating_add(1).max(state.meta.truncate_before),
        };
        let mut consumer = subscription_consumer(self)?;
        consumer.assign(&[TopicPartition::new(self.inner.name.clone(), p)])?;
        consumer.seek(&self.inner.name, p, boundary)?;
        Ok(StreamSubscription {
            store: self.clone(),
            stream: stream.to_string(),
            next_version,
            boundary,
            history_done: next_version >= state.next_version,
            consumer,
            pending: VecDeque::new(),
        })
    }

    /// Stores `checkpoint` durably as subscriber `subscriber`'s progress (a consumer-group
    /// commit of group `subscriber` on the events topic, so `Log::groups` and lag tools see
    /// it).
    ///
    /// Errors: an invalid group id, a checkpoint of another partition count, I/O.
    pub fn save_checkpoint(&self, subscriber: &str, checkpoint: &Checkpoint) -> Result<()> {
        self.check_open()?;
        let n = self.inner.events.len();
        if checkpoint.next.len() != n {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {checkpoint} has {} partitions; event store {:?} has {n}",
                checkpoint.next.len(),
                self.inner.name
            )));
        }
        let mut consumer = self.inner.log.consumer(ConsumerConfig::new(subscriber))?;
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = checkpoint
            .next
            .iter()
            .enumerate()
            .map(|(p, &o)| {
                (
                    TopicPartition::new(self.inner.name.clone(), p as u32),
                    OffsetAndMetadata::new(o),
                )
            })
            .collect();
        let tps: Vec<TopicPartition> = offsets.iter().map(|(tp, _)| tp.clone()).collect();
        consumer.assign(&tps)?;
        consumer.commit_offsets(&offsets)?;
        consumer.close()
    }

    /// Subscriber `subscriber`'s saved checkpoint, if it saved one.
    ///
    /// Errors: an invalid group id, [`Error::Closed`], I/O.
    pub fn load_checkpoint(&self, subscriber: &str) -> Result<Option<Checkpoint>> {
        self.check_open()?;
        let mut next = Vec::new();
        let mut any = false;
        for p in 0..self.inner.events.len() as u32 {
            let c = self
                .inner
                .log
                .committed_offset(subscriber, &self.inner.name, p)?;
            any |= c.is_some();
            next.push(c.map_or(0, |c| c.offset));
        }
        Ok(any.then_some(Checkpoint { next }))
    }
}

/// Time left until `deadline`, zero once it passed.
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl Subscription {
    /// The next event, waiting up to `timeout` for one; `None` if none came.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.positions[e.position.partition as usize] = e.position.offset + 1;
                return Ok(Some(e));
            }
            let records = self.consumer.poll(remaining(deadline))?;
            let got_records = !records.is_empty();
            self.pending
                .extend(records.into_iter().filter_map(consumed_event));
            // Records that held no event (markers, deletes, other streams) are progress: keep
            // reading what is there, even past the deadline, until a poll finds nothing.
            if self.pending.is_empty() && !got_records {
                return Ok(None);
            }
        }
    }

    /// Every event available now, or the first to come within `timeout`; empty if none came.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<RecordedEvent>> {
        let Some(first) = self.next(timeout)? else {
            return Ok(Vec::new());
        };
        let mut out = vec![first];
        while let Some(e) = self.pending.pop_front() {
            self.positions[e.position.partition as usize] = e.position.offset + 1;
            out.push(e);
        }
        Ok(out)
    }

    /// Where this subscription is: right after the last event it handed out.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            next: self.positions.clone(),
        }
    }

    /// The events topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl StreamSubscription {
    /// The next event of the stream, waiting up to `timeout` for one; `None` if none came.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.pending.pop_front() {
                self.next_version = e.version + 1;
                return Ok(Some(e));
            }
            if !self.history_done {
                let chunk =
                    self.store
                        .read_stream(&self.stream, self.next_version, HISTORY_CHUNK)?;
                let full = chunk.len() == HISTORY_CHUNK;
                let before = chunk.len();
                self.pending.extend(
                    chunk
                        .into_iter()
                        .filter(|e| e.position.offset < self.boundary),
                );
                // Past the boundary the live read takes over.
                self.history_done = !full || self.pending.len() < before;
                continue;
            }
            let records = self.consumer.poll(remaining(deadline))?;
            let got_records = !records.is_empty();
            let (stream, next) = (&self.stream, self.next_version);
            self.pending.extend(
                records
                    .into_iter()
                    .filter_map(consumed_event)
                    .filter(|e| e.stream == *stream && e.version >= next),
            );
            // Records that held no event (markers, deletes, other streams) are progress: keep
            // reading what is there, even past the deadline, until a poll finds nothing.
            if self.pending.is_empty() && !got_records {
                return Ok(None);
            }
        }
    }

    /// The version of the last event handed out (`None`: none yet, and the subscription
    /// started at the stream's beginning): resume with [`StreamPosition::After`].
    pub fn last_version(&self) -> Option<u64> {
        self.next_version.checked_sub(1)
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}
