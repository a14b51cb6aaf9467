//! The event store under kill -9: a child process appends to a few streams from several
//! threads, each append expecting the exact version it just read (`Durability::Synced`), and
//! prints every acknowledged event as `ACK <stream> <version> <id>`; the parent kills it with
//! SIGKILL at a random moment, then reopens the store and checks that
//! - every acknowledged event is there, at its version, with its id, and every event an earlier
//!   round saw is still there;
//! - each stream's versions run from 0 without a gap, `stream_version` is the last of them and a
//!   backward read is the forward one reversed;
//! - the index the child left (tables and a memtable replayed at open) answers exactly as an
//!   index rebuilt from the log: a copy of the directory opened under another hasher, which
//!   must discard the tables, and every fifth round `rebuild_index`;
//! - appends continue at the right version.
//!
//! Each round's child uses a random stream hasher (the default, the name's length, a constant),
//! so opens also meet tables written under another hasher. The child also retries some appends
//! that succeeded, which must return the first result. In a fifth of the rounds the kill comes
//! 0-60 ms after the spawn, so it also lands in `Log::open` and the index's catch-up.
//!
//! Environment: `ANNALS_ES_KILL9_ROUNDS` (default 30), `ANNALS_TEST_SEED`.
#![cfg(unix)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use annals::{
    Durability, Error, EventStore, EventStoreConfig, ExpectedVersion, Log, NewEvent, RecordedEvent,
    Uuid,
};

use crate::common::*;

const STORE: &str = "ledger";
/// All of length 5: they collide under the length hasher.
const STREAMS: [&str; 4] = ["acc-0", "acc-1", "acc-2", "acc-3"];
const THREADS: usize = 3;
const ENV_DIR: &str = "ANNALS_ES_KILL9_CHILD_DIR";
const ENV_HASHER: &str = "ANNALS_ES_KILL9_CHILD_HASHER";
const ENV_SEED: &str = "ANNALS_ES_KILL9_CHILD_SEED";

fn config(hasher: u64) -> EventStoreConfig {
    let c = EventStoreConfig::default()
        .partitions(2)
        .durability(Durability::Synced)
        .index_memtable_entries(16);
    match hasher {
        0 => c,
        1 => c.stream_hasher(|s| s.len() as u64),
        _ => c.stream_hasher(|_| 42),
    }
}

fn open(dir: &Path, hasher: u64) -> annals::Result<(Log, EventStore)> {
    let log = Log::builder(dir).maintenance_interval(None).open()?;
    let store = EventStore::open(&log, STORE, config(hasher))?;
    Ok((log, store))
}

#[test]
fn es_kill9_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return; // only as the child of `event_store_survives_kill9`
    };
    let hasher: u64 = std::env::var(ENV_HASHER).unwrap().parse().unwrap();
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    if let Err(e) = child(Path::new(&dir), hasher, seed) {
        println!("ERROR {e}");
    }
}

/// The child: appends until it is killed.
fn child(dir: &Path, hasher: u64, seed: u64) -> annals::Result<()> {
    let (_log, store) = open(dir, hasher)?;
    println!("READY");
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                if let Err(e) = writer(&store, seed.wrapping_add(t as u64)) {
                    println!("ERROR thread {t}: {e}");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn writer(store: &EventStore, seed: u64) -> annals::Result<()> {
    let mut rng = Rng::new(seed);
    loop {
        let stream = *rng.pick(&STREAMS);
        let n = rng.usize(1, 3);
        let events: Vec<NewEvent> = (0..n)
            .map(|_| {
                NewEvent::new("Deposited", format!("{}", rng.below(1000)))
                    .id(Uuid::from_u64_pair(rng.next_u64(), rng.next_u64()))
            })
            .collect();
        let expected = store
            .stream_version(stream)?
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let r = match store.append(stream, expected, &events) {
            Ok(r) => r,
            // Another thread got there first.
            Err(Error::WrongExpectedVersion { .. }) => continue,
            Err(e) => return Err(e),
        };
        let first = r.next_version - n as u64;
        if let ExpectedVersion::Exact(v) = expected {
            if v + 1 != first {
                println!("BAD {stream}: expected {v}, wrote at {first}");
            }
        }
        for (i, e) in events.iter().enumerate() {
            println!("ACK {stream} {} {}", first + i as u64, e.event_id());
        }
        if rng.chance(10) {
            // The same append again: it already happened, so it returns the first result.
            match store.append(stream, expected, &events) {
                Ok(again) if again == r => {}
                other => println!("BAD {stream}: a retry of {r:?} returned {other:?}"),
            }
        }
    }
}

/// Every stream read forward (everything) and backward, checked to agree.
fn read_all(store: &EventStore, ctx: &str) -> HashMap<&'static str, Vec<RecordedEvent>> {
    STREAMS
        .iter()
        .map(|&s| {
            let fwd = store
                .read_stream(s, 0, usize::MAX)
                .unwrap_or_else(|e| panic!("{ctx}: read_stream({s}): {e}"));
            let mut back = store
                .read_stream_backward(s, None, usize::MAX)
                .unwrap_or_else(|e| panic!("{ctx}: read_stream_backward({s}): {e}"));
            back.reverse();
            assert_eq!(back, fwd, "{ctx}: {s} backward is not forward reversed");
            (s, fwd)
        })
        .collect()
}

#[test]
fn event_store_survives_kill9() {
    let rounds = env_usize("ANNALS_ES_KILL9_ROUNDS", 30);
    let seed = base_seed();
    let _guard = SeedGuard::new("event_store_survives_kill9", seed);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let child_test = test_path(module_path!(), "es_kill9_child");
    // What the parent knows each stream holds: the ids by version.
    let mut known: HashMap<&str, Vec<Uuid>> = STREAMS.iter().map(|&s| (s, Vec::new())).collect();
    let mut acked_total = 0usize;
    let mut early_kills = 0;
    let started = Instant::now();
    for round in 0..rounds {
        let hasher = rng.below(3);
        let seed_s = rng.next_u64().to_string();
        let hasher_s = hasher.to_string();
        let envs = [
            (ENV_DIR, dir.path().as_os_str()),
            (ENV_HASHER, std::ffi::OsStr::new(&hasher_s)),
            (ENV_SEED, std::ffi::OsStr::new(&seed_s)),
        ];
        let ctx = format!("round {round} (hasher {hasher})");
        let early = rng.chance(20);
        let spawned = Instant::now();
        let (mut proc, lines) = spawn_child(&child_test, &envs);
        let kill_at = if early {
            early_kills += 1;
            spawned + Duration::from_millis(rng.range(0, 60))
        } else {
            // Set once the child is READY.
            spawned + hang_bound()
        };
        let kill_after_acks = rng.range(1, 200) as usize;
        let mut acks: Vec<(String, u64, Uuid)> = Vec::new();
        let handle = |line: &str, acks: &mut Vec<(String, u64, Uuid)>| {
            assert!(!line.starts_with("BAD"), "{ctx}: {line}");
            assert!(!line.starts_with("ERROR"), "{ctx}: {line}");
            if let Some(rest) = line.strip_prefix("ACK ") {
                let mut f = rest.split(' ');
                let (s, v, id) = (f.next(), f.next(), f.next());
                let parsed = (|| Some((s?.to_string(), v?.parse().ok()?, id?.parse().ok()?)))();
                acks.push(parsed.unwrap_or_else(|| panic!("{ctx}: bad line {line:?}")));
            }
        };
        let mut kill_at = kill_at;
        let mut ready = false;
        loop {
            let wait = kill_at.saturating_duration_since(Instant::now());
            match lines.recv_timeout(wait) {
                Ok(line) => {
                    if line == "READY" && !early {
                        ready = true;
                        kill_at = Instant::now() + Duration::from_millis(rng.range(5, 150));
                    }
                    handle(&line, &mut acks);
                    if !early && acks.len() >= kill_after_acks {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    assert!(early || ready, "{ctx}: the child never became ready");
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{ctx}: the child exited by itself");
                }
            }
        }
        proc.kill().unwrap();
        let status = proc.wait().unwrap();
        assert!(
            !status.success(),
            "{ctx}: the child was not killed: {status}"
        );
        // What it printed before it died.
        loop {
            match lines.recv_timeout(hang_bound()) {
                Ok(line) => handle(&line, &mut acks),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("{ctx}: the child's stdout stays open"),
            }
        }
        acked_total += acks.len();

        // The parent reopens with the child's hasher, so it reads the child's index.
        let (log, store) = open(dir.path(), hasher).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
        let got = read_all(&store, &ctx);
        for &s in &STREAMS {
            let events = &got[s];
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e.version, i as u64, "{ctx}: {s} has a gap or a repeat");
                assert_eq!(e.stream, s, "{ctx}");
            }
            let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
            let before = &known[s];
            assert!(
                ids.len() >= before.len() && ids[..before.len()] == before[..],
                "{ctx}: {s} lost or changed events an earlier round read: had {}, now {}",
                before.len(),
                ids.len()
            );
            assert_eq!(
                store.stream_version(s).unwrap(),
                (!ids.is_empty()).then(|| ids.len() as u64 - 1),
                "{ctx}: stream_version of {s}"
            );
            known.insert(s, ids);
        }
        for (s, v, id) in &acks {
            let ids = &known[s.as_str()];
            assert_eq!(
                ids.get(*v as usize),
                Some(id),
                "{ctx}: acknowledged {s}@{v} ({id}) is not there ({} events)",
                ids.len()
            );
        }
        if round % 5 == 4 {
            store.rebuild_index().unwrap();
            assert_eq!(read_all(&store, &ctx), got, "{ctx}: after rebuild_index");
        }
        append_one_each(&store, &mut known, &ctx);
        let got = read_all(&store, &ctx);
        store.close().unwrap();
        log.close().unwrap();
        // The index as the child (and this check) left it answers as one rebuilt from the log:
        // a copy opened under another hasher drops the tables and replays the whole log (into
        // a memtable big enough to hold it, so the check costs no table writes).
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let other = (hasher + 1) % 3;
        let log2 = Log::builder(copy.path())
            .maintenance_interval(None)
            .open()
            .unwrap();
        let store2 =
            EventStore::open(&log2, STORE, config(other).index_memtable_entries(1 << 17)).unwrap();
        assert_eq!(
            read_all(&store2, &ctx),
            got,
            "{ctx}: a copy opened under hasher {other} (rebuilt from the log)"
        );
        store2.close().unwrap();
        log2.close().unwrap();
    }
    let total: usize = known.values().map(Vec::len).sum();
    eprintln!(
        "event store kill -9: {rounds} rounds ({early_kills} early kills), {acked_total} events \
         acknowledged, {total} in the store, {:?}",
        started.elapsed()
    );
    assert!(acked_total > 0, "no child ever acknowledged an append");
}

/// Appends continue at the right version: one event per stream, expecting its last version.
fn append_one_each(store: &EventStore, known: &mut HashMap<&str, Vec<Uuid>>, ctx: &str) {
    for &s in &STREAMS {
        let ids = known.get_mut(s).unwrap();
        let expected = match ids.len() {
            0 => ExpectedVersion::NoStream,
            n => ExpectedVersion::Exact(n as u64 - 1),
        };
        let e = NewEvent::new("Checked", "parent");
        let r = store
            .append(s, expected, std::slice::from_ref(&e))
            .unwrap_or_else(|err| panic!("{ctx}: append to {s} expecting {expected:?}: {err}"));
        assert_eq!(r.next_version, ids.len() as u64 + 1, "{ctx}: {s}");
        ids.push(e.event_id());
    }
}
