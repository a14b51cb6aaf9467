//! Real-process crash test of the producer: a child process sends records through a `Producer`
//! from several threads and prints each record's metadata once `Delivery::wait` returns; the
//! parent SIGKILLs it at a random moment, reopens the log and checks that every acknowledged
//! record is at its acknowledged offset with its content, and that the log is dense.
//!
//! Rounds alternate `Durability::Synced` and `Durability::Written` (a kill -9 keeps the page
//! cache, so both must survive it). The child is this test binary re-executed with
//! `--exact producer_kill9::producer_child` and `ANNALS_PKILL9_DIR` set. `ANNALS_CRASH_ROUNDS`
//! (default 50) sets the number of rounds.
#![cfg(unix)]

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use annals::{Durability, Log, ProducerConfig, Record, TopicConfig};

const TOPIC: &str = "events";
const ENV_DIR: &str = "ANNALS_PKILL9_DIR";
const ENV_ROUND: &str = "ANNALS_PKILL9_ROUND";

fn value(round: u32, thread: u32, seq: u32) -> String {
    format!(
        "r{round}-t{thread}-s{seq}-{}",
        "x".repeat((seq % 50) as usize)
    )
}

/// The child: send forever from 3 threads, printing `ACK <partition> <offset> <value>` per
/// acknowledged record.
#[test]
fn producer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let round: u32 = std::env::var(ENV_ROUND).unwrap().parse().unwrap();
    let log = Log::open(&dir).unwrap();
    if log.topic_config(TOPIC).is_err() {
        log.create_topic(
            TOPIC,
            TopicConfig::default().partitions(3).segment_bytes(32 << 10),
        )
        .unwrap();
    }
    let durability = if round.is_multiple_of(2) {
        Durability::Synced
    } else {
        Durability::Written
    };
    let producer = log
        .producer(
            ProducerConfig::default()
                .durability(durability)
                .linger(Duration::from_millis(1)),
        )
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    for t in 0..3u32 {
        let producer = producer.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for seq in 0.. {
                let v = value(round, t, seq);
                let d = producer
                    .send(TOPIC, Record::new(v.clone()).key(format!("k{}", seq % 7)))
                    .unwrap();
                // Wait for every 4th record only (the others are fire-and-forget), so batches
                // of several records form between acknowledgements.
                if seq % 4 == 3 {
                    let m = d.wait().unwrap();
                    tx.send(format!("ACK {} {} {v}", m.partition, m.offset.unwrap()))
                        .unwrap();
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    for line in rx {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_sends_survive_sigkill() {
    if std::env::var(ENV_DIR).is_ok() {
        return;
    }
    let rounds: u32 = std::env::var("ANNALS_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut acked_total = 0usize;
    let mut rounds_with_acks = 0;
    for round in 0..rounds {
        let round_env = round.to_string();
        let (mut child, rx) = common::spawn_child(
            &common::test_path(module_path!(), "producer_child"),
            &[
                (ENV_DIR, dir.path().as_os_str()),
                (ENV_ROUND, round_env.as_ref()),
            ],
        );
        // Kill 5-80 ms after READY.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(5 + seed % 75);
        let mut acks: Vec<(u32, u64, String)> = Vec::new();
        let mut ready_at = None;
        let started = Instant::now();
        loop {
            if ready_at.is_some_and(|t: Instant| t.elapsed() >= delay) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "child never got ready"
            );
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(1)) {
                if line.ends_with("READY") {
                    ready_at = Some(Instant::now());
                } else if let Some(rest) = line.strip_prefix("ACK ") {
                    let mut parts = rest.splitn(3, ' ');
                    let p = parts.next().unwrap().parse().unwrap();
                    let o = parts.next().unwrap().parse().unwrap();
                    acks.push((p, o, parts.next().unwrap().to_string()));
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Lines already printed before the kill are acknowledgements too.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(20)) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let mut parts = rest.splitn(3, ' ');
                let p = parts.next().unwrap().parse().unwrap();
                let o = parts.next().unwrap().parse().unwrap();
                acks.push((p, o, parts.next().unwrap().to_string()));
            }
        }

        let log = Log::open(dir.path()).unwrap();
        let mut stored: HashMap<(u32, u64), Vec<u8>> = HashMap::new();
        for p in 0..3u32 {
            let part = log.partition(TOPIC, p).unwrap();
            let mut offset = part.log_start_offset();
            while offset < part.high_watermark() {
                let records = part.read(offset, 1 << 20).unwrap();
                for r in &records {
                    assert_eq!(
                        r.offset, offset,
                        "round {round}: partition {p} is not dense"
                    );
                    stored.insert((p, r.offset), r.value.clone().unwrap().to_vec());
                    offset += 1;
                }
            }
        }
        for (p, o, v) in &acks {
            assert_eq!(
                stored.get(&(*p, *o)).map(|b| b.as_slice()),
                Some(v.as_bytes()),
                "round {round}: acknowledged record at {p}/{o} lost or changed"
            );
        }
        acked_total += acks.len();
        rounds_with_acks += usize::from(!acks.is_empty());
        log.close().unwrap();
    }
    eprintln!("producer kill -9: {rounds} rounds, {acked_total} acknowledged records verified");
    assert!(acked_total > 0, "no round acknowledged anything");
    assert!(
        rounds_with_acks * 2 >= rounds as usize,
        "too few rounds were killed mid-stream"
    );
}
