//! `annals`: the command-line tool of the annals commit log.
//!
//! Each command lives in its own file under `commands/`; this file holds the command line
//! (`Cli`, `Command`) and maps each command's result to the documented exit code
//! (see `exit.rs`). `relay` and `mirror` exist only with feature `kafka` (they link librdkafka).

mod commands;
mod exit;
mod output;
mod owner;
#[cfg(feature = "kafka")]
mod route;
mod view;
#[cfg(feature = "kafka")]
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Output;

/// Inspect and operate annals commit logs.
///
/// Exit codes: 0 success, 1 failure (one line on stderr says why), 2 usage error, 3 damage
/// found (everything readable was printed first).
#[derive(Debug, Parser)]
#[command(name = "annals", version, propagate_version = true)]
struct Cli {
    /// Print JSON lines instead of text: one JSON object per line, each with a "kind" field.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Topics(commands::topics::Args),
    Describe(commands::describe::Args),
    Dump(commands::dump::Args),
    Tail(commands::tail::Args),
    Produce(commands::produce::Args),
    Groups(commands::groups::Args),
    Transactions(commands::transactions::Args),
    Verify(commands::verify::Args),
    Maintain(commands::maintain::Args),
    DeleteRecords(commands::delete_records::Args),
    Backup(commands::backup::Args),
    #[cfg(feature = "kafka")]
    Relay(commands::relay::Args),
    #[cfg(feature = "kafka")]
    Mirror(commands::mirror::Args),
}

fn main() -> ExitCode {
    exit::install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version come here too, as "errors" printed to stdout.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let mut out = Output::stdout(cli.json);
    let result = match cli.command {
        Command::Topics(args) => commands::topics::run(&args, &mut out),
        Command::Describe(args) => commands::describe::run(&args, &mut out),
        Command::Dump(args) => commands::dump::run(&args, &mut out),
        Command::Tail(args) => commands::tail::run(&args, &mut out),
        Command::Groups(args) => commands::groups::run(&args, &mut out),
        Command::Transactions(args) => commands::transactions::run(&args, &mut out),
        Command::Verify(args) => commands::verify::run(&args, &mut out),
        Command::Produce(args) => commands::produce::run(&args, &mut out),
        Command::Maintain(args) => commands::maintain::run(&args, &mut out),
        Command::DeleteRecords(args) => commands::delete_records::run(&args, &mut out),
        Command::Backup(args) => commands::backup::run(&args, &mut out),
        #[cfg(feature = "kafka")]
        Command::Relay(args) => commands::relay::run(&args, &mut out),
        #[cfg(feature = "kafka")]
        Command::Mirror(args) => commands::mirror::run(&args, &mut out),
    };
    // What was printed before a failure is still flushed, so the failure's line follows it.
    let flushed = out.flush();
    exit::report(result.and_then(|outcome| flushed.map(|()| outcome)))
}
