//! Partition assignors: pure functions from (members and their subscriptions, topics and their
//! partition counts, the previous assignment) to a new assignment. No I/O, no clocks, so the
//! properties that matter (every partition owned exactly once, balance, stickiness) are
//! unit-tested directly.

use std::collections::{BTreeMap, BTreeSet};

use crate::topic_partition::TopicPartition;

/// How a consumer group splits partitions between its members (Kafka's
/// `partition.assignment.strategy`). Every member of a group must use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Assignor {
    /// Per topic, contiguous ranges of partitions to members in member-id order; the first
    /// members get one extra when the count does not divide (Kafka's `RangeAssignor`).
    #[default]
    Range,
    /// All partitions of all subscribed topics dealt out one at a time, in order, to the members
    /// subscribed to each (Kafka's `RoundRobinAssignor`).
    RoundRobin,
    /// Balanced like round robin, but a rebalance keeps every partition where it was unless
    /// balance requires moving it, so as few partitions as possible change owner (Kafka's
    /// `StickyAssignor`).
    Sticky,
}

/// A member's id and the topics it subscribes to.
pub(crate) type Subscriptions = BTreeMap<String, BTreeSet<String>>;
/// Member id → the partitions it owns.
pub(crate) type Assignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// Computes a new assignment. `topics` maps each existing topic to its partition count;
/// subscriptions to topics missing from it are ignored. Every member appears in the result, with
/// an empty set if it gets nothing.
pub(crate) fn assign(
    assignor: Assignor,
    members: &Subscriptions,
    topics: &BTreeMap<String, u32>,
    previous: &Assignment,
) -> Assignment {
    let mut out: Assignment = members
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    match assignor {
        Assignor::Range => range(members, topics, &mut out),
        Assignor::RoundRobin => round_robin(members, topics, &mut out),
        Assignor::Sticky => sticky(members, topics, previous, &mut out),
    }
    out
}

/// Members subscribed to `topic`, in id order.
fn subscribers<'a>(members: &'a Subscriptions, topic: &str) -> Vec<&'a String> {
    members
        .iter()
        .filter(|(_, topics)| topics.contains(topic))
        .map(|(m, _)| m)
        .collect()
}

/// Every partition of every topic some member subscribes to, in (topic, partition) order.
fn wanted_partitions(
    members: &Subscriptions,
    topics: &BTreeMap<String, u32>,
) -> Vec<TopicPartition> {
    let subscribed: BTreeSet<&String> = members.values().flatten().collect();
    topics
        .iter()
        .filter(|(t, _)| subscribed.contains(t))
        .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect()
}

fn range(members: &Subscriptions, topics: &BTreeMap<String, u32>, out: &mut Assignment) {
    for (topic, &count) in topics {
        let subs = subscribers(members, topic);
        if subs.is_empty() {
            continue;
        }
        let per = count as usize / subs.len();
        let extra = count as usize % subs.len();
        let mut next = 0u32;
        for (i, m) in subs.iter().enumerate() {
            let take = per + usize::from(i < extra);
            let set = out.get_mut(*m).expect("every member has an entry");
            for p in next..next + take as u32 {
                set.insert(TopicPartition::new(topic.clone(), p));
            }
            next += take as u32;
        }
    }
}

fn round_robin(members: &Subscriptions, topics: &BTreeMap<String, u32>, out: &mut Assignment) {
    let ids: Vec<&String> = members.keys().collect();
    if ids.is_empty() {
        return;
    }
    let mut cursor = 0usize;
    for tp in wanted_partitions(members, topics) {
        // Deal to the next member in the circle that subscribes to this topic.
        for step in 0..ids.len() {
            let m = ids[(cursor + step) % ids.len()];
            if members[m].contains(tp.topic.as_str()) {
                out.get_mut(m).expect("member entry").insert(tp);
                cursor = (cursor + step + 1) % ids.len();
                break;
            }
        }
    }
}

fn sticky(
    members: &Subscriptions,
    topics: &BTreeMap<String, u32>,
    previous: &Assignment,
    out: &mut Assignment,
) {
    let wanted: BTreeSet<TopicPartition> = wanted_partitions(members, topics).into_iter().collect();
    let eligible = |m: &String, tp: &TopicPartition| members[m].contains(tp.topic.as_str());
    // 1. Keep every previous ownership that is still valid (member present, still subscribed,
    //    partition still exists, not claimed twice).
    let mut placed = BTreeSet::new();
    for (m, owned) in previous {
        if !members.contains_key(m) {
            continue;
        }
        for tp in owned {
            if wanted.contains(tp) && eligible(m, tp) && placed.insert(tp.clone()) {
                out.get_mut(m).expect("member entry").insert(tp.clone());
            }
        }
    }
    // 2. Place the rest, each on the least-loaded member that can take it.
    for tp in wanted.iter().filter(|tp| !placed.contains(*tp)) {
        let target = out
            .iter()
            .filter(|(m, _)| eligible(m, tp))
            .min_by_key(|(m, set)| (set.len(), (*m).clone()))
            .map(|(m, _)| m.clone());
        if let Some(m) = target {
            out.get_mut(&m).expect("member entry").insert(tp.clone());
        }
    }
    // 3. Balance: move one partition at a time from a member to an eligible member holding at
    //    least two fewer. Each move lowers the sum of squared loads, so this ends; a move only
    //    happens when balance demands it, so nothing moves that did not have to.
    loop {
        let mut moved = false;
        let mut by_load: Vec<String> = out.keys().cloned().collect();
        by_load.sort_by_key(|m| std::cmp::Reverse(out[m].len()));
        'search: for from in &by_load {
            let from_len = out[from].len();
            // Prefer giving away the highest partitions: deterministic, and it keeps low
            // partition numbers stable.
            let candidates: Vec<TopicPartition> = out[from].iter().rev().cloned().collect();
            for tp in candidates {
                let to = out
                    .iter()
                    .filter(|(m, set)| *m != from && eligible(m, &tp) && set.len() + 1 < from_len)
                    .min_by_key(|(m, set)| (set.len(), (*m).clone()))
                    .map(|(m, _)| m.clone());
                if let Some(to) = to {
                    out.get_mut(from).expect("member").remove(&tp);
                    out.get_mut(&to).expect("member").insert(tp);
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> Subscriptions {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn topics(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    /// Every wanted partition is owned by exactly one eligible member.
    fn check_complete(members: &Subscriptions, t: &BTreeMap<String, u32>, a: &Assignment) {
        let wanted: BTreeSet<_> = wanted_partitions(members, t).into_iter().collect();
        let mut seen = BTreeSet::new();
        for (m, set) in a {
            for tp in set {
                assert!(
                    members[m].contains(tp.topic.as_str()),
                    "{m} got {tp} unsubscribed"
                );
                assert!(seen.insert(tp.clone()), "{tp} owned twice");
            }
        }
        assert_eq!(seen, wanted);
    }

    fn loads(a: &Assignment) -> Vec<usize> {
        a.values().map(|s| s.len()).collect()
    }

    #[test]
    fn three_partitions_one_to_four_members_every_assignor() {
        let t = topics(&[("orders", 3)]);
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            for n in 1usize..=4 {
                let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
                let list: Vec<(&str, &[&str])> = names
                    .iter()
                    .map(|m| (m.as_str(), &["orders"][..]))
                    .collect();
                let members = subs(&list);
                let a = assign(assignor, &members, &t, &Assignment::new());
                check_complete(&members, &t, &a);
                let l = loads(&a);
                assert!(l.iter().max().unwrap() - l.iter().min().unwrap() <= 1);
                assert_eq!(l.iter().filter(|&&x| x == 0).count(), n.saturating_sub(3));
            }
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_first_members_get_extra() {
        let t = topics(&[("a", 7)]);
        let members = subs(&[("m1", &["a"]), ("m2", &["a"]), ("m3", &["a"])]);
        let a = assign(Assignor::Range, &members, &t, &Assignment::new());
        let parts = |m: &str| a[m].iter().map(|tp| tp.partition).collect::<Vec<_>>();
        assert_eq!(parts("m1"), vec![0, 1, 2]);
        assert_eq!(parts("m2"), vec![3, 4]);
        assert_eq!(parts("m3"), vec![5, 6]);
    }

    #[test]
    fn round_robin_deals_across_topics_and_respects_subscriptions() {
        let t = topics(&[("a", 2), ("b", 2), ("c", 4)]);
        let members = subs(&[("m1", &["a", "b", "c"]), ("m2", &["a", "c"])]);
        let a = assign(Assignor::RoundRobin, &members, &t, &Assignment::new());
        check_complete(&members, &t, &a);
        assert!(a["m2"].iter().all(|tp| tp.topic != "b"));
        // An unsubscribed topic is left alone entirely.
        let only_a = subs(&[("m1", &["a"])]);
        let a = assign(Assignor::RoundRobin, &only_a, &t, &Assignment::new());
        assert_eq!(a["m1"].len(), 2);
    }

    #[test]
    fn unknown_topics_and_empty_groups_are_harmless() {
        let t = topics(&[("a", 2)]);
        let members = subs(&[("m1", &["nope"])]);
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            let a = assign(assignor, &members, &t, &Assignment::new());
            assert!(a["m1"].is_empty());
            assert!(assign(assignor, &Subscriptions::new(), &t, &Assignment::new()).is_empty());
        }
    }

    /// Fewest moves any balanced assignment could make from `prev` when members have equal
    /// subscriptions: members keep up to their quota (the largest previous holders get the
    /// rounded-up quotas), the rest must move.
    fn min_moves(prev: &Assignment, members: &[String], total: usize) -> usize {
        let n = members.len();
        let mut held: Vec<usize> = members
            .iter()
            .map(|m| prev.get(m).map_or(0, |s| s.len()))
            .collect();
        held.sort_unstable_by(|a, b| b.cmp(a));
        let (floor, extra) = (total / n, total % n);
        let kept: usize = held
            .iter()
            .enumerate()
            .map(|(i, &h)| h.min(floor + usize::from(i < extra)))
            .sum();
        total - kept
    }

    fn moved(prev: &Assignment, next: &Assignment) -> usize {
        next.iter()
            .map(|(m, set)| {
                let before = prev.get(m).cloned().unwrap_or_default();
                set.difference(&before).count()
            })
            .sum()
    }

    #[test]
    fn sticky_moves_the_minimum_as_members_come_and_go() {
        let t = topics(&[("a", 12), ("b", 5)]);
        let total = 17;
        let mut prev = Assignment::new();
        let mut live: Vec<String> = Vec::new();
        // Joins one by one, then leaves in a scrambled order.
        let script: Vec<(bool, &str)> = vec![
            (true, "m1"),
            (true, "m2"),
            (true, "m3"),
            (true, "m4"),
            (false, "m2"),
            (true, "m5"),
            (false, "m1"),
            (false, "m4"),
            (true, "m6"),
        ];
        for (join, m) in script {
            if join {
                live.push(m.to_string());
            } else {
                live.retain(|x| x != m);
                prev.remove(m);
            }
            let list: Vec<(&str, &[&str])> =
                live.iter().map(|m| (m.as_str(), &["a", "b"][..])).collect();
            let members = subs(&list);
            let next = assign(Assignor::Sticky, &members, &t, &prev);
            check_complete(&members, &t, &next);
            let l = loads(&next);
            assert!(
                l.iter().max().unwrap() - l.iter().min().unwrap() <= 1,
                "{l:?}"
            );
            assert_eq!(
                moved(&prev, &next),
                min_moves(&prev, &live, total),
                "after {m}"
            );
            prev = next;
        }
    }

    #[test]
    fn range_and_round_robin_move_more_than_sticky() {
        // The reason sticky exists: adding a fourth member to 12 partitions.
        let t = topics(&[("a", 12)]);
        let three = subs(&[("m1", &["a"]), ("m2", &["a"]), ("m3", &["a"])]);
        let four = subs(&[
            ("m0", &["a"]),
            ("m1", &["a"]),
            ("m2", &["a"]),
            ("m3", &["a"]),
        ]);
        let prev = assign(Assignor::Range, &three, &t, &Assignment::new());
        let by_range = moved(&prev, &assign(Assignor::Range, &four, &t, &prev));
        let by_sticky = moved(&prev, &assign(Assignor::Sticky, &four, &t, &prev));
        assert_eq!(by_sticky, 3);
        assert!(by_range > by_sticky, "range moved {by_range}");
    }

    #[test]
    fn sticky_handles_unequal_subscriptions() {
        let t = topics(&[("a", 4), ("b", 4)]);
        let members = subs(&[("m1", &["a"]), ("m2", &["a", "b"]), ("m3", &["b"])]);
        let a = assign(Assignor::Sticky, &members, &t, &Assignment::new());
        check_complete(&members, &t, &a);
        // No member can take a partition from one holding two more.
        for (from, set) in &a {
            for tp in set {
                for (to, other) in &a {
                    if to != from && members[to].contains(tp.topic.as_str()) {
                        assert!(other.len() + 1 >= set.len(), "{from}->{to} {tp}");
                    }
                }
            }
        }
    }
}
