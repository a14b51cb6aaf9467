//! `annals tail DIR TOPIC`: a console consumer of a log, also one another process is writing.

use std::path::PathBuf;
use std::time::Duration;

use annals::{Error, IsolationLevel, PartitionReader, StoredRecord};
use serde_json::{json, Map, Value};

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::Output;
use crate::view::open_view;

/// Print a topic's records, and with -f follow it as its owner appends (like
/// kafka-console-consumer, without taking the log's lock).
///
/// Starts at the end of each partition unless told otherwise, so without --from-beginning,
/// --offset, --time or --group it prints only what arrives while following. Each line is the
/// record's value; --print-* put more in front of it, tab-separated. Nothing is committed.
///
/// Example: annals tail data/ orders -f --from-beginning --print-key
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// The topic.
    pub topic: String,
    /// Keep following: wait for new records instead of stopping at the end.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Read only this partition (default: all of them).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Start at the log start offset.
    #[arg(long, conflicts_with_all = ["offset", "time"])]
    pub from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition", conflicts_with = "time")]
    pub offset: Option<u64>,
    /// Start at the first record with a timestamp at or after this, in milliseconds since the
    /// Unix epoch.
    #[arg(long)]
    pub time: Option<i64>,
    /// Start where this consumer group committed (partitions it did not commit start as the
    /// other options say). The group's offsets are only read.
    #[arg(long)]
    pub group: Option<String>,
    /// read_uncommitted (everything written) or read_committed (no open or aborted
    /// transactions).
    #[arg(long, default_value = "read_uncommitted", value_parser = ["read_uncommitted", "read_committed"])]
    pub isolation: String,
    /// Print the key before the value.
    #[arg(long)]
    pub print_key: bool,
    /// Print the headers (name=value,...) before the key and value.
    #[arg(long)]
    pub print_headers: bool,
    /// Print the timestamp first.
    #[arg(long)]
    pub print_timestamp: bool,
    /// Print the partition and offset before the record.
    #[arg(long)]
    pub print_offset: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub max_records: Option<u64>,
    /// How often a follower looks for new records, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub poll_interval_ms: u64,
}

/// Bytes one poll of a partition asks for.
const POLL_BYTES: usize = 1 << 20;

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    const COMMAND: &str = "tail";
    let view = open_view(&args.dir, COMMAND)?;
    let fail = |e: Error| Failure::at(COMMAND, &args.dir, e);
    let config = view.topic_config(&args.topic).map_err(fail)?;
    let isolation = match args.isolation.as_str() {
        "read_committed" => IsolationLevel::ReadCommitted,
        _ => IsolationLevel::ReadUncommitted,
    };
    let partitions: Vec<u32> = match args.partition {
        Some(p) => vec![p],
        None => (0..config.partitions).collect(),
    };
    let committed = match &args.group {
        Some(group) => view
            .committed_offsets()
            .map_err(fail)?
            .into_iter()
            .filter(|c| &c.group == group && c.topic_partition.topic == args.topic)
            .map(|c| (c.topic_partition.partition, c.offset.offset))
            .collect(),
        None => std::collections::HashMap::new(),
    };
    let mut readers = Vec::new();
    for &p in &partitions {
        let mut reader = view.reader(&args.topic, p, isolation).map_err(fail)?;
        let start = match (committed.get(&p), args.offset, args.time) {
            (Some(&offset), _, _) => offset,
            (None, Some(offset), _) => offset,
            (None, None, Some(time)) => match reader.offset_for_timestamp(time).map_err(fail)? {
                Some(offset) => offset,
                None => reader.high_watermark().map_err(fail)?,
            },
            (None, None, None) if args.from_beginning => reader.log_start_offset().map_err(fail)?,
            (None, None, None) => reader.high_watermark().map_err(fail)?,
        };
        reader.seek(start);
        readers.push(reader);
    }
    let mut printed = 0u64;
    loop {
        let mut progressed = false;
        for reader in &mut readers {
            let before = reader.position();
            let records = match reader.poll(POLL_BYTES) {
                Ok(records) => records,
                Err(Error::OffsetOutOfRange {
                    requested,
                    earliest,
                    ..
                }) if requested < earliest && args.follow => {
                    // Retention deleted what the follower had not read yet: say so, go on.
                    eprintln!(
                        "annals: tail: {}-{}: offsets {requested}..{earliest} were deleted before they were read; going on from {earliest}",
                        args.topic,
                        reader.partition()
                    );
                    reader.seek(earliest);
                    progressed = true;
                    continue;
                }
                Err(e) => return Err(fail(e)),
            };
            progressed |= !records.is_empty() || reader.position() != before;
            for r in &records {
                if args.max_records.is_some_and(|max| printed >= max) {
                    break;
                }
                print_record(args, reader, r, out)?;
                printed += 1;
            }
        }
        out.flush()?;
        if args.max_records.is_some_and(|max| printed >= max) {
            return Ok(Outcome::Clean);
        }
        if !progressed {
            if !args.follow {
                return Ok(Outcome::Clean);
            }
            std::thread::sleep(Duration::from_millis(args.poll_interval_ms));
        }
    }
}

/// Bytes as text: UTF-8 as it is, anything else lossily (the JSON output carries hex).
fn text(bytes: &Option<annals::Bytes>) -> String {
    match bytes {
        None => "null".to_string(),
        Some(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// A JSON value for bytes: a string when UTF-8, else `{"hex": "..."}`.
fn json_bytes(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => json!(s),
            Err(_) => json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
        },
    }
}

fn print_record(
    args: &Args,
    reader: &PartitionReader,
    r: &StoredRecord,
    out: &mut Output,
) -> Result<(), Failure> {
    let headers: Map<String, Value> = r
        .headers
        .iter()
        .map(|h| (h.key.clone(), json_bytes(h.value.as_deref())))
        .collect();
    out.object(
        "record",
        &json!({
            "topic": args.topic,
            "partition": reader.partition(),
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": json_bytes(r.key.as_deref()),
            "headers": headers,
            "value": json_bytes(r.value.as_deref()),
        }),
    )?;
    let mut fields = Vec::new();
    if args.print_timestamp {
        fields.push(format!("CreateTime:{}", r.timestamp));
    }
    if args.print_offset {
        fields.push(format!("Partition:{}", reader.partition()));
        fields.push(format!("Offset:{}", r.offset));
    }
    if args.print_headers {
        let h: Vec<String> = r
            .headers
            .iter()
            .map(|h| {
                let value = h.value.as_deref().map(String::from_utf8_lossy);
                format!("{}={}", h.key, value.as_deref().unwrap_or("null"))
            })
            .collect();
        fields.push(if h.is_empty() {
            "NO_HEADERS".to_string()
        } else {
            h.join(",")
        });
    }
    if args.print_key {
        fields.push(text(&r.key));
    }
    fields.push(text(&r.value));
    out.text(fields.join("\t"))
}
