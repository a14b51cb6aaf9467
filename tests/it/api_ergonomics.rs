//! The API takes what callers hold: borrowed record data, topic lists of any string type,
//! `(topic, partition)` tuples, consumers without a group, offsets that may be unknown.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use annals::{
    AutoOffsetReset, ConsumerConfig, Durability, Error, Log, ProducerConfig, Record, TopicConfig,
    TopicPartition,
};

fn log_with(topics: &[&str]) -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    for t in topics {
        log.create_topic(t, TopicConfig::default().partitions(2))
            .unwrap();
    }
    (dir, log)
}

/// Built from data that lives shorter than the record: copied, so the record owns its bytes.
fn record_from_request(body: &[u8], id: &String, kind: Cow<'_, str>) -> Record {
    Record::new(body).key(id).header("type", kind)
}

#[test]
fn records_take_borrowed_data_and_read_back_equal() {
    let (_dir, log) = log_with(&["orders"]);
    let p = log.partition("orders", 0).unwrap();
    let records: Vec<Record> = (0..3)
        .map(|i| {
            let body = format!("{{\"n\":{i}}}").into_bytes(); // dropped after this closure
            let id = format!("order-{i}");
            record_from_request(&body, &id, Cow::Owned(format!("Kind{i}")))
        })
        .collect();
    p.append(&records).unwrap();
    let kept = String::from("s");
    p.append(&[
        Record::new(vec![1u8, 2, 3]).key([9u8; 4]),
        Record::tombstone(&b"gone"[..]),
        Record::new(kept.as_str()).key(annals::Bytes::from_static(b"static")),
    ])
    .unwrap();
    let read = p.read(0, 1 << 20).unwrap();
    assert_eq!(read.len(), 6);
    for (i, r) in read[..3].iter().enumerate() {
        assert_eq!(r.value_str(), Some(format!("{{\"n\":{i}}}").as_str()));
        assert_eq!(r.key_str(), Some(format!("order-{i}").as_str()));
        assert_eq!(r.header("type"), Some(format!("Kind{i}").as_bytes()));
    }
    assert_eq!(read[3].value.as_deref(), Some(&[1u8, 2, 3][..]));
    assert_eq!(read[3].key.as_deref(), Some(&[9u8; 4][..]));
    assert_eq!(
        (read[4].key_str(), read[4].value.as_ref()),
        (Some("gone"), None)
    );
    assert_eq!(
        (read[5].key_str(), read[5].value_str()),
        (Some("static"), Some("s"))
    );
}

#[test]
fn topic_and_partition_arguments_take_what_callers_hold() {
    let (_dir, log) = log_with(&["a", "b"]);
    for t in ["a", "b"] {
        for p in 0..2 {
            log.partition(t, p)
                .unwrap()
                .append(&[Record::new("x")])
                .unwrap();
        }
    }
    let topics: Vec<String> = vec!["a".into(), "b".into()];
    let mut owned = log.consumer(ConsumerConfig::new("g1")).unwrap();
    owned.subscribe(&topics).unwrap();
    assert_eq!(owned.subscription(), topics);
    let shared: Vec<Arc<str>> = vec![Arc::from("a")];
    let mut other = log.consumer(ConsumerConfig::new("g2")).unwrap();
    other.subscribe(&shared).unwrap();
    assert_eq!(other.subscription(), ["a"]);
    // An unknown topic in any form is still refused.
    let bad = vec![String::from("missing")];
    assert!(matches!(
        other.subscribe(&bad),
        Err(Error::UnknownTopic { .. })
    ));

    let mut reader = log.consumer(ConsumerConfig::default()).unwrap();
    reader.assign(&[("a", 0), ("a", 1)]).unwrap();
    reader.pause(&[("a", 1)]).unwrap();
    assert_eq!(reader.paused(), [TopicPartition::new("a", 1)]);
    let got = reader.poll(Duration::from_secs(5)).unwrap();
    assert_eq!(got.iter().map(|r| r.partition).collect::<Vec<_>>(), [0]);
    reader.resume(&[TopicPartition::new("a", 1)]).unwrap();
    reader.seek_to_beginning(&[("a", 0)]).unwrap();
    assert_eq!(reader.position("a", 0).unwrap(), 0);
    reader.seek_to_end(&[(String::from("a"), 0)]).unwrap();
    assert_eq!(reader.position("a", 0).unwrap(), 1);
    // A partition not assigned, given as a tuple, is named in the error.
    match reader.pause(&[("b", 0)]) {
        Err(Error::NotAssigned { topic, partition }) => assert_eq!((&*topic, partition), ("b", 0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_consumer_without_a_group_assigns_and_seeks_but_cannot_join_or_commit() {
    let (_dir, log) = log_with(&["t"]);
    log.partition("t", 0)
        .unwrap()
        .append(&[Record::new("x")])
        .unwrap();
    let mut c = log.consumer(ConsumerConfig::default()).unwrap();
    assert_eq!(c.config().group_id, None);
    c.assign(&[("t", 0)]).unwrap();
    assert_eq!(c.poll(Duration::from_secs(5)).unwrap().len(), 1);
    assert_eq!(c.committed("t", 0).unwrap(), None);
    assert_eq!(c.lag().unwrap()[0].committed, None);
    let commit = c.commit().unwrap_err();
    // (Subscribing over a manual assignment is another error: unassign first.)
    c.assign::<TopicPartition>(&[]).unwrap();
    let subscribe = c.subscribe(&["t"]).unwrap_err();
    for err in [commit, subscribe] {
        match err {
            Error::InvalidArgument(msg) => assert!(msg.contains("group id"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
    // Without a group there is no committed offset: `Error` reset says so.
    let mut strict = log
        .consumer(ConsumerConfig::default().auto_offset_reset(AutoOffsetReset::Error))
        .unwrap();
    strict.assign(&[("t", 1)]).unwrap();
    let err = strict.poll(Duration::from_millis(1)).unwrap_err();
    assert!(
        matches!(&err, Error::NoCommittedOffset { group: None, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("a consumer without a group"),
        "{err}"
    );
    // And once seeked it reads.
    strict.seek("t", 1, 0).unwrap();
    assert!(strict.poll(Duration::from_millis(1)).unwrap().is_empty());
    // A group id set later by the builder method joins as `new` does.
    let mut member = log
        .consumer(ConsumerConfig::default().group_id("late"))
        .unwrap();
    member.subscribe(&["t"]).unwrap();
}

#[test]
fn an_offset_is_none_only_when_it_is_not_known() {
    let (_dir, log) = log_with(&["t"]);
    let written = log
        .producer(ProducerConfig::default().durability(Durability::Written))
        .unwrap();
    let meta = written
        .send_to("t", 1, Record::new("a"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!((meta.partition, meta.offset), (1, Some(0)));
    let fire_and_forget = log
        .producer(ProducerConfig::default().durability(Durability::None))
        .unwrap();
    let meta = fire_and_forget
        .send_to("t", 1, Record::new("b"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!((meta.partition, meta.offset), (1, None));
    fire_and_forget.flush().unwrap();
    assert_eq!(log.partition("t", 1).unwrap().high_watermark(), 2);
}
