//! Idempotent writes: partition-level deduplication of retried batches (also across crashes,
//! clean restarts and rolls), sequence and epoch checks, producer ids and stable ids with
//! fencing, and producer retries of failed writes that end with every record exactly once.
//!
//! Knobs: `ANNALS_TEST_CASES` (randomized rounds and record counts, small by default).

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use annals::format::{BatchBuilder, BatchOptions};
use annals::storage::{CrashMode, SimOpKind, SimStorage};
use annals::{Error, Log, Partition, ProducerConfig, Record, TopicConfig};

const DIR: &str = "/sim/idem";
const PID: i64 = 4242;

/// An encoded batch and the base offset it was acknowledged with.
type Sent = (Vec<u8>, u64);

/// An idempotent batch of `n` records whose values name the producer, epoch and sequence.
fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    batch_padded(pid, epoch, seq, n, 0)
}

/// Like [`batch`], each value followed by `pad` bytes of padding.
fn batch_padded(pid: i64, epoch: i16, seq: i32, n: usize, pad: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(BatchOptions {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        ..BatchOptions::default()
    });
    for i in 0..n {
        let value = format!(
            "p{pid}-e{epoch}-s{}{}",
            seq as i64 + i as i64,
            ".".repeat(pad)
        );
        b.push(&Record::new(value), 1_700_000_000_000 + i as i64)
            .unwrap();
    }
    let mut out = Vec::new();
    b.finish_into(&mut out).unwrap();
    out
}

fn values(p: &Partition) -> Vec<String> {
    read_partition(p)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

fn sim_topic(config: TopicConfig) -> (Arc<SimStorage>, Log) {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic("t", config).unwrap();
    (sim, log)
}

/// Appends batches of 3 records with sequences 0, 3, 6, ...; returns `(batch, base offset)`.
fn append_batches(p: &Partition, pid: i64, count: usize) -> Vec<Sent> {
    (0..count)
        .map(|i| {
            let b = batch_padded(pid, 0, (i * 3) as i32, 3, 60);
            let base = p.append_batch(&b).unwrap();
            (b, base)
        })
        .collect()
}

#[track_caller]
fn assert_retries_deduplicated(p: &Partition, sent: &[Sent], ctx: &str) {
    let hw = p.high_watermark();
    let before = values(p);
    for (b, base) in sent {
        assert_eq!(
            p.append_batch(b)
                .unwrap_or_else(|e| panic!("{ctx}: retry failed: {e}")),
            *base,
            "{ctx}: a retry is acknowledged with its original base offset"
        );
    }
    assert_eq!(p.high_watermark(), hw, "{ctx}: a retry wrote something");
    assert_eq!(values(p), before, "{ctx}: the log changed");
}

#[test]
fn the_same_batch_twice_is_written_once() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    // A non-idempotent record first, so the batch's offsets are not 0.
    p.append(&[Record::new("plain")]).unwrap();
    let b = batch(PID, 0, 0, 4);
    assert_eq!(p.append_batch(&b).unwrap(), 1);
    assert_eq!(p.high_watermark(), 5);
    assert_eq!(p.append_batch(&b).unwrap(), 1);
    assert_eq!(p.high_watermark(), 5);
    assert_eq!(
        values(&p),
        [
            "plain",
            "p4242-e0-s0",
            "p4242-e0-s1",
            "p4242-e0-s2",
            "p4242-e0-s3"
        ]
    );
    // Non-idempotent batches are never deduplicated.
    let plain = {
        let mut b = BatchBuilder::new(BatchOptions::default());
        b.push(&Record::new("again"), 1).unwrap();
        let mut out = Vec::new();
        b.finish_into(&mut out).unwrap();
        out
    };
    assert_eq!(p.append_batch(&plain).unwrap(), 5);
    assert_eq!(p.append_batch(&plain).unwrap(), 6);
}

#[test]
fn the_last_five_batches_are_remembered_and_older_ones_are_out_of_order() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    let sent = append_batches(&p, PID, 6);
    assert_retries_deduplicated(&p, &sent[1..], "last five");
    // The oldest of six is forgotten; its sequence is behind the producer's: out of order.
    match p.append_batch(&sent[0].0) {
        Err(Error::OutOfOrderSequence {
            producer_id: PID,
            last: 17,
            received: 0,
        }) => {}
        other => panic!("retry of the 6th-newest batch: {other:?}"),
    }
    assert_eq!(p.high_watermark(), 18);
}

#[test]
fn sequence_gaps_and_partial_overlaps_are_out_of_order() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    append_batches(&p, PID, 2); // sequences 0..=5
    for (seq, n) in [(7, 1), (6 + 100, 2), (5, 2), (4, 2), (1, 2), (0, 4)] {
        match p.append_batch(&batch(PID, 0, seq, n)) {
            Err(Error::OutOfOrderSequence {
                producer_id: PID,
                last: 5,
                received,
            }) => assert_eq!(received, seq),
            other => panic!("sequence {seq} x{n} after 0..=5: {other:?}"),
        }
    }
    assert_eq!(p.high_watermark(), 6, "a refused batch wrote something");
    // The next in sequence is fine; another producer id has its own sequences.
    assert_eq!(p.append_batch(&batch(PID, 0, 6, 1)).unwrap(), 6);
    assert_eq!(p.append_batch(&batch(PID + 1, 0, 0, 1)).unwrap(), 7);
}

#[test]
fn an_older_epoch_is_fenced_and_a_new_epoch_starts_at_zero() {
    let (_sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    p.append_batch(&batch(PID, 3, 0, 2)).unwrap();
    // A newer epoch must start at sequence 0.
    assert!(matches!(
        p.append_batch(&batch(PID, 4, 5, 1)),
        Err(Error::OutOfOrderSequence { .. })
    ));
    assert_eq!(p.append_batch(&batch(PID, 4, 0, 1)).unwrap(), 2);
    for (epoch, seq) in [(3, 2), (3, 0), (0, 0)] {
        match p.append_batch(&batch(PID, epoch, seq, 1)) {
            Err(Error::ProducerFenced {
                producer_id: PID,
                epoch: e,
                current_epoch: 4,
            }) => assert_eq!(e, epoch),
            other => panic!("epoch {epoch} after epoch 4: {other:?}"),
        }
    }
    assert_eq!(p.high_watermark(), 3);
}

#[test]
fn retries_are_deduplicated_after_a_crash_and_after_a_clean_restart() {
    // Small segments: the producer state comes from the roll's checkpoint plus replayed headers.
    for segment_bytes in [1 << 20, 1024] {
        let config = TopicConfig::default()
            .segment_bytes(segment_bytes)
            .segment_index_bytes(1024);
        let (sim, log) = sim_topic(config);
        let p = log.partition("t", 0).unwrap();
        let sent = append_batches(&p, PID, 7);
        let other = append_batches(&p, PID + 1, 2);
        let ctx = format!("segment_bytes {segment_bytes}");
        if segment_bytes == 1024 {
            assert!(p.segment_count() > 2, "{ctx}: expected rolls");
        }
        drop(p);

        crash(&sim, log, CrashMode::ProcessKill);
        let log = TestLog::sim(&sim, DIR).open();
        let p = log.partition("t", 0).unwrap();
        assert_eq!(
            p.high_watermark(),
            27,
            "{ctx}: kill -9 keeps written batches"
        );
        assert_retries_deduplicated(&p, &sent[2..], &format!("{ctx}, after kill -9"));
        assert_retries_deduplicated(&p, &other, &format!("{ctx}, after kill -9, 2nd producer"));
        assert!(matches!(
            p.append_batch(&sent[1].0),
            Err(Error::OutOfOrderSequence { .. })
        ));
        drop(p);

        log.close().unwrap();
        let log = TestLog::sim(&sim, DIR).open();
        let p = log.partition("t", 0).unwrap();
        assert_retries_deduplicated(&p, &sent[2..], &format!("{ctx}, after a clean restart"));
        assert_retries_deduplicated(&p, &other, &format!("{ctx}, clean restart, 2nd producer"));
        // And the producer carries on in sequence.
        assert_eq!(p.append_batch(&batch(PID, 0, 21, 1)).unwrap(), 27);
        drop(p);
        log.close().unwrap();
    }
}

#[test]
fn a_batch_lost_to_power_loss_is_appended_again_not_deduplicated() {
    let (sim, log) = sim_topic(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    let sent = append_batches(&p, PID, 2);
    p.sync().unwrap();
    let lost = batch(PID, 0, 6, 3);
    assert_eq!(p.append_batch(&lost).unwrap(), 6);
    drop(p);
    crash(&sim, log, CrashMode::PowerLossDropUnsynced);
    let log = TestLog::sim(&sim, DIR).open();
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.high_watermark(), 6, "the unsynced batch is gone");
    assert_retries_deduplicated(&p, &sent, "after power loss");
    // The producer's retry of the lost batch must be written, not acknowledged from memory.
    assert_eq!(p.append_batch(&lost).unwrap(), 6);
    assert_eq!(p.high_watermark(), 9);
    assert_eq!(values(&p)[6], "p4242-e0-s6");
}

#[test]
fn randomized_retries_match_a_model() {
    let rounds = cases(20);
    for round in 0..rounds as u64 {
        let mut rng = round.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let (sim, mut log) = sim_topic(
            TopicConfig::default()
                .segment_bytes(2048)
                .segment_index_bytes(1024),
        );
        // Per producer: next sequence and the batches it sent with their base offsets.
        let mut producers: HashMap<i64, (i32, Vec<Sent>)> = HashMap::new();
        let mut hw = 0u64;
        for step in 0..60 {
            let p = log.partition("t", 0).unwrap();
            let pid = next(3) as i64;
            let entry = producers.entry(pid).or_default();
            let ctx = format!("round {round} step {step} producer {pid}");
            if !entry.1.is_empty() && next(3) == 0 {
                // Retry one of the last five batches.
                let k = entry.1.len() - 1 - next(entry.1.len().min(5) as u64) as usize;
                let (b, base) = &entry.1[k];
                assert_eq!(p.append_batch(b).unwrap(), *base, "{ctx}: retry");
            } else {
                let n = 1 + next(4) as usize;
                let b = batch(pid, 0, entry.0, n);
                assert_eq!(p.append_batch(&b).unwrap(), hw, "{ctx}");
                entry.0 += n as i32;
                entry.1.push((b, hw));
                hw += n as u64;
            }
            assert_eq!(p.high_watermark(), hw, "{ctx}");
            if next(10) == 0 {
                drop(p);
                if next(2) == 0 {
                    crash(&sim, log, CrashMode::ProcessKill);
                } else {
                    log.close().unwrap();
                }
                log = TestLog::sim(&sim, DIR).open();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Producer level.

#[test]
fn every_producer_gets_a_distinct_id() {
    let (sim, log) = sim_topic(TopicConfig::default());
    let mut ids = Vec::new();
    for _ in 0..5 {
        let p = log.producer(ProducerConfig::default()).unwrap();
        let (id, epoch) = p.producer_id().expect("idempotent by default");
        assert_eq!(epoch, 0);
        ids.push(id);
    }
    let plain = log
        .producer(ProducerConfig::default().idempotence(false))
        .unwrap();
    assert_eq!(plain.producer_id(), None);
    // Ids never repeat, also after a restart (clean or not).
    log.close().unwrap();
    let log = TestLog::sim(&sim, DIR).open();
    ids.push(
        log.producer(ProducerConfig::default())
            .unwrap()
            .producer_id()
            .unwrap()
            .0,
    );
    crash(&sim, log, CrashMode::PowerLossDropUnsynced);
    let log = TestLog::sim(&sim, DIR).open();
    ids.push(
        log.producer(ProducerConfig::default())
            .unwrap()
            .producer_id()
            .unwrap()
            .0,
    );
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "repeated producer id: {ids:?}");
    assert!(ids.iter().all(|&id| id >= 0));
}

#[test]
fn stored_batches_carry_the_producer_id_epoch_and_dense_sequences() {
    let (sim, log) = sim_topic(TopicConfig::default().partitions(2));
    let producer = log
        .producer(
            ProducerConfig::default()
                .batch_size(1024)
                .linger(Duration::from_millis(1)),
        )
        .unwrap();
    let (pid, epoch) = producer.producer_id().unwrap();
    for i in 0..200 {
        producer
            .send(
                "t",
                Record::new(format!("{i:0>40}")).key(format!("k{}", i % 9)),
            )
            .unwrap();
    }
    producer.flush().unwrap();
    for part in 0..2 {
        let p = log.partition("t", part).unwrap();
        let headers = stored_batches_sim(&sim, p.dir());
        let mut seq = 0i32;
        for h in &headers {
            assert_eq!((h.producer_id, h.producer_epoch), (pid, epoch));
            assert_eq!(
                h.base_sequence, seq,
                "partition {part}: sequences are dense"
            );
            seq += h.record_count as i32;
        }
        assert_eq!(seq as u64, p.high_watermark());
    }
    producer.close().unwrap();
}

#[test]
fn a_stable_id_keeps_its_producer_id_and_fences_the_older_instance() {
    let (sim, log) = sim_topic(TopicConfig::default().partitions(2));
    let cfg = || {
        ProducerConfig::default()
            .stable_id("orders-writer")
            .linger(Duration::ZERO)
    };
    let first = log.producer(cfg()).unwrap();
    let (id, e0) = first.producer_id().unwrap();
    first
        .send("t", Record::new("a").key("k"))
        .unwrap()
        .wait()
        .unwrap();

    let second = log.producer(cfg()).unwrap();
    assert_eq!(second.producer_id(), Some((id, e0 + 1)));
    // An unrelated producer still gets its own id.
    let other = log.producer(ProducerConfig::default()).unwrap();
    assert_ne!(other.producer_id().unwrap().0, id);

    // The old instance may no longer write, on any partition.
    for key in ["k", "other-key", "third"] {
        match first
            .send("t", Record::new("zombie").key(key))
            .unwrap()
            .wait()
        {
            Err(Error::ProducerFenced {
                producer_id,
                epoch,
                current_epoch,
            }) => assert_eq!((producer_id, epoch, current_epoch), (id, e0, e0 + 1)),
            other => panic!("send of a fenced producer: {other:?}"),
        }
    }
    assert!(matches!(first.flush(), Err(Error::ProducerFenced { .. })));
    // The new instance writes (sequences start afresh in the new epoch).
    let m = second
        .send("t", Record::new("b").key("k"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(m.offset, Some(1));
    second.flush().unwrap();
    let all: Vec<String> = read_topic(&log, "t")
        .into_iter()
        .map(|(_, r)| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert!(
        !all.contains(&"zombie".to_string()),
        "a fenced write landed: {all:?}"
    );
    drop((first, second, other));

    // Across restarts the stable id keeps its producer id and the epoch keeps increasing.
    log.close().unwrap();
    let log = TestLog::sim(&sim, DIR).open();
    let third = log.producer(cfg()).unwrap();
    assert_eq!(third.producer_id(), Some((id, e0 + 2)));
    third
        .send("t", Record::new("c").key("k"))
        .unwrap()
        .wait()
        .unwrap();
    drop(third);
    crash(&sim, log, CrashMode::PowerLossDropUnsynced);
    let log = TestLog::sim(&sim, DIR).open();
    let fourth = log.producer(cfg()).unwrap();
    assert_eq!(
        fourth.producer_id(),
        Some((id, e0 + 3)),
        "an epoch handed out before a power loss must not be handed out again"
    );
    fourth
        .send("t", Record::new("d").key("k"))
        .unwrap()
        .wait()
        .unwrap();
    fourth.close().unwrap();
}

/// Fails the first `Write` to a `.log` file with `kind`, once.
fn fail_first_log_write(sim: &SimStorage, kind: ErrorKind) -> Arc<AtomicU64> {
    let failed = Arc::new(AtomicU64::new(0));
    let f = failed.clone();
    sim.set_fault_hook(move |op| {
        let hit = op.kind == SimOpKind::Write
            && op.path.extension().is_some_and(|e| e == "log")
            && f.fetch_add(1, Ordering::SeqCst) == 0;
        hit.then(|| io::Error::new(kind, "injected: disk full"))
    });
    failed
}

#[track_caller]
fn assert_exactly_once(log: &Log, sent: &[String]) {
    let mut stored: Vec<String> = read_topic(log, "t")
        .into_iter()
        .map(|(_, r)| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    stored.sort();
    let mut want = sent.to_vec();
    want.sort();
    assert_eq!(stored, want, "every record exactly once");
}

#[test]
fn a_failed_write_is_retried_and_every_record_lands_exactly_once() {
    let (sim, log) = sim_topic(TopicConfig::default().partitions(3));
    let producer = log
        .producer(
            ProducerConfig::default()
                .retries(3)
                .retry_backoff(Duration::from_millis(5))
                .linger(Duration::from_millis(2)),
        )
        .unwrap();
    let failed = fail_first_log_write(&sim, ErrorKind::StorageFull);
    let n = cases(100);
    let sent: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
    let ds: Vec<_> = sent
        .iter()
        .enumerate()
        .map(|(i, v)| {
            producer
                .send("t", Record::new(v.clone()).key(format!("k{}", i % 7)))
                .unwrap()
        })
        .collect();
    for d in &ds {
        d.wait().unwrap();
    }
    producer.flush().unwrap();
    assert!(failed.load(Ordering::SeqCst) > 1, "the fault was injected");
    sim.clear_fault_hook();
    assert_exactly_once(&log, &sent);
    producer.close().unwrap();
}

#[test]
fn a_full_disk_that_clears_during_the_retries_loses_and_duplicates_nothing() {
    let (sim, log) = sim_topic(TopicConfig::default().partitions(2));
    let producer = log
        .producer(
            ProducerConfig::default()
                .retries(200)
                .retry_backoff(Duration::from_millis(5))
                .linger(Duration::from_millis(1)),
        )
        .unwrap();
    // Room for a few batches, then full until another thread makes room.
    sim.set_capacity(Some(sim.used_bytes() + 2000));
    let n = cases(100);
    let sent: Vec<String> = (0..n).map(|i| format!("value-{i:0>30}")).collect();
    let ds: Vec<_> = sent
        .iter()
        .enumerate()
        .map(|(i, v)| {
            producer
                .send("t", Record::new(v.clone()).key(format!("k{}", i % 5)))
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        ds.iter().any(|d| !d.is_done()),
        "the full disk held nothing up: the test proves nothing"
    );
    sim.set_capacity(None);
    for d in &ds {
        d.wait().unwrap();
    }
    producer.flush().unwrap();
    assert_exactly_once(&log, &sent);
    producer.close().unwrap();
}

/// A batch that failed for good (retries exhausted, here `retries(0)`) must not wedge the
/// partition for the producer: once the storage works again, later sends succeed (Kafka's
/// idempotent producer resets its sequence or bumps its epoch after a failed batch). A
/// producer whose sequence numbers silently skipped the failed batch's records gets
/// `OutOfOrderSequence` on that partition forever.
#[test]
fn a_batch_that_failed_for_good_does_not_wedge_later_sends() {
    let (sim, log) = sim_topic(TopicConfig::default());
    let producer = log
        .producer(ProducerConfig::default().retries(0).linger(Duration::ZERO))
        .unwrap();
    producer
        .send("t", Record::new("first"))
        .unwrap()
        .wait()
        .unwrap();
    fail_first_log_write(&sim, ErrorKind::StorageFull);
    let failed = producer.send("t", Record::new("failed")).unwrap();
    assert!(
        matches!(failed.wait(), Err(Error::Io { .. })),
        "{:?}",
        failed.wait()
    );
    assert!(producer.flush().is_err());
    sim.clear_fault_hook();
    // The disk works again.
    let later = producer.send("t", Record::new("later")).unwrap().wait();
    assert!(
        later.is_ok(),
        "a send after a transient failure of an earlier batch: {later:?}"
    );
    producer.close().unwrap();
    let stored = values(&log.partition("t", 0).unwrap());
    assert_eq!(stored, ["first", "later"]);
}

/// A roll that fails on a full disk (creating the new segment's index) is an I/O error the
/// producer retries; the retry rolls again, and everything lands once and survives restarts.
#[test]
fn a_roll_that_fails_on_a_full_disk_is_retried() {
    let (sim, log) = sim_topic(
        TopicConfig::default()
            .segment_bytes(1024)
            .segment_index_bytes(1024),
    );
    let producer = log
        .producer(
            ProducerConfig::default()
                .retries(5)
                .retry_backoff(Duration::from_millis(1))
                .batch_size(1024)
                .linger(Duration::from_millis(1)),
        )
        .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    sim.set_fault_hook(move |op| {
        let hit = op.kind == SimOpKind::Open
            && op.path.extension().is_some_and(|e| e == "index")
            && c.fetch_add(1, Ordering::SeqCst) == 0;
        hit.then(|| io::Error::new(ErrorKind::StorageFull, "injected: disk full"))
    });
    let sent: Vec<String> = (0..cases(100)).map(|i| format!("roll-{i:0>40}")).collect();
    let ds: Vec<_> = sent
        .iter()
        .map(|v| producer.send("t", Record::new(v.clone())).unwrap())
        .collect();
    for d in &ds {
        d.wait().unwrap();
    }
    producer.flush().unwrap();
    assert!(calls.load(Ordering::SeqCst) > 1, "no roll happened");
    sim.clear_fault_hook();
    producer.close().unwrap();
    assert_exactly_once(&log, &sent);
    log.close().unwrap();
    let log = TestLog::sim(&sim, DIR).open();
    assert_exactly_once(&log, &sent);
    crash(&sim, log, CrashMode::ProcessKill);
    let log = TestLog::sim(&sim, DIR).open();
    assert_exactly_once(&log, &sent);
}
