//! # annals-kafka
//!
//! The way from annals to Apache Kafka and back, on [`rdkafka`] (librdkafka built from the source
//! `rdkafka-sys` bundles). The core `annals` crate stays free of any network dependency; this
//! member is not a default member of the workspace, so a plain `cargo test` at the root never
//! builds librdkafka.
//!
//! - [`Relay`]: annals topics forwarded to Kafka topics exactly once — a Kafka transactional
//!   producer with the relay's progress in the same transaction (a compacted progress topic, as
//!   Kafka Connect's exactly-once sources keep theirs), resumed read_committed after a restart,
//!   older relays with the same id fenced. annals is read read_committed: aborted transactions
//!   and markers are never forwarded, compaction's offset gaps are passed over. Each record keeps
//!   its key, value, headers and timestamp and gets its annals offset in a header.
//! - [`Mirror`]: a Kafka topic copied into an annals topic exactly once, the Kafka offsets
//!   committed in the same annals transaction as the records.
//!
//! Both run on their own thread from `start` to `stop`, report [`RelayMetrics`] /
//! [`MirrorMetrics`] (state, counters, lag per partition), and stop on a fatal error
//! ([`Error::is_fatal`]) while riding out broker outages. `docs/ARCHITECTURE.md` ("To and from
//! Kafka") tells what happens on kill -9, power loss and a broker restart.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use annals::{Log, TopicConfig};
//! use annals_kafka::{Mirror, MirrorConfig, Relay, RelayConfig};
//!
//! let log = Log::open("data")?;
//! log.create_topic_if_missing("orders", TopicConfig::default().partitions(3))?;
//! let relay = Relay::start(&log, RelayConfig::new("orders", "127.0.0.1:9092").route("orders", "orders"))?;
//! relay.wait_until_caught_up(Duration::from_secs(30))?;
//! println!("lag: {}", relay.metrics().lag());
//! relay.stop()?;
//!
//! // And back: a replica of the Kafka topic in another log.
//! let replica = Log::open("replica")?;
//! let mirror = Mirror::start(&replica, MirrorConfig::new("orders", "127.0.0.1:9092").route("orders", "orders"))?;
//! mirror.wait_until_caught_up(Duration::from_secs(30))?;
//! mirror.stop()?;
//! # Ok(()) }
//! ```
//!
//! ## Testing against a real broker
//!
//! `kafka/scripts/broker` runs a real single-node Apache Kafka broker (KRaft, 127.0.0.1 only) from
//! Kafka's own jars (fetched with Maven). [`broker_from_env`] gives the tests its address from
//! [`BOOTSTRAP_ENV`], and when it is missing an error that says how to start one: the tests
//! fail, they never skip. librdkafka's own default partitioner is `consistent_random` (CRC32); a
//! producer that must agree with annals and the Java client sets `partitioner=murmur2_random`.
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
