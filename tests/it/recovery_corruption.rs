//! Damaged bytes: every byte of a small segment flipped in turn, mid-log damage under both
//! recovery modes, and damaged metadata files.
//!
//! The rule checked everywhere: damage is reported as `Error::Corrupt` (at open or at read) or
//! costs a suffix of the log; it never panics and never returns altered records.

use crate::common;

use std::path::{Path, PathBuf};

use annals::storage::{CrashMode, SimStorage};
use annals::{Compression, Error, Log, Record, RecoveryMode, StoredRecord, TopicConfig};
use common::*;

const DIR: &str = "/sim/log";
const TOPIC: &str = "t";

/// Prints `what` if a panic unwinds past it.
struct Ctx(String);

impl Drop for Ctx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("while: {}", self.0);
        }
    }
}

struct Fixture {
    snap: Snapshot,
    model: Vec<ModelRecord>,
    log_path: PathBuf,
    partition_dir: PathBuf,
    batches: Vec<BatchPos>,
}

/// One partition with `batches` batches in a single segment, closed cleanly (`clean`) or left
/// by a kill -9 (then no checkpoint vouches for the segment, so the next open scans it).
fn fixture(compression: Compression, batches: usize, seed: u64, clean: bool) -> Fixture {
    let mut rng = Rng::new(seed);
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .compression(compression)
            .index_interval_bytes(1)
            .segment_index_bytes(1024),
    )
    .unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let mut model = Vec::new();
    let mut ts = 1_700_000_000_000;
    for _ in 0..batches {
        let n = rng.usize(1, 4);
        let batch: Vec<Record> = (0..n)
            .map(|_| {
                ts += 7;
                let len = rng.usize(1, 30);
                Record::new(rng.bytes(len))
                    .key(format!("k{}", rng.below(5)))
                    .header("h", "v")
                    .timestamp(ts)
            })
            .collect();
        p.append(&batch).unwrap();
        model.extend(model_of(&batch));
    }
    let partition_dir = p.dir().to_path_buf();
    let log_path = partition_dir.join(format!("{:020}.log", 0));
    drop(p);
    if clean {
        log.close().unwrap();
    } else {
        sim.crash(CrashMode::ProcessKill);
        std::mem::forget(log);
    }
    let snap = snapshot(&sim);
    let batches = common::batches(get(&snap, &log_path));
    Fixture {
        snap,
        model,
        log_path,
        partition_dir,
        batches,
    }
}

/// Reads everything it can. Every record must equal the model at its offset, offsets must run
/// 0, 1, 2, ... and the only acceptable error is `Corrupt`. Returns how many records were read.
fn read_checked(log: &Log, model: &[ModelRecord], max_bytes: usize, ctx: &str) -> u64 {
    try_read_checked(log, model, max_bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"))
}

fn same(r: &StoredRecord, want: &ModelRecord) -> bool {
    r.key == want.key
        && r.value == want.value
        && r.headers == want.headers
        && r.timestamp == want.timestamp
}

/// [`read_checked`] that reports a violation instead of panicking.
fn try_read_checked(log: &Log, model: &[ModelRecord], max_bytes: usize) -> Result<u64, String> {
    let p = log.partition(TOPIC, 0).map_err(|e| e.to_string())?;
    let hw = p.high_watermark();
    let mut at = p.log_start_offset();
    if at != 0 {
        return Err(format!("log start {at}"));
    }
    if hw > model.len() as u64 {
        return Err(format!(
            "high watermark {hw} beyond the {} records written",
            model.len()
        ));
    }
    while at < hw {
        match p.read(at, max_bytes) {
            Ok(got) => {
                if got.is_empty() {
                    return Err(format!("empty read at {at} < hw {hw}"));
                }
                for r in &got {
                    if r.offset != at {
                        return Err(format!(
                            "read({at}) returned offset {} (altered offsets)",
                            r.offset
                        ));
                    }
                    if !same(r, &model[at as usize]) {
                        return Err(format!("altered record at offset {at}: {r:?}"));
                    }
                    at += 1;
                }
            }
            Err(Error::Corrupt { .. }) => return Ok(at),
            Err(e) => return Err(format!("read({at}) failed with {e:?}, not Corrupt")),
        }
    }
    for probe in [
        0,
        model[0].timestamp,
        model.last().unwrap().timestamp,
        i64::MAX,
    ] {
        match p.offset_for_timestamp(probe) {
            Ok(Some(o)) if o >= hw => {
                return Err(format!("time lookup {probe} gave {o} >= hw {hw}"));
            }
            Ok(_) | Err(Error::Corrupt { .. }) => {}
            Err(e) => return Err(format!("offset_for_timestamp({probe}): {e:?}")),
        }
    }
    Ok(at)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shutdown {
    /// Left by a kill -9: no marker, and the checkpoint does not list the active segment, so
    /// the open scans it.
    Kill,
    /// After a clean close, marker in place: the segment is trusted at open, so reads must
    /// catch the damage.
    Clean,
    /// After a clean close with the marker removed: the checkpoint still vouches for the
    /// segment (same size), so this too is caught at read time.
    CleanMarkerRemoved,
}

/// Which bytes of the segment to flip.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    /// Every byte except each batch's 8-byte base offset.
    AllButBaseOffsets,
    /// Only the base offsets (outside the CRC).
    BaseOffsets,
}

fn flip_every_byte(compression: Compression, marker: Shutdown, mode: RecoveryMode) {
    flip_bytes(compression, marker, mode, Which::AllButBaseOffsets);
}

fn flip_bytes(compression: Compression, marker: Shutdown, mode: RecoveryMode, which: Which) {
    let seed = base_seed();
    let _g = SeedGuard::new(
        &format!("flip_every_byte {compression:?} {marker:?} {mode:?}"),
        seed,
    );
    let fx = fixture(compression, 5, seed, marker != Shutdown::Kill);
    let original = get(&fx.snap, &fx.log_path).to_vec();
    let masks = [0x01u8, 0x80, 0xff, 0x10, 0x5a];
    let mut outcomes = [0usize; 3]; // open error, read error, clean prefix
    let mut violations: Vec<String> = Vec::new();
    for pos in 0..original.len() {
        let mask = masks[pos % masks.len()];
        let batch = fx
            .batches
            .iter()
            .position(|b| b.pos <= pos && pos < b.pos + b.len)
            .unwrap();
        let within = pos - fx.batches[batch].pos;
        if (within < 8) != (which == Which::BaseOffsets) {
            continue;
        }
        let ctx = format!("byte {pos} (batch {batch} byte {within}) ^= {mask:#04x}");
        let _c = Ctx(format!(
            "seed {seed} {compression:?} {marker:?} {mode:?}: {ctx}"
        ));
        let mut s = fx.snap.clone();
        let mut bytes = original.clone();
        bytes[pos] ^= mask;
        replace(&mut s, &fx.log_path, bytes);
        if marker == Shutdown::CleanMarkerRemoved {
            assert!(remove(&mut s, ".clean-shutdown"));
        }
        let sim = restore(&s);
        let log = match TestLog::sim(&sim, DIR).recovery_mode(mode).try_open() {
            Ok(log) => log,
            Err(Error::Corrupt {
                segment, position, ..
            }) => {
                if segment != fx.log_path {
                    violations.push(format!("{ctx}: Corrupt names {segment:?}"));
                }
                if position > fx.batches[batch].pos as u64 {
                    violations.push(format!(
                        "{ctx}: open reports the damage at byte {position}, past the damaged batch at {}",
                        fx.batches[batch].pos
                    ));
                }
                outcomes[0] += 1;
                continue;
            }
            Err(e) => {
                violations.push(format!("{ctx}: open failed with {e:?}, not Corrupt"));
                continue;
            }
        };
        let max_bytes = if pos % 2 == 0 { 1 << 20 } else { 1 };
        let read = match try_read_checked(&log, &fx.model, max_bytes) {
            Ok(read) => read,
            Err(e) => {
                violations.push(format!("{ctx}: {e}"));
                continue;
            }
        };
        let hw = log.partition(TOPIC, 0).unwrap().high_watermark();
        if read < hw {
            outcomes[1] += 1;
        } else {
            outcomes[2] += 1;
            // Whatever survived takes new appends.
            let p = log.partition(TOPIC, 0).unwrap();
            match p.append(&simple_records(hw, 2)) {
                Ok(base) if base == hw && p.read(hw, 1 << 20).map(|r| r.len()).ok() == Some(2) => {}
                other => {
                    violations.push(format!("{ctx}: append after a clean read-back: {other:?}"))
                }
            }
        }
        // A scanned flip inside the CRC-covered range of a batch followed by valid batches is
        // mid-log damage, which Strict must refuse at open.
        let crc_covered = within >= 21;
        let is_last = batch + 1 == fx.batches.len();
        if marker == Shutdown::Kill && mode == RecoveryMode::Strict && crc_covered && !is_last {
            violations.push(format!(
                "{ctx}: a damaged middle batch was accepted at open (read {read} of hw {hw})"
            ));
        }
    }
    eprintln!(
        "{compression:?} {marker:?} {mode:?}: open error / read error / prefix = {outcomes:?}"
    );
    if !violations.is_empty() {
        panic!(
            "seed {seed} {compression:?} {marker:?} {mode:?}: {} of {} flips misbehaved (batches at {:?}):\n{}",
            violations.len(),
            original.len(),
            fx.batches.iter().map(|b| b.pos).collect::<Vec<_>>(),
            violations.join("\n")
        );
    }
}

#[test]
fn flip_every_byte_unclean_none() {
    flip_every_byte(Compression::None, Shutdown::Kill, RecoveryMode::Strict);
}

#[test]
fn flip_every_byte_unclean_lz4() {
    flip_every_byte(Compression::Lz4, Shutdown::Kill, RecoveryMode::Strict);
}

#[test]
fn flip_every_byte_unclean_zstd() {
    flip_every_byte(
        Compression::Zstd { level: 3 },
        Shutdown::Kill,
        RecoveryMode::Strict,
    );
}

#[test]
fn flip_every_byte_clean_marker_none() {
    flip_every_byte(Compression::None, Shutdown::Clean, RecoveryMode::Strict);
}

#[test]
fn flip_every_byte_clean_marker_lz4() {
    flip_every_byte(Compression::Lz4, Shutdown::Clean, RecoveryMode::Strict);
}

#[test]
fn flip_every_byte_clean_close_marker_removed_zstd() {
    flip_every_byte(
        Compression::Zstd { level: 3 },
        Shutdown::CleanMarkerRemoved,
        RecoveryMode::Strict,
    );
}

#[test]
fn flip_every_byte_unclean_truncate_corrupt_zstd() {
    flip_every_byte(
        Compression::Zstd { level: 3 },
        Shutdown::Kill,
        RecoveryMode::TruncateCorrupt,
    );
}

/// The base offset is outside the CRC, so a flipped base offset is only caught by checking that
/// offsets continue where the previous batch ended.
#[test]
fn flip_base_offset_bytes_unclean() {
    flip_bytes(
        Compression::None,
        Shutdown::Kill,
        RecoveryMode::Strict,
        Which::BaseOffsets,
    );
    flip_bytes(
        Compression::Lz4,
        Shutdown::Kill,
        RecoveryMode::TruncateCorrupt,
        Which::BaseOffsets,
    );
}

#[test]
fn flip_base_offset_bytes_trusted_segment() {
    flip_bytes(
        Compression::None,
        Shutdown::Clean,
        RecoveryMode::Strict,
        Which::BaseOffsets,
    );
    flip_bytes(
        Compression::Zstd { level: 3 },
        Shutdown::CleanMarkerRemoved,
        RecoveryMode::Strict,
        Which::BaseOffsets,
    );
}

/// Flips a CRC-covered byte in the records of batch `victim`.
fn damage_batch(fx: &Fixture, s: &mut Snapshot, log_path: &Path, victim: usize) -> u64 {
    let mut bytes = get(s, log_path).to_vec();
    let b = common::batches(&bytes)[victim];
    bytes[b.pos + b.len - 3] ^= 0x40;
    replace(s, log_path, bytes);
    let _ = fx;
    b.pos as u64
}

#[test]
fn mid_log_damage_strict_refuses_truncate_corrupt_recovers() {
    let fx = fixture(Compression::None, 6, 11, false);
    for victim in 0..fx.batches.len() - 1 {
        let mut s = fx.snap.clone();
        let position = damage_batch(&fx, &mut s, &fx.log_path, victim);
        let ctx = format!("victim batch {victim} at {position}");

        let sim = restore(&s);
        match TestLog::sim(&sim, DIR).try_open() {
            Err(Error::Corrupt {
                segment,
                position: p,
                ..
            }) => {
                assert_eq!(segment, fx.log_path, "{ctx}");
                assert_eq!(p, position, "{ctx}: position of the damaged batch");
            }
            Ok(_) => panic!("{ctx}: Strict opened a log damaged in the middle"),
            Err(e) => panic!("{ctx}: {e:?}"),
        }
        // Nothing was changed by the refused open.
        assert_eq!(
            sim.read_file(&fx.log_path).unwrap(),
            get(&s, &fx.log_path),
            "{ctx}"
        );

        let log = TestLog::sim(&sim, DIR)
            .recovery_mode(RecoveryMode::TruncateCorrupt)
            .try_open()
            .unwrap_or_else(|e| panic!("{ctx}: TruncateCorrupt: {e}"));
        let keep = fx.batches[victim].base_offset;
        assert_partition_matches(
            &log.partition(TOPIC, 0).unwrap(),
            &fx.model[..keep as usize],
            &ctx,
        );
        let p = log.partition(TOPIC, 0).unwrap();
        assert_eq!(p.append(&simple_records(keep, 2)).unwrap(), keep, "{ctx}");
        drop(p);
        log.close().unwrap();
        // The truncation stuck: a strict reopen is happy now.
        let log = TestLog::sim(&sim, DIR)
            .try_open()
            .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        let p = log.partition(TOPIC, 0).unwrap();
        let mut want = fx.model[..keep as usize].to_vec();
        want.extend(model_of(&simple_records(keep, 2)));
        assert_partition_matches(&p, &want, &ctx);
    }
}

/// Damage in an early segment of several, with no checkpoint to vouch for any of them.
#[test]
fn damage_in_first_of_several_segments() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic(
        TOPIC,
        TopicConfig::default()
            .segment_bytes(1024)
            .segment_index_bytes(1024),
    )
    .unwrap();
    let p = log.partition(TOPIC, 0).unwrap();
    let records = simple_records(0, 120);
    for chunk in records.chunks(3) {
        p.append(chunk).unwrap();
    }
    let model = model_of(&records);
    assert!(p.segment_count() >= 3);
    let dir = p.dir().to_path_buf();
    drop(p);
    sim.crash(CrashMode::ProcessKill);
    std::mem::forget(log);
    let snap = snapshot(&sim);
    let logs = files_with_ext(&snap, &dir, "log");
    let first = logs[0].clone();
    let fx = Fixture {
        snap: snap.clone(),
        model: model.clone(),
        log_path: first.clone(),
        partition_dir: dir.clone(),
        batches: common::batches(get(&snap, &first)),
    };

    // With the checkpoint, sealed segments are trusted: the damage surfaces at read time.
    let mut s = snap.clone();
    let victim = fx.batches.len() - 1; // the last batch of the first segment
    let position = damage_batch(&fx, &mut s, &first, victim);
    let sim1 = restore(&s);
    let log = TestLog::sim(&sim1, DIR).open();
    let read = read_checked(&log, &model, 1, "trusted sealed segment");
    assert_eq!(
        read, fx.batches[victim].base_offset,
        "reads stop at the damaged batch"
    );
    let p = log.partition(TOPIC, 0).unwrap();
    match p.read(fx.batches[victim].base_offset, 1) {
        Err(Error::Corrupt {
            segment,
            position: at,
            ..
        }) => {
            assert_eq!(segment, first);
            assert_eq!(at, position);
        }
        other => panic!("read of the damaged batch: {other:?}"),
    }
    // Later segments are still readable.
    let later = fx.batches[victim].base_offset + fx.batches[victim].records;
    let got = p.read(later, 1 << 20).unwrap();
    assert_record(&got[0], later, &model[later as usize], "after the damage");
    drop(p);
    drop(log);

    // Without the checkpoint everything is scanned: mid-log damage.
    assert!(remove(&mut s, "partition.ckpt"));
    let sim2 = restore(&s);
    match TestLog::sim(&sim2, DIR).try_open() {
        Err(Error::Corrupt {
            segment,
            position: at,
            ..
        }) => {
            assert_eq!(segment, first);
            assert_eq!(at, position);
        }
        other => panic!(
            "strict open of a log damaged in its first segment: {:?}",
            other.map(|_| ())
        ),
    }
    let log = TestLog::sim(&sim2, DIR)
        .recovery_mode(RecoveryMode::TruncateCorrupt)
        .open();
    let keep = fx.batches[victim].base_offset;
    let p = log.partition(TOPIC, 0).unwrap();
    assert_partition_matches(
        &p,
        &model[..keep as usize],
        "TruncateCorrupt over several segments",
    );
    assert_eq!(p.segment_count(), 1, "later segments are dropped");
    let left = sim2.paths();
    for l in &logs[1..] {
        assert!(!left.contains(l), "{l:?} should have been removed");
    }
    assert_eq!(p.append(&simple_records(keep, 1)).unwrap(), keep);
    let _ = fx.partition_dir;
}

#[test]
fn corrupt_topics_meta_is_corrupt_metadata() {
    let fx = fixture(Compression::None, 2, 3, true);
    let meta = PathBuf::from(DIR).join("topics.meta");
    let original = get(&fx.snap, &meta).to_vec();
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for pos in 0..original.len() {
        let mut b = original.clone();
        b[pos] ^= 0x21;
        variants.push((format!("byte {pos} flipped"), b));
    }
    for len in [0, 1, 4, 12, original.len() / 2, original.len() - 1] {
        variants.push((format!("cut to {len}"), original[..len].to_vec()));
    }
    let mut longer = original.clone();
    longer.push(0);
    variants.push(("one byte appended".into(), longer));
    for (what, bytes) in variants {
        for marker in [true, false] {
            let mut s = fx.snap.clone();
            replace(&mut s, &meta, bytes.clone());
            if !marker {
                remove(&mut s, ".clean-shutdown");
            }
            let sim = restore(&s);
            match TestLog::sim(&sim, DIR).try_open() {
                Err(Error::CorruptMetadata { file, .. }) => assert_eq!(file, meta, "{what}"),
                Err(e) => panic!("topics.meta {what}: {e:?}, not CorruptMetadata"),
                Ok(log) => panic!("topics.meta {what}: opened with topics {:?}", log.topics()),
            }
        }
    }
}

#[test]
fn corrupt_checkpoint_is_only_a_cache() {
    let fx = fixture(Compression::Lz4, 4, 5, true);
    let ckpt = fx.partition_dir.join("partition.ckpt");
    let original = get(&fx.snap, &ckpt).to_vec();
    let mut variants: Vec<(String, Option<Vec<u8>>)> = vec![("deleted".into(), None)];
    for pos in 0..original.len() {
        let mut b = original.clone();
        b[pos] ^= 0x08;
        variants.push((format!("byte {pos} flipped"), Some(b)));
    }
    for len in [0, 3, original.len() / 2, original.len() - 1] {
        variants.push((format!("cut to {len}"), Some(original[..len].to_vec())));
    }
    variants.push(("garbage".into(), Some(vec![0xAB; 200])));
    for (what, bytes) in variants {
        for marker in [true, false] {
            let ctx = format!("partition.ckpt {what}, clean marker {marker}");
            let mut s = fx.snap.clone();
            match &bytes {
                Some(b) => replace(&mut s, &ckpt, b.clone()),
                None => assert!(remove(&mut s, "partition.ckpt")),
            }
            if !marker {
                remove(&mut s, ".clean-shutdown");
            }
            let sim = restore(&s);
            let log = TestLog::sim(&sim, DIR)
                .try_open()
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let p = log.partition(TOPIC, 0).unwrap();
            assert_partition_matches(&p, &fx.model, &ctx);
            let hw = p.high_watermark();
            assert_eq!(p.append(&simple_records(hw, 1)).unwrap(), hw, "{ctx}");
            drop(p);
            log.close().unwrap();
            // And the open repaired it.
            let log = TestLog::sim(&sim, DIR)
                .try_open()
                .unwrap_or_else(|e| panic!("{ctx}: second open: {e}"));
            assert_eq!(
                log.partition(TOPIC, 0).unwrap().high_watermark(),
                hw + 1,
                "{ctx}"
            );
        }
    }
}

/// Raises the base offset of each batch in turn (the field is outside the CRC) and checks the
/// partition never serves records at offsets that were never written.
fn raised_base_offset(clean: bool) {
    let fx = fixture(Compression::None, 4, 9, clean);
    for victim in 0..fx.batches.len() {
        for marker in [false, true] {
            let b = fx.batches[victim];
            let mut bytes = get(&fx.snap, &fx.log_path).to_vec();
            let raised = b.base_offset + 1000;
            bytes[b.pos..b.pos + 8].copy_from_slice(&raised.to_be_bytes());
            let mut s = fx.snap.clone();
            replace(&mut s, &fx.log_path, bytes);
            if !marker {
                remove(&mut s, ".clean-shutdown");
            }
            let ctx = format!(
                "base offset of batch {victim} raised by 1000, clean close {clean}, marker {marker}"
            );
            let sim = restore(&s);
            match TestLog::sim(&sim, DIR).try_open() {
                Err(Error::Corrupt { .. }) => {}
                Err(e) => panic!("{ctx}: {e:?}"),
                Ok(log) => {
                    read_checked(&log, &fx.model, 1, &ctx);
                }
            }
        }
    }
}

/// After a kill -9 the segment is scanned at open: the scan must not accept a batch whose base
/// offset jumps past the previous batch's end (annals never writes such gaps).
#[test]
fn raised_base_offset_in_scanned_segment() {
    raised_base_offset(false);
}

/// After a clean close the segment is trusted without a scan: reads must notice that a batch's
/// base offset disagrees with where it lies.
#[test]
fn raised_base_offset_in_trusted_segment() {
    raised_base_offset(true);
}
