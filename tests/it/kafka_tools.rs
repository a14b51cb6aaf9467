//! Kafka's own code reads the segments annals writes: Apache Kafka's `DumpLogSegments` tool (its
//! 4.x home is `org.apache.kafka.tools.DumpLogSegments` in the `kafka-tools` jar) is run over
//! every `.log`, `.index` and `.timeindex` of a real annals log, and what it prints must agree
//! with what annals reads back.
//!
//! The tests that run Java are ignored by default: they need `ANNALS_KAFKA_TOOLS`, the directory
//! of Kafka's jars, which `ci/kafka-tools/fetch` fills and prints. `.ci/run` runs them with
//! `--ignored`. Run by hand:
//!
//! ```text
//! ANNALS_KAFKA_TOOLS=$(ci/kafka-tools/fetch) cargo test --test it kafka_tools -- --ignored
//! ```
//!
//! Without the variable those tests panic (they never pass by skipping). The parser of the
//! tool's output is also checked on written-out lines by a test that needs no Java.
//!
//! Knobs: `ANNALS_KAFKA_TOOLS_SECS` bounds one run of a tool (default 300 s).
//!
//! The helpers (`dump_log_segments`, `parse_dump`, `compare_log_dump`, ...) are `pub` for the
//! transaction tests to come, which will look at control batches the same way.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use annals::format::BatchHeader;
use annals::{Compression, Log, ProducerConfig, Record, TopicConfig};

const HOW_TO_GET_THE_TOOLS: &str = "these tests run Apache Kafka's own DumpLogSegments and need \
    ANNALS_KAFKA_TOOLS, the directory of Kafka's jars. Get it with `ci/kafka-tools/fetch` (needs \
    Maven 3 and Java 17; it prints the directory), then run \
    `ANNALS_KAFKA_TOOLS=$(ci/kafka-tools/fetch) cargo test --test it kafka_tools -- --ignored`";

/// The class of Kafka 4.x's DumpLogSegments (it moved out of the broker's `kafka.tools` in 4.0).
pub const DUMP_LOG_SEGMENTS: &str = "org.apache.kafka.tools.DumpLogSegments";

/// The directory named by `ANNALS_KAFKA_TOOLS`; panics, saying how to get it, when it is unset
/// or holds no Kafka tools jar.
pub fn kafka_tools_dir() -> PathBuf {
    let dir = match std::env::var_os("ANNALS_KAFKA_TOOLS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => panic!("ANNALS_KAFKA_TOOLS is not set: {HOW_TO_GET_THE_TOOLS}"),
    };
    let has_tools_jar = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!("ANNALS_KAFKA_TOOLS={dir:?} cannot be read ({e}): {HOW_TO_GET_THE_TOOLS}")
        })
        .filter_map(|e| e.ok())
        .any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("kafka-tools-") && name.ends_with(".jar")
        });
    assert!(
        has_tools_jar,
        "ANNALS_KAFKA_TOOLS={dir:?} holds no kafka-tools-*.jar: {HOW_TO_GET_THE_TOOLS}"
    );
    dir
}

/// `$JAVA_HOME/bin/java` when it exists, else `java` from `PATH`.
fn java_binary() -> PathBuf {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let java = PathBuf::from(home).join("bin").join("java");
        if java.is_file() {
            return java;
        }
    }
    PathBuf::from("java")
}

/// How long one run of a Kafka tool may take: a JVM start and a dump of a few small segments
/// take seconds; minutes mean it hangs.
fn tool_bound() -> Duration {
    Duration::from_secs(env_usize("ANNALS_KAFKA_TOOLS_SECS", 300) as u64)
}

/// What one run of a Kafka tool left.
#[derive(Debug)]
pub struct ToolRun {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolRun {
    /// Why the run failed: a non-zero exit, or an exception (or the JVM's own `Error:`) on
    /// stderr even with a zero exit. `None` for a clean run.
    pub fn failure(&self) -> Option<String> {
        if !self.status.success() {
            return Some(format!("exited with {}", self.status));
        }
        let thrown = self
            .stderr
            .lines()
            .find(|l| l.contains("Exception") || l.starts_with("Error:"));
        thrown.map(|l| format!("exited 0 but stderr says: {l}"))
    }

    fn describe(&self) -> String {
        format!(
            "{}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.stdout, self.stderr
        )
    }
}

/// Runs `java -cp '<ANNALS_KAFKA_TOOLS>/*' <class> <args>`, waiting at most
/// `ANNALS_KAFKA_TOOLS_SECS` (the child is killed past that, and the test fails).
pub fn run_kafka_tool(class: &str, args: &[String]) -> ToolRun {
    let dir = kafka_tools_dir();
    let java = java_binary();
    let classpath = format!("{}/*", dir.display());
    // A short-lived tool: the quick JIT tier and the serial collector start fastest and leave
    // the machine's other cores to the other tests.
    let jvm_flags = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"];
    let command = format!(
        "{} {} -cp '{classpath}' {class} {}",
        java.display(),
        jvm_flags.join(" "),
        args.join(" ")
    );
    let mut child = Command::new(&java)
        .args(jvm_flags)
        .arg("-cp")
        .arg(&classpath)
        .arg(class)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {java:?} ({e}): Kafka's tools need Java 17+ on PATH or in JAVA_HOME"
            )
        });
    // Both pipes are drained while the child runs, so a large dump cannot block it on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + tool_bound();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let out = stdout.join().unwrap_or_default();
                let err = stderr.join().unwrap_or_default();
                panic!(
                    "{command}\nstill running after {:?}: killed it\n--- stdout\n{out}\n--- stderr\n{err}",
                    tool_bound()
                );
            }
            Err(e) => panic!("{command}: waiting for it failed: {e}"),
        }
    };
    ToolRun {
        command,
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs DumpLogSegments over `files` without judging the result.
pub fn run_dump_log_segments(files: &[&Path], args: &[&str]) -> ToolRun {
    assert!(!files.is_empty(), "DumpLogSegments needs at least one file");
    let absolute: Vec<String> = files
        .iter()
        .map(|f| {
            // Absolute, without symlinks: the tool names files in its reports by their absolute
            // path, and `parse_dump` matches those names to the files it dumped.
            let p = f
                .canonicalize()
                .unwrap_or_else(|e| panic!("{f:?}: {e}"))
                .to_string_lossy()
                .into_owned();
            assert!(!p.contains(','), "{p}: --files is comma-separated");
            p
        })
        .collect();
    let mut all = vec!["--files".to_string(), absolute.join(",")];
    all.extend(args.iter().map(|a| a.to_string()));
    run_kafka_tool(DUMP_LOG_SEGMENTS, &all)
}

/// True for the lines SLF4J prints when no logging backend is on the classpath (the tools need
/// none): they say nothing about the files.
fn is_logging_notice(line: &str) -> bool {
    line.starts_with("SLF4J")
}

/// Runs `DumpLogSegments --files a,b,... <args>` and returns what it printed: stdout, then the
/// lines of stderr (where it reports index mismatches and offset gaps, after everything else)
/// without SLF4J's notices. Fails the test, with both streams, if the tool exits non-zero or
/// throws.
pub fn dump_log_segments(files: &[&Path], args: &[&str]) -> String {
    let run = run_dump_log_segments(files, args);
    if let Some(why) = run.failure() {
        panic!("DumpLogSegments failed: {why}\n{}", run.describe());
    }
    let mut out = run.stdout.clone();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for line in run.stderr.lines().filter(|l| !is_logging_notice(l)) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One batch as DumpLogSegments prints it (`baseOffset: .. lastOffset: .. count: .. ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedBatch {
    pub base_offset: u64,
    pub last_offset: u64,
    /// `None` where the tool prints `null` (only for old magic).
    pub count: Option<u64>,
    pub base_sequence: i32,
    pub last_sequence: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partition_leader_epoch: i32,
    pub is_transactional: bool,
    pub is_control: bool,
    /// Byte position of the batch in its `.log`.
    pub position: u64,
    /// `CreateTime` or `LogAppendTime`.
    pub timestamp_type: String,
    pub max_timestamp: i64,
    pub size: u64,
    pub magic: i8,
    /// Kafka's codec name: `none`, `gzip`, `snappy`, `lz4`, `zstd`.
    pub compresscodec: String,
    pub crc: u32,
    /// Kafka's own CRC check of the batch.
    pub is_valid: bool,
    /// Filled only with `--deep-iteration`.
    pub records: Vec<DumpedRecord>,
}

/// The end-transaction marker of a control record (`endTxnMarker: COMMIT coordinatorEpoch: 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxnMarker {
    /// `COMMIT` or `ABORT`.
    pub control_type: String,
    pub coordinator_epoch: i32,
}

/// One record line (`| offset: .. CreateTime: .. keySize: .. ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedRecord {
    pub offset: u64,
    pub timestamp: i64,
    pub key_size: i32,
    pub value_size: i32,
    pub sequence: i32,
    pub header_keys: Vec<String>,
    /// With `--print-data-log`, for data records: the key as a string (absent for a null key).
    pub key: Option<String>,
    /// With `--print-data-log`, for data records: the value as a string (absent for a null
    /// value, a tombstone).
    pub payload: Option<String>,
    /// For a COMMIT/ABORT control record.
    pub end_txn_marker: Option<EndTxnMarker>,
    /// Any other control record: the rest of its line.
    pub other_control: Option<String>,
}

/// What the tool printed about one file (`Dumping <path>` up to the next one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpedFile {
    pub path: String,
    /// `.log`: `Log starting offset: N` (the base offset in the file name).
    pub start_offset: Option<u64>,
    pub batches: Vec<DumpedBatch>,
    /// `.index`: `offset: N position: P`.
    pub index_entries: Vec<(u64, u64)>,
    /// `.timeindex`: `timestamp: T offset: N`.
    pub time_index_entries: Vec<(i64, u64)>,
    /// `<path> is empty.` (an offset index with no entries).
    pub empty: bool,
    /// `<path> passed sanity check.` (`--index-sanity-check`).
    pub passed_sanity_check: bool,
    /// `.txnindex`: `version: 0 producerId: P firstOffset: F lastOffset: L lastStableOffset: S`.
    pub aborted_txns: Vec<(i64, u64, u64, u64)>,
}

impl DumpedFile {
    /// The offset of the first record the deep iteration printed.
    pub fn first_record_offset(&self) -> Option<u64> {
        self.batches
            .iter()
            .flat_map(|b| b.records.first())
            .map(|r| r.offset)
            .next()
    }
}

/// The parsed output of `dump_log_segments`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    pub files: Vec<DumpedFile>,
    /// Everything the tool reported as wrong (index entries that do not match the log, time
    /// index timestamps that do not match or go backwards, offset gaps, invalid trailing bytes),
    /// and every line this parser does not know, so a change in the tool's output fails loudly.
    pub problems: Vec<String>,
}

impl Dump {
    /// Fails the test, with `context`, if the tool reported anything wrong.
    #[track_caller]
    pub fn assert_clean(&self, context: &str) {
        assert!(
            self.problems.is_empty(),
            "{context}: DumpLogSegments reported problems:\n{}",
            self.problems.join("\n")
        );
    }

    pub fn file(&self, path: &Path) -> &DumpedFile {
        let want = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        self.files
            .iter()
            .find(|f| Path::new(&f.path) == want)
            .unwrap_or_else(|| panic!("no dump of {want:?} in {:?}", self.files_names()))
    }

    fn files_names(&self) -> Vec<&str> {
        self.files.iter().map(|f| f.path.as_str()).collect()
    }
}

/// `name: value` pairs of a line of single-token values, in order.
fn pairs(text: &str) -> Result<Vec<(&str, &str)>, String> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if !tokens.len().is_multiple_of(2) {
        return Err(format!("odd number of tokens in {text:?}"));
    }
    tokens
        .chunks(2)
        .map(|c| match c[0].strip_suffix(':') {
            Some(name) => Ok((name, c[1])),
            None => Err(format!("{:?} is not a `name:` in {text:?}", c[0])),
        })
        .collect()
}

/// Takes the fields `names` from `pairs` in this order (the timestamp's name, which is its type,
/// is given as `*`), returning the values.
fn fields<'a>(
    pairs: &[(&'a str, &'a str)],
    names: &[&str],
) -> Result<(Vec<&'a str>, Option<&'a str>), String> {
    if pairs.len() != names.len() {
        return Err(format!(
            "expected the fields {names:?}, got {:?}",
            pairs.iter().map(|p| p.0).collect::<Vec<_>>()
        ));
    }
    let mut timestamp_type = None;
    let mut values = Vec::new();
    for ((name, value), want) in pairs.iter().zip(names) {
        if *want == "*" {
            timestamp_type = Some(*name);
        } else if name != want {
            return Err(format!("expected `{want}:`, got `{name}:`"));
        }
        values.push(*value);
    }
    Ok((values, timestamp_type))
}

fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{name}: {v:?} is not a number of the expected kind"))
}

fn boolean(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{name}: {v:?} is not true/false")),
    }
}

const BATCH_FIELDS: &[&str] = &[
    "baseOffset",
    "lastOffset",
    "count",
    "baseSequence",
    "lastSequence",
    "producerId",
    "producerEpoch",
    "partitionLeaderEpoch",
    "isTransactional",
    "isControl",
    "deleteHorizonMs",
    "position",
    "*",
    "size",
    "magic",
    "compresscodec",
    "crc",
    "isvalid",
];

fn parse_batch(line: &str) -> Result<DumpedBatch, String> {
    let pairs = pairs(line)?;
    let (v, ts_type) = fields(&pairs, BATCH_FIELDS)?;
    Ok(DumpedBatch {
        base_offset: num("baseOffset", v[0])?,
        last_offset: num("lastOffset", v[1])?,
        count: if v[2] == "null" {
            None
        } else {
            Some(num("count", v[2])?)
        },
        base_sequence: num("baseSequence", v[3])?,
        last_sequence: num("lastSequence", v[4])?,
        producer_id: num("producerId", v[5])?,
        producer_epoch: num("producerEpoch", v[6])?,
        partition_leader_epoch: num("partitionLeaderEpoch", v[7])?,
        is_transactional: boolean("isTransactional", v[8])?,
        is_control: boolean("isControl", v[9])?,
        position: num("position", v[11])?,
        timestamp_type: ts_type.unwrap_or_default().to_string(),
        max_timestamp: num("timestamp", v[12])?,
        size: num("size", v[13])?,
        magic: num("magic", v[14])?,
        compresscodec: v[15].to_string(),
        crc: num("crc", v[16])?,
        is_valid: boolean("isvalid", v[17])?,
        records: Vec::new(),
    })
}

const RECORD_FIELDS: &[&str] = &["offset", "*", "keySize", "valueSize", "sequence"];

/// `| offset: N <TimestampType>: T keySize: K valueSize: V sequence: S headerKeys: [a,b]` and
/// then, for a data record with `--print-data-log`, ` key: K payload: P` (no key part for a null
/// key, no payload part for a null value), or for a control record ` endTxnMarker: COMMIT coordinatorEpoch: E` (or another
/// control type). Keys must not contain " payload: " and header keys no `,` or `]`.
fn parse_record(line: &str) -> Result<DumpedRecord, String> {
    let body = line
        .strip_prefix("| ")
        .ok_or_else(|| format!("a record line starts with `| `: {line:?}"))?;
    let (fixed, after) = body
        .split_once(" headerKeys: [")
        .ok_or_else(|| format!("no headerKeys in {line:?}"))?;
    let (header_keys, rest) = after
        .split_once(']')
        .ok_or_else(|| format!("unterminated headerKeys in {line:?}"))?;
    let pairs = pairs(fixed)?;
    let (v, _) = fields(&pairs, RECORD_FIELDS)?;
    let mut record = DumpedRecord {
        offset: num("offset", v[0])?,
        timestamp: num("timestamp", v[1])?,
        key_size: num("keySize", v[2])?,
        value_size: num("valueSize", v[3])?,
        sequence: num("sequence", v[4])?,
        header_keys: if header_keys.is_empty() {
            Vec::new()
        } else {
            header_keys.split(',').map(str::to_string).collect()
        },
        key: None,
        payload: None,
        end_txn_marker: None,
        other_control: None,
    };
    if let Some(marker) = rest.strip_prefix(" endTxnMarker: ") {
        let (control_type, epoch) = marker
            .split_once(" coordinatorEpoch: ")
            .ok_or_else(|| format!("no coordinatorEpoch in {line:?}"))?;
        record.end_txn_marker = Some(EndTxnMarker {
            control_type: control_type.to_string(),
            coordinator_epoch: num("coordinatorEpoch", epoch)?,
        });
        return Ok(record);
    }
    for other in [" controlType: ", " LeaderChange: ", " Snapshot", " KRaft"] {
        if rest.starts_with(other) {
            record.other_control = Some(rest.trim_start().to_string());
            return Ok(record);
        }
    }
    let data = if let Some(keyed) = rest.strip_prefix(" key: ") {
        match keyed.split_once(" payload: ") {
            Some((key, payload)) => {
                record.key = Some(key.to_string());
                Some(payload)
            }
            None => {
                record.key = Some(keyed.to_string());
                None
            }
        }
    } else {
        rest.strip_prefix(" payload: ")
    };
    record.payload = data.map(str::to_string);
    if record.key.is_none() && record.payload.is_none() && !rest.is_empty() {
        return Err(format!("unrecognised record tail {rest:?} in {line:?}"));
    }
    Ok(record)
}

/// Parses what [`dump_log_segments`] returns. Lines it does not recognise go to
/// [`Dump::problems`]; so does every report of something wrong, except one known quirk of Kafka
/// 4.x's tool: with `--deep-iteration` it reports a file whose first record is not offset 0 as
/// "non-consecutive" from -1 to that first offset (it compares the first record with an
/// initial -1 + 1). That exact pair is accepted; any other gap is a problem.
pub fn parse_dump(output: &str) -> Dump {
    let mut dump = Dump::default();
    // The file a `Non-consecutive offsets in <file>` report is about, while its pairs follow.
    let mut gaps_of: Option<String> = None;
    for line in output.lines() {
        if let Some(file) = line.strip_prefix("Non-consecutive offsets in ") {
            gaps_of = Some(file.to_string());
            continue;
        }
        if let (Some(file), Some(pair)) = (&gaps_of, line.strip_prefix("  ")) {
            if let Some((from, to)) = pair.split_once(" is followed by ") {
                let first = dump
                    .files
                    .iter()
                    .find(|f| &f.path == file)
                    .and_then(DumpedFile::first_record_offset);
                let quirk = from == "-1" && to.parse::<u64>().ok() == first && first.is_some();
                if !quirk {
                    dump.problems.push(format!(
                        "non-consecutive offsets in {file}: {from} is followed by {to}"
                    ));
                }
                continue;
            }
        }
        gaps_of = None;
        if let Err(e) = parse_line(line, &mut dump) {
            dump.problems.push(e);
        }
    }
    dump
}

/// Reports of something wrong that the tool prints (on stderr, after the dumps); each of their
/// lines, and the detail lines after them, is a problem.
const PROBLEM_PREFIXES: &[&str] = &[
    "Mismatches in :",
    "  Index offset: ",
    "Found timestamp mismatch in :",
    "Found out of order timestamp in :",
    "  Index timestamp: ",
    "The following indexed offsets are not found in",
    "Indexed offset: ",
    "Ignoring unknown file ",
];

fn parse_line(line: &str, dump: &mut Dump) -> Result<(), String> {
    if line.trim().is_empty() {
        return Ok(());
    }
    if let Some(path) = line.strip_prefix("Dumping ") {
        dump.files.push(DumpedFile {
            path: path.to_string(),
            ..DumpedFile::default()
        });
        return Ok(());
    }
    if PROBLEM_PREFIXES.iter().any(|p| line.starts_with(p)) {
        return Err(line.to_string());
    }
    if line.starts_with("Found ") && line.contains(" invalid bytes at the end of ") {
        return Err(line.to_string());
    }
    let file = dump
        .files
        .last_mut()
        .ok_or_else(|| format!("a line before any `Dumping`: {line:?}"))?;
    if let Some(n) = line.strip_prefix("Log starting offset: ") {
        file.start_offset = Some(num("Log starting offset", n)?);
    } else if line.starts_with("baseOffset: ") {
        let batch = parse_batch(line).map_err(|e| format!("batch line: {e}"))?;
        file.batches.push(batch);
    } else if line.starts_with("| offset: ") {
        let record = parse_record(line).map_err(|e| format!("record line: {e}"))?;
        let batch = file
            .batches
            .last_mut()
            .ok_or_else(|| format!("a record before any batch: {line:?}"))?;
        batch.records.push(record);
    } else if line.starts_with("offset: ") {
        let p = pairs(line)?;
        let (v, _) = fields(&p, &["offset", "position"])?;
        file.index_entries
            .push((num("offset", v[0])?, num("position", v[1])?));
    } else if line.starts_with("timestamp: ") {
        let p = pairs(line)?;
        let (v, _) = fields(&p, &["timestamp", "offset"])?;
        file.time_index_entries
            .push((num("timestamp", v[0])?, num("offset", v[1])?));
    } else if line.starts_with("version: ") {
        let p = pairs(line)?;
        let fields_of = [
            "version",
            "producerId",
            "firstOffset",
            "lastOffset",
            "lastStableOffset",
        ];
        let (v, _) = fields(&p, &fields_of)?;
        if v[0] != "0" {
            return Err(format!("aborted transaction entry of version {}", v[0]));
        }
        file.aborted_txns.push((
            num("producerId", v[1])?,
            num("firstOffset", v[2])?,
            num("lastOffset", v[3])?,
            num("lastStableOffset", v[4])?,
        ));
    } else if line == format!("{} is empty.", file.path) {
        file.empty = true;
    } else if line == format!("{} passed sanity check.", file.path) {
        file.passed_sanity_check = true;
    } else {
        return Err(format!("unrecognised line: {line:?}"));
    }
    Ok(())
}

/// A batch as annals reads it back: its header and its records.
#[derive(Debug, Clone)]
pub struct AnnalsBatch {
    pub header: BatchHeader,
    pub records: Vec<AnnalsRecord>,
}

#[derive(Debug, Clone)]
pub struct AnnalsRecord {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub header_keys: Vec<String>,
}

/// Every batch of partition `p` from its log start to its high watermark, read with annals.
pub fn annals_batches(p: &annals::Partition) -> Vec<AnnalsBatch> {
    let mut out = Vec::new();
    let mut at = p.log_start_offset();
    while at < p.high_watermark() {
        let mut views = Vec::new();
        p.read_batches(at, 1 << 20, &mut views)
            .unwrap_or_else(|e| panic!("read_batches({at}): {e}"));
        assert!(!views.is_empty(), "read_batches({at}) returned nothing");
        for view in &views {
            let records = view
                .records()
                .map(|r| {
                    let r = r.expect("annals reads its own record");
                    AnnalsRecord {
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.map(<[u8]>::to_vec),
                        header_keys: r.headers().map(|(k, _)| k.to_string()).collect(),
                    }
                })
                .collect();
            at = view.next_offset();
            out.push(AnnalsBatch {
                header: *view.header(),
                records,
            });
        }
    }
    out
}

/// Kafka's name of annals' codec id.
pub fn kafka_codec_name(codec_id: u8) -> &'static str {
    match codec_id {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// Every difference between the batches DumpLogSegments printed for `logs` (the `.log` files of
/// one partition, in offset order, dumped with `--deep-iteration --print-data-log`) and what
/// annals reads back (`want`); empty when Kafka sees exactly what annals wrote, each batch
/// valid by Kafka's CRC check. Keys and values are compared as the UTF-8 text the tool prints.
pub fn compare_log_dump(logs: &[&DumpedFile], want: &[AnnalsBatch]) -> Vec<String> {
    let mut diffs = Vec::new();
    for file in logs {
        let name_offset = Path::new(&file.path)
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        if file.start_offset.is_none() || file.start_offset != name_offset {
            diffs.push(format!(
                "{}: starting offset {:?}, file name says {name_offset:?}",
                file.path, file.start_offset
            ));
        }
        if let (Some(first), Some(start)) = (file.batches.first(), file.start_offset) {
            if first.base_offset != start {
                diffs.push(format!(
                    "{}: first batch at {} but the segment starts at {start}",
                    file.path, first.base_offset
                ));
            }
        }
        let mut position = 0;
        for b in &file.batches {
            if b.position != position {
                diffs.push(format!(
                    "{}: batch {} at position {}, expected {position}",
                    file.path, b.base_offset, b.position
                ));
            }
            position = b.position + b.size;
        }
    }
    let got: Vec<&DumpedBatch> = logs.iter().flat_map(|f| &f.batches).collect();
    if got.len() != want.len() {
        diffs.push(format!(
            "Kafka sees {} batches, annals reads {}",
            got.len(),
            want.len()
        ));
    }
    for (g, w) in got.iter().zip(want) {
        let h = &w.header;
        let at = format!("batch at {}", h.base_offset);
        let mut check = |what: &str, same: bool, kafka: String, annals: String| {
            if !same {
                diffs.push(format!("{at}: {what}: Kafka {kafka}, annals {annals}"));
            }
        };
        check("isValid", g.is_valid, g.is_valid.to_string(), "true".into());
        check(
            "baseOffset",
            g.base_offset == h.base_offset,
            g.base_offset.to_string(),
            h.base_offset.to_string(),
        );
        check(
            "lastOffset",
            g.last_offset == h.last_offset(),
            g.last_offset.to_string(),
            h.last_offset().to_string(),
        );
        check(
            "count",
            g.count == Some(u64::from(h.record_count)),
            format!("{:?}", g.count),
            h.record_count.to_string(),
        );
        check(
            "count vs records",
            g.records.len() == w.records.len(),
            g.records.len().to_string(),
            w.records.len().to_string(),
        );
        check(
            "producerId",
            g.producer_id == h.producer_id,
            g.producer_id.to_string(),
            h.producer_id.to_string(),
        );
        check(
            "producerEpoch",
            g.producer_epoch == h.producer_epoch,
            g.producer_epoch.to_string(),
            h.producer_epoch.to_string(),
        );
        check(
            "baseSequence",
            g.base_sequence == h.base_sequence,
            g.base_sequence.to_string(),
            h.base_sequence.to_string(),
        );
        check(
            "isTransactional",
            g.is_transactional == h.is_transactional(),
            g.is_transactional.to_string(),
            h.is_transactional().to_string(),
        );
        check(
            "isControl",
            g.is_control == h.is_control(),
            g.is_control.to_string(),
            h.is_control().to_string(),
        );
        check(
            "partitionLeaderEpoch",
            g.partition_leader_epoch == h.partition_leader_epoch,
            g.partition_leader_epoch.to_string(),
            h.partition_leader_epoch.to_string(),
        );
        check("crc", g.crc == h.crc, g.crc.to_string(), h.crc.to_string());
        check(
            "size",
            g.size as usize == h.total_len(),
            g.size.to_string(),
            h.total_len().to_string(),
        );
        check("magic", g.magic == 2, g.magic.to_string(), "2".into());
        check(
            "compresscodec",
            g.compresscodec == kafka_codec_name(h.codec_id()),
            g.compresscodec.clone(),
            kafka_codec_name(h.codec_id()).into(),
        );
        check(
            "maxTimestamp",
            g.max_timestamp == h.max_timestamp,
            g.max_timestamp.to_string(),
            h.max_timestamp.to_string(),
        );
        for (i, (gr, wr)) in g.records.iter().zip(&w.records).enumerate() {
            let text = |b: &Option<Vec<u8>>| {
                b.as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            };
            let sequence = if h.base_sequence < 0 {
                -1
            } else {
                h.base_sequence.wrapping_add(i as i32)
            };
            let want_payload = if h.is_control() {
                None
            } else {
                text(&wr.value)
            };
            let want_key = if h.is_control() { None } else { text(&wr.key) };
            let same = gr.offset == wr.offset
                && gr.timestamp == wr.timestamp
                && gr.sequence == sequence
                && gr.header_keys == wr.header_keys
                && gr.key_size == wr.key.as_ref().map_or(-1, |k| k.len() as i32)
                && gr.value_size == wr.value.as_ref().map_or(-1, |v| v.len() as i32)
                && gr.key == want_key
                && gr.payload == want_payload;
            if !same {
                diffs.push(format!(
                    "{at}: record {i}: Kafka {gr:?}, annals {wr:?} (sequence {sequence})"
                ));
            }
        }
    }
    diffs
}

/// Files of `dir` with extension `ext`, sorted (segment names sort by base offset).
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn refs(paths: &[PathBuf]) -> Vec<&Path> {
    paths.iter().map(PathBuf::as_path).collect()
}

/// Value text that neither lz4 nor zstd shrinks much, so a few KiB of records span several
/// 2 KiB segments under every codec.
fn noise(rng: &mut Rng) -> String {
    (0..3).map(|_| format!("{:016x}", rng.next_u64())).collect()
}

const TOPIC: &str = "events";
const PARTITIONS: u32 = 2;

/// What `write_log` wrote, read back by annals before the log was closed.
struct Written {
    dir: tempfile::TempDir,
    producer_id: (i64, i16),
    /// Per partition.
    batches: Vec<Vec<AnnalsBatch>>,
}

impl Written {
    fn partition_dir(&self, p: u32) -> PathBuf {
        self.dir.path().join(format!("{TOPIC}-{p}"))
    }
}

/// A real annals log: one topic of two partitions with 2 KiB segments and `compression`,
/// written by an idempotent producer (keyed records with headers, in many small batches) and by
/// `Partition::append` batches in between (one holds a keyless record and a tombstone); closed.
fn write_log(compression: Compression) -> Written {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .partitions(PARTITIONS)
            .segment_bytes(2048)
            .index_interval_bytes(512)
            .compression(compression),
    )
    .unwrap();
    let producer = log
        .producer(ProducerConfig::default().batch_size(1024))
        .unwrap();
    let codec = kafka_codec_name(compression.codec_id());
    let mut rng = Rng::new(0x006b_6166_6b61);
    // Explicit, increasing timestamps: segments then roll by size only, never by segment_ms.
    let base_ts = now_ms();
    let mut n = 0i64;
    for round in 0..8u32 {
        for _ in 0..40 {
            let mut record = Record::new(format!("{codec} value {n} {}", noise(&mut rng)))
                .key(format!("key-{n}"))
                .timestamp(base_ts + n);
            for h in 0..(n % 3) {
                record = record.header(format!("h{h}"), format!("header {h} of {n}"));
            }
            producer.send(TOPIC, record).unwrap();
            n += 1;
        }
        producer.flush().unwrap();
        let p = log.partition(TOPIC, round % PARTITIONS).unwrap();
        let mut records: Vec<Record> = (0..5)
            .map(|i| {
                Record::new(format!("appended {n}.{i} {}", noise(&mut rng)))
                    .key(format!("appended-key-{n}.{i}"))
                    .header("source", "append")
                    .timestamp(base_ts + n)
            })
            .collect();
        if round == 3 {
            records.push(Record::new("no key here").timestamp(base_ts + n));
            records.push(Record::tombstone("deleted-key").timestamp(base_ts + n));
        }
        p.append(&records).unwrap();
        n += 1;
    }
    producer.flush().unwrap();
    let producer_id = producer
        .producer_id()
        .expect("an idempotent producer that wrote has a producer id");
    producer.close().unwrap();
    let batches = (0..PARTITIONS)
        .map(|p| annals_batches(&log.partition(TOPIC, p).unwrap()))
        .collect();
    log.close().unwrap();
    drop(log);
    Written {
        dir,
        producer_id,
        batches,
    }
}

/// Kafka's DumpLogSegments reads every segment, offset index and time index of a log written
/// with `compression`, and sees exactly what annals reads back.
fn kafka_reads_what_annals_wrote(compression: Compression) {
    let written = write_log(compression);
    let codec = kafka_codec_name(compression.codec_id());
    for p in 0..PARTITIONS {
        let ctx = format!("{codec}, partition {p}");
        let dir = written.partition_dir(p);
        let want = &written.batches[p as usize];

        // The producer's batches carry annals' producer id (ids from 2^62 on, so they can never
        // collide with a Kafka cluster's), the appended ones none.
        assert!(
            written.producer_id.0 >= 1 << 62,
            "{ctx}: {:?}",
            written.producer_id
        );
        let produced = want
            .iter()
            .filter(|b| b.header.producer_id == written.producer_id.0)
            .count();
        let appended = want.iter().filter(|b| b.header.producer_id == -1).count();
        assert!(
            produced >= 5 && appended >= 3,
            "{ctx}: {produced} produced and {appended} appended batches"
        );
        assert_eq!(
            produced + appended,
            want.len(),
            "{ctx}: batches of neither kind"
        );

        let logs = files_with_extension(&dir, "log");
        assert!(
            logs.len() >= 3,
            "{ctx}: only {} segments; the test wants several",
            logs.len()
        );
        let out = dump_log_segments(&refs(&logs), &["--deep-iteration", "--print-data-log"]);
        let dump = parse_dump(&out);
        dump.assert_clean(&ctx);
        let dumped: Vec<&DumpedFile> = logs.iter().map(|l| dump.file(l)).collect();
        let diffs = compare_log_dump(&dumped, want);
        assert!(
            diffs.is_empty(),
            "{ctx}: Kafka disagrees with annals:\n{}",
            diffs.join("\n")
        );
        for b in dumped.iter().flat_map(|f| &f.batches) {
            if b.producer_id != -1 {
                assert!(
                    b.producer_id >= 1 << 62,
                    "{ctx}: producer id {}",
                    b.producer_id
                );
                assert_eq!(
                    (b.producer_id, b.producer_epoch),
                    written.producer_id,
                    "{ctx}"
                );
            }
        }

        let mut indexes = files_with_extension(&dir, "index");
        indexes.extend(files_with_extension(&dir, "timeindex"));
        assert_eq!(indexes.len(), 2 * logs.len(), "{ctx}: indexes {indexes:?}");
        let sanity = parse_dump(&dump_log_segments(
            &refs(&indexes),
            &["--index-sanity-check"],
        ));
        sanity.assert_clean(&format!("{ctx}, --index-sanity-check"));
        for f in &indexes {
            let d = sanity.file(f);
            assert!(
                d.passed_sanity_check || d.empty,
                "{ctx}: {f:?} neither passed the sanity check nor is empty: {d:?}"
            );
        }

        // A plain dump checks every entry against the log: an offset index entry must point at
        // the batch ending at its offset, a time index entry must carry that batch's max
        // timestamp and the ones before it must be older.
        let plain = parse_dump(&dump_log_segments(&refs(&indexes), &[]));
        plain.assert_clean(&format!("{ctx}, plain index dump"));
        let mut offset_entries = 0;
        let mut time_entries = 0;
        for (log_path, d) in logs.iter().zip(&dumped) {
            let index = plain.file(&log_path.with_extension("index"));
            let time = plain.file(&log_path.with_extension("timeindex"));
            offset_entries += index.index_entries.len();
            time_entries += time.time_index_entries.len();
            for &(offset, position) in &index.index_entries {
                let batch = d.batches.iter().find(|b| b.position == position);
                assert!(
                    batch.is_some_and(|b| b.last_offset == offset),
                    "{ctx}: {:?} entry ({offset}, {position}) is not at the batch ending at {offset}",
                    index.path
                );
            }
            for &(timestamp, offset) in &time.time_index_entries {
                let batch = d.batches.iter().find(|b| b.last_offset == offset);
                assert!(
                    batch.is_some_and(|b| b.max_timestamp == timestamp),
                    "{ctx}: {:?} entry ({timestamp}, {offset}) is not the max timestamp of the batch ending at {offset}",
                    time.path
                );
            }
        }
        assert!(
            offset_entries > 0 && time_entries > 0,
            "{ctx}: the indexes are all empty; the test wants entries"
        );
    }
}

#[test]
#[ignore = "needs Kafka's tools: .ci/run fetches them (ci/kafka-tools/fetch) and runs these with --ignored"]
fn kafka_reads_uncompressed_segments() {
    kafka_reads_what_annals_wrote(Compression::None);
}

#[test]
#[ignore = "needs Kafka's tools: .ci/run fetches them (ci/kafka-tools/fetch) and runs these with --ignored"]
fn kafka_reads_lz4_segments() {
    kafka_reads_what_annals_wrote(Compression::Lz4);
}

#[test]
#[ignore = "needs Kafka's tools: .ci/run fetches them (ci/kafka-tools/fetch) and runs these with --ignored"]
fn kafka_reads_zstd_segments() {
    kafka_reads_what_annals_wrote(Compression::zstd());
}

fn overwrite(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = std::fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).unwrap();
}

/// The checks above can fail: on corrupted copies of a real log's files, the tool (and so
/// `dump_log_segments`, `parse_dump` and `compare_log_dump`) reports each damage.
#[test]
#[ignore = "needs Kafka's tools: .ci/run fetches them (ci/kafka-tools/fetch) and runs these with --ignored"]
fn corrupted_copies_are_reported() {
    let written = write_log(Compression::None);
    let want = &written.batches[0];
    let original = written.partition_dir(0);
    let logs = files_with_extension(&original, "log");
    // The segment whose offset index has an entry past position 0 (one that can be pointed at
    // the wrong batch).
    let (seg, index_entries) = logs
        .iter()
        .find_map(|l| {
            let entries = std::fs::read(l.with_extension("index")).unwrap();
            let later = entries.len() / 8 >= 1 && entries[entries.len() - 4..] != [0, 0, 0, 0];
            later.then(|| (l.clone(), entries.len() / 8))
        })
        .expect("a segment with an offset index entry past its first batch");
    let name = seg.file_name().unwrap().to_owned();
    let fresh = || {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&original, copy.path());
        let seg = copy.path().join(&name);
        (copy, seg)
    };

    // The untouched copy is clean (so what follows is caught for the damage, not the copy).
    let (_copy, s) = fresh();
    let clean = parse_dump(&dump_log_segments(
        &[&s.with_extension("index"), &s.with_extension("timeindex")],
        &[],
    ));
    clean.assert_clean("untouched copy");

    // An offset index entry pointing at the segment's first batch instead of its own.
    let (_copy, s) = fresh();
    overwrite(
        &s.with_extension("index"),
        (index_entries - 1) * 8 + 4,
        &[0, 0, 0, 0],
    );
    let dump = parse_dump(&dump_log_segments(&[&s.with_extension("index")], &[]));
    assert!(
        dump.problems
            .iter()
            .any(|p| p.starts_with("Mismatches in :")),
        "a misplaced index entry went unreported: {dump:?}"
    );

    // An offset index entry below the segment's base offset: the broker's startup check throws.
    let (_copy, s) = fresh();
    overwrite(
        &s.with_extension("index"),
        (index_entries - 1) * 8,
        &[0xff, 0xff, 0xff, 0xf0],
    );
    let run = run_dump_log_segments(&[&s.with_extension("index")], &["--index-sanity-check"]);
    assert!(
        run.failure().is_some(),
        "a corrupt index passed the sanity check: {run:?}"
    );

    // A time index entry whose timestamp is not its batch's.
    let (_copy, s) = fresh();
    let time = s.with_extension("timeindex");
    let len = std::fs::metadata(&time).unwrap().len() as usize;
    assert!(len >= 12, "{time:?} is empty");
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&std::fs::read(&time).unwrap()[len - 12..len - 4]);
    let shifted = (i64::from_be_bytes(stamp) - 1).to_be_bytes();
    overwrite(&time, len - 12, &shifted);
    let dump = parse_dump(&dump_log_segments(&[&time], &[]));
    assert!(
        dump.problems
            .iter()
            .any(|p| p.starts_with("Found timestamp mismatch in :")),
        "a wrong time index timestamp went unreported: {dump:?}"
    );

    // A flipped byte inside a record: Kafka's CRC check fails and the comparison says so.
    let (copy, _) = fresh();
    let copied_logs = files_with_extension(copy.path(), "log");
    let last = copied_logs.last().unwrap();
    let size = std::fs::metadata(last).unwrap().len() as usize;
    let mut byte = std::fs::read(last).unwrap()[size - 2];
    byte ^= 0x20;
    overwrite(last, size - 2, &[byte]);
    let dump = parse_dump(&dump_log_segments(
        &refs(&copied_logs),
        &["--deep-iteration", "--print-data-log"],
    ));
    let dumped: Vec<&DumpedFile> = copied_logs.iter().map(|l| dump.file(l)).collect();
    let diffs = compare_log_dump(&dumped, want);
    assert!(
        diffs.iter().any(|d| d.contains("isValid")),
        "a corrupted batch went unnoticed: {diffs:?}"
    );

    // Bytes after the last batch that are no batch.
    let (copy, _) = fresh();
    let copied_logs = files_with_extension(copy.path(), "log");
    let last = copied_logs.last().unwrap();
    let mut data = std::fs::read(last).unwrap();
    data.extend_from_slice(b"not a batch at all");
    std::fs::write(last, data).unwrap();
    let dump = parse_dump(&dump_log_segments(
        &[last],
        &["--deep-iteration", "--print-data-log"],
    ));
    assert!(
        dump.problems
            .iter()
            .any(|p| p.contains("invalid bytes at the end of")),
        "trailing garbage went unreported: {dump:?}"
    );
}

/// The parser on lines in the shapes Kafka 4.x's DumpLogSegments prints (written out here, so
/// this runs without Java): batches, data and control records, index entries, the reports of
/// damage, the known first-record quirk, and a line it does not know.
#[test]
fn parse_dump_reads_each_shape() {
    let out = "\
Dumping /d/00000000000000000000.log
Log starting offset: 0
baseOffset: 0 lastOffset: 1 count: 2 baseSequence: 0 lastSequence: 1 producerId: 4611686018427387904 producerEpoch: 3 partitionLeaderEpoch: 0 isTransactional: true isControl: false deleteHorizonMs: OptionalLong.empty position: 0 CreateTime: 1700000000001 size: 100 magic: 2 compresscodec: zstd crc: 4077243286 isvalid: true
| offset: 0 CreateTime: 1700000000000 keySize: 2 valueSize: 9 sequence: 0 headerKeys: [a,b] key: k0 payload: value 0 x
| offset: 1 CreateTime: 1700000000001 keySize: -1 valueSize: 3 sequence: 1 headerKeys: [] payload: v 1
baseOffset: 2 lastOffset: 2 count: 1 baseSequence: -1 lastSequence: -1 producerId: 4611686018427387904 producerEpoch: 3 partitionLeaderEpoch: 0 isTransactional: true isControl: true deleteHorizonMs: OptionalLong.empty position: 100 CreateTime: 1700000000002 size: 78 magic: 2 compresscodec: none crc: 1 isvalid: false
| offset: 2 CreateTime: 1700000000002 keySize: 4 valueSize: 6 sequence: -1 headerKeys: [] endTxnMarker: ABORT coordinatorEpoch: 7
Dumping /d/00000000000000000005.log
Log starting offset: 5
baseOffset: 5 lastOffset: 5 count: 1 baseSequence: -1 lastSequence: -1 producerId: -1 producerEpoch: -1 partitionLeaderEpoch: 0 isTransactional: false isControl: false deleteHorizonMs: OptionalLong.empty position: 0 LogAppendTime: 9 size: 70 magic: 2 compresscodec: lz4 crc: 2 isvalid: true
| offset: 5 LogAppendTime: 9 keySize: 1 valueSize: -1 sequence: -1 headerKeys: [h] key: k
Dumping /d/00000000000000000005.index
offset: 9 position: 70
Dumping /d/00000000000000000005.timeindex
timestamp: 9 offset: 5
Dumping /d/00000000000000000000.index
/d/00000000000000000000.index is empty.
Non-consecutive offsets in /d/00000000000000000005.log
  -1 is followed by 5
";
    let dump = parse_dump(out);
    dump.assert_clean("well-formed output");
    assert_eq!(dump.files.len(), 5);
    let first = &dump.files[0];
    assert_eq!(first.start_offset, Some(0));
    let b = &first.batches[0];
    assert_eq!(
        (
            b.base_offset,
            b.last_offset,
            b.count,
            b.producer_id,
            b.producer_epoch
        ),
        (0, 1, Some(2), 1 << 62, 3)
    );
    assert!(b.is_transactional && !b.is_control && b.is_valid);
    assert_eq!(
        (b.compresscodec.as_str(), b.crc, b.timestamp_type.as_str()),
        ("zstd", 4077243286, "CreateTime")
    );
    assert_eq!(b.records[0].header_keys, ["a", "b"]);
    assert_eq!(b.records[0].key.as_deref(), Some("k0"));
    assert_eq!(b.records[0].payload.as_deref(), Some("value 0 x"));
    assert_eq!(
        (b.records[1].key.as_deref(), b.records[1].payload.as_deref()),
        (None, Some("v 1"))
    );
    let control = &first.batches[1];
    assert!(control.is_control && !control.is_valid);
    assert_eq!(
        control.records[0].end_txn_marker,
        Some(EndTxnMarker {
            control_type: "ABORT".into(),
            coordinator_epoch: 7
        })
    );
    assert_eq!(control.records[0].payload, None);
    let tombstone = &dump.files[1].batches[0].records[0];
    assert_eq!(
        (tombstone.key.as_deref(), tombstone.payload.as_deref()),
        (Some("k"), None)
    );
    assert_eq!(dump.files[1].batches[0].timestamp_type, "LogAppendTime");
    assert_eq!(dump.files[2].index_entries, [(9, 70)]);
    assert_eq!(dump.files[3].time_index_entries, [(9, 5)]);
    assert!(dump.files[4].empty);

    // Every report of damage, a real gap, and an unknown line are problems.
    let bad = format!(
        "{out}\
Non-consecutive offsets in /d/00000000000000000000.log
  1 is followed by 3
Mismatches in :/d/00000000000000000005.index
  Index offset: 9, log offset: 5
Found timestamp mismatch in :/d/00000000000000000005.timeindex
  Index timestamp: 8, log timestamp: 9
The following indexed offsets are not found in :/d/00000000000000000005.timeindex
Indexed offset: 4, found log offset: 5
Found 13 invalid bytes at the end of 00000000000000000005.log
something new
"
    );
    let dump = parse_dump(&bad);
    assert_eq!(dump.problems.len(), 9, "{:#?}", dump.problems);
    assert!(dump.problems[0].contains("1 is followed by 3"));
    assert!(dump.problems[8].contains("something new"));
}

/// A log with transactions: committed and aborted ones, interleaved over two partitions and
/// several segments, plus plain records between them; closed. Returns the directory and, per
/// partition, the markers annals wrote (`true` for COMMIT) in offset order.
fn write_transactional_log() -> (tempfile::TempDir, Vec<Vec<bool>>) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .partitions(PARTITIONS)
            .segment_bytes(2048)
            .index_interval_bytes(512),
    )
    .unwrap();
    let producer = log
        .producer(ProducerConfig::default().transactional_id("kafka-tools"))
        .unwrap();
    producer.init_transactions().unwrap();
    let mut markers = vec![Vec::new(); PARTITIONS as usize];
    for t in 0..12u32 {
        producer.begin_transaction().unwrap();
        for i in 0..30 {
            producer
                .send(
                    TOPIC,
                    Record::new(format!("txn {t} record {i}")).key(format!("k{i}")),
                )
                .unwrap();
        }
        let commit = t % 3 != 1;
        if commit {
            producer.commit_transaction().unwrap();
        } else {
            producer.abort_transaction().unwrap();
        }
        for m in markers.iter_mut() {
            m.push(commit);
        }
        log.partition(TOPIC, t % PARTITIONS)
            .unwrap()
            .append(&[Record::new(format!("plain after {t}"))])
            .unwrap();
    }
    producer.close().unwrap();
    log.close().unwrap();
    (dir, markers)
}

#[test]
#[ignore = "needs Kafka's tools: .ci/run fetches them (ci/kafka-tools/fetch) and runs these with --ignored"]
fn kafka_reads_transactional_segments() {
    let (dir, markers) = write_transactional_log();
    for p in 0..PARTITIONS {
        let ctx = format!("transactions, partition {p}");
        let pdir = dir.path().join(format!("{TOPIC}-{p}"));
        let logs = files_with_extension(&pdir, "log");
        assert!(logs.len() >= 3, "{ctx}: {} segments", logs.len());
        let dump = parse_dump(&dump_log_segments(
            &refs(&logs),
            &["--deep-iteration", "--print-data-log"],
        ));
        dump.assert_clean(&ctx);
        let batches: Vec<&DumpedBatch> = logs.iter().flat_map(|l| &dump.file(l).batches).collect();
        assert!(
            batches.iter().all(|b| b.is_valid),
            "{ctx}: an invalid batch"
        );
        // Markers, as Kafka reads them.
        let mut seen = Vec::new();
        for b in batches.iter().filter(|b| b.is_control) {
            assert!(
                b.is_transactional,
                "{ctx}: a control batch without the transactional bit"
            );
            assert_eq!(b.compresscodec, "none", "{ctx}");
            assert_eq!(b.base_sequence, -1, "{ctx}");
            assert_eq!(b.records.len(), 1, "{ctx}: {b:?}");
            let marker = b.records[0]
                .end_txn_marker
                .as_ref()
                .unwrap_or_else(|| panic!("{ctx}: no endTxnMarker in {b:?}"));
            seen.push(marker.control_type == "COMMIT");
            assert!(
                ["COMMIT", "ABORT"].contains(&marker.control_type.as_str()),
                "{ctx}: {marker:?}"
            );
        }
        assert_eq!(seen, markers[p as usize], "{ctx}: markers");
        // Data batches of the transactions carry the transactional bit and the producer's id.
        let txn_data = batches
            .iter()
            .filter(|b| b.is_transactional && !b.is_control)
            .count();
        assert!(
            txn_data >= 12,
            "{ctx}: {txn_data} transactional data batches"
        );
        assert!(
            batches
                .iter()
                .filter(|b| b.is_transactional)
                .all(|b| b.producer_id >= 1 << 62),
            "{ctx}"
        );
        // The aborted-transaction indexes: Kafka's reading of each equals what annals wrote,
        // and every ABORT marker is in the index of its segment.
        let txn_indexes = files_with_extension(&pdir, "txnindex");
        assert!(!txn_indexes.is_empty(), "{ctx}: no .txnindex");
        let dumped = parse_dump(&dump_log_segments(&refs(&txn_indexes), &[]));
        dumped.assert_clean(&format!("{ctx}, .txnindex"));
        let mut entries = 0;
        for f in &txn_indexes {
            let bytes = std::fs::read(f).unwrap();
            let ours: Vec<(i64, u64, u64, u64)> = bytes
                .chunks(annals::format::ABORTED_TXN_LEN)
                .map(|c| {
                    let a = annals::format::AbortedTxn::decode(c).unwrap();
                    (
                        a.producer_id,
                        a.first_offset,
                        a.last_offset,
                        a.last_stable_offset,
                    )
                })
                .collect();
            assert_eq!(dumped.file(f).aborted_txns, ours, "{ctx}: {f:?}");
            for &(_, first, last, _) in &ours {
                let marker = batches
                    .iter()
                    .find(|b| b.base_offset == last)
                    .unwrap_or_else(|| panic!("{ctx}: no batch at {last}"));
                assert!(marker.is_control, "{ctx}: {last} is not a marker");
                assert_eq!(
                    marker.records[0]
                        .end_txn_marker
                        .as_ref()
                        .unwrap()
                        .control_type,
                    "ABORT",
                    "{ctx}"
                );
                assert!(first < last, "{ctx}");
            }
            entries += ours.len();
        }
        let aborts = markers[p as usize].iter().filter(|c| !**c).count();
        assert_eq!(entries, aborts, "{ctx}: one entry per ABORT marker");
        // And Kafka's index sanity check accepts every index beside them.
        let mut indexes = files_with_extension(&pdir, "index");
        indexes.extend(files_with_extension(&pdir, "timeindex"));
        let sanity = parse_dump(&dump_log_segments(
            &refs(&indexes),
            &["--index-sanity-check"],
        ));
        sanity.assert_clean(&format!("{ctx}, --index-sanity-check"));
    }
}
