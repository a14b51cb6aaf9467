//! How annals' costs grow with the work (issue 13): for each partition count, the time to create,
//! append to, close and reopen the log, the open files, memory and real disk it takes; for each
//! log size, append and read throughput and the reopen time, clean and after a writer was killed
//! with SIGKILL (recovery then scans the newest segment, all of it unsynced: its MiB/s is the
//! scan rate). Every
//! record is read back after each reopen and compared with what was written. Run with (the default sizes are small and quick):
//!
//! ```text
//! cargo run --release --example growth
//! ANNALS_GROWTH_PARTITIONS=1,100,1000,10000 ANNALS_GROWTH_LOG_BYTES=1M,64M,1G,4G \
//!     cargo run --release --example growth [-- --json]
//! ```
//!
//! Partitions come in topics of 10 (one topic when fewer), one record each; the records are the
//! benches' (`benches/common`: 12-byte keys, 100-byte JSON values), appended without fsync (the
//! clean close syncs). A row that hits the open-file limit (`ulimit -n`) is printed as that
//! failure and the run goes on; so is one stopped because the disk's free space fell below
//! `ANNALS_GROWTH_MIN_FREE` (default 4G: a fallocating log must not fill a shared machine's disk).
//! `--json` (or `ANNALS_GROWTH_JSON=1`) prints JSON lines instead of the table. The exit status is
//! non-zero only for a real failure: a lost or changed record, any other error.

#[path = "../benches/common/mod.rs"]
mod common;

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use annals::{Log, Record, StoredRecord, TopicConfig};
use serde_json::json;

const PARTITIONS_PER_TOPIC: u32 = 10;
/// Records per `append` in the log-size rows (the compare table's batch).
const BATCH: usize = 1000;
const READ_MAX_BYTES: usize = 1 << 20;
/// Free space is checked every this many batches while a log grows.
const FREE_CHECK_BATCHES: u64 = 64;
const MIB: f64 = (1 << 20) as f64;

struct Settings {
    partitions: Vec<u32>,
    log_bytes: Vec<u64>,
    min_free: u64,
    json: bool,
    command: String,
}

/// Why a row ended early.
enum Failure {
    /// A limit of this machine (open files, free disk): printed as the row's result.
    Limit(String),
    /// The log lost or changed a record, or failed otherwise: the run fails.
    Broken(String),
}

impl From<annals::Error> for Failure {
    fn from(e: annals::Error) -> Self {
        let os_error = match &e {
            annals::Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        };
        // EMFILE is the process's `ulimit -n`, ENFILE the system's table.
        let limits = [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE];
        if limits.iter().any(|l| Some(l.raw_os_error()) == os_error) {
            Failure::Limit(e.to_string())
        } else {
            Failure::Broken(e.to_string())
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Broken(e.to_string())
    }
}

impl Failure {
    fn context(self, what: String) -> Self {
        match self {
            Failure::Limit(m) => Failure::Limit(format!("{what}: {m}")),
            Failure::Broken(m) => Failure::Broken(format!("{what}: {m}")),
        }
    }
}

struct PartitionRow {
    partitions: u32,
    topics: usize,
    create: Duration,
    append: Duration,
    close: Duration,
    reopen: Duration,
    read: Duration,
    fds_open: Option<usize>,
    fds_reopened: Option<usize>,
    rss_growth: Option<i64>,
    disk_open: u64,
    disk_closed: u64,
}

struct SizeRow {
    payload_bytes: u64,
    records: u64,
    segments: usize,
    append: Duration,
    close: Duration,
    reopen: Duration,
    read: Duration,
    disk_closed: u64,
    /// `Log::open` after a writer of the same log was killed with SIGKILL.
    crash_reopen: Duration,
    /// Bytes of `.log` that open had to scan: the newest segment (every older one was sealed
    /// and checkpointed by its roll).
    crash_scanned: u64,
}

/// The child's flag: `growth --crash-child DIR BYTES` writes a log and waits to be killed.
const CRASH_CHILD: &str = "--crash-child";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir, bytes] = args.as_slice() {
        if flag == CRASH_CHILD {
            crash_child(Path::new(dir), bytes);
        }
    }
    let settings = match settings() {
        Ok(s) => s,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn settings() -> Result<Settings, String> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let partitions = var("ANNALS_GROWTH_PARTITIONS", "1,10,100");
    let log_bytes = var("ANNALS_GROWTH_LOG_BYTES", "1M,16M");
    let min_free = var("ANNALS_GROWTH_MIN_FREE", "4G");
    let json = std::env::args().nth(1).as_deref() == Some("--json")
        || std::env::var("ANNALS_GROWTH_JSON").as_deref() == Ok("1");
    let command = format!(
        "ANNALS_GROWTH_PARTITIONS={partitions} ANNALS_GROWTH_LOG_BYTES={log_bytes} \
         ANNALS_GROWTH_MIN_FREE={min_free} cargo run --release --example growth{}",
        if json { " -- --json" } else { "" }
    );
    let counts = "positive partition counts";
    let sizes = "sizes (bytes, or with a binary K, M or G suffix: 1M = 1 MiB)";
    let count = |s: &str| s.parse::<u32>().ok().map(u64::from);
    let partitions = parse_list("ANNALS_GROWTH_PARTITIONS", &partitions, counts, count)?;
    Ok(Settings {
        partitions: partitions.into_iter().map(|n| n as u32).collect(),
        log_bytes: parse_list("ANNALS_GROWTH_LOG_BYTES", &log_bytes, sizes, parse_size)?,
        min_free: parse_size(&min_free)
            .ok_or_else(|| format!("ANNALS_GROWTH_MIN_FREE={min_free}: expected a size like 4G"))?,
        json,
        command,
    })
}

/// A comma-separated list of non-zero numbers, or an error naming the variable and `what` it holds.
fn parse_list(
    name: &str,
    text: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<u64>,
) -> Result<Vec<u64>, String> {
    text.split(',')
        .map(|item| parse(item.trim()).filter(|&n| n > 0))
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(|| format!("{name}={text}: expected a comma-separated list of {what}"))
}

fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 10),
        'M' => (&s[..s.len() - 1], 20),
        'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn run(settings: &Settings) -> Result<(), String> {
    let tmp = std::env::temp_dir();
    let limit = open_file_limit().map_or("n/a".into(), |l| l.to_string());
    let baseline_fds = open_fds().map_or("n/a".into(), |n| n.to_string());
    if settings.json {
        let setup = json!({"kind": "setup", "command": settings.command,
            "open_file_limit": limit, "baseline_fds": baseline_fds, "tmp": tmp});
        println!("{setup}");
    } else {
        println!("reproduce: {}", settings.command);
        println!(
            "logs in {}; open-file limit (soft) {limit}; fds before any log {baseline_fds}",
            tmp.display()
        );
        println!("\npartitions (one record each, all read back after the reopen):");
        println!(
            "{:>6} {:>6} {:>10} {:>10} {:>9} {:>10} {:>9} {:>12} {:>9} {:>14} {:>14}",
            "parts",
            "topics",
            "create ms",
            "append ms",
            "close ms",
            "reopen ms",
            "read ms",
            "fds open/re",
            "rss/part",
            "disk open/part",
            "closed/part"
        );
    }
    for &n in &settings.partitions {
        match measure_partitions(n, settings.min_free) {
            Ok(row) => print_partition_row(settings.json, &row),
            Err(Failure::Limit(message)) => print_limit(
                "partitions",
                n.into(),
                &n.to_string(),
                settings.json,
                &message,
            ),
            Err(Failure::Broken(message)) => return Err(format!("{n} partitions: {message}")),
        }
    }
    if !settings.json {
        println!("\nlog size (one partition, batches of {BATCH}; MiB/s of key + value bytes):");
        println!(
            "{:>10} {:>10} {:>4} {:>11} {:>9} {:>10} {:>9} {:>11} {:>13} {:>14}",
            "log",
            "records",
            "segs",
            "append MiB/s",
            "close ms",
            "reopen ms",
            "read MiB/s",
            "disk closed",
            "kill-9 open ms",
            "recovery MiB/s"
        );
    }
    for &bytes in &settings.log_bytes {
        match measure_log_size(bytes, settings.min_free) {
            Ok(row) => print_size_row(settings.json, &row),
            Err(Failure::Limit(message)) => print_limit(
                "log_bytes",
                bytes,
                &human_bytes(bytes),
                settings.json,
                &message,
            ),
            Err(Failure::Broken(message)) => {
                return Err(format!("{} log: {message}", human_bytes(bytes)))
            }
        }
    }
    Ok(())
}

/// Topic sizes for `n` partitions: topics of 10, the last holding the rest; one topic below 10.
fn topic_sizes(n: u32) -> Vec<u32> {
    let mut sizes = vec![PARTITIONS_PER_TOPIC; (n / PARTITIONS_PER_TOPIC) as usize];
    if !n.is_multiple_of(PARTITIONS_PER_TOPIC) {
        sizes.push(n % PARTITIONS_PER_TOPIC);
    }
    sizes
}

/// Every (topic, partition) of a log laid out by `topic_sizes`, in record order.
fn partitions_of(sizes: &[u32]) -> Vec<(String, u32)> {
    let topics = sizes.iter().enumerate();
    topics
        .flat_map(|(t, &size)| (0..size).map(move |p| (format!("t{t:05}"), p)))
        .collect()
}

fn measure_partitions(n: u32, min_free: u64) -> Result<PartitionRow, Failure> {
    let dir = tempfile::tempdir()?;
    let sizes = topic_sizes(n);
    let parts = partitions_of(&sizes);
    let records = common::make_records(parts.len());
    let rss_before = rss_bytes();

    let log = Log::open(dir.path())?;
    let create = time_create_topics(&log, &sizes, dir.path(), min_free)?;
    let started = Instant::now();
    for (i, ((topic, p), record)) in parts.iter().zip(&records).enumerate() {
        let appended = log
            .partition(topic, *p)
            .and_then(|h| h.append(std::slice::from_ref(record)));
        appended
            .map_err(|e| Failure::from(e).context(format!("append to partition {i} of {n}")))?;
    }
    let append = started.elapsed();
    let fds_open = open_fds();
    let rss_growth = rss_before
        .zip(rss_bytes())
        .map(|(b, a)| a as i64 - b as i64);
    let disk_open = disk_use(dir.path())?;

    let close = time_clean_close(log)?;
    let disk_closed = disk_use(dir.path())?;
    let (reopen, log) = time_reopen(dir.path())?;
    let fds_reopened = open_fds();
    let started = Instant::now();
    let mut out = Vec::new();
    for ((topic, p), record) in parts.iter().zip(&records) {
        out.clear();
        log.partition(topic, *p)?
            .read_into(0, READ_MAX_BYTES, &mut out)?;
        if out.len() != 1 || !same(&out[0], record) {
            let got = out.len();
            return Err(Failure::Broken(format!(
                "{topic}/{p} read back {got} records, expected its one record unchanged"
            )));
        }
    }
    let read = started.elapsed();
    log.close()?;
    Ok(PartitionRow {
        partitions: n,
        topics: sizes.len(),
        create,
        append,
        close,
        reopen,
        read,
        fds_open,
        fds_reopened,
        rss_growth,
        disk_open,
        disk_closed,
    })
}

fn time_create_topics(
    log: &Log,
    sizes: &[u32],
    dir: &Path,
    min_free: u64,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    let mut created = 0;
    for (t, &size) in sizes.iter().enumerate() {
        let config = TopicConfig::default().partitions(size);
        log.create_topic(&format!("t{t:05}"), config).map_err(|e| {
            Failure::from(e).context(format!("after creating {created} partitions"))
        })?;
        created += size;
        check_free_disk(dir, min_free)
            .map_err(|f| f.context(format!("after creating {created} partitions")))?;
    }
    Ok(started.elapsed())
}

/// `Log::close`, which seals the active segments, syncs and writes the clean-shutdown marker.
fn time_clean_close(log: Log) -> Result<Duration, Failure> {
    let started = Instant::now();
    log.close()
        .map_err(|e| Failure::from(e).context("clean close".into()))?;
    Ok(started.elapsed())
}

/// `Log::open` of a cleanly closed log.
fn time_reopen(dir: &Path) -> Result<(Duration, Log), Failure> {
    let started = Instant::now();
    let log = Log::open(dir).map_err(|e| Failure::from(e).context("reopen".into()))?;
    Ok((started.elapsed(), log))
}

fn measure_log_size(payload_bytes: u64, min_free: u64) -> Result<SizeRow, Failure> {
    let dir = tempfile::tempdir()?;
    let pool = common::make_records(BATCH);
    let record_bytes = payload(&pool[0]) as u64;
    let records = payload_bytes.div_ceil(record_bytes);

    let log = Log::open(dir.path())?;
    log.create_topic("growth", TopicConfig::default())?;
    let p = log.partition("growth", 0)?;
    let mut append = Duration::ZERO;
    let mut written = 0;
    let mut batches = 0u64;
    while written < records {
        if batches.is_multiple_of(FREE_CHECK_BATCHES) {
            check_free_disk(dir.path(), min_free)
                .map_err(|f| f.context(format!("after {written} records")))?;
        }
        let n = (records - written).min(BATCH as u64) as usize;
        let started = Instant::now();
        p.append(&pool[..n])?;
        append += started.elapsed();
        written += n as u64;
        batches += 1;
    }
    drop(p);

    let close = time_clean_close(log)?;
    let disk_closed = disk_use(dir.path())?;
    let (reopen, log) = time_reopen(dir.path())?;
    let p = log.partition("growth", 0)?;
    let started = Instant::now();
    read_back(&p, records, &pool)?;
    let read = started.elapsed();
    if p.high_watermark() != records {
        return Err(Failure::Broken(format!(
            "high watermark {} after reopen, {records} records written",
            p.high_watermark()
        )));
    }
    let segments = p.segment_count();
    drop(p);
    log.close()?;
    drop(dir);
    let (crash_reopen, crash_scanned) = measure_crash_recovery(payload_bytes, records, &pool)?;
    Ok(SizeRow {
        payload_bytes: records * record_bytes,
        records,
        segments,
        append,
        close,
        reopen,
        read,
        disk_closed,
        crash_reopen,
        crash_scanned,
    })
}

/// Writes `records` records of `pool` in a child process, kills it with SIGKILL once they are
/// written (not synced; background maintenance is off, so only rolls checkpoint), and times the
/// `Log::open` that recovers the log. Every record must be back.
fn measure_crash_recovery(
    payload_bytes: u64,
    records: u64,
    pool: &[Record],
) -> Result<(Duration, u64), Failure> {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg(CRASH_CHILD)
        .arg(dir.path())
        .arg(payload_bytes.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut ready = String::new();
    io::BufReader::new(stdout).read_line(&mut ready)?;
    child.kill()?;
    let status = child.wait()?;
    if ready.trim() != format!("READY {records}") {
        return Err(Failure::Broken(format!(
            "the crash child said {ready:?} and exited with {status}"
        )));
    }
    // A roll seals its segment (fsync) and checkpoints it, so recovery trusts every sealed
    // segment and scans the newest one, all of it unsynced.
    let scanned = newest_log_bytes(dir.path())?;
    let started = Instant::now();
    let log = Log::builder(dir.path())
        .maintenance_interval(None)
        .open()
        .map_err(|e| Failure::from(e).context("reopen after kill -9".into()))?;
    let reopen = started.elapsed();
    let p = log.partition("growth", 0)?;
    read_back(&p, records, pool)?;
    log.close()?;
    Ok((reopen, scanned))
}

/// The crash child: appends `bytes` of records, says `READY <records>` and waits for SIGKILL.
fn crash_child(dir: &Path, bytes: &str) -> ! {
    let run = || -> annals::Result<u64> {
        let pool = common::make_records(BATCH);
        let records = bytes
            .parse::<u64>()
            .expect("a byte count")
            .div_ceil(payload(&pool[0]) as u64);
        let log = Log::builder(dir).maintenance_interval(None).open()?;
        log.create_topic("growth", TopicConfig::default())?;
        let p = log.partition("growth", 0)?;
        let mut written = 0;
        while written < records {
            let n = (records - written).min(BATCH as u64) as usize;
            p.append(&pool[..n])?;
            written += n as u64;
        }
        // The log stays open: the kill finds it mid-life.
        std::mem::forget(log);
        Ok(records)
    };
    match run() {
        Ok(records) => println!("READY {records}"),
        Err(e) => println!("FAILED {e}"),
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Length of the newest `.log` file under `dir` (the names are zero-padded base offsets, so the
/// largest name is the newest segment).
fn newest_log_bytes(dir: &Path) -> io::Result<u64> {
    let mut newest: Option<(std::path::PathBuf, u64)> = None;
    let mut visit = vec![dir.to_path_buf()];
    while let Some(d) = visit.pop() {
        for entry in fs::read_dir(&d)? {
            let (entry, path) = {
                let e = entry?;
                let path = e.path();
                (e, path)
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                visit.push(path);
            } else if path.extension().is_some_and(|e| e == "log")
                && newest
                    .as_ref()
                    .is_none_or(|(p, _)| path.file_name() > p.file_name())
            {
                newest = Some((path, meta.len()));
            }
        }
    }
    Ok(newest.map_or(0, |(_, len)| len))
}

/// Reads the partition from offset 0 and checks it holds exactly `records` records, each the
/// one `pool` put at its offset.
fn read_back(p: &annals::Partition, records: u64, pool: &[Record]) -> Result<(), Failure> {
    let (mut offset, mut out) = (0, Vec::new());
    while offset < records {
        out.clear();
        p.read_into(offset, READ_MAX_BYTES, &mut out)?;
        for r in &out {
            if r.offset != offset || !same(r, &pool[(offset % pool.len() as u64) as usize]) {
                return Err(Failure::Broken(format!(
                    "record at offset {offset} is missing or changed (read offset {})",
                    r.offset
                )));
            }
            offset += 1;
        }
        if out.is_empty() {
            return Err(Failure::Broken(format!(
                "read at offset {offset} returned nothing below the {records} records written"
            )));
        }
    }
    if p.high_watermark() != records {
        return Err(Failure::Broken(format!(
            "high watermark {}, {records} records written",
            p.high_watermark()
        )));
    }
    Ok(())
}

fn same(stored: &StoredRecord, written: &Record) -> bool {
    stored.key == written.key && stored.value == written.value
}

fn payload(r: &Record) -> usize {
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())
}

/// Stops a row before the log fills the disk: `Failure::Limit` below `min_free` bytes available.
fn check_free_disk(dir: &Path, min_free: u64) -> Result<(), Failure> {
    let fs = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
    let free = fs.f_bavail * fs.f_frsize;
    if free < min_free {
        return Err(Failure::Limit(format!(
            "stopped: {} free on the log's disk, below ANNALS_GROWTH_MIN_FREE={}",
            human_bytes(free),
            human_bytes(min_free)
        )));
    }
    Ok(())
}

/// Real disk use under `dir`: allocated blocks, not lengths (index files are fallocated, and a
/// sparse file would look larger than it is).
fn disk_use(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += disk_use(&entry.path())?;
        }
    }
    Ok(total)
}

/// Open file descriptors of this process (`None` off Linux).
fn open_fds() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // The listing's own descriptor is one of the entries.
        fs::read_dir("/proc/self/fd").ok().map(|d| d.count() - 1)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Resident memory of this process (`None` off Linux).
fn rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        proc_self_field("/proc/self/status", "VmRSS:").map(|kib| kib * 1024)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// The soft `ulimit -n` (`None` off Linux).
fn open_file_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        proc_self_field("/proc/self/limits", "Max open files")
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// The first number after `label` on its line of the `/proc` file `path`.
#[cfg(target_os = "linux")]
fn proc_self_field(path: &str, label: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix(label))?;
    line.split_whitespace().next()?.parse().ok()
}

fn print_partition_row(json: bool, r: &PartitionRow) {
    if json {
        let row = json!({"kind": "partitions", "partitions": r.partitions, "topics": r.topics,
            "create_ms": ms(r.create), "append_ms": ms(r.append), "close_ms": ms(r.close),
            "reopen_ms": ms(r.reopen), "read_ms": ms(r.read), "fds_open": r.fds_open,
            "fds_reopened": r.fds_reopened, "rss_growth_bytes": r.rss_growth,
            "disk_open_bytes": r.disk_open, "disk_closed_bytes": r.disk_closed,
            "records_read_back": r.partitions});
        println!("{row}");
        return;
    }
    let n = u64::from(r.partitions);
    let opt = |v: Option<usize>| v.map_or("n/a".into(), |v| v.to_string());
    let rss = r.rss_growth.map_or("n/a".into(), |g| {
        format!("{:.1} KiB", g as f64 / n as f64 / 1024.0)
    });
    println!(
        "{:>6} {:>6} {:>10.1} {:>10.1} {:>9.1} {:>10.1} {:>9.1} {:>12} {:>9} {:>14} {:>14}",
        r.partitions,
        r.topics,
        ms(r.create),
        ms(r.append),
        ms(r.close),
        ms(r.reopen),
        ms(r.read),
        format!("{}/{}", opt(r.fds_open), opt(r.fds_reopened)),
        rss,
        human_bytes(r.disk_open / n),
        human_bytes(r.disk_closed / n)
    );
}

fn print_size_row(json: bool, r: &SizeRow) {
    let mib = r.payload_bytes as f64 / MIB;
    if json {
        let row = json!({"kind": "log_bytes", "payload_bytes": r.payload_bytes, "records": r.records,
            "segments": r.segments, "append_ms": ms(r.append), "append_mib_s": mib / r.append.as_secs_f64(),
            "close_ms": ms(r.close), "reopen_ms": ms(r.reopen), "read_ms": ms(r.read),
            "read_mib_s": mib / r.read.as_secs_f64(), "disk_closed_bytes": r.disk_closed,
            "crash_reopen_ms": ms(r.crash_reopen), "crash_scanned_bytes": r.crash_scanned,
            "recovery_mib_s": recovery_mib_s(r)});
        println!("{row}");
        return;
    }
    println!(
        "{:>10} {:>10} {:>4} {:>12.1} {:>9.1} {:>10.1} {:>10.1} {:>11} {:>14.1} {:>14.0}",
        human_bytes(r.payload_bytes),
        r.records,
        r.segments,
        mib / r.append.as_secs_f64(),
        ms(r.close),
        ms(r.reopen),
        mib / r.read.as_secs_f64(),
        human_bytes(r.disk_closed),
        ms(r.crash_reopen),
        recovery_mib_s(r)
    );
}

/// How fast the open after kill -9 went through the unsynced log it had to scan.
fn recovery_mib_s(r: &SizeRow) -> f64 {
    r.crash_scanned as f64 / MIB / r.crash_reopen.as_secs_f64()
}

/// A row that a limit of this machine ended: `label` is its size as the table shows it.
fn print_limit(kind: &str, size: u64, label: &str, json: bool, message: &str) {
    if json {
        println!("{}", json!({"kind": kind, kind: size, "limit": message}));
    } else {
        println!("{label:>10} LIMIT {message}");
    }
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}
