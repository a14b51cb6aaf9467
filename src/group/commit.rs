//! Which commits the coordinator accepts, and the permit that keeps an accepted commit's
//! partitions from changing owner until its offsets are written.
//!
//! The check and the write cannot happen under one lock: the write is an append and an fsync
//! of `__consumer_offsets`, and holding the coordinator's lock for an fsync would stall every
//! member's poll. Instead the check pins the partitions (a count per partition, under the
//! coordinator's lock) and the permit unpins them when dropped, after the write finished or
//! failed. Ownership moves only through the coordinator, and a pinned partition with no owner
//! (its member expired mid-commit) is granted to nobody, so the next owner reads its starting
//! position after the pinned commit is visible — the committed offset cannot go backwards
//! because a member lost a partition while writing.

use std::collections::BTreeMap;
use std::time::Instant;

use super::coordinator::{fenced, Coordinator, Group};
use crate::error::{Error, Result};
use crate::group::Assignor;
use crate::topic_partition::TopicPartition;

/// Held by an accepted commit until its offsets are durable and in the cache; see the module
/// docs. Dropping it (also on an error or a panic) lets the partitions move again.
#[must_use = "the partitions are protected only while the permit lives"]
pub(crate) struct CommitPermit<'a> {
    coordinator: &'a Coordinator,
    group: String,
    partitions: Vec<TopicPartition>,
}

impl std::fmt::Debug for CommitPermit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitPermit")
            .field("group", &self.group)
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl Coordinator {
    /// Accepts a commit of `partitions` for `group_id` and pins them, or refuses it.
    ///
    /// `member` is `None` for a consumer with a manual assignment, which may commit only while
    /// the group has no members. A member may commit exactly the partitions it owns now, in
    /// whatever generation it last saw; a member silent past its `max_poll_interval` is removed
    /// first, so its commit is refused as fenced.
    pub(crate) fn begin_commit(
        &self,
        group_id: &str,
        member: Option<&str>,
        partitions: &[TopicPartition],
        topics: &BTreeMap<String, u32>,
        now: Instant,
    ) -> Result<CommitPermit<'_>> {
        let mut groups = self.groups.lock();
        match member {
            None => {
                let group = groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(Assignor::default()));
                if !group.members.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "group {group_id:?} has subscribed members; a consumer with a manual \
                         assignment may not commit for it"
                    )));
                }
                pin(group, partitions);
            }
            Some(member) => {
                let group = groups
                    .get_mut(group_id)
                    .ok_or_else(|| fenced(group_id, member))?;
                if group.expire(group_id, now) {
                    group.rebalance(group_id, "member expired", topics);
                }
                if !group.members.contains_key(member) {
                    return Err(fenced(group_id, member));
                }
                if let Some(tp) = partitions
                    .iter()
                    .find(|tp| group.owners.get(*tp).map(String::as_str) != Some(member))
                {
                    return Err(Error::NotAssigned {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                    });
                }
                pin(group, partitions);
            }
        }
        Ok(CommitPermit {
            coordinator: self,
            group: group_id.to_string(),
            partitions: partitions.to_vec(),
        })
    }

    fn unpin(&self, group_id: &str, partitions: &[TopicPartition]) {
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return;
        };
        let mut freed_unowned = false;
        for tp in partitions {
            if let Some(n) = group.pins.get_mut(tp) {
                *n -= 1;
                if *n == 0 {
                    group.pins.remove(tp);
                    freed_unowned |= !group.owners.contains_key(tp);
                }
            }
        }
        if group.is_idle() {
            groups.remove(group_id);
        } else if freed_unowned {
            // A member waiting for a partition whose expired owner was still writing.
            group.wake_all();
        }
    }
}

fn pin(group: &mut Group, partitions: &[TopicPartition]) {
    for tp in partitions {
        *group.pins.entry(tp.clone()).or_insert(0) += 1;
    }
}

impl Drop for CommitPermit<'_> {
    fn drop(&mut self) {
        self.coordinator.unpin(&self.group, &self.partitions);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::group::coordinator::tests::{join, topics};

    fn all() -> Vec<TopicPartition> {
        (0..3).map(|p| TopicPartition::new("t", p)).collect()
    }

    #[test]
    fn a_member_commits_what_it_owns_whatever_the_generation() {
        let c = Coordinator::default();
        let now = Instant::now();
        let a = join(&c, now);
        let s = c.sync("g", &a, &topics(), now).unwrap();
        assert_eq!(s.granted.len(), 3);
        // b joins: a new generation a has not seen. a still owns all three partitions (nothing
        // was revoked yet), so its commit of all of them is accepted.
        let b = join(&c, now);
        drop(
            c.begin_commit("g", Some(&a), &all(), &topics(), now)
                .unwrap(),
        );
        // a syncs: one partition is to be revoked; until a releases it, a still owns it.
        let sa = c.sync("g", &a, &topics(), now).unwrap();
        assert_eq!(sa.revoke.len(), 1);
        drop(
            c.begin_commit("g", Some(&a), &all(), &topics(), now)
                .unwrap(),
        );
        c.release("g", &a, &sa.revoke);
        // Released: a's commit of it is refused; b gets it and may commit it.
        let err = c.begin_commit("g", Some(&a), &sa.revoke, &topics(), now);
        assert!(matches!(err, Err(Error::NotAssigned { .. })), "{err:?}");
        let sb = c.sync("g", &b, &topics(), now).unwrap();
        assert_eq!(sb.granted, sa.revoke);
        drop(
            c.begin_commit("g", Some(&b), &sb.granted, &topics(), now)
                .unwrap(),
        );
        // More members join (generations a has not seen): a still commits what it owns.
        let _c = join(&c, now);
        let _d = join(&c, now);
        let kept: Vec<TopicPartition> = all()
            .into_iter()
            .filter(|tp| !sa.revoke.contains(tp))
            .collect();
        drop(
            c.begin_commit("g", Some(&a), &kept, &topics(), now)
                .unwrap(),
        );
    }

    #[test]
    fn an_expired_member_is_fenced_and_its_commit_in_flight_keeps_the_partitions() {
        let c = Coordinator::default();
        let t0 = Instant::now();
        let a = join(&c, t0);
        c.sync("g", &a, &topics(), t0).unwrap();
        let permit = c
            .begin_commit("g", Some(&a), &all(), &topics(), t0)
            .unwrap();
        // a goes silent past max_poll_interval (10 s) while its commit is being written; b
        // joins and removes it, but cannot take the pinned partitions yet.
        let later = t0 + Duration::from_secs(11);
        let b = join(&c, later);
        let sb = c.sync("g", &b, &topics(), later).unwrap();
        assert!(sb.granted.is_empty() && sb.waiting, "{sb:?}");
        let err = c.begin_commit("g", Some(&a), &all(), &topics(), later);
        assert!(matches!(err, Err(Error::MemberFenced { .. })), "{err:?}");
        // The write finished: the partitions go to b.
        drop(permit);
        let sb = c.sync("g", &b, &topics(), later).unwrap();
        assert_eq!(sb.granted, all());
        assert!(!sb.waiting);
        // A member silent past its interval is fenced by its own commit too.
        let much_later = later + Duration::from_secs(11);
        let err = c.begin_commit("g", Some(&b), &all(), &topics(), much_later);
        assert!(matches!(err, Err(Error::MemberFenced { .. })), "{err:?}");
    }

    #[test]
    fn manual_commits_only_without_members_and_a_join_waits_for_them() {
        let c = Coordinator::default();
        let now = Instant::now();
        let tp = vec![TopicPartition::new("t", 0)];
        let permit = c.begin_commit("g", None, &tp, &topics(), now).unwrap();
        let a = join(&c, now);
        let s = c.sync("g", &a, &topics(), now).unwrap();
        assert_eq!(s.granted.len(), 2, "t-0 waits for the manual commit: {s:?}");
        assert!(s.waiting);
        let err = c.begin_commit("g", None, &tp, &topics(), now);
        assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
        drop(permit);
        let s = c.sync("g", &a, &topics(), now).unwrap();
        assert_eq!(s.granted, tp);
        c.leave("g", &a, &topics());
        // Without members (and nothing in flight) the group entry is gone.
        drop(c.begin_commit("other", None, &tp, &topics(), now).unwrap());
        assert!(c.groups.lock().is_empty());
    }
}
