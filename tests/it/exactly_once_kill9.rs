//! Exactly-once under kill -9, shaped like Kafka's `transactions_test.py`: an input topic is
//! seeded, a child process copies it to an output topic transactionally — 200 records a
//! transaction, each with `send_offsets_to_transaction` — and is SIGKILLed at random moments
//! and restarted. At the end a read_committed verifier finds the output equal to the input,
//! every record once and in order per partition, and the group's committed offsets at the end
//! of the input. Meanwhile, inside every child, a read_committed reader follows the output and
//! reports any record out of order or repeated (an aborted or duplicated one).
//!
//! Environment: `ANNALS_EOS_RECORDS` (default 20,000 input records), `ANNALS_EOS_ROUNDS`
//! (default 30 kills), `ANNALS_TEST_SEED`.
#![cfg(unix)]

use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use annals::{
    ConsumerConfig, IsolationLevel, Log, OffsetAndMetadata, ProducerConfig, Record, TopicConfig,
    TopicPartition,
};

use crate::common::*;

const INPUT: &str = "input";
const OUTPUT: &str = "output";
const PARTITIONS: u32 = 2;
const GROUP: &str = "copier";
const PER_TRANSACTION: usize = 200;
const ENV_DIR: &str = "ANNALS_EOS_CHILD_DIR";

fn value(partition: u32, i: u64) -> String {
    format!("p{partition}-{i:08}")
}

fn sequence_of(value: &[u8]) -> Option<(u32, u64)> {
    let s = std::str::from_utf8(value).ok()?;
    let (p, i) = s.strip_prefix('p')?.split_once('-')?;
    Some((p.parse().ok()?, i.parse().ok()?))
}

fn config() -> TopicConfig {
    // Small segments, so rolls (and their checkpoints) happen under the kills too.
    TopicConfig::default()
        .partitions(PARTITIONS)
        .segment_bytes(256 << 10)
}

#[test]
fn copy_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return; // only as the child of `copies_exactly_once_across_kills`
    };
    if let Err(e) = copy(Path::new(&dir)) {
        println!("ERROR {e}");
    }
}

/// The child: copies input to output until nothing is left, then says DONE.
fn copy(dir: &Path) -> annals::Result<()> {
    let log = Log::builder(dir).maintenance_interval(None).open()?;
    let reader_log = log.clone();
    std::thread::spawn(move || follow_output(&reader_log));
    let tps: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(INPUT, p))
        .collect();
    let mut consumer = log.consumer(
        ConsumerConfig::new(GROUP)
            .enable_auto_commit(false)
            .max_poll_records(PER_TRANSACTION),
    )?;
    consumer.assign(&tps)?;
    let producer = log.producer(ProducerConfig::default().transactional_id("copier-1"))?;
    producer.init_transactions()?;
    println!("READY");
    loop {
        let records = consumer.poll(Duration::from_millis(50))?;
        if records.is_empty() {
            let done = tps.iter().all(|tp| {
                let end = log.partition(INPUT, tp.partition).unwrap().high_watermark();
                consumer.position(INPUT, tp.partition).unwrap() >= end
            });
            if done {
                println!("DONE");
                return Ok(());
            }
            continue;
        }
        producer.begin_transaction()?;
        for r in &records {
            let v = r.value.clone().unwrap_or_default();
            producer.send_to(OUTPUT, r.partition, Record::new(v))?;
        }
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = tps
            .iter()
            .map(|tp| {
                let at = consumer.position(INPUT, tp.partition)?;
                Ok((tp.clone(), OffsetAndMetadata::new(at)))
            })
            .collect::<annals::Result<_>>()?;
        producer.send_offsets_to_transaction(&offsets, &consumer.group_metadata())?;
        producer.commit_transaction()?;
        println!("COMMIT {}", records.len());
    }
}

/// A read_committed reader of the output, in the child beside the copier: every record must be
/// the next of its partition (no aborted record, no duplicate, no gap).
fn follow_output(log: &Log) {
    let run = || -> annals::Result<()> {
        let mut c = log.consumer(
            ConsumerConfig::new("follower").isolation_level(IsolationLevel::ReadCommitted),
        )?;
        let tps: Vec<TopicPartition> = (0..PARTITIONS)
            .map(|p| TopicPartition::new(OUTPUT, p))
            .collect();
        c.assign(&tps)?;
        let mut next = vec![0u64; PARTITIONS as usize];
        loop {
            for r in c.poll(Duration::from_millis(100))? {
                let seq = r.value.as_deref().and_then(sequence_of);
                let want = (r.partition, next[r.partition as usize]);
                if seq != Some(want) {
                    println!(
                        "BAD read {seq:?} at offset {} where {want:?} was due",
                        r.offset
                    );
                    return Ok(());
                }
                next[r.partition as usize] += 1;
            }
        }
    };
    if let Err(e) = run() {
        // The copier's process is being killed or the log closes: nothing to report.
        let _ = e;
    }
}

#[test]
fn copies_exactly_once_across_kills() {
    let records = env_usize("ANNALS_EOS_RECORDS", 20_000) as u64;
    let rounds = env_usize("ANNALS_EOS_ROUNDS", 30);
    let seed = base_seed();
    let _guard = SeedGuard::new("copies_exactly_once_across_kills", seed);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let per_partition = records / u64::from(PARTITIONS);
    {
        let log = Log::builder(dir.path())
            .maintenance_interval(None)
            .open()
            .unwrap();
        log.create_topic(INPUT, config()).unwrap();
        log.create_topic(OUTPUT, config()).unwrap();
        for p in 0..PARTITIONS {
            let part = log.partition(INPUT, p).unwrap();
            for chunk in (0..per_partition).collect::<Vec<_>>().chunks(500) {
                let batch: Vec<Record> = chunk.iter().map(|&i| Record::new(value(p, i))).collect();
                part.append(&batch).unwrap();
            }
        }
        log.close().unwrap();
    }
    let child = test_path(module_path!(), "copy_child");
    let envs = [(ENV_DIR, dir.path().as_os_str())];
    let mut done = false;
    let mut commits_seen = 0u64;
    let mut kills = 0;
    let started = Instant::now();
    while !done {
        let (mut proc, lines) = spawn_child(&child, &envs);
        // The last runs go to the end; the others die at a random moment: after a random
        // number of commits, or a random delay, whichever comes first.
        let kill = kills < rounds;
        let kill_after_commits = rng.range(0, 8);
        let deadline = Instant::now() + Duration::from_millis(rng.range(5, 400));
        let mut commits = 0u64;
        let line_bound = hang_bound();
        let mut last_line = Instant::now();
        loop {
            let wait = if kill {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::from_millis(200)
            };
            match lines.recv_timeout(wait) {
                Ok(line) => {
                    last_line = Instant::now();
                    assert!(!line.starts_with("BAD"), "round {kills}: {line}");
                    assert!(!line.starts_with("ERROR"), "round {kills}: {line}");
                    if line.starts_with("COMMIT") {
                        commits += 1;
                        commits_seen += 1;
                    }
                    if line == "DONE" {
                        done = true;
                        break;
                    }
                    if kill && commits > kill_after_commits {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) if kill && Instant::now() >= deadline => break,
                Err(RecvTimeoutError::Timeout) => {
                    assert!(
                        last_line.elapsed() < line_bound,
                        "round {kills}: the copier went silent"
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if done {
                        break;
                    }
                    panic!("round {kills}: the copier exited without DONE");
                }
            }
        }
        let _ = proc.kill();
        let _ = proc.wait();
        if kill {
            kills += 1;
        }
    }
    // The verifier.
    let log = Log::builder(dir.path())
        .maintenance_interval(None)
        .open()
        .unwrap();
    assert!(
        log.transactions().unwrap().is_empty(),
        "a transaction is left open"
    );
    let mut c = log
        .consumer(ConsumerConfig::new("verifier").isolation_level(IsolationLevel::ReadCommitted))
        .unwrap();
    let tps: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(OUTPUT, p))
        .collect();
    c.assign(&tps).unwrap();
    let mut next = vec![0u64; PARTITIONS as usize];
    loop {
        let got = c.poll(Duration::from_millis(100)).unwrap();
        if got.is_empty() {
            break;
        }
        for r in got {
            let seq = r.value.as_deref().and_then(sequence_of);
            assert_eq!(
                seq,
                Some((r.partition, next[r.partition as usize])),
                "offset {}",
                r.offset
            );
            next[r.partition as usize] += 1;
        }
    }
    for p in 0..PARTITIONS {
        assert_eq!(
            next[p as usize], per_partition,
            "output partition {p} is not the input"
        );
        let committed = log.committed_offset(GROUP, INPUT, p).unwrap().unwrap();
        let end = log.partition(INPUT, p).unwrap().high_watermark();
        assert_eq!(committed.offset, end, "input partition {p}");
        let out = log.partition(OUTPUT, p).unwrap();
        assert_eq!(out.last_stable_offset(), out.high_watermark());
    }
    eprintln!(
        "exactly-once: {records} records, {kills} kills, {commits_seen} commits seen, {:?}",
        started.elapsed()
    );
    log.close().unwrap();
}
