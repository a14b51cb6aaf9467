//! `annals delete-records DIR TOPIC PARTITION OFFSET`: Kafka's DeleteRecords
//! (`Partition::delete_records`).

use std::path::PathBuf;

use serde_json::json;

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::Output;
use crate::owner::{close_log, open_log, Create};

/// Make every offset below OFFSET unreadable by moving the partition's log start offset there.
///
/// The move is durable before the command returns; whole segments below the new start are
/// deleted. An OFFSET at or below the current log start changes nothing; one above the high
/// watermark is an error.
///
/// Example: annals delete-records data/ orders 0 1200
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// The topic.
    pub topic: String,
    /// The partition number.
    pub partition: u32,
    /// The new log start offset: records below it are deleted.
    pub offset: u64,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    const COMMAND: &str = "delete-records";
    let log = open_log(&args.dir, COMMAND, Create::Never)?;
    let result = log
        .partition(&args.topic, args.partition)
        .and_then(|p| {
            let before = p.log_start_offset();
            Ok((before, p.delete_records(args.offset)?, p.high_watermark()))
        })
        .map_err(|e| Failure::at(COMMAND, &args.dir, e));
    let closed = close_log(&log, COMMAND);
    let (before, after, high_watermark) = result?;
    closed?;
    out.text(format_args!(
        "{}-{}: log start offset {after} (was {before}; high watermark {high_watermark})",
        args.topic, args.partition
    ))?;
    out.object(
        "log_start_offset",
        &json!({
            "topic": args.topic,
            "partition": args.partition,
            "before": before,
            "log_start_offset": after,
            "high_watermark": high_watermark,
        }),
    )?;
    Ok(Outcome::Clean)
}
