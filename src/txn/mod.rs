//! Transactions: a group of writes to several partitions — and the consumer offsets that
//! produced them — that becomes visible all together or not at all, across crashes.
//!
//! The pieces, as in Kafka:
//! - the transactional producer (`producer/transaction.rs`): `init_transactions`,
//!   `begin_transaction`, `send`, `send_offsets_to_transaction`, `commit_transaction` /
//!   `abort_transaction`;
//! - the coordinator (`coordinator.rs`): one state per transactional id, kept in the internal
//!   compacted topic `__transaction_state` in Kafka's `TransactionLogKey` /
//!   `TransactionLogValue` layout (`log_codec.rs`), which runs the commit protocol and writes
//!   the end markers;
//! - each partition (`partition/`): its producers' open transactions, the last stable offset,
//!   the aborted-transaction index (`.txnindex`) and what read_committed reads skip.
//!
//! The commit protocol and the crash story of each step are in `docs/ARCHITECTURE.md`
//! ("Transactions").

mod coordinator;
mod log_codec;

use std::time::Duration;

use crate::topic_partition::TopicPartition;
pub(crate) use coordinator::{transaction_record, TxnCoordinator};

/// The internal topic holding the transaction coordinator's state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Kafka's `transaction.timeout.ms` default: 60 s.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Kafka's `transactional.id.expiration.ms` default: 7 days (`LogBuilder::transactional_id_expiration`).
pub(crate) const DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Kafka's `transaction.max.timeout.ms` default: the longest `transaction_timeout` allowed.
pub const MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Where a transaction stands, as the coordinator records it (Kafka's transaction states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransactionState {
    /// No transaction has started since the last one ended (or since `init_transactions`).
    Empty,
    /// Records were sent; neither commit nor abort has begun.
    Ongoing,
    /// The commit point passed: the transaction will commit, even across a crash; markers are
    /// being written.
    PrepareCommit,
    /// The transaction is being aborted; markers are being written.
    PrepareAbort,
    /// Committed, every marker written.
    CompleteCommit,
    /// Aborted, every marker written.
    CompleteAbort,
    /// A new instance with this transactional id is taking over and aborting what the old one
    /// left open.
    PrepareEpochFence,
}

/// One open transaction, as [`Log::transactions`](crate::Log::transactions) reports it (what
/// `kafka-transactions.sh describe` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionInfo {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: TransactionState,
    /// Since the transaction's first write.
    pub age: Duration,
    /// The producer's `transaction_timeout`: past it, maintenance aborts the transaction.
    pub timeout: Duration,
    /// Every partition it wrote to, `__consumer_offsets` included, sorted.
    pub partitions: Vec<TopicPartition>,
}
