//! A log closes many partitions side by side (`fan_out`): every written partition is sealed
//! and checkpointed, so a power loss right after the close loses nothing; a partition whose
//! sync fails fails the close, names its files, stops no other partition's close, and leaves no
//! clean-shutdown marker, so the next open recovers.

use std::path::Path;
use std::sync::Arc;

use annals::storage::{CrashMode, SimOpKind, SimStorage, Storage};
use annals::{Log, Record, TopicConfig};

use crate::common::{crash, TestLog};

const DIR: &str = "/many";
/// Enough for every thread the fan-out starts.
const PARTITIONS: u32 = 130;
const RECORDS: u64 = 3;
const FAILING: u32 = 97;

fn open(sim: &Arc<SimStorage>) -> Log {
    TestLog::sim(sim, DIR).open()
}

fn value(p: u32, i: u64) -> String {
    format!("p{p}-{i}")
}

fn written_log(sim: &Arc<SimStorage>) -> Log {
    let log = open(sim);
    log.create_topic("t", TopicConfig::default().partitions(PARTITIONS))
        .unwrap();
    for p in 0..PARTITIONS {
        let part = log.partition("t", p).unwrap();
        for i in 0..RECORDS {
            part.append(&[Record::new(value(p, i))]).unwrap();
        }
    }
    log
}

fn values(log: &Log, p: u32) -> Vec<String> {
    log.partition("t", p)
        .unwrap()
        .iter(0)
        .map(|r| r.unwrap().value_str().unwrap().to_string())
        .collect()
}

fn all_values(p: u32) -> Vec<String> {
    (0..RECORDS).map(|i| value(p, i)).collect()
}

#[test]
fn a_power_loss_right_after_closing_many_partitions_loses_nothing() {
    let sim = SimStorage::new();
    let log = written_log(&sim);
    log.sync().unwrap();
    log.close().unwrap();
    crash(&sim, open(&sim), CrashMode::PowerLossTorn { seed: 11 });
    let log = open(&sim);
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
    for p in 0..PARTITIONS {
        assert_eq!(values(&log, p), all_values(p), "partition {p}");
    }
    log.close().unwrap();
}

#[test]
fn one_failing_partition_fails_the_close_and_the_others_still_close() {
    let sim = SimStorage::new();
    let log = written_log(&sim);
    let failing_dir = format!("t-{FAILING}");
    sim.set_fault_hook(move |op| {
        let syncs = matches!(op.kind, SimOpKind::SyncData | SimOpKind::SyncAll);
        let in_failing = op.path.iter().any(|c| c == failing_dir.as_str());
        (syncs && in_failing).then(|| std::io::Error::other("injected sync failure"))
    });
    let err = log.close().unwrap_err();
    sim.clear_fault_hook();
    assert!(
        err.to_string().contains(&format!("t-{FAILING}")),
        "the error names the partition's file: {err}"
    );

    crash(&sim, log, CrashMode::PowerLossDropUnsynced);
    let marker = Path::new(DIR).join(".clean-shutdown");
    assert!(
        !sim.exists(&marker).unwrap(),
        "no clean-shutdown marker after a failed close"
    );
    let log = open(&sim);
    for p in (0..PARTITIONS).filter(|&p| p != FAILING) {
        assert_eq!(values(&log, p), all_values(p), "partition {p} was closed");
    }
    let failed = values(&log, FAILING);
    assert_eq!(
        failed[..],
        all_values(FAILING)[..failed.len()],
        "the failed partition keeps a prefix"
    );
    log.close().unwrap();
}
