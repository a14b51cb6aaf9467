//! `annals transactions DIR`: the transactions open now, and which of them hang.

use std::path::PathBuf;

use serde_json::json;

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::{Output, Table};
use crate::view::{millis, open_view};

/// List open transactions (like kafka-transactions describe / find-hanging): their producer,
/// state, age, timeout and partitions. One older than its timeout is hanging: the owner's
/// maintenance aborts it.
///
/// Example: annals transactions data/
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    const COMMAND: &str = "transactions";
    let view = open_view(&args.dir, COMMAND)?;
    let open = view
        .transactions()
        .map_err(|e| Failure::at(COMMAND, &args.dir, e))?;
    let mut table = Table::new(
        "transaction",
        &[
            "transactional_id",
            "producer_id",
            "epoch",
            "state",
            "age_ms",
            "timeout_ms",
            "hanging",
            "partitions",
        ],
    );
    for t in &open {
        let partitions: Vec<String> = t
            .partitions
            .iter()
            .map(|tp| format!("{}-{}", tp.topic, tp.partition))
            .collect();
        table.row(vec![
            json!(t.transactional_id),
            json!(t.producer_id),
            json!(t.producer_epoch),
            json!(format!("{:?}", t.state)),
            json!(millis(t.age)),
            json!(millis(t.timeout)),
            json!(t.age > t.timeout),
            json!(partitions.join(",")),
        ]);
    }
    if table.is_empty() {
        out.text("no open transactions")?;
    } else {
        out.table(&table)?;
    }
    Ok(Outcome::Clean)
}
