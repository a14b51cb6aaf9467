//! One module per command; each has its clap `Args` and a `run` returning
//! [`CmdResult`](crate::exit::CmdResult).

pub mod delete_records;
pub mod dump;
pub mod maintain;
pub mod produce;
