//! annals beside its peers — a raw file, the `commitlog` crate, SQLite and redb — at the sizes of
//! issue 6, printed as one markdown table of records/s, annals ÷ peer ratios and peak memory.
//! This is the table in the README's "Performance" section.
//!
//! ```text
//! cargo run --release -p annals-peers --bin compare                # full sizes, 5 rounds (~2 min)
//! cargo run --release -p annals-peers --bin compare -- --quick     # a tenth of the sizes (seconds)
//! cargo run --release -p annals-peers --bin compare -- --rounds 9  # more rounds, steadier medians
//! cargo run --release -p annals-peers --bin compare -- --event-store-only   # only the event-store table
//! COMPARE_ES_STREAMS=200000 cargo run --release -p annals-peers --bin compare -- --event-store-only
//! ```
//!
//! After the log table comes the event-store table (`annals_peers::event_store`): annals'
//! `EventStore` beside SQLite used as postgres-es uses a database, at 1 M streams (10 M events)
//! or 20 k with `--quick` (`COMPARE_ES_STREAMS` overrides), one round.
//!
//! Why a binary and not a criterion mode: the table needs one *process* per system and
//! workload (peak RSS, `VmHWM`, is per process and never goes down), the issue's full sizes
//! (2 M records; criterion would repeat them ten times over) and ratios computed from one run,
//! none of which criterion does. The workloads are not re-implemented here: they are
//! `annals_peers::workloads`, the same code `cargo bench -p annals-peers --bench peers` times.
//!
//! How it runs: the parent re-executes itself as `compare --child <system> <workload> <dir>
//! <full|quick>` for every cell, in rounds; each round goes through every workload, and inside a
//! workload through every system (in an order rotated each round, so no system always runs
//! first), so the systems of one workload are measured seconds apart, under much the same
//! background load. A child sets up its store (untimed), runs the workload (timed), reads its
//! own `VmHWM` from `/proc/self/status`, and prints one `compare-result` line. A cell is the
//! median of its rounds' records/s, and the largest peak. All data lives in one temporary
//! directory, removed at the end (and each store as soon as its workloads are done).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use annals::Compression;

use annals_peers::common::{make_records, make_records_len, VALUE_LEN};
use annals_peers::workloads::{
    close, close_read, open_for_read, scan, settle_and_close, timed_append, timed_poll, timed_send,
    System, SYSTEMS,
};

const BATCH: usize = 1000;
const W4_VALUE_LEN: usize = 1024;
const W5_THREADS: usize = 4;
const FULL_ROUNDS: usize = 5;
const QUICK_ROUNDS: usize = 1;

/// Record counts of one mode.
#[derive(Clone, Copy)]
struct Sizes {
    /// W1 (and so W3, and the `Producer::send` row): the issue's 2 M.
    w1: usize,
    /// W2: the issue's 200 k, one fsync per 1000.
    w2: usize,
    /// W4: 1 KiB values, so a quarter of a GB of values at full size.
    w4: usize,
    /// W5: per thread; four threads write as many records as W1 in total.
    w5_per_thread: usize,
}

const FULL: Sizes = Sizes {
    w1: 2_000_000,
    w2: 200_000,
    w4: 250_000,
    w5_per_thread: 500_000,
};

const QUICK: Sizes = Sizes {
    w1: 200_000,
    w2: 20_000,
    w4: 25_000,
    w5_per_thread: 50_000,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    W1,
    W2,
    W3,
    W4,
    W5,
    /// annals only: W1's records through `Producer::send`, one at a time.
    Send,
    /// annals only: W1's data read back through `Consumer::poll_batches` (`timed_poll`).
    Poll,
}

/// Table rows, in order.
const ROWS: [Workload; 7] = [
    Workload::W1,
    Workload::Send,
    Workload::W2,
    Workload::W3,
    Workload::Poll,
    Workload::W4,
    Workload::W5,
];

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
            Workload::W5 => "w5",
            Workload::Send => "send",
            Workload::Poll => "poll",
        }
    }

    fn from_name(name: &str) -> Option<Workload> {
        ROWS.into_iter().find(|w| w.name() == name)
    }

    fn label(self, s: &Sizes) -> String {
        let n = |n: usize| {
            if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
                format!("{} M", n / 1_000_000)
            } else {
                format!("{} k", n / 1000)
            }
        };
        match self {
            Workload::W1 => format!("W1 append {} × {VALUE_LEN} B, no fsync", n(s.w1)),
            Workload::Send => format!("W1 via `Producer::send`, {} one at a time", n(s.w1)),
            Workload::W2 => format!("W2 append {}, fsync per batch", n(s.w2)),
            Workload::W3 => format!("W3 sequential read of W1's {}", n(s.w1)),
            Workload::Poll => "W3 via `Consumer::poll_batches`".to_string(),
            Workload::W4 => format!("W4 append {} × 1 KiB, lz4", n(s.w4)),
            Workload::W5 => format!(
                "W5 {W5_THREADS} threads × {} append, no fsync",
                n(s.w5_per_thread)
            ),
        }
    }

    /// The systems that run this workload (the producer and consumer rows are annals' own).
    fn systems(self) -> &'static [System] {
        match self {
            Workload::Send | Workload::Poll => &SYSTEMS[..1],
            _ => &SYSTEMS,
        }
    }
}

/// What one child measured.
#[derive(Clone, Copy, Debug)]
struct Sample {
    records: u64,
    elapsed: Duration,
    /// Peak resident set (`VmHWM`) of the child, KiB; `None` off Linux.
    peak_kib: Option<u64>,
    /// Bytes the store occupies in its directory after the workload (file lengths).
    store_bytes: u64,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

/// The child's peak resident set size so far, from `/proc/self/status`.
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sum of the lengths of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_bytes(&path)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Runs one cell in this (child) process. `None`: the workload does not exist yet.
fn run_cell(system: System, workload: Workload, dir: &Path, s: &Sizes) -> Option<Sample> {
    let pool = make_records(BATCH);
    let append = |pool: &[_], parts, per_part, sync, compression| {
        let (elapsed, store) = timed_append(system, dir, parts, pool, per_part, sync, compression);
        let peak = peak_kib();
        (elapsed, store, peak)
    };
    let (records, elapsed, peak) = match workload {
        Workload::W1 => {
            let (elapsed, store, peak) = append(&pool, 1, s.w1, false, Compression::None);
            // W3 reads this store back in the next child: make it durable, untimed.
            settle_and_close(system, store, dir);
            (s.w1, elapsed, peak)
        }
        Workload::W2 => {
            let (elapsed, store, peak) = append(&pool, 1, s.w2, true, Compression::None);
            close(store);
            (s.w2, elapsed, peak)
        }
        Workload::W3 => {
            let store = open_for_read(system, dir);
            let mut out = Vec::new();
            let start = Instant::now();
            let seen = scan(&store, &mut out);
            let elapsed = start.elapsed();
            let peak = peak_kib();
            assert_eq!(seen, s.w1 as u64, "W3 read back every record of W1");
            close_read(store);
            (s.w1, elapsed, peak)
        }
        Workload::W4 => {
            let pool = make_records_len(BATCH, W4_VALUE_LEN);
            let (elapsed, store, peak) = append(&pool, 1, s.w4, false, Compression::Lz4);
            close(store);
            (s.w4, elapsed, peak)
        }
        Workload::W5 => {
            let (elapsed, store, peak) =
                append(&pool, W5_THREADS, s.w5_per_thread, false, Compression::None);
            close(store);
            (W5_THREADS * s.w5_per_thread, elapsed, peak)
        }
        Workload::Send => {
            assert_eq!(system, System::Annals);
            let elapsed = timed_send(dir, &pool, s.w1);
            (s.w1, elapsed, peak_kib())
        }
        Workload::Poll => {
            assert_eq!(system, System::Annals);
            let elapsed = timed_poll(dir, s.w1);
            (s.w1, elapsed, peak_kib())
        }
    };
    Some(Sample {
        records: records as u64,
        elapsed,
        peak_kib: peak,
        store_bytes: dir_bytes(dir),
    })
}

const RESULT_TAG: &str = "compare-result";

/// `--child <system> <workload> <dir> <full|quick>`: one cell, one `compare-result` line.
fn child(args: &[String]) {
    let [system, workload, dir, mode] = args else {
        panic!("usage: compare --child <system> <workload> <dir> <full|quick>");
    };
    let system = System::from_name(system).expect("known system");
    let sizes = if mode == "quick" { QUICK } else { FULL };
    let line = if workload == "idle" {
        // The floor: a child that starts and builds the W1 record pool, and does nothing else.
        let pool = make_records(BATCH);
        std::hint::black_box(&pool);
        let peak = peak_kib().map_or("na".to_string(), |k| k.to_string());
        format!("{RESULT_TAG} 0 0 {peak} 0")
    } else {
        let workload = Workload::from_name(workload).expect("known workload");
        match run_cell(system, workload, Path::new(dir), &sizes) {
            Some(s) => format!(
                "{RESULT_TAG} {} {} {} {}",
                s.records,
                s.elapsed.as_nanos(),
                s.peak_kib.map_or("na".to_string(), |k| k.to_string()),
                s.store_bytes
            ),
            None => format!("{RESULT_TAG} unavailable"),
        }
    };
    println!("{line}");
}

/// What the parent got back for one cell run.
enum Outcome {
    Measured(Sample),
    Unavailable,
    Failed(String),
}

fn spawn_child(system: System, workload: &str, dir: &Path, quick: bool) -> Outcome {
    let exe = std::env::current_exe().expect("current_exe");
    let output = Command::new(exe)
        .arg("--child")
        .arg(system.name())
        .arg(workload)
        .arg(dir)
        .arg(if quick { "quick" } else { "full" })
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn child");
    if !output.status.success() {
        return Outcome::Failed(format!("{}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with(RESULT_TAG)) else {
        return Outcome::Failed("no result line".into());
    };
    let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
    match fields.as_slice() {
        ["unavailable"] => Outcome::Unavailable,
        [records, nanos, peak, bytes] => Outcome::Measured(Sample {
            records: records.parse().expect("records"),
            elapsed: Duration::from_nanos(nanos.parse().expect("nanos")),
            peak_kib: peak.parse().ok(),
            store_bytes: bytes.parse().expect("bytes"),
        }),
        _ => Outcome::Failed(format!("bad result line: {line}")),
    }
}

/// Everything measured for one (workload, system) cell over the rounds.
#[derive(Default)]
struct Cell {
    samples: Vec<Sample>,
    unavailable: bool,
    failed: Option<String>,
}

impl Cell {
    fn median_rate(&self) -> Option<f64> {
        let mut rates: Vec<f64> = self.samples.iter().map(Sample::rate).collect();
        if rates.is_empty() {
            return None;
        }
        rates.sort_by(f64::total_cmp);
        let mid = rates.len() / 2;
        Some(if rates.len() % 2 == 1 {
            rates[mid]
        } else {
            (rates[mid - 1] + rates[mid]) / 2.0
        })
    }

    fn peak_mib(&self) -> Option<f64> {
        let kib = self.samples.iter().filter_map(|s| s.peak_kib).max()?;
        Some(kib as f64 / 1024.0)
    }

    fn store_mib(&self) -> Option<f64> {
        let bytes = self.samples.iter().map(|s| s.store_bytes).max()?;
        Some(bytes as f64 / (1 << 20) as f64)
    }
}

struct Results {
    cells: Vec<((Workload, System), Cell)>,
}

impl Results {
    fn cell(&self, w: Workload, s: System) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|(k, _)| *k == (w, s))
            .map(|(_, c)| c)
    }

    fn cell_mut(&mut self, w: Workload, s: System) -> &mut Cell {
        let i = match self.cells.iter().position(|(k, _)| *k == (w, s)) {
            Some(i) => i,
            None => {
                self.cells.push(((w, s), Cell::default()));
                self.cells.len() - 1
            }
        };
        &mut self.cells[i].1
    }

    /// The cell whose rounds differ most (fastest ÷ slowest), a measure of the run's noise.
    fn widest_spread(&self) -> Option<(Workload, System, f64)> {
        self.cells
            .iter()
            .filter(|(_, c)| c.samples.len() > 1)
            .map(|((w, s), c)| {
                let rates = c.samples.iter().map(Sample::rate);
                let max = rates.clone().fold(f64::MIN, f64::max);
                let min = rates.fold(f64::MAX, f64::min);
                (*w, *s, max / min)
            })
            .max_by(|a, b| a.2.total_cmp(&b.2))
    }

    fn rate(&self, w: Workload, s: System) -> Option<f64> {
        self.cell(w, s)?.median_rate()
    }

    fn record(&mut self, w: Workload, s: System, outcome: Outcome, round: usize) {
        let cell = self.cell_mut(w, s);
        match outcome {
            Outcome::Measured(sample) => {
                eprintln!(
                    "[round {round}] {:<4} {:<9} {:>12} records/s  peak {:>7} MiB  ({:.2} s)",
                    w.name(),
                    s.name(),
                    fmt_rate(sample.rate()),
                    sample
                        .peak_kib
                        .map_or("n/a".to_string(), |k| format!("{:.1}", k as f64 / 1024.0)),
                    sample.elapsed.as_secs_f64()
                );
                cell.samples.push(sample);
            }
            Outcome::Unavailable => cell.unavailable = true,
            Outcome::Failed(why) => {
                eprintln!("[round {round}] {} {} FAILED: {why}", w.name(), s.name());
                cell.failed = Some(why);
            }
        }
    }
}

fn fmt_rate(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2} M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.0} k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn fmt_mib(mib: Option<f64>) -> String {
    mib.map_or("n/a".to_string(), |m| format!("{m:.0} MiB"))
}

fn peer_label(s: System) -> &'static str {
    match s {
        System::Annals => "annals",
        System::RawFile => "raw file",
        System::Commitlog => "commitlog 0.2",
        System::Sqlite => "SQLite (WAL)",
        System::Redb => "redb",
    }
}

/// One table cell: `records/s · annals÷peer · peak`.
fn fmt_cell(results: &Results, w: Workload, s: System) -> String {
    let annals = results.rate(w, System::Annals);
    match (w, s) {
        // The producer row beside the peers' batched W1 appends: how much one-at-a-time
        // sending costs against what a peer does with batches of 1000.
        (Workload::Send, s) if s != System::Annals => {
            return match (annals, results.rate(Workload::W1, s)) {
                (Some(a), Some(p)) => format!("{:.2}× its W1", a / p),
                _ => "—".into(),
            };
        }
        // The consumer row beside the peers' plain sequential reads of the same store.
        (Workload::Poll, s) if s != System::Annals => {
            return match (annals, results.rate(Workload::W3, s)) {
                (Some(a), Some(p)) => format!("{:.2}× its W3", a / p),
                _ => "—".into(),
            };
        }
        _ => {}
    }
    let Some(cell) = results.cell(w, s) else {
        return "—".into();
    };
    if let Some(why) = &cell.failed {
        return format!("failed ({why})");
    }
    let Some(rate) = cell.median_rate() else {
        return "—".into();
    };
    let mem = fmt_mib(cell.peak_mib());
    match (s, annals) {
        (System::Annals, _) => format!("**{}/s** · {mem}", fmt_rate(rate)),
        (_, Some(a)) => format!("{}/s · **{:.2}×** · {mem}", fmt_rate(rate), a / rate),
        (_, None) => format!("{}/s · {mem}", fmt_rate(rate)),
    }
}

fn render(
    results: &Results,
    sizes: &Sizes,
    rounds: usize,
    quick: bool,
    idle_mib: Option<f64>,
    machine: &str,
) {
    let mut t = String::new();
    let header: Vec<&str> = SYSTEMS.iter().map(|&s| peer_label(s)).collect();
    let _ = writeln!(t, "| workload | {} |", header.join(" | "));
    let _ = writeln!(t, "|---|{}", "---:|".repeat(SYSTEMS.len()));
    for w in ROWS {
        let cells: Vec<String> = SYSTEMS.iter().map(|&s| fmt_cell(results, w, s)).collect();
        let _ = writeln!(t, "| {} | {} |", w.label(sizes), cells.join(" | "));
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Cells: records/s · **annals ÷ peer** (above 1: annals is faster) · peak RSS (`VmHWM`) of \
         the child process that ran the cell. Records/s is the median of {rounds} round(s){}; \
         peak is the largest. Keys are 12 bytes, values JSON-like, batches 1000 records.",
        if quick { ", `--quick` sizes" } else { "" }
    );
    let _ = writeln!(t, "- Machine: {machine}.");
    if let Some((w, s, spread)) = results.widest_spread() {
        let _ = writeln!(
            t,
            "- Noise: the widest spread of one cell over the rounds (fastest ÷ slowest) was \
             {spread:.2}× ({}, {}).",
            w.name().to_uppercase(),
            peer_label(s)
        );
    }
    let _ = writeln!(
        t,
        "- Memory floor: a child that only builds the record pool peaks at {}.",
        fmt_mib(idle_mib)
    );
    let _ = writeln!(
        t,
        "- W2: annals `sync()`, raw file `sync_data`, SQLite `synchronous=FULL`, redb \
         `Durability::Immediate` after every batch. **commitlog 0.2 does not fsync its records**: \
         its `flush()` msyncs the index and calls `File::flush`, a no-op, on the segment, so its \
         W2 cell is not durable and is an upper bound."
    );
    let _ = writeln!(
        t,
        "- W3 reads a store written as in W1, fsynced, closed and reopened in a new process \
         (warm page cache); annals `read_batches` 1 MiB at a time (borrowing batch views; \
         `read_into`, which builds an owned record each, is about half as fast: `benches/partition.rs`)."
    );
    let sizes_w4: Vec<String> = SYSTEMS
        .iter()
        .filter_map(|&s| {
            let mib = results.cell(Workload::W4, s)?.store_mib()?;
            Some(format!("{} {mib:.0} MiB", peer_label(s)))
        })
        .collect();
    let _ = writeln!(
        t,
        "- W4: only annals compresses (lz4, per batch); the peers have no compression and store \
         the values raw. On disk after W4: {}.",
        sizes_w4.join(", ")
    );
    let _ = writeln!(
        t,
        "- W5: one partition (annals), file, log or table per thread; SQLite and redb writers \
         serialise on the database's write lock."
    );
    let _ = writeln!(
        t,
        "- `Producer::send` (`Durability::Written`, default linger 5 ms, 64 KiB batches) then \
         `flush()`; its peer cells compare it with the peer's batched W1."
    );
    let _ = writeln!(
        t,
        "- `Consumer::poll_batches`: W1's store read back by a consumer (batch views, one reused vector, \
         up to 10,000 records per poll); its peer cells compare it with the peer's W3."
    );
    println!("{t}");

    // The issue's targets, checked against this run's ratios.
    let targets = [
        (Workload::W1, System::Commitlog, 3.0),
        (Workload::W1, System::Sqlite, 10.0),
        (Workload::W1, System::RawFile, 0.8),
        (Workload::W2, System::Commitlog, 1.5),
        (Workload::W3, System::Commitlog, 1.0),
    ];
    println!("Targets (annals ÷ peer, this run):");
    for (w, s, want) in targets {
        let got = results
            .rate(w, System::Annals)
            .zip(results.rate(w, s))
            .map(|(a, p)| a / p);
        let verdict = match got {
            Some(g) if g >= want => format!("{g:.2}× — met"),
            Some(g) => format!("{g:.2}× — NOT met"),
            None => "not measured".into(),
        };
        println!(
            "- {} vs {}: ≥ {want}×: {verdict}",
            w.name().to_uppercase(),
            peer_label(s)
        );
    }
}

/// The machine, as the README describes it: CPUs, CPU model, RAM, the file system the data
/// directory is on, kernel. Read from /proc; "unknown" where that is not available.
fn machine(data_dir: &Path) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim);
    let meminfo = read("/proc/meminfo");
    let ram_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or("unknown".to_string(), |kib| {
            format!("{:.1} GiB", kib / (1 << 20) as f64)
        });
    // The mount with the longest mount point that is a prefix of the data directory.
    let dir = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let mounts = read("/proc/mounts");
    let fs = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2], f[0]))
        })
        .max_by_key(|m| m.0)
        .map_or("unknown file system".to_string(), |(_, fs, dev)| {
            format!("{fs} on {dev}")
        });
    let kernel = read("/proc/sys/kernel/osrelease");
    format!(
        "{cpus} CPUs ({model}), {ram_gib} RAM, data on {fs}, Linux {}",
        kernel.trim()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("--es-child") {
        es_child(&args[1..]);
        return;
    }
    let mut quick = false;
    let mut event_store_only = false;
    let mut rounds = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--event-store-only" => event_store_only = true,
            "--rounds" => {
                let n = it.next().and_then(|n| n.parse::<usize>().ok());
                let Some(n) = n.filter(|&n| n > 0) else {
                    eprintln!("compare: --rounds takes a positive count");
                    std::process::exit(2);
                };
                rounds = Some(n);
            }
            other => {
                eprintln!("compare: unknown argument {other:?}; use --quick, --rounds N, --event-store-only");
                std::process::exit(2);
            }
        }
    }
    let sizes = if quick { QUICK } else { FULL };
    let rounds = rounds.unwrap_or(if quick { QUICK_ROUNDS } else { FULL_ROUNDS });
    let root = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    eprintln!(
        "compare: {} sizes, {} round(s), data in {}",
        if quick { "quick" } else { "full" },
        if event_store_only { 1 } else { rounds },
        root.path().display()
    );

    let idle_mib = match spawn_child(System::Annals, "idle", root.path(), quick) {
        Outcome::Measured(s) => s.peak_kib.map(|k| k as f64 / 1024.0),
        _ => None,
    };
    let mut results = Results { cells: Vec::new() };
    let mut seq = 0u64;
    let mut fresh_dir = |root: &Path| -> PathBuf {
        seq += 1;
        let dir = root.join(format!("c{seq}"));
        std::fs::create_dir(&dir).expect("create cell dir");
        dir
    };
    for round in (1..=rounds).filter(|_| !event_store_only) {
        let mut order = SYSTEMS;
        order.rotate_left((round - 1) % SYSTEMS.len());
        // W1 leaves its store for W3 (and the consumer row) to read back; then it is removed.
        for &s in &order {
            let dir = fresh_dir(root.path());
            let w1 = spawn_child(s, Workload::W1.name(), &dir, quick);
            let written = matches!(w1, Outcome::Measured(_));
            results.record(Workload::W1, s, w1, round);
            if written {
                for w in [Workload::W3, Workload::Poll] {
                    if w.systems().contains(&s) {
                        let outcome = spawn_child(s, w.name(), &dir, quick);
                        results.record(w, s, outcome, round);
                    }
                }
            }
            std::fs::remove_dir_all(&dir).expect("remove cell dir");
        }
        for w in [Workload::Send, Workload::W2, Workload::W4, Workload::W5] {
            for &s in order.iter().filter(|s| w.systems().contains(s)) {
                let dir = fresh_dir(root.path());
                let outcome = spawn_child(s, w.name(), &dir, quick);
                results.record(w, s, outcome, round);
                std::fs::remove_dir_all(&dir).expect("remove cell dir");
            }
        }
    }
    let log_secs = started.elapsed().as_secs_f64();
    let (es_table, es_failed) = run_event_store(root.path(), quick);
    eprintln!(
        "compare: done in {:.0} s (event store {:.0} s)",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() - log_secs
    );
    let machine = machine(root.path());
    if !event_store_only {
        render(&results, &sizes, rounds, quick, idle_mib, &machine);
    }
    print!("{es_table}");
    if event_store_only {
        println!("\n- Machine: {machine}.");
    }
    // The table marks a failed cell, but a run with one is not a result: CI runs this binary
    // and must see the failure.
    let failed = results
        .cells
        .iter()
        .filter(|(_, c)| c.failed.is_some())
        .count()
        + es_failed;
    if failed > 0 {
        eprintln!("compare: {failed} cell(s) failed; see the FAILED lines above");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// The event-store table: annals' `EventStore` beside SQLite used the way postgres-es/cqrs-es use
// a database (`annals_peers::event_store` says exactly what each does). It runs once (one
// round: at full size its build is minutes), after the log table, one child process per system
// and workload, like the log table's cells.

/// Sizes of the event-store section.
#[derive(Clone, Copy)]
struct EsSizes {
    /// Ordinary streams of 10 events in the built store (plus the 100-event target).
    streams: u32,
    /// Timed appends of the `Written` / `NORMAL` append row (one writer).
    written_appends: usize,
    /// Timed appends of the durable one-writer row.
    synced_appends: usize,
    /// Timed appends per writer of the durable many-writers row.
    synced_appends_per_thread: usize,
    /// Timed `read_stream` calls (after as many untimed ones).
    reads: usize,
}

/// Concurrent writers of the many-writers durable row.
const ES_WRITERS: usize = 16;

const ES_FULL: EsSizes = EsSizes {
    streams: 1_000_000,
    written_appends: 20_000,
    synced_appends: 2_000,
    synced_appends_per_thread: 250,
    reads: 2_000,
};

const ES_QUICK: EsSizes = EsSizes {
    streams: 20_000,
    written_appends: 2_000,
    synced_appends: 200,
    synced_appends_per_thread: 25,
    reads: 500,
};

/// Overrides the ordinary streams of the built store (`--quick` or not), e.g. for a run between
/// the two sizes.
const ES_STREAMS_ENV: &str = "COMPARE_ES_STREAMS";

fn es_sizes(quick: bool) -> EsSizes {
    let mut s = if quick { ES_QUICK } else { ES_FULL };
    if let Ok(v) = std::env::var(ES_STREAMS_ENV) {
        s.streams = v
            .parse()
            .unwrap_or_else(|_| panic!("{ES_STREAMS_ENV} must be a stream count, not {v:?}"));
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EsWorkload {
    /// The store's build, timed: new streams, `NoStream`, `Written` / `NORMAL`.
    Build,
    /// `read_stream` of the 100-event stream, warm.
    Read,
    /// Appends with `Exact`, `Written` / `NORMAL`, one writer.
    AppendWritten,
    /// Appends with `Exact`, `Synced` / `FULL`, one writer.
    AppendSynced,
    /// Appends with `Exact`, `Synced` / `FULL`, [`ES_WRITERS`] writers (a service handling
    /// that many requests at once).
    AppendSyncedMany,
}

const ES_ROWS: [EsWorkload; 5] = [
    EsWorkload::Build,
    EsWorkload::AppendWritten,
    EsWorkload::AppendSynced,
    EsWorkload::AppendSyncedMany,
    EsWorkload::Read,
];

impl EsWorkload {
    fn name(self) -> &'static str {
        match self {
            EsWorkload::Build => "build",
            EsWorkload::Read => "read",
            EsWorkload::AppendWritten => "append_written",
            EsWorkload::AppendSynced => "append_synced",
            EsWorkload::AppendSyncedMany => "append_synced_many",
        }
    }

    fn from_name(name: &str) -> Option<EsWorkload> {
        ES_ROWS.into_iter().find(|w| w.name() == name)
    }
}

/// What one event-store child measured.
#[derive(Clone, Copy, Debug, Default)]
struct EsSample {
    /// Appends (or reads) timed.
    ops: u64,
    elapsed: Duration,
    peak_kib: Option<u64>,
    store_bytes: u64,
    /// Reads: latency quantiles.
    p50: Duration,
    p99: Duration,
    /// Times the child was preempted (`nonvoluntary_ctxt_switches`): on a loaded machine each
    /// costs a read a time slice (milliseconds), which is what a p99 then mostly measures.
    preempted: u64,
}

impl EsSample {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

const ES_RESULT_TAG: &str = "compare-es-result";

/// `--es-child <system> <workload> <dir> <full|quick>`: one event-store cell.
fn es_child(args: &[String]) {
    use annals::Durability;
    use annals_peers::event_store::{build, quantile, timed_appends, timed_reads, EsSystem};
    let [system, workload, dir, mode] = args else {
        panic!("usage: compare --es-child <system> <workload> <dir> <full|quick>");
    };
    let system = EsSystem::from_name(system).expect("known system");
    let workload = EsWorkload::from_name(workload).expect("known workload");
    let s = es_sizes(mode == "quick");
    let dir = Path::new(dir);
    let mut sample = EsSample::default();
    match workload {
        EsWorkload::Build => {
            let (elapsed, appends) = build(system, dir, s.streams, Durability::Written);
            sample.ops = appends;
            sample.elapsed = elapsed;
        }
        EsWorkload::Read => {
            let lat = timed_reads(system, dir, s.reads, s.reads);
            sample.ops = lat.len() as u64;
            sample.elapsed = lat.iter().sum();
            sample.p50 = quantile(&lat, 0.5);
            sample.p99 = quantile(&lat, 0.99);
        }
        EsWorkload::AppendWritten | EsWorkload::AppendSynced | EsWorkload::AppendSyncedMany => {
            let (lane, durability, threads, per_thread) = match workload {
                EsWorkload::AppendWritten => (0, Durability::Written, 1, s.written_appends),
                EsWorkload::AppendSynced => (1, Durability::Synced, 1, s.synced_appends),
                _ => (
                    2,
                    Durability::Synced,
                    ES_WRITERS,
                    s.synced_appends_per_thread,
                ),
            };
            sample.elapsed = timed_appends(
                system, dir, s.streams, durability, lane, threads, per_thread,
            );
            sample.ops = (threads * per_thread) as u64;
        }
    }
    sample.peak_kib = peak_kib();
    sample.preempted = preemptions().unwrap_or(0);
    sample.store_bytes = dir_bytes(dir);
    println!(
        "{ES_RESULT_TAG} {} {} {} {} {} {} {}",
        sample.ops,
        sample.elapsed.as_nanos(),
        sample.peak_kib.map_or("na".to_string(), |k| k.to_string()),
        sample.store_bytes,
        sample.p50.as_nanos(),
        sample.p99.as_nanos(),
        sample.preempted
    );
}

/// This process's involuntary context switches so far, from `/proc/self/status`.
fn preemptions() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with("nonvoluntary_ctxt_switches:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn spawn_es_child(
    system: annals_peers::event_store::EsSystem,
    w: EsWorkload,
    dir: &Path,
    quick: bool,
) -> Result<EsSample, String> {
    let exe = std::env::current_exe().expect("current_exe");
    let output = Command::new(exe)
        .arg("--es-child")
        .arg(system.name())
        .arg(w.name())
        .arg(dir)
        .arg(if quick { "quick" } else { "full" })
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn child");
    if !output.status.success() {
        return Err(format!("{}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(ES_RESULT_TAG))
        .ok_or("no result line")?;
    let f: Vec<&str> = line.split_whitespace().skip(1).collect();
    let [ops, nanos, peak, bytes, p50, p99, preempted] = f.as_slice() else {
        return Err(format!("bad result line: {line}"));
    };
    let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    Ok(EsSample {
        ops: num(ops)?,
        elapsed: Duration::from_nanos(num(nanos)?),
        peak_kib: peak.parse().ok(),
        store_bytes: num(bytes)?,
        p50: Duration::from_nanos(num(p50)?),
        p99: Duration::from_nanos(num(p99)?),
        preempted: num(preempted)?,
    })
}

/// Runs the event-store section (both systems, every workload, one round). Returns its table
/// and targets, and how many cells failed.
fn run_event_store(root: &Path, quick: bool) -> (String, usize) {
    use annals_peers::event_store::{EsSystem, ES_SYSTEMS};
    let s = es_sizes(quick);
    let mut cells: Vec<((EsWorkload, EsSystem), Result<EsSample, String>)> = Vec::new();
    for (i, &system) in ES_SYSTEMS.iter().enumerate() {
        let dir = root.join(format!("es-{i}"));
        std::fs::create_dir(&dir).expect("create cell dir");
        // The build leaves the store for the others; the appends come after the reads (they
        // lengthen streams), each on its own streams.
        for w in [
            EsWorkload::Build,
            EsWorkload::Read,
            EsWorkload::AppendWritten,
            EsWorkload::AppendSynced,
            EsWorkload::AppendSyncedMany,
        ] {
            let r = spawn_es_child(system, w, &dir, quick);
            match &r {
                Ok(x) => eprintln!(
                    "[es] {:<15} {:<7} {:>10.0} ops/s  p50 {:>7.1} µs  p99 {:>7.1} µs  peak {:>7} MiB  ({:.2} s)",
                    w.name(),
                    system.name(),
                    x.rate(),
                    x.p50.as_secs_f64() * 1e6,
                    x.p99.as_secs_f64() * 1e6,
                    x.peak_kib.map_or("n/a".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
                    x.elapsed.as_secs_f64()
                ),
                Err(why) => eprintln!("[es] {} {} FAILED: {why}", w.name(), system.name()),
            }
            let failed = r.is_err();
            cells.push(((w, system), r));
            if failed && w == EsWorkload::Build {
                break;
            }
        }
        std::fs::remove_dir_all(&dir).expect("remove cell dir");
    }
    let get = |w, sys| {
        cells
            .iter()
            .find(|(k, _)| *k == (w, sys))
            .and_then(|(_, r)| r.as_ref().ok())
    };
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    let mib = |x: &EsSample| {
        x.peak_kib
            .map_or("n/a".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
    };
    let events = u64::from(s.streams) * 10 + 100;
    let n = |n: u64| {
        if n >= 1_000_000 {
            format!("{:.1} M", n as f64 / 1e6)
        } else {
            format!("{} k", n / 1000)
        }
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Event store: {} events in {} streams + one of 100 (annals `EventStore` ↔ SQLite the \
         postgres-es way)\n",
        n(events),
        n(u64::from(s.streams))
    );
    let _ = writeln!(t, "| workload | annals | SQLite (WAL) | annals ÷ SQLite |");
    let _ = writeln!(t, "|---|---:|---:|---:|");
    let label = |w: EsWorkload| match w {
        EsWorkload::Build => format!(
            "build: {} appends × 10 events to new streams (`NoStream`), `Written` / `NORMAL`",
            n(u64::from(s.streams))
        ),
        EsWorkload::AppendWritten => format!(
            "{} appends × 10 events, `Exact` version, `Written` / `NORMAL`, 1 writer",
            n(s.written_appends as u64)
        ),
        EsWorkload::AppendSynced => format!(
            "{} appends × 10 events, `Exact` version, `Synced` / `FULL`, 1 writer",
            s.synced_appends
        ),
        EsWorkload::AppendSyncedMany => format!(
            "{ES_WRITERS} × {} appends × 10 events, `Exact` version, `Synced` / `FULL`, \
             {ES_WRITERS} writers",
            s.synced_appends_per_thread
        ),
        EsWorkload::Read => unreachable!(),
    };
    for w in ES_ROWS.into_iter().filter(|&w| w != EsWorkload::Read) {
        let a = get(w, EsSystem::Annals);
        let q = get(w, EsSystem::Sqlite);
        let cell = |x: Option<&EsSample>| {
            x.map_or("failed".into(), |x| {
                format!("{} appends/s · {}", fmt_rate(x.rate()), mib(x))
            })
        };
        let ratio = a.zip(q).map_or("—".into(), |(a, q)| {
            format!("**{:.2}×**", a.rate() / q.rate())
        });
        let _ = writeln!(t, "| {} | {} | {} | {ratio} |", label(w), cell(a), cell(q));
    }
    let a = get(EsWorkload::Read, EsSystem::Annals);
    let q = get(EsWorkload::Read, EsSystem::Sqlite);
    for (name, f) in [
        ("p50", (|x: &EsSample| x.p50) as fn(&EsSample) -> Duration),
        ("p99", |x: &EsSample| x.p99),
    ] {
        let cell = |x: Option<&EsSample>| x.map_or("failed".into(), |x| us(f(x)));
        let ratio = a.zip(q).map_or("—".into(), |(a, q)| {
            format!("**{:.2}×**", f(q).as_secs_f64() / f(a).as_secs_f64())
        });
        let _ = writeln!(
            t,
            "| `read_stream` of the 100-event stream, warm, {name} ({} reads) | {} | {} | {ratio} |",
            s.reads,
            cell(a),
            cell(q)
        );
    }
    if let (Some(a), Some(q)) = (a, q) {
        let _ = writeln!(
            t,
            "| times the read process was preempted (inflates p99) | {} | {} | |",
            a.preempted, q.preempted
        );
    }
    let cell = |x: Option<&EsSample>| x.map_or("failed".into(), mib);
    let _ = writeln!(
        t,
        "| peak RSS of the read process | {} | {} | |",
        cell(a),
        cell(q)
    );
    let disk = |x: Option<&EsSample>| {
        x.map_or("failed".into(), |x| {
            format!("{:.0} MiB", x.store_bytes as f64 / (1 << 20) as f64)
        })
    };
    let _ = writeln!(
        t,
        "| store on disk after the build | {} | {} | |",
        disk(get(EsWorkload::Build, EsSystem::Annals)),
        disk(get(EsWorkload::Build, EsSystem::Sqlite))
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Cells: appends/s (each append 10 events of ~90-byte JSON, one transaction) · peak RSS \
         (`VmHWM`) of the child process; annals ÷ SQLite above 1: annals is faster (reads: \
         SQLite's latency ÷ annals'). One round. Every append carries the version the driver \
         keeps per stream in a `HashMap` (a command handler that has just loaded its \
         aggregate): annals `Exact(v)` checked by the store, SQLite `sequence = v + 1 + i` \
         checked by the primary key (a unique violation is the conflict). The store is built \
         with `Written` / `NORMAL`, one append per stream; the target stream's 100 events are \
         ten appends spread evenly over the build. Durable rows: annals `Synced` (fdatasync per \
         append, shared by concurrent appenders), SQLite `synchronous=FULL` (the WAL fsynced per \
         commit; writers serialise on its lock). Peak RSS includes the driver's version maps \
         (the same in both). Reads: each call timed alone after as many warm-up calls; on a \
         loaded machine a preemption costs a call a whole time slice (milliseconds), so p99 \
         follows the preemption count shown."
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "Event-store targets (this run):");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    for w in [EsWorkload::AppendSynced, EsWorkload::AppendSyncedMany] {
        if let (Some(a), Some(q)) = (get(w, EsSystem::Annals), get(w, EsSystem::Sqlite)) {
            let r = a.rate() / q.rate();
            let _ = writeln!(
                t,
                "- durable appends ({}): annals ≥ 5× SQLite: {r:.2}× — {}",
                w.name(),
                verdict(r >= 5.0)
            );
        }
    }
    if let (Some(a), Some(q)) = (a, q) {
        let _ = writeln!(
            t,
            "- read_stream p50 ≤ SQLite's: {} vs {} — {}",
            us(a.p50),
            us(q.p50),
            verdict(a.p50 <= q.p50)
        );
        let _ = writeln!(
            t,
            "- read_stream p99 ≤ SQLite's: {} vs {} — {}",
            us(a.p99),
            us(q.p99),
            verdict(a.p99 <= q.p99)
        );
        let _ = writeln!(
            t,
            "- read_stream ≤ 1 ms warm among {} events (target: 10 M in 1 M streams): p99 {} — {}",
            n(events),
            us(a.p99),
            verdict(a.p99 <= Duration::from_millis(1))
        );
    }
    let failed = cells.iter().filter(|(_, r)| r.is_err()).count();
    (t, failed)
}
