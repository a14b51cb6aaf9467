//! The in-process group coordinator: members, generations and a two-step (cooperative) handover
//! of partitions between members.
//!
//! Every membership change (join, leave, a member that stopped polling, a subscribed topic
//! created or deleted) starts a new generation with a new *target* assignment from the group's
//! assignor. Ownership follows the target in two steps, so no partition ever has two owners:
//!
//! 1. A member that owns a partition the target gives to someone else is told to revoke it on
//!    its next poll. It runs its `on_revoked` callback (where it may commit, still owning the
//!    partition) and then releases it.
//! 2. A released (or never owned) partition is granted to its target member on that member's
//!    next poll, which starts reading at the committed offset.
//!
//! A member that stops polling for `max_poll_interval` is removed and its partitions are freed;
//! its later commits are refused ([`Error::MemberFenced`]). A partition of a deleted topic is
//! taken from its owner, which learns it as *lost* at its next sync.
//!
//! Commits are judged by ownership now, not by generation: the coordinator is in-process and
//! knows who owns what, so a member may commit every partition it still owns — also during a
//! rebalance it has not caught up with — and only partitions it does not own are refused
//! ([`Error::NotAssigned`]). An accepted commit holds a `CommitPermit` (`commit.rs`) until its
//! offsets are durable and visible; while it is held, the partitions in it cannot change owner
//! (a member expiring meanwhile keeps them pinned, ungranted, until the write lands), so the
//! next owner always starts from that commit and a member that lost a partition can never write
//! after its successor. Membership lives in memory: a group is its members in this process;
//! only committed offsets persist.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::assignor::{self, Assignment, Assignor, Subscriptions};
use crate::error::{Error, Result};
use crate::topic_partition::TopicPartition;
use crate::trace::Listed;
use crate::wait::Waiter;

/// Longest group id accepted.
pub const MAX_GROUP_ID_LEN: usize = 255;

/// Checks a consumer group id: 1 to 255 bytes, no control characters.
pub(crate) fn validate_group_id(group: &str) -> Result<()> {
    let reason = if group.is_empty() {
        "it is empty"
    } else if group.len() > MAX_GROUP_ID_LEN {
        "it is longer than 255 bytes"
    } else if group.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidGroupId {
        group: group.to_string(),
        reason,
    })
}

/// A group as [`Log::groups`](crate::Log::groups) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct GroupDescription {
    pub group: String,
    /// Bumped by every membership change; 0 for a group with committed offsets and no members.
    pub generation: u32,
    /// The assignor the members use, if there are members.
    pub assignor: Option<Assignor>,
    pub members: Vec<MemberDescription>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: String,
    /// Topics the member subscribes to.
    pub topics: Vec<String>,
    /// Partitions the member owns now (during a rebalance this can lag its target).
    pub assignment: Vec<TopicPartition>,
}

/// What a member asks to join with.
#[derive(Debug)]
pub(crate) struct Join {
    pub group: String,
    pub client_id: String,
    pub topics: BTreeSet<String>,
    pub assignor: Assignor,
    pub max_poll_interval: Duration,
    pub waiter: Arc<Waiter>,
    /// Set whenever the coordinator wants this member to sync.
    pub attention: Arc<AtomicBool>,
}

/// What a member must do after a sync.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SyncResult {
    pub generation: u32,
    /// Owned partitions the target gives away: run `on_revoked`, then [`Coordinator::release`].
    pub revoke: Vec<TopicPartition>,
    /// Partitions now owned by this member, newly.
    pub granted: Vec<TopicPartition>,
    /// Partitions this member owned that were taken without a revoke (their topic was deleted):
    /// run `on_lost` and drop them.
    pub lost: Vec<TopicPartition>,
    /// Target partitions still owned by another member (or a commit in flight): poll again
    /// soon.
    pub waiting: bool,
}

#[derive(Debug)]
pub(super) struct Member {
    client_id: String,
    topics: BTreeSet<String>,
    max_poll_interval: Duration,
    last_seen: Instant,
    waiter: Arc<Waiter>,
    attention: Arc<AtomicBool>,
    /// Owned partitions taken away since the last sync (topic deleted), to report as lost.
    lost: Vec<TopicPartition>,
}

#[derive(Debug)]
pub(super) struct Group {
    generation: u32,
    assignor: Assignor,
    pub(super) members: BTreeMap<String, Member>,
    /// Confirmed ownership: a partition is here from its grant until its release.
    pub(super) owners: HashMap<TopicPartition, String>,
    target: Assignment,
    /// Partition counts of subscribed topics when the target was computed; a change (topic
    /// created, deleted) triggers a rebalance.
    topics_seen: BTreeMap<String, u32>,
    /// Commits in flight per partition (see `commit.rs`): a pinned partition that has no
    /// owner is granted to nobody until its count drops to zero.
    pub(super) pins: HashMap<TopicPartition, u32>,
}

/// All groups of one log.
#[derive(Debug, Default)]
pub(crate) struct Coordinator {
    pub(super) groups: Mutex<HashMap<String, Group>>,
    next_member: Mutex<u64>,
}

impl Group {
    pub(super) fn new(assignor: Assignor) -> Group {
        Group {
            generation: 0,
            assignor,
            members: BTreeMap::new(),
            owners: HashMap::new(),
            target: Assignment::new(),
            topics_seen: BTreeMap::new(),
            pins: HashMap::new(),
        }
    }

    /// A group entry is kept while it has members, or commits in flight that must land before
    /// a new member could be granted their partitions.
    pub(super) fn is_idle(&self) -> bool {
        self.members.is_empty() && self.pins.is_empty()
    }

    fn subscribed(&self, all: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
        let wanted: BTreeSet<&String> = self.members.values().flat_map(|m| &m.topics).collect();
        all.iter()
            .filter(|(t, _)| wanted.contains(t))
            .map(|(t, n)| (t.clone(), *n))
            .collect()
    }

    /// New generation, new target; wakes every member so parked polls act on it. `group` and
    /// `reason` are for the diagnostic.
    pub(super) fn rebalance(
        &mut self,
        group: &str,
        reason: &'static str,
        topics: &BTreeMap<String, u32>,
    ) {
        self.generation = self.generation.wrapping_add(1).max(1);
        self.topics_seen = self.subscribed(topics);
        let subs: Subscriptions = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.topics.clone()))
            .collect();
        // Stickiness is relative to who owns what now (targets not yet handed over do not
        // count as owned).
        let mut owned = Assignment::new();
        for (tp, m) in &self.owners {
            owned.entry(m.clone()).or_default().insert(tp.clone());
        }
        self.target = assignor::assign(self.assignor, &subs, &self.topics_seen, &owned);
        // Partitions of deleted topics (or beyond a shrunken count) are nobody's any more; their
        // owners learn it as a loss at their next sync.
        let seen = &self.topics_seen;
        let members = &mut self.members;
        self.owners.retain(|tp, owner| {
            let exists = seen
                .get(tp.topic.as_str())
                .is_some_and(|&n| tp.partition < n);
            if !exists {
                if let Some(m) = members.get_mut(owner) {
                    m.lost.push(tp.clone());
                }
            }
            exists
        });
        self.trace_rebalance(group, reason);
        self.wake_all();
    }

    /// The new generation: its size at `info`, each member's target at `debug`.
    fn trace_rebalance(&self, group: &str, reason: &'static str) {
        let target_of = |id: &str| self.target.get(id).map_or(0, BTreeSet::len);
        // Partitions the target gives to a member other than their owner now: the handovers
        // this generation starts (each a revoke, then a grant).
        let moving = || {
            self.owners
                .iter()
                .filter(|(tp, owner)| {
                    !self
                        .target
                        .get(owner.as_str())
                        .is_some_and(|t| t.contains(tp))
                })
                .count()
        };
        let unowned = || {
            self.target
                .values()
                .flatten()
                .filter(|tp| !self.owners.contains_key(tp))
                .count()
        };
        info!(
            group = %group,
            generation = self.generation,
            reason,
            members = self.members.len(),
            partitions = self.target.values().map(BTreeSet::len).sum::<usize>(),
            moving = moving(),
            unowned = unowned(),
            "consumer group rebalanced"
        );
        for id in self.members.keys() {
            debug!(
                group = %group,
                generation = self.generation,
                member = %id,
                partitions = target_of(id),
                target = %Listed(self.target.get(id).into_iter().flatten()),
                "member's target assignment"
            );
        }
    }

    pub(super) fn wake_all(&self) {
        for m in self.members.values() {
            m.attention.store(true, Ordering::Release);
            m.waiter.signal();
        }
    }

    /// Removes members that have not polled within their `max_poll_interval`. Returns whether
    /// any was removed. `group` is for the diagnostic.
    pub(super) fn expire(&mut self, group: &str, now: Instant) -> bool {
        let dead: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > m.max_poll_interval)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            let interval = self.members.get(id).map(|m| m.max_poll_interval);
            warn!(
                group = %group,
                member = %id,
                max_poll_interval_ms = interval.unwrap_or_default().as_millis() as u64,
                "removed a group member that did not poll within max_poll_interval"
            );
            self.remove_member(id);
        }
        !dead.is_empty()
    }

    fn remove_member(&mut self, id: &str) {
        self.members.remove(id);
        self.owners.retain(|_, owner| owner != id);
    }
}

impl Coordinator {
    /// Adds a member (starting a new generation) and returns its id.
    pub(crate) fn join(
        &self,
        req: Join,
        topics: &BTreeMap<String, u32>,
        now: Instant,
    ) -> Result<String> {
        let id = {
            let mut n = self.next_member.lock();
            *n += 1;
            format!("{}-{}", req.client_id, *n)
        };
        let mut groups = self.groups.lock();
        let group = groups
            .entry(req.group.clone())
            .or_insert_with(|| Group::new(req.assignor));
        if group.members.is_empty() {
            group.assignor = req.assignor;
        } else if group.assignor != req.assignor {
            return Err(Error::InvalidArgument(format!(
                "group {:?} uses the {:?} assignor; a member asked for {:?}",
                req.group, group.assignor, req.assignor
            )));
        }
        group.expire(&req.group, now);
        group.members.insert(
            id.clone(),
            Member {
                client_id: req.client_id,
                topics: req.topics,
                max_poll_interval: req.max_poll_interval,
                last_seen: now,
                waiter: req.waiter,
                attention: req.attention,
                lost: Vec::new(),
            },
        );
        group.rebalance(&req.group, "member joined", topics);
        Ok(id)
    }

    /// Removes a member; its partitions are free for the others at once.
    pub(crate) fn leave(&self, group_id: &str, member: &str, topics: &BTreeMap<String, u32>) {
        let mut groups = self.groups.lock();
        if let Some(group) = groups.get_mut(group_id) {
            if group.members.contains_key(member) {
                group.remove_member(member);
                group.rebalance(group_id, "member left", topics);
            }
            if group.is_idle() {
                groups.remove(group_id);
            }
        }
    }

    /// A member's heartbeat and handover step; see the module docs.
    pub(crate) fn sync(
        &self,
        group_id: &str,
        member: &str,
        topics: &BTreeMap<String, u32>,
        now: Instant,
    ) -> Result<SyncResult> {
        let mut groups = self.groups.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or_else(|| fenced(group_id, member))?;
        if group.expire(group_id, now) {
            group.rebalance(group_id, "member expired", topics);
        } else if group.subscribed(topics) != group.topics_seen {
            group.rebalance(group_id, "subscribed topics changed", topics);
        }
        let m = group
            .members
            .get_mut(member)
            .ok_or_else(|| fenced(group_id, member))?;
        m.last_seen = now;
        let mut lost = std::mem::take(&mut m.lost);
        lost.sort();
        let target = group.target.get(member).cloned().unwrap_or_default();
        let mut result = SyncResult {
            generation: group.generation,
            lost,
            ..SyncResult::default()
        };
        for (tp, owner) in &group.owners {
            if owner == member && !target.contains(tp) {
                result.revoke.push(tp.clone());
            }
        }
        for tp in target {
            match group.owners.get(&tp) {
                // A commit still in flight for it (its member expired meanwhile) lands first.
                None if group.pins.contains_key(&tp) => result.waiting = true,
                None => {
                    group.owners.insert(tp.clone(), member.to_string());
                    result.granted.push(tp);
                }
                Some(owner) if owner != member => result.waiting = true,
                Some(_) => {}
            }
        }
        result.revoke.sort();
        Ok(result)
    }

    /// Gives up ownership of `partitions` (after the member's `on_revoked` ran) and wakes the
    /// members waiting for them.
    pub(crate) fn release(&self, group_id: &str, member: &str, partitions: &[TopicPartition]) {
        let mut groups = self.groups.lock();
        if let Some(group) = groups.get_mut(group_id) {
            for tp in partitions {
                if group.owners.get(tp).is_some_and(|o| o == member) {
                    group.owners.remove(tp);
                }
            }
            group.wake_all();
        }
    }

    /// Changes a member's subscription (starting a new generation if it differs).
    pub(crate) fn resubscribe(
        &self,
        group_id: &str,
        member: &str,
        new_topics: BTreeSet<String>,
        topics: &BTreeMap<String, u32>,
    ) -> Result<()> {
        let mut groups = self.groups.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or_else(|| fenced(group_id, member))?;
        let m = group
            .members
            .get_mut(member)
            .ok_or_else(|| fenced(group_id, member))?;
        if m.topics != new_topics {
            m.topics = new_topics;
            group.rebalance(group_id, "subscription changed", topics);
        }
        Ok(())
    }

    /// Expires silent members of every group (so a listing does not show the dead) and
    /// describes the groups with members.
    pub(crate) fn describe(
        &self,
        topics: &BTreeMap<String, u32>,
        now: Instant,
    ) -> Vec<GroupDescription> {
        let mut groups = self.groups.lock();
        for (id, group) in groups.iter_mut() {
            if group.expire(id, now) {
                group.rebalance(id, "member expired", topics);
            }
        }
        groups.retain(|_, g| !g.is_idle());
        let mut out: Vec<GroupDescription> = groups
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|(id, g)| GroupDescription {
                group: id.clone(),
                generation: g.generation,
                assignor: Some(g.assignor),
                members: g
                    .members
                    .iter()
                    .map(|(mid, m)| {
                        let mut assignment: Vec<TopicPartition> = g
                            .owners
                            .iter()
                            .filter(|(_, o)| *o == mid)
                            .map(|(tp, _)| tp.clone())
                            .collect();
                        assignment.sort();
                        MemberDescription {
                            member_id: mid.clone(),
                            client_id: m.client_id.clone(),
                            topics: m.topics.iter().cloned().collect(),
                            assignment,
                        }
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }
}

pub(super) fn fenced(group: &str, member: &str) -> Error {
    Error::MemberFenced {
        group: group.to_string(),
        member: member.to_string(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::group) fn topics() -> BTreeMap<String, u32> {
        [("t".to_string(), 3)].into_iter().collect()
    }

    pub(in crate::group) fn join(c: &Coordinator, now: Instant) -> String {
        c.join(
            Join {
                group: "g".into(),
                client_id: "c".into(),
                topics: ["t".to_string()].into_iter().collect(),
                assignor: Assignor::Range,
                max_poll_interval: Duration::from_secs(10),
                waiter: Waiter::new(),
                attention: Default::default(),
            },
            &topics(),
            now,
        )
        .unwrap()
    }

    #[test]
    fn handover_waits_for_release_so_no_partition_has_two_owners() {
        let c = Coordinator::default();
        let now = Instant::now();
        let a = join(&c, now);
        let s = c.sync("g", &a, &topics(), now).unwrap();
        assert_eq!(s.granted.len(), 3);
        let b = join(&c, now);
        let sb = c.sync("g", &b, &topics(), now).unwrap();
        assert!(sb.granted.is_empty() && sb.waiting, "{sb:?}");
        // a still owns everything until it releases; its commits for them are accepted.
        let sa = c.sync("g", &a, &topics(), now).unwrap();
        assert_eq!(sa.revoke.len(), 1);
        let all: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("t", p)).collect();
        drop(c.begin_commit("g", Some(&a), &all, &topics(), now).unwrap());
        c.release("g", &a, &sa.revoke);
        let sb = c.sync("g", &b, &topics(), now).unwrap();
        assert_eq!(sb.granted, sa.revoke);
        assert!(!sb.waiting);
        // Now a committing the released partition is refused.
        let err = c.begin_commit("g", Some(&a), &sa.revoke, &topics(), now);
        assert!(matches!(err, Err(Error::NotAssigned { .. })), "{err:?}");
    }

    #[test]
    fn a_silent_member_is_removed_and_fenced() {
        let c = Coordinator::default();
        let t0 = Instant::now();
        let a = join(&c, t0);
        c.sync("g", &a, &topics(), t0).unwrap();
        // a goes silent past max_poll_interval; b's join removes it.
        let later = t0 + Duration::from_secs(11);
        let b = join(&c, later);
        let sb = c.sync("g", &b, &topics(), later).unwrap();
        assert_eq!(sb.granted.len(), 3);
        let err = c.sync("g", &a, &topics(), later).unwrap_err();
        assert!(matches!(err, Error::MemberFenced { .. }), "{err}");
        let tp = [TopicPartition::new("t", 0)];
        let err = c.begin_commit("g", Some(&a), &tp, &topics(), later);
        assert!(matches!(err, Err(Error::MemberFenced { .. })), "{err:?}");
    }

    #[test]
    fn a_deleted_topic_is_reported_lost_to_its_owner() {
        let c = Coordinator::default();
        let now = Instant::now();
        let a = join(&c, now);
        c.sync("g", &a, &topics(), now).unwrap();
        let s = c.sync("g", &a, &BTreeMap::new(), now).unwrap();
        assert_eq!(s.lost.len(), 3, "{s:?}");
        assert!(s.revoke.is_empty() && s.granted.is_empty());
        let s = c.sync("g", &a, &topics(), now).unwrap();
        assert!(s.lost.is_empty());
        assert_eq!(s.granted.len(), 3, "the topic came back: {s:?}");
    }

    #[test]
    fn leaving_frees_partitions_and_topic_changes_rebalance() {
        let c = Coordinator::default();
        let now = Instant::now();
        let a = join(&c, now);
        let b = join(&c, now);
        c.sync("g", &a, &topics(), now).unwrap();
        c.sync("g", &b, &topics(), now).unwrap();
        c.leave("g", &a, &topics());
        let sb = c.sync("g", &b, &topics(), now).unwrap();
        let owned = c.describe(&topics(), now)[0].members[0].assignment.len();
        assert_eq!(owned, 3, "{sb:?}");
        let more: BTreeMap<String, u32> = [("t".to_string(), 5)].into_iter().collect();
        let s = c.sync("g", &b, &more, now).unwrap();
        assert_eq!(s.granted.len(), 2);
        c.leave("g", &b, &more);
        assert!(c.describe(&more, now).is_empty());
    }

    #[test]
    fn group_ids_are_validated() {
        for bad in ["", "a\nb", "\0", &"x".repeat(256)] {
            assert!(validate_group_id(bad).is_err(), "{bad:?}");
        }
        validate_group_id("order-fulfillment v2/émoji").unwrap();
    }
}
