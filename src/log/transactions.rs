//! The transaction side of [`Log`]: the coordinator (loaded at open, or created with
//! `__transaction_state` by the first transactional producer), transactional producers, and
//! the operator's view of open transactions.

use std::sync::Arc;

use super::{Log, LogInner};
use crate::config::{CleanupPolicy, TopicConfig};
use crate::error::Result;
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
    /// Errors: [`Error::Closed`](crate::Error::Closed), I/O (loading `__transaction_state`).
    pub fn transactions(&self) -> Result<Vec<TransactionInfo>> {
        self.inner.catalog.check_open()?;
        Ok(self
            .transaction_coordinator_if_exists()?
            .map(|c| c.list())
            .unwrap_or_default())
    }

    pub(super) fn transaction_coordinator_if_exists(&self) -> Result<Option<Arc<TxnCoordinator>>> {
        self.internal_if_exists(&self.inner.txn, TRANSACTION_STATE_TOPIC, |p| {
            open_coordinator(&self.inner, p)
        })
    }

    /// The coordinator, creating `__transaction_state` if this log has none yet.
    pub(super) fn transaction_coordinator(&self) -> Result<Arc<TxnCoordinator>> {
        let config = transaction_state_config(self.inner.offsets_segment_bytes);
        self.internal(&self.inner.txn, TRANSACTION_STATE_TOPIC, config, |p| {
            open_coordinator(&self.inner, p)
        })
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
