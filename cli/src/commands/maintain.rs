//! `annals maintain DIR`: retention and compaction now (`Log::run_maintenance`).

use std::path::PathBuf;

use annals::{MaintenanceReport, PartitionReport};
use serde_json::json;

use crate::exit::{CmdResult, Outcome};
use crate::output::{Output, Table};
use crate::owner::{close_log, open_log, Create};

/// Run retention and compaction on every partition now, and print what they did.
///
/// Opens the log as its owner (it must not be open elsewhere), runs one maintenance pass —
/// what a log's background thread does every maintenance interval — and closes it.
///
/// Example: annals maintain data/
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    const COMMAND: &str = "maintain";
    let log = open_log(&args.dir, COMMAND, Create::Never)?;
    let report = log.run_maintenance();
    // Closed either way: the lock is released and what was done is checkpointed.
    let closed = close_log(&log, COMMAND);
    let report = report.map_err(|e| crate::exit::Failure::at(COMMAND, &args.dir, e))?;
    closed?;
    print(&report, out)?;
    Ok(Outcome::Clean)
}

const COLUMNS: [&str; 11] = [
    "topic",
    "partition",
    "segments_deleted",
    "bytes_deleted",
    "offsets_removed",
    "log_start_offset",
    "compaction_passes",
    "segments_rewritten",
    "records_removed",
    "tombstones_removed",
    "bytes_freed",
];

fn row(p: &PartitionReport) -> Vec<serde_json::Value> {
    let (r, c) = (&p.retention, &p.compaction);
    let freed = r.bytes_deleted + c.bytes_read.saturating_sub(c.bytes_written);
    vec![
        json!(p.topic.as_str()),
        json!(p.partition),
        json!(r.segments_deleted),
        json!(r.bytes_deleted),
        json!(r.offsets_removed),
        json!(r.log_start_offset),
        json!(c.passes),
        json!(c.segments_read),
        json!(c.records_removed),
        json!(c.tombstones_removed),
        json!(freed),
    ]
}

fn print(report: &MaintenanceReport, out: &mut Output) -> Result<(), crate::exit::Failure> {
    let mut table = Table::new("partition", &COLUMNS);
    for p in &report.partitions {
        table.row(row(p));
    }
    if table.is_empty() {
        out.text("nothing to do: no partition was due for retention or compaction")?;
    } else {
        out.table(&table)?;
    }
    let elapsed_ms = report.elapsed.as_millis();
    out.text(format_args!(
        "{} partition(s) changed, {} segment(s) deleted, {} byte(s) freed, {} record(s) compacted away, {} transaction(s) timed out, in {elapsed_ms} ms",
        report.partitions.len(),
        report.segments_deleted(),
        report.bytes_freed(),
        report.records_compacted_away(),
        report.transactions_timed_out,
    ))?;
    out.object(
        "summary",
        &json!({
            "partitions_changed": report.partitions.len(),
            "segments_deleted": report.segments_deleted(),
            "bytes_freed": report.bytes_freed(),
            "records_compacted_away": report.records_compacted_away(),
            "transactions_timed_out": report.transactions_timed_out,
            "elapsed_ms": elapsed_ms as u64,
        }),
    )
}
