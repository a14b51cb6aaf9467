//! `Partition::read_batches` (borrowing batch views) returns exactly what `read_into` (owned
//! records) returns: random records with headers and null fields, every codec, both timestamp
//! types, random start offsets and sizes, compaction gaps; plus its bad input.

use crate::common;

use annals::format::BatchView;
use annals::{
    CleanupPolicy, Compression, Error, Log, Partition, Record, StoredRecord, TimestampType,
    TopicConfig,
};
use common::{random_record, Rng};

/// `read_batches` flattened into owned records, for comparison.
fn via_views(p: &Partition, offset: u64, max_bytes: usize) -> annals::Result<Vec<StoredRecord>> {
    let mut views: Vec<BatchView> = Vec::new();
    p.read_batches(offset, max_bytes, &mut views)?;
    let mut out = Vec::new();
    for view in &views {
        for r in view.records() {
            let r = r?;
            out.push((
                r.offset,
                r.timestamp,
                r.key.map(|k| k.to_vec()),
                r.value.map(|v| v.to_vec()),
                r.headers()
                    .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                    .collect::<Vec<_>>(),
            ));
        }
    }
    // Compare through the owned type's fields.
    let mut owned = Vec::new();
    p.read_into(offset, max_bytes, &mut owned)?;
    let flat: Vec<_> = owned
        .iter()
        .map(|r| {
            (
                r.offset,
                r.timestamp,
                r.key.as_ref().map(|k| k.to_vec()),
                r.value.as_ref().map(|v| v.to_vec()),
                r.headers
                    .iter()
                    .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        out, flat,
        "views and owned records differ from offset {offset}"
    );
    Ok(owned)
}

#[test]
fn views_match_owned_records_for_every_codec_and_offset() {
    let seed = common::base_seed();
    let _guard = common::SeedGuard::new("views_match_owned_records", seed);
    let mut rng = Rng::new(seed);
    for case in 0..common::cases(12) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let codec = *rng.pick(&[
            Compression::None,
            Compression::Lz4,
            Compression::Zstd { level: 3 },
        ]);
        let ts_type = if rng.chance(30) {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
        let config = TopicConfig::default()
            .compression(codec)
            .message_timestamp_type(ts_type)
            .segment_bytes(rng.range(4096, 200_000));
        log.create_topic("t", config).unwrap();
        let p = log.partition("t", 0).unwrap();
        for _ in 0..rng.usize(5, 40) {
            let n = rng.usize(1, 30);
            let recs: Vec<Record> = (0..n)
                .map(|_| {
                    let ts = rng.range(0, 1 << 40) as i64;
                    random_record(&mut rng, Some(ts))
                })
                .collect();
            p.append(&recs).unwrap();
        }
        let hw = p.high_watermark();
        for _ in 0..20 {
            let offset = rng.below(hw + 1);
            let max_bytes = rng.usize(1, 300_000);
            let got = via_views(&p, offset, max_bytes).unwrap();
            if offset < hw {
                assert_eq!(got.first().map(|r| r.offset), Some(offset), "case {case}");
            }
        }
        let mut views = Vec::new();
        assert!(matches!(
            p.read_batches(hw + 1, 1 << 20, &mut views),
            Err(Error::OffsetOutOfRange { .. })
        ));
        p.read_batches(hw, 1 << 20, &mut views).unwrap();
        assert!(views.is_empty());
    }
}

#[test]
fn views_skip_compaction_gaps_like_owned_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::builder(dir.path())
        .maintenance_interval(None)
        .open()
        .unwrap();
    let mut config = TopicConfig::default()
        .segment_bytes(2048)
        .cleanup_policy(CleanupPolicy::Compact);
    config.min_cleanable_dirty_ratio = 0.0;
    log.create_topic("t", config).unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..400u32 {
        p.append(&[Record::new(format!("v{i}")).key(format!("k{}", i % 7))])
            .unwrap();
    }
    log.run_maintenance().unwrap();
    let all = via_views(&p, 0, usize::MAX >> 1).unwrap();
    assert!(
        all.len() < 400,
        "compaction removed records ({})",
        all.len()
    );
    // Start inside every gap and check both paths agree on what comes next.
    for offset in 0..p.high_watermark() {
        via_views(&p, offset, 4096).unwrap();
    }
}
