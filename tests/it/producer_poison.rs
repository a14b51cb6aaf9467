//! A panic on the producer's writer thread kills the producer loudly instead of hanging it:
//! every record it had not yet acknowledged fails with `Error::ThreadPanicked`, every waiter
//! (`Delivery::wait`, `flush`, `close`, the drop of the last handle) wakes up with that error,
//! and every later `send` fails at once with it.
//!
//! The panic comes from a `SimStorage` fault hook that panics instead of returning an error,
//! only on the writer thread: as if the write path itself had panicked. Each call that could
//! hang runs on its own thread with a generous bound (`ANNALS_HANG_SECS`, default 60 s), so a
//! regression fails the test instead of hanging the suite.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::common::*;
use annals::storage::{SimOp, SimOpKind, SimStorage};
use annals::{Durability, Error, Log, Producer, ProducerConfig, Record, TopicConfig};

const DIR: &str = "/sim/poison";
const MESSAGE: &str = "injected fault: the write path panics";
const WRITER: &str = "annals-producer";

/// The fault: the first operation of kind `kind` on a `.log` file from the writer thread waits
/// while `hold` is set, then panics.
struct Trap {
    hold: AtomicBool,
    hits: AtomicUsize,
}

impl Trap {
    fn set(sim: &SimStorage, kind: SimOpKind) -> Arc<Trap> {
        let trap = Arc::new(Trap {
            hold: AtomicBool::new(true),
            hits: AtomicUsize::new(0),
        });
        let t = trap.clone();
        sim.set_fault_hook(move |op: &SimOp| -> Option<io::Error> {
            let on_writer = std::thread::current().name() == Some(WRITER);
            let log_file = op.path.extension().is_some_and(|e| e == "log");
            if on_writer && log_file && op.kind == kind {
                t.hits.fetch_add(1, Ordering::SeqCst);
                while t.hold.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                panic!("{MESSAGE}");
            }
            None
        });
        trap
    }

    /// Waits until the writer thread is inside the trap.
    fn wait_hit(&self) {
        let hit = poll_until(hang_bound(), || self.hits.load(Ordering::SeqCst) > 0);
        assert!(hit.is_some(), "the writer never reached the trap");
    }

    fn release(&self) {
        self.hold.store(false, Ordering::Release);
    }
}

/// The test's producer handle. Dropping a producer waits for its writer, so a regression would
/// hang the drop too: this drops it under `bounded`, and leaks it when the test already failed
/// (a hung drop during the unwinding would hide the failure behind a hang).
struct Held(Option<Producer>);

impl Held {
    fn take(mut self) -> Producer {
        self.0.take().expect("held")
    }
}

impl std::ops::Deref for Held {
    type Target = Producer;
    fn deref(&self) -> &Producer {
        self.0.as_ref().expect("held")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(producer) = self.0.take() else {
            return;
        };
        if std::thread::panicking() {
            std::mem::forget(producer);
        } else {
            bounded("dropping the producer", move || drop(producer));
        }
    }
}

fn setup(durability: Durability, kind: SimOpKind) -> (Arc<SimStorage>, Log, Held, Arc<Trap>) {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, DIR).open();
    log.create_topic("t", TopicConfig::default().partitions(2))
        .unwrap();
    // A long linger: a small record stays in its open batch until a flush or a full batch.
    let config = ProducerConfig::default()
        .durability(durability)
        .linger(Duration::from_secs(3600))
        .batch_size(1024);
    let producer = log.producer(config).unwrap();
    let trap = Trap::set(&sim, kind);
    (sim, log, Held(Some(producer)), trap)
}

fn small(i: usize) -> Record {
    Record::new(format!("small-{i}"))
}

/// Larger than `batch_size`: its batch closes at once.
fn big(i: usize) -> Record {
    Record::new(format!("big-{i}-{}", "x".repeat(1500)))
}

#[track_caller]
fn assert_panicked<T: std::fmt::Debug>(what: &str, result: annals::Result<T>) {
    match result {
        Err(Error::ThreadPanicked { thread, message }) => {
            assert_eq!(thread, WRITER, "{what}");
            assert!(message.contains(MESSAGE), "{what}: message {message:?}");
        }
        other => panic!("{what}: expected ThreadPanicked, got {other:?}"),
    }
}

#[test]
fn a_writer_panic_fails_every_pending_delivery_and_every_later_send() {
    let (_sim, log, producer, trap) = setup(Durability::Written, SimOpKind::Write);
    // In flight: the writer is inside the trap with this batch.
    let in_flight = producer.send_to("t", 0, big(0)).unwrap();
    trap.wait_hit();
    // Ready (closed, waiting for the writer) on both partitions, and open on both.
    let ready0 = producer.send_to("t", 0, big(1)).unwrap();
    let ready1 = producer.send_to("t", 1, big(2)).unwrap();
    let open0 = producer.send_to("t", 0, small(3)).unwrap();
    let open1 = producer.send_to("t", 1, small(4)).unwrap();
    trap.release();
    for (name, d) in [
        ("in flight", in_flight),
        ("ready on 0", ready0),
        ("ready on 1", ready1),
        ("open on 0", open0),
        ("open on 1", open1),
    ] {
        let result = bounded(name, move || d.wait());
        assert_panicked(name, result);
    }
    // Dead: a send fails at once (no delivery that would never complete), as does try_send.
    assert_panicked("send after", producer.send("t", small(5)));
    assert_panicked("try_send after", producer.try_send("t", small(6)));
    assert_eq!(
        producer.buffered_bytes(),
        0,
        "failed batches free their memory"
    );
    let p = producer.clone();
    assert_panicked("flush after", bounded("flush", move || p.flush()));
    let p = producer.clone();
    assert_panicked("close after", bounded("close", move || p.close()));
    assert!(read_topic(&log, "t").is_empty(), "nothing was written");
    let producer = producer.take();
    bounded("dropping the producer and the log", move || {
        drop(producer);
        log.close()
    })
    .unwrap();
}

#[test]
fn a_writer_panic_wakes_a_blocked_flush() {
    let (_sim, _log, producer, trap) = setup(Durability::Written, SimOpKind::Write);
    let d = producer.send("t", small(0)).unwrap();
    let p = producer.clone();
    // The flush closes the open batch; the writer takes it into the trap and the flush waits.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(p.flush());
    });
    trap.wait_hit();
    trap.release();
    let flushed = rx
        .recv_timeout(hang_bound())
        .expect("flush still blocked: it hangs");
    assert_panicked("flush", flushed);
    assert_panicked("delivery", bounded("delivery", move || d.wait()));
    assert_panicked("send after", producer.send("t", small(1)));
}

#[test]
fn a_writer_panic_during_close_fails_the_close() {
    let (_sim, _log, producer, trap) = setup(Durability::Written, SimOpKind::Write);
    let d = producer.send("t", small(0)).unwrap();
    let p = producer.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(p.close());
    });
    trap.wait_hit();
    trap.release();
    let closed = rx
        .recv_timeout(hang_bound())
        .expect("close still blocked: it hangs");
    assert_panicked("close", closed);
    assert_panicked("delivery", bounded("delivery", move || d.wait()));
    assert!(producer.send("t", small(1)).is_err(), "a send after close");
}

#[test]
fn dropping_a_producer_whose_writer_panics_returns() {
    let (_sim, log, producer, trap) = setup(Durability::Written, SimOpKind::Write);
    let deliveries: Vec<_> = (0..10)
        .map(|i| producer.send_to("t", i % 2, small(i as usize)).unwrap())
        .collect();
    // The drop flushes, the writer takes a batch into the trap, the drop waits for it.
    let producer = producer.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(producer);
        let _ = tx.send(());
    });
    trap.wait_hit();
    trap.release();
    rx.recv_timeout(hang_bound())
        .expect("the drop still blocked: it hangs");
    for (i, d) in deliveries.into_iter().enumerate() {
        let name = format!("delivery {i}");
        assert_panicked(&name, bounded(&name.clone(), move || d.wait()));
    }
    bounded("closing the log", move || log.close()).unwrap();
}

#[test]
fn a_panic_in_the_group_fsync_fails_the_round() {
    let (_sim, _log, producer, trap) = setup(Durability::Synced, SimOpKind::SyncData);
    let deliveries: Vec<_> = (0..4)
        .map(|i| producer.send_to("t", i % 2, small(i as usize)).unwrap())
        .collect();
    let p = producer.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(p.flush());
    });
    trap.wait_hit();
    trap.release();
    let flushed = rx
        .recv_timeout(hang_bound())
        .expect("flush still blocked: it hangs");
    assert_panicked("flush", flushed);
    for (i, d) in deliveries.into_iter().enumerate() {
        let name = format!("delivery {i}");
        assert_panicked(&name, bounded(&name.clone(), move || d.wait()));
    }
    assert_panicked("send after", producer.send("t", small(9)));
}

#[test]
fn under_durability_none_the_next_flush_reports_the_panic() {
    let (_sim, _log, producer, trap) = setup(Durability::None, SimOpKind::Write);
    // Acknowledged at send: the loss can only be reported by flush and later sends.
    producer.send("t", small(0)).unwrap().wait().unwrap();
    trap.release();
    let p = producer.clone();
    assert_panicked("flush", bounded("flush", move || p.flush()));
    assert_panicked("send after", producer.send("t", small(1)));
    let p = producer.clone();
    assert_panicked("close", bounded("close", move || p.close()));
}
