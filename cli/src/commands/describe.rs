//! `annals describe DIR TOPIC`: a topic's configuration, partitions and segments.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::{Output, Table};
use crate::view::{millis, open_view};

/// Describe one topic: its configuration, each partition's log start offset, high watermark,
/// last stable offset, segments and size, and every segment file.
///
/// A torn tail of a newest segment (a write in progress, or what a crash left for the next open
/// to truncate) is shown in the partition's "tail" column.
///
/// Example: annals describe data/ orders
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// The topic.
    pub topic: String,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    const COMMAND: &str = "describe";
    let view = open_view(&args.dir, COMMAND)?;
    let fail = |e| Failure::at(COMMAND, &args.dir, e);
    let c = view.topic_config(&args.topic).map_err(fail)?;
    let opt_ms = |d: Option<std::time::Duration>| d.map_or(Value::Null, |d| json!(millis(d)));
    // In this order on screen; a JSON object's keys have none.
    let fields: Vec<(&str, Value)> = vec![
        ("topic", json!(args.topic)),
        ("partitions", json!(c.partitions)),
        (
            "cleanup_policy",
            json!(format!("{:?}", c.cleanup_policy).to_lowercase()),
        ),
        (
            "compression",
            json!(format!("{:?}", c.compression).to_lowercase()),
        ),
        ("segment_bytes", json!(c.segment_bytes)),
        ("segment_ms", json!(millis(c.segment_ms))),
        ("retention_ms", opt_ms(c.retention_ms)),
        ("retention_bytes", json!(c.retention_bytes)),
        ("max_message_bytes", json!(c.max_message_bytes)),
        (
            "min_cleanable_dirty_ratio",
            json!(c.min_cleanable_dirty_ratio),
        ),
        ("delete_retention_ms", json!(millis(c.delete_retention_ms))),
    ];
    let config: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    out.object("config", &config)?;
    for (k, v) in &fields {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        out.text(format_args!("{k}: {v}"))?;
    }
    let mut partitions = Table::new(
        "partition",
        &[
            "partition",
            "log_start",
            "high_watermark",
            "last_stable",
            "segments",
            "size_bytes",
            "tail",
        ],
    );
    let mut segments = Table::new(
        "segment",
        &["partition", "base_offset", "size_bytes", "file"],
    );
    for p in 0..c.partitions {
        let d = view.describe_partition(&args.topic, p).map_err(fail)?;
        let tail = d.tail_damage.as_ref().map_or(json!("clean"), |t| {
            json!(format!("torn at byte {}: {}", t.position, t.reason))
        });
        partitions.row(vec![
            json!(p),
            json!(d.log_start_offset),
            json!(d.high_watermark),
            json!(d.last_stable_offset),
            json!(d.segments.len()),
            json!(d.size_bytes()),
            tail,
        ]);
        for s in &d.segments {
            segments.row(vec![
                json!(p),
                json!(s.base_offset),
                json!(s.size_bytes),
                json!(s.path.display().to_string()),
            ]);
        }
    }
    out.text("")?;
    out.table(&partitions)?;
    out.text("")?;
    out.table(&segments)?;
    Ok(Outcome::Clean)
}
