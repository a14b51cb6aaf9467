//! One module per command; each has its clap `Args` and a `run` returning
//! [`CmdResult`](crate::exit::CmdResult). The reading commands open the log read-only
//! (`view.rs`), the writing ones as its owner (`owner.rs`).

pub mod backup;
pub mod delete_records;
pub mod describe;
pub mod dump;
pub mod groups;
pub mod maintain;
pub mod produce;
pub mod tail;
pub mod topics;
pub mod transactions;
pub mod verify;
