//! annals beside its peers: the workloads that `benches/peers.rs` (criterion) and the `compare`
//! binary (the README's Performance table) both run, kept out of the `annals` crate so that a
//! user's first `cargo run --example quickstart` does not build SQLite, redb and commitlog.

/// The benchmark records and the raw-file record layout, shared with the root crate's own
/// benches. Included by path rather than duplicated: those benches cannot depend on this crate
/// (it depends on `annals`), and one generator keeps every table measuring the same records.
#[path = "../../benches/common/mod.rs"]
pub mod common;

pub mod event_store;
pub mod workloads;
