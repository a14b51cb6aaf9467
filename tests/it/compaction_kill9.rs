//! Real-process crash test for maintenance: a child process appends keyed records while the
//! background maintenance thread (every millisecond) and the main thread (every few batches)
//! compact the log, and is killed with SIGKILL at a random moment — often in the middle of a
//! compaction pass or a swap. The parent reopens the log and checks that every acknowledged
//! record's key still reads back with that record or a later one, that every record read is
//! intact (values are `<key>=<sequence>`), and that offsets and sequences strictly increase.
//!
//! The child is this test binary re-executed with `--exact compaction_kill9::compaction_child` and
//! `ANNALS_COMPACTION_KILL9_DIR` set. Knobs: `ANNALS_CRASH_ROUNDS` (default 6).
#![cfg(unix)]

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use annals::{CleanupPolicy, Log, Record, TopicConfig};
use common::*;

const T: &str = "t";
const ENV_DIR: &str = "ANNALS_COMPACTION_KILL9_DIR";
const ENV_ROUND: &str = "ANNALS_COMPACTION_KILL9_ROUND";
const KEYS: u64 = 40;

fn open(dir: &Path, interval: Option<Duration>) -> Log {
    TestLog::dir(dir)
        .maintenance_interval(interval)
        .cleaner_buffer_bytes(2048)
        .open()
}

fn config() -> TopicConfig {
    TopicConfig::default()
        .cleanup_policy(CleanupPolicy::Compact)
        .segment_bytes(4096)
        .index_interval_bytes(256)
        .segment_index_bytes(1024)
        .min_cleanable_dirty_ratio(0.0)
}

/// The child: appends and compacts until killed (or until a minute has passed).
#[test]
fn compaction_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let round: u64 = std::env::var(ENV_ROUND).unwrap().parse().unwrap();
    let log = open(Path::new(&dir), Some(Duration::from_millis(1)));
    if log.topics().is_empty() {
        log.create_topic(T, config()).unwrap();
    }
    let p = log.partition(T, 0).unwrap();
    // libtest has written "test compaction_child ... " without a newline: end that line first.
    println!();
    println!("READY");
    let mut rng = Rng::new(round);
    let mut seq = round * 1_000_000;
    let started = Instant::now();
    let mut batches = 0u64;
    while started.elapsed() < Duration::from_secs(60) {
        let keys: Vec<u64> = (0..rng.usize(1, 5)).map(|_| rng.below(KEYS)).collect();
        let batch: Vec<Record> = keys
            .iter()
            .map(|k| {
                seq += 1;
                Record::new(format!("k{k}={seq:012}")).key(format!("k{k}"))
            })
            .collect();
        let base = p.append(&batch).unwrap();
        // Acknowledged once `append` returned: the batch is in the page cache, which kill -9
        // does not touch.
        for (i, r) in batch.iter().enumerate() {
            let value = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
            println!("ACK {} {value}", base + i as u64);
        }
        batches += 1;
        if batches.is_multiple_of(7) {
            log.run_maintenance().unwrap();
        }
    }
}

#[test]
fn kill9_during_compaction() {
    if std::env::var(ENV_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let seed = base_seed();
    let _g = SeedGuard::new("kill9_during_compaction", seed);
    let mut rng = Rng::new(seed);
    // key -> (sequence, offset) of its latest acknowledged record
    let mut acked: HashMap<String, (u64, u64)> = HashMap::new();
    let mut compacted_away = 0;
    for round in 1..=env_usize("ANNALS_CRASH_ROUNDS", 6) as u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                common::test_path(module_path!(), "compaction_child").as_str(),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir.path())
            .env(ENV_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The test harness prints its own lines first.
        while rx.recv_timeout(Duration::from_secs(60)).unwrap() != "READY" {}
        std::thread::sleep(Duration::from_millis(rng.range(30, 400)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        for line in rx.try_iter() {
            // A line cut by the kill has no '=' and sequence; skip it.
            let mut parts = line.splitn(3, ' ');
            let (Some("ACK"), Some(offset), Some(value)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some((key, seq)) = value.split_once('=') else {
                continue;
            };
            let (Ok(offset), Ok(seq)) = (offset.parse::<u64>(), seq.parse::<u64>()) else {
                continue;
            };
            acked.insert(key.to_string(), (seq, offset));
        }
        let (read, hw) = verify(dir.path(), &acked, &format!("seed {seed} round {round}"));
        compacted_away = hw - read;
    }
    assert!(!acked.is_empty(), "no child ever acknowledged a record");
    assert!(compacted_away > 0, "the children never compacted anything");
}

/// Opens the crashed log and checks it against what was acknowledged. Returns the records read
/// and the high watermark.
fn verify(dir: &Path, acked: &HashMap<String, (u64, u64)>, ctx: &str) -> (u64, u64) {
    let log = open(dir, None);
    let p = log.partition(T, 0).unwrap();
    let hw = p.high_watermark();
    let mut at = p.log_start_offset();
    let mut latest: HashMap<String, u64> = HashMap::new();
    let mut last: Option<(u64, u64)> = None;
    let mut read = 0;
    while at < hw {
        let got = p
            .read(at, 4096)
            .unwrap_or_else(|e| panic!("{ctx}: read({at}): {e}"));
        let Some(end) = got.last().map(|r| r.offset + 1) else {
            break;
        };
        for r in got {
            let key = std::str::from_utf8(r.key.as_deref().unwrap())
                .unwrap()
                .to_string();
            let value = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
            let (k, seq) = value
                .split_once('=')
                .unwrap_or_else(|| panic!("{ctx}: bad value {value:?} at {}", r.offset));
            assert_eq!(k, key, "{ctx}: record {} damaged", r.offset);
            let seq: u64 = seq.parse().unwrap();
            if let Some((o, s)) = last {
                assert!(
                    r.offset > o && seq > s,
                    "{ctx}: order broken at {}",
                    r.offset
                );
            }
            last = Some((r.offset, seq));
            read += 1;
            latest.insert(key, seq);
        }
        at = end;
    }
    for (key, (seq, offset)) in acked {
        let found = latest.get(key).copied();
        assert!(
            found.is_some_and(|s| s >= *seq),
            "{ctx}: key {key} acknowledged with sequence {seq} at offset {offset}, log has {found:?}"
        );
    }
    drop(p);
    log.close().unwrap();
    (read, hw)
}
