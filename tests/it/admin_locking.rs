//! `alter_topic` and `delete_topic` rewrite `topics.meta` (write, fsync, rename, fsync of the
//! directory) while holding only the admin lock: `Log::partition`, `topics`, `topic_config` and
//! a consumer's poll go on while that fsync is in progress, and see the old state until the new
//! one is durable. A fault hook holds the fsync of `topics.meta.tmp` until the test releases it,
//! so the test needs no timing: before the fix the readers cannot finish until the release.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::TestLog;
use annals::storage::{SimOpKind, SimStorage};
use annals::{ConsumerConfig, Log, Record, TopicConfig, TopicPartition};

const DIR: &str = "/sim/log";
/// How long the test waits for something that, with the fix, happens at once.
const GENEROUS: Duration = Duration::from_secs(60);

/// Holds the next fsync of `topics.meta.tmp` until released.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    /// (a sync is held, released)
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Gate {
    fn install(sim: &SimStorage) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        let g = gate.clone();
        sim.set_fault_hook(move |op| {
            let ours = op.kind == SimOpKind::SyncAll && op.path.ends_with("topics.meta.tmp");
            if ours && g.armed.swap(false, Ordering::SeqCst) {
                let mut st = g.state.lock().unwrap();
                st.0 = true;
                g.cv.notify_all();
                while !st.1 {
                    st = g.cv.wait(st).unwrap();
                }
            }
            None
        });
        gate
    }

    fn arm(&self) {
        *self.state.lock().unwrap() = (false, false);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Waits (boundedly) until the armed fsync is being held.
    fn wait_held(&self) {
        let st = self.state.lock().unwrap();
        let (st, _) = self.cv.wait_timeout_while(st, GENEROUS, |s| !s.0).unwrap();
        assert!(st.0, "the topics.meta fsync was never reached");
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

fn open(sim: &Arc<SimStorage>) -> Log {
    TestLog::sim(sim, DIR).no_maintenance().open()
}

/// While `admin` is stuck in its topics.meta fsync, `readers` must complete; returns what they
/// returned, after letting `admin` finish.
fn while_fsync_held<R: Send + 'static>(
    gate: &Gate,
    admin: impl FnOnce() -> annals::Result<()> + Send + 'static,
    readers: impl FnOnce() -> R + Send + 'static,
) -> R {
    gate.arm();
    let admin = thread::spawn(admin);
    gate.wait_held();
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let _ = tx.send(readers());
    });
    let got = rx.recv_timeout(GENEROUS);
    // Release before asserting, so a failure does not leave threads stuck.
    gate.release();
    admin.join().unwrap().unwrap();
    reader.join().unwrap();
    got.expect("readers blocked while the topics.meta fsync was held")
}

#[test]
fn alter_topic_does_not_block_readers_during_its_fsync() {
    let sim = SimStorage::new();
    let gate = Gate::install(&sim);
    let log = open(&sim);
    let old = TopicConfig::default();
    log.create_topic("a", old.clone()).unwrap();
    log.partition("a", 0)
        .unwrap()
        .append(&[Record::new("r")])
        .unwrap();
    let mut consumer = log.consumer(ConsumerConfig::new("g")).unwrap();
    consumer.assign(&[TopicPartition::new("a", 0)]).unwrap();
    let new = old.clone().retention_ms(Duration::from_secs(3600));

    let (l, n) = (log.clone(), new.clone());
    let l2 = log.clone();
    let (seen, consumer) = while_fsync_held(
        &gate,
        move || l.alter_topic("a", n),
        move || {
            let p = l2.partition("a", 0).unwrap();
            let topics = l2.topics();
            let config = l2.topic_config("a").unwrap();
            let polled = consumer.poll(Duration::ZERO).unwrap().len();
            p.append(&[Record::new("s")]).unwrap();
            ((topics, config, polled), consumer)
        },
    );
    // Not yet durable, so not yet visible.
    assert_eq!(seen, (vec!["a".to_string()], old, 1));
    assert_eq!(log.topic_config("a").unwrap(), new);
    drop(consumer);
    log.close().unwrap();
    let log = open(&sim);
    assert_eq!(log.topic_config("a").unwrap(), new);
    assert_eq!(log.partition("a", 0).unwrap().high_watermark(), 2);
}

#[test]
fn delete_topic_does_not_block_readers_during_its_fsync() {
    let sim = SimStorage::new();
    let gate = Gate::install(&sim);
    let log = open(&sim);
    log.create_topic("a", TopicConfig::default()).unwrap();
    log.create_topic("b", TopicConfig::default()).unwrap();

    let l = log.clone();
    let l2 = log.clone();
    let seen = while_fsync_held(
        &gate,
        move || l.delete_topic("b"),
        move || {
            l2.partition("a", 0)
                .unwrap()
                .append(&[Record::new("r")])
                .unwrap();
            (l2.topics(), l2.partition("b", 0).is_ok())
        },
    );
    assert_eq!(seen, (vec!["a".to_string(), "b".to_string()], true));
    assert_eq!(log.topics(), vec!["a".to_string()]);
    assert!(log.partition("b", 0).is_err());
    log.close().unwrap();
    assert_eq!(open(&sim).topics(), vec!["a".to_string()]);
}

#[test]
fn admin_operations_queued_behind_an_fsync_lose_no_update() {
    let sim = SimStorage::new();
    let gate = Gate::install(&sim);
    let log = open(&sim);
    log.create_topic("a", TopicConfig::default()).unwrap();
    log.create_topic("b", TopicConfig::default()).unwrap();
    let altered = TopicConfig::default().retention_bytes(1 << 30);

    gate.arm();
    let alter = {
        let (log, cfg) = (log.clone(), altered.clone());
        thread::spawn(move || log.alter_topic("a", cfg))
    };
    gate.wait_held();
    // These wait for the admin lock; each must start from the altered list, not a stale one.
    let create = {
        let log = log.clone();
        thread::spawn(move || log.create_topic("c", TopicConfig::default()))
    };
    let delete = {
        let log = log.clone();
        thread::spawn(move || log.delete_topic("b"))
    };
    let close = {
        let log = log.clone();
        thread::spawn(move || log.close())
    };
    gate.release();
    alter.join().unwrap().unwrap();
    close.join().unwrap().unwrap();
    // Each either ran before the close or was refused with Closed; nothing half-done.
    let created = create.join().unwrap();
    let deleted = delete.join().unwrap();
    for r in [&created, &deleted] {
        assert!(matches!(r, Ok(()) | Err(annals::Error::Closed)), "{r:?}");
    }
    let log = open(&sim);
    let mut expected = vec!["a".to_string()];
    if deleted.is_err() {
        expected.push("b".into());
    }
    if created.is_ok() {
        expected.push("c".into());
    }
    assert_eq!(log.topics(), expected);
    assert_eq!(log.topic_config("a").unwrap(), altered);
}
