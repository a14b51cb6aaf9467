//! Opening a log for the commands that only read (`topics`, `describe`, `tail`, `groups`,
//! `transactions`, `verify`): `Log::open_read_only`, which takes no lock, so they work on a log
//! a running service owns, and never writes.

use std::path::Path;

use annals::{Log, ReadOnlyLog};

use crate::exit::Failure;

/// Opens `dir` read-only for `command` (the word that starts error messages).
pub fn open_view(dir: &Path, command: &str) -> Result<ReadOnlyLog, Failure> {
    Log::open_read_only(dir).map_err(|e| open_failure(e, dir, command))
}

/// The one line for an error of `Log::open_read_only`.
pub fn open_failure(e: annals::Error, dir: &Path, command: &str) -> Failure {
    match e.io_kind() {
        Some(std::io::ErrorKind::NotFound) => Failure::at(command, dir, "no such log directory"),
        Some(std::io::ErrorKind::NotADirectory) => Failure::at(command, dir, "not a directory"),
        _ => Failure::at(command, dir, e),
    }
}

/// Milliseconds of a duration, for tables and JSON.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
