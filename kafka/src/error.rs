//! What can go wrong between annals and Kafka. Every error names the operation, and the topic,
//! partition or broker address it concerns; [`Error::is_fatal`] says which ones a running relay
//! or mirror stops on (the others it retries by reconnecting).

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The result of this crate's calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which of this crate's workers an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A [`Relay`](crate::Relay): annals → Kafka.
    Relay,
    /// A [`Mirror`](crate::Mirror): Kafka → annals.
    Mirror,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Relay => "relay",
            Role::Mirror => "mirror",
        })
    }
}

/// An error of a [`Relay`](crate::Relay) or a [`Mirror`](crate::Mirror).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The annals side failed.
    #[error("{op}: {source}")]
    Annals {
        /// What was being done, with the topic and partition.
        op: String,
        /// annals' own error (which names the path where there is one).
        #[source]
        source: annals::Error,
    },
    /// A Kafka call failed for a reason other than the ones below.
    #[error("{op} (Kafka at {bootstrap}): {source}")]
    Kafka {
        /// What was being done.
        op: String,
        /// The `bootstrap.servers` used.
        bootstrap: String,
        /// rdkafka's error (boxed: it is large, and errors travel through every `Result`).
        #[source]
        source: Box<KafkaError>,
    },
    /// No broker answered within the configured timeout.
    #[error("no Kafka broker at {bootstrap} answered within {timeout:?} ({op}): {detail}")]
    Unreachable {
        /// What was being done.
        op: String,
        /// The `bootstrap.servers` used.
        bootstrap: String,
        /// The `connect_timeout` waited.
        timeout: Duration,
        /// What librdkafka said.
        detail: String,
    },
    /// A Kafka topic a route names does not exist (topics are never created implicitly: their
    /// partition count and settings are the operator's choice). A topic created a moment before
    /// the start is asked for again for a few seconds, until the broker's metadata shows it.
    #[error("Kafka topic {topic:?} does not exist at {bootstrap} ({op}); create it first{}", partitions_advice(*partitions_hint))]
    MissingKafkaTopic {
        /// What was being done.
        op: String,
        /// The `bootstrap.servers` used.
        bootstrap: String,
        /// The missing topic.
        topic: String,
        /// How many partitions the topic should have to match annals (0 for a mirror, which
        /// takes the Kafka topic as it is).
        partitions_hint: u32,
    },
    /// An annals topic and its Kafka topic have different partition counts.
    #[error("annals topic {annals_topic:?} has {annals_partitions} partitions but Kafka topic {kafka_topic:?} has {kafka_partitions}: records go partition for partition, so the counts must match (a relay can map by key instead: `RelayConfig::route_by_key`)")]
    PartitionMismatch {
        /// The annals topic.
        annals_topic: String,
        /// Its partitions.
        annals_partitions: u32,
        /// The Kafka topic.
        kafka_topic: String,
        /// Its partitions.
        kafka_partitions: u32,
    },
    /// Another worker with the same id took over (its `init_transactions` fenced this one).
    #[error("{role} {id:?} was fenced: another {role} with the same id started (transactional id {transactional_id:?}); this one stopped without forwarding more")]
    Fenced {
        /// Relay or mirror.
        role: Role,
        /// The configured id.
        id: String,
        /// The transactional id derived from it.
        transactional_id: String,
    },
    /// Records the relay had not forwarded yet were deleted from annals (by retention, or the
    /// topic was recreated) before it could forward them.
    #[error("annals {topic}/{partition}: the relay's next offset {next} is before the log start {log_start}; records {next}..{log_start} were deleted before they were forwarded (raise the topic's retention, or move the relay's progress on by hand)")]
    Truncated {
        /// The annals topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Where the relay's committed progress says to resume.
        next: u64,
        /// The partition's first offset.
        log_start: u64,
    },
    /// The progress stored in Kafka is past the end of the annals partition: this is not the log
    /// the relay forwarded (a different directory, or the log was recreated).
    #[error("annals {topic}/{partition}: the relay's progress in Kafka says {next} records were forwarded, but the partition ends at {high_watermark}; this is not the annals log the relay {id:?} forwarded (use another relay id for a new log)")]
    AheadOfLog {
        /// The relay id.
        id: String,
        /// The annals topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Where the progress says to resume.
        next: u64,
        /// The partition's high watermark.
        high_watermark: u64,
    },
    /// A record in the progress topic under this relay's id cannot be read.
    #[error("progress topic {topic:?} partition {partition} offset {offset}: {why}")]
    CorruptProgress {
        /// The progress topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// What is wrong with it.
        why: String,
    },
    /// A configuration that cannot work.
    #[error("invalid {what}: {why}")]
    InvalidConfig {
        /// Which setting.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// The worker stopped earlier on the error given (its metrics' `last_error`).
    #[error("the {role} stopped on an error: {reason}")]
    Stopped {
        /// Relay or mirror.
        role: Role,
        /// The error it stopped on.
        reason: String,
    },
    /// The worker's thread panicked (a bug); the message is the panic's.
    #[error("the {role} thread panicked: {message}")]
    Panicked {
        /// Relay or mirror.
        role: Role,
        /// The panic message.
        message: String,
    },
}

impl Error {
    /// Whether a running worker stops on this error rather than reconnecting and trying again:
    /// fencing, configuration and topic-shape errors, data annals no longer has, an annals
    /// topic that does not exist, and annals' own fatal errors (a closed or poisoned log). Broker outages and timeouts are not fatal.
    pub fn is_fatal(&self) -> bool {
        match self {
            // A topic deleted under a running worker does not come back by reconnecting.
            Error::Annals { source, .. } => {
                source.is_fatal()
                    || matches!(
                        source,
                        annals::Error::Closed | annals::Error::UnknownTopic { .. }
                    )
            }
            Error::Kafka { source, .. } => kafka_is_fatal(source),
            Error::Unreachable { .. } => false,
            Error::MissingKafkaTopic { .. }
            | Error::PartitionMismatch { .. }
            | Error::Fenced { .. }
            | Error::Truncated { .. }
            | Error::AheadOfLog { .. }
            | Error::CorruptProgress { .. }
            | Error::InvalidConfig { .. }
            | Error::Stopped { .. }
            | Error::Panicked { .. } => true,
        }
    }

    pub(crate) fn annals(op: impl Into<String>) -> impl FnOnce(annals::Error) -> Error {
        let op = op.into();
        move |source| Error::Annals { op, source }
    }
}

fn partitions_advice(partitions: u32) -> String {
    match partitions {
        0 => String::new(),
        n => format!(", with {n} partitions as its annals topic has"),
    }
}

/// A Kafka error that reconnecting cannot cure.
fn kafka_is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_) => true,
        _ => matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
            )
        ),
    }
}

/// Whether a Kafka error means another producer with the same transactional id fenced ours.
pub(crate) fn is_fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}
