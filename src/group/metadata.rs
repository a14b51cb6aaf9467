//! [`ConsumerGroupMetadata`]: who a consumer is in its group, handed to
//! `Producer::send_offsets_to_transaction` so a zombie member's offsets are fenced (KIP-447).

/// A consumer's group, generation and member id, as
/// [`Consumer::group_metadata`](crate::Consumer::group_metadata) returns them.
///
/// `send_offsets_to_transaction` accepts the offsets only while that member still owns each
/// partition (the same rule as [`Consumer::commit`](crate::Consumer::commit)): offsets from a
/// member the group has since removed fail with [`Error::MemberFenced`](crate::Error) and
/// make the transaction abort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The consumer's `group_id`.
    pub group_id: String,
    /// The generation the member last joined; 0 for a consumer with a manual assignment.
    pub generation_id: u32,
    /// The member id; empty for a consumer with a manual assignment (which may commit only
    /// while the group has no members).
    pub member_id: String,
}

impl ConsumerGroupMetadata {
    /// Metadata for a group's offsets written without a consumer: a manual assignment's.
    pub fn new(group_id: impl Into<String>) -> ConsumerGroupMetadata {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: 0,
            member_id: String::new(),
        }
    }
}
