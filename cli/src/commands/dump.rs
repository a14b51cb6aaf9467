//! `annals dump FILE|PARTITION_DIR [--deep] [--verify-index]`: segments and indexes as text,
//! like Kafka's `kafka-dump-log`, read with plain read-only `std::fs` and parsed with the
//! public `annals::format` API.

mod files;
mod index;
mod render;
mod segment;
mod verify;

use std::io::Read;
use std::path::{Path, PathBuf};

use annals::format::BatchView;
use serde_json::json;

use self::files::{looks_like_log_root, partition_logs, Kind, SegmentFile};
use self::segment::{Batch, Item, Segment};
use self::verify::{Finding, IndexCheck};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::Output;

const COMMAND: &str = "dump";

/// Cap on a batch's decompressed records. annals' own cap is `max(16 × max_message_bytes,
/// 64 MiB)` of the topic; the topic's configuration is not read here, so the cap is generous
/// enough for any topic with `max_message_bytes` up to 16 MiB.
const MAX_UNCOMPRESSED: usize = 256 << 20;

/// Print the batches of segment files, or the entries of index files, without opening the log.
///
/// For a .log file, or every .log of a partition directory in offset order, one line per batch
/// in the shape of Kafka's kafka-dump-log: offsets, count, sequences, producer id and epoch,
/// leader epoch, transactional and control flags, byte position, max timestamp (CreateTime or
/// LogAppendTime), size, magic, codec, stored CRC and whether it is valid. For an .index,
/// .timeindex or .txnindex file, its entries.
///
/// Files are only read: nothing is written and the log's lock is not taken, so a log that a
/// running process owns can be dumped. Bytes after the last whole batch of the last segment are
/// reported as a torn tail (what an interrupted write leaves; opening the log truncates it).
/// Damage — a batch failing its CRC, bytes between batches that are not a batch, a torn tail
/// in a segment that later segments follow, offsets going backwards, records that do not
/// decode, index entries that do not match the log — is reported where it is found, and the
/// command exits with 3 after printing everything.
///
/// With --json, one object per line: "file", "batch", "record", "index_entry",
/// "time_index_entry", "aborted_txn", "index_verified" and "problem" (with "damage": true or
/// false). Keys and payloads are strings when they are UTF-8 ("key", "payload") and hex
/// otherwise ("key_hex", "payload_hex"); in text, hex is written 0x….
///
/// Example: annals dump data/orders-0 --deep --verify-index
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A segment file (.log), an index file (.index, .timeindex, .txnindex), or a partition
    /// directory (every .log in it).
    pub path: PathBuf,
    /// Also print every record: offset, timestamp, key and value sizes, sequence, header keys,
    /// key and payload (UTF-8, or hex), and the decoded transaction markers of control batches.
    #[arg(long)]
    pub deep: bool,
    /// Check the .index and .timeindex beside each .log against it: each entry must name the
    /// start of a batch with the offsets and timestamps it claims.
    #[arg(long)]
    pub verify_index: bool,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    let mut dumper = Dumper {
        out,
        deep: args.deep,
        verify: args.verify_index,
        damage: 0,
    };
    let path = &args.path;
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Failure::at(COMMAND, path, "no such file or directory"),
        _ => Failure::at(COMMAND, path, e),
    })?;
    if meta.is_dir() {
        dumper.partition_dir(path)?;
    } else {
        let file = SegmentFile::of(path).ok_or_else(|| {
            Failure::at(
                COMMAND,
                path,
                "not a segment file (expected a .log, .index, .timeindex or .txnindex file, or a \
                 partition directory)",
            )
        })?;
        dumper.file(&file)?;
    }
    dumper.out.flush()?;
    if dumper.damage == 0 {
        return Ok(Outcome::Clean);
    }
    eprintln!(
        "annals: {COMMAND} {}: damage found ({} problem(s), reported above)",
        path.display(),
        dumper.damage
    );
    Ok(Outcome::Damaged)
}

/// Whether the batch lines of a `.log` are printed, or the log is only walked to check an
/// index file being dumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Batches,
    ProblemsOnly,
}

struct Dumper<'a> {
    out: &'a mut Output,
    deep: bool,
    verify: bool,
    /// Problems that are damage, so far.
    damage: usize,
}

impl Dumper<'_> {
    fn partition_dir(&mut self, dir: &Path) -> Result<(), Failure> {
        let logs = partition_logs(dir)?;
        if logs.is_empty() {
            let hint = looks_like_log_root(dir)
                .map(|p| {
                    format!(
                        "; it looks like a log directory: dump one of its partition directories, \
                         such as {}",
                        p.display()
                    )
                })
                .unwrap_or_default();
            return Err(Failure::at(
                COMMAND,
                dir,
                format!("no segment files (<base offset>.log) in this directory{hint}"),
            ));
        }
        let count = logs.len();
        for (i, log) in logs.iter().enumerate() {
            self.log(log, i + 1 == count)?;
        }
        Ok(())
    }

    fn file(&mut self, file: &SegmentFile) -> Result<(), Failure> {
        match file.kind {
            Kind::Log => {
                self.refuse_non_log(file)?;
                self.log(file, !file.has_later_segment())
            }
            Kind::OffsetIndex => self.offset_index(file),
            Kind::TimeIndex => self.time_index(file),
            Kind::TxnIndex => self.txn_index(file),
        }
    }

    /// A `.log` named on the command line whose first bytes are no batch header at all (and no
    /// valid batch follows) is the wrong file, not a torn write: say so instead of dumping it.
    fn refuse_non_log(&mut self, file: &SegmentFile) -> Result<(), Failure> {
        let mut segment = open_segment(file)?;
        let Some(Item::TornTail { position: 0, .. }) =
            segment.next_item().map_err(|e| read_error(file, e))?
        else {
            return Ok(());
        };
        let mut head = Vec::new();
        std::fs::File::open(&file.path)
            .and_then(|f| f.take(17).read_to_end(&mut head))
            .map_err(|e| read_error(file, e))?;
        // Byte 16 is a batch's magic; a torn write of zeros (a power loss after the file grew)
        // is still a torn write.
        match head.get(..17) {
            Some(head) if head.iter().any(|&b| b != 0) && head[16] != 2 => Err(Failure::at(
                COMMAND,
                &file.path,
                format!(
                    "not a segment: it holds no record batch (byte 16, a batch's magic, is {}, \
                     not 2)",
                    head[16]
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Dumps one `.log`; `last` if no segment follows it in its partition.
    fn log(&mut self, file: &SegmentFile, last: bool) -> Result<(), Failure> {
        // The indexes first: see `verify`.
        let mut check = if self.verify {
            Some(IndexCheck::load(
                file,
                &[Kind::OffsetIndex, Kind::TimeIndex],
            )?)
        } else {
            None
        };
        let mut segment = open_segment(file)?;
        self.file_header(file, "log", Some(segment.len()))?;
        if let Some(base) = file.base {
            self.out.text(format_args!("Log starting offset: {base}"))?;
        }
        self.walk(file, &mut segment, last, Show::Batches, check.as_mut())?;
        if let Some(check) = check {
            self.findings(&file.path, check.finish(segment.len()))?;
        }
        Ok(())
    }

    fn walk(
        &mut self,
        file: &SegmentFile,
        segment: &mut Segment,
        last: bool,
        show: Show,
        mut check: Option<&mut IndexCheck>,
    ) -> Result<(), Failure> {
        let path = file.path.display().to_string();
        while let Some(item) = segment.next_item().map_err(|e| read_error(file, e))? {
            match item {
                Item::Batch(batch) => {
                    self.batch(&path, &batch, show)?;
                    if let Some(check) = check.as_deref_mut() {
                        check.batch(batch.position, &batch.header);
                    }
                }
                Item::Garbage {
                    position,
                    end,
                    reason,
                } => self.problem(
                    "garbage",
                    true,
                    &path,
                    Some(position),
                    format!(
                        "bytes {position}..{end} of {path} are not a batch ({reason}), and a \
                         valid batch follows at position {end}"
                    ),
                )?,
                Item::TornTail {
                    position,
                    len,
                    reason,
                } if last => self.problem(
                    "torn_tail",
                    false,
                    &path,
                    Some(position),
                    format!(
                        "Torn tail: {len} byte(s) at position {position} of {path} after the last \
                         whole batch ({reason}); the shape of an interrupted write, which opening \
                         the log truncates"
                    ),
                )?,
                Item::TornTail {
                    position,
                    len,
                    reason,
                } => self.problem(
                    "torn_tail",
                    true,
                    &path,
                    Some(position),
                    format!(
                        "{len} byte(s) at position {position} of {path} are not a whole batch \
                         ({reason}), and later segments follow, so this is no interrupted write"
                    ),
                )?,
            }
        }
        Ok(())
    }

    fn batch(&mut self, path: &str, batch: &Batch, show: Show) -> Result<(), Failure> {
        let (position, header) = (batch.position, &batch.header);
        let valid = batch.crc_error.is_none();
        if show == Show::Batches {
            self.out.text(render::batch_line(position, header, valid))?;
            self.out
                .object("batch", &render::batch_json(path, position, header, valid))?;
        }
        let offsets = format!(
            "the batch at position {position} (offsets {}..={}) of {path}",
            header.base_offset,
            header.last_offset()
        );
        if let Some(e) = &batch.crc_error {
            self.problem(
                "crc",
                true,
                path,
                Some(position),
                format!("{offsets} fails its CRC check: {e}"),
            )?;
        }
        if let Some(expected) = batch.offset_regression {
            self.problem(
                "offset_order",
                true,
                path,
                Some(position),
                format!(
                    "{offsets} starts below offset {expected}, where the batch before it ends: \
                     offsets never go backwards"
                ),
            )?;
        }
        if self.deep && show == Show::Batches {
            self.records(path, batch, &offsets)?;
        }
        Ok(())
    }

    fn records(&mut self, path: &str, batch: &Batch, offsets: &str) -> Result<(), Failure> {
        let position = Some(batch.position);
        if batch.crc_error.is_some() {
            return self.problem(
                "records_not_shown",
                false,
                path,
                position,
                "| records not shown: the batch fails its CRC check".to_string(),
            );
        }
        let view = match BatchView::new(&batch.bytes, 0, MAX_UNCOMPRESSED) {
            Ok(view) => view,
            Err(e @ annals::Error::UnsupportedCompression { .. }) => {
                return self.problem(
                    "records_not_shown",
                    false,
                    path,
                    position,
                    format!("| records not shown: {e}"),
                )
            }
            Err(e) => {
                return self.problem(
                    "records",
                    true,
                    path,
                    position,
                    format!("the records of {offsets} do not decode: {e}"),
                )
            }
        };
        for (i, record) in view.records().enumerate() {
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    return self.problem(
                        "records",
                        true,
                        path,
                        position,
                        format!("record {i} of {offsets} does not decode: {e}"),
                    )
                }
            };
            let rendered = render::record(path, view.header(), &record);
            self.out.text(&rendered.line)?;
            self.out.object("record", &rendered.json)?;
            if let Some(e) = rendered.control_error {
                self.problem(
                    "records",
                    true,
                    path,
                    position,
                    format!(
                        "the control record at offset {} of {offsets} does not decode: {e}",
                        record.offset
                    ),
                )?;
            }
        }
        Ok(())
    }

    fn offset_index(&mut self, file: &SegmentFile) -> Result<(), Failure> {
        let bytes = read_whole(file)?;
        let entries = index::offset_entries(&bytes);
        let path = file.path.display().to_string();
        self.file_header(file, "offset_index", Some(bytes.len() as u64))?;
        if entries.valid.is_empty() {
            self.out.text(format_args!("{path} is empty."))?;
        }
        for &(rel, position) in &entries.valid {
            let offset = file.base_or_zero() + u64::from(rel);
            self.out
                .text(format_args!("offset: {offset} position: {position}"))?;
            self.out.object(
                "index_entry",
                &json!({"file": path, "offset": offset, "position": position}),
            )?;
        }
        self.entries_tail(&path, entries.zero_fill, &entries.problems)?;
        self.verify_one(file, Kind::OffsetIndex)
    }

    fn time_index(&mut self, file: &SegmentFile) -> Result<(), Failure> {
        let bytes = read_whole(file)?;
        let entries = index::time_entries(&bytes);
        let path = file.path.display().to_string();
        self.file_header(file, "time_index", Some(bytes.len() as u64))?;
        if entries.valid.is_empty() {
            self.out.text(format_args!("{path} is empty."))?;
        }
        for &(timestamp, rel) in &entries.valid {
            let offset = file.base_or_zero() + u64::from(rel);
            self.out
                .text(format_args!("timestamp: {timestamp} offset: {offset}"))?;
            self.out.object(
                "time_index_entry",
                &json!({"file": path, "timestamp": timestamp, "offset": offset}),
            )?;
        }
        self.entries_tail(&path, entries.zero_fill, &entries.problems)?;
        self.verify_one(file, Kind::TimeIndex)
    }

    fn txn_index(&mut self, file: &SegmentFile) -> Result<(), Failure> {
        let bytes = read_whole(file)?;
        let entries = index::aborted_txns(&bytes);
        let path = file.path.display().to_string();
        self.file_header(file, "txn_index", Some(bytes.len() as u64))?;
        if entries.valid.is_empty() && entries.problems.is_empty() {
            self.out.text(format_args!("{path} is empty."))?;
        }
        for t in &entries.valid {
            self.out.text(format_args!(
                "version: 0 producerId: {} firstOffset: {} lastOffset: {} lastStableOffset: {}",
                t.producer_id, t.first_offset, t.last_offset, t.last_stable_offset
            ))?;
            self.out.object(
                "aborted_txn",
                &json!({
                    "file": path,
                    "producer_id": t.producer_id,
                    "first_offset": t.first_offset,
                    "last_offset": t.last_offset,
                    "last_stable_offset": t.last_stable_offset,
                }),
            )?;
        }
        self.entries_tail(&path, 0, &entries.problems)?;
        if self.verify {
            self.problem(
                "not_verified",
                false,
                &path,
                None,
                format!("Note: --verify-index checks .index and .timeindex files, not {path}"),
            )?;
        }
        Ok(())
    }

    /// After an index's entries: its preallocated zeros, and what breaks its structure.
    fn entries_tail(
        &mut self,
        path: &str,
        zero_fill: usize,
        problems: &[String],
    ) -> Result<(), Failure> {
        if zero_fill > 0 {
            self.out.text(format_args!(
                "{zero_fill} zero entries of preallocated space follow (an active segment's index)"
            ))?;
            self.out
                .object("zero_fill", &json!({"file": path, "entries": zero_fill}))?;
        }
        for p in problems {
            self.problem("index_entries", true, path, None, format!("{path}: {p}"))?;
        }
        Ok(())
    }

    /// `--verify-index` on one index file being dumped: the `.log` beside it is walked
    /// without printing its batches.
    fn verify_one(&mut self, index: &SegmentFile, kind: Kind) -> Result<(), Failure> {
        if !self.verify {
            return Ok(());
        }
        let log_path = index.sibling(Kind::Log);
        let log = SegmentFile::of(&log_path)
            .filter(|_| log_path.is_file())
            .ok_or_else(|| {
                Failure::at(
                    COMMAND,
                    &index.path,
                    format!(
                        "--verify-index needs the segment beside it, and there is no {}",
                        log_path.display()
                    ),
                )
            })?;
        let mut check = IndexCheck::load(&log, &[kind])?;
        let mut segment = open_segment(&log)?;
        let last = !log.has_later_segment();
        self.walk(
            &log,
            &mut segment,
            last,
            Show::ProblemsOnly,
            Some(&mut check),
        )?;
        self.findings(&log.path, check.finish(segment.len()))
    }

    fn findings(&mut self, log: &Path, findings: Vec<Finding>) -> Result<(), Failure> {
        let log = log.display().to_string();
        for finding in findings {
            match finding {
                Finding::Verified { index, entries } => {
                    let index = index.display().to_string();
                    self.out.text(format_args!(
                        "Verified {index}: its {entries} entries match {log}"
                    ))?;
                    self.out.object(
                        "index_verified",
                        &json!({"file": index, "log": log, "entries": entries}),
                    )?;
                }
                Finding::Missing { index } => {
                    let index = index.display().to_string();
                    self.problem(
                        "index_missing",
                        false,
                        &index,
                        None,
                        format!(
                            "Note: there is no {index}; annals rebuilds a missing index when it \
                             opens the log"
                        ),
                    )?;
                }
                Finding::Mismatch {
                    index,
                    entry,
                    reason,
                } => {
                    let index = index.display().to_string();
                    let message = match entry {
                        Some(i) => format!("{index} entry {i} does not match {log}: {reason}"),
                        None => format!("{index}: {reason}"),
                    };
                    self.problem_at("index_mismatch", true, &index, None, entry, message)?;
                }
            }
        }
        Ok(())
    }

    fn file_header(
        &mut self,
        file: &SegmentFile,
        kind: &str,
        size: Option<u64>,
    ) -> Result<(), Failure> {
        let path = file.path.display().to_string();
        self.out.text(format_args!("Dumping {path}"))?;
        self.out.object(
            "file",
            &json!({"file": path, "type": kind, "base_offset": file.base, "size": size}),
        )
    }

    fn problem(
        &mut self,
        problem: &str,
        damage: bool,
        file: &str,
        position: Option<u64>,
        message: String,
    ) -> Result<(), Failure> {
        self.problem_at(problem, damage, file, position, None, message)
    }

    /// A finding: damage counts toward exit code 3, and its text line starts with "Damage: ";
    /// other findings (a torn tail, a note) carry their own words.
    fn problem_at(
        &mut self,
        problem: &str,
        damage: bool,
        file: &str,
        position: Option<u64>,
        entry: Option<usize>,
        message: String,
    ) -> Result<(), Failure> {
        if damage {
            self.damage += 1;
            self.out.text(format_args!("Damage: {message}"))?;
        } else {
            self.out.text(&message)?;
        }
        self.out.object(
            "problem",
            &json!({
                "problem": problem,
                "damage": damage,
                "file": file,
                "position": position,
                "entry": entry,
                "message": message,
            }),
        )
    }
}

fn open_segment(file: &SegmentFile) -> Result<Segment, Failure> {
    Segment::open(&file.path, file.base_or_zero()).map_err(|e| Failure::at("open", &file.path, e))
}

fn read_whole(file: &SegmentFile) -> Result<Vec<u8>, Failure> {
    std::fs::read(&file.path).map_err(|e| read_error(file, e))
}

fn read_error(file: &SegmentFile, e: std::io::Error) -> Failure {
    Failure::at("read", &file.path, e)
}
