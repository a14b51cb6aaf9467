//! The rdkafka clients the relay and the mirror build, and what they ask the cluster before they
//! start: whether topics exist and how many partitions they have.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

use crate::error::{Error, Result};

/// A client configuration with what every client of this crate sets: the bootstrap address,
/// timeouts that follow `timeout`, then the caller's extra settings.
pub(crate) fn base_config(
    bootstrap: &str,
    timeout: Duration,
    extra: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128).to_string();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", ms.as_str())
        // librdkafka logs every failed connection attempt; the errors that matter are returned.
        .set("log_level", "3");
    for (k, v) in extra {
        config.set(k, v);
    }
    config
}

/// A consumer-type client used only for metadata: unlike a producer it never asks the broker to
/// create a topic it looks up, and its watermarks are high watermarks (read_uncommitted), not
/// last stable offsets.
pub(crate) fn metadata_client(
    bootstrap: &str,
    timeout: Duration,
    extra: &[(String, String)],
) -> Result<BaseConsumer> {
    let mut config = base_config(bootstrap, timeout, extra);
    config
        .set("group.id", "annals-kafka-metadata")
        .set("allow.auto.create.topics", "false")
        .set("isolation.level", "read_uncommitted");
    config.create().map_err(|source| Error::Kafka {
        op: "create a metadata client".into(),
        bootstrap: bootstrap.into(),
        source: Box::new(source),
    })
}

/// How long a topic the cluster reports missing is asked for again before it counts as missing.
/// CreateTopics answers once the controller has committed a topic; the broker that serves
/// metadata learns of it a moment later, so a relay started right after an operator (or a
/// script) created its topic would otherwise fail for a topic that exists.
pub(crate) const NEW_TOPIC_GRACE: Duration = Duration::from_secs(3);

/// The partition counts of `topics` (`None` for a topic the cluster does not have, after asking
/// again for up to `grace`). Fails with [`Error::Unreachable`] when no broker answers within
/// `timeout`.
pub(crate) fn partition_counts(
    client: &BaseConsumer,
    bootstrap: &str,
    topics: &[&str],
    timeout: Duration,
    grace: Duration,
    op: &str,
) -> Result<HashMap<String, Option<u32>>> {
    let give_up = Instant::now() + grace;
    let mut counts = HashMap::new();
    for topic in topics {
        loop {
            let count = partition_count(client, bootstrap, topic, timeout, op)?;
            if count.is_some() || Instant::now() >= give_up {
                counts.insert((*topic).to_owned(), count);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(counts)
}

/// One metadata request for `topic`: its partition count, `None` if the cluster has no such
/// topic (yet).
fn partition_count(
    client: &BaseConsumer,
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    op: &str,
) -> Result<Option<u32>> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| unreachable_or_kafka(e, bootstrap, timeout, op))?;
    Ok(metadata.topics().iter().find(|t| t.name() == topic).and_then(|t| {
        let missing = matches!(
            t.error(),
            Some(code) if RDKafkaErrorCode::from(code) == RDKafkaErrorCode::UnknownTopicOrPartition
        );
        (!missing && !t.partitions().is_empty()).then_some(t.partitions().len() as u32)
    }))
}

/// A failed call that never reached a broker is [`Error::Unreachable`]; anything else is
/// [`Error::Kafka`].
pub(crate) fn unreachable_or_kafka(
    source: KafkaError,
    bootstrap: &str,
    timeout: Duration,
    op: &str,
) -> Error {
    let transport = matches!(
        source.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::NotCoordinator
        )
    );
    if transport {
        Error::Unreachable {
            op: op.into(),
            bootstrap: bootstrap.into(),
            timeout,
            detail: source.to_string(),
        }
    } else {
        Error::Kafka {
            op: op.into(),
            bootstrap: bootstrap.into(),
            source: Box::new(source),
        }
    }
}

/// `call` again while it fails the way a topic just created, or a partition whose leader is
/// moving, fails (no leader yet, metadata not yet everywhere), until `timeout` has passed.
pub(crate) fn retry_transient<T>(
    timeout: Duration,
    mut call: impl FnMut() -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match call() {
            Err(e) if is_transient(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

pub(crate) fn is_transient(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::CoordinatorLoadInProgress
        )
    )
}

/// Creates `topic` as a compacted one-partition topic unless it exists (also when another
/// relay created it meanwhile).
pub(crate) fn ensure_progress_topic(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    extra: &[(String, String)],
) -> Result<()> {
    let kafka = |op: &str| {
        let op = op.to_owned();
        move |source| Error::Kafka {
            op,
            bootstrap: bootstrap.into(),
            source: Box::new(source),
        }
    };
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap, timeout, extra)
        .create()
        .map_err(kafka("create an admin client"))?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let op = format!("create the progress topic {topic:?}");
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| unreachable_or_kafka(e, bootstrap, timeout, &op))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(unreachable_or_kafka(
                    KafkaError::AdminOp(code),
                    bootstrap,
                    timeout,
                    &op,
                ))
            }
        }
    }
    Ok(())
}
