//! Bad input and misuse: every documented error variant, and that a refused call changes
//! nothing.

use crate::common;

use std::path::Path;
use std::time::Duration;

use annals::format::{BatchBuilder, BatchOptions, HEADER_LEN};
use annals::storage::SimStorage;
use annals::{
    Compression, Error, Log, Partition, Record, TimestampType, TopicConfig, MAX_TOPIC_NAME_LEN,
};
use common::*;

const DIR: &str = "/sim/log";

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn sim_log() -> (std::sync::Arc<SimStorage>, Log) {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    (sim, log)
}

fn small_topic(log: &Log, name: &str) -> Partition {
    log.create_topic(name, TopicConfig::default().segment_index_bytes(1024))
        .unwrap();
    log.partition(name, 0).unwrap()
}

#[test]
fn invalid_topic_names_are_refused_without_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let before = dir_entries(dir.path());
    let long = "a".repeat(MAX_TOPIC_NAME_LEN + 1);
    let bad = [
        "",
        ".",
        "..",
        "a/b",
        "a\0b",
        &long,
        "naïve",
        "emoji😀",
        "with space",
        "a\\b",
        "../x",
        "/abs",
        "tab\t",
        "new\nline",
        "a:b",
        "a*b",
    ];
    for name in bad {
        match log.create_topic(name, TopicConfig::default()) {
            Err(Error::InvalidTopicName { name: got, reason }) => {
                assert_eq!(got, name);
                assert!(!reason.is_empty());
            }
            other => panic!("create_topic({name:?}): {other:?}"),
        }
        assert!(
            matches!(log.partition(name, 0), Err(Error::UnknownTopic { .. })),
            "{name:?}"
        );
        assert!(
            matches!(log.delete_topic(name), Err(Error::UnknownTopic { .. })),
            "{name:?}"
        );
        assert!(matches!(
            annals::validate_topic_name(name),
            Err(Error::InvalidTopicName { .. })
        ));
    }
    assert_eq!(
        dir_entries(dir.path()),
        before,
        "an invalid name created something"
    );
    assert!(log.topics().is_empty());
    // The longest legal name and Kafka's odd-but-legal names work.
    for good in [
        "a".repeat(MAX_TOPIC_NAME_LEN),
        "...".into(),
        "-".into(),
        "_x.Y-9".into(),
    ] {
        log.create_topic(&good, TopicConfig::default().segment_index_bytes(1024))
            .unwrap_or_else(|e| panic!("{good:?}: {e}"));
        log.partition(&good, 0)
            .unwrap()
            .append(&[Record::new("v")])
            .unwrap();
    }
    log.close().unwrap();
    let log = Log::open(dir.path()).unwrap();
    assert_eq!(log.topics().len(), 4);
}

#[test]
fn existing_unknown_topics_and_partitions() {
    let (_sim, log) = sim_log();
    log.create_topic(
        "t",
        TopicConfig::default()
            .partitions(3)
            .segment_index_bytes(1024),
    )
    .unwrap();
    match log.create_topic("t", TopicConfig::default()) {
        Err(Error::TopicExists { topic }) => assert_eq!(topic, "t"),
        other => panic!("{other:?}"),
    }
    // Even with a different configuration, and the original is untouched.
    assert!(matches!(
        log.create_topic("t", TopicConfig::default().partitions(1)),
        Err(Error::TopicExists { .. })
    ));
    assert_eq!(log.topic_config("t").unwrap().partitions, 3);
    match log.partition("nope", 0) {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "nope"),
        other => panic!("{other:?}"),
    }
    match log.partition("t", 3) {
        Err(Error::UnknownPartition {
            topic,
            partition,
            partitions,
        }) => assert_eq!((topic.as_str(), partition, partitions), ("t", 3, 3)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        log.partition("t", u32::MAX),
        Err(Error::UnknownPartition { .. })
    ));
    assert!(matches!(
        log.topic_config("nope"),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        log.delete_topic("nope"),
        Err(Error::UnknownTopic { .. })
    ));
    // After a reopen too.
    log.close().unwrap();
    let log = TestLog::sim(&_sim, DIR).open();
    assert!(matches!(
        log.create_topic("t", TopicConfig::default()),
        Err(Error::TopicExists { .. })
    ));
    assert!(matches!(
        log.partition("t", 3),
        Err(Error::UnknownPartition { .. })
    ));
}

#[test]
fn invalid_appends_change_nothing() {
    let (sim, log) = sim_log();
    log.create_topic(
        "t",
        TopicConfig::default()
            .max_message_bytes(1000)
            .segment_index_bytes(1024),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&simple_records(0, 3)).unwrap();
    let model = model_of(&simple_records(0, 3));
    let log_path = p.dir().join(format!("{:020}.log", 0));
    let size = sim.read_file(&log_path).unwrap().len();
    let unchanged = |what: &str| {
        assert_eq!(p.high_watermark(), 3, "{what}: hw");
        assert_eq!(
            sim.read_file(&log_path).unwrap().len(),
            size,
            "{what}: file size"
        );
        assert_partition_matches(&p, &model, what);
    };

    assert!(matches!(p.append(&[]), Err(Error::InvalidArgument(_))));
    unchanged("empty append");

    match p.append(&[Record::new(vec![0u8; 2000])]) {
        Err(Error::RecordTooLarge { size, max }) => {
            assert_eq!(max, 1000);
            assert!(size > 2000, "size {size} is the encoded batch");
        }
        other => panic!("one record over max_message_bytes: {other:?}"),
    }
    unchanged("record too large");

    let many: Vec<Record> = (0..20).map(|_| Record::new(vec![1u8; 100])).collect();
    match p.append(&many) {
        Err(Error::BatchTooLarge { size, max }) => {
            assert_eq!(max, 1000);
            assert!(size > 2000);
        }
        other => panic!("many records over max_message_bytes: {other:?}"),
    }
    unchanged("batch too large");

    // Just under and just over the limit, with compression off: the limit is the batch size.
    let mut n = 0;
    while p.append(&[Record::new(vec![2u8; n])]).is_ok() {
        n += 1;
        assert!(n < 1000);
    }
    let hw = p.high_watermark();
    assert!(n > 800, "limit hit at a {n}-byte value");
    match p.append(&[Record::new(vec![2u8; n])]) {
        Err(Error::RecordTooLarge { size, max }) => assert_eq!((size, max), (1001, 1000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.high_watermark(), hw);

    for bad in [-1i64, i64::MIN] {
        let batch = vec![
            Record::new("ok").timestamp(5),
            Record::new("bad").timestamp(bad),
        ];
        match p.append(&batch) {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains("negative"), "{msg}"),
            other => panic!("negative timestamp {bad}: {other:?}"),
        }
        assert_eq!(p.high_watermark(), hw, "negative timestamp wrote something");
    }
}

#[test]
fn reads_outside_the_log() {
    let (_sim, log) = sim_log();
    let p = small_topic(&log, "t");
    // An empty partition: reading at 0 (the high watermark) is empty, above is out of range.
    assert!(p.read(0, 1 << 20).unwrap().is_empty());
    match p.read(1, 1 << 20) {
        Err(Error::OffsetOutOfRange {
            requested,
            earliest,
            latest,
        }) => assert_eq!((requested, earliest, latest), (1, 0, 0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.offset_for_timestamp(0).unwrap(), None);
    p.append(&simple_records(0, 5)).unwrap();
    assert!(
        p.read(5, 1 << 20).unwrap().is_empty(),
        "read at the high watermark"
    );
    assert!(p.read(5, 0).unwrap().is_empty());
    assert_eq!(p.read(0, usize::MAX).unwrap().len(), 5);
    assert_eq!(p.read(0, 0).unwrap().len(), 5, "at least one batch");
    let mut out = simple_records(0, 0)
        .iter()
        .map(|_| unreachable!())
        .collect::<Vec<_>>();
    p.read_into(5, 1 << 20, &mut out).unwrap();
    assert!(out.is_empty());
    for requested in [6, 7, 1000, u64::MAX] {
        match p.read(requested, 1 << 20) {
            Err(Error::OffsetOutOfRange {
                requested: r,
                earliest,
                latest,
            }) => assert_eq!((r, earliest, latest), (requested, 0, 5)),
            other => panic!("read({requested}): {other:?}"),
        }
    }
    // read_into leaves `out` alone on error and appends on success.
    let mut out = p.read(0, 1).unwrap();
    let before = out.len();
    assert!(p.read_into(99, 1 << 20, &mut out).is_err());
    assert_eq!(out.len(), before);
    p.read_into(before as u64, 1 << 20, &mut out).unwrap();
    assert_eq!(out.len(), 5);
}

/// Rewrites the log start offset in a `partition.ckpt` written by annals (docs/FORMAT.md:
/// a 12-byte envelope head, then recovery point u64 and log start offset u64, all big-endian,
/// and a CRC-32C of everything before it at the end).
fn with_log_start(mut ckpt: Vec<u8>, log_start_offset: u64) -> Vec<u8> {
    assert_eq!(&ckpt[..4], b"ANPC", "not a checkpoint");
    ckpt[20..28].copy_from_slice(&log_start_offset.to_be_bytes());
    let body = ckpt.len() - 4;
    let crc = crc32c::crc32c(&ckpt[..body]);
    ckpt[body..].copy_from_slice(&crc.to_be_bytes());
    ckpt
}

/// Reads below the log start offset. Nothing in the API moves the log start yet (retention is
/// not built), so the checkpoint that records it is edited by hand.
#[test]
fn reads_below_the_log_start() {
    let (sim, log) = sim_log();
    let p = small_topic(&log, "t");
    p.append(&simple_records(0, 10)).unwrap();
    let ckpt = p.dir().join("partition.ckpt");
    drop(p);
    log.close().unwrap();
    let original = sim.read_file(&ckpt).expect("a checkpoint after close");
    sim.write_file(&ckpt, &with_log_start(original, 4));
    sim.write_file(Path::new(DIR).join(".clean-shutdown"), b"");
    let log = TestLog::sim(&sim, DIR).open();
    let p = log.partition("t", 0).unwrap();
    assert_eq!(
        p.log_start_offset(),
        4,
        "the hand-written checkpoint was not honoured"
    );
    for requested in [0, 3] {
        match p.read(requested, 1 << 20) {
            Err(Error::OffsetOutOfRange {
                requested: r,
                earliest,
                latest,
            }) => assert_eq!((r, earliest, latest), (requested, 4, 10)),
            other => panic!("read({requested}) below the log start: {other:?}"),
        }
    }
    let got = p.read(4, 1 << 20).unwrap();
    assert_eq!(got[0].offset, 4);
    assert_eq!(got.len(), 6);
    assert_eq!(
        p.offset_for_timestamp(0).unwrap(),
        Some(4),
        "time lookups start at the log start"
    );
}

#[test]
fn second_open_of_a_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    match Log::open(dir.path()) {
        Err(Error::Locked { dir: d }) => assert_eq!(d, dir.path()),
        other => panic!("second open: {other:?}"),
    }
    // A clone is the same log, not a second lock holder.
    let clone = log.clone();
    log.close().unwrap();
    assert!(matches!(
        clone.create_topic("x", TopicConfig::default()),
        Err(Error::Closed)
    ));
    let log = Log::open(dir.path()).expect("open after close");
    assert!(matches!(Log::open(dir.path()), Err(Error::Locked { .. })));
    drop(clone);
    drop(log);
    let log = Log::open(dir.path()).expect("open after drop");
    drop(log);

    // The same with SimStorage.
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    assert!(matches!(
        TestLog::sim(&sim, DIR).try_open(),
        Err(Error::Locked { .. })
    ));
    drop(log);
    let log = TestLog::sim(&sim, DIR).open();
    assert!(matches!(
        TestLog::sim(&sim, DIR).try_open(),
        Err(Error::Locked { .. })
    ));
    log.close().unwrap();
    TestLog::sim(&sim, DIR).open();
}

fn assert_closed<T: std::fmt::Debug>(r: annals::Result<T>, what: &str) {
    assert!(matches!(r, Err(Error::Closed)), "{what}: {r:?}");
}

fn assert_all_closed(p: &Partition, ctx: &str) {
    assert_closed(p.append(&[Record::new("v")]), &format!("{ctx}: append"));
    assert_closed(
        p.append_batch(&valid_batch(1)),
        &format!("{ctx}: append_batch"),
    );
    assert_closed(p.read(0, 100), &format!("{ctx}: read"));
    let mut out = Vec::new();
    assert_closed(p.read_into(0, 100, &mut out), &format!("{ctx}: read_into"));
    assert_closed(
        p.offset_for_timestamp(0),
        &format!("{ctx}: offset_for_timestamp"),
    );
    assert_closed(p.sync(), &format!("{ctx}: sync"));
    assert_closed(p.flush(), &format!("{ctx}: flush"));
}

#[test]
fn handles_are_closed_after_close_and_delete() {
    let (sim, log) = sim_log();
    let p = small_topic(&log, "t");
    let q = small_topic(&log, "u");
    p.append(&simple_records(0, 2)).unwrap();
    q.append(&simple_records(0, 2)).unwrap();

    log.delete_topic("t").unwrap();
    assert_all_closed(&p, "after delete_topic");
    assert!(matches!(
        log.partition("t", 0),
        Err(Error::UnknownTopic { .. })
    ));
    // The other topic is untouched; the name can be reused and starts empty.
    q.append(&simple_records(2, 1)).unwrap();
    let p2 = small_topic(&log, "t");
    assert_eq!(p2.high_watermark(), 0);
    assert_all_closed(&p, "old handle after re-create");
    p2.append(&simple_records(0, 1)).unwrap();

    log.close().unwrap();
    assert_all_closed(&q, "after close");
    assert_all_closed(&p2, "after close");
    assert_closed(
        log.create_topic("v", TopicConfig::default()),
        "create_topic after close",
    );
    assert_closed(log.partition("u", 0), "partition after close");
    assert_closed(log.delete_topic("u"), "delete_topic after close");
    assert_closed(log.topic_config("u"), "topic_config after close");
    assert_closed(log.sync(), "sync after close");
    log.close().expect("a second close does nothing");

    let log = TestLog::sim(&sim, DIR).open();
    assert_eq!(log.topics(), vec!["t".to_string(), "u".to_string()]);
    assert_eq!(log.partition("t", 0).unwrap().high_watermark(), 1);
    let u = log.partition("u", 0).unwrap();
    assert_eq!(u.high_watermark(), 3);
    // Dropping the last `Log` clone closes it too; handles outlive it but are closed.
    drop(log);
    assert_all_closed(&u, "after the last Log was dropped");
    let log = TestLog::sim(&sim, DIR)
        .try_open()
        .expect("the drop released the lock");
    assert_eq!(log.partition("u", 0).unwrap().high_watermark(), 3);
}

#[test]
fn invalid_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let before = dir_entries(dir.path());
    let d = TopicConfig::default;
    let bad: Vec<(&str, TopicConfig)> = vec![
        ("partitions", d().partitions(0)),
        ("partitions", d().partitions(10_001)),
        ("segment_bytes", d().segment_bytes(1023)),
        ("segment_bytes", d().segment_bytes(1 << 31)),
        ("segment_bytes", d().segment_bytes(u64::MAX)),
        ("segment_ms", d().segment_ms(Duration::ZERO)),
        ("segment_index_bytes", d().segment_index_bytes(1023)),
        (
            "segment_index_bytes",
            d().segment_index_bytes((1 << 30) + 1),
        ),
        (
            "index_interval_bytes",
            d().index_interval_bytes((16 << 20) + 1),
        ),
        ("max_message_bytes", d().max_message_bytes(127)),
        ("max_message_bytes", d().max_message_bytes((512 << 20) + 1)),
        (
            "compression",
            d().compression(Compression::Zstd { level: 0 }),
        ),
        (
            "compression",
            d().compression(Compression::Zstd { level: 23 }),
        ),
        (
            "compression",
            d().compression(Compression::Zstd { level: -1 }),
        ),
        ("retention_ms", d().retention_ms(Duration::ZERO)),
        ("retention_bytes", d().retention_bytes(0)),
    ];
    for (field, config) in bad {
        match log.create_topic("t", config.clone()) {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field, "{config:?}"),
            other => panic!("{config:?}: {other:?}"),
        }
        assert!(config.validate().is_err());
    }
    assert!(log.topics().is_empty());
    assert_eq!(
        dir_entries(dir.path()),
        before,
        "a refused config created something"
    );
    // The bounds themselves are accepted.
    let edge = d()
        .partitions(2)
        .segment_bytes(1024)
        .segment_index_bytes(1024)
        .index_interval_bytes(0)
        .max_message_bytes(128)
        .compression(Compression::Zstd { level: 22 })
        .segment_ms(Duration::from_millis(1));
    log.create_topic("t", edge.clone()).unwrap();
    assert_eq!(log.topic_config("t").unwrap(), edge);
}

fn valid_batch(records: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(BatchOptions::default());
    for r in simple_records(0, records as u64) {
        b.push(&r, r.timestamp.unwrap()).unwrap();
    }
    let mut out = Vec::new();
    b.finish_into(&mut out).unwrap();
    out
}

/// Recomputes the CRC-32C of a batch after an edit (it covers bytes 21.. of the batch).
fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn append_batch_refuses_malformed_batches() {
    let (sim, log) = sim_log();
    log.create_topic(
        "t",
        TopicConfig::default()
            .max_message_bytes(4000)
            .segment_index_bytes(1024),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.append_batch(&valid_batch(3)).unwrap(), 0);
    let log_path = p.dir().join(format!("{:020}.log", 0));
    let size = sim.read_file(&log_path).unwrap().len();
    let good = valid_batch(4);
    let mut rng = Rng::new(base_seed());

    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("10 bytes".into(), vec![0; 10]),
        ("a zeroed header".into(), vec![0; HEADER_LEN]),
        (
            "random garbage".into(),
            (0..200).map(|_| rng.next_u64() as u8).collect(),
        ),
        ("two batches".into(), [good.clone(), good.clone()].concat()),
        ("one trailing byte".into(), [good.clone(), vec![0]].concat()),
    ];
    for len in (0..good.len()).step_by(3) {
        cases.push((format!("cut to {len}"), good[..len].to_vec()));
    }
    cases.push(("cut by one".into(), good[..good.len() - 1].to_vec()));
    for pos in [21, 30, HEADER_LEN, good.len() / 2, good.len() - 1] {
        let mut b = good.clone();
        b[pos] ^= 0x20;
        cases.push((format!("byte {pos} flipped (bad CRC)"), b));
    }
    let mut b = good.clone();
    b[16] = 1; // magic
    cases.push(("magic 1".into(), b));
    let mut b = good.clone();
    b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    cases.push(("negative length".into(), b));
    let mut b = good.clone();
    b[8..12].copy_from_slice(&(i32::MAX).to_be_bytes());
    cases.push(("huge length".into(), b));
    let mut b = good.clone();
    b[57..61].copy_from_slice(&7u32.to_be_bytes()); // record count, CRC fixed up
    fix_crc(&mut b);
    cases.push(("record count 7 for 4 records".into(), b));
    let mut b = good.clone();
    b[23..27].copy_from_slice(&9u32.to_be_bytes()); // last offset delta
    fix_crc(&mut b);
    cases.push(("last offset delta 9 for 4 records".into(), b));
    for codec in [1u8, 2, 5, 6, 7] {
        let mut b = good.clone();
        b[22] = (b[22] & !7) | codec;
        fix_crc(&mut b);
        cases.push((format!("codec {codec}"), b));
    }
    let mut b = good.clone();
    b[22] |= 4; // says zstd, holds plain records
    fix_crc(&mut b);
    cases.push(("zstd flag on plain records".into(), b));

    for (what, bytes) in &cases {
        match p.append_batch(bytes) {
            Err(Error::InvalidBatch { .. }) | Err(Error::UnsupportedCompression { .. }) => {}
            Err(Error::RecordTooLarge { .. }) | Err(Error::BatchTooLarge { .. })
                if what == "huge length" => {}
            other => panic!("append_batch({what}): {other:?}"),
        }
        assert_eq!(p.high_watermark(), 3, "{what}: hw moved");
        assert_eq!(
            sim.read_file(&log_path).unwrap().len(),
            size,
            "{what}: bytes written"
        );
    }

    // Too large for the topic.
    let big: Vec<Record> = (0..10).map(|_| Record::new(vec![3u8; 500])).collect();
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for r in &big {
        builder.push(r, 1).unwrap();
    }
    let mut out = Vec::new();
    builder.finish_into(&mut out).unwrap();
    assert!(matches!(
        p.append_batch(&out),
        Err(Error::BatchTooLarge { max: 4000, .. })
    ));
    assert_eq!(p.high_watermark(), 3);

    // A valid batch with any base offset is appended at the high watermark.
    let mut b = good.clone();
    b[..8].copy_from_slice(&12345u64.to_be_bytes());
    assert_eq!(p.append_batch(&b).unwrap(), 3);
    let got = p.read(3, 1 << 20).unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].offset, 3);
    assert_eq!(p.high_watermark(), 7);
}

/// `append` refuses negative timestamps; a pre-encoded batch carrying them should be refused
/// the same way rather than stored.
#[test]
fn append_batch_refuses_negative_timestamps() {
    let (_sim, log) = sim_log();
    let p = small_topic(&log, "t");
    let mut b = valid_batch(2);
    b[27..35].copy_from_slice(&(-1000i64).to_be_bytes()); // base timestamp
    b[35..43].copy_from_slice(&(-990i64).to_be_bytes()); // max timestamp
    fix_crc(&mut b);
    let r = p.append_batch(&b);
    assert!(
        matches!(
            r,
            Err(Error::InvalidBatch { .. }) | Err(Error::InvalidArgument(_))
        ),
        "a batch with negative timestamps was accepted: {r:?}, records {:?}",
        p.read(0, 1 << 20)
            .map(|v| v.iter().map(|r| r.timestamp).collect::<Vec<_>>())
    );
    assert_eq!(p.high_watermark(), 0);
}

/// On a LogAppendTime topic, a pre-encoded batch is stamped with the append time.
#[test]
fn append_batch_on_log_append_time_topic_is_stamped() {
    let (_sim, log) = sim_log();
    log.create_topic(
        "t",
        TopicConfig::default()
            .message_timestamp_type(TimestampType::LogAppendTime)
            .segment_index_bytes(1024),
    )
    .unwrap();
    let p = log.partition("t", 0).unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    p.append_batch(&valid_batch(3)).unwrap();
    let got = p.read(0, 1 << 20).unwrap();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert!(
            r.timestamp >= before,
            "timestamp {} not stamped",
            r.timestamp
        );
        assert_eq!(r.timestamp, got[0].timestamp);
    }
}

/// The header's max timestamp of a pre-encoded batch is not covered by anything but the CRC the
/// client computed. A batch that understates it must not make time lookups skip its records.
#[test]
fn append_batch_with_wrong_max_timestamp_keeps_time_lookups_right() {
    let (sim, log) = sim_log();
    let p = small_topic(&log, "t");
    p.append(&[Record::new("first").timestamp(10)]).unwrap();
    let mut b = valid_batch(3); // timestamps 1_700_000_000_000 + 0, 10, 20
    b[35..43].copy_from_slice(&11i64.to_be_bytes()); // max timestamp: 11
    fix_crc(&mut b);
    let accepted = p.append_batch(&b);
    if accepted.is_err() {
        return; // refusing an inconsistent batch is fine too
    }
    let got = p.read(1, 1 << 20).unwrap();
    let ts: Vec<i64> = got.iter().map(|r| r.timestamp).collect();
    let want = |t: i64| {
        std::iter::once(10)
            .chain(ts.iter().copied())
            .position(|x| x >= t)
            .map(|i| i as u64)
    };
    for t in [0, 10, 11, 12, ts[0], ts[1], ts[2], ts[2] + 1] {
        assert_eq!(
            p.offset_for_timestamp(t).unwrap(),
            want(t),
            "offset_for_timestamp({t}), records {ts:?}"
        );
    }
    drop(p);
    log.close().unwrap();
    let log = TestLog::sim(&sim, DIR).open();
    let p = log.partition("t", 0).unwrap();
    for t in [12, ts[2]] {
        assert_eq!(
            p.offset_for_timestamp(t).unwrap(),
            want(t),
            "after reopen: offset_for_timestamp({t})"
        );
    }
}

fn log_with_data() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let p = small_topic(&log, "t");
    p.append(&simple_records(0, 4)).unwrap();
    let part = p.dir().to_path_buf();
    drop(p);
    log.close().unwrap();
    (dir, part)
}

fn assert_opens_with_data(dir: &Path, ctx: &str) {
    let log = Log::open(dir).unwrap_or_else(|e| panic!("{ctx}: open: {e:?}"));
    assert_eq!(log.topics(), vec!["t".to_string()], "{ctx}");
    assert_partition_matches(
        &log.partition("t", 0).unwrap(),
        &model_of(&simple_records(0, 4)),
        ctx,
    );
}

/// Files annals did not write must not stop `Log::open`: junk at the top level and inside a
/// partition directory, and an index file without its `.log`.
#[test]
fn stray_files_do_not_break_open() {
    let (dir, part) = log_with_data();
    std::fs::write(dir.path().join("README.txt"), b"hello").unwrap();
    std::fs::write(part.join("notes.txt"), b"hello").unwrap();
    std::fs::write(part.join(format!("{:020}.index", 77)), [1u8; 16]).unwrap(); // no .log
    assert_opens_with_data(dir.path(), "stray files");
    assert!(dir.path().join("README.txt").exists());
}

/// A stray *file* whose name has the shape of a partition directory (`notes-1`) is not an
/// orphaned partition: open must neither fail on it nor delete it.
#[test]
fn stray_file_named_like_a_partition_does_not_break_open() {
    let (dir, _part) = log_with_data();
    std::fs::write(dir.path().join("notes-1"), b"a file, not a partition").unwrap();
    assert_opens_with_data(dir.path(), "a file named notes-1");
}

/// Opening something that is not a directory is an error, not a panic.
#[test]
fn open_on_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(Log::open(&file).is_err());
    assert!(Log::open(file.join("below")).is_err());
}
