//! The integration tests, as one binary: one module per area (each was its own test binary,
//! each linking the crate once more), sharing the helpers in `common`.
//!
//! The kill -9 and file-descriptor tests re-execute this binary as their child; they select the
//! child test by its full path in this binary (`common::test_path`), so `--exact` still picks
//! exactly that one test.

mod common;

mod admin_locking;
mod api_ergonomics;
mod async_api;
mod bad_input;
mod compaction_crash;
mod compaction_kill9;
mod compaction_model;
mod compaction_readers;
mod config_durations;
mod consumer_basic;
mod consumer_groups;
mod consumer_lifecycle;
mod consumer_maintenance;
mod consumer_rebalance_commits;
mod consumer_restart;
mod error_messages;
mod event_store;
mod event_store_kill9;
mod event_store_model;
mod exactly_once_kill9;
mod foreign_batches;
mod format_kafka_crosscheck;
mod idle_close;
mod index_growth;
mod io_errors;
mod kafka_tools;
mod kill9;
mod log_checkpoint;
mod log_lifetime;
mod maintenance_poison;
mod many_partitions_close;
mod metrics;
mod open_files;
mod partition_iter;
mod partition_model;
mod producer_backpressure;
mod producer_basic;
mod producer_durability;
mod producer_expiry;
mod producer_idempotence;
mod producer_kill9;
mod producer_poison;
mod read_batches;
mod read_only;
mod recovery_compacted;
mod recovery_corruption;
mod recovery_indexes;
mod recovery_report;
mod recovery_truncation;
mod retention_basic;
#[cfg(feature = "serde")]
mod serde_configs;
mod sim_crash;
mod topic_creation_crash;
mod topic_lookup;
#[cfg(feature = "tracing")]
mod tracing_events;
mod transactions;
mod transactions_compaction;
mod transactions_crash;
mod transactions_model;
