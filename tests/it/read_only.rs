//! `Log::open_read_only`: a reader without the lock, beside an owner that appends, rolls,
//! compacts and deletes — in this process and in another one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use annals::{
    CleanupPolicy, ConsumerConfig, Error, IsolationLevel, Log, OffsetAndMetadata, ProducerConfig,
    Record, TopicConfig, TopicPartition, TransactionState,
};

use crate::common::{env_usize, hang_bound, test_path};
use crate::common::{small_segments, TestLog};

const T: &str = "events";
const ENV_OWNER_DIR: &str = "ANNALS_READ_ONLY_OWNER_DIR";

/// A temp-dir log (maintenance off) with topic `T`, which this process owns.
fn owned(config: TopicConfig) -> (tempfile::TempDir, Log) {
    TestLog::temp()
        .no_maintenance()
        .topic(T, config)
        .open_temp()
}

/// Everything from the reader's position to what is there now.
fn drain(reader: &mut annals::PartitionReader) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    loop {
        let before = reader.position();
        let records = reader.poll(4096).unwrap();
        if records.is_empty() && reader.position() == before {
            return out;
        }
        out.extend(
            records
                .iter()
                .map(|r| (r.offset, r.value_str().unwrap().to_string())),
        );
    }
}

fn values(n: std::ops::Range<u64>) -> Vec<(u64, String)> {
    n.map(|i| (i, format!("v{i:05}"))).collect()
}

fn append(log: &Log, from: u64, to: u64) {
    let p = log.partition(T, 0).unwrap();
    for chunk in (from..to).collect::<Vec<_>>().chunks(7) {
        let batch: Vec<Record> = chunk
            .iter()
            .map(|i| Record::new(format!("v{i:05}")))
            .collect();
        p.append(&batch).unwrap();
    }
}

/// Every file under `dir` with its length and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            out.insert(e.path(), (meta.len(), meta.modified().unwrap()));
        }
    }
    out
}

#[test]
fn a_reader_follows_appends_across_rolls_while_the_owner_holds_the_lock() {
    let (dir, log) = owned(small_segments());
    append(&log, 0, 100);
    let view = Log::open_read_only(dir.path()).unwrap();
    assert_eq!(view.topics(), vec![T.to_string()]);
    let mut reader = view.reader(T, 0, IsolationLevel::ReadUncommitted).unwrap();
    assert_eq!(drain(&mut reader), values(0..100));
    // Nothing new: an empty poll, the position unchanged.
    assert!(reader.poll(1 << 20).unwrap().is_empty());
    assert_eq!(reader.position(), 100);
    append(&log, 100, 250);
    assert_eq!(drain(&mut reader), values(100..250));

    let d = view.describe_partition(T, 0).unwrap();
    assert_eq!(
        (d.log_start_offset, d.high_watermark, d.last_stable_offset),
        (0, 250, 250)
    );
    assert!(d.segments.len() > 3, "{} segments", d.segments.len());
    assert_eq!(d.size_bytes(), log.partition(T, 0).unwrap().size_bytes());
    assert_eq!(d.tail_damage, None);

    // Seeking, in the middle of a batch and of a segment.
    reader.seek(123);
    assert_eq!(drain(&mut reader), values(123..250));
    reader.seek(250);
    assert!(reader.poll(1 << 20).unwrap().is_empty());
}

#[test]
fn the_reader_never_writes_and_the_owner_is_not_disturbed() {
    let (dir, log) = owned(small_segments());
    append(&log, 0, 60);
    log.close().unwrap();
    let before = snapshot(dir.path());
    {
        let view = Log::open_read_only(dir.path()).unwrap();
        let mut reader = view.reader(T, 0, IsolationLevel::ReadCommitted).unwrap();
        assert_eq!(drain(&mut reader), values(0..60));
        view.describe_partition(T, 0).unwrap();
        view.committed_offsets().unwrap();
        view.transactions().unwrap();
        // The owner opens (takes the lock) while the reader is open.
        let owner = Log::open(dir.path()).unwrap();
        owner.close().unwrap();
    }
    // The owner's close rewrote its own files; compare only what the reader could have
    // touched after that: open a reader again on the closed log and check nothing changes.
    let after_owner = snapshot(dir.path());
    let view = Log::open_read_only(dir.path()).unwrap();
    let mut reader = view.reader(T, 0, IsolationLevel::ReadCommitted).unwrap();
    drain(&mut reader);
    view.describe_partition(T, 0).unwrap();
    assert_eq!(snapshot(dir.path()), after_owner);
    assert!(before.keys().all(|p| after_owner.contains_key(p)));
}

#[test]
fn read_committed_waits_for_open_transactions_and_skips_aborted_ones() {
    let (dir, log) = owned(TopicConfig::default());
    let p = log
        .producer(ProducerConfig::default().transactional_id("tx"))
        .unwrap();
    p.init_transactions().unwrap();
    let plain = log.partition(T, 0).unwrap();
    plain.append(&[Record::new("before")]).unwrap();
    p.begin_transaction().unwrap();
    p.send_to(T, 0, Record::new("aborted-1")).unwrap();
    p.flush().unwrap();
    plain.append(&[Record::new("during-abort")]).unwrap();

    let view = Log::open_read_only(dir.path()).unwrap();
    let open = view.transactions().unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].transactional_id, "tx");
    assert_eq!(open[0].state, TransactionState::Ongoing);
    assert_eq!(open[0].partitions, vec![TopicPartition::new(T, 0)]);

    let mut committed = view.reader(T, 0, IsolationLevel::ReadCommitted).unwrap();
    let mut uncommitted = view.reader(T, 0, IsolationLevel::ReadUncommitted).unwrap();
    let seen = |r: &mut annals::PartitionReader| -> Vec<String> {
        drain(r).into_iter().map(|(_, v)| v).collect()
    };
    assert_eq!(seen(&mut committed), vec!["before"]);
    assert_eq!(
        seen(&mut uncommitted),
        vec!["before", "aborted-1", "during-abort"]
    );
    assert_eq!(view.describe_partition(T, 0).unwrap().last_stable_offset, 1);

    p.abort_transaction().unwrap();
    p.begin_transaction().unwrap();
    p.send_to(T, 0, Record::new("committed-1")).unwrap();
    p.send_to(T, 0, Record::new("committed-2")).unwrap();
    p.commit_transaction().unwrap();
    assert_eq!(
        seen(&mut committed),
        vec!["during-abort", "committed-1", "committed-2"]
    );
    assert!(view.transactions().unwrap().is_empty());
    let d = view.describe_partition(T, 0).unwrap();
    assert_eq!(d.last_stable_offset, d.high_watermark);

    // A reader starting past the checkpoint's recovery point after a close knows the same.
    log.close().unwrap();
    let view = Log::open_read_only(dir.path()).unwrap();
    let mut late = view.reader(T, 0, IsolationLevel::ReadCommitted).unwrap();
    assert_eq!(
        seen(&mut late),
        vec!["before", "during-abort", "committed-1", "committed-2"]
    );
}

#[test]
fn committed_offsets_are_read_from_the_offsets_topic() {
    let (dir, log) = owned(TopicConfig::default().partitions(2));
    append(&log, 0, 10);
    let mut c = log.consumer(ConsumerConfig::new("billing")).unwrap();
    c.assign(&[(T, 0), (T, 1)]).unwrap();
    c.commit_offsets(&[(TopicPartition::new(T, 0), OffsetAndMetadata::new(3))])
        .unwrap();
    c.commit_offsets(&[
        (TopicPartition::new(T, 0), OffsetAndMetadata::new(7)),
        (
            TopicPartition::new(T, 1),
            OffsetAndMetadata::new(0).with_metadata("m"),
        ),
    ])
    .unwrap();
    let view = Log::open_read_only(dir.path()).unwrap();
    let committed = view.committed_offsets().unwrap();
    let got: Vec<(&str, u32, u64, &str)> = committed
        .iter()
        .map(|c| {
            (
                c.group.as_str(),
                c.topic_partition.partition,
                c.offset.offset,
                c.offset.metadata.as_str(),
            )
        })
        .collect();
    assert_eq!(got, vec![("billing", 0, 7, ""), ("billing", 1, 0, "m")]);
    // Internal topics are not listed, but exist.
    assert_eq!(view.topics(), vec![T.to_string()]);
    assert!(view.has_topic(annals::OFFSETS_TOPIC));
}

#[test]
fn a_torn_or_damaged_tail_of_the_newest_segment_is_a_write_in_flight_not_an_error() {
    let (dir, log) = owned(TopicConfig::default());
    append(&log, 0, 20);
    let seg = log
        .partition(T, 0)
        .unwrap()
        .dir()
        .join(format!("{:020}.log", 0));
    let len = std::fs::metadata(&seg).unwrap().len();
    let view = Log::open_read_only(dir.path()).unwrap();
    let mut reader = view.reader(T, 0, IsolationLevel::ReadCommitted).unwrap();

    // The first bytes of a batch being written: its length field and a part of its header.
    let whole = std::fs::read(&seg).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&whole[..40]).unwrap();
    assert_eq!(drain(&mut reader), values(0..20));
    let damage = reader.tail_damage().expect("the torn tail is reported");
    assert_eq!(
        (damage.path.as_path(), damage.position),
        (seg.as_path(), len)
    );
    assert_eq!(view.describe_partition(T, 0).unwrap().high_watermark, 20);

    // The owner writes its next batch over it (it appends at its own end): the reader goes on.
    append(&log, 20, 30);
    assert_eq!(drain(&mut reader), values(20..30));
    assert_eq!(reader.tail_damage(), None);
}

#[test]
fn damage_in_a_sealed_segment_is_corruption_named_with_its_file() {
    let (dir, log) = owned(small_segments());
    append(&log, 0, 100);
    log.close().unwrap();
    let pdir = dir.path().join(format!("{T}-0"));
    let first = pdir.join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    let view = Log::open_read_only(dir.path()).unwrap();
    let mut reader = view.reader(T, 0, IsolationLevel::ReadUncommitted).unwrap();
    let err = loop {
        match reader.poll(1 << 20) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    match &err {
        Error::Corrupt { segment, .. } => assert_eq!(segment, &first),
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(
        err.to_string().contains(&first.display().to_string()),
        "{err}"
    );
}

#[test]
fn offsets_outside_the_log_are_errors_and_retention_moves_the_start() {
    let (dir, log) = owned(small_segments());
    append(&log, 0, 100);
    let view = Log::open_read_only(dir.path()).unwrap();
    let mut reader = view.reader(T, 0, IsolationLevel::ReadUncommitted).unwrap();
    reader.seek(101);
    assert!(matches!(
        reader.poll(1 << 20),
        Err(Error::OffsetOutOfRange {
            requested: 101,
            latest: 100,
            ..
        })
    ));
    reader.seek(0);
    log.partition(T, 0).unwrap().delete_records(60).unwrap();
    match reader.poll(1 << 20) {
        Err(Error::OffsetOutOfRange {
            requested: 0,
            earliest: 60,
            ..
        }) => {}
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    reader.seek(reader.log_start_offset().unwrap());
    assert_eq!(drain(&mut reader), values(60..100));
    // A new reader starts at the log start.
    let mut fresh = view.reader(T, 0, IsolationLevel::ReadUncommitted).unwrap();
    assert_eq!(fresh.position(), 60);
    assert_eq!(drain(&mut fresh).len(), 40);
    assert_eq!(view.describe_partition(T, 0).unwrap().log_start_offset, 60);
}

#[test]
fn timestamps_find_offsets() {
    let (dir, log) = owned(small_segments());
    let p = log.partition(T, 0).unwrap();
    for i in 0..50i64 {
        p.append(&[Record::new(format!("v{i:05}")).timestamp(1_000 + i * 10)])
            .unwrap();
    }
    let view = Log::open_read_only(dir.path()).unwrap();
    let reader = view.reader(T, 0, IsolationLevel::ReadUncommitted).unwrap();
    assert_eq!(reader.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(reader.offset_for_timestamp(1_205).unwrap(), Some(21));
    assert_eq!(reader.offset_for_timestamp(1_490).unwrap(), Some(49));
    assert_eq!(reader.offset_for_timestamp(1_491).unwrap(), None);
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = Log::open_read_only(&missing).unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(!missing.exists(), "a read-only open creates nothing");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = Log::open_read_only(&empty).unwrap_err();
    assert!(
        matches!(&err, Error::NotALog { dir } if dir == &empty),
        "{err}"
    );
    assert!(std::fs::read_dir(&empty).unwrap().next().is_none());

    let (dir, _log) = owned(TopicConfig::default().partitions(2));
    let view = Log::open_read_only(dir.path()).unwrap();
    assert!(matches!(
        view.reader("other", 0, IsolationLevel::ReadCommitted),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        view.reader(T, 2, IsolationLevel::ReadCommitted),
        Err(Error::UnknownPartition { partitions: 2, .. })
    ));
    assert!(matches!(
        view.topic_config("other"),
        Err(Error::UnknownTopic { .. })
    ));

    std::fs::write(dir.path().join("topics.meta"), b"garbage").unwrap();
    assert!(matches!(
        Log::open_read_only(dir.path()),
        Err(Error::CorruptMetadata { .. })
    ));
}

/// The owner process of `a_reader_process_follows_an_owner_that_rolls_and_compacts`: appends
/// keyed records (each value names its key and a sequence number that grows with the offset)
/// and compacts all the while, then prints the last value of every key.
#[test]
fn owner_process() {
    let Ok(dir) = std::env::var(ENV_OWNER_DIR) else {
        return;
    };
    let records = env_usize("ANNALS_READ_ONLY_RECORDS", 4_000) as u64;
    let log = Log::builder(&dir)
        .maintenance_interval(Some(Duration::from_millis(1)))
        .open()
        .unwrap();
    let config = small_segments()
        .segment_bytes(4096)
        .cleanup_policy(CleanupPolicy::Compact)
        .min_cleanable_dirty_ratio(0.0);
    log.create_topic(T, config).unwrap();
    let p = log.partition(T, 0).unwrap();
    println!();
    println!("READY");
    let mut last = BTreeMap::new();
    let mut seq = 0u64;
    while seq < records {
        let batch: Vec<Record> = (0..1 + seq % 4)
            .map(|_| {
                seq += 1;
                let key = format!("k{}", seq % 37);
                last.insert(key.clone(), seq);
                Record::new(format!("{key}={seq:08}")).key(key)
            })
            .collect();
        p.append(&batch).unwrap();
        if seq % 200 < 4 {
            log.run_maintenance().unwrap();
        }
    }
    log.run_maintenance().unwrap();
    for (key, seq) in &last {
        println!("LAST {key} {seq}");
    }
    println!("END {}", p.high_watermark());
    // Stay the owner (holding the lock) until the reader has caught up and closes stdin.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

#[test]
fn a_reader_process_follows_an_owner_that_rolls_and_compacts() {
    if std::env::var(ENV_OWNER_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            test_path(module_path!(), "owner_process").as_str(),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_OWNER_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while lines.next().unwrap().unwrap() != "READY" {}
    let view = Log::open_read_only(dir.path()).unwrap();
    let mut reader = view.reader(T, 0, IsolationLevel::ReadUncommitted).unwrap();

    // Follow while the owner writes: every record seen is in order, and its sequence grows
    // with its offset (compaction only removes records, never moves them).
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let (mut last_offset, mut last_seq) = (None::<u64>, 0u64);
    let mut polls_with_data = 0;
    let mut follow = |reader: &mut annals::PartitionReader| -> usize {
        let records = reader.poll(8192).unwrap();
        for r in &records {
            assert!(last_offset.is_none_or(|o| r.offset > o), "offsets go back");
            let (key, seq) = r.value_str().unwrap().split_once('=').unwrap();
            let seq: u64 = seq.parse().unwrap();
            assert!(seq > last_seq, "sequence {seq} after {last_seq}");
            assert_eq!(r.key_str(), Some(key));
            last_offset = Some(r.offset);
            last_seq = seq;
            seen.insert(key.to_string(), seq);
        }
        records.len()
    };
    let started = Instant::now();
    let mut ends = BTreeMap::new();
    let mut end = None;
    // The owner's lines arrive on a thread, so the reader keeps reading meanwhile.
    let (tx, rx) = std::sync::mpsc::channel();
    let pipe = std::thread::spawn(move || {
        for line in lines {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        if follow(&mut reader) > 0 {
            polls_with_data += 1;
        }
        for line in rx.try_iter() {
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("LAST") => {
                    let key = parts.next().unwrap().to_string();
                    ends.insert(key, parts.next().unwrap().parse::<u64>().unwrap());
                }
                Some("END") => end = Some(parts.next().unwrap().parse::<u64>().unwrap()),
                _ => {}
            }
        }
        if end.is_some_and(|e| reader.position() >= e) {
            break;
        }
        assert!(
            started.elapsed() < hang_bound() * 5,
            "the reader stopped making progress"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The newest record of every key is never compacted away: the reader saw each.
    assert_eq!(seen, ends);
    assert!(polls_with_data > 1, "the reader followed a growing log");
    let d = view.describe_partition(T, 0).unwrap();
    assert_eq!(d.high_watermark, end.unwrap());
    let keys: BTreeSet<&String> = ends.keys().collect();
    assert_eq!(keys.len(), 37);
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    pipe.join().unwrap();
}

/// A closed log of several segments, compacted once, with a committed transaction.
fn log_at_rest() -> (tempfile::TempDir, PathBuf) {
    let (dir, log) = owned(small_segments());
    log.create_topic(
        "keyed",
        small_segments()
            .cleanup_policy(CleanupPolicy::Compact)
            .min_cleanable_dirty_ratio(0.0),
    )
    .unwrap();
    append(&log, 0, 400);
    let keyed = log.partition("keyed", 0).unwrap();
    for i in 0..150 {
        keyed
            .append(&[Record::new(format!("v{i}")).key(format!("k{}", i % 9))])
            .unwrap();
    }
    log.run_maintenance().unwrap();
    let p = log
        .producer(ProducerConfig::default().transactional_id("tx"))
        .unwrap();
    p.init_transactions().unwrap();
    p.begin_transaction().unwrap();
    p.send_to(T, 0, Record::new("in-txn")).unwrap();
    p.commit_transaction().unwrap();
    drop(p);
    log.close().unwrap();
    let pdir = dir.path().join(format!("{T}-0"));
    (dir, pdir)
}

fn verify(dir: &Path) -> annals::VerifyReport {
    let mut last = (0, 0);
    let report = Log::open_read_only(dir)
        .unwrap()
        .verify(|done, total| last = (done, total))
        .unwrap();
    assert_eq!(last.0, last.1, "progress reaches the total");
    report
}

#[test]
fn verify_finds_a_clean_log_clean_also_while_its_owner_writes() {
    let (dir, _) = log_at_rest();
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.damage);
    assert!(report.notes.is_empty(), "{:#?}", report.notes);
    assert!(
        report.batches_checked > 30 && report.files_checked > 20,
        "{report:?}"
    );

    let owner = Log::open(dir.path()).unwrap();
    append(&owner, 401, 500);
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.damage);
    owner.close().unwrap();
}

/// The `.log` files of a partition directory, oldest first.
fn segment_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// One kind of damage `verify` must name.
enum Damage {
    /// Flip the byte at this position (or the last one).
    Flip(usize),
    /// Cut the last bytes off.
    Cut,
    /// Remove the file: the offset gap shows in the next segment.
    Remove,
}

#[test]
fn verify_names_every_kind_of_damage() {
    let (base, pdir) = log_at_rest();
    let logs = segment_logs(&pdir);
    let rel = |p: &Path| p.strip_prefix(base.path()).unwrap().to_path_buf();
    let cases = [
        (
            "a flipped byte in a batch",
            rel(&logs[1]),
            Damage::Flip(100),
        ),
        ("a sealed segment cut short", rel(&logs[1]), Damage::Cut),
        (
            "an offset index entry",
            rel(&logs[1].with_extension("index")),
            Damage::Flip(3),
        ),
        (
            "a time index entry",
            rel(&logs[1].with_extension("timeindex")),
            Damage::Flip(7),
        ),
        ("a missing segment", rel(&logs[2]), Damage::Remove),
        (
            "partition.ckpt",
            PathBuf::from(format!("{T}-0/partition.ckpt")),
            Damage::Flip(10),
        ),
        (
            "producer-ids.meta",
            PathBuf::from("producer-ids.meta"),
            Damage::Flip(9),
        ),
    ];
    for (what, file, damage) in cases {
        let copy = tempfile::tempdir().unwrap();
        crate::common::copy_dir(base.path(), copy.path());
        let path = copy.path().join(&file);
        let named = match damage {
            Damage::Flip(at) => {
                let mut b = std::fs::read(&path).unwrap();
                let at = at.min(b.len() - 1);
                b[at] ^= 0x5a;
                std::fs::write(&path, b).unwrap();
                path
            }
            Damage::Cut => {
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(f.metadata().unwrap().len() - 3).unwrap();
                path
            }
            Damage::Remove => {
                std::fs::remove_file(&path).unwrap();
                let logs = segment_logs(path.parent().unwrap());
                logs.into_iter().find(|q| *q > path).unwrap()
            }
        };
        let report = verify(copy.path());
        assert!(
            report.damage.iter().any(|f| f.path == named),
            "{what}: nothing names {}: {:#?}",
            named.display(),
            report.damage
        );
    }

    // A torn tail of the newest segment is a note, not damage.
    let copy = tempfile::tempdir().unwrap();
    crate::common::copy_dir(base.path(), copy.path());
    let newest = segment_logs(&copy.path().join(format!("{T}-0")))
        .pop()
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    f.write_all(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 1]).unwrap();
    let report = verify(copy.path());
    assert!(report.is_clean(), "{:#?}", report.damage);
    assert_eq!(report.notes.len(), 1, "{:#?}", report.notes);
    assert_eq!(report.notes[0].path, newest);
}

/// Files this process has open under `dir` (other tests run in this process too).
fn open_files(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[test]
fn a_reader_holds_a_bounded_number_of_files_however_many_segments() {
    let (dir, log) = owned(small_segments());
    append(&log, 0, 6_000);
    let segments = log.partition(T, 0).unwrap().segment_count();
    assert!(segments > 100, "{segments} segments");
    log.close().unwrap();
    let view = Log::open_read_only(dir.path()).unwrap();
    let mut reader = view.reader(T, 0, IsolationLevel::ReadCommitted).unwrap();
    let mut most = 0;
    let mut seen = 0;
    loop {
        let records = reader.poll(1024).unwrap();
        most = most.max(open_files(dir.path()));
        if records.is_empty() {
            break;
        }
        seen += records.len();
    }
    assert_eq!(seen, 6_000);
    // 16 segments a set, and a set for the scan ahead of read committed.
    assert!(most <= 40, "{most} files open for {segments} segments");
    let d = view.describe_partition(T, 0).unwrap();
    assert_eq!(d.segments.len(), segments);
}

#[test]
fn verify_segment_checks_one_segment_and_names_a_damaged_index_entry() {
    let (base, pdir) = log_at_rest();
    let logs = segment_logs(&pdir);
    assert!(logs.len() > 3, "{logs:?}");
    for log in [&logs[1], logs.last().unwrap()] {
        let report = annals::verify_segment(log).unwrap();
        assert!(report.is_clean(), "{}: {:#?}", log.display(), report.damage);
        assert!(report.notes.is_empty(), "{:#?}", report.notes);
        // The segment, both indexes, partition.bounds and partition.ckpt.
        assert_eq!(report.files_checked, 5, "{report:?}");
        assert!(report.batches_checked > 1, "{report:?}");
    }

    let copy = tempfile::tempdir().unwrap();
    crate::common::copy_dir(base.path(), copy.path());
    let logs = segment_logs(&copy.path().join(format!("{T}-0")));
    // Entry 1 of the offset index one byte further into the log: the order still holds, but
    // no batch starts there.
    let index = logs[1].with_extension("index");
    let mut bytes = std::fs::read(&index).unwrap();
    assert!(bytes.len() >= 16, "two entries at least");
    let position = u32::from_be_bytes(bytes[12..16].try_into().unwrap());
    bytes[12..16].copy_from_slice(&(position + 1).to_be_bytes());
    std::fs::write(&index, bytes).unwrap();
    // The last entry of the time index one ms later (the order still holds): no batch carries
    // that timestamp.
    let time_index = logs[1].with_extension("timeindex");
    let mut bytes = std::fs::read(&time_index).unwrap();
    let last = bytes.len() - 12;
    let ts = i64::from_be_bytes(bytes[last..last + 8].try_into().unwrap());
    bytes[last..last + 8].copy_from_slice(&(ts + 1).to_be_bytes());
    std::fs::write(&time_index, bytes).unwrap();

    let report = annals::verify_segment(&logs[1]).unwrap();
    let mut found: Vec<_> = report
        .damage
        .iter()
        .map(|f| (f.path.clone(), f.position))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [(index.clone(), Some(8)), (time_index, Some(last as u64))],
        "{:#?}",
        report.damage
    );
    let what = &report.damage.iter().find(|f| f.path == index).unwrap().what;
    assert!(
        what.contains(&format!(
            "points at byte {}, which is not a batch",
            position + 1
        )),
        "{what}"
    );
    // The whole-log check finds the same, through the same code.
    let whole = verify(copy.path());
    assert_eq!(whole.damage.len(), 2, "{:#?}", whole.damage);
    assert!(report.damage.iter().all(|f| whole.damage.contains(f)));

    // Whether a segment follows decides what a bad tail is: damage in a sealed segment, a
    // write in progress in the newest.
    let (sealed, newest) = (&logs[logs.len() - 2], logs.last().unwrap());
    for log in [sealed, newest] {
        let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        f.write_all(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 1]).unwrap();
    }
    let report = annals::verify_segment(sealed).unwrap();
    assert!(
        report.damage.iter().any(|f| f.path == *sealed),
        "{:#?}",
        report.damage
    );
    let report = annals::verify_segment(newest).unwrap();
    assert!(report.is_clean(), "{:#?}", report.damage);
    assert_eq!(report.notes.len(), 1, "{:#?}", report.notes);
    // Its first batch, though, was synced (the checkpoint's recovery point is past it): a
    // flipped byte there is damage, not a write in progress.
    let mut bytes = std::fs::read(newest).unwrap();
    bytes[70] ^= 0x5a;
    std::fs::write(newest, bytes).unwrap();
    let report = annals::verify_segment(newest).unwrap();
    assert!(
        report
            .damage
            .iter()
            .any(|f| f.path == *newest && f.position == Some(0)),
        "{:#?} {:#?}",
        report.damage,
        report.notes
    );

    let err = annals::verify_segment(pdir.join("partition.ckpt")).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("partition.ckpt"), "{err}");
}

#[test]
fn verify_segment_reads_the_active_segment_of_a_log_its_owner_holds_open() {
    let (dir, log) = owned(small_segments());
    append(&log, 0, 30);
    let logs = segment_logs(&dir.path().join(format!("{T}-0")));
    let active = logs.last().unwrap();
    // Its indexes are allocated ahead of their entries: zeros follow them.
    assert!(
        std::fs::metadata(active.with_extension("index"))
            .unwrap()
            .len()
            >= 1000
    );
    let report = annals::verify_segment(active).unwrap();
    assert!(report.is_clean(), "{:#?}", report.damage);
    assert!(report.batches_checked > 0, "{report:?}");
    append(&log, 30, 31);
    log.close().unwrap();
}

#[test]
fn verify_checks_every_segment_of_a_long_partition() {
    let (dir, log) = owned(small_segments());
    append(&log, 0, 3_000);
    let p = log.partition(T, 0).unwrap();
    let (segments, bytes) = (p.segment_count(), p.size_bytes());
    assert!(segments > 40, "{segments} segments");
    log.close().unwrap();
    let report = verify(dir.path());
    assert!(report.is_clean(), "{:#?}", report.damage);
    assert_eq!(report.bytes_checked, bytes);
}
