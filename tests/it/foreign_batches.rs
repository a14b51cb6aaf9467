//! Batches built outside the log (`Partition::append_batch`, e.g. mirrored from Kafka) next to
//! the log's own idempotent producers: a foreign producer id never makes a local producer's
//! record look like a retry, a batch that merely reuses a remembered sequence range is not
//! acknowledged as a duplicate, and control or transactional batches are refused.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use annals::format::{BatchBuilder, BatchOptions};
use annals::storage::SimStorage;
use annals::{Error, Log, Partition, ProducerConfig, Record, TimestampType, TopicConfig};

const DIR: &str = "/sim/foreign";

fn sim_topic(config: TopicConfig) -> (Arc<SimStorage>, Log) {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic("t", config).unwrap();
    (sim, log)
}

/// A batch of `values` with the given producer id, epoch 0 and base sequence `seq`.
fn batch_with(options: BatchOptions, values: &[&str]) -> Vec<u8> {
    let mut b = BatchBuilder::new(options);
    for (i, v) in values.iter().enumerate() {
        b.push(&Record::new(v.to_string()), 1_700_000_000_000 + i as i64)
            .unwrap();
    }
    let mut out = Vec::new();
    b.finish_into(&mut out).unwrap();
    out
}

fn idempotent(pid: i64, seq: i32, values: &[&str]) -> Vec<u8> {
    batch_with(
        BatchOptions {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
            ..BatchOptions::default()
        },
        values,
    )
}

fn value_at(p: &Partition, offset: u64) -> Option<String> {
    read_partition(p)
        .into_iter()
        .find(|r| r.offset == offset)
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
}

fn values(p: &Partition) -> Vec<String> {
    read_partition(p)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

fn local_producer(log: &Log) -> annals::Producer {
    log.producer(ProducerConfig::default().linger(Duration::ZERO))
        .unwrap()
}

/// Sends one record from a fresh local idempotent producer and checks it is stored at the
/// offset it was acknowledged with.
#[track_caller]
fn assert_local_send_lands(log: &Log, p: &Partition, value: &str) {
    let producer = local_producer(log);
    let meta = producer
        .send_to("t", 0, Record::new(value.to_string()))
        .unwrap()
        .wait()
        .unwrap_or_else(|e| panic!("local send of {value:?} failed: {e}"));
    assert_eq!(
        value_at(p, meta.offset.unwrap()).as_deref(),
        Some(value),
        "the local producer's record was acknowledged at offset {} but is not there: {:?}",
        meta.offset.unwrap(),
        values(p)
    );
    producer.close().unwrap();
}

/// The producer id the log's allocator hands out next, as far as a caller can tell: one past
/// the id of a producer started just now.
fn next_producer_id(log: &Log) -> i64 {
    let probe = local_producer(log);
    let (id, _) = probe.producer_id().unwrap();
    probe.close().unwrap();
    id + 1
}

#[test]
fn a_foreign_one_record_batch_with_the_next_producer_id_does_not_swallow_a_local_send() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    let next = next_producer_id(&log);
    // Refusing the forged batch is as good as keeping it apart: either way it must not
    // collide with the local producer that gets `next`.
    let _ = p.append_batch(&idempotent(next, 0, &["forged"]));
    assert_local_send_lands(&log, &p, "local");
}

#[test]
fn a_foreign_two_record_batch_with_the_next_producer_id_does_not_fail_a_local_send() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    let next = next_producer_id(&log);
    let _ = p.append_batch(&idempotent(next, 0, &["forged-1", "forged-2"]));
    assert_local_send_lands(&log, &p, "local");
}

#[test]
fn foreign_producer_ids_from_zero_up_never_meet_the_logs_own() {
    // A Kafka cluster hands out producer ids from 0 up, as a fresh log did; mirrored batches
    // carry them. Appended before and after local producers start, over a restart too.
    let (sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    for pid in 0..3 {
        p.append_batch(&idempotent(pid, 0, &[&format!("kafka-{pid}")]))
            .unwrap();
    }
    assert_local_send_lands(&log, &p, "local-1");
    for pid in 3..6 {
        p.append_batch(&idempotent(pid, 0, &[&format!("kafka-{pid}")]))
            .unwrap();
    }
    assert_local_send_lands(&log, &p, "local-2");
    log.close().unwrap();
    let log = TestLog::sim(&sim, DIR).open();
    let p = log.partition("t", 0).unwrap();
    for pid in 0..8 {
        p.append_batch(&idempotent(pid, 0, &[&format!("kafka-{pid}")]))
            .ok();
    }
    assert_local_send_lands(&log, &p, "local-3");
    let all = values(&p);
    for v in [
        "local-1", "local-2", "local-3", "kafka-0", "kafka-5", "kafka-7",
    ] {
        assert!(all.iter().any(|x| x == v), "{v} missing from {all:?}");
    }
}

#[test]
fn a_batch_in_the_logs_own_producer_id_range_is_refused() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    let local = local_producer(&log);
    let (id, _) = local.producer_id().unwrap();
    for pid in [id, id + 1, i64::MAX] {
        match p.append_batch(&idempotent(pid, 0, &["forged"])) {
            Err(Error::InvalidBatch { reason }) => {
                assert!(reason.contains("producer id"), "{reason}")
            }
            other => panic!("producer id {pid}: {other:?}"),
        }
    }
    assert_eq!(p.high_watermark(), 0);
    local.close().unwrap();
}

#[test]
fn malformed_producer_fields_are_refused() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    for (pid, epoch, seq) in [(-2, -1, -1), (5, -1, 0), (5, 0, -1), (i64::MIN, 0, 0)] {
        let b = batch_with(
            BatchOptions {
                producer_id: pid,
                producer_epoch: epoch,
                base_sequence: seq,
                ..BatchOptions::default()
            },
            &["x"],
        );
        match p.append_batch(&b) {
            Err(Error::InvalidBatch { reason }) => {
                assert!(reason.contains("producer id"), "{reason}")
            }
            other => panic!("producer {pid} epoch {epoch} sequence {seq}: {other:?}"),
        }
    }
    assert_eq!(p.high_watermark(), 0);
}

#[test]
fn a_different_batch_reusing_a_remembered_sequence_range_is_not_a_retry() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    let first = idempotent(7, 0, &["a"]);
    assert_eq!(p.append_batch(&first).unwrap(), 0);
    // Same producer, epoch and sequence range, other content: not what the producer sent
    // before, so it must not be acknowledged as already written.
    match p.append_batch(&idempotent(7, 0, &["b"])) {
        Err(Error::OutOfOrderSequence { .. }) | Err(Error::InvalidBatch { .. }) => {}
        other => panic!("a different batch was treated as a retry: {other:?}"),
    }
    // The real retry still is one.
    assert_eq!(p.append_batch(&first).unwrap(), 0);
    assert_eq!(values(&p), ["a"]);
}

#[test]
fn a_retry_is_still_recognised_on_a_log_append_time_topic() {
    // The stored batch carries the append time (and so another CRC) than the one retried.
    let (sim, log) =
        sim_topic(TopicConfig::default().message_timestamp_type(TimestampType::LogAppendTime));
    let p = log.partition("t", 0).unwrap();
    let b = idempotent(9, 0, &["x", "y"]);
    assert_eq!(p.append_batch(&b).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(p.append_batch(&b).unwrap(), 0);
    log.close().unwrap();
    let log = TestLog::sim(&sim, DIR).open();
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.append_batch(&b).unwrap(), 0, "after a restart");
    assert_eq!(values(&p), ["x", "y"]);
}

#[test]
fn control_and_transactional_batches_are_refused() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    let control = batch_with(
        BatchOptions {
            producer_id: 3,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
            control: true,
            ..BatchOptions::default()
        },
        &["marker"],
    );
    let transactional = batch_with(
        BatchOptions {
            producer_id: 4,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
            ..BatchOptions::default()
        },
        &["in-a-transaction"],
    );
    let control_only = batch_with(
        BatchOptions {
            control: true,
            ..BatchOptions::default()
        },
        &["marker"],
    );
    for (what, b, word) in [
        ("control", &control, "control"),
        ("control without producer", &control_only, "control"),
        ("transactional", &transactional, "transaction"),
    ] {
        match p.append_batch(b) {
            Err(Error::InvalidBatch { reason }) => {
                assert!(reason.contains(word), "{what}: {reason}")
            }
            other => panic!("{what} batch: {other:?}"),
        }
    }
    assert_eq!(p.high_watermark(), 0);
    assert!(values(&p).is_empty());
}

#[test]
fn a_batch_a_power_loss_took_is_written_again_even_after_a_retention_checkpoint() {
    // Retention (and compaction) rewrite the checkpoint with the producer states as of now but
    // the recovery point of the last roll: the states then remember a batch not yet synced.
    let (sim, log) = sim_topic(TopicConfig::default().segment_bytes(1024));
    let p = log.partition("t", 0).unwrap();
    for i in 0..40 {
        p.append(&[Record::new(format!("filler-{i:0>40}"))])
            .unwrap();
    }
    assert!(p.segment_count() > 2);
    p.sync().unwrap();
    let b = idempotent(11, 0, &["unsynced"]);
    let offset = p.append_batch(&b).unwrap();
    let segments = p.segment_count();
    p.delete_records(20).unwrap();
    assert!(
        p.segment_count() < segments,
        "no segment deleted: no checkpoint written"
    );
    crash(&sim, log, annals::storage::CrashMode::PowerLossDropUnsynced);
    let log = TestLog::sim(&sim, DIR).open();
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.high_watermark(), offset, "the power loss took the batch");
    // Its retry must write it, not acknowledge a batch that is no longer there.
    assert_eq!(p.append_batch(&b).unwrap(), offset);
    assert_eq!(value_at(&p, offset).as_deref(), Some("unsynced"));
}

/// Replaces the producer section of a partition's checkpoint with `section`, as an earlier
/// annals (whose producer section had no version and no CRCs) would have written it.
fn replace_producer_section(sim: &SimStorage, dir: &std::path::Path, section: &[u8]) {
    let path = dir.join("partition.ckpt");
    let bytes = sim.read_file(&path).unwrap();
    let payload = &bytes[12..bytes.len() - 4];
    let sealed = u32::from_be_bytes(payload[16..20].try_into().unwrap()) as usize;
    let mut new_payload = payload[..20 + 48 * sealed].to_vec();
    new_payload.extend_from_slice(&(section.len() as u32).to_be_bytes());
    new_payload.extend_from_slice(section);
    let mut file = bytes[..8].to_vec();
    file.extend_from_slice(&(new_payload.len() as u32).to_be_bytes());
    file.extend_from_slice(&new_payload);
    let crc = crc32c::crc32c(&file);
    file.extend_from_slice(&crc.to_be_bytes());
    sim.write_file(&path, &file);
}

#[test]
fn after_an_upgrade_a_different_batch_under_a_remembered_range_is_still_no_retry() {
    let (sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    let a = idempotent(21, 0, &["a"]);
    assert_eq!(p.append_batch(&a).unwrap(), 0);
    let dir = p.dir().to_path_buf();
    log.close().unwrap();
    // The version-1 producer section: count, then id, epoch, batch count, and per batch the
    // sequence range, offsets and timestamp (big-endian).
    let mut v1 = Vec::new();
    v1.extend_from_slice(&1u32.to_be_bytes());
    v1.extend_from_slice(&21i64.to_be_bytes());
    v1.extend_from_slice(&0u16.to_be_bytes());
    v1.extend_from_slice(&1u16.to_be_bytes());
    v1.extend_from_slice(&0u32.to_be_bytes());
    v1.extend_from_slice(&0u32.to_be_bytes());
    v1.extend_from_slice(&0u64.to_be_bytes());
    v1.extend_from_slice(&0u64.to_be_bytes());
    v1.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    replace_producer_section(&sim, &dir, &v1);
    let log = TestLog::sim(&sim, DIR).open();
    let p = log.partition("t", 0).unwrap();
    match p.append_batch(&idempotent(21, 0, &["b"])) {
        Err(Error::OutOfOrderSequence { .. }) => {}
        other => panic!("a different batch was treated as a retry after the upgrade: {other:?}"),
    }
    assert_eq!(p.append_batch(&a).unwrap(), 0, "the real retry");
    assert_eq!(values(&p), ["a"]);
}
