//! Readers in flight while maintenance deletes and swaps segments under them, on the real file
//! system (so index mappings and open handles of retired files are the real thing): no read
//! may fail except with `OffsetOutOfRange` below a log start that moved, and every record read
//! must be intact. Afterwards no retired file is left behind.
//!
//! Knob: `ANNALS_READERS_MS` (how long the threads run, default 1500).

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{CleanupPolicy, Error, Log, Partition, Record, TopicConfig};
use common::*;

const T: &str = "t";

/// Values are `<key>:<sequence>`; sequences grow with offsets.
fn value_for(key: &str, seq: u64) -> String {
    format!("{key}:{seq:010}:{}", "x".repeat((seq % 50) as usize))
}

/// Reads the partition front to back once, checking every record. Returns records read.
fn sweep(p: &Partition) -> Result<usize, String> {
    let mut at = p.log_start_offset();
    let mut last_seq = None;
    let mut n = 0;
    loop {
        let got = match p.read(at, 700) {
            Ok(got) => got,
            // The log start moved past us: that is what retention does; start over.
            Err(Error::OffsetOutOfRange { earliest, .. }) if at < earliest => return Ok(n),
            Err(e) => return Err(format!("read({at}) failed: {e}")),
        };
        let Some(last) = got.last() else { return Ok(n) };
        let next = last.offset + 1;
        for r in &got {
            if r.offset < at {
                return Err(format!("read({at}) returned offset {}", r.offset));
            }
            let key = std::str::from_utf8(r.key.as_deref().unwrap_or_default()).unwrap();
            let value = std::str::from_utf8(r.value.as_deref().unwrap_or_default()).unwrap();
            let seq: u64 = value
                .strip_prefix(key)
                .and_then(|v| v.strip_prefix(':'))
                .and_then(|v| v.get(..10))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    format!("record {} has value {value:?} for key {key:?}", r.offset)
                })?;
            if value != value_for(key, seq) {
                return Err(format!("record {} damaged: {value:?}", r.offset));
            }
            if last_seq.is_some_and(|l| seq <= l) {
                return Err(format!("record {} out of order", r.offset));
            }
            last_seq = Some(seq);
            n += 1;
        }
        at = next;
    }
}

#[test]
fn readers_see_no_errors_while_segments_are_deleted_and_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path())
        .maintenance_interval(None)
        .cleaner_buffer_bytes(4096)
        .open()
        .unwrap();
    log.create_topic(
        T,
        TopicConfig::default()
            .cleanup_policy(CleanupPolicy::CompactAndDelete)
            .segment_bytes(4096)
            .index_interval_bytes(256)
            .segment_index_bytes(4096)
            .min_cleanable_dirty_ratio(0.0)
            .retention_bytes(10_000),
    )
    .unwrap();
    let p = log.partition(T, 0).unwrap();
    let run_for = Duration::from_millis(env_usize("ANNALS_READERS_MS", 1500) as u64);
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + run_for;

    let writer = {
        let (p, stop) = (p.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Record> = (0..5)
                    .map(|_| {
                        seq += 1;
                        let key = format!("k{}", seq % 37);
                        Record::new(value_for(&key, seq)).key(key)
                    })
                    .collect();
                p.append(&batch).unwrap();
            }
            seq
        })
    };
    let maintainer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut deleted, mut compacted) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let r = log.run_maintenance().unwrap();
                deleted += r.segments_deleted();
                compacted += r
                    .partitions
                    .iter()
                    .map(|p| p.compaction.segments_written)
                    .sum::<usize>();
                std::thread::sleep(Duration::from_millis(2));
            }
            (deleted, compacted)
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut sweeps = 0;
                while !stop.load(Ordering::Relaxed) {
                    sweep(&p).unwrap_or_else(|e| panic!("reader: {e}"));
                    sweeps += 1;
                }
                sweeps
            })
        })
        .collect();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let (deleted, compacted) = maintainer.join().unwrap();
    let sweeps: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(
        written > 100 && sweeps > 2,
        "too little happened: {written} {sweeps}"
    );
    assert!(deleted > 0, "retention never deleted a segment");
    assert!(compacted > 0, "compaction never swapped a segment");
    // Every retired file went once its last reader let go.
    let leftovers: Vec<String> = std::fs::read_dir(p.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deleted") || n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    sweep(&p).unwrap();
    drop(p);
    log.close().unwrap();
    let log = Log::open(dir.path()).unwrap();
    sweep(&log.partition(T, 0).unwrap()).unwrap();
}
