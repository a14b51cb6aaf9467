//! [`EventStore`]: appends with an expected version, `read_stream`, `stream_version`.
//!
//! ```text
//! cargo bench --bench event_store                                  # 10 k streams (100 k events)
//! ANNALS_BENCH_ES_STREAMS=1000000 cargo bench --bench event_store  # 1 M streams (10 M events)
//! cargo bench --bench event_store -- read_stream                   # one group
//! ```
//!
//! The store (built once, untimed, `Durability::Written`, one partition, default index):
//! `ANNALS_BENCH_ES_STREAMS` streams (default 10,000) of 10 events, each written by one append,
//! plus one stream of 100 events appended 10 at a time at evenly spaced points of the build (so
//! its events sit in ten places of the log). Events are ~90-byte JSON payloads, metadata `{}`.
//! Stream names are a scrambled hex of the stream's number.
//!
//! - `es_append/{written,synced}`: one append of 10 events to a random ordinary stream with
//!   `ExpectedVersion::Exact(v)`, `v` kept by the bench in a `HashMap` (a command handler that
//!   has just loaded the aggregate). `Throughput::Elements(10)`: events/s; the time is per
//!   append. Each group has its own store handle with that durability on the same log
//!   directory.
//! - `es_read_stream/100_events`: `read_stream(target, 0, 100)`, warm.
//! - `es_stream_version/{long,short}`: `stream_version` of the 100-event stream and of a random
//!   ordinary one.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use annals::{Durability, EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod common;
use common::Rng;

const STREAMS_ENV: &str = "ANNALS_BENCH_ES_STREAMS";
const DEFAULT_STREAMS: u32 = 10_000;
const EVENTS: usize = 10;
const TARGET: &str = "account-target";
const TARGET_EVENTS: usize = 100;
const STORE: &str = "es";

fn streams() -> u32 {
    std::env::var(STREAMS_ENV).map_or(DEFAULT_STREAMS, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{STREAMS_ENV} must be a stream count, not {v:?}"))
    })
}

fn stream_name(i: u32) -> String {
    let mut z = u64::from(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("account-{z:016x}")
}

/// `n` (type, ~90-byte JSON payload) pairs.
fn pool(n: usize) -> Vec<(&'static str, Bytes)> {
    const TYPES: [&str; 4] = ["Opened", "Deposited", "Withdrawn", "Moved"];
    let mut rng = Rng(0x0DDB_1A5E_5BAD_5EED);
    (0..n)
        .map(|i| {
            let mut p = format!(
                r#"{{"amount":{},"ts":{},"by":"user-{:06}","ref":"{:x}","n":""#,
                rng.below(100_000),
                1_700_000_000_000u64 + rng.below(86_400_000),
                rng.below(1_000_000),
                rng.next_u64() & 0xffff_ffff,
            )
            .into_bytes();
            while p.len() < 88 {
                p.push(b'a' + ((i + p.len()) % 26) as u8);
            }
            p.extend_from_slice(b"\"}");
            (TYPES[i % TYPES.len()], Bytes::from(p))
        })
        .collect()
}

struct Events {
    pool: Vec<(&'static str, Bytes)>,
    k: usize,
}

impl Events {
    fn next(&mut self) -> Vec<NewEvent> {
        let start = self.k % (self.pool.len() - EVENTS);
        self.k += EVENTS;
        self.pool[start..start + EVENTS]
            .iter()
            .map(|(t, p)| NewEvent::new(*t, p.clone()).metadata("{}"))
            .collect()
    }
}

fn version_of(expected: Option<u64>) -> ExpectedVersion {
    expected.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
}

/// Builds the store described in the module docs in `dir`; closes it.
fn build(dir: &Path, streams: u32, events: &mut Events) {
    let log = Log::open(dir).expect("open log");
    let config = EventStoreConfig::default().durability(Durability::Written);
    let store = EventStore::open(&log, STORE, config).expect("open store");
    let chunks = TARGET_EVENTS / EVENTS;
    let every = (streams as usize / chunks).max(1);
    let mut target = None;
    let append_target = |target: &mut Option<u64>, events: &mut Events| {
        let r = store
            .append(TARGET, version_of(*target), &events.next())
            .expect("append");
        *target = Some(r.next_version - 1);
    };
    for i in 0..streams {
        if (i as usize).is_multiple_of(every) && (i as usize / every) < chunks {
            append_target(&mut target, events);
        }
        store
            .append(&stream_name(i), ExpectedVersion::NoStream, &events.next())
            .expect("append");
    }
    while target.is_none_or(|v| v + 1 < TARGET_EVENTS as u64) {
        append_target(&mut target, events);
    }
    store.close().expect("close store");
    drop(store);
    log.close().expect("close log");
}

fn benches(c: &mut Criterion) {
    let streams = streams();
    let root = tempfile::tempdir().expect("tempdir");
    let mut events = Events {
        pool: pool(1000),
        k: 0,
    };
    build(root.path(), streams, &mut events);
    let log = Log::open(root.path()).expect("reopen log");
    // The version of every ordinary stream, as the bench's "command handler" knows it.
    let mut versions: HashMap<u32, u64> = (0..streams).map(|i| (i, EVENTS as u64 - 1)).collect();
    let mut rng = Rng(0x5EED_1234_5678_9ABC);

    for (name, durability) in [
        ("written", Durability::Written),
        ("synced", Durability::Synced),
    ] {
        let store = EventStore::open(
            &log,
            STORE,
            EventStoreConfig::default().durability(durability),
        )
        .expect("open store");
        let mut group = c.benchmark_group("es_append");
        group.throughput(Throughput::Elements(EVENTS as u64));
        if durability == Durability::Synced {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(5));
        }
        group.bench_function(name, |b| {
            b.iter(|| {
                let n = rng.below(u64::from(streams)) as u32;
                let v = versions.get_mut(&n).expect("known stream");
                let r = store
                    .append(&stream_name(n), ExpectedVersion::Exact(*v), &events.next())
                    .expect("append");
                *v = r.next_version - 1;
                r
            })
        });
        group.finish();
        store.close().expect("close store");
    }

    let store = EventStore::open(
        &log,
        STORE,
        EventStoreConfig::default().durability(Durability::Written),
    )
    .expect("open store");
    let mut group = c.benchmark_group("es_read_stream");
    group.throughput(Throughput::Elements(TARGET_EVENTS as u64));
    group.bench_function("100_events", |b| {
        b.iter(|| {
            let events = store
                .read_stream(black_box(TARGET), 0, TARGET_EVENTS)
                .expect("read");
            assert_eq!(events.len(), TARGET_EVENTS);
            events
        })
    });
    group.finish();

    let mut group = c.benchmark_group("es_stream_version");
    group.bench_function("long", |b| {
        b.iter(|| store.stream_version(black_box(TARGET)).expect("version"))
    });
    let names: Vec<String> = (0..1000)
        .map(|_| stream_name(rng.below(u64::from(streams)) as u32))
        .collect();
    let mut i = 0;
    group.bench_function("short", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            store.stream_version(&names[i]).expect("version")
        })
    });
    group.finish();
    store.close().expect("close store");
    drop(store);
    log.close().expect("close log");
}

criterion_group!(event_store, benches);
criterion_main!(event_store);
