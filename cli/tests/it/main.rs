//! The `annals` binary driven with assert_cmd on logs built with the annals API.

mod backup;
mod bad_input;
mod common;
mod delete_records;
mod dump_damage;
mod dump_golden;
mod dump_verify;
mod kafka;
mod maintain;
mod produce;
mod read_commands;
