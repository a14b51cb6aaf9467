//! `Partition::iter` and `Partition::range`: every record once, in order, across segments and
//! compaction gaps, with clear errors at the edges.

use annals::{CleanupPolicy, Error, Log, Record, TopicConfig};

fn log_with(config: TopicConfig) -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("t", config).unwrap();
    (dir, log)
}

fn offsets(it: impl Iterator<Item = annals::Result<annals::StoredRecord>>) -> Vec<u64> {
    it.map(|r| r.unwrap().offset).collect()
}

#[test]
fn iterates_across_segments_and_ranges() {
    // Small segments: the 3,000 records span many, and several refills.
    let (_dir, log) = log_with(TopicConfig::default().segment_bytes(4 << 10));
    let p = log.partition("t", 0).unwrap();
    for i in 0..300 {
        let batch: Vec<Record> = (0..10)
            .map(|j| Record::new(format!("v{}", i * 10 + j)))
            .collect();
        p.append(&batch).unwrap();
    }
    assert!(p.segment_count() > 5);
    assert_eq!(offsets(p.iter(0)), (0..3000).collect::<Vec<_>>());
    assert_eq!(offsets(p.iter(2995)), (2995..3000).collect::<Vec<_>>());
    assert_eq!(offsets(p.range(5..8)), vec![5, 6, 7]);
    assert_eq!(offsets(p.range(5..=8)), vec![5, 6, 7, 8]);
    assert_eq!(offsets(p.range(..3)), vec![0, 1, 2]);
    assert_eq!(offsets(p.range(2998..)), vec![2998, 2999]);
    assert_eq!(p.range(7..7).count(), 0);
    assert_eq!(p.iter(3000).count(), 0, "at the high watermark: nothing");
    // The end is the high watermark when the iterator was made.
    let it = p.iter(2999);
    p.append(&[Record::new("later")]).unwrap();
    assert_eq!(offsets(it), vec![2999]);
    let last = p.iter(3000).next().unwrap().unwrap();
    assert_eq!(last.value_str(), Some("later"));
}

#[test]
fn compaction_gaps_are_skipped() {
    let (_dir, log) = log_with(
        TopicConfig::default()
            .segment_bytes(4 << 10)
            .cleanup_policy(CleanupPolicy::Compact)
            .min_cleanable_dirty_ratio(0.0),
    );
    let p = log.partition("t", 0).unwrap();
    for i in 0..400u32 {
        p.append(&[Record::new(format!("{i}")).key(format!("k{}", i % 10))])
            .unwrap();
    }
    log.run_maintenance().unwrap();
    let kept = offsets(p.iter(0));
    let read: Vec<u64> = p
        .read(0, 64 << 20)
        .unwrap()
        .into_iter()
        .map(|r| r.offset)
        .collect();
    assert!(
        kept.len() < 400,
        "compaction removed records: {}",
        kept.len()
    );
    assert!(kept.windows(2).all(|w| w[0] < w[1]));
    // What the iterator yields is what a read of the whole partition returns.
    let mut all = read;
    let mut next = all.last().map_or(0, |l| l + 1);
    while next < p.high_watermark() {
        let more = p.read(next, 64 << 20).unwrap();
        next = more.last().map_or(p.high_watermark(), |l| l.offset + 1);
        all.extend(more.into_iter().map(|r| r.offset));
    }
    assert_eq!(kept, all);
}

#[test]
fn bad_starts_and_closed_partitions_are_errors_then_the_end() {
    let (_dir, log) = log_with(TopicConfig::default());
    let p = log.partition("t", 0).unwrap();
    p.append(&[Record::new("a"), Record::new("b")]).unwrap();
    let mut past = p.iter(10);
    // Past the high watermark: the range is empty before any read.
    assert!(past.next().is_none());
    p.delete_records(1).unwrap();
    let mut below = p.range(0..2);
    assert!(matches!(
        below.next(),
        Some(Err(Error::OffsetOutOfRange {
            requested: 0,
            earliest: 1,
            ..
        }))
    ));
    assert!(below.next().is_none(), "an error ends the iteration");
    assert_eq!(
        offsets(p.range(..)),
        vec![1],
        "an open start is the log start"
    );
    let it = p.iter(1);
    log.close().unwrap();
    let mut it = it;
    assert!(matches!(it.next(), Some(Err(Error::Closed))));
    assert!(it.next().is_none());
}
