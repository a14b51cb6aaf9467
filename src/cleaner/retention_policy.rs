//! Retention policy: which whole segments to delete. Pure; no files.
//!
//! Rules (Kafka's, plus consumer-aware retention):
//! - Only whole segments are deleted, only a prefix of them (oldest first, stopping at the
//!   first one kept), and never the active (last) segment.
//! - A segment whose records all lie below the log start offset (after `delete_records`) is
//!   always deleted: nothing in it can be read any more.
//! - `retention_ms`: a segment is expired when its largest timestamp is more than
//!   `retention_ms` before now (Kafka judges by the largest timestamp, so one late record keeps
//!   its whole segment). An empty sealed segment is expired whenever `retention_ms` is set.
//! - `retention_bytes`: oldest segments are deleted while the partition stays at or above the
//!   limit without them (Kafka's `size - retention_bytes >= segment size`).
//! - `retain_for_groups`: an expired segment is held while any listed group has not committed an
//!   offset at or past the segment's end (a group that never committed holds everything).
//! - `max_retention_ms` / `max_retention_bytes`: hard caps, judged like the two above, that delete
//!   even what a group holds, so a dead group cannot fill the disk.

use super::SegmentInfo;

/// Everything the retention decision depends on.
#[derive(Debug, Clone)]
pub struct RetentionInput<'a> {
    /// The partition's segments, oldest first; the last one is the active segment.
    pub segments: &'a [SegmentInfo],
    /// The current log start offset.
    pub log_start_offset: u64,
    /// Whether the topic's cleanup policy includes `delete` (otherwise only segments wholly
    /// below the log start are deleted).
    pub delete_enabled: bool,
    /// `retention_ms` in milliseconds.
    pub retention_ms: Option<u64>,
    /// `retention_bytes`.
    pub retention_bytes: Option<u64>,
    /// `max_retention_ms` in milliseconds (hard cap).
    pub max_retention_ms: Option<u64>,
    /// `max_retention_bytes` (hard cap).
    pub max_retention_bytes: Option<u64>,
    /// The committed offset of each group in `retain_for_groups` (`None`: never committed).
    pub groups: &'a [(String, Option<u64>)],
    /// Wall-clock now, in milliseconds since the epoch.
    pub now_ms: i64,
}

/// Why a segment is deleted, most compelling first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every record in it is below the log start offset.
    BelowLogStart,
    /// A hard cap (`max_retention_*`) forced it, whatever the groups say.
    HardCap,
    /// `retention_ms` or `retention_bytes`, and no listed group holds it.
    Retention,
}

/// The decision: delete the first `delete` segments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPlan {
    /// Why each of the leading segments goes; its length is how many are deleted.
    pub reasons: Vec<Reason>,
    /// The log start offset after the deletion (never lower than before).
    pub log_start_offset: u64,
}

impl RetentionPlan {
    /// How many leading segments to delete.
    pub fn delete(&self) -> usize {
        self.reasons.len()
    }
}

/// Decides which leading segments retention deletes.
pub fn plan_retention(input: &RetentionInput<'_>) -> RetentionPlan {
    let segs = input.segments;
    let mut total: u64 = segs.iter().map(|s| s.size).sum();
    let mut reasons = Vec::new();
    // The active segment is never a candidate.
    for (i, s) in segs.iter().enumerate().take(segs.len().saturating_sub(1)) {
        let next_base = segs[i + 1].base_offset;
        let reason = if next_base <= input.log_start_offset {
            Some(Reason::BelowLogStart)
        } else if !input.delete_enabled {
            None
        } else {
            let over = |limit: Option<u64>| {
                limit.is_some_and(|l| total.saturating_sub(l) >= s.size && total >= l)
            };
            let older = |limit: Option<u64>| {
                limit.is_some_and(|l| {
                    s.max_timestamp < 0
                        || input.now_ms.saturating_sub(s.max_timestamp)
                            > l.min(i64::MAX as u64) as i64
                })
            };
            let cap = older(input.max_retention_ms) || over(input.max_retention_bytes);
            let due = older(input.retention_ms) || over(input.retention_bytes);
            // A group holds the segment until its committed offset (the next offset it will
            // read) is at or past the segment's end.
            let held = input
                .groups
                .iter()
                .any(|(_, committed)| committed.is_none_or(|c| c < s.next_offset));
            if cap {
                Some(Reason::HardCap)
            } else if due && !held {
                Some(Reason::Retention)
            } else {
                None
            }
        };
        match reason {
            Some(r) => {
                reasons.push(r);
                total -= s.size;
            }
            None => break,
        }
    }
    let log_start_offset = match reasons.len() {
        0 => input.log_start_offset,
        n => input.log_start_offset.max(segs[n].base_offset),
    };
    RetentionPlan {
        reasons,
        log_start_offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    /// `n` sealed segments of 100 offsets and 1000 bytes each, segment i with max timestamp
    /// `ts(i)`, plus an empty active segment.
    fn segments(n: u64, ts: impl Fn(u64) -> i64) -> Vec<SegmentInfo> {
        let mut v: Vec<SegmentInfo> = (0..n)
            .map(|i| SegmentInfo {
                base_offset: i * 100,
                next_offset: (i + 1) * 100,
                size: 1000,
                max_timestamp: ts(i),
            })
            .collect();
        v.push(SegmentInfo {
            base_offset: n * 100,
            next_offset: n * 100,
            size: 0,
            max_timestamp: -1,
        });
        v
    }

    fn input<'a>(
        segs: &'a [SegmentInfo],
        groups: &'a [(String, Option<u64>)],
    ) -> RetentionInput<'a> {
        RetentionInput {
            segments: segs,
            log_start_offset: 0,
            delete_enabled: true,
            retention_ms: None,
            retention_bytes: None,
            max_retention_ms: None,
            max_retention_bytes: None,
            groups,
            now_ms: NOW,
        }
    }

    #[test]
    fn nothing_is_deleted_without_limits() {
        let segs = segments(5, |_| 0);
        assert_eq!(plan_retention(&input(&segs, &[])).delete(), 0);
    }

    #[test]
    fn time_retention_deletes_the_expired_prefix_only() {
        // Segment 2 holds a late record, so it and everything after it stay (a prefix only).
        let segs = segments(5, |i| if i == 2 { NOW } else { NOW - 10_000 + i as i64 });
        let mut inp = input(&segs, &[]);
        inp.retention_ms = Some(5_000);
        let plan = plan_retention(&inp);
        assert_eq!(plan.reasons, vec![Reason::Retention, Reason::Retention]);
        assert_eq!(plan.log_start_offset, 200);
        // Exactly at the limit is not yet expired (Kafka: strictly greater).
        inp.retention_ms = Some(10_000);
        assert_eq!(plan_retention(&inp).delete(), 0);
        inp.retention_ms = Some(9_999);
        assert_eq!(plan_retention(&inp).delete(), 1);
    }

    #[test]
    fn the_active_segment_is_never_deleted() {
        let mut segs = segments(3, |_| 0);
        segs.last_mut().unwrap().size = 5000;
        segs.last_mut().unwrap().max_timestamp = 0;
        let mut inp = input(&segs, &[]);
        inp.retention_ms = Some(1);
        inp.retention_bytes = Some(1);
        let plan = plan_retention(&inp);
        assert_eq!(plan.delete(), 3);
        assert_eq!(plan.log_start_offset, 300);
    }

    #[test]
    fn size_retention_keeps_the_partition_at_or_above_the_limit() {
        let segs = segments(5, |_| NOW); // 5000 bytes
        let mut inp = input(&segs, &[]);
        inp.retention_bytes = Some(2500);
        // 5000 -> 4000 -> 3000; deleting another would leave 2000 < 2500.
        assert_eq!(plan_retention(&inp).delete(), 2);
        inp.retention_bytes = Some(3000);
        assert_eq!(plan_retention(&inp).delete(), 2);
        inp.retention_bytes = Some(3001);
        assert_eq!(plan_retention(&inp).delete(), 1);
        inp.retention_bytes = Some(6000);
        assert_eq!(plan_retention(&inp).delete(), 0);
    }

    #[test]
    fn a_lagging_or_silent_group_holds_expired_segments() {
        let segs = segments(4, |_| 0);
        let groups = vec![("a".to_string(), Some(400)), ("b".to_string(), Some(150))];
        let mut inp = input(&segs, &groups);
        inp.retention_ms = Some(1);
        // b has consumed segment 0 (ends at 100) but not segment 1 (ends at 200).
        let plan = plan_retention(&inp);
        assert_eq!(plan.delete(), 1);
        assert_eq!(plan.log_start_offset, 100);
        // Committed exactly at the end of segment 1: it is consumed.
        let groups = vec![("a".to_string(), Some(400)), ("b".to_string(), Some(200))];
        assert_eq!(plan_retention(&input_with(&inp, &groups)).delete(), 2);
        // A group that never committed holds everything.
        let groups = vec![("a".to_string(), Some(400)), ("c".to_string(), None)];
        assert_eq!(plan_retention(&input_with(&inp, &groups)).delete(), 0);
    }

    fn input_with<'a>(
        base: &RetentionInput<'a>,
        groups: &'a [(String, Option<u64>)],
    ) -> RetentionInput<'a> {
        RetentionInput {
            groups,
            ..base.clone()
        }
    }

    #[test]
    fn hard_caps_override_groups() {
        let segs = segments(4, |i| NOW - 100_000 + i as i64 * 50_000);
        let groups = vec![("dead".to_string(), None)];
        let mut inp = input(&segs, &groups);
        inp.retention_ms = Some(10);
        inp.max_retention_ms = Some(60_000);
        // Segments 0 (age 100 s) and 1 (age 50 s): only 0 is past the hard cap.
        let plan = plan_retention(&inp);
        assert_eq!(plan.reasons, vec![Reason::HardCap]);
        inp.max_retention_ms = None;
        inp.max_retention_bytes = Some(2000);
        // 4000 bytes: the size cap deletes two, the dead group notwithstanding.
        assert_eq!(
            plan_retention(&inp).reasons,
            vec![Reason::HardCap, Reason::HardCap]
        );
    }

    #[test]
    fn hard_cap_applies_without_ordinary_retention() {
        let segs = segments(3, |_| 0);
        let mut inp = input(&segs, &[]);
        inp.max_retention_ms = Some(1);
        assert_eq!(plan_retention(&inp).delete(), 3);
    }

    #[test]
    fn segments_below_the_log_start_go_even_without_delete_policy() {
        let segs = segments(4, |_| NOW);
        let mut inp = input(&segs, &[]);
        inp.delete_enabled = false;
        inp.retention_ms = Some(1);
        inp.log_start_offset = 250;
        let plan = plan_retention(&inp);
        assert_eq!(
            plan.reasons,
            vec![Reason::BelowLogStart, Reason::BelowLogStart]
        );
        // The start never moves down.
        assert_eq!(plan.log_start_offset, 250);
    }

    #[test]
    fn compact_only_topics_keep_expired_segments() {
        let segs = segments(4, |_| 0);
        let mut inp = input(&segs, &[]);
        inp.delete_enabled = false;
        inp.retention_ms = Some(1);
        assert_eq!(plan_retention(&inp).delete(), 0);
    }
}
