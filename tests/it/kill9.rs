//! Real-process crash test: a child process appends to a log and is killed with SIGKILL at a
//! random moment; the parent reopens the log and checks that every acknowledged record is there,
//! at its acknowledged offset, with exactly its content; that the log is dense and readable up to
//! the high watermark; and that appending works after recovery. Then the next round starts a new
//! child on the same directory.
//!
//! The child is this test binary itself, re-executed with `--exact kill9::crash_child` and
//! [`ENV_DIR`] set; without that variable `crash_child` returns at once.
//!
//! Per round:
//! - a *writer* child opens the log (creating the topic in the first round), prints
//!   `START <partition> <high watermark>` for each partition and `READY`, then appends forever:
//!   batches of 1-20 records to a random partition, each batch through `append` (the topic's
//!   lz4) or through `append_batch` with a batch built uncompressed or with lz4. Even rounds call
//!   `sync()` after each append and acknowledge after the sync; odd rounds never sync and
//!   acknowledge right after `append` returns (a kill -9 leaves the page cache intact, so those
//!   records must survive too). Each acknowledgement is a line `ACK <p> <base> <count> <seq>`.
//!   In half of the rounds the child also closes the log cleanly and reopens it every 1-8
//!   batches (checking the reopened high watermarks), so kills also land in `close` and in a
//!   clean `open`.
//! - the parent kills it (SIGKILL). Usually after `READY`, once a random delay (5-120 ms) has
//!   passed or a random number of ACKs (1-120) has arrived, whichever comes first; in a fifth of
//!   the rounds after 0-40 ms counted from the spawn, so kills also land in process start-up,
//!   `Log::open` and `create_topic`.
//! - in about a third of the rounds a *recovery* child then opens the crashed log and is killed
//!   within 4 ms of starting `Log::open`, so recovery itself gets interrupted;
//! - the parent opens the log, verifies it against its model, appends one record per partition,
//!   and closes the log (releasing the lock before the next child starts).
//!
//! Every record's content is a function of (round, writer, partition, sequence number), so the
//! parent knows what every offset must hold. Environment:
//! - `ANNALS_CRASH_ROUNDS` (default 50): number of rounds;
//! - `ANNALS_CRASH_SEED`: PRNG seed (printed at the start; timing still varies between runs).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::now_ms;
use annals::format::{BatchBuilder, BatchOptions};
use annals::{Compression, Log, Partition, Record, StoredRecord, TopicConfig};

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 2;
const MAX_BATCH: u64 = 20;

/// Name of the test function the child runs.
const CHILD_TEST: &str = "crash_child";
/// Log directory for the child; its presence is what makes `crash_child` do anything.
const ENV_DIR: &str = "ANNALS_KILL9_CHILD_DIR";
/// `write-sync`, `write-nosync` or `recover`.
const ENV_ROLE: &str = "ANNALS_KILL9_CHILD_ROLE";
const ENV_ROUND: &str = "ANNALS_KILL9_CHILD_ROUND";
const ENV_SEED: &str = "ANNALS_KILL9_CHILD_SEED";

/// A child that is still alive after this long stops by itself (the parent is gone or stuck).
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// How long the parent waits for a line it expects from a child.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Every this many rounds (and after the last) the whole log is read back, not only the records
/// the round added.
const FULL_CHECK_EVERY: u32 = 10;

fn topic_config() -> TopicConfig {
    TopicConfig::default()
        .partitions(PARTITIONS)
        // Tiny segments and indexes, so rolls are frequent: by size every ~150 records, or
        // earlier if an index fills up (1 KiB holds 128 offset or 85 time entries; one entry
        // per 128 bytes of log).
        .segment_bytes(16 << 10)
        .index_interval_bytes(128)
        .segment_index_bytes(1024)
        .compression(Compression::Lz4)
}

// ---------------------------------------------------------------------------------------------
// Deterministic PRNG and record contents

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Who wrote a record, which determines its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    round: u32,
    /// `b'c'`: a writer child; `b'v'`: the parent, after verifying.
    writer: u8,
    /// Per round and partition, counting from 0 (for the parent: the round number again).
    seq: u64,
}

/// The record `origin` wrote to partition `p`: the value spells out its identity, followed by a
/// pseudo-random amount of filler; some records have a key, some a header.
fn record_for(p: u32, o: Origin) -> Record {
    let h = mix((u64::from(o.round) << 40)
        ^ (u64::from(p) << 32)
        ^ (u64::from(o.writer) << 56)
        ^ o.seq);
    let mut value = format!(
        "kill9 r={} w={} p={p} s={};",
        o.round, o.writer as char, o.seq
    )
    .into_bytes();
    let filler = (h % 160) as usize;
    value.extend((0..filler).map(|i| b'a' + ((h >> (i % 48)) % 26) as u8));
    let mut record = Record::new(value);
    if h & 0x100 != 0 {
        record = record.key(format!("key-{}", o.seq % 13));
    }
    if h & 0x600 == 0 {
        record = record.header("round", o.round.to_string());
    }
    record
}

fn matches(stored: &StoredRecord, expected: &Record) -> bool {
    stored.key == expected.key
        && stored.value == expected.value
        && stored.headers == expected.headers
}

// ---------------------------------------------------------------------------------------------
// The child

/// The child side. Does nothing unless the parent set [`ENV_DIR`].
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let role = std::env::var(ENV_ROLE).expect("child role");
    let round: u32 = std::env::var(ENV_ROUND)
        .expect("child round")
        .parse()
        .unwrap();
    let seed: u64 = std::env::var(ENV_SEED)
        .expect("child seed")
        .parse()
        .unwrap();
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| {
        // A failed write means the parent is gone: stop.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            std::process::exit(3);
        }
    };

    // libtest has already written "test crash_child ... " without a newline: end that line.
    say(String::new());
    say("OPENING".into());
    let open_started = Instant::now();
    let mut log = Log::open(&dir).unwrap_or_else(|e| panic!("child: Log::open failed: {e}"));
    say(format!("OPENED {}", open_started.elapsed().as_micros()));
    if role == "recover" {
        // Only here to be killed during (or after) recovery; never closes the log.
        loop {
            thread::sleep(Duration::from_millis(5));
            if started.elapsed() > CHILD_LIFETIME {
                std::process::exit(4);
            }
        }
    }
    let sync = match role.as_str() {
        "write-sync" => true,
        "write-nosync" => false,
        other => panic!("unknown child role {other}"),
    };
    if !log.topics().iter().any(|t| t == TOPIC) {
        log.create_topic(TOPIC, topic_config())
            .unwrap_or_else(|e| panic!("child: create_topic failed: {e}"));
    }
    let mut partitions: Vec<Partition> = (0..PARTITIONS)
        .map(|p| log.partition(TOPIC, p).unwrap())
        .collect();
    let start: Vec<u64> = partitions.iter().map(|p| p.high_watermark()).collect();
    for (p, hw) in start.iter().enumerate() {
        say(format!("START {p} {hw}"));
    }
    say("READY".into());

    let mut rng = Rng(seed);
    // In some rounds the child also closes and reopens the log every few batches, so kills land
    // in `close` and in a clean `open` too.
    let reopen_every = if rng.range(0, 2) == 0 {
        Some((1, 8))
    } else {
        None
    };
    let mut until_reopen = reopen_every.map(|(lo, hi)| rng.range(lo, hi));
    let mut seq = vec![0u64; PARTITIONS as usize];
    let mut buf = Vec::new();
    loop {
        if until_reopen == Some(0) {
            say("CLOSING".into());
            log.close()
                .unwrap_or_else(|e| panic!("child: close failed: {e}"));
            drop(partitions);
            drop(log);
            say("CLOSED".into());
            log = Log::open(&dir)
                .unwrap_or_else(|e| panic!("child: reopening after a clean close failed: {e}"));
            partitions = (0..PARTITIONS)
                .map(|p| log.partition(TOPIC, p).unwrap())
                .collect();
            for (p, part) in partitions.iter().enumerate() {
                assert_eq!(
                    part.high_watermark(),
                    start[p] + seq[p],
                    "child: partition {p} after a clean close and reopen"
                );
            }
            say("REOPENED".into());
            until_reopen = reopen_every.map(|(lo, hi)| rng.range(lo, hi));
        }
        until_reopen = until_reopen.map(|n| n - 1);
        let p = rng.range(0, u64::from(PARTITIONS) - 1) as usize;
        let n = rng.range(1, MAX_BATCH);
        let records: Vec<Record> = (seq[p]..seq[p] + n)
            .map(|s| {
                record_for(
                    p as u32,
                    Origin {
                        round,
                        writer: b'c',
                        seq: s,
                    },
                )
            })
            .collect();
        let part = &partitions[p];
        let base = match rng.range(0, 2) {
            0 => part.append(&records),
            how => {
                let compression = if how == 1 {
                    Compression::None
                } else {
                    Compression::Lz4
                };
                let mut builder = BatchBuilder::new(BatchOptions {
                    compression,
                    ..BatchOptions::default()
                });
                let now = now_ms();
                for r in &records {
                    builder.push(r, now).unwrap();
                }
                buf.clear();
                builder.finish_into(&mut buf).unwrap();
                part.append_batch(&buf)
            }
        }
        .unwrap_or_else(|e| panic!("child: append to partition {p} failed: {e}"));
        assert_eq!(
            base,
            start[p] + seq[p],
            "child: append returned an unexpected base offset"
        );
        if sync {
            part.sync()
                .unwrap_or_else(|e| panic!("child: sync of partition {p} failed: {e}"));
        }
        say(format!("ACK {p} {base} {n} {}", seq[p]));
        seq[p] += n;
        if started.elapsed() > CHILD_LIFETIME {
            std::process::exit(4);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parent

/// Kills the child if the parent panics while it is still running.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn kill_and_wait(&mut self) -> ExitStatus {
        let mut child = self.0.take().expect("child already reaped");
        // SIGKILL on Unix. Fails only if the child was already reaped, which `wait` then reports.
        let _ = child.kill();
        child.wait().expect("wait for child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running child and the complete lines it has written so far.
struct Running {
    child: ChildGuard,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(dir: &Path, role: &str, round: u32, seed: u64) -> Running {
        let exe = std::env::current_exe().expect("current_exe");
        let child_test = crate::common::test_path(module_path!(), CHILD_TEST);
        let mut child = Command::new(exe)
            .args([
                "--exact",
                child_test.as_str(),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir)
            .env(ENV_ROLE, role)
            .env(ENV_ROUND, round.to_string())
            .env(ENV_SEED, seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    // Only whole lines count: a kill can cut the last one short.
                    Ok(_) if line.last() == Some(&b'\n') => {
                        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                        if tx.send(text).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        Running {
            child: ChildGuard(Some(child)),
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits until the child prints a line starting with `prefix`; false if it exits first.
    fn wait_for(&mut self, prefix: &str) -> bool {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(prefix);
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("child printed no {prefix:?} line within {LINE_TIMEOUT:?}")
                }
            }
        }
    }

    /// Returns after `delay`, or as soon as the child has printed `max_acks` ACK lines, or when
    /// it exits.
    fn wait_while_appending(&mut self, delay: Duration, max_acks: usize) {
        let deadline = Instant::now() + delay;
        let mut acks = 0;
        while acks < max_acks {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    acks += usize::from(line.starts_with("ACK "));
                    self.seen.push(line);
                }
                Err(_) => return,
            }
        }
    }

    /// Sends SIGKILL, reaps the child, collects every line it wrote, and checks it died of the
    /// signal (not of a panic or an error of its own).
    fn kill(mut self, what: &str) -> Vec<String> {
        let status = self.child.kill_and_wait();
        self.seen.extend(self.lines.iter());
        assert_eq!(
            status.signal(),
            Some(9),
            "{what} child exited by itself ({status}) instead of being killed; its output: {:?}",
            self.seen
        );
        self.seen
    }
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    partition: usize,
    base: u64,
    count: u64,
    seq: u64,
}

fn parse_writer_output(lines: &[String]) -> (Vec<Option<u64>>, bool, Vec<Ack>) {
    let mut start = vec![None; PARTITIONS as usize];
    let mut ready = false;
    let mut acks = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u64 {
            fields[i]
                .parse()
                .unwrap_or_else(|_| panic!("bad line {line:?}"))
        };
        match fields.first().copied() {
            Some("START") => start[num(1) as usize] = Some(num(2)),
            Some("READY") => ready = true,
            Some("ACK") => acks.push(Ack {
                partition: num(1) as usize,
                base: num(2),
                count: num(3),
                seq: num(4),
            }),
            _ => {} // libtest chatter, OPENING, OPENED
        }
    }
    (start, ready, acks)
}

/// Total bytes of `.log` files per partition directory (what recovery starts from).
fn log_bytes_on_disk(dir: &Path) -> Vec<u64> {
    (0..PARTITIONS)
        .map(|p| {
            let pdir = dir.join(format!("{TOPIC}-{p}"));
            let Ok(entries) = std::fs::read_dir(&pdir) else {
                return 0;
            };
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .collect()
}

/// Reads `[from, to)` and checks the log is dense there and holds exactly what `model` says.
fn verify_range(part: &Partition, p: u32, model: &[Origin], from: u64, to: u64, ctx: &str) {
    let mut offset = from;
    while offset < to {
        let records = part.read(offset, 64 << 10).unwrap_or_else(|e| {
            panic!("{ctx}: partition {p}: read at offset {offset} failed: {e}")
        });
        assert!(
            !records.is_empty(),
            "{ctx}: partition {p}: read at offset {offset} returned nothing (high watermark {to})"
        );
        for r in &records {
            assert_eq!(r.offset, offset, "{ctx}: partition {p}: offsets not dense");
            let origin = model[offset as usize];
            let expected = record_for(p, origin);
            assert!(
                matches(r, &expected),
                "{ctx}: partition {p} offset {offset}: expected the record of {origin:?}, found \
                 key {:?} value {:?} headers {:?}",
                r.key,
                r.value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
                r.headers
            );
            offset += 1;
        }
    }
    assert_eq!(
        offset, to,
        "{ctx}: partition {p}: read past the high watermark"
    );
}

#[derive(Default, Debug)]
struct Stats {
    writer_rounds: u32,
    killed_mid_stream: u32,
    killed_before_ready: u32,
    killed_after_ready_before_ack: u32,
    sync_rounds_mid_stream: u32,
    nosync_rounds_mid_stream: u32,
    child_reopens: u64,
    kills_in_close: u32,
    kills_in_reopen: u32,
    acks_verified: u64,
    acked_records_verified: u64,
    unacked_records_survived: u64,
    recovery_kills: u32,
    recovery_kills_during_open: u32,
    truncating_recoveries: u32,
    bytes_truncated: u64,
    parent_appends: u64,
    full_checks: u32,
    records_checked: u64,
    max_recovery_open: Duration,
    time_parent_open: Duration,
    time_parent_close: Duration,
    time_parent_checks: Duration,
    time_writers: Duration,
    time_recovery_children: Duration,
    time_parent: Duration,
}

#[test]
fn kill9_crash_recovery() {
    let rounds: u32 = std::env::var("ANNALS_CRASH_ROUNDS")
        .ok()
        .map(|s| s.parse().expect("ANNALS_CRASH_ROUNDS must be a number"))
        .unwrap_or(50);
    let seed: u64 = std::env::var("ANNALS_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("ANNALS_CRASH_SEED must be a number"))
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("kill9: {rounds} rounds, seed {seed} (rerun with ANNALS_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("log");
    let began = Instant::now();

    // What every offset of each partition must hold (no retention: the log starts at 0).
    let mut model: Vec<Vec<Origin>> = vec![Vec::new(); PARTITIONS as usize];
    let mut stats = Stats::default();

    for round in 0..rounds {
        // --- the writer child, killed at a random moment
        let sync = round % 2 == 0;
        let role = if sync { "write-sync" } else { "write-nosync" };
        let phase = Instant::now();
        let mut child = Running::spawn(&dir, role, round, rng.next());
        let early = rng.range(0, 4) == 0;
        if early {
            // Counted from the spawn: lands in start-up, `Log::open`, `create_topic` or the
            // first appends.
            thread::sleep(Duration::from_millis(rng.range(0, 40)));
        } else {
            // Counted from READY: lands in the append stream.
            assert!(
                child.wait_for("READY"),
                "writer child exited before READY: {:?}",
                child.seen
            );
            // Kill after a random delay or a random number of ACKs, whichever comes first (the
            // count bounds how much a round writes when fsync is cheap, which keeps the test's
            // verification time bounded on fast disks).
            let delay = Duration::from_micros(rng.range(5_000, 120_000));
            let max_acks = rng.range(1, 120) as usize;
            child.wait_while_appending(delay, max_acks);
        }
        let lines = child.kill("writer");
        stats.writer_rounds += 1;
        let (start, ready, acks) = parse_writer_output(&lines);
        stats.child_reopens += lines.iter().filter(|l| *l == "REOPENED").count() as u64;
        match lines
            .iter()
            .rev()
            .find(|l| {
                ["CLOSING", "CLOSED", "REOPENED", "READY"].contains(&l.as_str())
                    || l.starts_with("ACK")
            })
            .map(|l| l.as_str())
        {
            Some("CLOSING") => stats.kills_in_close += 1,
            Some("CLOSED") => stats.kills_in_reopen += 1,
            _ => {}
        }
        if !acks.is_empty() {
            stats.killed_mid_stream += 1;
            if sync {
                stats.sync_rounds_mid_stream += 1;
            } else {
                stats.nosync_rounds_mid_stream += 1;
            }
        } else if ready {
            stats.killed_after_ready_before_ack += 1;
        } else {
            stats.killed_before_ready += 1;
        }
        let on_disk_before = log_bytes_on_disk(&dir);
        stats.time_writers += phase.elapsed();
        let phase = Instant::now();

        // --- sometimes, a recovery child killed while it opens the crashed log
        if rng.range(0, 2) == 0 {
            let mut rec = Running::spawn(&dir, "recover", round, 0);
            if rec.wait_for("OPENING") {
                thread::sleep(Duration::from_micros(rng.range(0, 4_000)));
            }
            let lines = rec.kill("recovery");
            stats.recovery_kills += 1;
            if !lines.iter().any(|l| l.starts_with("OPENED")) {
                stats.recovery_kills_during_open += 1;
            }
        }

        stats.time_recovery_children += phase.elapsed();
        let phase = Instant::now();

        // --- the parent recovers and verifies
        let ctx = format!("round {round} ({role}, seed {seed})");
        let open_started = Instant::now();
        let log = Log::open(&dir)
            .unwrap_or_else(|e| panic!("{ctx}: reopening after the kill failed: {e}"));
        stats.max_recovery_open = stats.max_recovery_open.max(open_started.elapsed());
        stats.time_parent_open += open_started.elapsed();
        if !log.topics().iter().any(|t| t == TOPIC) {
            // The child died before create_topic finished: nothing can have been written.
            assert!(
                model.iter().all(|m| m.is_empty()) && acks.is_empty(),
                "{ctx}: topic {TOPIC:?} is gone after recovery"
            );
            log.close().unwrap();
            continue;
        }
        let mut acked_end: Vec<Option<u64>> = vec![None; PARTITIONS as usize];
        let mut by_partition: BTreeMap<usize, Vec<Ack>> = BTreeMap::new();
        for a in &acks {
            by_partition.entry(a.partition).or_default().push(*a);
            let end = acked_end[a.partition].get_or_insert(0);
            *end = (*end).max(a.base + a.count);
        }
        let mut partitions_with_unacked = 0;
        for p in 0..PARTITIONS {
            let pi = p as usize;
            let part = log.partition(TOPIC, p).unwrap();
            let hw = part.high_watermark();
            let prev = model[pi].len() as u64;
            assert_eq!(
                part.log_start_offset(),
                0,
                "{ctx}: partition {p}: log start moved"
            );
            if let Some(s) = start[pi] {
                assert_eq!(s, prev, "{ctx}: partition {p}: the child opened at a different high watermark than the parent's last");
            }
            assert!(
                hw >= prev,
                "{ctx}: partition {p}: recovery lost records of earlier rounds: high watermark {hw}, \
                 {prev} records existed before this round"
            );
            if !ready {
                assert_eq!(hw, prev, "{ctx}: partition {p}: records appeared although the child never started appending");
            }
            let end = acked_end[pi].unwrap_or(prev);
            assert!(
                hw >= end,
                "{ctx}: partition {p}: acknowledged records lost: high watermark {hw} after \
                 recovery, but offsets up to {end} were acknowledged ({} sync)",
                if sync { "with" } else { "without" }
            );
            // The child is sequential: at most the one batch in flight when it was killed can
            // be in the log without an ACK.
            let unacked = hw - end;
            assert!(
                unacked <= MAX_BATCH,
                "{ctx}: partition {p}: {unacked} records beyond the last ACK ({end}..{hw}); at most one batch can be in flight"
            );
            if unacked > 0 {
                partitions_with_unacked += 1;
            }
            stats.unacked_records_survived += unacked;
            // Everything this round added was written by this round's child, in order.
            for offset in prev..hw {
                model[pi].push(Origin {
                    round,
                    writer: b'c',
                    seq: offset - prev,
                });
            }
            for a in by_partition.get(&pi).into_iter().flatten() {
                assert_eq!(a.base - prev, a.seq, "{ctx}: partition {p}: ACK {a:?} is inconsistent with the child's start offset {prev}");
            }
            let checks_started = Instant::now();
            verify_range(&part, p, &model[pi], prev, hw, &ctx);
            stats.records_checked += hw - prev;
            // Each acknowledged batch, read back on its own from its base offset.
            for a in by_partition.get(&pi).into_iter().flatten() {
                let got = part.read(a.base, 1).unwrap_or_else(|e| {
                    panic!(
                        "{ctx}: partition {p}: read of acknowledged offset {} failed: {e}",
                        a.base
                    )
                });
                assert!(
                    !got.is_empty() && got[0].offset == a.base,
                    "{ctx}: partition {p}: acknowledged offset {} is not readable",
                    a.base
                );
                let mut offset = a.base;
                let mut batch = got;
                while offset < a.base + a.count {
                    if batch.is_empty() {
                        batch = part.read(offset, 1 << 20).unwrap();
                    }
                    for r in batch.drain(..) {
                        if offset >= a.base + a.count {
                            break;
                        }
                        assert_eq!(r.offset, offset);
                        let expected = record_for(
                            p,
                            Origin {
                                round,
                                writer: b'c',
                                seq: a.seq + (offset - a.base),
                            },
                        );
                        assert!(
                            matches(&r, &expected),
                            "{ctx}: partition {p}: acknowledged record at {offset} differs"
                        );
                        offset += 1;
                    }
                }
                stats.acks_verified += 1;
                stats.acked_records_verified += a.count;
            }
            let size_after = part.size_bytes();
            if size_after < on_disk_before[pi] {
                stats.truncating_recoveries += 1;
                stats.bytes_truncated += on_disk_before[pi] - size_after;
            }
            let full = round % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1 || round + 1 == rounds;
            if full {
                verify_range(&part, p, &model[pi], 0, hw, &ctx);
                stats.records_checked += hw;
            }
            stats.time_parent_checks += checks_started.elapsed();
            // Appending after recovery works, at the recovered high watermark.
            let origin = Origin {
                round,
                writer: b'v',
                seq: u64::from(round),
            };
            let base = part.append(&[record_for(p, origin)]).unwrap_or_else(|e| {
                panic!("{ctx}: partition {p}: append after recovery failed: {e}")
            });
            assert_eq!(
                base, hw,
                "{ctx}: partition {p}: append after recovery got the wrong offset"
            );
            if round % 4 < 2 {
                part.sync().unwrap_or_else(|e| {
                    panic!("{ctx}: partition {p}: sync after recovery failed: {e}")
                });
            }
            model[pi].push(origin);
            verify_range(&part, p, &model[pi], base, base + 1, &ctx);
            assert_eq!(part.high_watermark(), hw + 1);
            stats.parent_appends += 1;
        }
        if round + 1 == rounds || round % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1 {
            stats.full_checks += 1;
        }
        assert!(
            partitions_with_unacked <= 1,
            "{ctx}: unacknowledged records in more than one partition; only one batch can be in flight"
        );
        // Close cleanly (releases the lock) before the next child opens the directory.
        let close_started = Instant::now();
        log.close()
            .unwrap_or_else(|e| panic!("{ctx}: close failed: {e}"));
        stats.time_parent_close += close_started.elapsed();
        drop(log);
        stats.time_parent += phase.elapsed();
    }

    // A last clean reopen sees exactly the model.
    let log = Log::open(&dir).expect("final reopen");
    let mut segments = Vec::new();
    let mut hws = Vec::new();
    if log.topics().iter().any(|t| t == TOPIC) {
        for p in 0..PARTITIONS {
            let part = log.partition(TOPIC, p).unwrap();
            let pi = p as usize;
            assert_eq!(
                part.high_watermark(),
                model[pi].len() as u64,
                "final reopen: partition {p}"
            );
            verify_range(
                &part,
                p,
                &model[pi],
                0,
                part.high_watermark(),
                "final reopen",
            );
            segments.push(part.segment_count());
            hws.push(part.high_watermark());
        }
    }
    log.close().unwrap();

    let took = began.elapsed();
    println!(
        "kill9 summary after {:.1} s (seed {seed}):",
        took.as_secs_f64()
    );
    println!(
        "  writer rounds {}: killed mid-stream {} ({} with sync, {} without), after READY but before the first ACK {}, before READY {}",
        stats.writer_rounds,
        stats.killed_mid_stream,
        stats.sync_rounds_mid_stream,
        stats.nosync_rounds_mid_stream,
        stats.killed_after_ready_before_ack,
        stats.killed_before_ready
    );
    println!(
        "  clean close + reopen cycles inside writer children {}; kills during close {}, during the reopen {}",
        stats.child_reopens, stats.kills_in_close, stats.kills_in_reopen
    );
    println!(
        "  acks verified {} covering {} records; unacknowledged in-flight records that survived {}",
        stats.acks_verified, stats.acked_records_verified, stats.unacked_records_survived
    );
    println!(
        "  recovery children killed {} ({} during Log::open); parent recoveries that truncated a torn tail {} ({} bytes); slowest parent recovery {:.1} ms",
        stats.recovery_kills,
        stats.recovery_kills_during_open,
        stats.truncating_recoveries,
        stats.bytes_truncated,
        stats.max_recovery_open.as_secs_f64() * 1e3
    );
    println!(
        "  records checked {} ({} full-log checks); appends after recovery {}; final high watermarks {hws:?}, segments {segments:?}",
        stats.records_checked, stats.full_checks, stats.parent_appends
    );

    println!(
        "  time in writer children {:.1} s, recovery children {:.1} s, parent {:.1} s (Log::open {:.1} s, reading and checking {:.1} s, close {:.1} s)",
        stats.time_writers.as_secs_f64(),
        stats.time_recovery_children.as_secs_f64(),
        stats.time_parent.as_secs_f64(),
        stats.time_parent_open.as_secs_f64(),
        stats.time_parent_checks.as_secs_f64(),
        stats.time_parent_close.as_secs_f64()
    );

    // The test must not pass vacuously.
    assert!(
        stats.acked_records_verified > 0,
        "no acknowledged record was ever verified"
    );
    assert!(
        stats.killed_mid_stream >= (rounds / 4).max(1),
        "only {} of {rounds} rounds killed the child after it had acknowledged something",
        stats.killed_mid_stream
    );
    if rounds >= 4 {
        assert!(
            stats.sync_rounds_mid_stream > 0 && stats.nosync_rounds_mid_stream > 0,
            "both modes must be exercised: {stats:?}"
        );
    }
}
