//! Property tests of the topic configuration in `topics.meta`: whatever validates is stored
//! exactly and validates again when read back, and a duration the file cannot hold exactly is
//! refused with `InvalidConfig` naming its field.

use std::path::Path;
use std::time::Duration;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::{decode_topics, encode_topics};
use crate::config::{CleanupPolicy, CompactionStrategy, TopicConfig};
use crate::error::Error;
use crate::format::{Compression, TimestampType};

const MAX_MS: u64 = i64::MAX as u64;

/// Durations of every kind: small, sub-millisecond, around the `i64::MAX` ms bound, and beyond
/// what `u64` milliseconds can hold.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        24 => (0u64..10_000_000).prop_map(Duration::from_millis),
        1 => Just(Duration::ZERO),
        1 => (MAX_MS - 3..=MAX_MS + 3).prop_map(Duration::from_millis),
        1 => any::<u64>().prop_map(Duration::from_millis),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        1 => (0u64..10_000, 1u32..1_000_000).prop_map(|(ms, ns)| {
            Duration::from_millis(ms) + Duration::from_nanos(ns.into())
        }),
        1 => Just(Duration::MAX),
    ]
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Lz4),
        (0i32..=23).prop_map(|level| Compression::Zstd { level }),
    ]
}

fn strategy() -> impl Strategy<Value = CompactionStrategy> {
    prop_oneof![
        Just(CompactionStrategy::Offset),
        Just(CompactionStrategy::Timestamp),
        "[a-z]{0,8}".prop_map(CompactionStrategy::Header),
    ]
}

fn topic_config() -> impl Strategy<Value = TopicConfig> {
    let sizes = (
        prop_oneof![9 => 1u32..=16, 1 => any::<u32>()],
        prop_oneof![9 => 1024u64..=(1 << 31) - 1, 1 => any::<u64>()],
        1024usize..=1 << 20,
        0usize..=1 << 16,
        prop_oneof![9 => 128usize..=1 << 20, 1 => 0usize..128],
        compression(),
        prop_oneof![
            Just(TimestampType::CreateTime),
            Just(TimestampType::LogAppendTime)
        ],
        prop_oneof![
            Just(CleanupPolicy::Delete),
            Just(CleanupPolicy::Compact),
            Just(CleanupPolicy::CompactAndDelete),
        ],
    );
    let cleaner = (
        option::of(duration()),
        option::of(1u64..=u64::MAX),
        prop_oneof![9 => 0.0f64..=1.0, 1 => any::<f64>()],
        duration(),
        option::of(duration()),
        duration(),
        strategy(),
        vec("[a-c]{1,2}", 0..3),
        option::of(duration()),
        option::of(1u64..=u64::MAX),
        duration(),
    );
    (sizes, cleaner).prop_map(
        |(
            (partitions, segment_bytes, index_bytes, interval, max_message, codec, ts, policy),
            (
                retention,
                retention_bytes,
                ratio,
                min_lag,
                max_lag,
                delete_retention,
                strategy,
                groups,
                max_retention,
                max_retention_bytes,
                segment_ms,
            ),
        )| {
            TopicConfig::default()
                .partitions(partitions)
                .segment_bytes(segment_bytes)
                .segment_ms(segment_ms)
                .segment_index_bytes(index_bytes)
                .index_interval_bytes(interval)
                .max_message_bytes(max_message)
                .compression(codec)
                .message_timestamp_type(ts)
                .cleanup_policy(policy)
                .retention_ms(retention)
                .retention_bytes(retention_bytes)
                .min_cleanable_dirty_ratio(ratio)
                .min_compaction_lag_ms(min_lag)
                .max_compaction_lag_ms(max_lag)
                .delete_retention_ms(delete_retention)
                .compaction_strategy(strategy)
                .retain_for_groups(groups)
                .max_retention_ms(max_retention)
                .max_retention_bytes(max_retention_bytes)
        },
    )
}

/// The duration fields as `(name, setter)`, so a test can put any value into any of them.
type Setter = fn(TopicConfig, Duration) -> TopicConfig;
const DURATION_FIELDS: [(&str, Setter); 6] = [
    ("segment_ms", |c, d| c.segment_ms(d)),
    ("retention_ms", |c, d| c.retention_ms(d)),
    ("min_compaction_lag_ms", |c, d| c.min_compaction_lag_ms(d)),
    ("max_compaction_lag_ms", |c, d| c.max_compaction_lag_ms(d)),
    ("delete_retention_ms", |c, d| c.delete_retention_ms(d)),
    ("max_retention_ms", |c, d| c.max_retention_ms(d)),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn what_validates_round_trips_exactly_and_validates_again(c in topic_config()) {
        match c.validate() {
            Ok(()) => {
                let topics = vec![("t".to_string(), c)];
                let fail = |e: Error| TestCaseError::fail(e.to_string());
                let bytes = encode_topics(topics.iter().map(|(n, c)| (n.as_str(), c))).map_err(fail)?;
                let back = decode_topics(Path::new("topics.meta"), &bytes).map_err(fail)?;
                prop_assert_eq!(&back, &topics);
                prop_assert!(back[0].1.validate().is_ok());
            }
            Err(e) => prop_assert!(matches!(e, Error::InvalidConfig { .. }), "{}", e),
        }
    }

    #[test]
    fn a_duration_topics_meta_cannot_hold_is_refused_by_name(
        field in 0..DURATION_FIELDS.len(),
        millis in MAX_MS + 1..=u64::MAX,
        sub_ms in 1u32..1_000_000,
        sub in any::<bool>(),
    ) {
        let (name, set) = DURATION_FIELDS[field];
        let bad = if sub {
            Duration::from_millis(millis % 1_000_000 + 1) + Duration::from_nanos(sub_ms.into())
        } else {
            Duration::from_millis(millis)
        };
        match set(TopicConfig::default(), bad).validate() {
            Err(Error::InvalidConfig { field, .. }) => prop_assert_eq!(field, name),
            other => prop_assert!(false, "{} = {:?} gave {:?}", name, bad, other),
        }
    }
}
