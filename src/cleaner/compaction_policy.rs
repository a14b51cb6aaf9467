//! Compaction policy: whether a partition is due, which segments may be touched, and how they
//! are grouped for rewriting. Pure; no files.
//!
//! Kafka's terms: the *clean* part is what earlier passes compacted (below the first dirty
//! offset), the *dirty* part what was appended since. A partition is due when the dirty share
//! of its cleanable bytes reaches `min_cleanable_dirty_ratio`, or when its oldest dirty segment
//! is older than `max_compaction_lag_ms`. Cleanable means sealed (never the active segment) and
//! not newer than `min_compaction_lag_ms` — counted as a prefix: the first segment too new to
//! clean ends the cleanable range, so offsets below the end are all eligible.
//!
//! Transactions (a later issue) will add one more bound here: nothing at or past the last
//! stable offset is cleanable, because its transaction's outcome is not known yet.

use super::SegmentInfo;

/// Everything the compaction decision depends on.
#[derive(Debug, Clone)]
pub(crate) struct CompactionInput<'a> {
    /// Oldest first; the last one is the active segment.
    pub segments: &'a [SegmentInfo],
    pub log_start_offset: u64,
    /// Everything below was compacted before (`Bounds::cleaned_end`).
    pub cleaned_end: u64,
    pub now_ms: i64,
    pub min_compaction_lag_ms: u64,
    pub max_compaction_lag_ms: Option<u64>,
    pub min_cleanable_dirty_ratio: f64,
    /// A previous pass stopped because the key map was full: go on whatever the ratio.
    pub continuing: bool,
}

/// A pass to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompactionPlan {
    /// `segments[..cleanable]` may be rewritten.
    pub cleanable: usize,
    /// Where the pass's key map starts.
    pub first_dirty: u64,
    /// Offset where the cleanable range ends (the first uncleanable segment's base).
    pub cleanable_end: u64,
    /// Dirty bytes / cleanable bytes.
    pub dirty_ratio: f64,
}

/// Decides whether a compaction pass is due, and over which segments.
pub(crate) fn plan_compaction(input: &CompactionInput<'_>) -> Option<CompactionPlan> {
    let segs = input.segments;
    let sealed = segs.len().saturating_sub(1);
    let newest_allowed = input
        .now_ms
        .saturating_sub(input.min_compaction_lag_ms.min(i64::MAX as u64) as i64);
    let cleanable = segs[..sealed]
        .iter()
        .take_while(|s| s.max_timestamp <= newest_allowed)
        .count();
    if cleanable == 0 {
        return None;
    }
    let cleanable_end = segs[cleanable].base_offset;
    let first_dirty = input.cleaned_end.max(input.log_start_offset);
    if first_dirty >= cleanable_end {
        return None;
    }
    let (mut clean, mut dirty) = (0u64, 0u64);
    let mut oldest_dirty = None;
    for (i, s) in segs[..cleanable].iter().enumerate() {
        // A segment counts as dirty if any of it lies at or past the first dirty offset.
        if segs[i + 1].base_offset > first_dirty {
            dirty += s.size;
            oldest_dirty.get_or_insert(s.max_timestamp);
        } else {
            clean += s.size;
        }
    }
    let total = clean + dirty;
    let dirty_ratio = if total == 0 {
        0.0
    } else {
        dirty as f64 / total as f64
    };
    let overdue = match (input.max_compaction_lag_ms, oldest_dirty) {
        (Some(max), Some(ts)) => input.now_ms.saturating_sub(ts) > max.min(i64::MAX as u64) as i64,
        _ => false,
    };
    let due = input.continuing
        || overdue
        || (total > 0 && dirty_ratio >= input.min_cleanable_dirty_ratio);
    due.then_some(CompactionPlan {
        cleanable,
        first_dirty,
        cleanable_end,
        dirty_ratio,
    })
}

/// Whether the segment `next` joins the group being rewritten into one new segment that starts
/// at offset `group_base` and has `written` bytes so far. Groups grow while the output so far
/// plus `next`'s whole input fits in `max_bytes` (`segment_bytes`: compaction only shrinks, so
/// the new segment cannot outgrow it) and the group stays within one segment's 32-bit
/// relative-offset range. Judging by output rather than input (Kafka's `groupSegmentsBySize`
/// sums inputs) merges the segments compaction has shrunk in the same pass that shrank them.
pub(crate) fn joins_group(
    group_base: u64,
    written: u64,
    next: &SegmentInfo,
    max_bytes: u64,
) -> bool {
    let span = next.next_offset.max(next.base_offset + 1) - group_base;
    written + next.size <= max_bytes && span <= i32::MAX as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(sizes_ts: &[(u64, i64)]) -> Vec<SegmentInfo> {
        let mut base = 0;
        let mut v: Vec<SegmentInfo> = sizes_ts
            .iter()
            .map(|&(size, ts)| {
                let s = SegmentInfo {
                    base_offset: base,
                    next_offset: base + 10,
                    size,
                    max_timestamp: ts,
                };
                base += 10;
                s
            })
            .collect();
        v.push(SegmentInfo {
            base_offset: base,
            next_offset: base,
            size: 0,
            max_timestamp: -1,
        });
        v
    }

    fn input(segments: &[SegmentInfo]) -> CompactionInput<'_> {
        CompactionInput {
            segments,
            log_start_offset: 0,
            cleaned_end: 0,
            now_ms: 1_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: None,
            min_cleanable_dirty_ratio: 0.5,
            continuing: false,
        }
    }

    #[test]
    fn never_the_active_segment_and_nothing_when_all_is_clean() {
        let s = segs(&[]);
        assert_eq!(plan_compaction(&input(&s)), None);
        let s = segs(&[(100, 0), (100, 0)]);
        let mut i = input(&s);
        let plan = plan_compaction(&i).unwrap();
        assert_eq!(plan.cleanable, 2);
        assert_eq!(plan.cleanable_end, 20);
        i.cleaned_end = 20;
        assert_eq!(plan_compaction(&i), None);
    }

    #[test]
    fn dirty_ratio_decides() {
        // 300 clean bytes, 100 dirty: ratio 0.25.
        let s = segs(&[(100, 0), (200, 0), (100, 0)]);
        let mut i = input(&s);
        i.cleaned_end = 30;
        // cleaned_end 30 = everything: nothing dirty.
        assert_eq!(plan_compaction(&i), None);
        i.cleaned_end = 20;
        assert_eq!(plan_compaction(&i), None);
        i.min_cleanable_dirty_ratio = 0.25;
        let plan = plan_compaction(&i).unwrap();
        assert_eq!(plan.first_dirty, 20);
        assert!((plan.dirty_ratio - 0.25).abs() < 1e-9);
        i.min_cleanable_dirty_ratio = 0.0;
        assert!(plan_compaction(&i).is_some());
        i.min_cleanable_dirty_ratio = 1.0;
        assert_eq!(plan_compaction(&i), None);
        i.continuing = true;
        assert!(plan_compaction(&i).is_some(), "an unfinished pass goes on");
    }

    #[test]
    fn min_lag_ends_the_cleanable_range_at_the_first_young_segment() {
        let s = segs(&[(100, 100), (100, 950), (100, 100)]);
        let mut i = input(&s);
        i.min_compaction_lag_ms = 100; // newest allowed: 900
        let plan = plan_compaction(&i).unwrap();
        assert_eq!(
            plan.cleanable, 1,
            "segment 1 is too young, and so is all after it"
        );
        assert_eq!(plan.cleanable_end, 10);
    }

    #[test]
    fn max_lag_forces_compaction_below_the_ratio() {
        let s = segs(&[(1000, 0), (1000, 0), (10, 200)]);
        let mut i = input(&s);
        i.cleaned_end = 20;
        i.min_cleanable_dirty_ratio = 0.9;
        assert_eq!(plan_compaction(&i), None);
        i.max_compaction_lag_ms = Some(900); // the dirty segment is 800 ms old
        assert_eq!(plan_compaction(&i), None);
        i.max_compaction_lag_ms = Some(799);
        assert!(plan_compaction(&i).is_some());
    }

    #[test]
    fn log_start_counts_as_cleaned() {
        let s = segs(&[(100, 0), (100, 0)]);
        let mut i = input(&s);
        i.log_start_offset = 20;
        assert_eq!(plan_compaction(&i), None);
    }

    #[test]
    fn groups_grow_while_the_output_and_the_next_input_fit() {
        let next = SegmentInfo {
            base_offset: 100,
            next_offset: 200,
            size: 600,
            max_timestamp: 0,
        };
        assert!(joins_group(0, 400, &next, 1000));
        assert!(!joins_group(0, 401, &next, 1000));
        // An emptied group takes a whole segment's input.
        assert!(joins_group(0, 0, &SegmentInfo { size: 1000, ..next }, 1000));
    }

    #[test]
    fn groups_respect_the_relative_offset_range() {
        let far = SegmentInfo {
            base_offset: 10,
            next_offset: i32::MAX as u64 + 1,
            size: 1,
            max_timestamp: 0,
        };
        assert!(joins_group(0, 0, &far, 1000));
        let farther = SegmentInfo {
            next_offset: i32::MAX as u64 + 2,
            ..far
        };
        assert!(!joins_group(0, 0, &farther, 1000));
    }
}
