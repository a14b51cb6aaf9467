//! A panic in a background maintenance pass is caught: `Log::last_maintenance_error` reports it
//! as `Error::ThreadPanicked`, the thread runs no further passes (so it cannot panic again and
//! again), the host can still run maintenance itself, and `close` and drop return.
//!
//! The panic comes from a `SimStorage` fault hook that panics on the maintenance thread. Calls
//! that could hang run with a generous bound (`ANNALS_HANG_SECS`, default 60 s).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use annals::storage::{SimOp, SimStorage};
use annals::{Error, Log, Record, TopicConfig};

const DIR: &str = "/sim/maintenance-poison";
const MESSAGE: &str = "injected fault: a maintenance pass panics";
const THREAD: &str = "annals-maintenance";

/// Every storage operation of the maintenance thread panics while `armed`; `hits` counts them.
fn trap(sim: &SimStorage) -> (Arc<AtomicBool>, Arc<AtomicUsize>) {
    let armed = Arc::new(AtomicBool::new(true));
    let hits = Arc::new(AtomicUsize::new(0));
    let (a, h) = (armed.clone(), hits.clone());
    sim.set_fault_hook(move |_: &SimOp| -> Option<io::Error> {
        if a.load(Ordering::Acquire) && std::thread::current().name() == Some(THREAD) {
            h.fetch_add(1, Ordering::SeqCst);
            panic!("{MESSAGE}");
        }
        None
    });
    (armed, hits)
}

/// A log whose maintenance thread runs every millisecond, with a topic that retention must trim
/// (small segments, a small size limit), filled with enough records to need it.
fn log_with_work(sim: &Arc<SimStorage>) -> Log {
    let log = Log::builder(DIR)
        .storage(sim.clone())
        .maintenance_interval(Some(Duration::from_millis(1)))
        .open()
        .unwrap();
    let config = TopicConfig::default()
        .segment_bytes(1024)
        .retention_bytes(2048);
    log.create_topic("t", config).unwrap();
    let p = log.partition("t", 0).unwrap();
    for i in 0..40 {
        p.append(&[Record::new(format!("record-{i}-{}", "x".repeat(100)))])
            .unwrap();
    }
    log
}

fn wait_for_panic_error(log: &Log) -> Error {
    let seen = poll_until(hang_bound(), || log.last_maintenance_error().is_some());
    assert!(
        seen.is_some(),
        "no maintenance error reported within {:?} of the panic",
        hang_bound()
    );
    log.last_maintenance_error().expect("seen")
}

#[track_caller]
fn assert_panicked(error: &Error) {
    match error {
        Error::ThreadPanicked { thread, message } => {
            assert_eq!(*thread, THREAD);
            assert!(message.contains(MESSAGE), "message {message:?}");
        }
        other => panic!("expected ThreadPanicked, got {other:?}"),
    }
}

#[test]
fn a_maintenance_panic_is_reported_stops_the_thread_and_close_returns() {
    let sim = SimStorage::new();
    let (armed, hits) = trap(&sim);
    let log = log_with_work(&sim);
    let error = wait_for_panic_error(&log);
    assert_panicked(&error);
    assert!(error.to_string().contains(THREAD), "{error}");
    // The thread stops after a panic: many more intervals pass without another pass.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "maintenance ran again after a panic"
    );
    // The host can still maintain the log itself; the report of the panic stays.
    armed.store(false, Ordering::Release);
    let report = log.run_maintenance().unwrap();
    assert!(!report.partitions.is_empty(), "retention had work to do");
    assert_panicked(&log.last_maintenance_error().expect("kept"));
    bounded("close", move || log.close()).unwrap();
}

#[test]
fn dropping_a_log_whose_maintenance_panicked_returns() {
    let sim = SimStorage::new();
    let _trap = trap(&sim);
    let log = log_with_work(&sim);
    assert_panicked(&wait_for_panic_error(&log));
    bounded("drop", move || drop(log));
    // The directory is unlocked: the log opens again.
    let reopened = Log::builder(DIR)
        .storage(sim.clone())
        .maintenance_interval(None)
        .open()
        .unwrap();
    assert!(reopened.last_maintenance_error().is_none());
}
