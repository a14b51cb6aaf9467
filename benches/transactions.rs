//! What transactions cost: producing in transactions next to a plain idempotent producer, and
//! reading read_committed next to read_uncommitted, each measured against its baseline in the
//! same run.
//!
//! ```text
//! cargo bench --bench transactions                  # everything, 35-75 s after the build (2 cores, shared disk)
//! cargo bench --bench transactions -- --quick       # criterion's quick mode
//! cargo bench --bench transactions -- txn_produce/  # one group
//! ```
//!
//! Records are prebuilt (12-byte key, 100-byte JSON-like value, `benches/common`); `send` takes
//! a `Record` by value, so the timed loops include one `Record::clone` per send. Every benchmark
//! reports records/s via `Throughput::Elements`.
//!
//! Group `txn_produce` (`Durability::Synced`, default linger 5 ms and batch size 64 KiB, topic of
//! 3 partitions, records spread over them by their keys):
//!
//! - `txn_produce/transactional`: an iteration is one whole transaction: `begin_transaction`,
//!   `TXN_RECORDS` (1,000) sends, `commit_transaction`, all timed. The commit writes the
//!   records, fsyncs the three partitions (which also makes the previous transaction's markers
//!   durable), passes the commit point (an fsynced `PrepareCommit` in `__transaction_state`)
//!   and writes a COMMIT marker to each partition (not fsynced on its own: see the
//!   "Transactions" section of `docs/ARCHITECTURE.md`).
//! - `txn_produce/idempotent`: the baseline, the same records through a plain idempotent
//!   producer: 1,000 sends then `flush()`, all timed. Target: `transactional` >= 0.8x this.
//!
//!   In both, every criterion sample (and warm-up round) uses a fresh topic and producer that
//!   are closed and deleted afterwards, untimed (a transactional producer's
//!   `init_transactions` too); a sample writing more than 64 MiB is split into several, so disk
//!   use stays bounded whatever the iteration count.
//!
//!   Before the group runs, one commit (after a first, uncounted one) on a
//!   [`SimStorage`](annals::storage::SimStorage) log counts the fsyncs `commit_transaction`
//!   makes, and one `flush` of the idempotent baseline counts its own; both print to stderr,
//!   the commit's broken down by file: the partitions' data before the commit point, the
//!   transaction log, the partitions after the markers, directories.
//!
//!   After the group, when both benchmarks ran, the two are run interleaved
//!   (`PAIRED_ROUNDS` (40) rounds of one transaction and one idempotent iteration, the order
//!   swapped every round): their medians, the median of the rounds' ratios (a round's two
//!   runs are back to back, so both see the same machine), and what the commit costs beyond
//!   the baseline in units of one record-sized `write` + `fdatasync` on the same disk. On a
//!   shared machine the fsync latency drifts by several times within a minute, so this ratio
//!   is the one to judge the target by; criterion's two figures come from different minutes.
//!
//! Group `read_committed` (one partition holding `RC_TXNS` (200) transactions of 1,000 records,
//! every 10th aborted — 200,000 records, 180,000 of them committed — plus their markers, written
//! once before the group):
//!
//! - `read_committed/poll_batches/read_committed`: an iteration seeks a read_committed consumer
//!   (`max_poll_records` 10,000) to the beginning, untimed, then calls `poll_batches` until its
//!   position reaches the high watermark, iterating every record's key and value, timed.
//!   Throughput counts the 180,000 records it iterates (the aborted ones are skipped).
//! - `read_committed/poll_batches/read_uncommitted`: the same at read_uncommitted, which
//!   iterates all 200,000 records. Target: `read_committed` >= 0.95x this (records/s).
//!
//!   After the group, when both ran, the two scans are also interleaved for `PAIRED_ROUNDS`
//!   rounds and their medians and the median of the rounds' records/s ratios printed, as for
//!   `txn_produce`.

use std::collections::BTreeMap;
use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::storage::{SimOpKind, SimStorage};
use annals::{
    ConsumerConfig, Durability, IsolationLevel, Log, Producer, ProducerConfig, Record, TopicConfig,
    TopicPartition,
};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};

mod common;
use common::{in_stretches, make_records, VALUE_LEN};

/// Records per transaction (and per idempotent iteration).
const TXN_RECORDS: usize = 1000;
const PARTITIONS: u32 = 3;
/// Most bytes one timed stretch may write before its topic is thrown away and a fresh one
/// started, untimed.
const MAX_BYTES_PER_STRETCH: u64 = 64 << 20;
/// Upper bound of the bytes one record takes in a batch (key, value, record overhead).
const RECORD_BYTES_BOUND: u64 = (VALUE_LEN + 12 + 16) as u64;
/// Transactions in the `read_committed` partition; every `ABORT_EVERY`th is aborted.
const RC_TXNS: usize = 200;
const ABORT_EVERY: usize = 10;
const TXN_ID: &str = "bench-txn";
/// Rounds of each interleaved comparison.
const PAIRED_ROUNDS: usize = 40;

fn synced(config: ProducerConfig) -> ProducerConfig {
    config.durability(Durability::Synced)
}

fn transactional(log: &Log) -> Producer {
    let p = log
        .producer(synced(ProducerConfig::default().transactional_id(TXN_ID)))
        .expect("transactional producer");
    p.init_transactions().expect("init_transactions");
    p
}

fn send_all(producer: &Producer, topic: &str, records: &[Record]) {
    for r in records {
        black_box(producer.send(topic, r.clone()).expect("send"));
    }
}

fn one_transaction(producer: &Producer, topic: &str, records: &[Record]) {
    producer.begin_transaction().expect("begin");
    send_all(producer, topic, records);
    producer.commit_transaction().expect("commit");
}

/// Sum of the topic's high watermarks.
fn total_hw(log: &Log, topic: &str) -> u64 {
    (0..PARTITIONS)
        .map(|id| {
            log.partition(topic, id)
                .expect("partition")
                .high_watermark()
        })
        .sum()
}

/// Sync operations seen while armed, in order.
#[derive(Default)]
struct SyncTrace {
    armed: AtomicBool,
    ops: Mutex<Vec<(SimOpKind, PathBuf)>>,
}

impl SyncTrace {
    /// Runs `f` with the trace armed; returns the syncs it made.
    fn during(&self, f: impl FnOnce()) -> Vec<(SimOpKind, PathBuf)> {
        self.ops.lock().expect("trace").clear();
        self.armed.store(true, Ordering::SeqCst);
        f();
        self.armed.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.ops.lock().expect("trace"))
    }
}

/// Counts the fsyncs of one `commit_transaction` (and, for comparison, of the idempotent
/// baseline's `flush`) on a simulated file system and prints them.
fn report_fsyncs(records: &[Record]) {
    let sim = SimStorage::new();
    let trace = Arc::new(SyncTrace::default());
    {
        let trace = trace.clone();
        sim.set_fault_hook(move |op| {
            let sync = matches!(
                op.kind,
                SimOpKind::SyncData | SimOpKind::SyncAll | SimOpKind::SyncDir
            );
            if sync && trace.armed.load(Ordering::SeqCst) {
                trace
                    .ops
                    .lock()
                    .expect("trace")
                    .push((op.kind, op.path.clone()));
            }
            None
        });
    }
    let log = Log::builder("/sim/txnbench")
        .storage(sim.clone())
        .maintenance_interval(None)
        .open()
        .expect("open sim log");
    let topic_config = TopicConfig::default().partitions(PARTITIONS);
    log.create_topic("fsyncs", topic_config.clone())
        .expect("create topic");
    let producer = transactional(&log);
    // The first transaction may set up files the later ones reuse: count the second.
    one_transaction(&producer, "fsyncs", records);
    producer.begin_transaction().expect("begin");
    // Counted apart: a batch whose linger ran out during the sends is synced before the commit.
    let in_sends = trace
        .during(|| send_all(&producer, "fsyncs", records))
        .len();
    let ops = trace.during(|| producer.commit_transaction().expect("commit"));
    producer.close().expect("close producer");

    // Partition files before the transaction log's first sync are the data, after it the
    // markers.
    let (mut data, mut txn_log, mut markers, mut dirs) = (0, 0, 0, 0);
    let mut other = BTreeMap::<String, u32>::new();
    for (kind, path) in &ops {
        let p = path.to_string_lossy();
        if *kind == SimOpKind::SyncDir {
            dirs += 1;
        } else if p.contains("__transaction_state") {
            txn_log += 1;
        } else if p.contains("/fsyncs-") {
            if txn_log == 0 {
                data += 1;
            } else {
                markers += 1;
            }
        } else {
            *other.entry(p.into_owned()).or_default() += 1;
        }
    }
    let others: u32 = other.values().sum();
    eprintln!(
        "fsyncs per commit ({PARTITIONS} partitions, {TXN_RECORDS} records): {} (data {data}, \
         transaction log {txn_log}, markers {markers}, directory {dirs}{}); during the sends \
         before it: {in_sends}",
        ops.len(),
        if others > 0 {
            format!(", other {others}: {other:?}")
        } else {
            String::new()
        }
    );

    log.create_topic("fsyncs-idem", topic_config)
        .expect("create topic");
    let producer = log
        .producer(synced(ProducerConfig::default()))
        .expect("producer");
    send_all(&producer, "fsyncs-idem", records);
    producer.flush().expect("flush");
    let in_sends = trace
        .during(|| send_all(&producer, "fsyncs-idem", records))
        .len();
    let ops = trace.during(|| producer.flush().expect("flush"));
    producer.close().expect("close producer");
    eprintln!(
        "fsyncs per idempotent flush ({PARTITIONS} partitions, {TXN_RECORDS} records): {}; \
         during the sends before it: {in_sends}",
        ops.len()
    );
    log.close().expect("close sim log");
}

fn bench_txn_produce(c: &mut Criterion) {
    let records = make_records(TXN_RECORDS);
    let n_per_iter = TXN_RECORDS as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::builder(dir.path())
        .maintenance_interval(None)
        .open()
        .expect("open log");
    let topic_config = TopicConfig::default()
        .partitions(PARTITIONS)
        .segment_bytes(1 << 30);
    let mut seq = 0u64;

    let mut group = c.benchmark_group("txn_produce");
    // An iteration is milliseconds of fsyncs: flat sampling keeps the iteration count low.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(n_per_iter));

    let mut reported = false;
    // Which benchmarks the filter let run (criterion calls a closure once per sample).
    let mut ran = [false; 2];
    for (k, name) in ["transactional", "idempotent"].into_iter().enumerate() {
        group.bench_function(name, |b| {
            ran[k] = true;
            if !reported {
                // Here, so a filter that skips the group skips the count too.
                report_fsyncs(&records);
                reported = true;
            }
            b.iter_custom(|iters| {
                in_stretches(
                    MAX_BYTES_PER_STRETCH,
                    iters,
                    n_per_iter * RECORD_BYTES_BOUND,
                    |_, n| {
                        // A fresh topic and producer per stretch keep disk use bounded (a
                        // producer caches its topics, so it cannot outlive a deleted one).
                        seq += 1;
                        let topic = format!("{name}-{seq}");
                        log.create_topic(&topic, topic_config.clone())
                            .expect("create topic");
                        let txn = name == "transactional";
                        let producer = if txn {
                            transactional(&log)
                        } else {
                            log.producer(synced(ProducerConfig::default()))
                                .expect("producer")
                        };

                        let start = Instant::now();
                        for _ in 0..n {
                            if txn {
                                one_transaction(&producer, &topic, &records);
                            } else {
                                send_all(&producer, &topic, &records);
                                producer.flush().expect("flush");
                            }
                        }
                        let elapsed = start.elapsed();

                        producer.close().expect("close producer");
                        drop(producer);
                        // A commit adds one marker to each partition.
                        let markers = if txn { u64::from(PARTITIONS) } else { 0 };
                        assert_eq!(total_hw(&log, &topic), n * (n_per_iter + markers));
                        log.delete_topic(&topic).expect("delete topic");
                        elapsed
                    },
                )
            })
        });
    }
    group.finish();
    if ran == [true; 2] {
        report_paired_produce(&log, dir.path(), &records);
    }
    log.close().expect("close log");
}

/// Median of `samples` (sorted in place).
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Median over the rounds of `a[k] / b[k]`, each round's two runs taken back to back: the
/// machine moves between speeds (other work on it, fsync latency) every few seconds, and the
/// ratio of two medians can then compare one speed with another.
fn median_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let mut r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    r.sort_unstable_by(f64::total_cmp);
    r[r.len() / 2]
}

/// The two `txn_produce` benchmarks interleaved, one transaction then one idempotent
/// iteration (the order swapped every round), so a drift in the disk's fsync latency — the
/// machine is shared — weighs on both alike; and a plain `write` + `fdatasync` of one
/// record-sized append, to express the difference in fsyncs. Prints the medians (stderr).
fn report_paired_produce(log: &Log, dir: &Path, records: &[Record]) {
    let topic_config = TopicConfig::default().partitions(PARTITIONS);
    for topic in ["paired-txn", "paired-idem"] {
        log.create_topic(topic, topic_config.clone())
            .expect("create topic");
    }
    let txn = transactional(log);
    let idem = log
        .producer(synced(ProducerConfig::default()))
        .expect("producer");
    let run_txn = || {
        let start = Instant::now();
        one_transaction(&txn, "paired-txn", records);
        start.elapsed()
    };
    let run_idem = || {
        let start = Instant::now();
        send_all(&idem, "paired-idem", records);
        idem.flush().expect("flush");
        start.elapsed()
    };
    // Warm-up, not counted.
    run_txn();
    run_idem();
    let (mut t, mut i) = (Vec::new(), Vec::new());
    for round in 0..PAIRED_ROUNDS {
        if round % 2 == 0 {
            t.push(run_txn());
            i.push(run_idem());
        } else {
            i.push(run_idem());
            t.push(run_txn());
        }
    }
    txn.close().expect("close producer");
    idem.close().expect("close producer");
    for topic in ["paired-txn", "paired-idem"] {
        log.delete_topic(topic).expect("delete topic");
    }

    let path = dir.join("fdatasync.bin");
    let mut file = File::create(&path).expect("create file");
    let mut syncs: Vec<Duration> = (0..PAIRED_ROUNDS)
        .map(|_| {
            let start = Instant::now();
            file.write_all(&[b'x'; RECORD_BYTES_BOUND as usize])
                .expect("write");
            file.sync_data().expect("fdatasync");
            start.elapsed()
        })
        .collect();
    drop(file);
    std::fs::remove_file(&path).expect("remove file");

    let paired = median_ratio(&i, &t);
    let (t, i, f) = (median(&mut t), median(&mut i), median(&mut syncs));
    let rate = |d: Duration| TXN_RECORDS as f64 / d.as_secs_f64() / 1e3;
    eprintln!(
        "txn_produce interleaved, {PAIRED_ROUNDS} rounds, medians: transactional {t:.2?} \
         ({:.1} K records/s), idempotent {i:.2?} ({:.1} K records/s); median of the \
         rounds' ratios {paired:.2}x (target >= 0.8x); the commit costs {:.2?} more, {:.1}x \
         one record-sized write + fdatasync ({f:.2?})",
        rate(t),
        rate(i),
        t.saturating_sub(i),
        t.saturating_sub(i).as_secs_f64() / f.as_secs_f64(),
    );
}

/// One partition of `RC_TXNS` transactions of `TXN_RECORDS` records, every `ABORT_EVERY`th
/// aborted. Returns the records committed and written in all.
fn write_transactions(log: &Log, topic: &str) -> (u64, u64) {
    log.create_topic(topic, TopicConfig::default())
        .expect("create topic");
    let records = make_records(TXN_RECORDS);
    // Written, not Synced: only the setup's speed differs (a commit fsyncs its partitions
    // either way), not what is read.
    let producer = log
        .producer(
            ProducerConfig::default()
                .transactional_id("rc-writer")
                .durability(Durability::Written),
        )
        .expect("producer");
    producer.init_transactions().expect("init_transactions");
    let mut committed = 0;
    for t in 0..RC_TXNS {
        producer.begin_transaction().expect("begin");
        send_all(&producer, topic, &records);
        if t % ABORT_EVERY == ABORT_EVERY - 1 {
            producer.abort_transaction().expect("abort");
        } else {
            producer.commit_transaction().expect("commit");
            committed += TXN_RECORDS as u64;
        }
    }
    producer.close().expect("close producer");
    (committed, (RC_TXNS * TXN_RECORDS) as u64)
}

fn bench_read_committed(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_committed");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    // Written lazily, so a filter that skips the group skips the setup too.
    let mut setup: Option<(tempfile::TempDir, Log, u64, u64)> = None;
    // Which benchmarks the filter let run (criterion calls a closure once per sample).
    let mut ran = [false; 2];
    let levels = [
        ("read_committed", IsolationLevel::ReadCommitted),
        ("read_uncommitted", IsolationLevel::ReadUncommitted),
    ];
    for (k, (name, level)) in levels.into_iter().enumerate() {
        // Criterion reads the throughput when the benchmark is defined, before the setup can
        // run, so it comes from the constants (and the scan asserts it).
        let committed_txns = RC_TXNS - RC_TXNS / ABORT_EVERY;
        let expect = (match level {
            IsolationLevel::ReadCommitted => committed_txns,
            _ => RC_TXNS,
        } * TXN_RECORDS) as u64;
        group.throughput(Throughput::Elements(expect));
        group.bench_function(BenchmarkId::new("poll_batches", name), |b| {
            ran[k] = true;
            let (_, log, committed, written) = setup.get_or_insert_with(|| {
                let dir = tempfile::tempdir().expect("tempdir");
                let log = Log::builder(dir.path())
                    .maintenance_interval(None)
                    .open()
                    .expect("open log");
                let (committed, written) = write_transactions(&log, "rc");
                (dir, log, committed, written)
            });
            let want = match level {
                IsolationLevel::ReadCommitted => *committed,
                _ => *written,
            };
            assert_eq!(want, expect);
            let hw = log.partition("rc", 0).expect("partition").high_watermark();
            let mut consumer = rc_consumer(log, name, level);
            b.iter_custom(|iters| (0..iters).map(|_| scan(&mut consumer, hw, want)).sum())
        });
    }
    group.finish();
    if let Some((_dir, log, committed, written)) = setup {
        if ran == [true; 2] {
            report_paired_read(&log, committed, written);
        }
        log.close().expect("close log");
    }
}

/// A consumer of partition 0 of "rc" at `level`.
fn rc_consumer(log: &Log, name: &str, level: IsolationLevel) -> annals::Consumer {
    let mut consumer = log
        .consumer(
            ConsumerConfig::new(format!("rc-{name}"))
                .isolation_level(level)
                .max_poll_records(10_000),
        )
        .expect("consumer");
    consumer.assign(&[("rc", 0)]).expect("assign");
    consumer
}

/// Seeks `consumer` to the beginning (untimed) and polls batches until its position reaches
/// `hw`, touching every key and value; checks it iterated `want` records. Returns the time
/// the polls and the iteration took.
fn scan(consumer: &mut annals::Consumer, hw: u64, want: u64) -> Duration {
    consumer
        .seek_to_beginning(&[TopicPartition::new("rc", 0)])
        .expect("seek");
    let mut batches = Vec::new();
    let (mut seen, mut bytes) = (0u64, 0usize);
    let start = Instant::now();
    while consumer.position("rc", 0).expect("position") < hw {
        consumer
            .poll_batches(Duration::from_secs(1), &mut batches)
            .expect("poll");
        for b in &batches {
            for r in b.batch.records() {
                let r = r.expect("valid record");
                bytes += r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len);
                seen += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    black_box(bytes);
    assert_eq!(seen, want, "records iterated");
    elapsed
}

/// The two `read_committed` benchmarks interleaved (order swapped every round), so that the
/// ratio does not depend on what else the shared machine did meanwhile. Prints the medians.
fn report_paired_read(log: &Log, committed: u64, written: u64) {
    let hw = log.partition("rc", 0).expect("partition").high_watermark();
    let mut rc = rc_consumer(log, "paired-rc", IsolationLevel::ReadCommitted);
    let mut ru = rc_consumer(log, "paired-ru", IsolationLevel::ReadUncommitted);
    let (mut c, mut u) = (Vec::new(), Vec::new());
    for round in 0..PAIRED_ROUNDS {
        if round % 2 == 0 {
            c.push(scan(&mut rc, hw, committed));
            u.push(scan(&mut ru, hw, written));
        } else {
            u.push(scan(&mut ru, hw, written));
            c.push(scan(&mut rc, hw, committed));
        }
    }
    // Records/s of read_committed over read_uncommitted, per round: time(ru) / time(rc)
    // scaled by the records each iterates.
    let paired = median_ratio(&u, &c) * committed as f64 / written as f64;
    let (c, u) = (median(&mut c), median(&mut u));
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64() / 1e6;
    let (rate_c, rate_u) = (rate(committed, c), rate(written, u));
    eprintln!(
        "read_committed interleaved, {PAIRED_ROUNDS} rounds, medians: read_committed {c:.2?} \
         ({rate_c:.2} M records/s), read_uncommitted {u:.2?} ({rate_u:.2} M records/s); \
         median of the rounds' ratios in records/s {paired:.2}x (target >= 0.95x)",
    );
}

criterion_group!(benches, bench_txn_produce, bench_read_committed);
criterion_main!(benches);
