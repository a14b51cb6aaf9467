//! `Log::checkpoint`, the online backup: a copy that reopens as the same log without recovery
//! (records, offsets, committed offsets, transactions), one taken under appends and maintenance
//! that holds exactly what lay below the high watermarks it captured, a checkpointing child
//! killed with SIGKILL (never a partial backup at `dest`, and the next checkpoint succeeds), and
//! refused destinations and I/O errors that leave the log and `dest` as they were.
//!
//! Knobs: `ANNALS_CHECKPOINT_KILL9_ROUNDS` (default 3).

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::format::HEADER_LEN;
use annals::storage::{CrashMode, SimOp, SimOpKind, SimStorage, Storage};
use annals::{
    CheckpointReport, CleanupPolicy, ConsumerConfig, Error, EventStore, EventStoreConfig,
    ExpectedVersion, IsolationLevel, Log, NewEvent, OffsetAndMetadata, ProducerConfig, Record,
    StoredRecord, TopicConfig, TopicPartition,
};

use crate::common::*;

/// Every partition of every user topic with its records.
type Contents = BTreeMap<TopicPartition, (u64, u64, Vec<StoredRecord>)>;

/// `(log start, high watermark, records)` of every partition of every user topic.
fn contents(log: &Log) -> Contents {
    let mut out = BTreeMap::new();
    for topic in log.topics() {
        let partitions = log.topic_config(&topic).unwrap().partitions;
        for id in 0..partitions {
            let p = log.partition(&topic, id).unwrap();
            let records = records_of(&p);
            let entry = (p.log_start_offset(), p.high_watermark(), records);
            out.insert(TopicPartition::new(topic.clone(), id), entry);
        }
    }
    out
}

/// Every record of `p` (control records, which reads step over, are none of them).
fn records_of(p: &annals::Partition) -> Vec<StoredRecord> {
    p.iter(p.log_start_offset()).map(Result::unwrap).collect()
}

fn compacted() -> TopicConfig {
    small_segments()
        .cleanup_policy(CleanupPolicy::Compact)
        .min_cleanable_dirty_ratio(0.0)
}

/// Opens the copy at `dir` on `sim`, recording every storage operation on it meanwhile.
fn open_watched(sim: &Arc<SimStorage>, dir: &str) -> (Log, Vec<SimOp>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let prefix = PathBuf::from(dir);
    sim.set_fault_hook(move |op| {
        if op.path.starts_with(&prefix) {
            record.lock().unwrap().push(op.clone());
        }
        None
    });
    let log = TestLog::sim(sim, dir).no_maintenance().open();
    sim.clear_fault_hook();
    let ops = seen.lock().unwrap().clone();
    (log, ops)
}

/// Asserts that `ops`, the storage operations of an open, are those of an open that recovered
/// nothing: no file renamed (a recovery writes a fresh `partition.ckpt`: temp file, rename) or
/// cut, and of the user topics' segments only each active one's first batch header read (its
/// timestamp) — nothing scanned.
fn assert_opened_without_recovery(ops: &[SimOp], ctx: &str) {
    for op in ops {
        assert_ne!(op.kind, SimOpKind::Rename, "{ctx}: the open renamed {op:?}");
        let is_log = op.path.extension().is_some_and(|e| e == "log");
        let internal = op.path.to_string_lossy().contains("/__");
        if is_log && !internal {
            assert_ne!(op.kind, SimOpKind::SetLen, "{ctx}: the open cut {op:?}");
            if op.kind == SimOpKind::Read {
                assert!(
                    op.len <= HEADER_LEN as u64,
                    "{ctx}: the open scanned {op:?}"
                );
            }
        }
    }
}

#[test]
fn a_checkpoint_reopens_as_the_same_log_without_recovery() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, "/log").no_maintenance().open();
    log.create_topic("orders", small_segments().partitions(3))
        .unwrap();
    log.create_topic("profiles", compacted()).unwrap();
    for id in 0..3 {
        let p = log.partition("orders", id).unwrap();
        for i in 0..25 {
            p.append(&simple_records(i * 3, 3)).unwrap();
        }
        assert!(p.segment_count() > 3, "several segments");
    }
    let profiles = log.partition("profiles", 0).unwrap();
    for round in 0..12 {
        let batch: Vec<Record> = (0..5)
            .map(|k| Record::new(format!("v{round}")).key(format!("user{k}")))
            .collect();
        profiles.append(&batch).unwrap();
    }
    let maintained = log.run_maintenance().unwrap();
    assert!(
        maintained
            .partitions
            .iter()
            .any(|p| p.compaction.passes > 0),
        "profiles was compacted: {maintained:?}"
    );
    // Committed offsets, and a committed transaction over two partitions and an offset.
    let mut consumer = log.consumer(ConsumerConfig::new("billing")).unwrap();
    let owned = [
        TopicPartition::new("orders", 0),
        TopicPartition::new("orders", 1),
    ];
    consumer.assign(&owned).unwrap();
    consumer
        .commit_offsets(&[
            (owned[0].clone(), OffsetAndMetadata::new(17)),
            (owned[1].clone(), OffsetAndMetadata::new(40)),
        ])
        .unwrap();
    drop(consumer);
    let txn = log
        .producer(ProducerConfig::default().transactional_id("tx"))
        .unwrap();
    txn.init_transactions().unwrap();
    txn.begin_transaction().unwrap();
    for i in 0..6 {
        txn.send(
            "orders",
            Record::new(format!("txn-{i}")).key(format!("t{i}")),
        )
        .unwrap();
    }
    txn.commit_transaction().unwrap();
    drop(txn);
    // An event store whose index has tables on disk (which the copy leaves out).
    let store_config = EventStoreConfig::default().index_memtable_entries(16);
    let store = EventStore::open(&log, "ledger", store_config.clone()).unwrap();
    for i in 0..60 {
        let event = NewEvent::new("Posted", format!("amount {i}"));
        store
            .append(
                &format!("account-{}", i % 3),
                ExpectedVersion::Any,
                &[event],
            )
            .unwrap();
    }
    let stream = store.read_stream("account-1", 0, 100).unwrap();
    assert_eq!(stream.len(), 20);
    drop(store);
    log.sync().unwrap();
    let before = contents(&log);
    // What a checkpoint killed half way leaves: removed, and the copy made afresh.
    sim.write_file("/backup.partial/orders-0/00000000000000000000.log", b"torn");

    let report = log.checkpoint("/backup").unwrap();

    assert!(!sim.exists("/backup.partial".as_ref()).unwrap());
    assert_eq!(report.partitions, report.high_watermarks.len());
    for (tp, (_, hw, _)) in &before {
        assert_eq!(report.high_watermarks.get(tp), Some(hw), "{tp}");
    }
    for internal in ["__consumer_offsets", "__transaction_state"] {
        let tp = TopicPartition::new(internal, 0);
        assert!(report.high_watermarks.contains_key(&tp), "{report:?}");
    }
    assert!(report.segments_linked > 0, "{report:?}");
    assert!(report.segments_copied >= report.partitions, "{report:?}");
    assert!(report.bytes_copied > 0, "{report:?}");
    // The log goes on; nothing written after the checkpoint is in the copy.
    log.partition("orders", 2)
        .unwrap()
        .append(&simple_records(1000, 5))
        .unwrap();
    profiles
        .append(&[Record::new("late").key("user0")])
        .unwrap();
    drop(profiles);

    // Power loss right after the checkpoint returned: the copy is durable, every file and
    // directory of it.
    sim.crash(CrashMode::PowerLossDropUnsynced);
    drop(log);
    let (copy, ops) = open_watched(&sim, "/backup");
    assert!(
        copy.recovery_report().is_empty(),
        "{:?}",
        copy.recovery_report()
    );
    assert_opened_without_recovery(&ops, "the copy");
    assert_eq!(
        contents(&copy),
        before,
        "every record, offset and watermark"
    );
    for (tp, want) in [(&owned[0], 17), (&owned[1], 40)] {
        let got = copy
            .committed_offset("billing", &tp.topic, tp.partition)
            .unwrap();
        assert_eq!(got.map(|c| c.offset), Some(want), "{tp}");
    }
    assert!(copy.transactions().unwrap().is_empty());
    for id in 0..3 {
        let p = copy.partition("orders", id).unwrap();
        assert_eq!(p.last_stable_offset(), p.high_watermark());
    }
    let mut reader = copy
        .consumer(ConsumerConfig::new("audit").isolation_level(IsolationLevel::ReadCommitted))
        .unwrap();
    reader
        .assign(&[0, 1, 2].map(|id| TopicPartition::new("orders", id)))
        .unwrap();
    let mut committed_txn = 0;
    let deadline = Instant::now() + hang_bound();
    while committed_txn < 6 && Instant::now() < deadline {
        for r in reader.poll(Duration::from_millis(10)).unwrap() {
            committed_txn += usize::from(r.value_str().is_some_and(|v| v.starts_with("txn-")));
        }
    }
    assert_eq!(committed_txn, 6, "the transaction is committed in the copy");
    drop(reader);
    // The event store catches its index up from the copied topic.
    let store = EventStore::open(&copy, "ledger", store_config).unwrap();
    assert_eq!(store.read_stream("account-1", 0, 100).unwrap(), stream);
    drop(store);

    // The copy is a log of its own: writing and compacting it leaves the log's files (some of
    // them linked into it) alone.
    for id in 0..3 {
        copy.partition("orders", id)
            .unwrap()
            .append(&simple_records(5000, 40))
            .unwrap();
    }
    let copy_profiles = copy.partition("profiles", 0).unwrap();
    for round in 0..6 {
        let batch: Vec<Record> = (0..5)
            .map(|k| Record::new(format!("copy{round}")).key(format!("user{k}")))
            .collect();
        copy_profiles.append(&batch).unwrap();
    }
    drop(copy_profiles);
    copy.run_maintenance().unwrap();
    copy.close().unwrap();
    let source = TestLog::sim(&sim, "/log").no_maintenance().open();
    assert!(source.recovery_report().is_empty());
    let after = contents(&source);
    for (tp, (start, hw, records)) in &before {
        let (got_start, got_hw, got) = &after[tp];
        assert_eq!(got_start, start, "{tp}");
        assert!(got_hw >= hw, "{tp}");
        assert_eq!(&got[..records.len()], &records[..], "{tp}");
    }
}

/// What the producers acknowledged: partition → offset → value.
type Acked = HashMap<TopicPartition, BTreeMap<u64, String>>;

fn key_of(n: u64) -> String {
    format!("k{n}")
}

#[test]
fn a_checkpoint_under_appends_and_maintenance_holds_exactly_what_lay_below_its_cut() {
    let seed = base_seed();
    let _g = SeedGuard::new("checkpoint_under_load", seed);
    let (_dir, log) = TestLog::temp().no_maintenance().open_temp();
    let segments = TopicConfig::default()
        .segment_bytes(2048)
        .index_interval_bytes(256)
        .segment_index_bytes(1024);
    // Kept whole, trimmed by retention, and compacted.
    log.create_topic("audit", segments.clone().partitions(2))
        .unwrap();
    log.create_topic(
        "events",
        segments.clone().partitions(2).retention_bytes(Some(4096)),
    )
    .unwrap();
    log.create_topic(
        "state",
        segments
            .cleanup_policy(CleanupPolicy::Compact)
            .min_cleanable_dirty_ratio(0.0),
    )
    .unwrap();
    let topics: [(&str, u32); 3] = [("audit", 2), ("events", 2), ("state", 1)];
    let tps: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|&(t, n)| (0..n).map(move |id| TopicPartition::new(t, id)))
        .collect();
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for writer in 0..2u64 {
        let (log, acked, stop, tps) = (log.clone(), acked.clone(), stop.clone(), tps.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ writer);
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tp = rng.pick(&tps);
                let p = log.partition(&tp.topic, tp.partition).unwrap();
                // The value names its key, so the model knows each record's key.
                let values: Vec<String> = (0..rng.usize(1, 4))
                    .map(|_| {
                        seq += 1;
                        format!("w{writer}-{seq:08}={}", key_of(rng.below(12)))
                    })
                    .collect();
                let batch: Vec<Record> = values
                    .iter()
                    .map(|v| Record::new(v.clone()).key(v.split_once('=').unwrap().1.to_string()))
                    .collect();
                let base = p.append(&batch).unwrap();
                let mut acked = acked.lock().unwrap();
                let model = acked.entry(tp.clone()).or_default();
                for (i, v) in values.into_iter().enumerate() {
                    model.insert(base + i as u64, v);
                }
            }
        }));
    }
    // Segments deleted by retention and compaction passes made, so far.
    let maintained = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    {
        let (log, stop, maintained) = (log.clone(), stop.clone(), maintained.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let report = log.run_maintenance().unwrap();
                let passes: usize = report.partitions.iter().map(|p| p.compaction.passes).sum();
                maintained[0].fetch_add(report.segments_deleted() as u64, Ordering::Relaxed);
                maintained[1].fetch_add(passes as u64, Ordering::Relaxed);
            }
        }));
    }
    let hw = |tp: &TopicPartition| {
        log.partition(&tp.topic, tp.partition)
            .unwrap()
            .high_watermark()
    };
    let deadline = Instant::now() + hang_bound();
    // Until maintenance is busy deleting and swapping segments, so the checkpoint meets it.
    let busy = || maintained.iter().all(|n| n.load(Ordering::Relaxed) > 0);
    while tps.iter().any(|tp| hw(tp) < 150) || !busy() {
        assert!(
            Instant::now() < deadline,
            "the writers or maintenance made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let dest = elsewhere.path().join("backup");
    let before: Vec<u64> = tps.iter().map(hw).collect();
    let report = log.checkpoint(&dest).unwrap();
    let after: Vec<u64> = tps.iter().map(hw).collect();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap();

    assert!(
        dest.join(".clean-shutdown").exists(),
        "the copy needs no recovery"
    );
    let copy = TestLog::dir(&dest).no_maintenance().open();
    assert!(
        copy.recovery_report().is_empty(),
        "{:?}",
        copy.recovery_report()
    );
    for (i, tp) in tps.iter().enumerate() {
        let cut = report.high_watermarks[tp];
        let ctx = format!("seed {seed} {tp}, cut at {cut}");
        assert!(
            (before[i]..=after[i]).contains(&cut),
            "{ctx}: the cut lies between the watermarks before ({}) and after ({}) the call",
            before[i],
            after[i]
        );
        let p = copy.partition(&tp.topic, tp.partition).unwrap();
        assert_eq!(p.high_watermark(), cut, "{ctx}: nothing past the cut");
        let records = records_of(&p);
        let model = &acked[tp];
        for r in &records {
            assert_eq!(
                r.value_str(),
                model.get(&r.offset).map(String::as_str),
                "{ctx}: the record at {} is the one acknowledged there",
                r.offset
            );
        }
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        match tp.topic.as_str() {
            // Every record acknowledged below the cut, before the call or during it.
            "audit" => assert_eq!(offsets, (0..cut).collect::<Vec<_>>(), "{ctx}"),
            // Retention removes whole segments from the front only.
            "events" => {
                let start = p.log_start_offset();
                assert_eq!(offsets, (start..cut).collect::<Vec<_>>(), "{ctx}");
            }
            // At the cut, compaction had dropped only records that a newer one of their key
            // below it replaced: each key's newest record below the cut is there.
            _ => {
                let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
                for (&offset, value) in model.range(..cut) {
                    newest.insert(value.split_once('=').unwrap().1, offset);
                }
                assert!(!newest.is_empty(), "{ctx}");
                for (key, offset) in newest {
                    assert!(
                        offsets.contains(&offset),
                        "{ctx}: {key}'s newest, at {offset}"
                    );
                }
            }
        }
    }
    copy.close().unwrap();
    log.close().unwrap();
}

const ENV_WORK: &str = "ANNALS_CHECKPOINT_KILL9_DIR";

/// The source log of the kill -9 test: a few megabytes in sealed segments and large active
/// ones, and a compacted topic.
fn build_sizeable_log(dir: &Path) -> Contents {
    let log = TestLog::dir(dir).no_maintenance().open();
    log.create_topic(
        "big",
        TopicConfig::default().partitions(2).segment_bytes(1 << 20),
    )
    .unwrap();
    log.create_topic("keys", compacted()).unwrap();
    let mut rng = Rng::new(7);
    for id in 0..2 {
        let p = log.partition("big", id).unwrap();
        for i in 0..70 {
            let batch: Vec<Record> = (0..50)
                .map(|j| Record::new(rng.bytes(1000)).key(format!("{i}-{j}")))
                .collect();
            p.append(&batch).unwrap();
        }
    }
    let keys = log.partition("keys", 0).unwrap();
    for round in 0..10 {
        let batch: Vec<Record> = (0..8)
            .map(|k| Record::new(format!("r{round}")).key(format!("key{k}")))
            .collect();
        keys.append(&batch).unwrap();
    }
    drop(keys);
    log.run_maintenance().unwrap();
    let want = contents(&log);
    log.close().unwrap();
    want
}

/// Asserts that `dir` holds a complete backup of a log holding `want`: its clean-shutdown
/// marker, an open that recovers nothing, and every record.
fn assert_complete_backup(dir: &Path, want: &Contents, ctx: &str) {
    assert!(
        dir.join(".clean-shutdown").exists(),
        "{ctx}: {} has no clean-shutdown marker",
        dir.display()
    );
    let copy = TestLog::dir(dir).no_maintenance().open();
    assert!(
        copy.recovery_report().is_empty(),
        "{ctx}: {:?}",
        copy.recovery_report()
    );
    assert!(contents(&copy) == *want, "{ctx}: {} differs", dir.display());
    copy.close().unwrap();
}

/// The child: checkpoints the log again and again until killed, keeping only its newest
/// backup (renamed away from `dest`, so that each checkpoint finds `dest` free).
#[test]
fn checkpoint_child() {
    let Ok(work) = std::env::var(ENV_WORK) else {
        return;
    };
    let work = PathBuf::from(work);
    let log = TestLog::dir(work.join("log")).no_maintenance().open();
    // libtest has written "test checkpoint_child ... " without a newline: end that line first.
    println!();
    println!("READY");
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(60) {
        log.checkpoint(work.join("dest")).unwrap();
        std::fs::rename(work.join("dest"), work.join(format!("done-{n}"))).unwrap();
        if n > 0 {
            std::fs::remove_dir_all(work.join(format!("done-{}", n - 1))).unwrap();
        }
        println!("DONE {n}");
        n += 1;
    }
}

#[test]
fn kill9_during_a_checkpoint_never_leaves_a_partial_backup_at_dest() {
    if std::env::var(ENV_WORK).is_ok() {
        return;
    }
    let seed = base_seed();
    let _g = SeedGuard::new("kill9_during_a_checkpoint", seed);
    let mut rng = Rng::new(seed);
    let work = tempfile::tempdir().unwrap();
    let (source, dest) = (work.path().join("log"), work.path().join("dest"));
    let staging = work.path().join("dest.partial");
    let want = build_sizeable_log(&source);
    let mut interrupted = 0;
    for round in 1..=env_usize("ANNALS_CHECKPOINT_KILL9_ROUNDS", 3) {
        let ctx = format!("seed {seed} round {round}");
        let child_test = test_path(module_path!(), "checkpoint_child");
        let (mut child, lines) = spawn_child(&child_test, &[(ENV_WORK, work.path().as_os_str())]);
        while lines
            .recv_timeout(hang_bound())
            .expect("the child is ready")
            != "READY"
        {}
        std::thread::sleep(Duration::from_millis(rng.range(0, 250)));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(lines);

        // `dest` is absent, or a complete backup (the kill fell between the checkpoint's
        // rename and the child's). The newest backup the child kept is complete too; an older
        // one may be half removed.
        if dest.exists() {
            assert_complete_backup(&dest, &want, &ctx);
            std::fs::remove_dir_all(&dest).unwrap();
        }
        let kept: BTreeMap<u64, PathBuf> = std::fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?;
                Some((name.strip_prefix("done-")?.parse().ok()?, path.clone()))
            })
            .collect();
        if let Some((_, newest)) = kept.last_key_value() {
            assert_complete_backup(newest, &want, &ctx);
        }
        for path in kept.values() {
            std::fs::remove_dir_all(path).unwrap();
        }
        // The log was only read: it opens with every record, nothing to repair.
        let log = TestLog::dir(&source).no_maintenance().open();
        assert!(
            log.recovery_report().is_empty(),
            "{ctx}: {:?}",
            log.recovery_report()
        );
        assert!(contents(&log) == want, "{ctx}: the log changed");
        // The next checkpoint to `dest` removes what a killed one left and succeeds.
        interrupted += usize::from(staging.exists());
        let report = log.checkpoint(&dest).unwrap();
        assert!(!staging.exists(), "{ctx}");
        assert_eq!(report.partitions, 3, "{ctx}");
        log.close().unwrap();
        assert_complete_backup(&dest, &want, &ctx);
        std::fs::remove_dir_all(&dest).unwrap();
    }
    // How often a kill landed inside a checkpoint depends on the machine; say it, do not
    // assert it.
    eprintln!("kill9_during_a_checkpoint: {interrupted} kill(s) interrupted a checkpoint");
}

/// A log on `sim` at `dir` with a topic of several segments, and its contents.
fn small_log(sim: &Arc<SimStorage>, dir: &str) -> (Log, Contents) {
    let log = TestLog::sim(sim, dir)
        .no_maintenance()
        .topic("t", small_segments().partitions(2))
        .open();
    for id in 0..2 {
        let p = log.partition("t", id).unwrap();
        for i in 0..12 {
            p.append(&simple_records(i * 4, 4)).unwrap();
        }
    }
    let want = contents(&log);
    (log, want)
}

#[test]
fn bad_destinations_are_refused_and_nothing_is_written() {
    let sim = SimStorage::new();
    let (log, _) = small_log(&sim, "/data/log");
    sim.write_file("/data/full/keep", b"mine");
    sim.write_file("/data/file", b"a file");
    let files = sim.paths();
    let refused = |dest: &str| {
        let e = log.checkpoint(dest).unwrap_err();
        assert_eq!(sim.paths(), files, "{dest}: nothing written");
        e
    };

    let e = refused("/data/full");
    assert_eq!(e.io_kind(), Some(ErrorKind::AlreadyExists), "{e}");
    assert!(matches!(&e, Error::Io { path: Some(p), .. } if p == Path::new("/data/full")));
    assert!(e.to_string().contains("not empty"), "{e}");
    let e = refused("/data/file");
    assert_eq!(e.io_kind(), Some(ErrorKind::AlreadyExists), "{e}");
    assert!(e.to_string().contains("not a directory"), "{e}");
    for dest in [
        "/data/log",
        "/data/log/backup",
        "/data/log/t-0/backup",
        "/data/other/../log/backup",
        "/data",
        "/",
    ] {
        let e = refused(dest);
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains(dest)),
            "{dest}: {e}"
        );
    }
    // The staging directory `<dest>.partial` may not contain the log either: a leftover of
    // that name is removed.
    let (inside, _) = small_log(&sim, "/x/b.partial/log");
    let before = sim.paths();
    let e = inside.checkpoint("/x/b").unwrap_err();
    assert!(matches!(&e, Error::InvalidArgument(_)), "{e}");
    assert_eq!(sim.paths(), before, "the log is untouched");
    drop(inside);

    // An empty directory is a fine destination: the finished copy replaces it.
    sim.create_dir_all("/data/empty".as_ref()).unwrap();
    log.checkpoint("/data/empty").unwrap();
    assert!(sim.exists("/data/empty/topics.meta".as_ref()).unwrap());

    // A second checkpoint to a `dest` another one is building is refused (here from within
    // the first's storage calls, where it is sure to be running).
    let nested = Arc::new(Mutex::new(None));
    let (inner_log, result) = (Mutex::new(Some(log.clone())), nested.clone());
    sim.set_fault_hook(move |op| {
        if op.kind == SimOpKind::CreateDirAll && op.path == Path::new("/data/twice.partial") {
            if let Some(log) = inner_log.lock().unwrap().take() {
                *result.lock().unwrap() = Some(log.checkpoint("/data/twice"));
            }
        }
        None
    });
    let first = log.checkpoint("/data/twice");
    sim.clear_fault_hook();
    first.unwrap();
    let second = nested.lock().unwrap().take().expect("the hook ran");
    let e = second.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("already running")),
        "{e}"
    );

    log.close().unwrap();
    assert!(matches!(log.checkpoint("/data/late"), Err(Error::Closed)));
    assert!(!sim.exists("/data/late".as_ref()).unwrap());
}

#[test]
fn an_io_error_fails_the_checkpoint_with_its_path_and_harms_nothing() {
    let sim = SimStorage::new();
    let (log, want) = small_log(&sim, "/log");
    sim.fail_when(SimOpKind::Write, "/backup.partial/", ErrorKind::Other);
    let e = log.checkpoint("/backup").unwrap_err();
    sim.clear_fault_hook();
    assert!(
        matches!(&e, Error::Io { path: Some(p), .. } if p.starts_with("/backup.partial")),
        "{e:?}"
    );
    assert!(e.to_string().contains("/backup.partial/"), "{e}");
    assert!(!sim.exists("/backup".as_ref()).unwrap());
    assert!(!sim.exists("/backup.partial".as_ref()).unwrap());
    assert!(contents(&log) == want, "the log is as it was");

    // The log goes on: appends, maintenance, and a checkpoint that succeeds.
    let p = log.partition("t", 0).unwrap();
    p.append(&simple_records(100, 3)).unwrap();
    drop(p);
    log.run_maintenance().unwrap();
    let want = contents(&log);
    let linked = log.checkpoint("/backup").unwrap();
    assert!(linked.segments_linked > 0, "{linked:?}");

    // Where a link fails (another file system), the segment is copied instead.
    sim.fail_when(SimOpKind::HardLink, "", ErrorKind::CrossesDevices);
    let copied = log.checkpoint("/elsewhere").unwrap();
    sim.clear_fault_hook();
    let CheckpointReport {
        segments_linked,
        segments_copied,
        ..
    } = copied;
    assert_eq!(segments_linked, 0, "{copied:?}");
    assert_eq!(
        segments_copied,
        linked.segments_linked + linked.segments_copied,
        "{copied:?}"
    );
    assert!(copied.bytes_copied > linked.bytes_copied, "{copied:?}");
    assert_eq!(copied.high_watermarks, linked.high_watermarks);
    log.close().unwrap();

    for dir in ["/log", "/backup", "/elsewhere"] {
        let (reopened, ops) = open_watched(&sim, dir);
        assert!(reopened.recovery_report().is_empty(), "{dir}");
        if dir != "/log" {
            assert_opened_without_recovery(&ops, dir);
        }
        assert!(contents(&reopened) == want, "{dir}");
        reopened.close().unwrap();
    }
}
