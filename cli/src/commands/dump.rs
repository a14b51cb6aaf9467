//! `annals dump FILE|PARTITION_DIR [--deep] [--verify-index]`: segments and indexes as text,
//! like Kafka's `kafka-dump-log`, read with plain read-only `std::fs` and parsed with the
//! public `annals::format` API.

mod files;
mod render;
mod segment;
mod txn_index;

use std::io::Read;
use std::path::{Path, PathBuf};

use annals::format::{offset_index_entries, time_index_entries, BatchView, Stray};
use annals::format::{OFFSET_INDEX_ENTRY_LEN, TIME_INDEX_ENTRY_LEN};
use serde_json::json;

use self::files::{looks_like_log_root, partition_logs, Kind, SegmentFile};
use self::segment::{Batch, Item, Segment};
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
/// command exits with 3 after printing everything. --verify-index runs annals' own check of a
/// segment (the one `annals verify` runs on every segment) and prints what it finds in the
/// index files.
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
    /// start of a batch with the offsets and timestamps it claims. For an index file, the .log
    /// beside it is checked (and its own damage reported, but not its batches printed).
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
        let mut segment = open_segment(file)?;
        self.file_header(file, "log", Some(segment.len()))?;
        if let Some(base) = file.base {
            self.out.text(format_args!("Log starting offset: {base}"))?;
        }
        self.walk(file, &mut segment, last)?;
        if self.verify {
            let indexes = [Kind::OffsetIndex, Kind::TimeIndex].map(|k| file.sibling(k));
            // The log's own damage is printed above, by the walk.
            self.check_segment(file, &indexes, false)?;
        }
        Ok(())
    }

    fn walk(
        &mut self,
        file: &SegmentFile,
        segment: &mut Segment,
        last: bool,
    ) -> Result<(), Failure> {
        let path = file.path.display().to_string();
        while let Some(item) = segment.next_item().map_err(|e| read_error(file, e))? {
            match item {
                Item::Batch(batch) => self.batch(&path, &batch)?,
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

    fn batch(&mut self, path: &str, batch: &Batch) -> Result<(), Failure> {
        let (position, header) = (batch.position, &batch.header);
        let valid = batch.crc_error.is_none();
        self.out.text(render::batch_line(position, header, valid))?;
        self.out
            .object("batch", &render::batch_json(path, position, header, valid))?;
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
        if self.deep {
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
        let index = offset_index_entries(&bytes);
        let path = file.path.display().to_string();
        self.file_header(file, "offset_index", Some(bytes.len() as u64))?;
        if index.entries.is_empty() {
            self.out.text(format_args!("{path} is empty."))?;
        }
        for e in &index.entries {
            let offset = file.base_or_zero() + u64::from(e.relative_offset);
            let position = e.position;
            self.out
                .text(format_args!("offset: {offset} position: {position}"))?;
            self.out.object(
                "index_entry",
                &json!({"file": path, "offset": offset, "position": position}),
            )?;
        }
        self.index_tail(file, index.zero_fill, index.stray)
    }

    fn time_index(&mut self, file: &SegmentFile) -> Result<(), Failure> {
        let bytes = read_whole(file)?;
        let index = time_index_entries(&bytes);
        let path = file.path.display().to_string();
        self.file_header(file, "time_index", Some(bytes.len() as u64))?;
        if index.entries.is_empty() {
            self.out.text(format_args!("{path} is empty."))?;
        }
        for e in &index.entries {
            let offset = file.base_or_zero() + u64::from(e.relative_offset);
            let timestamp = e.timestamp;
            self.out
                .text(format_args!("timestamp: {timestamp} offset: {offset}"))?;
            self.out.object(
                "time_index_entry",
                &json!({"file": path, "timestamp": timestamp, "offset": offset}),
            )?;
        }
        self.index_tail(file, index.zero_fill, index.stray)
    }

    fn txn_index(&mut self, file: &SegmentFile) -> Result<(), Failure> {
        let bytes = read_whole(file)?;
        let entries = txn_index::aborted_txns(&bytes);
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
        for p in &entries.problems {
            self.problem("index_entries", true, &path, None, format!("{path}: {p}"))?;
        }
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

    /// After an offset or time index's entries: its preallocated zeros, then `--verify-index`'s
    /// check of the segment beside it, or else what breaks the run of entries.
    fn index_tail(
        &mut self,
        file: &SegmentFile,
        zero_fill: usize,
        stray: Option<Stray>,
    ) -> Result<(), Failure> {
        let path = file.path.display().to_string();
        if zero_fill > 0 {
            self.out.text(format_args!(
                "{zero_fill} zero entries of preallocated space follow (an active segment's index)"
            ))?;
            self.out
                .object("zero_fill", &json!({"file": path, "entries": zero_fill}))?;
        }
        // The check reports a stray entry among its findings.
        if self.verify && self.check_beside(file)? {
            return Ok(());
        }
        match stray {
            Some(stray) => self.problem_at(
                "index_entries",
                true,
                &path,
                Some(stray.position),
                Some(stray.entry),
                format!("{path}: {stray}"),
            ),
            None => Ok(()),
        }
    }

    /// `--verify-index` on one index file being dumped: the check of the `.log` beside it,
    /// whose own damage is reported too (its batches are not printed). Whether it ran.
    fn check_beside(&mut self, index: &SegmentFile) -> Result<bool, Failure> {
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
        self.check_segment(&log, std::slice::from_ref(&index.path), true)
    }

    /// Runs annals' check of the segment `log` (`annals::verify_segment`) and prints what it
    /// found in `indexes` (and in `log` itself, with `with_log`), then a line for each index
    /// with nothing wrong. Whether the check ran: it needs a segment named `<base>.log`.
    fn check_segment(
        &mut self,
        log: &SegmentFile,
        indexes: &[PathBuf],
        with_log: bool,
    ) -> Result<bool, Failure> {
        let log_name = log.path.display().to_string();
        if !log.is_live_segment() {
            self.problem(
                "not_verified",
                false,
                &log_name,
                None,
                format!(
                    "Note: --verify-index checks segments named <base offset>.log, not {log_name}"
                ),
            )?;
            return Ok(false);
        }
        let report =
            annals::verify_segment(&log.path).map_err(|e| Failure::at(COMMAND, &log.path, e))?;
        let findings = (report.damage.iter().map(|f| (true, f)))
            .chain(report.notes.iter().map(|f| (false, f)));
        for (damage, f) in findings {
            if !(indexes.contains(&f.path) || with_log && f.path == log.path) {
                continue;
            }
            let entry_len = [
                (Kind::OffsetIndex, OFFSET_INDEX_ENTRY_LEN),
                (Kind::TimeIndex, TIME_INDEX_ENTRY_LEN),
            ]
            .into_iter()
            .find_map(|(kind, len)| (log.sibling(kind) == f.path).then_some(len));
            let (kind, entry) = match entry_len {
                Some(len) => ("index_mismatch", f.position.map(|p| p as usize / len)),
                None => ("segment", None),
            };
            let file = f.path.display().to_string();
            let at = f
                .position
                .map(|p| format!(" at byte {p}"))
                .unwrap_or_default();
            let message = format!("{file}{at}: {}", f.what);
            self.problem_at(kind, damage, &file, f.position, entry, message)?;
        }
        // Entries after damage in the log cannot be checked against it.
        let log_damaged = report.damage.iter().any(|f| f.path == log.path);
        for index in indexes {
            let name = index.display().to_string();
            if !index.is_file() {
                self.problem(
                    "index_missing",
                    false,
                    &name,
                    None,
                    format!(
                        "Note: there is no {name}; annals rebuilds a missing index when it opens \
                         the log"
                    ),
                )?;
            } else if !report.damage.iter().any(|f| f.path == *index) {
                let how = match log_damaged {
                    false => format!("its entries match {log_name}"),
                    true => format!("its entries up to the damage in {log_name} match it"),
                };
                self.out.text(format_args!("Verified {name}: {how}"))?;
                self.out.object(
                    "index_verified",
                    &json!({"file": name, "log": log_name, "complete": !log_damaged}),
                )?;
            }
        }
        Ok(true)
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
