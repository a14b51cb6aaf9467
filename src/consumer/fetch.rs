//! `poll`: fetch from assigned partitions in turn, park until new data or the timeout.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{
    Assigned, AutoOffsetReset, ConsumedBatch, ConsumedRecord, Consumer, ConsumerConfig, Mode,
};
use crate::error::{Error, Result};
use crate::format::BatchView;
use crate::format::StoredRecord;
use crate::offsets::OffsetStore;
use crate::topic_partition::TopicPartition;

/// What one partition's turn in a fetch produced.
pub(super) enum Turn {
    /// Records appended to the output (possibly zero), and their payload bytes.
    Read(usize),
    /// The position is outside the log; reset it (per `auto_offset_reset`) and go on.
    OutOfRange(Error),
    /// The partition is gone (topic deleted).
    Gone,
}

impl Consumer {
    /// Returns records from the assigned partitions, at most `max_poll_records` of them.
    ///
    /// Returns as soon as at least `fetch_min_bytes` of records are there (by default: any
    /// record). Otherwise it parks — no busy loop — until a producer or `append` publishes new
    /// data, the group needs this member, `fetch_max_wait` passes with some data in hand, or
    /// `timeout` passes (then it returns what it has, possibly nothing). Partitions take turns
    /// so none starves. A group member also does its rebalance work here (callbacks run on
    /// this thread) and auto-commits if enabled.
    ///
    /// Never returns records past the high watermark. A position below the log start offset
    /// (records deleted by retention) follows `auto_offset_reset`.
    ///
    /// A topic deleted while this consumer reads it: a group member gets `on_lost` for its
    /// partitions at this or the next poll (the group rebalances without them; the subscription
    /// stays, and a topic created again under that name is assigned afresh). A manual
    /// assignment gets [`Error::UnknownTopic`] once per deleted topic — at the next poll if this
    /// one already holds records — and the partition leaves the assignment (also when a topic
    /// of that name was created again since: [`assign`](Self::assign) it to read the new one);
    /// later polls read the rest of the assignment, or return nothing if it is empty.
    ///
    /// Errors: [`Error::Closed`] (this consumer or its log); [`Error::InvalidArgument`] without
    /// a subscription or assignment, or from inside a rebalance callback;
    /// [`Error::NoCommittedOffset`] / [`Error::OffsetOutOfRange`] with `AutoOffsetReset::Error`;
    /// [`Error::UnknownTopic`] as above. A poll that fails returns no records: an error met
    /// after some records were read waits for the next poll.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        let mut out = Vec::new();
        self.poll_into(timeout, &mut out)?;
        Ok(out)
    }

    /// [`poll`](Self::poll) into a caller's vector, which is cleared first, so a loop reuses one
    /// allocation instead of making a fresh vector per call.
    pub fn poll_into(&mut self, timeout: Duration, out: &mut Vec<ConsumedRecord>) -> Result<()> {
        self.poll_with(timeout, out)
    }

    /// [`poll_into`](Self::poll_into) for whole batches: each [`ConsumedBatch`] holds a
    /// [`BatchView`] whose records are decoded while you iterate them, borrowing their bytes —
    /// the fastest way to consume (no per-record allocation or reference count; see
    /// `benches/consumer.rs`). Positions move past every batch returned. `max_poll_records`
    /// counts records by their batches' headers and is checked between batches, so a poll may
    /// return up to one batch beyond it; `fetch_max_bytes` and `max_partition_fetch_bytes` bound
    /// it as for `poll`.
    pub fn poll_batches(&mut self, timeout: Duration, out: &mut Vec<ConsumedBatch>) -> Result<()> {
        self.poll_with(timeout, out)
    }

    pub(super) fn poll_with<I: PollItem>(
        &mut self,
        timeout: Duration,
        out: &mut Vec<I>,
    ) -> Result<()> {
        out.clear();
        self.check_usable()?;
        if self.in_callback {
            return Err(Error::InvalidArgument(
                "poll cannot be called from inside a rebalance callback".into(),
            ));
        }
        if let Some(e) = self.deferred_errors.pop_front() {
            return Err(e);
        }
        if matches!(self.mode, Mode::Unassigned) {
            return Err(Error::InvalidArgument(
                "subscribe to topics or assign partitions before polling".into(),
            ));
        }
        let start = Instant::now();
        let far = start + Duration::from_secs(86_400 * 365);
        let deadline = start.checked_add(timeout).unwrap_or(far).min(far);
        let min_bytes_deadline = start
            .checked_add(self.config.fetch_max_wait.min(timeout))
            .unwrap_or(deadline);
        self.maybe_auto_commit(start)?;
        let mut bytes = 0usize;
        loop {
            self.waiter.arm();
            if out.is_empty() {
                self.sync_group(Instant::now())?;
            } else if self.rebalance_pending() {
                // Hand back what we have first; positions already moved past these records,
                // so a revoke (which may commit) must come after the application saw them.
                return Ok(());
            }
            bytes += self.fetch(out, bytes)?;
            let now = Instant::now();
            let enough = !out.is_empty()
                && (bytes >= self.config.fetch_min_bytes || now >= min_bytes_deadline);
            if enough || I::count(out) >= self.config.max_poll_records || now >= deadline {
                return Ok(());
            }
            let mut wake = deadline;
            if !out.is_empty() {
                wake = wake.min(min_bytes_deadline);
            }
            if let Some(group_due) = self.group_deadline() {
                wake = wake.min(group_due);
            }
            self.waiter.wait_until(wake);
        }
    }

    /// When this consumer next has something to do without new data: a group member's sync
    /// or an auto-commit. What a non-blocking poller (a stream) sets its timer to.
    #[cfg(feature = "tokio")]
    pub(super) fn next_duty(&self) -> Option<Instant> {
        let commit = self
            .config
            .enable_auto_commit
            .then_some(self.next_auto_commit);
        match (self.group_deadline(), commit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn rebalance_pending(&self) -> bool {
        match &self.mode {
            Mode::Group(m) => m.attention.load(Ordering::Acquire),
            _ => false,
        }
    }

    fn maybe_auto_commit(&mut self, now: Instant) -> Result<()> {
        if !self.config.enable_auto_commit || now < self.next_auto_commit {
            return Ok(());
        }
        self.next_auto_commit =
            crate::config::deadline_after(now, self.config.auto_commit_interval);
        match self.commit() {
            // The rebalance this poll is about to finish decides those partitions' fate (and
            // `on_revoked` can commit them); records are re-read at worst, never skipped.
            Err(Error::MemberFenced { .. } | Error::NotAssigned { .. }) => Ok(()),
            other => other,
        }
    }

    /// One pass over the assigned partitions, starting at the cursor. Returns payload bytes
    /// added to `out`.
    fn fetch<I: PollItem>(&mut self, out: &mut Vec<I>, bytes_so_far: usize) -> Result<usize> {
        let n = self.assigned.len();
        if n == 0 {
            return Ok(0);
        }
        let start = self.cursor % n;
        let mut added = 0usize;
        let mut problems: Vec<(TopicPartition, Turn)> = Vec::new();
        let mut last_served = None;
        let config = &self.config;
        let offsets = &*self.offsets;
        let scratch = &mut self.scratch;
        // Start at the cursor: rotate the (small) list of assigned partitions.
        let mut entries: Vec<(usize, &TopicPartition, &mut Assigned)> = self
            .assigned
            .iter_mut()
            .enumerate()
            .map(|(i, (tp, a))| (i, tp, a))
            .collect();
        entries.rotate_left(start);
        for (i, tp, a) in entries {
            if I::count(out) >= config.max_poll_records {
                break;
            }
            let budget = config.fetch_max_bytes.saturating_sub(bytes_so_far + added);
            if budget == 0 && !out.is_empty() {
                break;
            }
            let cx = TurnContext {
                tp,
                config,
                offsets,
                records_left: config.max_poll_records - I::count(out),
                byte_budget: budget.max(1),
            };
            let turn = match I::take_turn(out, a, &cx, scratch) {
                Ok(turn) => turn,
                // Records in `out` already moved their partitions' positions: hand them over
                // first. This partition's position did not move, so the error comes back at
                // the next poll.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(e),
            };
            match turn {
                Turn::Read(0) => {}
                Turn::Read(b) => {
                    added += b;
                    last_served = Some(i);
                }
                other => problems.push((tp.clone(), other)),
            }
        }
        if let Some(i) = last_served {
            self.cursor = i + 1;
        }
        let mut failed = None;
        for (tp, problem) in problems {
            match problem {
                // The position did not move: if deferred, the error recurs at the next poll.
                Turn::OutOfRange(e) => {
                    if let Err(e) = self.reset_out_of_range(&tp, e) {
                        failed.get_or_insert(e);
                    }
                }
                Turn::Gone => self.partition_gone(&tp)?,
                Turn::Read(_) => {}
            }
        }
        if out.is_empty() {
            if let Some(e) = self.deferred_errors.pop_front().or(failed) {
                return Err(e);
            }
        }
        Ok(added)
    }

    /// A partition whose topic was deleted (its handle is closed while the log is open). A
    /// group member syncs at once: the coordinator reports it lost (`on_lost`) and rebalances.
    /// A manual assignment drops it and queues [`Error::UnknownTopic`], once per topic: the
    /// poll returns it if it holds no records, else the next poll does.
    fn partition_gone(&mut self, tp: &TopicPartition) -> Result<()> {
        if self.catalog.is_closed() {
            return Err(Error::Closed);
        }
        if let Mode::Group(m) = &self.mode {
            m.attention.store(true, Ordering::Release);
            self.waiter.signal();
            return Ok(());
        }
        // Every partition of the topic goes now (the pass may not have reached the others).
        let gone: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|(t, a)| t.topic == tp.topic && a.partition.inner.is_closed())
            .map(|(t, _)| t.clone())
            .collect();
        self.drop_partitions(&gone);
        let queued = self
            .deferred_errors
            .iter()
            .any(|e| matches!(e, Error::UnknownTopic { topic } if *topic == tp.topic));
        if !queued {
            self.deferred_errors.push_back(Error::UnknownTopic {
                topic: tp.topic.to_string(),
            });
        }
        Ok(())
    }
}

/// Where an assigned partition without a position starts (see `Consumer::position`).
pub(super) fn resolve(
    a: &mut Assigned,
    tp: &TopicPartition,
    config: &ConsumerConfig,
    offsets: &OffsetStore,
) -> Result<u64> {
    if let Some(p) = a.position {
        return Ok(p);
    }
    let (start, hw) = (a.partition.log_start_offset(), a.partition.high_watermark());
    let committed = config
        .group_id
        .as_deref()
        .and_then(|g| offsets.committed(g, tp));
    let offset = match committed {
        Some(c) if (start..=hw).contains(&c.offset) => c.offset,
        _ => match config.auto_offset_reset {
            AutoOffsetReset::Earliest => start,
            AutoOffsetReset::Latest => super::end_of(&a.partition, config.isolation_level),
            AutoOffsetReset::Error => {
                return Err(Error::NoCommittedOffset {
                    group: config.group_id.clone(),
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                })
            }
        },
    };
    a.position = Some(offset);
    Ok(offset)
}

/// What a partition's turn may use.
pub(super) struct TurnContext<'a> {
    tp: &'a TopicPartition,
    config: &'a ConsumerConfig,
    offsets: &'a OffsetStore,
    /// Room left under `max_poll_records`.
    records_left: usize,
    /// Room left under `fetch_max_bytes` (at least 1).
    byte_budget: usize,
}

impl TurnContext<'_> {
    /// Bytes to read from one partition now.
    fn read_size(&self) -> usize {
        self.config.max_partition_fetch_bytes.min(self.byte_budget)
    }
}

/// The common start of a turn: the position to read from and the high watermark, or the turn's
/// result if there is nothing to read (gone, paused, at the end).
fn start_turn(a: &mut Assigned, cx: &TurnContext) -> Result<Result<(u64, u64), Turn>> {
    if a.partition.inner.is_closed() {
        return Ok(Err(Turn::Gone));
    }
    if a.paused {
        return Ok(Err(Turn::Read(0)));
    }
    let position = resolve(a, cx.tp, cx.config, cx.offsets)?;
    Ok(Ok((
        position,
        super::end_of(&a.partition, cx.config.isolation_level),
    )))
}

/// Sorts a read's error into the turns that handle it, or the error the poll returns.
fn read_failed(e: Error) -> Result<Turn> {
    match e {
        Error::OffsetOutOfRange { .. } => Ok(Turn::OutOfRange(e)),
        Error::Closed => Ok(Turn::Gone),
        e => Err(e),
    }
}

/// Reused buffers of one consumer's fetches.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    records: Vec<StoredRecord>,
    batches: Vec<BatchView>,
}

/// What a poll returns: records, or batch views.
pub(super) trait PollItem: Sized {
    /// Records in `items` (for batches: their headers' record counts).
    fn count(items: &[Self]) -> usize;
    /// One partition's share of a fetch: serve its read-ahead first, else read up to
    /// `max_partition_fetch_bytes` (and the fetch's remaining byte budget) from its position.
    fn take_turn(
        out: &mut Vec<Self>,
        a: &mut Assigned,
        cx: &TurnContext,
        scratch: &mut Scratch,
    ) -> Result<Turn>;
    /// Un-reads `items` (returned by a poll, in order, not yet used): their partitions'
    /// positions go back to the first of them, and they wait in the read-ahead for the next
    /// poll. What a dropped stream does with what it did not yield.
    #[cfg(feature = "tokio")]
    fn give_back(consumer: &mut Consumer, items: impl Iterator<Item = Self>);
}

/// `items` grouped by partition, each group in its order.
#[cfg(feature = "tokio")]
fn by_partition<I>(
    items: impl Iterator<Item = I>,
    key: impl Fn(&I) -> (&str, u32),
) -> std::collections::BTreeMap<TopicPartition, Vec<I>> {
    let mut groups = std::collections::BTreeMap::<TopicPartition, Vec<I>>::new();
    for item in items {
        let (topic, partition) = key(&item);
        let tp = TopicPartition::new(topic, partition);
        groups.entry(tp).or_default().push(item);
    }
    groups
}

impl PollItem for ConsumedRecord {
    fn count(items: &[Self]) -> usize {
        items.len()
    }
    #[cfg(feature = "tokio")]
    fn give_back(consumer: &mut Consumer, items: impl Iterator<Item = Self>) {
        for (tp, records) in by_partition(items, |r| (&r.topic, r.partition)) {
            // Still assigned: nothing can change the assignment while a stream holds these.
            let Some(a) = consumer.assigned.get_mut(&tp) else {
                continue;
            };
            a.position = Some(records[0].offset);
            a.batch_ahead.clear();
            // They came from right before the read-ahead (or are all of it).
            for r in records.into_iter().rev() {
                a.read_ahead.push_front(StoredRecord {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
            }
        }
    }
    fn take_turn(
        out: &mut Vec<Self>,
        a: &mut Assigned,
        cx: &TurnContext,
        scratch: &mut Scratch,
    ) -> Result<Turn> {
        let (position, end) = match start_turn(a, cx)? {
            Ok(at) => at,
            Err(turn) => return Ok(turn),
        };
        let isolation = cx.config.isolation_level;
        // Batches `poll_batches` read ahead start at the position: read them again as records.
        a.batch_ahead.clear();
        let scratch = &mut scratch.records;
        let mut bytes = 0usize;
        let mut next = position;
        let mut walked = position;
        let mut push = |r: StoredRecord, out: &mut Vec<ConsumedRecord>| {
            bytes +=
                r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len());
            next = r.offset + 1;
            out.push(ConsumedRecord {
                topic: a.topic.clone(),
                partition: cx.tp.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        };
        let taken = if !a.read_ahead.is_empty() {
            let take = cx.records_left.min(a.read_ahead.len());
            out.reserve(take);
            for r in a.read_ahead.drain(..take) {
                push(r, out);
            }
            take
        } else {
            if position >= end {
                return Ok(Turn::Read(0));
            }
            scratch.clear();
            match a
                .partition
                .read_isolated_into(position, cx.read_size(), isolation, scratch)
            {
                Ok(to) => walked = to,
                Err(e) => return read_failed(e),
            }
            if scratch.is_empty() {
                // Nothing at or after the position below the end (compaction removed the rest,
                // or only markers and aborted records are left): move past what the read
                // looked at, so the next poll does not read it again.
                a.position = Some(walked.max(position));
                return Ok(Turn::Read(0));
            }
            // Records beyond `max_poll_records` wait in the read-ahead for the next poll; the
            // common case (all of them fit) moves each record once, straight into `out`.
            let take = cx.records_left.min(scratch.len());
            a.read_ahead.extend(scratch.drain(take..));
            out.reserve(take);
            for r in scratch.drain(..) {
                push(r, out);
            }
            take
        };
        // Past the markers and aborted batches behind the last record, once nothing waits in
        // the read-ahead: a caller waiting for the position to reach the end never waits on a
        // marker.
        a.position = Some(if a.read_ahead.is_empty() {
            next.max(walked)
        } else {
            next
        });
        // A zero-byte record still counts as progress for fetch_min_bytes purposes.
        Ok(Turn::Read(bytes.max(usize::from(taken > 0))))
    }
}

impl PollItem for ConsumedBatch {
    fn count(items: &[Self]) -> usize {
        items
            .iter()
            .map(|b| b.batch.header().record_count as usize)
            .sum()
    }
    #[cfg(feature = "tokio")]
    fn give_back(consumer: &mut Consumer, items: impl Iterator<Item = Self>) {
        for (tp, batches) in by_partition(items, |b| (&b.topic, b.partition)) {
            let Some(a) = consumer.assigned.get_mut(&tp) else {
                continue;
            };
            a.position = Some(batches[0].batch.first_wanted_offset());
            a.read_ahead.clear();
            for b in batches.into_iter().rev() {
                a.batch_ahead.push_front(b.batch);
            }
        }
    }
    fn take_turn(
        out: &mut Vec<Self>,
        a: &mut Assigned,
        cx: &TurnContext,
        scratch: &mut Scratch,
    ) -> Result<Turn> {
        let (position, end) = match start_turn(a, cx)? {
            Ok(at) => at,
            Err(turn) => return Ok(turn),
        };
        // Records `poll` read ahead start at the position: read their batches again.
        a.read_ahead.clear();
        let mut walked = position;
        if a.batch_ahead.is_empty() {
            if position >= end {
                return Ok(Turn::Read(0));
            }
            let views = &mut scratch.batches;
            views.clear();
            let isolation = cx.config.isolation_level;
            match a
                .partition
                .read_isolated_batches(position, cx.read_size(), isolation, views)
            {
                Ok(to) => walked = to,
                Err(e) => return read_failed(e),
            }
            if views.is_empty() {
                // Only a compaction gap, markers or aborted batches up to the end.
                a.position = Some(walked.max(position));
                return Ok(Turn::Read(0));
            }
            a.batch_ahead.extend(views.drain(..));
        }
        // Whole batches, until they hold `records_left` records (at least one batch); the rest
        // wait in the read-ahead for the next poll.
        let mut bytes = 0usize;
        let mut records = 0usize;
        while records < cx.records_left {
            let Some(batch) = a.batch_ahead.pop_front() else {
                break;
            };
            records += batch.header().record_count as usize;
            bytes += batch.header().total_len();
            a.position = Some(batch.next_offset());
            out.push(ConsumedBatch {
                topic: a.topic.clone(),
                partition: cx.tp.partition,
                batch,
            });
        }
        if a.batch_ahead.is_empty() {
            // Past the markers and aborted batches the read skipped after the last batch.
            a.position = a.position.map(|p| p.max(walked));
        }
        Ok(Turn::Read(bytes.max(1)))
    }
}
