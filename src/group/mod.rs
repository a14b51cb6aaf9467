//! Consumer groups: the in-process coordinator (`coordinator.rs`), the commits it accepts
//! (`commit.rs`) and the assignors that split partitions between members (`assignor.rs`).

pub(crate) mod assignor;
mod commit;
mod coordinator;
mod metadata;

pub use assignor::Assignor;
pub(crate) use coordinator::{validate_group_id, Coordinator, Join};
pub use coordinator::{GroupDescription, MemberDescription, MAX_GROUP_ID_LEN};
pub use metadata::ConsumerGroupMetadata;
