//! Closing a log whose partitions were not written since they were opened: their files and
//! checkpoints are already what a close would make durable, so the close writes nothing for
//! them; a partition that was written is sealed and checkpointed as always. Either way a power
//! loss right after the close loses nothing and the next open is clean.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use annals::storage::{CrashMode, SimOpKind, SimStorage};
use annals::{Log, Record, TopicConfig};

use crate::common::{crash, TestLog};

const DIR: &str = "/idle";
const PARTITIONS: u32 = 5;

fn open(sim: &Arc<SimStorage>) -> Log {
    TestLog::sim(sim, DIR).open()
}

fn value(p: u32, i: u64) -> String {
    format!("p{p}-{i}")
}

fn append(log: &Log, p: u32, from: u64, n: u64) {
    let part = log.partition("t", p).unwrap();
    for i in from..from + n {
        part.append(&[Record::new(value(p, i))]).unwrap();
    }
}

fn assert_holds(log: &Log, counts: &[u64]) {
    for (p, &n) in counts.iter().enumerate() {
        let part = log.partition("t", p as u32).unwrap();
        let values: Vec<String> = part
            .iter(0)
            .map(|r| r.unwrap().value_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (0..n).map(|i| value(p as u32, i)).collect();
        assert_eq!(values, want, "partition {p}");
    }
}

/// Every path a mutating operation named while `during` ran.
fn written_during(sim: &SimStorage, during: impl FnOnce()) -> Vec<PathBuf> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    sim.set_fault_hook(move |op| {
        use SimOpKind::*;
        let mutates = matches!(
            op.kind,
            Write | SetLen | Allocate | SyncData | SyncAll | Rename | RemoveFile | MapMut
        );
        if mutates {
            s.lock().unwrap().push(op.path.clone());
        }
        None
    });
    during();
    sim.clear_fault_hook();
    let paths = seen.lock().unwrap().clone();
    paths
}

#[test]
fn closing_untouched_partitions_writes_nothing_for_them() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic("t", TopicConfig::default().partitions(PARTITIONS))
        .unwrap();
    for p in 0..PARTITIONS {
        append(&log, p, 0, 3);
    }
    log.close().unwrap();

    let log = open(&sim);
    assert!(log.recovery_report().is_empty(), "a clean open");
    append(&log, 0, 3, 2);
    let written = written_during(&sim, || log.close().unwrap());
    let under = |p: u32| {
        let dir = PathBuf::from(DIR).join(format!("t-{p}"));
        written.iter().filter(move |w| w.starts_with(&dir)).count()
    };
    assert!(
        under(0) > 0,
        "the written partition is sealed and checkpointed"
    );
    for p in 1..PARTITIONS {
        assert_eq!(under(p), 0, "partition {p} was not written: {written:#?}");
    }

    // A power loss right after: everything is there, and the open is clean.
    crash(&sim, log, CrashMode::PowerLossDropUnsynced);
    let log = open(&sim);
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
    assert_holds(&log, &[5, 3, 3, 3, 3]);
    // The partitions written after this open are sealed at its close; a torn power loss
    // right after loses nothing either.
    append(&log, 3, 3, 4);
    log.close().unwrap();
    crash(&sim, open(&sim), CrashMode::PowerLossTorn { seed: 7 });
    let log = open(&sim);
    assert_holds(&log, &[5, 3, 3, 7, 3]);
    log.close().unwrap();
}

/// After an unclean open (a crash before it), the checkpoint on disk vouches for nothing, so
/// the close seals every partition again, written or not.
#[test]
fn after_a_crash_the_close_seals_everything() {
    let sim = SimStorage::new();
    let log = open(&sim);
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    append(&log, 0, 0, 2);
    append(&log, 1, 0, 2);
    log.partition("t", 0).unwrap().sync().unwrap();
    log.partition("t", 1).unwrap().sync().unwrap();
    crash(&sim, log, CrashMode::ProcessKill);
    let log = open(&sim);
    let written = written_during(&sim, || log.close().unwrap());
    for p in 0..2 {
        let dir = PathBuf::from(DIR).join(format!("t-{p}"));
        assert!(
            written.iter().any(|w| w.starts_with(&dir)),
            "partition {p}: {written:#?}"
        );
    }
    crash(&sim, open(&sim), CrashMode::PowerLossDropUnsynced);
    assert_holds(&open(&sim), &[2, 2]);
}
