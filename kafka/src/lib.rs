//! # annals-kafka
//!
//! The way from annals to Apache Kafka, on [`rdkafka`] (librdkafka built from the source
//! `rdkafka-sys` bundles). This crate is where issue 17's relay will live: annals topics
//! forwarded to a Kafka cluster exactly once — a Kafka transactional producer with the relay's
//! progress in the same transaction — and the reverse mirror of a Kafka topic into annals. The
//! core `annals` crate stays free of any network dependency; this member is not a default
//! member of the workspace, so a plain `cargo test` at the root never builds librdkafka.
//!
//! What is here today is the foundation the relay is built and tested on:
//!
//! - `kafka/scripts/broker` runs a real single-node Apache Kafka broker (KRaft, 127.0.0.1 only)
//!   from Kafka's own jars: `bash kafka/scripts/broker start` prints
//!   `bootstrap=127.0.0.1:<port>`, `bash kafka/scripts/broker stop` stops it by its pid.
//! - [`broker_from_env`] gives the tests that broker's address from [`BOOTSTRAP_ENV`], and
//!   when it is missing an error that says how to start one: the tests fail, they never skip.
//! - `tests/broker.rs` checks, against that broker, what the relay will rely on: topics made
//!   with rdkafka's admin client, a transactional producer whose aborted records a
//!   read_committed consumer never sees, and every key on the partition annals'
//!   [`annals::partition_for_key`] picks (Kafka's murmur2). librdkafka's own default
//!   partitioner is `consistent_random` (CRC32): a producer that must agree with annals and the
//!   Java client sets `partitioner=murmur2_random`, as the test does.
//!
//! ```text
//! bash kafka/scripts/broker start            # prints bootstrap=127.0.0.1:<port>
//! export ANNALS_KAFKA_BOOTSTRAP=$(cat target/kafka-broker/run/bootstrap)
//! cargo test -p annals-kafka
//! bash kafka/scripts/broker stop
//! ```

#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]
#![warn(missing_docs)]

mod broker_env;
mod client;
mod config;
mod error;
mod mirror;
mod progress;
mod relay;
mod worker;

pub use broker_env::{broker_from_env, BrokerMissing, BOOTSTRAP_ENV};
pub use config::{MirrorConfig, MirrorRoute, PartitionMapping, RelayConfig, RelayRoute};
pub use error::{Error, Result, Role};
pub use mirror::{Mirror, MirrorMetrics, MirrorPartition};
pub use relay::{Relay, RelayMetrics, RelayPartition};
pub use worker::WorkerState;
