//! Helpers first written for the producer tests (`producer_*.rs`): whole-partition reads, the
//! batch headers stored in a partition's `.log` files, polling, and sim crashes.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use annals::format::BatchHeader;
use annals::storage::{CrashMode, SimStorage};
use annals::{Log, Partition, StoredRecord};

use super as common;

/// Every record of `p` from its log start to its high watermark.
pub fn read_partition(p: &Partition) -> Vec<StoredRecord> {
    common::read_all(p, 1 << 20).unwrap_or_else(|e| panic!("reading {}-{}: {e}", p.topic(), p.id()))
}

/// Every record of every partition of `topic`, as `(partition, record)`.
pub fn read_topic(log: &Log, topic: &str) -> Vec<(u32, StoredRecord)> {
    let n = log.topic_config(topic).unwrap().partitions;
    (0..n)
        .flat_map(|id| {
            let p = log.partition(topic, id).unwrap();
            read_partition(&p).into_iter().map(move |r| (id, r))
        })
        .collect()
}

/// Parses the batch headers of one `.log` file's bytes (a clean sequence of batches).
pub fn headers_of(bytes: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..])
            .unwrap_or_else(|e| panic!("no valid batch header at byte {pos}: {e}"));
        pos += h.total_len();
        assert!(pos <= bytes.len(), "batch runs past the end of the file");
        out.push(h);
    }
    out
}

/// The headers of every batch stored in a partition directory on the real file system, in
/// offset order.
pub fn stored_batches_fs(dir: &Path) -> Vec<BatchHeader> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.iter()
        .flat_map(|p| headers_of(&std::fs::read(p).unwrap()))
        .collect()
}

/// The headers of every batch stored in a partition directory of a `SimStorage`.
pub fn stored_batches_sim(sim: &SimStorage, dir: &Path) -> Vec<BatchHeader> {
    let logs: Vec<_> = sim
        .paths()
        .into_iter()
        .filter(|p| p.parent() == Some(dir) && p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.iter()
        .flat_map(|p| headers_of(&sim.read_file(p).unwrap()))
        .collect()
}

/// Polls `f` every 2 ms until it is true or `timeout` passes; the time it took, if it became true.
pub fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Crashes the simulated machine and "restarts the process". The old `Log` is leaked, never
/// dropped: a dead process runs no destructors, and dropping it would close it cleanly on the
/// (dead) handles, which is not what a crash does.
pub fn crash(sim: &SimStorage, log: Log, mode: CrashMode) {
    sim.crash(mode);
    std::mem::forget(log);
}
