//! `Log::has_topic` and `Log::create_topic_if_missing` at their edges.

use annals::{Error, Log, TopicConfig};

#[test]
fn lookups_and_idempotent_creation_at_the_edges() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    // Internal topics are not the caller's, even once they exist.
    let _consumer = log.consumer(annals::ConsumerConfig::new("g")).unwrap();
    assert!(!log.has_topic("__consumer_offsets"));
    assert!(matches!(
        log.create_topic_if_missing("__consumer_offsets", TopicConfig::default()),
        Err(Error::InvalidTopicName { .. })
    ));
    assert!(matches!(
        log.create_topic_if_missing("bad/name", TopicConfig::default()),
        Err(Error::InvalidTopicName { .. })
    ));
    assert!(matches!(
        log.create_topic_if_missing("t", TopicConfig::default().partitions(0)),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(!log.has_topic("t"), "a refused creation created nothing");
    assert!(log
        .create_topic_if_missing("t", TopicConfig::default())
        .unwrap());
    assert!(!log
        .create_topic_if_missing("t", TopicConfig::default())
        .unwrap());
    log.delete_topic("t").unwrap();
    assert!(!log.has_topic("t"));
    assert!(log
        .create_topic_if_missing("t", TopicConfig::default())
        .unwrap());
    log.close().unwrap();
    assert!(!log.has_topic("t"), "a closed log has no topics");
    assert!(matches!(
        log.create_topic_if_missing("u", TopicConfig::default()),
        Err(Error::Closed)
    ));
}
