//! `annals verify DIR`: a full check of every segment, index and metadata file.

use std::io::IsTerminal;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::exit::{CmdResult, Failure, Outcome};
use crate::output::Output;
use crate::view::open_failure;

/// Check every batch's CRC and records, offsets, both indexes and every metadata file, and
/// report each damaged place with its file and byte. Exits 3 when damage is found.
///
/// A torn tail of a newest segment is reported as a note, not damage: it is a write in
/// progress, or what a crash left for the next open to truncate. Run it on a log at rest or
/// one whose owner is not compacting (a segment swapped during the check can look damaged:
/// check again).
///
/// Example: annals verify data/
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory.
    pub dir: PathBuf,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: &Args, out: &mut Output) -> CmdResult {
    const COMMAND: &str = "verify";
    let view = match annals::Log::open_read_only(&args.dir) {
        Ok(view) => view,
        // A damaged topics.meta is damage found, not a failure of the check.
        Err(annals::Error::CorruptMetadata { file, reason }) => {
            out.text(format_args!("damage: {}: {reason}", file.display()))?;
            out.object(
                "damage",
                &json!({"path": file.display().to_string(), "position": null, "what": reason}),
            )?;
            out.text("DAMAGED: the topic list cannot be read, so nothing else was checked")?;
            out.object("summary", &json!({"files_checked": 1, "damage": 1}))?;
            return Ok(Outcome::Damaged);
        }
        Err(e) => return Err(open_failure(e, &args.dir, COMMAND)),
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if args.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {binary_bytes}/{binary_total_bytes} {eta}")
            .map_err(|e| Failure::Message(format!("progress bar: {e}")))?,
    );
    let report = view
        .verify(|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .map_err(|e| Failure::at(COMMAND, &args.dir, e))?;
    bar.finish_and_clear();
    for (kind, findings) in [("damage", &report.damage), ("note", &report.notes)] {
        for f in findings {
            let at = f
                .position
                .map(|p| format!(" at byte {p}"))
                .unwrap_or_default();
            out.text(format_args!("{kind}: {}{at}: {}", f.path.display(), f.what))?;
            out.object(
                kind,
                &json!({
                    "path": f.path.display().to_string(),
                    "position": f.position,
                    "what": f.what,
                }),
            )?;
        }
    }
    let summary = json!({
        "files_checked": report.files_checked,
        "bytes_checked": report.bytes_checked,
        "batches_checked": report.batches_checked,
        "damage": report.damage.len(),
        "notes": report.notes.len(),
    });
    out.text(format_args!(
        "{}: {} files, {} batches, {} bytes checked; {} damaged places, {} notes",
        if report.is_clean() {
            "clean"
        } else {
            "DAMAGED"
        },
        report.files_checked,
        report.batches_checked,
        report.bytes_checked,
        report.damage.len(),
        report.notes.len()
    ))?;
    out.object("summary", &summary)?;
    Ok(if report.is_clean() {
        Outcome::Clean
    } else {
        Outcome::Damaged
    })
}
