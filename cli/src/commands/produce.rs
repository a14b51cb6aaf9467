//! `annals produce DIR TOPIC`: lines from standard input as records, through a `Producer`.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead};
use std::path::PathBuf;

use annals::{Delivery, Log, ProducerConfig, Record, TopicConfig};
use serde_json::json;

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::Output;
use crate::owner::{close_log, open_log, Create};

const COMMAND: &str = "produce";

/// Append the lines of standard input to a topic, one record per line.
///
/// Each line (without its line break, "\n" or "\r\n") becomes the value of one record. With
/// --key-separator, the line is split at the first separator: the part before it is the key.
/// Records go where the default partitioner puts them (Kafka's murmur2 of the key; records
/// without a key stick to one partition per batch) unless --partition names one. The command
/// opens the log as its owner, so the log must not be open in another process.
///
/// Example: printf 'order-1:created\norder-2:paid\n' | annals produce data/ orders --key-separator :
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// The topic to write to.
    pub topic: String,
    /// Split each line at the first S into key and value; a line without S is an error.
    #[arg(long, value_name = "S", value_parser = non_empty)]
    pub key_separator: Option<String>,
    /// Write every record to partition N instead of the partitioner's choice.
    #[arg(long, value_name = "N")]
    pub partition: Option<u32>,
    /// Create the topic with N partitions if it does not exist (and the log directory, if it
    /// is missing or empty).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub create_partitions: Option<u32>,
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the key separator must not be empty".to_string())
    } else {
        Ok(s.to_string())
    }
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    let create = match args.create_partitions {
        Some(_) => Create::IfMissing,
        None => Create::Never,
    };
    let log = open_log(&args.dir, COMMAND, create)?;
    let produced = produce(&log, args, out);
    // Closing writes what the producer still holds and releases the lock, also after a failure.
    let closed = close_log(&log, COMMAND);
    let written = produced?;
    closed?;
    let by_partition: Vec<String> = written
        .per_partition
        .iter()
        .map(|(p, n)| format!("partition {p}: {n}"))
        .collect();
    let detail = if by_partition.is_empty() {
        String::new()
    } else {
        format!(" ({})", by_partition.join(", "))
    };
    out.text(format_args!(
        "wrote {} record(s) to {}{detail}",
        written.records, args.topic
    ))?;
    out.object(
        "written",
        &json!({
            "topic": args.topic,
            "records": written.records,
            "partitions": written.per_partition,
        }),
    )?;
    Ok(Outcome::Clean)
}

/// Records acknowledged so far.
#[derive(Debug, Default)]
struct Written {
    records: u64,
    per_partition: BTreeMap<u32, u64>,
}

/// Sends every line and waits for each acknowledgement in order, printing one JSON line per
/// record as its acknowledgement arrives.
fn produce(log: &Log, args: &Args, out: &mut Output) -> Result<Written, Failure> {
    let fail = |cause: String| Failure::at(COMMAND, &args.dir, cause);
    ensure_topic(log, args)?;
    let producer = log
        .producer(ProducerConfig::default())
        .map_err(|e| fail(e.to_string()))?;
    let mut pending: VecDeque<(u64, Delivery)> = VecDeque::new();
    let mut written = Written::default();
    // Our own buffer, so the loop can tell whether the next read may wait.
    let mut input = io::BufReader::with_capacity(64 << 10, io::stdin().lock());
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        if input.buffer().is_empty() {
            // The next read may wait for input: show what is acknowledged first.
            out.flush()?;
        }
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| Failure::Message(format!("read standard input: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let record = match to_record(&line, args.key_separator.as_deref()) {
            Some(record) => record,
            None => {
                let sep = args.key_separator.as_deref().unwrap_or_default();
                // Whatever was sent before the bad line is written; say how much.
                let _ = producer.flush();
                drain(&mut pending, &mut written, out, args, true)?;
                return Err(fail(format!(
                    "line {line_no} has no key separator {sep:?}; {} record(s) before it were written",
                    written.records
                )));
            }
        };
        let sent = match args.partition {
            Some(p) => producer.send_to(&args.topic, p, record),
            None => producer.send(&args.topic, record),
        };
        let delivery = sent.map_err(|e| {
            fail(format!(
                "line {line_no} could not be sent: {e}; {} record(s) were written",
                written.records
            ))
        })?;
        pending.push_back((line_no, delivery));
        drain(&mut pending, &mut written, out, args, false)?;
    }
    // Errors of the writes themselves surface through the deliveries, each with its line.
    let _ = producer.flush();
    drain(&mut pending, &mut written, out, args, true)?;
    Ok(written)
}

/// The topic must exist, or be created with --create-partitions; --partition must be one of it.
fn ensure_topic(log: &Log, args: &Args) -> Result<(), Failure> {
    let fail = |cause: String| Failure::at(COMMAND, &args.dir, cause);
    if !log.has_topic(&args.topic) {
        match args.create_partitions {
            Some(partitions) => log
                .create_topic(&args.topic, TopicConfig::default().partitions(partitions))
                .map_err(|e| fail(e.to_string()))?,
            None => {
                return Err(fail(format!(
                    "unknown topic {:?} (give --create-partitions N to create it)",
                    args.topic
                )))
            }
        }
    }
    if let Some(p) = args.partition {
        log.partition(&args.topic, p)
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Pops acknowledged deliveries from the front (all of them, waiting, when `wait`), printing
/// one JSON line per record.
fn drain(
    pending: &mut VecDeque<(u64, Delivery)>,
    written: &mut Written,
    out: &mut Output,
    args: &Args,
    wait: bool,
) -> Result<(), Failure> {
    while let Some((line_no, delivery)) = pending.front() {
        if !wait && !delivery.is_done() {
            break;
        }
        let meta = delivery.wait().map_err(|e| {
            Failure::at(
                COMMAND,
                &args.dir,
                format!(
                    "line {line_no} could not be written: {e}; {} record(s) were written",
                    written.records
                ),
            )
        })?;
        written.records += 1;
        *written.per_partition.entry(meta.partition).or_default() += 1;
        out.object(
            "record",
            &json!({
                "line": line_no,
                "topic": args.topic,
                "partition": meta.partition,
                "offset": meta.offset,
            }),
        )?;
        pending.pop_front();
    }
    Ok(())
}

/// One input line (with its line break) as a record; `None` if a separator was asked for and
/// the line has none.
fn to_record(line: &[u8], separator: Option<&str>) -> Option<Record> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(separator) = separator.map(str::as_bytes) else {
        return Some(Record::new(line.to_vec()));
    };
    let at = line.windows(separator.len()).position(|w| w == separator)?;
    let (key, rest) = line.split_at(at);
    let value = rest.get(separator.len()..).unwrap_or_default();
    Some(Record::new(value.to_vec()).key(key.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_line_break_and_split_at_the_first_separator() {
        let r = to_record(b"k1::v:1\r\n", Some("::")).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v:1"[..]));
        let r = to_record(b"plain\n", None).unwrap();
        assert_eq!((r.key, r.value.as_deref()), (None, Some(&b"plain"[..])));
        let r = to_record(b":v", Some(":")).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b""[..]), "an empty key is a key");
        assert!(to_record(b"no separator\n", Some(":")).is_none());
        let r = to_record(b"last line without a break", None).unwrap();
        assert_eq!(r.value.as_deref(), Some(&b"last line without a break"[..]));
    }
}
