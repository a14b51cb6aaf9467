//! [`TxnCoordinator`]: the state of every transactional id, durable in `__transaction_state`,
//! and the protocol that ends a transaction.
//!
//! Ending a transaction (`finish`), in this order:
//! 1. commit only: fsync every partition the transaction wrote to (its data is durable);
//! 2. append `PrepareCommit` (fsynced: **the commit point**) or `PrepareAbort` (not fsynced:
//!    an abort needs no commit point, recovery aborts whatever did not reach one);
//! 3. write the end marker, at the epoch bumped by one (KIP-890), to every partition the
//!    transaction touched, `__consumer_offsets` included; commit only: fsync them, so no
//!    `CompleteCommit` can survive a power loss that took a COMMIT marker;
//! 4. append `CompleteCommit` / `CompleteAbort` with the new epoch (not fsynced: losing it only
//!    means recovery writes the markers again, and a repeated marker is harmless).
//!
//! Recovery (`recover`, at open, before anything else writes): every partition lists the
//! transactions still open on it; one whose producer's state says `PrepareCommit` at that
//! epoch gets a COMMIT marker, every other one an ABORT marker, and each unfinished state is
//! completed.
//!
//! Locks: the map of ids is held only to look up or insert; each id's own mutex is held across
//! its I/O (markers, fsyncs), so one slow commit delays only its own transactional id. Lock
//! order: an id's mutex → partition locks.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI16, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use super::log_codec::{
    decode_key, decode_value, encode_key, encode_value, TxnLogValue, TxnStatus,
};
use super::{TransactionInfo, TransactionState};
use crate::catalog::Catalog;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::format::{ControlType, EndTxnMarker, Record};
use crate::offsets::{OffsetStore, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::topic_partition::TopicPartition;

/// Hands out fresh producer ids (the log's allocator, `log/producer_ids.rs`).
pub(crate) type AllocateId = Box<dyn Fn() -> Result<i64> + Send + Sync>;

/// What `init_transactions` gives the producer instance.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub producer_id: i64,
    pub epoch: i16,
    /// The id's current epoch, moved on by every end of a transaction and by a newer
    /// instance: the producer's writer compares it with its own to find out it is fenced.
    pub current_epoch: Arc<AtomicI16>,
}

pub(crate) struct TxnCoordinator {
    /// Partition 0 of `__transaction_state`.
    log: Partition,
    catalog: Catalog,
    allocate: AllocateId,
    /// `LogBuilder::transactional_id_expiration` in milliseconds.
    id_expiration_ms: i64,
    /// Set once transactional producers may send offsets: markers written to
    /// `__consumer_offsets` complete the offsets they commit or abort there.
    offsets: OnceLock<Arc<OffsetStore>>,
    txns: Mutex<HashMap<String, Arc<Mutex<TxnMeta>>>>,
}

impl std::fmt::Debug for TxnCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnCoordinator")
            .field("ids", &self.txns.lock().len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct TxnMeta {
    id: String,
    producer_id: i64,
    epoch: i16,
    timeout_ms: i32,
    status: TxnStatus,
    partitions: BTreeSet<TopicPartition>,
    start_ms: i64,
    last_update_ms: i64,
    /// `(producer id, epoch)` of the instance whose transaction the timeout aborted: its next
    /// call hears `TransactionTimedOut` rather than `ProducerFenced`.
    timed_out: Option<(i64, i16)>,
    current_epoch: Arc<AtomicI16>,
    /// Partitions whose COMMIT marker of the last transaction may not be durable yet: synced
    /// before the next record of this id is appended (see `settle`).
    unsynced_markers: Vec<Partition>,
}

impl TxnMeta {
    fn new(id: &str) -> TxnMeta {
        TxnMeta {
            id: id.to_string(),
            producer_id: -1,
            epoch: -1,
            timeout_ms: 0,
            status: TxnStatus::Empty,
            partitions: BTreeSet::new(),
            start_ms: 0,
            last_update_ms: 0,
            timed_out: None,
            current_epoch: Arc::new(AtomicI16::new(-1)),
            unsynced_markers: Vec::new(),
        }
    }

    fn value(&self) -> TxnLogValue {
        let mut partitions: Vec<(String, Vec<i32>)> = Vec::new();
        for tp in &self.partitions {
            match partitions.last_mut() {
                Some((topic, ids)) if *topic == tp.topic => ids.push(tp.partition as i32),
                _ => partitions.push((tp.topic.to_string(), vec![tp.partition as i32])),
            }
        }
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_transaction_version: 2,
            producer_epoch: self.epoch,
            timeout_ms: self.timeout_ms,
            status: self.status,
            partitions,
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
        }
    }

    /// A transaction that has started and not ended.
    fn is_open(&self) -> bool {
        matches!(
            self.status,
            TxnStatus::Ongoing
                | TxnStatus::PrepareCommit
                | TxnStatus::PrepareAbort
                | TxnStatus::PrepareEpochFence
        )
    }

    /// The transaction ended (at the epoch set already): `Complete*`, no partitions, and the
    /// new epoch published to the producer instance.
    fn complete(&mut self, commit: bool) {
        self.status = if commit {
            TxnStatus::CompleteCommit
        } else {
            TxnStatus::CompleteAbort
        };
        self.partitions.clear();
        self.last_update_ms = now_ms();
        self.current_epoch.store(self.epoch, Ordering::Release);
    }

    /// The call of instance `(producer_id, epoch)` may act for this id.
    fn check_owner(&self, producer_id: i64, epoch: i16) -> Result<()> {
        if self.producer_id == producer_id && self.epoch == epoch {
            return Ok(());
        }
        if self.timed_out == Some((producer_id, epoch)) {
            warn!(
                transactional_id = %self.id,
                producer_id,
                epoch,
                "refused a call of a producer whose transaction timed out: it is fenced"
            );
            return Err(Error::TransactionTimedOut {
                transactional_id: self.id.clone(),
                timeout_ms: self.timeout_ms.max(0) as u64,
            });
        }
        warn!(
            transactional_id = %self.id,
            producer_id,
            epoch,
            current_producer_id = self.producer_id,
            current_epoch = self.epoch,
            "refused a call of a fenced producer: a newer instance took over its transactional id"
        );
        Err(Error::ProducerFenced {
            producer_id,
            epoch,
            current_epoch: self.epoch,
        })
    }
}

fn state_of(status: TxnStatus) -> TransactionState {
    match status {
        TxnStatus::Empty | TxnStatus::Dead => TransactionState::Empty,
        TxnStatus::Ongoing => TransactionState::Ongoing,
        TxnStatus::PrepareCommit => TransactionState::PrepareCommit,
        TxnStatus::PrepareAbort => TransactionState::PrepareAbort,
        TxnStatus::CompleteCommit => TransactionState::CompleteCommit,
        TxnStatus::CompleteAbort => TransactionState::CompleteAbort,
        TxnStatus::PrepareEpochFence => TransactionState::PrepareEpochFence,
    }
}

/// One record of `__transaction_state` as a reader without a coordinator sees it: the
/// transactional id and the state it records (`None` for a tombstone), as `list` reports an
/// open one. Annals writes no `Ongoing` record (see `add_partition`): a transaction between its
/// first write and its end shows as open only on the partitions it wrote to.
pub(crate) fn transaction_record(
    key: &[u8],
    value: Option<&[u8]>,
    now: i64,
) -> std::result::Result<(String, Option<TransactionInfo>), String> {
    let id = super::log_codec::decode_key(key)?;
    let Some(value) = value else {
        return Ok((id, None));
    };
    let v = super::log_codec::decode_value(value)?;
    let mut partitions: Vec<TopicPartition> = v
        .partitions
        .iter()
        .flat_map(|(topic, ps)| {
            ps.iter()
                .filter_map(|&p| u32::try_from(p).ok())
                .map(move |p| TopicPartition::new(topic.as_str(), p))
        })
        .collect();
    partitions.sort();
    let info = TransactionInfo {
        transactional_id: id.clone(),
        producer_id: v.producer_id,
        producer_epoch: v.producer_epoch,
        state: state_of(v.status),
        age: Duration::from_millis(now.saturating_sub(v.start_ms).max(0) as u64),
        timeout: Duration::from_millis(v.timeout_ms.max(0) as u64),
        partitions,
    };
    Ok((id, Some(info)))
}

impl TxnCoordinator {
    /// Loads every transactional id's last state from `log` (partition 0 of
    /// `__transaction_state`).
    pub(crate) fn open(
        log: Partition,
        catalog: Catalog,
        allocate: AllocateId,
        id_expiration_ms: i64,
    ) -> Result<Self> {
        let mut txns: HashMap<String, Arc<Mutex<TxnMeta>>> = HashMap::new();
        let mut next = log.log_start_offset();
        let end = log.high_watermark();
        let mut records = Vec::new();
        while next < end {
            records.clear();
            log.read_into(next, 1 << 20, &mut records)?;
            let Some(last) = records.last() else { break };
            next = last.offset + 1;
            for r in &records {
                let corrupt = |what: String| Error::CorruptMetadata {
                    file: log.dir().to_path_buf(),
                    reason: format!("transaction state record at offset {}: {what}", r.offset),
                };
                let key = r.key.as_deref().ok_or_else(|| corrupt("no key".into()))?;
                let id = decode_key(key).map_err(corrupt)?;
                let Some(value) = r.value.as_deref() else {
                    txns.remove(&id);
                    continue;
                };
                let v = decode_value(value).map_err(corrupt)?;
                let mut meta = TxnMeta::new(&id);
                meta.producer_id = v.producer_id;
                meta.epoch = v.producer_epoch;
                meta.timeout_ms = v.timeout_ms;
                meta.status = v.status;
                meta.start_ms = v.start_ms;
                meta.last_update_ms = v.last_update_ms;
                meta.current_epoch
                    .store(v.producer_epoch, Ordering::Release);
                for (topic, ids) in v.partitions {
                    for p in ids {
                        let p = u32::try_from(p)
                            .map_err(|_| corrupt(format!("partition {p} of {topic:?}")))?;
                        meta.partitions
                            .insert(TopicPartition::new(topic.clone(), p));
                    }
                }
                txns.insert(id, Arc::new(Mutex::new(meta)));
            }
        }
        Ok(TxnCoordinator {
            log,
            catalog,
            allocate,
            id_expiration_ms,
            offsets: OnceLock::new(),
            txns: Mutex::new(txns),
        })
    }

    /// Lets markers on `__consumer_offsets` complete the transactional offsets in `store`.
    pub(crate) fn attach_offsets(&self, store: Arc<OffsetStore>) {
        let _ = self.offsets.set(store);
    }

    /// Resolves what a crash left open: commits every transaction that passed its commit
    /// point and aborts every other one still open on some partition (see the module docs).
    /// Each open transaction is judged by its own epoch: a producer may have several open at
    /// different epochs after a power loss (an abort whose markers were lost, then a commit).
    pub(crate) fn recover(&self) -> Result<()> {
        let metas: Vec<Arc<Mutex<TxnMeta>>> = self.txns.lock().values().cloned().collect();
        let by_producer: HashMap<i64, Arc<Mutex<TxnMeta>>> = metas
            .iter()
            .map(|m| (m.lock().producer_id, m.clone()))
            .collect();
        let mut open = Vec::new();
        for partition in self.catalog.all_partitions()? {
            let txns = partition.open_transactions();
            if !txns.is_empty() {
                open.push((partition, txns));
            }
        }
        // Every marker of a producer carries one epoch, above all it has used anywhere.
        let mut marker_epochs: HashMap<i64, i16> = HashMap::new();
        for &(producer_id, epoch, _) in open.iter().flat_map(|(_, txns)| txns) {
            let known = by_producer
                .get(&producer_id)
                .map_or(epoch, |m| m.lock().epoch.max(epoch));
            let e = marker_epochs.entry(producer_id).or_insert(known);
            *e = (*e).max(known);
        }
        for e in marker_epochs.values_mut() {
            *e = e.saturating_add(1);
        }
        for (partition, txns) in &open {
            for &(producer_id, epoch, _) in txns {
                let commit = by_producer
                    .get(&producer_id)
                    .is_some_and(|m| committed(&m.lock(), producer_id, epoch));
                let marker_epoch = marker_epochs.get(&producer_id).copied().unwrap_or(epoch);
                info!(
                    topic = %partition.topic(),
                    partition = partition.id(),
                    producer_id,
                    epoch,
                    outcome = if commit { "commit" } else { "abort" },
                    "recovery ends a transaction a crash left open"
                );
                partition
                    .inner
                    .write_end_marker(producer_id, marker_epoch, marker(commit))?;
            }
        }
        for (p, _) in &open {
            p.sync()?;
        }
        let mut wrote = false;
        for meta in &metas {
            let mut m = meta.lock();
            let marked = marker_epochs.get(&m.producer_id).copied();
            if !m.is_open() && marked.is_none() {
                continue;
            }
            // The id's last transaction: committed iff it passed its commit point.
            let commit = matches!(
                m.status,
                TxnStatus::PrepareCommit | TxnStatus::CompleteCommit
            );
            m.epoch = marked.unwrap_or(m.epoch.saturating_add(1));
            m.complete(commit);
            self.write(&mut m, false)?;
            wrote = true;
        }
        if wrote {
            self.log.sync()?;
        }
        Ok(())
    }

    /// `init_transactions`: takes over `id` for a new instance. Completes or aborts the
    /// transaction an earlier instance left open, moves the epoch on (fencing that instance:
    /// durable before this returns) and records `timeout`.
    pub(crate) fn init(&self, id: &str, timeout: Duration) -> Result<Grant> {
        loop {
            let meta = self
                .txns
                .lock()
                .entry(id.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(TxnMeta::new(id))))
                .clone();
            let mut m = meta.lock();
            // Expiry may have forgotten the id between the lookup and the lock: look again.
            if self
                .txns
                .lock()
                .get(id)
                .is_some_and(|e| Arc::ptr_eq(e, &meta))
            {
                return self.init_locked(&mut m, timeout);
            }
        }
    }

    fn init_locked(&self, m: &mut TxnMeta, timeout: Duration) -> Result<Grant> {
        let earlier = (m.producer_id >= 0).then_some((m.producer_id, m.epoch));
        if m.is_open() {
            let commit = m.status == TxnStatus::PrepareCommit;
            warn!(
                transactional_id = %m.id,
                producer_id = m.producer_id,
                epoch = m.epoch,
                partitions = m.partitions.len(),
                outcome = if commit { "commit" } else { "abort" },
                "an earlier instance left a transaction open: the new instance ends it"
            );
            if !commit && m.status == TxnStatus::Ongoing {
                m.status = TxnStatus::PrepareEpochFence;
                self.write(m, false)?;
            }
            self.finish(m, commit)?;
        }
        if m.producer_id < 0 || m.epoch >= i16::MAX - 1 {
            // A new id, or epochs used up: a fresh producer id starts at epoch 0 (as Kafka).
            m.producer_id = (self.allocate)()?;
            m.epoch = 0;
        } else {
            m.epoch += 1;
        }
        m.timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        m.status = TxnStatus::Empty;
        m.partitions.clear();
        m.timed_out = None;
        m.last_update_ms = now_ms();
        self.write(m, true)?;
        m.current_epoch.store(m.epoch, Ordering::Release);
        match earlier {
            Some((old_id, old_epoch)) => info!(
                transactional_id = %m.id,
                producer_id = m.producer_id,
                epoch = m.epoch,
                fenced_producer_id = old_id,
                fenced_epoch = old_epoch,
                "transactional id taken over: any earlier instance is fenced"
            ),
            None => info!(
                transactional_id = %m.id,
                producer_id = m.producer_id,
                epoch = m.epoch,
                "transactional id initialized"
            ),
        }
        Ok(Grant {
            producer_id: m.producer_id,
            epoch: m.epoch,
            current_epoch: m.current_epoch.clone(),
        })
    }

    /// Adds `tp` to the open transaction of `id` (opening it if none is), before the first
    /// batch of the transaction goes to that partition.
    pub(crate) fn add_partition(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        tp: &TopicPartition,
    ) -> Result<()> {
        let meta = self.meta(id)?;
        let mut m = meta.lock();
        m.check_owner(producer_id, epoch)?;
        match m.status {
            TxnStatus::Ongoing => {}
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                m.status = TxnStatus::Ongoing;
                m.start_ms = now_ms();
                m.partitions.clear();
            }
            other => {
                return Err(Error::InvalidTxnState {
                    transactional_id: Some(id.to_string()),
                    operation: "add a partition to the transaction",
                    state: format!("the transaction is in state {other:?}"),
                })
            }
        }
        if m.partitions.insert(tp.clone()) {
            m.last_update_ms = now_ms();
        }
        // No record: the partitions themselves record the transactions open on them (which is
        // what Kafka's Ongoing record is for), and not appending one here is what lets the
        // previous transaction's COMMIT markers become durable with this transaction's data
        // instead of with fsyncs of their own (see `settle`).
        Ok(())
    }

    /// Commits or aborts the open transaction of `id` for instance `(producer_id, epoch)`.
    /// Returns the instance's producer id and epoch for its next transaction (the epoch moves
    /// on by one with every transaction that wrote something).
    pub(crate) fn end(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(i64, i16)> {
        let meta = self.meta(id)?;
        let mut m = meta.lock();
        m.check_owner(producer_id, epoch)?;
        match (m.status, commit) {
            (TxnStatus::Ongoing, _)
            | (TxnStatus::PrepareCommit, true)
            | (TxnStatus::PrepareAbort, false) => self.finish(&mut m, commit)?,
            // Nothing was written in this transaction: nothing to end.
            (TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort, _) => {}
            (other, _) => {
                return Err(Error::InvalidTxnState {
                    transactional_id: Some(id.to_string()),
                    operation: if commit {
                        "commit the transaction"
                    } else {
                        "abort the transaction"
                    },
                    state: format!("the transaction is in state {other:?}"),
                })
            }
        }
        Ok((m.producer_id, m.epoch))
    }

    /// Aborts every transaction open longer than its timeout and fences its producer (its next
    /// call fails with `TransactionTimedOut`); forgets transactional ids idle (no transaction
    /// open) for `LogBuilder::transactional_id_expiration`, with a tombstone, so the coordinator's
    /// state stays bounded by the ids in use. Returns how many transactions were aborted.
    pub(crate) fn abort_expired(&self) -> Result<usize> {
        let metas: Vec<Arc<Mutex<TxnMeta>>> = self.txns.lock().values().cloned().collect();
        let now = now_ms();
        let mut aborted = 0;
        for meta in metas {
            let mut m = meta.lock();
            if !m.is_open() && now.saturating_sub(m.last_update_ms) > self.id_expiration_ms {
                let bad =
                    |reason: String| Error::InvalidArgument(format!("transaction state: {reason}"));
                self.settle(&mut m)?;
                self.log
                    .append(&[Record::tombstone(encode_key(&m.id).map_err(bad)?)])?;
                let mut txns = self.txns.lock();
                if txns.get(&m.id).is_some_and(|e| Arc::ptr_eq(e, &meta)) {
                    txns.remove(&m.id);
                }
                info!(
                    transactional_id = %m.id,
                    idle_ms = now.saturating_sub(m.last_update_ms),
                    "forgot an idle transactional id (transactional_id_expiration)"
                );
                // An instance still holding the id is fenced: its next call finds no state.
                m.epoch = m.epoch.saturating_add(1);
                m.current_epoch.store(m.epoch, Ordering::Release);
                continue;
            }
            let expired = m.status == TxnStatus::Ongoing
                && now.saturating_sub(m.start_ms) > i64::from(m.timeout_ms);
            if !expired {
                continue;
            }
            let owner = (m.producer_id, m.epoch);
            warn!(
                transactional_id = %m.id,
                producer_id = m.producer_id,
                epoch = m.epoch,
                timeout_ms = m.timeout_ms,
                partitions = m.partitions.len(),
                "aborting a transaction that outlived its timeout: its producer is fenced"
            );
            self.finish(&mut m, false)?;
            m.timed_out = Some(owner);
            aborted += 1;
        }
        Ok(aborted)
    }

    /// The transactions open now.
    pub(crate) fn list(&self) -> Vec<TransactionInfo> {
        let metas: Vec<Arc<Mutex<TxnMeta>>> = self.txns.lock().values().cloned().collect();
        let now = now_ms();
        let mut out: Vec<TransactionInfo> = metas
            .iter()
            .filter_map(|meta| {
                let m = meta.lock();
                m.is_open().then(|| TransactionInfo {
                    transactional_id: m.id.clone(),
                    producer_id: m.producer_id,
                    producer_epoch: m.epoch,
                    state: state_of(m.status),
                    age: Duration::from_millis(now.saturating_sub(m.start_ms).max(0) as u64),
                    timeout: Duration::from_millis(m.timeout_ms.max(0) as u64),
                    partitions: m.partitions.iter().cloned().collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    fn meta(&self, id: &str) -> Result<Arc<Mutex<TxnMeta>>> {
        self.txns
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::InvalidTxnState {
                transactional_id: Some(id.to_string()),
                operation: "use the transactional id",
                state: "the coordinator has no state for it: init_transactions was not called, \
                        or the id expired (idle past transactional_id_expiration); open a new \
                        producer"
                    .into(),
            })
    }

    /// Ends the open transaction in `m` (the protocol in the module docs).
    fn finish(&self, m: &mut TxnMeta, commit: bool) -> Result<()> {
        let mut partitions = Vec::with_capacity(m.partitions.len());
        for tp in &m.partitions {
            match self.catalog.any_partition(&tp.topic, tp.partition) {
                Ok(p) => partitions.push(p),
                // Deleted since: its records are gone with it.
                Err(Error::UnknownTopic { .. } | Error::UnknownPartition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if commit {
            for p in &partitions {
                p.sync()?;
            }
        }
        m.status = if commit {
            TxnStatus::PrepareCommit
        } else {
            TxnStatus::PrepareAbort
        };
        m.last_update_ms = now_ms();
        self.write(m, commit)?;
        let marker_epoch = m.epoch.saturating_add(1);
        for p in &partitions {
            p.inner
                .write_end_marker(m.producer_id, marker_epoch, marker(commit))?;
        }
        let rotate = marker_epoch >= i16::MAX - 1;
        if commit && rotate {
            // The next records name a new producer id, under which recovery could not tell
            // this transaction's outcome: its markers must be durable first.
            for p in &partitions {
                p.sync()?;
            }
        }
        if partitions.iter().any(|p| p.topic() == OFFSETS_TOPIC) {
            if let Some(store) = self.offsets.get() {
                store.complete_transaction(m.producer_id, commit);
            }
        }
        m.epoch = marker_epoch;
        if rotate {
            m.producer_id = (self.allocate)()?;
            m.epoch = 0;
        }
        m.complete(commit);
        self.write(m, false)?;
        if commit && !rotate {
            m.unsynced_markers = partitions;
        }
        Ok(())
    }

    /// Makes the last transaction's COMMIT markers durable (a no-op for partitions synced since,
    /// which the next transaction's data sync usually did). Runs before every record of the id
    /// is appended: as long as `CompleteCommit` at epoch e + 1 is the id's last record,
    /// recovery can tell from it that an open transaction at epoch e committed; a later record
    /// would hide that, so the markers must not be able to be lost once one is written.
    fn settle(&self, m: &mut TxnMeta) -> Result<()> {
        for p in std::mem::take(&mut m.unsynced_markers) {
            match p.sync() {
                Ok(()) => {}
                // A partition closed since: its topic was deleted (its records are gone) or
                // the log closed (which sealed it: durable).
                Err(Error::Closed) => {}
                Err(e) => {
                    m.unsynced_markers.push(p);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Appends `m`'s state to `__transaction_state`, fsynced if `sync`.
    fn write(&self, m: &mut TxnMeta, sync: bool) -> Result<()> {
        self.settle(m)?;
        let bad = |reason: String| Error::InvalidArgument(format!("transaction state: {reason}"));
        let record = Record::new(encode_value(&m.value()).map_err(bad)?)
            .key(encode_key(&m.id).map_err(bad)?);
        self.log.append(&[record])?;
        if sync {
            self.log.sync()?;
        }
        Ok(())
    }
}

/// Whether the transaction of `producer_id` whose batches carry `epoch`, still open on a
/// partition at recovery, committed according to the id's last durable record: it passed its
/// commit point (`PrepareCommit` at that epoch) or completed (`CompleteCommit` at the next one,
/// which may be durable before its markers are; see `settle`).
fn committed(m: &TxnMeta, producer_id: i64, epoch: i16) -> bool {
    m.producer_id == producer_id
        && match m.status {
            TxnStatus::PrepareCommit => m.epoch == epoch,
            TxnStatus::CompleteCommit => m.epoch == epoch.saturating_add(1),
            _ => false,
        }
}

fn marker(commit: bool) -> EndTxnMarker {
    EndTxnMarker {
        control_type: if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        },
        coordinator_epoch: 0,
    }
}
