//! One module per command; each has its clap `Args` and a `run` returning
//! [`CmdResult`](crate::exit::CmdResult). The reading commands open the log read-only
//! (`view.rs`), the writing ones as its owner (`owner.rs`); `relay` and `mirror` (feature `kafka`)
//! run annals-kafka's workers as `worker.rs` says.

pub mod backup;
pub mod delete_records;
pub mod describe;
pub mod dump;
pub mod groups;
pub mod maintain;
#[cfg(feature = "kafka")]
pub mod mirror;
pub mod produce;
#[cfg(feature = "kafka")]
pub mod relay;
pub mod tail;
pub mod topics;
pub mod transactions;
pub mod verify;
