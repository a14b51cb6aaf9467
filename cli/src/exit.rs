//! The documented exit codes and the one error type every command returns.
//!
//! | code | meaning |
//! |---:|---|
//! | 0 | success |
//! | 1 | failure: the command could not do its work (the one-line message says why) |
//! | 2 | usage: the command line is wrong (clap's own errors) |
//! | 3 | damage found: the command printed everything it could read and found damage |
//!
//! Scripts can tell "the tool failed" (1) from "the data is damaged" (3).

use std::fmt::Display;
use std::io;
use std::path::Path;
use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// The command could not do its work.
pub const FAILURE: u8 = 1;
/// The command line is wrong. clap exits with this code itself (`Error::exit`).
pub const USAGE: u8 = 2;
/// Damage found (a bad CRC, an index entry that does not match the log, garbage mid-file).
pub const DAMAGE: u8 = 3;

/// How a command that did its work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing wrong found.
    Clean,
    /// The command printed everything, and some of it was damage.
    Damaged,
}

/// Why a command stopped.
#[derive(Debug)]
pub enum Failure {
    /// One line for stderr, `<operation> <path>: <cause>`, without the `annals: ` prefix.
    Message(String),
    /// Standard output was closed by its reader (`annals dump ... | head`): not an error of
    /// the tool, so it stops quietly.
    BrokenPipe,
}

impl Failure {
    /// `<operation> <path>: <cause>`.
    pub fn at(operation: &str, path: &Path, cause: impl Display) -> Failure {
        Failure::Message(format!("{operation} {}: {cause}", path.display()))
    }

    /// An error writing standard output.
    pub fn stdout(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Message(format!("write standard output: {e}"))
        }
    }
}

/// What every command returns.
pub type CmdResult = Result<Outcome, Failure>;

/// The process exit code for a command's result; prints the failure's one line.
pub fn report(result: CmdResult) -> ExitCode {
    match result {
        Ok(Outcome::Clean) | Err(Failure::BrokenPipe) => ExitCode::from(OK),
        Ok(Outcome::Damaged) => ExitCode::from(DAMAGE),
        Err(Failure::Message(message)) => {
            eprintln!("annals: {}", one_line(&message));
            ExitCode::from(FAILURE)
        }
    }
}

/// Messages from lower layers may hold line breaks; the contract is one line.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Turns a panic (a bug) into one line on stderr and exit code 1 instead of Rust's default
/// message with its backtrace hint.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "annals: internal error (a bug, please report it){at}: {}",
            one_line(&what)
        );
        std::process::exit(i32::from(FAILURE));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
