//! `annals groups DIR [GROUP]`: committed offsets and lag of consumer groups.

use std::path::PathBuf;

use serde_json::json;

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::{Output, Table};
use crate::view::open_view;

/// Show what consumer groups committed, per partition, and how far behind the high watermark
/// they are (like kafka-consumer-groups --describe).
///
/// Members and their assignments live in the memory of the process that owns the log, so they
/// are not in its files; this shows the committed offsets, which are.
///
/// Example: annals groups data/ billing
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// Only this group.
    pub group: Option<String>,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    const COMMAND: &str = "groups";
    let view = open_view(&args.dir, COMMAND)?;
    let fail = |e| Failure::at(COMMAND, &args.dir, e);
    let mut table = Table::new(
        "committed_offset",
        &[
            "group",
            "topic",
            "partition",
            "committed",
            "high_watermark",
            "lag",
            "metadata",
        ],
    );
    for c in view.committed_offsets().map_err(fail)? {
        if args.group.as_ref().is_some_and(|g| g != &c.group) {
            continue;
        }
        let tp = &c.topic_partition;
        // A commit for a topic deleted since has no partition to measure against.
        let high_watermark = match view.describe_partition(&tp.topic, tp.partition) {
            Ok(d) => json!(d.high_watermark),
            Err(annals::Error::UnknownTopic { .. } | annals::Error::UnknownPartition { .. }) => {
                json!(null)
            }
            Err(e) => return Err(fail(e)),
        };
        let lag = high_watermark
            .as_u64()
            .map_or(json!(null), |hw| json!(hw.saturating_sub(c.offset.offset)));
        table.row(vec![
            json!(c.group),
            json!(tp.topic.as_str()),
            json!(tp.partition),
            json!(c.offset.offset),
            high_watermark,
            lag,
            json!(c.offset.metadata),
        ]);
    }
    if table.is_empty() {
        match &args.group {
            Some(g) => {
                return Err(Failure::at(
                    COMMAND,
                    &args.dir,
                    format!("group {g:?} has committed no offsets"),
                ))
            }
            None => out.text("no group has committed offsets")?,
        }
    } else {
        out.table(&table)?;
    }
    Ok(Outcome::Clean)
}
