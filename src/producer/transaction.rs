//! The transactional producer's side of a transaction: its phase (`Phase`), the calls Kafka's
//! producer has (`init_transactions`, `begin_transaction`, `send_offsets_to_transaction`,
//! `commit_transaction`, `abort_transaction`), and registering each partition with the
//! coordinator before the transaction's first batch goes to it (`txn/coordinator.rs` does the
//! rest).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::accumulator::PartitionSlot;
use super::{Producer, Shared};
use crate::error::{Error, Result};
use crate::group::ConsumerGroupMetadata;
use crate::offsets::{OffsetAndMetadata, OffsetStore, OFFSETS_TOPIC};
use crate::topic_partition::TopicPartition;
use crate::txn::TxnCoordinator;

/// What a transactional producer holds besides an idempotent one's state.
#[derive(Debug)]
pub(crate) struct Transactional {
    pub id: String,
    coordinator: Arc<TxnCoordinator>,
    offsets: Arc<OffsetStore>,
    phase: Mutex<Phase>,
    /// Counts `begin_transaction`s: a partition slot that holds the current value was added to
    /// the current transaction already.
    serial: AtomicU64,
}

/// Where the producer stands. Calls out of order get [`Error::InvalidTxnState`].
#[derive(Debug, Clone)]
enum Phase {
    Uninitialized,
    /// Between transactions.
    Ready,
    InTransaction,
    /// A commit or abort is running.
    Ending,
    /// Part of the transaction failed: only `abort_transaction` may follow.
    Abortable(Error),
    /// The producer cannot go on (fenced, timed out, its writer died).
    Fatal(Error),
}

impl Transactional {
    pub(crate) fn new(
        id: String,
        coordinator: Arc<TxnCoordinator>,
        offsets: Arc<OffsetStore>,
    ) -> Transactional {
        Transactional {
            id,
            coordinator,
            offsets,
            phase: Mutex::new(Phase::Uninitialized),
            serial: AtomicU64::new(0),
        }
    }

    fn invalid(&self, operation: &'static str, state: &str) -> Error {
        Error::InvalidTxnState {
            transactional_id: Some(self.id.clone()),
            operation,
            state: state.to_string(),
        }
    }

    fn abort_required(&self, cause: Error) -> Error {
        Error::AbortRequired {
            transactional_id: self.id.clone(),
            cause: Box::new(cause),
        }
    }

    /// The error for `operation` in `phase`, if it is not allowed there.
    fn refuse(&self, phase: &Phase, operation: &'static str) -> Error {
        match phase {
            Phase::Uninitialized => self.invalid(operation, "call init_transactions first"),
            Phase::Ready => {
                self.invalid(operation, "no transaction is open: call begin_transaction")
            }
            Phase::InTransaction => self.invalid(operation, "a transaction is open"),
            Phase::Ending => self.invalid(operation, "a commit or abort is in progress"),
            Phase::Abortable(e) => self.abort_required(e.clone()),
            Phase::Fatal(e) => e.clone(),
        }
    }

    /// The current transaction's serial, if a send may go into it now.
    pub(crate) fn sending(&self) -> Result<u64> {
        let phase = self.phase.lock();
        match &*phase {
            Phase::InTransaction => Ok(self.serial.load(Ordering::Acquire)),
            other => Err(self.refuse(other, "send")),
        }
    }

    /// Puts `slot`'s partition into the current transaction (`serial`) if it is not in it yet.
    pub(crate) fn add_partition(
        &self,
        shared: &Shared,
        slot: &PartitionSlot,
        topic: &str,
        serial: u64,
    ) -> Result<()> {
        if slot.txn_serial.load(Ordering::Acquire) == serial {
            return Ok(());
        }
        let tp = TopicPartition::new(topic, slot.id);
        self.add(shared, &tp)?;
        slot.txn_serial.store(serial, Ordering::Release);
        Ok(())
    }

    fn add(&self, shared: &Shared, tp: &TopicPartition) -> Result<()> {
        let (producer_id, epoch) = shared.identity().get();
        self.coordinator
            .add_partition(&self.id, producer_id, epoch, tp)
            .inspect_err(|e| self.failed(e))
    }

    /// Records a failure inside the transaction: fatal ones end the producer, others make the
    /// transaction abortable.
    fn failed(&self, e: &Error) {
        let mut phase = self.phase.lock();
        if matches!(&*phase, Phase::Fatal(_)) {
            return;
        }
        *phase = if e.is_fatal() {
            Phase::Fatal(e.clone())
        } else {
            Phase::Abortable(e.clone())
        };
    }

    /// Moves from a phase `end` may start in to `Ending`.
    fn start_ending(&self, commit: bool) -> Result<()> {
        let mut phase = self.phase.lock();
        let operation = if commit {
            "commit the transaction"
        } else {
            "abort the transaction"
        };
        match (&*phase, commit) {
            (Phase::InTransaction, _) | (Phase::Abortable(_), false) => {
                *phase = Phase::Ending;
                Ok(())
            }
            (other, _) => Err(self.refuse(other, operation)),
        }
    }

    fn set(&self, next: Phase) {
        *self.phase.lock() = next;
    }
}

impl Shared {
    fn identity(&self) -> &super::ProducerIdentity {
        self.identity
            .as_ref()
            .expect("a transactional producer is idempotent")
    }

    fn transactional(&self, operation: &'static str) -> Result<&Transactional> {
        self.txn.as_ref().ok_or_else(|| Error::InvalidTxnState {
            transactional_id: None,
            operation,
            state: "the producer has no transactional_id".into(),
        })
    }

    /// Ends the current transaction: every batch sent in it is written first.
    fn end_transaction(&self, commit: bool) -> Result<()> {
        let txn = self.transactional(if commit {
            "commit the transaction"
        } else {
            "abort the transaction"
        })?;
        txn.start_ending(commit)?;
        // Waits for sends that saw the transaction open (they hold the gate shared), so every
        // record of the transaction is queued before the flush.
        drop(self.gate.write());
        let flushed = self.flush();
        if let Some(dead) = self.dead.get() {
            txn.set(Phase::Fatal(dead.clone()));
            return Err(dead.clone());
        }
        if let (true, Err(e)) = (commit, &flushed) {
            // A batch of the transaction failed: it cannot commit. A partition that closed
            // under a live log belonged to a deleted topic: the transaction, not the producer,
            // is lost.
            let e = &match e {
                Error::Closed if !self.catalog.is_closed() => Error::UnknownTopic {
                    topic: "(a topic deleted during the transaction)".into(),
                },
                e => e.clone(),
            };
            txn.failed(e);
            return Err(if e.is_fatal() {
                e.clone()
            } else {
                txn.abort_required(e.clone())
            });
        }
        let (producer_id, epoch) = self.identity().get();
        match txn.coordinator.end(&txn.id, producer_id, epoch, commit) {
            Ok((next_id, next_epoch)) => {
                self.next_epoch(next_id, next_epoch);
                txn.set(Phase::Ready);
                Ok(())
            }
            Err(e) if e.is_fatal() => {
                txn.set(Phase::Fatal(e.clone()));
                Err(e)
            }
            Err(e) => {
                // Not fenced: the same call may be tried again (a commit that passed its commit
                // point finishes its markers; an abort starts over).
                txn.set(if commit {
                    Phase::InTransaction
                } else {
                    Phase::Abortable(e.clone())
                });
                Err(e)
            }
        }
    }

    /// The coordinator moved the epoch on (or to a new producer id): sequences start afresh.
    fn next_epoch(&self, producer_id: i64, epoch: i16) {
        self.identity().set(producer_id, epoch);
        for topic in self.topics.read().iter() {
            for slot in &topic.partitions {
                *slot.next_sequence.lock() = 0;
            }
        }
    }
}

impl Producer {
    /// Takes over this producer's `transactional_id` (Kafka's `initTransactions`): ends what an
    /// earlier instance with the id left open (it is committed if it passed its commit point,
    /// aborted otherwise), moves the id's epoch on — fencing that instance, whose later calls
    /// fail with [`Error::ProducerFenced`] — and makes it durable. Call it once, before the
    /// first [`begin_transaction`](Self::begin_transaction).
    ///
    /// Errors: [`Error::InvalidTxnState`] without a `transactional_id` or when called twice;
    /// [`Error::Closed`]; I/O.
    pub fn init_transactions(&self) -> Result<()> {
        let shared = &self.handle.shared;
        let txn = shared.transactional("init transactions")?;
        shared.catalog.check_open()?;
        {
            let phase = txn.phase.lock();
            if !matches!(&*phase, Phase::Uninitialized) {
                return Err(
                    txn.invalid("init transactions", "init_transactions was called already")
                );
            }
        }
        let grant = txn
            .coordinator
            .init(&txn.id, shared.config.transaction_timeout)?;
        let identity = shared.identity();
        identity.set(grant.producer_id, grant.epoch);
        identity.watch(grant.current_epoch);
        txn.set(Phase::Ready);
        Ok(())
    }

    /// Starts a transaction: every [`send`](Self::send) from now until
    /// [`commit_transaction`](Self::commit_transaction) or
    /// [`abort_transaction`](Self::abort_transaction) belongs to it.
    ///
    /// Errors: [`Error::InvalidTxnState`] before `init_transactions` or while a transaction is
    /// open; the producer's fatal error once it has one.
    pub fn begin_transaction(&self) -> Result<()> {
        let txn = self.handle.shared.transactional("begin a transaction")?;
        let mut phase = txn.phase.lock();
        match &*phase {
            Phase::Ready => {
                txn.serial.fetch_add(1, Ordering::AcqRel);
                *phase = Phase::InTransaction;
                Ok(())
            }
            other => Err(txn.refuse(other, "begin a transaction")),
        }
    }

    /// Adds consumer offsets to the open transaction (Kafka's `sendOffsetsToTransaction`): they
    /// become `group`'s committed offsets exactly when the transaction commits, and are dropped
    /// if it aborts. The consume → transform → produce loop's exactly-once: the records it
    /// produced and the position it consumed to commit together.
    ///
    /// `offsets` are the positions to resume from, as for
    /// [`Consumer::commit_offsets`](crate::Consumer::commit_offsets). They are accepted only
    /// while the member `group` names owns each partition (KIP-447): a zombie member's offsets
    /// fail with [`Error::MemberFenced`] or [`Error::NotAssigned`], wrapped in
    /// [`Error::AbortRequired`] (the transaction must abort).
    pub fn send_offsets_to_transaction(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let shared = &self.handle.shared;
        let txn = shared.transactional("send offsets to a transaction")?;
        let _sending = shared.gate.read();
        txn.sending()?;
        if offsets.is_empty() {
            return Ok(());
        }
        let result = (|| {
            let partitions: Vec<TopicPartition> =
                offsets.iter().map(|(tp, _)| tp.clone()).collect();
            let member = (!group.member_id.is_empty()).then_some(group.member_id.as_str());
            let catalog = &shared.catalog;
            // Held until the offsets are written: no partition of them changes owner meanwhile.
            let _permit = catalog.coordinator().begin_commit(
                &group.group_id,
                member,
                &partitions,
                &catalog.partition_counts(),
                Instant::now(),
            )?;
            txn.add(shared, &TopicPartition::new(OFFSETS_TOPIC, 0))?;
            let deleted = |tp: &TopicPartition| {
                catalog
                    .partition(&tp.topic, tp.partition)
                    .map_or(true, |p| p.inner.is_closed())
            };
            txn.offsets.append_transactional(
                &group.group_id,
                offsets,
                shared.identity().get(),
                deleted,
            )
        })();
        result.map_err(|e| {
            txn.failed(&e);
            if e.is_fatal() {
                e
            } else {
                txn.abort_required(e)
            }
        })
    }

    /// Commits the open transaction: writes every record sent in it, makes them and the
    /// transaction's offsets durable, passes the commit point (an fsynced `PrepareCommit` in
    /// `__transaction_state`) and writes a COMMIT marker to every partition it touched. From
    /// the commit point on, the transaction commits even if the process dies. read_committed
    /// consumers see its records once the marker of their partition is written.
    ///
    /// Errors: [`Error::AbortRequired`] if a send of the transaction failed (call
    /// [`abort_transaction`](Self::abort_transaction)); [`Error::ProducerFenced`] /
    /// [`Error::TransactionTimedOut`] (fatal: [`Error::is_fatal`]); [`Error::InvalidTxnState`]
    /// without an open transaction. After any other error (I/O), calling it again finishes the
    /// commit if it had passed its commit point.
    ///
    /// ```
    /// # fn main() -> annals::Result<()> {
    /// use std::time::Duration;
    /// use annals::{ConsumerConfig, IsolationLevel, Log, ProducerConfig, Record, TopicConfig};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path())?;
    /// log.create_topic("payments", TopicConfig::default().partitions(2))?;
    /// let producer = log.producer(ProducerConfig::default().transactional_id("payer"))?;
    /// producer.init_transactions()?;
    ///
    /// producer.begin_transaction()?;
    /// producer.send_to("payments", 0, Record::new("debit 10"))?;
    /// producer.send_to("payments", 1, Record::new("credit 10"))?;
    /// producer.commit_transaction()?; // both, or (after a crash before this returns) neither
    ///
    /// producer.begin_transaction()?;
    /// producer.send_to("payments", 0, Record::new("debit 99"))?;
    /// producer.abort_transaction()?; // never seen by read_committed consumers
    ///
    /// let mut c = log.consumer(
    ///     ConsumerConfig::new("audit").isolation_level(IsolationLevel::ReadCommitted),
    /// )?;
    /// c.assign(&[("payments", 0), ("payments", 1)])?;
    /// let mut seen = Vec::new();
    /// for _ in 0..2 {
    ///     seen.extend(c.poll(Duration::from_millis(50))?.into_iter().map(|r| r.value.unwrap()));
    /// }
    /// seen.sort();
    /// assert_eq!(seen, ["credit 10", "debit 10"]);
    /// # Ok(()) }
    /// ```
    pub fn commit_transaction(&self) -> Result<()> {
        self.handle.shared.end_transaction(true)
    }

    /// Aborts the open transaction: its records stay in the log but no read_committed consumer
    /// ever sees them, and its offsets are dropped. Also the way out after
    /// [`Error::AbortRequired`].
    pub fn abort_transaction(&self) -> Result<()> {
        self.handle.shared.end_transaction(false)
    }
}
