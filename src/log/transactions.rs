//! The transaction side of [`Log`]: the coordinator (loaded at open, or created with
//! `__transaction_state` by the first transactional producer), transactional producers, and
//! the operator's view of open transactions.

use std::sync::Arc;

use super::{Log, LogInner};
use crate::config::{CleanupPolicy, TopicConfig};
use crate::error::{Error, Result};
use crate::txn::{TransactionInfo, TxnCoordinator, TRANSACTION_STATE_TOPIC};

/// One partition, compacted (one record per transactional id survives cleaning), as Kafka's
/// `transaction.state.log.*` defaults say for everything but the partition count.
fn transaction_state_config(segment_bytes: u64) -> TopicConfig {
    TopicConfig::default()
        .partitions(1)
        .segment_bytes(segment_bytes)
        .cleanup_policy(CleanupPolicy::Compact)
}

impl Log {
    /// The transactions open now (begun and not yet ended), by transactional id: producer id
    /// and epoch, state, age, timeout and every partition written — the operator's view, as
    /// `kafka-transactions.sh describe` gives it. A transaction that outlives its timeout is
    /// aborted by maintenance ([`run_maintenance`](Log::run_maintenance) or the background
    /// thread).
    ///
    /// Errors: [`Error::Closed`], I/O (loading `__transaction_state`).
    pub fn transactions(&self) -> Result<Vec<TransactionInfo>> {
        self.inner.catalog.check_open()?;
        Ok(self
            .transaction_coordinator_if_exists()?
            .map(|c| c.list())
            .unwrap_or_default())
    }

    pub(super) fn transaction_coordinator_if_exists(&self) -> Result<Option<Arc<TxnCoordinator>>> {
        let mut slot = self.inner.txn.lock();
        if let Some(c) = slot.as_ref() {
            return Ok(Some(c.clone()));
        }
        match self.any_partition(TRANSACTION_STATE_TOPIC, 0) {
            Ok(p) => {
                let c = Arc::new(open_coordinator(&self.inner, p)?);
                *slot = Some(c.clone());
                Ok(Some(c))
            }
            Err(Error::UnknownTopic { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The coordinator, creating `__transaction_state` if this log has none yet.
    pub(super) fn transaction_coordinator(&self) -> Result<Arc<TxnCoordinator>> {
        if let Some(c) = self.transaction_coordinator_if_exists()? {
            return Ok(c);
        }
        let mut slot = self.inner.txn.lock();
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = transaction_state_config(self.inner.offsets_segment_bytes);
        match self.create_topic_unchecked(TRANSACTION_STATE_TOPIC, config) {
            Ok(()) | Err(Error::TopicExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let partition = self.any_partition(TRANSACTION_STATE_TOPIC, 0)?;
        let c = Arc::new(open_coordinator(&self.inner, partition)?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Loads the coordinator at open, if the log has transactions, and resolves what a crash
    /// left open — before anything else can write or read (a read_committed reader would
    /// otherwise wait on a transaction nobody will end).
    pub(super) fn recover_transactions(&self) -> Result<()> {
        match self.transaction_coordinator_if_exists()? {
            Some(c) => c.recover(),
            None => Ok(()),
        }
    }
}

fn open_coordinator(
    inner: &LogInner,
    partition: crate::partition::Partition,
) -> Result<TxnCoordinator> {
    let ids = inner.producer_ids.clone();
    let storage = inner.storage.clone();
    TxnCoordinator::open(
        partition,
        inner.catalog.clone(),
        Box::new(move || ids.allocate(&*storage)),
        inner.transactional_id_expiration_ms,
    )
}
