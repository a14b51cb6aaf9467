//! Transactions against a model, on a `SimStorage` log: a few transactional producers write to
//! the partitions of one topic in random steps (begin, send, offsets, commit, abort), mixed with
//! plain appends, syncs, maintenance that times transactions out, producers fenced by a new
//! instance, and crashes (kill -9, power loss, clean close) followed by a reopen. After every
//! step the log must agree with the model: what read_committed and read_uncommitted readers
//! see, the last stable offset, the committed offsets of each producer's group and the open
//! transactions.
//!
//! The model knows every offset: each send is flushed before the next step, so records land in
//! the order they were sent, and every end of a transaction writes one marker to each partition
//! it touched. A power loss keeps a prefix of each partition no shorter than what was synced
//! (a commit, `sync`); the model finds that prefix from the high watermark after the reopen (the
//! recovery adds one ABORT marker per transaction left open in it) and checks the records.
//!
//! `ANNALS_TEST_CASES` sequences (default 16: each costs about 1.7 s in debug, most of it
//! opening and closing the internal topics) of
//! `ANNALS_TXN_STEPS` steps (default 150); `ANNALS_TXN_TRACE=1` prints every step (with
//! `--nocapture`).
//!
//! `recovery_decides_each_open_transaction_by_its_own_epoch` below is the minimal case of a
//! recovery bug found while writing the model (now fixed): see its comment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::storage::{CrashMode, SimStorage};
use annals::{
    ConsumerConfig, ConsumerGroupMetadata, Error, IsolationLevel, Log, OffsetAndMetadata,
    Partition, Producer, ProducerConfig, Record, TopicConfig, TopicPartition, TransactionState,
    OFFSETS_TOPIC,
};

use crate::common::*;

const DIR: &str = "/sim/txnmodel";
const OUT: &str = "out";
/// The fake input topic whose offsets the producers commit in their transactions.
const IN: &str = "in";
const PARTITIONS: u32 = 3;
/// The timeout of producer 0's transactions: short, so maintenance times them out.
const SHORT_TIMEOUT: Duration = Duration::from_millis(30);

/// A transaction: its producer slot and its number among that slot's transactions.
type TxnKey = (usize, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Plain(String),
    Txn(TxnKey, String),
    /// The end marker of a transaction (commit, abort, or the recovery's abort).
    Marker(TxnKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Open,
    Committed,
    Aborted,
}

/// The transaction a slot's producer has begun.
#[derive(Debug)]
struct OpenTxn {
    n: u64,
    records: u64,
    /// Partitions of `OUT` it wrote to, with the offset of its first record there.
    first: BTreeMap<u32, u64>,
    /// Offsets of `IN` partitions for the slot's group, committed with it.
    offsets: BTreeMap<u32, u64>,
    /// Whether the coordinator knows it (it wrote records or offsets), and when that began:
    /// just before the first write, and just after it.
    started: Option<(Instant, Instant)>,
}

impl OpenTxn {
    fn touched(&self) -> bool {
        self.started.is_some()
    }
}

/// One transactional id and its current producer instance.
struct Slot {
    id: String,
    group: String,
    short_timeout: bool,
    producer: Option<Producer>,
    next_txn: u64,
    txn: Option<OpenTxn>,
    /// Maintenance aborted the open transaction: the instance's next call fails.
    timed_out: bool,
    next_input: [u64; PARTITIONS as usize],
}

struct Model {
    parts: Vec<Vec<Entry>>,
    fates: HashMap<TxnKey, Fate>,
    /// Per partition, the length a power loss keeps at least.
    durable: Vec<usize>,
    /// `(slot, IN partition)` → the committed offset.
    committed: BTreeMap<(usize, u32), u64>,
    plain: u64,
    /// The last stable offsets seen since the log opened.
    last_lso: Vec<u64>,
}

impl Model {
    fn lso(&self, p: u32, slots: &[Slot]) -> u64 {
        // A timed-out slot's transaction is aborted already (its instance does not know yet).
        slots
            .iter()
            .filter(|s| !s.timed_out)
            .filter_map(|s| s.txn.as_ref())
            .filter_map(|t| t.first.get(&p).copied())
            .min()
            .unwrap_or(self.parts[p as usize].len() as u64)
    }

    /// Ends transaction `key` (its markers go to `partitions`).
    fn end(&mut self, key: TxnKey, partitions: impl IntoIterator<Item = u32>, fate: Fate) {
        for p in partitions {
            self.parts[p as usize].push(Entry::Marker(key));
            if fate == Fate::Committed {
                self.durable[p as usize] = self.parts[p as usize].len();
            }
        }
        self.fates.insert(key, fate);
    }
}

struct Harness {
    sim: Arc<SimStorage>,
    log: Log,
    parts: Vec<Partition>,
    slots: Vec<Slot>,
    m: Model,
    rng: Rng,
    ctx: String,
    trace: bool,
}

fn value_of(r: &annals::StoredRecord) -> String {
    String::from_utf8(r.value.clone().expect("a value").to_vec()).expect("utf-8 value")
}

fn open_log(sim: &Arc<SimStorage>) -> annals::Result<Log> {
    TestLog::sim(sim, DIR).no_maintenance().try_open()
}

fn new_producer(log: &Log, slot: &Slot) -> Producer {
    let mut config = ProducerConfig::default()
        .transactional_id(slot.id.clone())
        .linger(Duration::ZERO);
    if slot.short_timeout {
        config = config.transaction_timeout(SHORT_TIMEOUT);
    }
    let p = log.producer(config).expect("transactional producer");
    p.init_transactions().expect("init_transactions");
    p
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let mut rng = Rng::new(seed);
        let sim = SimStorage::new();
        let log = open_log(&sim).unwrap();
        // Small segments in some runs: transactions and their aborted ranges span segments.
        let config = if rng.chance(50) {
            small_segments()
        } else {
            small_indexes()
        };
        log.create_topic(OUT, config.partitions(PARTITIONS))
            .unwrap();
        log.create_topic(IN, small_indexes().partitions(PARTITIONS))
            .unwrap();
        let nslots = rng.usize(2, 3);
        let mut slots: Vec<Slot> = (0..nslots)
            .map(|i| Slot {
                id: format!("txn-{i}"),
                group: format!("group-{i}"),
                short_timeout: i == 0,
                producer: None,
                next_txn: 0,
                txn: None,
                timed_out: false,
                next_input: [0; PARTITIONS as usize],
            })
            .collect();
        for s in &mut slots {
            s.producer = Some(new_producer(&log, s));
        }
        let parts = (0..PARTITIONS)
            .map(|p| log.partition(OUT, p).unwrap())
            .collect();
        Harness {
            sim,
            log,
            parts,
            slots,
            m: Model {
                parts: vec![Vec::new(); PARTITIONS as usize],
                fates: HashMap::new(),
                durable: vec![0; PARTITIONS as usize],
                committed: BTreeMap::new(),
                plain: 0,
                last_lso: vec![0; PARTITIONS as usize],
            },
            rng,
            ctx: String::new(),
            trace: std::env::var_os("ANNALS_TXN_TRACE").is_some(),
        }
    }

    fn note(&mut self, what: String) {
        if self.trace {
            eprintln!("{what}");
        }
        self.ctx = what;
    }

    fn producer(&self, s: usize) -> &Producer {
        self.slots[s].producer.as_ref().expect("a live producer")
    }

    fn step(&mut self, i: usize) {
        // Per mille. Reopens are rare: each costs as much as a hundred other steps (the
        // internal topics' preallocated indexes).
        let roll = self.rng.below(1000);
        match roll {
            0..=699 => {
                let s = self.rng.usize(0, self.slots.len() - 1);
                self.producer_step(i, s);
            }
            700..=799 => self.plain_append(i),
            800..=839 => self.sync(i),
            840..=899 => self.maintenance(i),
            900..=939 => self.fence(i),
            940..=989 => {
                self.note(format!("step {i}: consume"));
                self.check_consumers();
            }
            _ => {
                let mode = match self.rng.below(3) {
                    0 => None,
                    1 => Some(CrashMode::ProcessKill),
                    _ => Some(CrashMode::PowerLossDropUnsynced),
                };
                self.note(format!("step {i}: crash {mode:?} (None: close)"));
                self.crash_and_reopen(mode);
            }
        }
    }

    fn producer_step(&mut self, i: usize, s: usize) {
        if self.slots[s].timed_out {
            return self.timed_out_call(i, s);
        }
        if self.slots[s].txn.is_none() {
            self.note(format!("step {i}: slot {s} begin"));
            self.producer(s).begin_transaction().unwrap();
            let n = self.slots[s].next_txn;
            self.slots[s].next_txn += 1;
            self.m.fates.insert((s, n), Fate::Open);
            self.slots[s].txn = Some(OpenTxn {
                n,
                records: 0,
                first: BTreeMap::new(),
                offsets: BTreeMap::new(),
                started: None,
            });
            return;
        }
        match self.rng.below(100) {
            0..=49 => self.send(i, s),
            50..=64 => self.send_offsets(i, s),
            65..=84 => self.end(i, s, true),
            _ => self.end(i, s, false),
        }
    }

    fn send(&mut self, i: usize, s: usize) {
        let n = self.rng.usize(1, 4);
        let targets: Vec<u32> = (0..n)
            .map(|_| self.rng.below(u64::from(PARTITIONS)) as u32)
            .collect();
        self.note(format!("step {i}: slot {s} send to {targets:?}"));
        let before = Instant::now();
        let txn = self.slots[s].txn.as_mut().unwrap();
        let key = (s, txn.n);
        let mut sent = Vec::new();
        for &p in &targets {
            let value = format!("tx s{s} n{} i{}", txn.n, txn.records);
            txn.records += 1;
            sent.push((p, value));
        }
        let producer = self.slots[s].producer.as_ref().unwrap();
        for (p, value) in &sent {
            producer
                .send_to(OUT, *p, Record::new(value.clone()))
                .unwrap_or_else(|e| panic!("{}: send: {e}", self.ctx));
        }
        producer
            .flush()
            .unwrap_or_else(|e| panic!("{}: flush: {e}", self.ctx));
        let after = Instant::now();
        let txn = self.slots[s].txn.as_mut().unwrap();
        txn.started.get_or_insert((before, after));
        for (p, value) in sent {
            let entries = &mut self.m.parts[p as usize];
            txn.first.entry(p).or_insert(entries.len() as u64);
            entries.push(Entry::Txn(key, value));
        }
    }

    fn send_offsets(&mut self, i: usize, s: usize) {
        let ip = self.rng.below(u64::from(PARTITIONS)) as u32;
        let step = self.rng.range(1, 5);
        let slot = &mut self.slots[s];
        slot.next_input[ip as usize] += step;
        let offset = slot.next_input[ip as usize];
        let group = ConsumerGroupMetadata::new(slot.group.clone());
        self.note(format!("step {i}: slot {s} offsets {IN}-{ip} = {offset}"));
        let before = Instant::now();
        self.producer(s)
            .send_offsets_to_transaction(
                &[(TopicPartition::new(IN, ip), OffsetAndMetadata::new(offset))],
                &group,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", self.ctx));
        let after = Instant::now();
        let txn = self.slots[s].txn.as_mut().unwrap();
        txn.started.get_or_insert((before, after));
        txn.offsets.insert(ip, offset);
    }

    fn end(&mut self, i: usize, s: usize, commit: bool) {
        self.note(format!(
            "step {i}: slot {s} {}",
            if commit { "commit" } else { "abort" }
        ));
        let p = self.producer(s);
        let r = if commit {
            p.commit_transaction()
        } else {
            p.abort_transaction()
        };
        r.unwrap_or_else(|e| panic!("{}: {e}", self.ctx));
        let txn = self.slots[s].txn.take().unwrap();
        let key = (s, txn.n);
        if commit {
            for (ip, off) in &txn.offsets {
                self.m.committed.insert((s, *ip), *off);
            }
        }
        let fate = if commit {
            Fate::Committed
        } else {
            Fate::Aborted
        };
        self.m.end(key, txn.first.keys().copied(), fate);
    }

    /// The coordinator aborted this slot's transaction: the instance hears
    /// `TransactionTimedOut` and a new one takes over the id.
    fn timed_out_call(&mut self, i: usize, s: usize) {
        let commit = self.rng.chance(50);
        self.note(format!(
            "step {i}: slot {s} (timed out) {}",
            if commit { "commit" } else { "abort" }
        ));
        let p = self.slots[s].producer.take().unwrap();
        let r = if commit {
            p.commit_transaction()
        } else {
            p.abort_transaction()
        };
        match r {
            Err(e @ Error::TransactionTimedOut { .. }) => {
                assert!(e.is_fatal(), "{}: {e} is not fatal", self.ctx)
            }
            other => panic!("{}: wanted TransactionTimedOut, got {other:?}", self.ctx),
        }
        // Every later call fails too.
        assert!(
            p.begin_transaction().is_err_and(|e| e.is_fatal()),
            "{}: begin after the timeout",
            self.ctx
        );
        drop(p);
        let slot = &mut self.slots[s];
        slot.timed_out = false;
        slot.txn = None;
        slot.producer = Some(new_producer(&self.log, slot));
    }

    /// A new instance of a slot's id fences the old one and aborts what it left open.
    fn fence(&mut self, i: usize) {
        let s = self.rng.usize(0, self.slots.len() - 1);
        self.note(format!("step {i}: slot {s} fenced by a new instance"));
        let old = self.slots[s].producer.take().unwrap();
        let new = new_producer(&self.log, &self.slots[s]);
        let slot = &mut self.slots[s];
        slot.producer = Some(new);
        // A timed-out transaction was aborted by maintenance already.
        let timed_out = std::mem::take(&mut slot.timed_out);
        let was_open = slot.txn.is_some();
        if let Some(txn) = slot.txn.take().filter(|_| !timed_out) {
            self.m
                .end((s, txn.n), txn.first.keys().copied(), Fate::Aborted);
        }
        if !was_open {
            old.begin_transaction().unwrap();
        }
        match old.commit_transaction() {
            Err(e @ Error::ProducerFenced { .. }) => {
                assert!(e.is_fatal(), "{}: {e}", self.ctx)
            }
            other => panic!("{}: the old instance: {other:?}", self.ctx),
        }
    }

    fn plain_append(&mut self, i: usize) {
        let p = self.rng.below(u64::from(PARTITIONS)) as u32;
        let n = self.rng.usize(1, 3);
        let values: Vec<String> = (0..n)
            .map(|k| format!("plain {}", self.m.plain + k as u64))
            .collect();
        self.m.plain += n as u64;
        self.note(format!("step {i}: plain append of {n} to {p}"));
        let records: Vec<Record> = values.iter().map(|v| Record::new(v.clone())).collect();
        let base = self.parts[p as usize]
            .append(&records)
            .unwrap_or_else(|e| panic!("{}: {e}", self.ctx));
        let entries = &mut self.m.parts[p as usize];
        assert_eq!(base, entries.len() as u64, "{}: base offset", self.ctx);
        entries.extend(values.into_iter().map(Entry::Plain));
    }

    fn sync(&mut self, i: usize) {
        if self.rng.chance(50) {
            self.note(format!("step {i}: log.sync"));
            self.log.sync().unwrap();
            for p in 0..PARTITIONS as usize {
                self.m.durable[p] = self.m.parts[p].len();
            }
        } else {
            let p = self.rng.below(u64::from(PARTITIONS)) as usize;
            self.note(format!("step {i}: sync of {p}"));
            self.parts[p].sync().unwrap();
            self.m.durable[p] = self.m.parts[p].len();
        }
    }

    fn maintenance(&mut self, i: usize) {
        // The slot whose transactions time out, if it has one the coordinator knows.
        let short = self
            .slots
            .iter()
            .position(|s| s.short_timeout && !s.timed_out)
            .filter(|&s| self.slots[s].txn.as_ref().is_some_and(OpenTxn::touched));
        let wait = short.is_some() && self.rng.chance(50);
        self.note(format!(
            "step {i}: maintenance{}",
            if wait { " past the timeout" } else { "" }
        ));
        let started = short.and_then(|s| self.slots[s].txn.as_ref().unwrap().started);
        if let (true, Some((_, after))) = (wait, started) {
            let until = after + SHORT_TIMEOUT + Duration::from_millis(5);
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        let must = started
            .is_some_and(|(_, after)| after.elapsed() > SHORT_TIMEOUT + Duration::from_millis(2));
        let report = self
            .log
            .run_maintenance()
            .unwrap_or_else(|e| panic!("{}: {e}", self.ctx));
        let may = started.is_some_and(|(before, _)| {
            before.elapsed() + Duration::from_millis(1) >= SHORT_TIMEOUT
        });
        match report.transactions_timed_out {
            0 => assert!(
                !must,
                "{}: a transaction past its timeout was not aborted",
                self.ctx
            ),
            1 => {
                assert!(
                    may,
                    "{}: a transaction was timed out before its time (or none was open)",
                    self.ctx
                );
                let s = short.unwrap();
                let txn = self.slots[s].txn.as_ref().unwrap();
                let key = (s, txn.n);
                let partitions: Vec<u32> = txn.first.keys().copied().collect();
                self.m.end(key, partitions, Fate::Aborted);
                self.slots[s].timed_out = true;
                if self.trace {
                    eprintln!("  slot {s} timed out");
                }
            }
            n => panic!("{}: {n} transactions timed out", self.ctx),
        }
    }

    /// `mode` `None`: a clean close. Then the log opens again and the model forgets what the
    /// crash lost.
    fn crash_and_reopen(&mut self, mode: Option<CrashMode>) {
        let producers: Vec<Producer> = self
            .slots
            .iter_mut()
            .filter_map(|s| s.producer.take())
            .collect();
        let log = std::mem::replace(&mut self.log, open_placeholder());
        match mode {
            None => {
                drop(producers);
                log.close()
                    .unwrap_or_else(|e| panic!("{}: close: {e}", self.ctx));
            }
            Some(mode) => {
                // A dead process runs no destructors.
                std::mem::forget(producers);
                std::mem::forget(log);
                self.sim.crash(mode);
            }
        }
        self.parts.clear();
        let log = open_log(&self.sim).unwrap_or_else(|e| panic!("{}: reopen: {e}", self.ctx));
        let power_loss = matches!(mode, Some(CrashMode::PowerLossDropUnsynced));
        for p in 0..PARTITIONS {
            let part = log.partition(OUT, p).unwrap();
            let hw = part.high_watermark();
            self.recover_partition(p, hw, power_loss);
            self.parts.push(part);
        }
        // Whatever was open is aborted, also where none of its records survived.
        for (s, slot) in self.slots.iter_mut().enumerate() {
            if let Some(txn) = slot.txn.take() {
                self.m.fates.insert((s, txn.n), Fate::Aborted);
            }
            slot.timed_out = false;
        }
        self.log = log;
        self.m.last_lso = vec![0; PARTITIONS as usize];
        // No transaction is open before the producers come back.
        self.check();
        for s in 0..self.slots.len() {
            let p = new_producer(&self.log, &self.slots[s]);
            self.slots[s].producer = Some(p);
        }
        self.check_consumers();
    }

    /// Finds the prefix of partition `p` that survived (all of it, unless `power_loss`) from
    /// its high watermark `hw` after the reopen, and applies the recovery's ABORT markers.
    fn recover_partition(&mut self, p: u32, hw: u64, power_loss: bool) {
        let entries = &self.m.parts[p as usize];
        let lo = if power_loss {
            self.m.durable[p as usize]
        } else {
            entries.len()
        };
        let open_in = |len: usize| -> Vec<TxnKey> {
            let mut open = BTreeSet::new();
            for e in &entries[..len] {
                match e {
                    Entry::Txn(k, _) => {
                        open.insert(*k);
                    }
                    Entry::Marker(k) => {
                        open.remove(k);
                    }
                    Entry::Plain(_) => {}
                }
            }
            open.into_iter().collect()
        };
        // Prefixes that differ only by an ABORT marker the recovery writes again look alike:
        // take the longest.
        let found = (lo..=entries.len())
            .rev()
            .map(|len| (len, open_in(len)))
            .find(|(len, open)| (len + open.len()) as u64 == hw);
        let Some((len, open)) = found else {
            panic!(
                "{}: partition {p} has high watermark {hw} after the reopen; the model has {} \
                 entries, {lo} of them durable: no surviving prefix explains it",
                self.ctx,
                entries.len()
            );
        };
        if self.trace && len < entries.len() {
            eprintln!(
                "  partition {p}: {len} of {} entries survived",
                entries.len()
            );
        }
        self.m.parts[p as usize].truncate(len);
        for k in &open {
            let fate = self.m.fates.get(k).copied();
            assert_ne!(
                fate,
                Some(Fate::Committed),
                "{}: the COMMIT marker of {k:?} on partition {p} was lost",
                self.ctx
            );
            self.m.parts[p as usize].push(Entry::Marker(*k));
            self.m.fates.insert(*k, Fate::Aborted);
        }
        let entries = &self.m.parts[p as usize];
        if power_loss {
            // What is left was on stable storage; the recovery syncs its markers.
            self.m.durable[p as usize] = if open.is_empty() { len } else { entries.len() };
        } else if !open.is_empty() {
            self.m.durable[p as usize] = entries.len();
        }
    }

    /// Ends what is open, checks, closes, reopens and checks again.
    fn finish(&mut self) {
        for s in 0..self.slots.len() {
            if self.slots[s].timed_out {
                self.timed_out_call(usize::MAX, s);
            } else if self.slots[s].txn.is_some() {
                let commit = self.rng.chance(50);
                self.end(usize::MAX, s, commit);
            }
            self.check();
        }
        self.note("finish: close and reopen".into());
        self.crash_and_reopen(None);
    }

    /// The log against the model.
    fn check(&mut self) {
        let ctx = self.ctx.clone();
        for p in 0..PARTITIONS {
            let part = &self.parts[p as usize];
            let entries = &self.m.parts[p as usize];
            let hw = part.high_watermark();
            assert_eq!(hw, entries.len() as u64, "{ctx}: high watermark of {p}");
            let lso = part.last_stable_offset();
            assert_eq!(
                lso,
                self.m.lso(p, &self.slots),
                "{ctx}: last stable offset of {p}"
            );
            assert!(
                lso >= self.m.last_lso[p as usize],
                "{ctx}: last stable offset of {p} went back from {} to {lso}",
                self.m.last_lso[p as usize]
            );
            self.m.last_lso[p as usize] = lso;

            let max_bytes = *self.rng.pick(&[1, 200, 1 << 20]);
            let uncommitted = read(part, IsolationLevel::ReadUncommitted, hw, max_bytes, &ctx);
            let want: Vec<(u64, String)> = entries
                .iter()
                .enumerate()
                .filter_map(|(o, e)| match e {
                    Entry::Plain(v) | Entry::Txn(_, v) => Some((o as u64, v.clone())),
                    Entry::Marker(_) => None,
                })
                .collect();
            assert_eq!(uncommitted, want, "{ctx}: read_uncommitted of {p}");

            let committed = read(part, IsolationLevel::ReadCommitted, lso, max_bytes, &ctx);
            let want = self.committed_view(p, lso);
            assert_eq!(committed, want, "{ctx}: read_committed of {p}");
        }

        // The open transactions, as the coordinator lists them.
        let got = self
            .log
            .transactions()
            .unwrap_or_else(|e| panic!("{ctx}: transactions: {e}"));
        let got: Vec<(String, (i64, i16), BTreeSet<TopicPartition>)> = got
            .into_iter()
            .map(|t| {
                assert_eq!(t.state, TransactionState::Ongoing, "{ctx}: {t:?}");
                (
                    t.transactional_id,
                    (t.producer_id, t.producer_epoch),
                    t.partitions.into_iter().collect(),
                )
            })
            .collect();
        let want: Vec<(String, (i64, i16), BTreeSet<TopicPartition>)> = self
            .slots
            .iter()
            .filter(|s| !s.timed_out)
            .filter_map(|s| {
                let txn = s.txn.as_ref().filter(|t| t.touched())?;
                let mut tps: BTreeSet<TopicPartition> = txn
                    .first
                    .keys()
                    .map(|&p| TopicPartition::new(OUT, p))
                    .collect();
                if !txn.offsets.is_empty() {
                    tps.insert(TopicPartition::new(OFFSETS_TOPIC, 0));
                }
                let id = s.producer.as_ref().unwrap().producer_id().unwrap();
                Some((s.id.clone(), id, tps))
            })
            .collect();
        assert_eq!(got, want, "{ctx}: open transactions");

        for (s, slot) in self.slots.iter().enumerate() {
            for ip in 0..PARTITIONS {
                let got = self
                    .log
                    .committed_offset(&slot.group, IN, ip)
                    .unwrap_or_else(|e| panic!("{ctx}: committed_offset: {e}"))
                    .map(|c| c.offset);
                let want = self.m.committed.get(&(s, ip)).copied();
                assert_eq!(
                    got, want,
                    "{ctx}: committed offset of {} {IN}-{ip}",
                    slot.group
                );
            }
        }
    }

    /// What read_committed must return from partition `p` below `lso`.
    fn committed_view(&self, p: u32, lso: u64) -> Vec<(u64, String)> {
        self.m.parts[p as usize][..lso as usize]
            .iter()
            .enumerate()
            .filter_map(|(o, e)| match e {
                Entry::Plain(v) => Some((o as u64, v.clone())),
                Entry::Txn(k, v) => {
                    let fate = self.m.fates.get(k).copied();
                    (fate == Some(Fate::Committed)).then(|| (o as u64, v.clone()))
                }
                Entry::Marker(_) => None,
            })
            .collect()
    }

    /// Consumers at both isolation levels read the whole topic and stop at the right place.
    fn check_consumers(&mut self) {
        let ctx = self.ctx.clone();
        for isolation in [
            IsolationLevel::ReadCommitted,
            IsolationLevel::ReadUncommitted,
        ] {
            let ends: Vec<u64> = self
                .parts
                .iter()
                .map(|p| match isolation {
                    IsolationLevel::ReadCommitted => p.last_stable_offset(),
                    IsolationLevel::ReadUncommitted => p.high_watermark(),
                })
                .collect();
            let mut c = self
                .log
                .consumer(ConsumerConfig::new("model-reader").isolation_level(isolation))
                .unwrap();
            let tps: Vec<TopicPartition> = (0..PARTITIONS)
                .map(|p| TopicPartition::new(OUT, p))
                .collect();
            c.assign(&tps).unwrap();
            let mut got: Vec<Vec<(u64, String)>> = vec![Vec::new(); PARTITIONS as usize];
            for _ in 0..1000 {
                let positions: Vec<u64> = (0..PARTITIONS)
                    .map(|p| c.position(OUT, p).unwrap())
                    .collect();
                if positions == ends {
                    break;
                }
                for r in c.poll(Duration::from_millis(1)).unwrap() {
                    got[r.partition as usize].push((
                        r.offset,
                        String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                    ));
                }
            }
            let positions: Vec<u64> = (0..PARTITIONS)
                .map(|p| c.position(OUT, p).unwrap())
                .collect();
            assert_eq!(positions, ends, "{ctx}: {isolation:?} consumer's positions");
            for p in 0..PARTITIONS {
                let want = match isolation {
                    IsolationLevel::ReadCommitted => self.committed_view(p, ends[p as usize]),
                    IsolationLevel::ReadUncommitted => self.m.parts[p as usize]
                        .iter()
                        .enumerate()
                        .filter_map(|(o, e)| match e {
                            Entry::Plain(v) | Entry::Txn(_, v) => Some((o as u64, v.clone())),
                            Entry::Marker(_) => None,
                        })
                        .collect(),
                };
                assert_eq!(
                    got[p as usize], want,
                    "{ctx}: {isolation:?} consumer of {p}"
                );
            }
        }
    }
}

/// Index files may grow to `segment_index_bytes`; a small maximum keeps the model's
/// `SimStorage` files small when a rebuild or a long segment grows them.
fn small_indexes() -> TopicConfig {
    TopicConfig::default().segment_index_bytes(16 << 10)
}

/// A closed, empty log to hold the place of one that crashed, until the reopen.
fn open_placeholder() -> Log {
    let sim = SimStorage::new();
    let log = open_log(&sim).unwrap();
    log.close().unwrap();
    log
}

/// Every record of `part` from its start below `end` at `isolation`, as `(offset, value)`,
/// checking that each read moves on and returns only what lies in the range it walked.
fn read(
    part: &Partition,
    isolation: IsolationLevel,
    end: u64,
    max_bytes: usize,
    ctx: &str,
) -> Vec<(u64, String)> {
    let mut at = part.log_start_offset();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while at < end {
        buf.clear();
        let next = part
            .read_isolated_into(at, max_bytes, isolation, &mut buf)
            .unwrap_or_else(|e| panic!("{ctx}: {isolation:?} read at {at}: {e}"));
        assert!(
            next > at,
            "{ctx}: {isolation:?} read at {at} did not move on"
        );
        for r in &buf {
            assert!(
                r.offset >= at && r.offset < next && r.offset < end,
                "{ctx}: {isolation:?} read at {at} (next {next}, end {end}) returned offset {}",
                r.offset
            );
            out.push((r.offset, value_of(r)));
        }
        at = next;
    }
    assert_eq!(at, end, "{ctx}: {isolation:?} read went past {end}");
    out
}

#[test]
fn transactions_agree_with_the_model_through_timeouts_fencing_and_crashes() {
    let base = base_seed();
    let steps = env_usize("ANNALS_TXN_STEPS", 150);
    for case in 0..cases(16) {
        let seed = base.wrapping_add(case as u64);
        let mut guard = SeedGuard::new("transactions_model", seed);
        guard.what.push_str(" with ANNALS_TEST_CASES=1");
        let mut h = Harness::new(seed);
        h.note("opened".into());
        h.check();
        for i in 0..steps {
            h.step(i);
            h.check();
        }
        h.finish();
        drop(guard);
    }
}

/// A regression test: recovery once decided commit-or-abort once per producer id, from the
/// epoch of the first open transaction it met, and wrote that decision to every partition
/// where the producer had any transaction open — also to transactions of other epochs.
///
/// A producer's transaction 1 wrote to partition `aborted_on`, was synced there, and aborted
/// (its ABORT marker is not synced, by design). Its transaction 2 wrote to `committed_on` and
/// passed its commit point (`PrepareCommit` fsynced) when the power went, before its COMMIT
/// marker. After the reopen both partitions show an open transaction of the producer, at two
/// epochs. Expected: transaction 1 stays aborted, transaction 2 commits (it passed its commit
/// point). What happened: the partition met first decided for both — partition 0 first
/// (`aborted_on` 0) aborted transaction 2 although `PrepareCommit` was durable; `committed_on`
/// 0 committed transaction 1, whose aborted record became visible to read_committed.
#[test]
fn recovery_decides_each_open_transaction_by_its_own_epoch() {
    use std::sync::atomic::{AtomicU8, Ordering};
    for (aborted_on, committed_on) in [(0u32, 1u32), (1, 0)] {
        let ctx = format!("transaction 1 aborted on {aborted_on}, 2 committing on {committed_on}");
        let sim = SimStorage::new();
        let log = open_log(&sim).unwrap();
        log.create_topic(OUT, small_indexes().partitions(2))
            .unwrap();
        let p = log
            .producer(
                ProducerConfig::default()
                    .transactional_id("two-epochs")
                    .linger(Duration::ZERO),
            )
            .unwrap();
        p.init_transactions().unwrap();
        p.begin_transaction().unwrap();
        p.send_to(OUT, aborted_on, Record::new("aborted-1"))
            .unwrap();
        p.flush().unwrap();
        // Its record is durable; its ABORT marker will not be.
        log.partition(OUT, aborted_on).unwrap().sync().unwrap();
        p.abort_transaction().unwrap();

        p.begin_transaction().unwrap();
        p.send_to(OUT, committed_on, Record::new("committed-2"))
            .unwrap();
        p.flush().unwrap();
        // Power goes right after the first fsync of `__transaction_state` in the commit: the
        // fsynced `PrepareCommit`, the commit point.
        let stage = Arc::new(AtomicU8::new(0));
        let weak = Arc::downgrade(&sim);
        {
            let stage = stage.clone();
            sim.set_fault_hook(move |op| {
                match stage.load(Ordering::SeqCst) {
                    0 => {
                        let sync = matches!(
                            op.kind,
                            annals::storage::SimOpKind::SyncData
                                | annals::storage::SimOpKind::SyncAll
                        );
                        if sync && op.path.to_string_lossy().contains("__transaction_state") {
                            stage.store(1, Ordering::SeqCst);
                        }
                        return None;
                    }
                    1 => {
                        stage.store(2, Ordering::SeqCst);
                        if let Some(sim) = weak.upgrade() {
                            sim.crash(CrashMode::PowerLossDropUnsynced);
                        }
                    }
                    _ => {}
                }
                Some(std::io::Error::other("the machine lost power"))
            });
        }
        assert!(
            p.commit_transaction().is_err(),
            "{ctx}: the commit survived"
        );
        assert_eq!(stage.load(Ordering::SeqCst), 2, "{ctx}: no crash");
        std::mem::forget(p);
        std::mem::forget(log);
        sim.clear_fault_hook();

        let log = open_log(&sim).unwrap();
        assert!(log.transactions().unwrap().is_empty(), "{ctx}");
        let committed = |id: u32| {
            let part = log.partition(OUT, id).unwrap();
            let lso = part.last_stable_offset();
            assert_eq!(lso, part.high_watermark(), "{ctx}: LSO of {id}");
            read(&part, IsolationLevel::ReadCommitted, lso, 1 << 20, &ctx)
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            committed(aborted_on),
            Vec::<String>::new(),
            "{ctx}: the aborted transaction 1 became visible"
        );
        assert_eq!(
            committed(committed_on),
            vec!["committed-2".to_string()],
            "{ctx}: transaction 2 passed its commit point but was aborted"
        );
        log.close().unwrap();
    }
}
