//! Opening a log as its owner, for the commands that write (`produce`, `maintain`,
//! `delete-records`).
//!
//! `Log::open` creates a missing directory and adopts any directory it is given (taking its
//! lock, removing leftovers shaped like its own partition directories), which is right for a
//! program that owns its data directory and wrong for a typo on a command line. So a command
//! opens only a directory that is already a log — unless it was asked to create something, and
//! then only a missing or empty one.

use std::path::Path;

use annals::Log;

use crate::exit::Failure;

/// Files every log directory has: `.lock` from its first open on, `topics.meta` once a topic
/// was created.
const LOG_MARKERS: [&str; 2] = [".lock", "topics.meta"];

/// Whether a new log may be created at `dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// `dir` must already be a log.
    Never,
    /// `dir` may also be missing or empty; it becomes a new log.
    IfMissing,
}

/// Opens the log at `dir` for `command` (the word that starts error messages), with background
/// maintenance off: a command does its own work and exits.
pub fn open_log(dir: &Path, command: &str, create: Create) -> Result<Log, Failure> {
    check_dir(dir, command, create)?;
    Log::builder(dir)
        .maintenance_interval(None)
        .open()
        .map_err(|e| match e {
            annals::Error::Locked { .. } => Failure::at(
                command,
                dir,
                format!(
                    "{e}: {command} writes, so it needs the log to itself (the reading \
                     commands need no lock; a running service backs itself up with \
                     Log::checkpoint)"
                ),
            ),
            e => Failure::at(command, dir, e),
        })
}

/// Closes the log (seals segments, writes checkpoints, releases the lock), reporting failure.
pub fn close_log(log: &Log, command: &str) -> Result<(), Failure> {
    log.close().map_err(|e| Failure::at(command, log.dir(), e))
}

fn check_dir(dir: &Path, command: &str, create: Create) -> Result<(), Failure> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create == Create::IfMissing => {
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::at(command, dir, "no such log directory"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Failure::at(command, dir, "not a directory"));
        }
        Err(e) => return Err(Failure::at(command, dir, e)),
    };
    let mut empty = true;
    for entry in entries {
        let entry = entry.map_err(|e| Failure::at(command, dir, e))?;
        empty = false;
        if LOG_MARKERS.iter().any(|m| entry.file_name() == *m) {
            return Ok(());
        }
    }
    if empty && create == Create::IfMissing {
        return Ok(());
    }
    Err(Failure::at(
        command,
        dir,
        format!(
            "not an annals log directory (it has no {} or {})",
            LOG_MARKERS[0], LOG_MARKERS[1]
        ),
    ))
}
