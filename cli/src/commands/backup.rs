//! `annals backup DIR DEST`: a consistent copy of a log that opens without recovery
//! (`Log::checkpoint`).

use std::path::PathBuf;

use serde_json::json;

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::{Output, Table};
use crate::owner::{close_log, open_log, Create};

/// Copy a log to DEST, consistently: exactly the records acknowledged when it starts, every
/// partition as of one instant, sealed segments hard-linked when DEST is on the same file
/// system. DEST must not exist (or be empty); the copy appears there only once complete, and
/// opens without recovery.
///
/// This opens the log as its owner, so the log must not be open in another process: a running
/// service backs itself up online with `Log::checkpoint(dest)`, which is what this calls.
///
/// Example: annals backup data/ /backups/data-2026-12-02
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Where the copy goes (created; must not exist or be empty).
    pub dest: PathBuf,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    const COMMAND: &str = "backup";
    let log = open_log(&args.dir, COMMAND, Create::Never)?;
    let report = log.checkpoint(&args.dest);
    let closed = close_log(&log, COMMAND);
    let report = report.map_err(|e| Failure::at(COMMAND, &args.dest, e))?;
    closed?;
    let mut table = Table::new("partition", &["topic", "partition", "high_watermark"]);
    for (tp, hw) in &report.high_watermarks {
        table.row(vec![
            json!(tp.topic.as_str()),
            json!(tp.partition),
            json!(hw),
        ]);
    }
    out.table(&table)?;
    out.text(format_args!(
        "backed up {} partition(s) to {}: {} segment(s) linked, {} copied ({} bytes)",
        report.partitions,
        args.dest.display(),
        report.segments_linked,
        report.segments_copied,
        report.bytes_copied
    ))?;
    out.object(
        "summary",
        &json!({
            "dest": args.dest.display().to_string(),
            "partitions": report.partitions,
            "segments_linked": report.segments_linked,
            "segments_copied": report.segments_copied,
            "bytes_copied": report.bytes_copied,
        }),
    )?;
    Ok(Outcome::Clean)
}
