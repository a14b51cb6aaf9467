//! `annals topics DIR`: every topic with its partitions, policy, records and size.

use std::path::PathBuf;

use serde_json::json;

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::{Output, Table};
use crate::view::open_view;

/// List the topics of a log (also one a running process owns).
///
/// For each topic: its partition count, cleanup policy, the records between the log start
/// and the high watermark of all its partitions, and the bytes of its segment files.
///
/// Example: annals topics data/
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    const COMMAND: &str = "topics";
    let view = open_view(&args.dir, COMMAND)?;
    let fail = |e| Failure::at(COMMAND, &args.dir, e);
    let mut table = Table::new(
        "topic",
        &[
            "topic",
            "partitions",
            "cleanup_policy",
            "records",
            "size_bytes",
        ],
    );
    for topic in view.topics() {
        let config = view.topic_config(&topic).map_err(fail)?;
        let (mut records, mut bytes) = (0u64, 0u64);
        for p in 0..config.partitions {
            let d = view.describe_partition(&topic, p).map_err(fail)?;
            records += d.high_watermark.saturating_sub(d.log_start_offset);
            bytes += d.size_bytes();
        }
        table.row(vec![
            json!(topic),
            json!(config.partitions),
            json!(format!("{:?}", config.cleanup_policy).to_lowercase()),
            json!(records),
            json!(bytes),
        ]);
    }
    if table.is_empty() {
        out.text("no topics")?;
    } else {
        out.table(&table)?;
    }
    Ok(Outcome::Clean)
}
