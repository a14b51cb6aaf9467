//! Topic creation, one topic or a batch (`Log::create_topics`): a crash (kill -9 or power loss,
//! torn or not) at every storage operation of a creation leaves either none of the new topics
//! or all of them whole and usable; after the call returns they survive a power loss, and so
//! does what is appended and synced to them. A creation costs one fsync per partition
//! directory, one of the log directory and one `topics.meta` write. A batch is all or nothing:
//! a bad name, a bad configuration, a name given twice or taken, a closed log, or an I/O error
//! creates nothing.

use crate::common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use annals::storage::{CrashMode, SimOpKind, SimStorage};
use annals::{Error, Log, Record, TopicConfig};
use common::*;

const DIR: &str = "/sim/log";

/// The batch the crash tests create: three topics of different sizes and configurations.
fn batch() -> Vec<(String, TopicConfig)> {
    vec![
        (
            "alpha".to_string(),
            TopicConfig::default()
                .partitions(2)
                .segment_index_bytes(1024),
        ),
        ("beta".to_string(), TopicConfig::default().partitions(1)),
        (
            "gamma".to_string(),
            TopicConfig::default()
                .partitions(3)
                .segment_bytes(64 * 1024),
        ),
    ]
}

fn names(batch: &[(String, TopicConfig)]) -> Vec<String> {
    batch.iter().map(|(n, _)| n.clone()).collect()
}

/// A log holding one topic with two synced records, closed cleanly.
fn setup() -> Snapshot {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    log.create_topic("old", TopicConfig::default()).unwrap();
    let p = log.partition("old", 0).unwrap();
    p.append(&[Record::new("a"), Record::new("b")]).unwrap();
    p.sync().unwrap();
    log.close().unwrap();
    snapshot(&sim)
}

/// Files under the log directory that belong to a partition of `topic`.
fn files_of(sim: &SimStorage, topic: &str) -> Vec<PathBuf> {
    let prefix = format!("{DIR}/{topic}-");
    sim.paths()
        .into_iter()
        .filter(|p| p.to_string_lossy().starts_with(&prefix))
        .collect()
}

/// After a reopen: the old topic is intact, and the new ones are all there (each partition
/// holding `records` records, and taking appends) or none is (and none left a file behind).
/// Returns whether they are there.
#[track_caller]
fn check_reopened(log: &Log, sim: &SimStorage, batch: &[(String, TopicConfig)], ctx: &str) -> bool {
    let old = log.partition("old", 0).unwrap();
    assert_eq!(old.high_watermark(), 2, "{ctx}: the old topic lost records");
    let topics = log.topics();
    let present: Vec<&String> = batch
        .iter()
        .map(|(n, _)| n)
        .filter(|n| topics.contains(n))
        .collect();
    if present.is_empty() {
        assert_eq!(topics, vec!["old".to_string()], "{ctx}");
        for (name, _) in batch {
            assert!(
                files_of(sim, name).is_empty(),
                "{ctx}: leftover files of {name}: {:?}",
                files_of(sim, name)
            );
        }
        return false;
    }
    assert_eq!(
        present.len(),
        batch.len(),
        "{ctx}: a batch came back in part: {present:?}"
    );
    for (name, config) in batch {
        assert_eq!(&log.topic_config(name).unwrap(), config, "{ctx}: {name}");
        for id in 0..config.partitions {
            let p = log
                .partition(name, id)
                .unwrap_or_else(|e| panic!("{ctx}: {name}-{id}: {e}"));
            p.append(&[Record::new("after")])
                .unwrap_or_else(|e| panic!("{ctx}: append to {name}-{id}: {e}"));
        }
    }
    true
}

/// Crashes at operation `at` of opening the log and creating `batch`; when the creation
/// returns, appends one record to each new partition, syncs it, and loses power. Returns
/// whether the creation returned Ok and whether the whole run finished before `at`.
fn run(setup: &Snapshot, at: u64, mode: CrashMode, batch: &[(String, TopicConfig)]) -> bool {
    let sim = restore(setup);
    let dead = crash_at_operation_n(&sim, at, mode);
    let log = TestLog::sim(&sim, DIR).no_maintenance().try_open();
    let created = log
        .as_ref()
        .map(|l| l.create_topics(batch.iter().cloned()).is_ok())
        .unwrap_or(false);
    let finished = !dead.load(Ordering::SeqCst);
    sim.clear_fault_hook();
    let ctx = format!("{mode:?} at operation {at}");
    if finished {
        assert!(created, "{ctx}: the creation failed without a crash");
        let log = log.as_ref().unwrap();
        for (name, config) in batch {
            for id in 0..config.partitions {
                let p = log.partition(name, id).unwrap();
                p.append(&[Record::new(format!("{name}-{id}"))]).unwrap();
                p.sync().unwrap();
            }
        }
        // The power goes right after the syncs: creation and records must both be durable.
        sim.crash(CrashMode::PowerLossTorn { seed: at });
    }
    std::mem::forget(log);
    let log = TestLog::sim(&sim, DIR)
        .no_maintenance()
        .try_open()
        .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    if created {
        let mut want = [vec!["old".to_string()], names(batch)].concat();
        want.sort();
        assert_eq!(log.topics(), want, "{ctx}: acknowledged topics lost");
    }
    if finished {
        for (name, config) in batch {
            for id in 0..config.partitions {
                let p = log.partition(name, id).unwrap();
                let records = read_all(&p, 1 << 20).unwrap();
                assert_eq!(
                    records.len(),
                    1,
                    "{ctx}: {name}-{id} lost its synced record"
                );
                let want = format!("{name}-{id}");
                assert_eq!(records[0].value.as_deref(), Some(want.as_bytes()), "{ctx}");
            }
        }
    } else {
        let there = check_reopened(&log, &sim, batch, &ctx);
        if there {
            for (name, config) in batch {
                for id in 0..config.partitions {
                    let hw = log.partition(name, id).unwrap().high_watermark();
                    assert_eq!(
                        hw, 1,
                        "{ctx}: {name}-{id} (one record appended after reopen)"
                    );
                }
            }
        } else {
            // The creation can simply be done again.
            log.create_topics(batch.iter().cloned())
                .unwrap_or_else(|e| panic!("{ctx}: create again: {e}"));
            check_reopened(&log, &sim, batch, &ctx);
        }
    }
    log.close().unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
    finished
}

/// Every operation index, for each crash mode, of a batch creation and of a one-topic one.
#[test]
fn crash_at_every_operation_leaves_none_or_all() {
    let setup = setup();
    let one = vec![("solo".to_string(), TopicConfig::default().partitions(2))];
    for batch in [batch(), one] {
        for mode_of in [
            (|_| CrashMode::ProcessKill) as fn(u64) -> CrashMode,
            |_| CrashMode::PowerLossDropUnsynced,
            |at| CrashMode::PowerLossTorn { seed: at },
        ] {
            let mut at = 0;
            while !run(&setup, at, mode_of(at), &batch) {
                at += 1;
            }
            assert!(at > 20, "open and create took only {at} operations?");
        }
    }
}

/// The syncs a creation costs, counted on the simulator: one fsync per partition directory
/// and one of the log directory, then `topics.meta` (one file fsync, one directory fsync),
/// whatever the number of topics; nothing per partition file.
#[test]
fn a_creation_syncs_each_directory_once_and_the_metadata_once() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    let batch = batch();
    let partitions: u64 = batch.iter().map(|(_, c)| u64::from(c.partitions)).sum();
    let (files, dirs) = (sim.sync_count(), sim.dir_sync_count());
    log.create_topics(batch.clone()).unwrap();
    assert_eq!(sim.sync_count() - files, 1, "file fsyncs of a batch");
    assert_eq!(
        sim.dir_sync_count() - dirs,
        partitions + 2,
        "directory fsyncs"
    );

    let (files, dirs) = (sim.sync_count(), sim.dir_sync_count());
    log.create_topic("single", TopicConfig::default().partitions(4))
        .unwrap();
    assert_eq!(sim.sync_count() - files, 1, "file fsyncs of one topic");
    assert_eq!(sim.dir_sync_count() - dirs, 4 + 2, "directory fsyncs");
}

#[test]
fn a_batch_is_created_whole_and_reopens_with_its_configurations() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    let batch = batch();
    log.create_topics(batch.clone()).unwrap();
    assert_eq!(log.topics(), names(&batch));
    for (name, config) in &batch {
        assert_eq!(&log.topic_config(name).unwrap(), config);
        for id in 0..config.partitions {
            let p = log.partition(name, id).unwrap();
            assert_eq!(p.high_watermark(), 0);
            p.append(&[Record::new("v")]).unwrap();
        }
        assert!(log.partition(name, config.partitions).is_err());
    }
    // An empty batch is nothing to do, and writes nothing.
    let ops = sim.op_count();
    log.create_topics(Vec::<(String, TopicConfig)>::new())
        .unwrap();
    assert_eq!(sim.op_count(), ops, "an empty batch touched the storage");
    log.close().unwrap();

    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    assert_eq!(log.topics(), names(&batch));
    for (name, config) in &batch {
        assert_eq!(&log.topic_config(name).unwrap(), config);
        for id in 0..config.partitions {
            assert_eq!(log.partition(name, id).unwrap().high_watermark(), 1);
        }
    }
    // Names can be `&str`, and topics can be added next to the existing ones.
    log.create_topics([("delta", TopicConfig::default())])
        .unwrap();
    assert_eq!(log.topics().len(), batch.len() + 1);
}

/// Asserts that a refused batch left the log as it was: no new topic, no new file.
#[track_caller]
fn nothing_created(log: &Log, sim: &SimStorage, before: &[PathBuf], what: &str) {
    assert_eq!(log.topics(), vec!["taken".to_string()], "{what}");
    assert_eq!(sim.paths(), before, "{what}: files changed");
}

#[test]
fn a_bad_entry_anywhere_in_a_batch_creates_nothing() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    log.create_topic("taken", TopicConfig::default()).unwrap();
    let before = sim.paths();
    let good = |name: &str| (name.to_string(), TopicConfig::default().partitions(2));

    let bad_name = vec![good("a"), good("b"), good("not/a name")];
    match log.create_topics(bad_name) {
        Err(Error::InvalidTopicName { name, .. }) => assert_eq!(name, "not/a name"),
        other => panic!("bad name: {other:?}"),
    }
    nothing_created(&log, &sim, &before, "bad name");

    match log.create_topics(vec![good("a"), good("__internal")]) {
        Err(Error::InvalidTopicName { name, reason }) => {
            assert_eq!(name, "__internal");
            assert!(reason.contains("reserved"), "{reason}");
        }
        other => panic!("reserved name: {other:?}"),
    }
    nothing_created(&log, &sim, &before, "reserved name");

    let bad_config = vec![
        good("a"),
        ("b".to_string(), TopicConfig::default().partitions(0)),
    ];
    match log.create_topics(bad_config) {
        Err(e @ Error::InvalidConfig { field, .. }) => {
            assert_eq!(field, "partitions");
            assert!(e.to_string().contains("(topic \"b\")"), "{e}");
        }
        other => panic!("bad config: {other:?}"),
    }
    nothing_created(&log, &sim, &before, "bad config");

    match log.create_topics(vec![good("a"), good("b"), good("a")]) {
        Err(Error::InvalidArgument(msg)) => {
            assert!(msg.contains("\"a\"") && msg.contains("twice"), "{msg}");
        }
        other => panic!("duplicate: {other:?}"),
    }
    nothing_created(&log, &sim, &before, "duplicate");

    match log.create_topics(vec![good("a"), good("taken")]) {
        Err(Error::TopicExists { topic }) => assert_eq!(topic, "taken"),
        other => panic!("taken: {other:?}"),
    }
    nothing_created(&log, &sim, &before, "taken");

    // After all that, the good ones can be created.
    log.create_topics(vec![good("a"), good("b")]).unwrap();
    assert_eq!(log.topics(), ["a", "b", "taken"]);
}

#[test]
fn creating_on_a_closed_log_is_refused() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    log.close().unwrap();
    let ops = sim.op_count();
    assert!(matches!(
        log.create_topics([("a", TopicConfig::default())]),
        Err(Error::Closed)
    ));
    assert!(matches!(
        log.create_topic("a", TopicConfig::default()),
        Err(Error::Closed)
    ));
    assert!(matches!(
        log.create_topics(Vec::<(String, TopicConfig)>::new()),
        Err(Error::Closed)
    ));
    assert_eq!(
        sim.op_count(),
        ops,
        "a refused creation touched the storage"
    );
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    assert!(log.topics().is_empty());
}

/// An I/O error part way (here: the fsync of the second topic's directory) fails the whole
/// batch: no topic is published, the directories made are removed, and both the same process
/// and a reopened log can create the batch again.
#[test]
fn an_io_error_part_way_creates_nothing() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    let before = sim.paths();
    sim.fail_when(SimOpKind::SyncDir, "beta-0", std::io::ErrorKind::Other);
    let err = log.create_topics(batch()).unwrap_err();
    assert!(err.to_string().contains("beta-0"), "{err}");
    assert!(log.topics().is_empty());
    assert_eq!(sim.paths(), before, "the failed batch left files");
    sim.clear_fault_hook();

    // A failed open of a segment file, in the middle of making the partitions.
    sim.fail_when(SimOpKind::Open, "gamma-1", std::io::ErrorKind::Other);
    assert!(log.create_topics(batch()).is_err());
    assert!(log.topics().is_empty());
    assert_eq!(sim.paths(), before, "the failed batch left files");
    sim.clear_fault_hook();

    log.create_topics(batch()).unwrap();
    assert_eq!(log.topics(), names(&batch()));
    sim.crash(CrashMode::PowerLossDropUnsynced);
    std::mem::forget(log);
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    assert_eq!(log.topics(), names(&batch()));
}

/// A directory left by a creation that failed in this process (its removal failed too) is
/// taken over by the next creation of the topic, which syncs it as any partition open does.
#[test]
fn a_creation_takes_over_a_directory_a_failed_one_left() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    sim.set_fault_hook(|op| {
        let p = op.path.to_string_lossy();
        let fail = (op.kind == SimOpKind::SyncDir && p.ends_with("beta-0"))
            || op.kind == SimOpKind::RemoveDirAll;
        fail.then(|| std::io::Error::other("injected"))
    });
    assert!(log.create_topics(batch()).is_err());
    sim.clear_fault_hook();
    assert!(log.topics().is_empty());
    assert!(
        !files_of(&sim, "beta").is_empty(),
        "the removal was to fail"
    );
    log.create_topics(batch()).unwrap();
    for (name, config) in batch() {
        for id in 0..config.partitions {
            let p = log.partition(&name, id).unwrap();
            p.append(&[Record::new("v")]).unwrap();
            p.sync().unwrap();
        }
    }
    sim.crash(CrashMode::PowerLossDropUnsynced);
    std::mem::forget(log);
    let log = TestLog::sim(&sim, DIR).no_maintenance().open();
    for (name, config) in batch() {
        for id in 0..config.partitions {
            assert_eq!(log.partition(&name, id).unwrap().high_watermark(), 1);
        }
    }
}
