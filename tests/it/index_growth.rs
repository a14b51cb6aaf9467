//! Index files that start small and grow: a small partition costs a few KiB of real disk while
//! its log is open, and a long one still finds every record by offset and by time, also after
//! a reopen.
#![cfg(unix)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use annals::{Log, Record, TopicConfig};

/// Real disk (allocated blocks) under `dir`.
fn disk_use(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            meta.blocks() * 512
                + if meta.is_dir() {
                    disk_use(&e.path())
                } else {
                    0
                }
        })
        .sum()
}

#[test]
fn a_small_partition_takes_a_few_kib_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    log.create_topic("small", TopicConfig::default().partitions(4))
        .unwrap();
    for p in 0..4 {
        let part = log.partition("small", p).unwrap();
        part.append(&[Record::new("one event").key("k")]).unwrap();
        part.sync().unwrap();
        let used = disk_use(part.dir());
        assert!(
            used <= 64 << 10,
            "partition {p} takes {used} bytes of disk while open"
        );
    }
    log.close().unwrap();
}

#[test]
fn indexes_grow_and_keep_answering_across_a_reopen() {
    const RECORDS: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    // An entry per batch: 3,000 batches need 24 KB of `.index` and 36 KB of `.timeindex`, so
    // both files double several times from their first page (within one segment).
    let config = TopicConfig::default()
        .index_interval_bytes(0)
        .segment_index_bytes(1 << 20);
    let ts = |i: u64| 1_700_000_000_000 + i as i64;
    {
        let log = Log::open(dir.path()).unwrap();
        log.create_topic("long", config).unwrap();
        let p = log.partition("long", 0).unwrap();
        for i in 0..RECORDS {
            p.append(&[Record::new(format!("v{i}")).timestamp(ts(i))])
                .unwrap();
        }
        assert_eq!(p.segment_count(), 1);
        let index = p.dir().join(format!("{:020}.index", 0));
        let len = std::fs::metadata(&index).unwrap().len();
        assert!(
            ((RECORDS - 1) * 8..1 << 20).contains(&len),
            "the index grew to {len} bytes"
        );
        check(&p, RECORDS, ts);
        // Left unclean, so the reopen checks the indexes it finds instead of a sealed copy.
        std::mem::forget(log);
    }
    // The forgotten log still holds its lock (until this process exits): recover a copy of
    // its files, as a crash would have left them.
    let copy = tempfile::tempdir().unwrap();
    crate::common::copy_dir(dir.path(), copy.path());
    std::fs::remove_file(copy.path().join(".lock")).ok();
    let log = Log::open(copy.path()).unwrap();
    let p = log.partition("long", 0).unwrap();
    check(&p, RECORDS, ts);
    p.append(&[Record::new("after").timestamp(ts(RECORDS))])
        .unwrap();
    check(&p, RECORDS + 1, ts);
    log.close().unwrap();
    let log = Log::open(copy.path()).unwrap();
    check(&log.partition("long", 0).unwrap(), RECORDS + 1, ts);
}

/// Every 25th offset read back by offset, and found by its timestamp.
fn check(p: &annals::Partition, records: u64, ts: impl Fn(u64) -> i64) {
    assert_eq!(p.high_watermark(), records);
    for i in (0..records).step_by(25).chain([records - 1]) {
        let got = p.read(i, 1).unwrap();
        assert_eq!(got[0].offset, i);
        assert_eq!(
            p.offset_for_timestamp(ts(i)).unwrap(),
            Some(i),
            "time of {i}"
        );
    }
}
