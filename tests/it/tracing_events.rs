//! Feature `tracing`: the events a host's subscriber receives for recovery, rolls, retention,
//! rebalances, fencing and poisoning, with their levels, structured fields and spans; and no
//! record payload in any of them.
//!
//! Each test captures with a thread-local subscriber (`with_default`) around code that emits on
//! the test's own thread (an open, `run_maintenance`, a poll, a transactional call), so tests
//! running in parallel never see each other's events.
#![cfg(feature = "tracing")]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::storage::{SimOpKind, SimStorage};
use annals::{ConsumerConfig, Error, ProducerConfig, Record, RecoveryAction, TopicConfig};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::common::{simple_records, small_segments, TestLog};

/// In every record these tests write, so a payload that reached a diagnostic would show.
const PAYLOAD: &str = "PAYLOAD-MUST-NOT-BE-LOGGED";

/// One event as the subscriber received it.
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    target: String,
    message: String,
    fields: BTreeMap<String, String>,
    /// Names of the spans the event was emitted in, outermost first.
    spans: Vec<String>,
}

impl Captured {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no field {name:?} in {self:?}"))
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here too, their Debug being the value's Display.
        self.put(field, format!("{value:?}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.to_string());
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.fields.insert(field.name().to_string(), value);
        }
    }
}

/// The capturing layer: every event, with the names of its spans.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Asked again per event on the emitting thread: a callsite's cached interest is
        // process-wide, and must not depend on which thread first reached it.
        Interest::sometimes()
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|s| s.name().to_string()).collect())
            .unwrap_or_default();
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message: fields.message,
            fields: fields.fields,
            spans,
        });
    }
}

/// A subscriber that wants to be asked about every callsite and records nothing. While one is
/// alive besides the capturing one, tracing computes a new callsite's interest from all live
/// subscribers rather than from the default of the thread that reached it first (which, for
/// another test's thread, is none: the callsite would be cached as never wanted, and this
/// test's events lost).
struct Anchor;

impl Subscriber for Anchor {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `f` with a capturing subscriber as this thread's default; returns what `f` returned and
/// the annals events it emitted, after checking that none of them carries a record payload.
fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<Captured>) {
    let _anchor = tracing::Dispatch::new(Anchor);
    let layer = Capture::default();
    let subscriber = tracing_subscriber::registry().with(layer.clone());
    let out = tracing::subscriber::with_default(subscriber, f);
    let events: Vec<Captured> = layer
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.target.starts_with("annals"))
        .cloned()
        .collect();
    for e in &events {
        let text = format!("{} {:?}", e.message, e.fields);
        assert!(!text.contains(PAYLOAD), "a payload was logged: {e:?}");
    }
    (out, events)
}

/// The events whose message is `message`.
fn with_message<'a>(events: &'a [Captured], message: &str) -> Vec<&'a Captured> {
    events.iter().filter(|e| e.message == message).collect()
}

fn payload_records(from: u64, n: u64) -> Vec<Record> {
    (from..from + n)
        .map(|i| Record::new(format!("{PAYLOAD}-{i}")).key(format!("{PAYLOAD}-key")))
        .collect()
}

/// The partition directory's newest `.log` file.
fn newest_log(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a partition has a segment")
}

#[test]
fn a_torn_tail_cut_at_open_is_a_warning_naming_the_segment_and_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::dir(dir.path()).no_maintenance().open();
    log.create_topic("orders", TopicConfig::default()).unwrap();
    let p = log.partition("orders", 0).unwrap();
    p.append(&payload_records(0, 5)).unwrap();
    p.append(&payload_records(5, 5)).unwrap();
    let segment = newest_log(p.dir());
    drop(p);
    log.close().unwrap();
    // A write the crash interrupted: bytes that are no batch, at the end of the newest segment.
    let garbage = [0xA5u8; 37];
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    file.write_all(&garbage).unwrap();
    drop(file);

    let (log, events) = capture(|| TestLog::dir(dir.path()).no_maintenance().open());
    let cuts = with_message(&events, "recovery cut a torn tail off a segment");
    assert_eq!(cuts.len(), 1, "{events:#?}");
    let cut = cuts[0];
    assert_eq!(cut.level, Level::WARN);
    assert_eq!(cut.field("path"), segment.display().to_string());
    assert_eq!(cut.field("truncated_bytes"), garbage.len().to_string());
    assert_eq!(cut.field("topic"), "orders");
    assert_eq!(cut.field("partition"), "0");
    assert_eq!(
        cut.field("action"),
        format!("{:?}", RecoveryAction::TornTail)
    );
    assert_eq!(cut.spans, ["open_log", "recover_partition"], "{cut:?}");
    // The same cut as the report tells it.
    let report = log.recovery_report();
    assert_eq!(report.events().len(), 1);
    let r = &report.events()[0];
    assert_eq!(r.bytes.end - r.bytes.start, garbage.len() as u64);
    assert_eq!(cut.field("from_byte"), r.bytes.start.to_string());
    // The open's totals say that recovery removed data.
    let opened = with_message(
        &events,
        "log opened after recovery removed data (see Log::recovery_report)",
    );
    assert_eq!(opened.len(), 1, "{events:#?}");
    assert_eq!(opened[0].level, Level::WARN);
    assert_eq!(opened[0].field("removed_bytes"), garbage.len().to_string());
    assert_eq!(opened[0].field("clean_shutdown"), "true");
    let summary = with_message(&events, "partition recovered");
    assert_eq!(summary.len(), 1, "{events:#?}");
    assert_eq!(summary[0].level, Level::DEBUG);
    assert_eq!(summary[0].field("scanned"), "1");
    assert_eq!(summary[0].field("high_watermark"), "10");
    log.close().unwrap();

    // A clean open after that: an info with the totals, and no warning at all.
    let (log, events) = capture(|| TestLog::dir(dir.path()).no_maintenance().open());
    assert!(events.iter().all(|e| e.level > Level::WARN), "{events:#?}");
    let opened = with_message(&events, "log opened");
    assert_eq!(opened.len(), 1, "{events:#?}");
    assert_eq!(opened[0].level, Level::INFO);
    assert_eq!(opened[0].field("partitions"), "1");
    assert_eq!(
        with_message(&events, "partition recovered")[0].field("trusted"),
        "1"
    );
    log.close().unwrap();
}

#[test]
fn a_roll_is_a_debug_event_naming_the_sealed_segment() {
    let (_dir, log) = TestLog::temp()
        .no_maintenance()
        .topic("t", small_segments())
        .open_temp();
    let p = log.partition("t", 0).unwrap();
    let first = p.dir().join("00000000000000000000.log");
    let (_, events) = capture(|| {
        let mut next = 0;
        while p.segment_count() < 2 {
            p.append(&payload_records(next, 3)).unwrap();
            next += 3;
        }
    });
    let rolls = with_message(&events, "rolled to a new segment");
    assert_eq!(rolls.len(), 1, "{events:#?}");
    assert_eq!(rolls[0].level, Level::DEBUG);
    assert_eq!(rolls[0].field("sealed"), first.display().to_string());
    assert_eq!(rolls[0].field("topic"), "t");
    let newest = newest_log(p.dir());
    let second: u64 = newest
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rolls[0].field("base_offset"), second.to_string());
    // Nothing else is logged on the append path.
    assert_eq!(events.len(), 1, "{events:#?}");
    log.close().unwrap();
}

#[test]
fn a_retention_pass_that_deletes_segments_is_an_info_event() {
    let config = small_segments().retention_ms(Duration::from_secs(60));
    let (_dir, log) = TestLog::temp()
        .no_maintenance()
        .topic("old", config)
        .open_temp();
    let p = log.partition("old", 0).unwrap();
    for i in 0..40 {
        // Timestamps from long ago: past retention as soon as their segment is sealed.
        let r = Record::new(format!("{PAYLOAD}-{i}")).timestamp(1_000 + i);
        p.append(&[r]).unwrap();
    }
    assert!(p.segment_count() > 2);
    let (report, events) = capture(|| log.run_maintenance().unwrap());
    let deleted = report.segments_deleted();
    assert!(deleted > 0, "{report:?}");
    let passes = with_message(&events, "retention deleted old records");
    assert_eq!(passes.len(), 1, "{events:#?}");
    let pass = passes[0];
    assert_eq!(pass.level, Level::INFO);
    assert_eq!(pass.field("topic"), "old");
    assert_eq!(pass.field("segments_deleted"), deleted.to_string());
    assert_eq!(
        pass.field("log_start_offset"),
        p.log_start_offset().to_string()
    );
    assert_eq!(pass.spans, ["maintenance", "retention"], "{pass:?}");
    // The run's summary.
    let runs = with_message(&events, "maintenance run done");
    assert_eq!(runs.len(), 1, "{events:#?}");
    assert_eq!(runs[0].field("segments_deleted"), deleted.to_string());
    log.close().unwrap();
}

#[test]
fn each_compaction_pass_is_an_info_event_with_its_own_work() {
    let config = small_segments().cleanup_policy(annals::CleanupPolicy::Compact);
    let (_dir, log) = TestLog::temp()
        .no_maintenance()
        .topic("users", config)
        .open_temp();
    let p = log.partition("users", 0).unwrap();
    for i in 0..100 {
        let r = Record::new(format!("{PAYLOAD}-{i}")).key(format!("user-{}", i % 3));
        p.append(&[r]).unwrap();
    }
    let (report, events) = capture(|| log.run_maintenance().unwrap());
    let compaction = &report.partitions[0].compaction;
    assert!(compaction.records_removed > 0, "{report:?}");
    let passes = with_message(&events, "compaction pass done");
    assert_eq!(passes.len(), compaction.passes, "{events:#?}");
    let sum = |field: &str| -> u64 {
        passes
            .iter()
            .map(|e| e.field(field).parse::<u64>().unwrap())
            .sum()
    };
    // The passes' own work adds up to the run's.
    assert_eq!(sum("records_removed"), compaction.records_removed);
    assert_eq!(sum("segments_read"), compaction.segments_read as u64);
    assert_eq!(sum("bytes_written"), compaction.bytes_written);
    for pass in passes {
        assert_eq!(pass.level, Level::INFO);
        assert_eq!(pass.field("topic"), "users");
        assert_eq!(pass.spans, ["maintenance", "compaction_pass"], "{pass:?}");
    }
    log.close().unwrap();
}

#[test]
fn rebalances_name_the_group_its_generation_and_the_handover() {
    let (_dir, log) = TestLog::temp()
        .no_maintenance()
        .topic("t", TopicConfig::default().partitions(4))
        .open_temp();
    let group = "tracing-group";
    // The members outlive the capture: their leaving would rebalance again.
    let (_members, events) = capture(|| {
        let mut a = log.consumer(ConsumerConfig::new(group)).unwrap();
        a.subscribe(&["t"]).unwrap();
        a.poll(Duration::from_millis(1)).unwrap();
        let mut b = log.consumer(ConsumerConfig::new(group)).unwrap();
        b.subscribe(&["t"]).unwrap();
        a.poll(Duration::from_millis(1)).unwrap(); // revokes what b is to own
        b.poll(Duration::from_millis(1)).unwrap(); // takes it
        (a, b)
    });
    let rebalances = with_message(&events, "consumer group rebalanced");
    assert_eq!(rebalances.len(), 2, "{events:#?}");
    for r in &rebalances {
        assert_eq!(r.level, Level::INFO);
        assert_eq!(r.field("group"), group);
        assert_eq!(r.field("reason"), "member joined");
        assert_eq!(r.field("partitions"), "4");
    }
    assert_eq!(rebalances[0].field("members"), "1");
    assert_eq!(rebalances[0].field("moving"), "0");
    assert_eq!(rebalances[0].field("unowned"), "4");
    assert_eq!(rebalances[1].field("members"), "2");
    assert_eq!(rebalances[1].field("moving"), "2");
    let first: u64 = rebalances[0].field("generation").parse().unwrap();
    assert_eq!(rebalances[1].field("generation"), (first + 1).to_string());
    // Each member's side of the handover, in the order it happened.
    let changes = with_message(&events, "consumer's assignment changes");
    let summary: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.field("granted"), c.field("revoked")))
        .collect();
    assert_eq!(
        summary,
        [
            ("t-0, t-1, t-2, t-3", ""),
            ("", "t-2, t-3"),
            ("t-2, t-3", "")
        ],
        "{changes:#?}"
    );
    assert!(changes.iter().all(|c| c.field("group") == group));
}

#[test]
fn a_fenced_transactional_producer_is_a_warning_naming_its_transactional_id() {
    let (_dir, log) = TestLog::temp()
        .no_maintenance()
        .topic("out", TopicConfig::default())
        .open_temp();
    let producer = || {
        let p = log
            .producer(ProducerConfig::default().transactional_id("worker"))
            .unwrap();
        p.init_transactions().unwrap();
        p
    };
    let old = producer();
    old.begin_transaction().unwrap();
    old.send("out", Record::new(PAYLOAD)).unwrap();
    old.flush().unwrap();
    let ((new, err), events) = capture(|| {
        let new = producer();
        (new, old.commit_transaction().unwrap_err())
    });
    assert!(matches!(err, Error::ProducerFenced { .. }), "{err}");
    let left_open = with_message(
        &events,
        "an earlier instance left a transaction open: the new instance ends it",
    );
    assert_eq!(left_open.len(), 1, "{events:#?}");
    assert_eq!(left_open[0].level, Level::WARN);
    assert_eq!(left_open[0].field("outcome"), "abort");
    let taken = with_message(
        &events,
        "transactional id taken over: any earlier instance is fenced",
    );
    assert_eq!(taken.len(), 1, "{events:#?}");
    assert_eq!(taken[0].level, Level::INFO);
    let refused = with_message(
        &events,
        "refused a call of a fenced producer: a newer instance took over its transactional id",
    );
    assert_eq!(refused.len(), 1, "{events:#?}");
    let refused = refused[0];
    assert_eq!(refused.level, Level::WARN);
    assert_eq!(refused.field("transactional_id"), "worker");
    let (producer_id, epoch) = new.producer_id().unwrap();
    assert_eq!(
        refused.field("current_producer_id"),
        producer_id.to_string()
    );
    assert_eq!(refused.field("current_epoch"), epoch.to_string());
    drop(old);
    new.close().unwrap();
    log.close().unwrap();
}

#[test]
fn a_failed_fsync_poisons_with_an_error_naming_the_operation_and_path() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, "/sim/log").no_maintenance().open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&simple_records(0, 3)).unwrap();
    sim.set_fault_hook(|op| {
        (op.kind == SimOpKind::SyncData).then(|| std::io::Error::other("injected EIO"))
    });
    let (result, events) = capture(|| p.sync());
    result.unwrap_err();
    let poisoned = with_message(
        &events,
        "partition poisoned: it refuses writes until the log is reopened",
    );
    assert_eq!(poisoned.len(), 1, "{events:#?}");
    let e = poisoned[0];
    assert_eq!(e.level, Level::ERROR);
    assert_eq!(e.field("operation"), "fsync");
    assert_eq!(e.field("path"), "/sim/log/t-0/00000000000000000000.log");
    assert!(e.field("cause").contains("injected EIO"), "{e:?}");
    // The partition stays poisoned: the next failure is not news, maintenance says it skips it.
    let (result, events) = capture(|| {
        assert!(matches!(p.sync(), Err(Error::Poisoned { .. })));
        log.run_maintenance()
    });
    assert!(matches!(result, Err(Error::Poisoned { .. })), "{result:?}");
    assert!(with_message(
        &events,
        "partition poisoned: it refuses writes until the log is reopened"
    )
    .is_empty());
    let skipped = with_message(&events, "maintenance of a partition failed");
    assert_eq!(skipped.len(), 1, "{events:#?}");
    assert_eq!(skipped[0].level, Level::ERROR);
    assert_eq!(skipped[0].field("step"), "retention (skipped)");
    sim.clear_fault_hook();
    let _ = log.close();
}
