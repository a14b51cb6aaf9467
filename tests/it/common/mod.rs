//! Helpers shared by the integration tests: a seeded PRNG, random records, a record model,
//! whole-partition reads, snapshots of a `SimStorage`, child processes, and (in `fixture`) the
//! `TestLog` builder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use annals::format::BatchHeader;
use annals::storage::SimStorage;
use annals::{Header, Partition, Record, StoredRecord};
use bytes::Bytes;

mod fixture;
mod producer;

pub use fixture::*;
pub use producer::*;

/// Number of randomized cases: `ANNALS_TEST_CASES`, or `default`.
pub fn cases(default: usize) -> usize {
    env_usize("ANNALS_TEST_CASES", default)
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The base seed: `ANNALS_TEST_SEED`, or a fresh one derived from the clock.
pub fn base_seed() -> u64 {
    if let Some(s) = std::env::var("ANNALS_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return s;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Rng::new(nanos ^ u64::from(std::process::id())).next_u64()
}

/// Prints the seed (and what else it was given) if the test panics while it is alive.
pub struct SeedGuard {
    pub what: String,
}

impl SeedGuard {
    pub fn new(test: &str, seed: u64) -> SeedGuard {
        SeedGuard {
            what: format!("{test}: seed {seed} (rerun with ANNALS_TEST_SEED={seed})"),
        }
    }
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("FAILED {}", self.what);
        }
    }
}

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `n` bytes: sometimes random, sometimes compressible text.
    pub fn bytes(&mut self, n: usize) -> Bytes {
        let compressible = self.chance(50);
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            if compressible {
                v.push(b"abcdefgh-0123"[(i + (self.below(3) as usize)) % 13]);
            } else {
                v.push(self.next_u64() as u8);
            }
        }
        Bytes::from(v)
    }
}

/// A record as the model holds it: what must read back at its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub timestamp: i64,
}

impl ModelRecord {
    pub fn from_stored(r: &StoredRecord) -> ModelRecord {
        ModelRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp: r.timestamp,
        }
    }

    /// The record as appended, with the timestamp it must read back with.
    pub fn from_record(r: &Record, timestamp: i64) -> ModelRecord {
        ModelRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp,
        }
    }
}

/// Asserts that `got` is `want` at `offset`.
#[track_caller]
pub fn assert_record(got: &StoredRecord, offset: u64, want: &ModelRecord, ctx: &str) {
    assert_eq!(got.offset, offset, "{ctx}: offset");
    assert_eq!(got.key, want.key, "{ctx}: key of offset {offset}");
    assert_eq!(got.value, want.value, "{ctx}: value of offset {offset}");
    assert_eq!(
        got.headers, want.headers,
        "{ctx}: headers of offset {offset}"
    );
    assert_eq!(
        got.timestamp, want.timestamp,
        "{ctx}: timestamp of offset {offset}"
    );
}

/// A random record. `ts` is the timestamp to give it (`None`: let the log pick).
pub fn random_record(rng: &mut Rng, ts: Option<i64>) -> Record {
    let key = match rng.below(100) {
        0..=19 => None,
        20..=29 => Some(Bytes::new()),
        30..=33 => {
            let n = rng.usize(500, 3000);
            Some(rng.bytes(n))
        }
        _ => {
            let n = rng.usize(1, 16);
            Some(rng.bytes(n))
        }
    };
    let value = match rng.below(100) {
        0..=9 => None,
        10..=19 => Some(Bytes::new()),
        20..=22 => {
            let n = rng.usize(1000, 5000);
            Some(rng.bytes(n))
        }
        _ => {
            let n = rng.usize(0, 120);
            Some(rng.bytes(n))
        }
    };
    let nheaders = match rng.below(10) {
        0..=5 => 0,
        6..=8 => 1,
        _ => rng.usize(2, 4),
    };
    let headers = (0..nheaders)
        .map(|i| Header {
            key: if rng.chance(10) {
                String::new()
            } else {
                format!("h{i}-{}", rng.below(1000))
            },
            value: if rng.chance(20) {
                None
            } else {
                let n = rng.usize(0, 24);
                Some(rng.bytes(n))
            },
        })
        .collect();
    Record {
        key,
        value,
        headers,
        timestamp: ts,
    }
}

/// A timestamp generator: "any order", with repeats, zero, clusters and big jumps.
pub fn random_timestamp(rng: &mut Rng, base: i64) -> i64 {
    match rng.below(100) {
        0..=2 => 0,
        3..=5 => rng.range(0, 1000) as i64,
        6..=10 => base + rng.range(0, 40 * 24 * 3_600_000) as i64, // jumps past segment_ms
        11..=20 => (base - rng.range(0, 3_600_000) as i64).max(0),
        _ => base + rng.range(0, 10_000) as i64,
    }
}

/// Every record from the log start to the high watermark, via reads of `max_bytes`.
pub fn read_all(p: &Partition, max_bytes: usize) -> annals::Result<Vec<StoredRecord>> {
    let hw = p.high_watermark();
    let mut at = p.log_start_offset();
    let mut out = Vec::new();
    while at < hw {
        let got = p.read(at, max_bytes)?;
        assert!(
            !got.is_empty(),
            "read({at}) below the high watermark {hw} returned nothing"
        );
        at = got.last().unwrap().offset + 1;
        out.extend(got);
    }
    Ok(out)
}

/// Asserts that `p` holds exactly `model` from offset 0.
#[track_caller]
pub fn assert_partition_matches(p: &Partition, model: &[ModelRecord], ctx: &str) {
    assert_eq!(
        p.high_watermark(),
        model.len() as u64,
        "{ctx}: high watermark"
    );
    let all = read_all(p, 1 << 20).unwrap_or_else(|e| panic!("{ctx}: read_all failed: {e}"));
    assert_eq!(all.len(), model.len(), "{ctx}: record count");
    for (i, (got, want)) in all.iter().zip(model).enumerate() {
        assert_record(got, i as u64, want, ctx);
    }
}

/// All files of a `SimStorage` with their current contents.
pub type Snapshot = Vec<(PathBuf, Vec<u8>)>;

pub fn snapshot(sim: &SimStorage) -> Snapshot {
    sim.paths()
        .into_iter()
        .map(|p| {
            let bytes = sim.read_file(&p).expect("listed file exists");
            (p, bytes)
        })
        .collect()
}

/// A fresh `SimStorage` holding `snap` (durably).
pub fn restore(snap: &Snapshot) -> Arc<SimStorage> {
    let sim = SimStorage::new();
    for (p, bytes) in snap {
        sim.write_file(p, bytes);
    }
    sim
}

pub fn replace(snap: &mut Snapshot, path: &Path, bytes: Vec<u8>) {
    let e = snap
        .iter_mut()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("no {path:?} in snapshot"));
    e.1 = bytes;
}

pub fn remove(snap: &mut Snapshot, name_suffix: &str) -> bool {
    let before = snap.len();
    snap.retain(|(p, _)| !p.to_string_lossy().ends_with(name_suffix));
    snap.len() != before
}

pub fn get<'a>(snap: &'a Snapshot, path: &Path) -> &'a [u8] {
    &snap
        .iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("no {path:?} in snapshot"))
        .1
}

/// Files in `snap` under `dir` with extension `ext`, sorted.
pub fn files_with_ext(snap: &Snapshot, dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = snap
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| p.parent() == Some(dir) && p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// One batch of a `.log` file.
#[derive(Debug, Clone, Copy)]
pub struct BatchPos {
    pub pos: usize,
    pub len: usize,
    pub base_offset: u64,
    pub records: u64,
}

/// Parses the batches of a `.log` file (which must be a clean sequence of batches).
pub fn batches(log: &[u8]) -> Vec<BatchPos> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < log.len() {
        let h = BatchHeader::parse(&log[pos..]).expect("a valid batch header");
        let len = h.total_len();
        assert!(pos + len <= log.len(), "batch at {pos} runs past the end");
        out.push(BatchPos {
            pos,
            len,
            base_offset: h.base_offset,
            records: u64::from(h.last_offset_delta) + 1,
        });
        pos += len;
    }
    out
}

/// Simple records with distinct values and increasing timestamps.
pub fn simple_records(from: u64, n: u64) -> Vec<Record> {
    (from..from + n)
        .map(|i| {
            Record::new(format!("value-{i}-{}", "x".repeat((i % 7) as usize)))
                .key(format!("k{}", i % 5))
                .header("i", i.to_string())
                .timestamp(1_700_000_000_000 + i as i64 * 10)
        })
        .collect()
}

pub fn model_of(records: &[Record]) -> Vec<ModelRecord> {
    records
        .iter()
        .map(|r| ModelRecord::from_record(r, r.timestamp.expect("explicit timestamp")))
        .collect()
}

/// Re-executes this test binary to run only `test` (with `envs` set) and streams the child's
/// stdout, line by line, through the returned channel. The kill -9 tests use it: the child works
/// and prints what it acknowledged; the parent kills it at a moment of its choosing.
pub fn spawn_child(
    test: &str,
    envs: &[(&str, &std::ffi::OsStr)],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Makes `sim` crash (`mode`) at its `at`-th storage operation from now on, failing that
/// operation and every later one of the dead process, as a real crash would stop it. Returns
/// the flag that says whether the crash happened.
pub fn crash_at_operation_n(
    sim: &Arc<SimStorage>,
    at: u64,
    mode: annals::storage::CrashMode,
) -> Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let weak = Arc::downgrade(sim);
    let count = AtomicU64::new(0);
    let dead = Arc::new(AtomicBool::new(false));
    let flag = dead.clone();
    sim.set_fault_hook(move |op| {
        if dead.load(Ordering::SeqCst) {
            return Some(std::io::Error::other(format!("dead process: {op:?}")));
        }
        if count.fetch_add(1, Ordering::SeqCst) == at {
            dead.store(true, Ordering::SeqCst);
            if let Some(sim) = weak.upgrade() {
                sim.crash(mode);
            }
            return Some(std::io::Error::other("the machine lost power"));
        }
        None
    });
    flag
}

/// The name the test harness gives the test `test` of the module `module` (pass
/// `module_path!()`): the module path without the binary's crate name, which is what `--exact`
/// matches.
pub fn test_path(module: &str, test: &str) -> String {
    match module.split_once("::") {
        Some((_crate, inside)) => format!("{inside}::{test}"),
        None => test.to_string(),
    }
}

/// How long a call may take before it counts as hung: far beyond anything a loaded machine needs
/// (`ANNALS_HANG_SECS`, default 60).
pub fn hang_bound() -> std::time::Duration {
    std::time::Duration::from_secs(env_usize("ANNALS_HANG_SECS", 60) as u64)
}

/// Runs `f` on its own thread and returns its result, failing the test if it takes longer than
/// [`hang_bound`] (the thread is left behind; the test process ends anyway).
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(hang_bound()) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} still blocked after {:?}: it hangs", hang_bound())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}
