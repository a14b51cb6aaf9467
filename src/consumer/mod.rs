//! The consumer: reads assigned partitions from remembered positions, long-polls for new data,
//! commits positions to `__consumer_offsets`, and (when subscribed) takes part in a consumer
//! group whose in-process coordinator splits partitions between members.
//!
//! A `Consumer` is used from one thread at a time (`&mut self`, like Kafka's); it is `Send`, so
//! it can move between threads. Its memory is bounded: at most `max_partition_fetch_bytes` of
//! read-ahead per assigned partition.

mod config;
mod fetch;
mod rebalance;
#[cfg(feature = "tokio")]
mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::{Header, StoredRecord};
use crate::offsets::{OffsetAndMetadata, OffsetStore};
use crate::partition::Partition;
use crate::topic_partition::{TopicName, TopicPartition};
use crate::wait::Waiter;
pub use config::{AutoOffsetReset, ConsumerConfig, IsolationLevel};
#[cfg(feature = "tokio")]
pub use stream::{BatchStream, RecordStream};

/// A record returned by [`Consumer::poll`], with the partition it came from.
///
/// `key`, `value` and header values share the buffer the fetch read (zero-copy).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumedRecord {
    /// The topic (shared by every record of a poll, so cloning it is cheap).
    pub topic: TopicName,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl ConsumedRecord {
    /// The value as UTF-8; `None` for a tombstone or bytes that are not UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        crate::format::as_str(&self.value)
    }

    /// The key as UTF-8; `None` without a key or for bytes that are not UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        crate::format::as_str(&self.key)
    }

    /// The value of the last header named `name` (Kafka's `lastHeader`); `None` if there is
    /// none or its value is null.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        crate::format::last_header(&self.headers, name)
    }
}

/// A whole batch returned by [`Consumer::poll_batches`], with the partition it came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumedBatch {
    pub topic: TopicName,
    pub partition: u32,
    /// The batch; iterate [`BatchView::records`](crate::format::BatchView::records).
    pub batch: crate::format::BatchView,
}

/// How far a group is behind in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PartitionLag {
    pub topic: TopicName,
    pub partition: u32,
    /// The group's committed offset (the next offset it will read), if it committed one.
    pub committed: Option<u64>,
    /// This consumer's position (only from [`Consumer::lag`]; `None` from
    /// [`Log::group_lag`](crate::Log::group_lag) or before the first fetch).
    pub position: Option<u64>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    /// The partition's last stable offset (below it, no transaction is open).
    pub last_stable_offset: u64,
    /// `high_watermark - committed` (`last_stable_offset - committed` for a read_committed
    /// consumer's [`Consumer::lag`]); without a commit, counted from the log start offset.
    pub lag: u64,
}

impl PartitionLag {
    pub(crate) fn new(
        tp: &TopicPartition,
        partition: &Partition,
        committed: Option<u64>,
        position: Option<u64>,
    ) -> Self {
        Self::with_isolation(
            tp,
            partition,
            committed,
            position,
            IsolationLevel::ReadUncommitted,
        )
    }

    pub(crate) fn with_isolation(
        tp: &TopicPartition,
        partition: &Partition,
        committed: Option<u64>,
        position: Option<u64>,
        isolation: IsolationLevel,
    ) -> Self {
        let log_start_offset = partition.log_start_offset();
        let high_watermark = partition.high_watermark();
        let last_stable_offset = partition.last_stable_offset_below(high_watermark);
        let end = match isolation {
            IsolationLevel::ReadUncommitted => high_watermark,
            IsolationLevel::ReadCommitted => last_stable_offset,
        };
        PartitionLag {
            topic: tp.topic.clone(),
            partition: tp.partition,
            committed,
            position,
            log_start_offset,
            high_watermark,
            last_stable_offset,
            lag: end.saturating_sub(committed.unwrap_or(log_start_offset)),
        }
    }
}

/// Where a reader at `isolation` finds the end of `partition`.
pub(crate) fn end_of(partition: &Partition, isolation: IsolationLevel) -> u64 {
    match isolation {
        IsolationLevel::ReadUncommitted => partition.high_watermark(),
        IsolationLevel::ReadCommitted => partition.last_stable_offset(),
    }
}

/// Callbacks a group member gets when its assignment changes. Each gets the consumer, so
/// `on_revoked` can commit the positions of partitions it is about to lose (the commit is
/// accepted: the member still owns them while the callback runs).
///
/// ```
/// use annals::{Consumer, RebalanceListener, TopicPartition};
/// struct CommitOnRevoke;
/// impl RebalanceListener for CommitOnRevoke {
///     fn on_revoked(&mut self, consumer: &mut Consumer, _lost: &[TopicPartition]) {
///         let _ = consumer.commit(); // a failure only means the records are read again
///     }
/// }
/// ```
pub trait RebalanceListener: Send {
    /// Partitions just granted; reading starts at their committed offsets.
    fn on_assigned(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }
    /// Partitions about to be handed to another member. Commit here to avoid re-delivery.
    fn on_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }
    /// Partitions taken away without a chance to commit: this member was removed from its
    /// group (it did not poll within `max_poll_interval`) or the topic was deleted.
    fn on_lost(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }
}

/// One assigned partition's reading state.
#[derive(Debug)]
struct Assigned {
    topic: TopicName,
    partition: Partition,
    /// Next offset to return; `None` until first needed (then from the committed offset).
    position: Option<u64>,
    paused: bool,
    /// Records read ahead of `position` (from one fetch of up to `max_partition_fetch_bytes`)
    /// that `max_poll_records` kept out of the last poll.
    read_ahead: std::collections::VecDeque<StoredRecord>,
    /// The same for `poll_batches`: whole batches read beyond `max_poll_records`.
    batch_ahead: std::collections::VecDeque<crate::format::BatchView>,
}

impl Assigned {
    /// Moves to `position`, dropping what was read ahead (it starts at the old position).
    fn jump(&mut self, position: u64) {
        self.position = Some(position);
        self.read_ahead.clear();
        self.batch_ahead.clear();
    }
}

#[derive(Debug)]
enum Mode {
    Unassigned,
    Manual,
    Group(Membership),
}

#[derive(Debug)]
struct Membership {
    group: String,
    member_id: String,
    generation: u32,
    topics: BTreeSet<String>,
    /// Set by the coordinator when this member should sync (rebalance, a release).
    attention: Arc<AtomicBool>,
    last_sync: Instant,
    /// Target partitions still held by another member.
    waiting: bool,
}

/// Reads records from a [`Log`](crate::Log): a group member
/// ([`subscribe`](Consumer::subscribe)) or a standalone reader of chosen partitions
/// ([`assign`](Consumer::assign)).
///
/// After [`close`](Consumer::close) or [`Log::close`](crate::Log::close), every fallible
/// method returns [`Error::Closed`]; the accessors that return plain values (`config`, `assignment`,
/// `subscription`, `paused`) keep describing the consumer's last state.
///
/// A consumer does not keep its log open: dropping the last [`Log`](crate::Log) handle closes
/// the log as [`Log::close`](crate::Log::close) does, with the same effect on the consumer, and
/// releases the directory for a new `Log`. The closed consumer still holds its assigned
/// partitions' segment files open (it reads nothing from them) until it is dropped.
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use std::time::Duration;
/// use annals::{ConsumerConfig, Log, Record, TopicConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path())?;
/// log.create_topic("orders", TopicConfig::default().partitions(2))?;
/// log.partition("orders", 1)?.append(&[Record::new("created").key("order-1")])?;
///
/// let mut consumer = log.consumer(ConsumerConfig::new("fulfillment"))?;
/// consumer.subscribe(&["orders"])?;
/// let records = consumer.poll(Duration::from_secs(1))?;
/// assert_eq!(records.len(), 1);
/// assert_eq!((&*records[0].topic, records[0].partition, records[0].offset), ("orders", 1, 0));
/// consumer.commit()?; // durable: a restarted member of "fulfillment" resumes after it
/// assert_eq!(consumer.committed("orders", 1)?.unwrap().offset, 1);
/// # Ok(()) }
/// ```
pub struct Consumer {
    /// The log's topics and group coordinator, not the log: a consumer does not keep its log
    /// open (see `catalog.rs`).
    catalog: Catalog,
    config: ConsumerConfig,
    offsets: Arc<OffsetStore>,
    waiter: Arc<Waiter>,
    mode: Mode,
    assigned: BTreeMap<TopicPartition, Assigned>,
    listener: Option<Box<dyn RebalanceListener>>,
    /// Set while a rebalance callback runs: a nested poll would re-enter the handover.
    in_callback: bool,
    next_auto_commit: Instant,
    /// Which assigned partition the next fetch starts with, so none starves.
    cursor: usize,
    /// Errors met after a poll had read records, returned by the next polls (a topic of a manual
    /// assignment deleted).
    deferred_errors: std::collections::VecDeque<Error>,
    closed: bool,
    scratch: fetch::Scratch,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.config.group_id)
            .field("mode", &self.mode)
            .field("assignment", &self.assigned.keys().collect::<Vec<_>>())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub(crate) fn new(catalog: Catalog, config: ConsumerConfig, offsets: Arc<OffsetStore>) -> Self {
        let next_auto_commit =
            crate::config::deadline_after(Instant::now(), config.auto_commit_interval);
        Consumer {
            catalog,
            config,
            offsets,
            waiter: Waiter::new(),
            mode: Mode::Unassigned,
            assigned: BTreeMap::new(),
            listener: None,
            in_callback: false,
            next_auto_commit,
            cursor: 0,
            deferred_errors: Default::default(),
            closed: false,
            scratch: Default::default(),
        }
    }

    /// This consumer's configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Every fallible method starts here: after [`close`](Self::close) or
    /// [`Log::close`](crate::Log::close) they all return [`Error::Closed`].
    fn check_usable(&self) -> Result<()> {
        if self.closed || self.catalog.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Reads `partitions` directly, outside group management (Kafka's `assign`). Replaces any
    /// earlier manual assignment; positions of partitions kept stay. An empty slice unassigns.
    ///
    /// Errors: [`Error::UnknownTopic`] / [`Error::UnknownPartition`], or
    /// [`Error::InvalidArgument`] if this consumer already subscribed.
    pub fn assign<T: Into<TopicPartition> + Clone>(&mut self, partitions: &[T]) -> Result<()> {
        self.check_usable()?;
        if matches!(self.mode, Mode::Group(_)) {
            return Err(Error::InvalidArgument(
                "this consumer subscribed to topics; unsubscribe before assigning partitions"
                    .into(),
            ));
        }
        let wanted: BTreeSet<TopicPartition> = partitions.iter().cloned().map(Into::into).collect();
        let mut handles = Vec::new();
        for tp in &wanted {
            handles.push((tp.clone(), self.catalog.partition(&tp.topic, tp.partition)?));
        }
        let gone: Vec<TopicPartition> = self
            .assigned
            .keys()
            .filter(|tp| !wanted.contains(*tp))
            .cloned()
            .collect();
        self.drop_partitions(&gone);
        for (tp, p) in handles {
            self.add_partition(tp, p);
        }
        self.mode = if self.assigned.is_empty() {
            Mode::Unassigned
        } else {
            Mode::Manual
        };
        Ok(())
    }

    /// The partitions this consumer reads now, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assigned.keys().cloned().collect()
    }

    /// The topics this consumer subscribes to (empty without a subscription).
    pub fn subscription(&self) -> Vec<String> {
        match &self.mode {
            Mode::Group(m) => m.topics.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    fn add_partition(&mut self, tp: TopicPartition, partition: Partition) {
        if self.assigned.contains_key(&tp) {
            return;
        }
        partition.inner.watchers.add(&self.waiter);
        self.assigned.insert(
            tp.clone(),
            Assigned {
                topic: tp.topic.clone(),
                partition,
                position: None,
                paused: false,
                read_ahead: Default::default(),
                batch_ahead: Default::default(),
            },
        );
    }

    fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(a) = self.assigned.remove(tp) {
                a.partition.inner.watchers.remove(&self.waiter);
            }
        }
    }

    fn assigned_mut(&mut self, topic: &str, partition: u32) -> Result<&mut Assigned> {
        self.assigned
            .get_mut(&TopicPartition::new(topic, partition))
            .ok_or_else(|| Error::NotAssigned {
                topic: topic.to_string(),
                partition,
            })
    }

    /// The next offset `poll` will return from this partition, resolving it from the committed
    /// offset (or `auto_offset_reset`) if nothing was read yet.
    pub fn position(&mut self, topic: &str, partition: u32) -> Result<u64> {
        self.check_usable()?;
        let tp = TopicPartition::new(topic, partition);
        if !self.assigned.contains_key(&tp) {
            return Err(Error::NotAssigned {
                topic: topic.to_string(),
                partition,
            });
        }
        self.resolve_position(&tp)
    }

    /// Makes the next poll of this partition start at `offset`.
    ///
    /// Errors: [`Error::NotAssigned`], or [`Error::OffsetOutOfRange`] outside
    /// `[log_start_offset, high_watermark]`.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> Result<()> {
        self.check_usable()?;
        let a = self.assigned_mut(topic, partition)?;
        let (start, hw) = (a.partition.log_start_offset(), a.partition.high_watermark());
        if offset < start || offset > hw {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                earliest: start,
                latest: hw,
            });
        }
        a.jump(offset);
        Ok(())
    }

    /// Seeks each of `partitions` (all assigned ones if empty) with `choose(partition)`.
    fn seek_each<T: Into<TopicPartition> + Clone>(
        &mut self,
        partitions: &[T],
        choose: impl Fn(&Partition) -> Result<u64>,
    ) -> Result<()> {
        self.check_usable()?;
        let list: Vec<TopicPartition> = if partitions.is_empty() {
            self.assignment()
        } else {
            partitions.iter().cloned().map(Into::into).collect()
        };
        for tp in &list {
            let a = self.assigned_mut(&tp.topic, tp.partition)?;
            let offset = choose(&a.partition)?;
            a.jump(offset);
        }
        Ok(())
    }

    /// Moves to the log start offset of `partitions` (every assigned partition if empty):
    /// `TopicPartition`s or `(topic, partition)` tuples, as for [`assign`](Self::assign).
    pub fn seek_to_beginning<T: Into<TopicPartition> + Clone>(
        &mut self,
        partitions: &[T],
    ) -> Result<()> {
        self.seek_each(partitions, |p| Ok(p.log_start_offset()))
    }

    /// Moves to the end of `partitions` (every assigned partition if empty): only records
    /// written from now on will be returned. The end is the high watermark, or for a
    /// read_committed consumer the last stable offset (records of transactions open now are
    /// still to come).
    pub fn seek_to_end<T: Into<TopicPartition> + Clone>(&mut self, partitions: &[T]) -> Result<()> {
        let isolation = self.config.isolation_level;
        self.seek_each(partitions, move |p| Ok(end_of(p, isolation)))
    }

    /// Moves every assigned partition to its first record with a timestamp at or after
    /// `timestamp` (ms since the Unix epoch), or to its end if there is none.
    pub fn seek_to_timestamp(&mut self, timestamp: i64) -> Result<()> {
        self.seek_each::<TopicPartition>(&[], |p| {
            Ok(p.offset_for_timestamp(timestamp)?
                .unwrap_or_else(|| p.high_watermark()))
        })
    }

    /// Stops returning records from `partitions` until [`resume`](Self::resume) (positions and
    /// assignment stay). Takes `TopicPartition`s or `(topic, partition)` tuples.
    pub fn pause<T: Into<TopicPartition> + Clone>(&mut self, partitions: &[T]) -> Result<()> {
        self.set_paused(partitions, true)
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume<T: Into<TopicPartition> + Clone>(&mut self, partitions: &[T]) -> Result<()> {
        self.set_paused(partitions, false)
    }

    fn set_paused<T: Into<TopicPartition> + Clone>(
        &mut self,
        partitions: &[T],
        paused: bool,
    ) -> Result<()> {
        self.check_usable()?;
        for tp in partitions.iter().cloned().map(Into::into) {
            self.assigned_mut(&tp.topic, tp.partition)?.paused = paused;
        }
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.assigned
            .iter()
            .filter(|(_, a)| a.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Commits the current position of every assigned partition (that has one) for this
    /// consumer's group, durably: when this returns, the commit survives a crash or power loss.
    ///
    /// A group member may commit every partition it owns, whenever — also in the middle of a
    /// rebalance it has not caught up with yet: the coordinator is in this process and judges
    /// a commit by who owns each partition now, not by the generation the member last saw. A
    /// partition being handed over stays this member's until its next poll runs `on_revoked`
    /// and releases it, and an accepted commit is written before any of its partitions can
    /// move, so the next owner starts exactly where it left off and a committed offset never
    /// goes back because a member lost a partition.
    ///
    /// Errors: [`Error::MemberFenced`] if this member was removed from its group (silent past
    /// `max_poll_interval`; its partitions are someone else's, its next poll reports them lost
    /// and rejoins); [`Error::UnknownTopic`] for a partition whose topic was deleted (also if a
    /// topic of that name exists again: that is another topic) that no poll has dropped yet,
    /// or [`Error::NotAssigned`] if the group already took it; [`Error::InvalidArgument`] for a
    /// manual assignment while the group has subscribed members; [`Error::Closed`]; I/O.
    pub fn commit(&mut self) -> Result<()> {
        self.check_usable()?;
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = self
            .assigned
            .iter()
            .filter_map(|(tp, a)| a.position.map(|p| (tp.clone(), OffsetAndMetadata::new(p))))
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        self.commit_checked(&offsets)
    }

    /// Commits the given offsets (each the *next* offset to read) for assigned partitions, with
    /// the same guarantees as [`commit`](Self::commit): accepted for every partition this
    /// member owns now, whatever the generation, and written before the partitions can move.
    ///
    /// Errors: [`Error::NotAssigned`] for a partition this consumer does not own (never
    /// assigned, released after `on_revoked`, or taken because its topic was deleted),
    /// [`Error::UnknownTopic`] for one whose topic was deleted before the group or a poll
    /// noticed, [`Error::MemberFenced`] if this member was removed from its group,
    /// [`Error::OffsetOutOfRange`] for an offset past the high watermark,
    /// [`Error::InvalidArgument`] for metadata over 4096 bytes, [`Error::Closed`], I/O.
    pub fn commit_offsets(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        self.check_usable()?;
        for (tp, v) in offsets {
            let a = self.assigned_mut(&tp.topic, tp.partition)?;
            let hw = a.partition.high_watermark();
            if v.offset > hw {
                return Err(Error::OffsetOutOfRange {
                    requested: v.offset,
                    earliest: a.partition.log_start_offset(),
                    latest: hw,
                });
            }
        }
        self.commit_checked(offsets)
    }

    fn commit_checked(&mut self, offsets: &[(TopicPartition, OffsetAndMetadata)]) -> Result<()> {
        let partitions: Vec<TopicPartition> = offsets.iter().map(|(tp, _)| tp.clone()).collect();
        let group = self.group_for("commit")?;
        let member = match &self.mode {
            Mode::Group(m) => Some(m.member_id.as_str()),
            _ => None,
        };
        // Held until the offsets are durable and in the cache: meanwhile no partition in the
        // commit can change owner (see `group::commit`).
        let _permit = self.catalog.coordinator().begin_commit(
            group,
            member,
            &partitions,
            &self.catalog.partition_counts(),
            Instant::now(),
        )?;
        // A handle closes when its topic is deleted, before the deletion forgets the topic's
        // commits: this one must not outlive that (a topic created again under the name would
        // inherit it).
        let assigned = &self.assigned;
        let deleted = |tp: &TopicPartition| {
            assigned
                .get(tp)
                .is_none_or(|a| a.partition.inner.is_closed())
        };
        match self.offsets.commit(group, offsets, deleted) {
            Err(Error::UnknownTopic { .. }) if self.catalog.is_closed() => Err(Error::Closed),
            other => other,
        }
    }

    /// Who this consumer is in its group: what
    /// [`Producer::send_offsets_to_transaction`](crate::Producer::send_offsets_to_transaction)
    /// needs to fence a zombie's offsets. A consumer with a manual assignment has generation 0
    /// and an empty member id.
    pub fn group_metadata(&self) -> crate::ConsumerGroupMetadata {
        let (generation_id, member_id) = match &self.mode {
            Mode::Group(m) => (m.generation, m.member_id.clone()),
            _ => (0, String::new()),
        };
        crate::ConsumerGroupMetadata {
            group_id: self.config.group_id.clone().unwrap_or_default(),
            generation_id,
            member_id,
        }
    }

    /// The group's committed offset for a partition (assigned or not); `None` also for a
    /// consumer without a group.
    pub fn committed(&self, topic: &str, partition: u32) -> Result<Option<OffsetAndMetadata>> {
        self.check_usable()?;
        self.catalog.partition(topic, partition)?;
        let tp = TopicPartition::new(topic, partition);
        Ok(self
            .config
            .group_id
            .as_deref()
            .and_then(|group| self.offsets.committed(group, &tp)))
    }

    /// This consumer's group, or the error that says `what` needs one.
    fn group_for(&self, what: &str) -> Result<&str> {
        self.config.group_id.as_deref().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{what} needs a consumer group: this consumer was made without a group id \
                 (ConsumerConfig::new(group) or .group_id(group))"
            ))
        })
    }

    /// Committed offset, position, high watermark and lag of every assigned partition.
    pub fn lag(&self) -> Result<Vec<PartitionLag>> {
        self.check_usable()?;
        Ok(self
            .assigned
            .iter()
            .map(|(tp, a)| {
                let committed = self
                    .config
                    .group_id
                    .as_deref()
                    .and_then(|group| self.offsets.committed(group, tp))
                    .map(|c| c.offset);
                let isolation = self.config.isolation_level;
                PartitionLag::with_isolation(tp, &a.partition, committed, a.position, isolation)
            })
            .collect())
    }

    /// Leaves the group (after `on_revoked` for what it owns) and commits first if
    /// `enable_auto_commit` is on. Later calls return [`Error::Closed`]; closing twice is fine.
    ///
    /// After [`Log::close`](crate::Log::close) it still leaves the group, without callbacks or
    /// commit, and returns [`Error::Closed`].
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        if self.catalog.is_closed() {
            let _ = self.leave(false);
            self.closed = true;
            return Err(Error::Closed);
        }
        let committed = if self.config.enable_auto_commit {
            self.commit()
        } else {
            Ok(())
        };
        let left = self.leave(true);
        self.closed = true;
        committed.and(left)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // No callbacks from drop (it may run during a panic); leaving frees the partitions for
        // the rest of the group at once. `close` reports errors, drop cannot.
        if !self.closed {
            // While unwinding, the positions may be past records the application never got to
            // process (the panic interrupted it): committing them would skip those records.
            if self.config.enable_auto_commit && !std::thread::panicking() {
                let _ = self.commit();
            }
            let _ = self.leave(false);
            self.closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    /// A consumer moves between threads (one thread uses it at a time).
    #[test]
    fn consumer_is_send() {
        fn send<T: Send>() {}
        send::<super::Consumer>();
        send::<super::ConsumedRecord>();
    }
}
