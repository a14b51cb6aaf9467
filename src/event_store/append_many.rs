//! [`EventStore::append_many`]: one atomic append to several streams, through a transaction.
//!
//! The store's transactional producer (transactional id `__es.<name>`) writes the
//! events of every stream in one transaction. The version checks happen with the slot
//! mutexes of every partition involved held (taken in partition order, so two multi-stream
//! appends cannot deadlock, and single-stream appends take only one), and the transaction
//! commits only if its records landed exactly where the checks expected them (nothing else
//! wrote to those partitions in between); otherwise it is aborted, which read_committed
//! readers and the index never see, and the append is tried again.

use std::collections::{BTreeMap, BTreeSet};

use super::event::{validate_stream_name, AppendResult, EventPosition, ExpectedVersion, NewEvent};
use super::state::stream_state;
use super::EventStore;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::producer::{Producer, ProducerConfig};

/// One stream's part of an [`EventStore::append_many`].
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    pub stream: &'a str,
    pub expected: ExpectedVersion,
    pub events: &'a [NewEvent],
}

impl<'a> StreamAppend<'a> {
    /// `events` for `stream` if it is at `expected`.
    pub fn new(stream: &'a str, expected: ExpectedVersion, events: &'a [NewEvent]) -> Self {
        StreamAppend {
            stream,
            expected,
            events,
        }
    }
}

impl EventStore {
    /// Appends to several streams atomically: either every append's expected version holds
    /// and all their events are written, in one transaction, or nothing is. Readers (and
    /// subscriptions) see all of it at once, on stable storage, whatever the configured
    /// durability. Returns each stream's result in the order given.
    ///
    /// Unlike [`append`](Self::append), a retry is not recognised: a retried `append_many`
    /// fails its version checks (use `Exact` versions so that it does).
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use annals::{EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent, StreamAppend};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// let store = EventStore::open(&log, "bank", EventStoreConfig::default().partitions(4))?;
    /// let debit = [NewEvent::new("Debited", "10")];
    /// let credit = [NewEvent::new("Credited", "10")];
    /// let r = store.append_many(&[
    ///     StreamAppend::new("account-1", ExpectedVersion::NoStream, &debit),
    ///     StreamAppend::new("account-2", ExpectedVersion::NoStream, &credit),
    /// ])?;
    /// assert_eq!((r[0].next_version, r[1].next_version), (1, 1));
    /// // A conflict on one stream writes nothing to either.
    /// let err = store.append_many(&[
    ///     StreamAppend::new("account-1", ExpectedVersion::Exact(0), &debit),
    ///     StreamAppend::new("account-2", ExpectedVersion::NoStream, &credit),
    /// ]);
    /// assert!(matches!(err, Err(annals::Error::WrongExpectedVersion { .. })));
    /// assert_eq!(store.stream_version("account-1")?, Some(0));
    /// # Ok(()) }
    /// ```
    ///
    /// Errors: as [`append`](Self::append), and [`Error::InvalidArgument`] for no appends or a
    /// stream named twice; transaction errors of the underlying producer.
    pub fn append_many(&self, appends: &[StreamAppend<'_>]) -> Result<Vec<AppendResult>> {
        self.check_open()?;
        if appends.is_empty() {
            return Err(Error::InvalidArgument(
                "append_many needs at least one stream".into(),
            ));
        }
        let mut names = BTreeSet::new();
        for a in appends {
            validate_stream_name(a.stream)?;
            if a.events.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "the append to stream {:?} has no events",
                    a.stream
                )));
            }
            if !names.insert(a.stream) {
                return Err(Error::InvalidArgument(format!(
                    "stream {:?} appears twice in one append_many",
                    a.stream
                )));
            }
        }
        let mut producer = self.inner.txn_producer.lock();
        if producer.is_none() {
            *producer = Some(self.start_txn_producer()?);
        }
        let producer = producer.as_ref().expect("just set");
        let partitions: BTreeSet<u32> = appends
            .iter()
            .map(|a| self.partition_of(a.stream))
            .collect();
        // Partition order: a fixed lock order.
        let mut guards: BTreeMap<u32, _> = partitions
            .iter()
            .map(|&p| (p, self.inner.events[p as usize].index.lock()))
            .collect();
        for _ in 0..super::RACE_RETRIES {
            let mut firsts = Vec::with_capacity(appends.len());
            for a in appends {
                let p = self.partition_of(a.stream);
                let slot = &self.inner.events[p as usize];
                let index = guards.get_mut(&p).expect("locked above");
                index.catch_up(&slot.partition)?;
                if index.is_full() {
                    index.flush(&slot.partition)?;
                }
                let state = match stream_state(index, &slot.partition, a.stream) {
                    Err(e) if index.repair(&e, &slot.partition)? => {
                        index.catch_up(&slot.partition)?;
                        stream_state(index, &slot.partition, a.stream)?
                    }
                    other => other?,
                };
                state.check_not_tombstoned(a.stream)?;
                if !a.expected.admits(state.actual()) {
                    return Err(Error::WrongExpectedVersion {
                        stream: a.stream.to_string(),
                        expected: a.expected,
                        actual: state.actual(),
                    });
                }
                firsts.push(state.next_version);
            }
            let mut next_offset: BTreeMap<u32, u64> =
                guards.iter().map(|(&p, index)| (p, index.end())).collect();
            producer.begin_transaction()?;
            let mut landed = true;
            let mut results = Vec::with_capacity(appends.len());
            let sent = (|| -> Result<()> {
                let now = now_ms();
                let mut deliveries = Vec::new();
                for (a, &first) in appends.iter().zip(&firsts) {
                    let p = self.partition_of(a.stream);
                    for (i, e) in a.events.iter().enumerate() {
                        let record = e.to_record(a.stream, first + i as u64, now);
                        deliveries.push((p, producer.send_to(&self.inner.name, p, record)?));
                    }
                }
                producer.flush()?;
                let mut last = Vec::new();
                for (p, d) in deliveries {
                    let offset = d
                        .wait()?
                        .offset
                        .expect("the event store's producer acknowledges records once written");
                    let expected = next_offset.get_mut(&p).expect("a locked partition");
                    landed &= offset == *expected;
                    *expected = offset + 1;
                    last.push((p, offset));
                }
                let mut at = 0;
                for (a, &first) in appends.iter().zip(&firsts) {
                    at += a.events.len();
                    let (p, offset) = last[at - 1];
                    results.push(AppendResult {
                        next_version: first + a.events.len() as u64,
                        position: EventPosition {
                            partition: p,
                            offset,
                        },
                    });
                }
                Ok(())
            })();
            if let Err(e) = sent {
                let _ = producer.abort_transaction();
                return Err(e);
            }
            if !landed {
                // Something else wrote to a partition between the checks and the writes.
                producer.abort_transaction()?;
                continue;
            }
            producer.commit_transaction()?;
            for (&p, index) in guards.iter_mut() {
                let slot = &self.inner.events[p as usize];
                // Committed: the result stands. An index that cannot catch up now does so on
                // the next call that touches the partition (which then reports the error).
                let _ = index.catch_up(&slot.partition);
            }
            return Ok(results);
        }
        Err(super::kept_racing(
            format!("append to {} streams", appends.len()),
            &self.inner.name,
            None,
        ))
    }

    fn start_txn_producer(&self) -> Result<Producer> {
        let config = ProducerConfig::default()
            .transactional_id(format!("__es.{}", self.inner.name))
            .linger(std::time::Duration::ZERO);
        let producer = self.inner.log.producer(config)?;
        producer.init_transactions()?;
        Ok(producer)
    }
}
