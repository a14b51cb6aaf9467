//! Tests of the simulated file system: its durability model, crashes, faults and capacity.
// These tests call `map_mut`, an `unsafe fn`; SimStorage maps nothing, so its contract holds
// trivially for every call here.
#![allow(unsafe_code)]

use super::model::write_into;
use super::*;
use crate::storage::write_atomic;
use std::collections::HashSet;
use std::sync::Weak;

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// A storage whose `/sim` directory exists durably.
fn setup() -> Arc<SimStorage> {
    let sim = SimStorage::new();
    sim.create_dir_all(p("/sim")).unwrap();
    sim.sync_dir(p("/")).unwrap();
    sim
}

/// Creates `path` holding `bytes`, with both its data and its directory entry durable.
fn durable_file(sim: &SimStorage, path: &str, bytes: &[u8]) {
    let f = sim.open(p(path), OpenMode::Create).unwrap();
    f.set_len(0).unwrap();
    f.write_all_at(bytes, 0).unwrap();
    f.sync_all().unwrap();
    sim.sync_dir(p(path).parent().unwrap()).unwrap();
}

fn read_all(f: &dyn StorageFile) -> Vec<u8> {
    let mut buf = vec![0; f.len().unwrap() as usize];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), buf.len());
    buf
}

fn assert_dead<T: fmt::Debug>(what: &str, r: io::Result<T>) {
    let e = r.expect_err(what);
    assert_eq!(e.kind(), ErrorKind::Other, "{what}: {e}");
    assert!(e.to_string().contains("simulated crash"), "{what}: {e}");
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

#[test]
fn synced_data_survives_power_loss_and_unsynced_data_does_not() {
    let sim = setup();
    let f = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
    f.write_all_at(b"hello", 0).unwrap();
    f.sync_data().unwrap();
    sim.sync_dir(p("/sim")).unwrap();
    f.write_all_at(b" world", 5).unwrap();
    f.write_all_at(b"J", 0).unwrap();
    assert_eq!(sim.read_file("/sim/a").unwrap(), b"Jello world");
    assert_eq!(sim.durable_len("/sim/a"), Some(5));

    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/sim/a").unwrap(), b"hello");
    let f = sim.open(p("/sim/a"), OpenMode::Read).unwrap();
    assert_eq!(read_all(&*f), b"hello");
}

#[test]
fn unsynced_set_len_reverts_and_synced_one_sticks() {
    let sim = setup();
    durable_file(&sim, "/sim/a", b"0123456789");
    let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
    f.set_len(3).unwrap();
    assert_eq!(f.len().unwrap(), 3);
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/sim/a").unwrap(), b"0123456789");

    let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
    f.set_len(3).unwrap();
    f.set_len(5).unwrap(); // regrowth reads as zeros
    f.sync_all().unwrap();
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/sim/a").unwrap(), b"012\0\0");
}

#[test]
fn process_kill_keeps_every_completed_change() {
    let sim = setup();
    durable_file(&sim, "/sim/gone", b"x");
    sim.create_dir_all(p("/sim/d")).unwrap();
    let f = sim.open(p("/sim/d/new"), OpenMode::CreateNew).unwrap();
    f.write_all_at(b"unsynced", 0).unwrap();
    sim.rename(p("/sim/d/new"), p("/sim/d/renamed")).unwrap();
    sim.remove_file(p("/sim/gone")).unwrap();
    let before = sim.paths();
    assert_eq!(before, paths(&["/sim/d/renamed"]));

    sim.crash(CrashMode::ProcessKill);
    assert_eq!(sim.paths(), before);
    assert_eq!(sim.read_file("/sim/d/renamed").unwrap(), b"unsynced");
    // Still nothing of it is durable: a power loss now reverts to the synced state.
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.paths(), paths(&["/sim/gone"]));
}

#[test]
fn created_file_survives_power_loss_only_after_sync_dir() {
    let sim = setup();
    let f = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
    f.write_all_at(b"data", 0).unwrap();
    f.sync_data().unwrap();
    assert_eq!(sim.durable_len("/sim/a"), Some(4));
    assert!(sim.durable_paths().is_empty());
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert!(sim.paths().is_empty());
    assert!(!sim.exists(p("/sim/a")).unwrap());

    durable_file(&sim, "/sim/a", b"data");
    assert_eq!(sim.durable_paths(), paths(&["/sim/a"]));
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/sim/a").unwrap(), b"data");
}

#[test]
fn new_directory_needs_its_parent_synced() {
    let sim = setup();
    sim.create_dir_all(p("/sim/d/e")).unwrap();
    durable_file(&sim, "/sim/d/e/f", b"x"); // syncs /sim/d/e, but not /sim nor /sim/d
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert!(!sim.exists(p("/sim/d")).unwrap());
    assert!(sim.paths().is_empty());

    sim.create_dir_all(p("/sim/d/e")).unwrap();
    durable_file(&sim, "/sim/d/e/f", b"x");
    sim.sync_dir(p("/sim/d")).unwrap();
    sim.sync_dir(p("/sim")).unwrap();
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/sim/d/e/f").unwrap(), b"x");
}

#[test]
fn rename_without_sync_dir_reverts_on_power_loss() {
    let sim = setup();
    durable_file(&sim, "/sim/meta", b"old");
    let tmp = sim.open(p("/sim/meta.tmp"), OpenMode::Create).unwrap();
    tmp.write_all_at(b"new", 0).unwrap();
    tmp.sync_all().unwrap();
    sim.rename(p("/sim/meta.tmp"), p("/sim/meta")).unwrap();
    assert_eq!(sim.read_file("/sim/meta").unwrap(), b"new");
    assert_eq!(sim.paths(), paths(&["/sim/meta"]));
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/sim/meta").unwrap(), b"old");
    assert_eq!(sim.paths(), paths(&["/sim/meta"]));

    write_atomic(&*sim, p("/sim/meta"), b"new").unwrap();
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/sim/meta").unwrap(), b"new");
    assert_eq!(sim.paths(), paths(&["/sim/meta"]));
}

#[test]
fn removals_need_sync_dir() {
    let sim = setup();
    durable_file(&sim, "/sim/a", b"a");
    sim.remove_file(p("/sim/a")).unwrap();
    assert_eq!(sim.read_file("/sim/a"), None);
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/sim/a").unwrap(), b"a");

    sim.remove_file(p("/sim/a")).unwrap();
    sim.sync_dir(p("/sim")).unwrap();
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert!(sim.paths().is_empty());

    sim.create_dir_all(p("/sim/t")).unwrap();
    sim.sync_dir(p("/sim")).unwrap();
    durable_file(&sim, "/sim/t/x", b"x");
    sim.remove_dir_all(p("/sim/t")).unwrap();
    assert!(!sim.exists(p("/sim/t/x")).unwrap());
    assert_eq!(
        sim.list_dir(p("/sim/t")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(
        sim.read_file("/sim/t/x").unwrap(),
        b"x",
        "the tree comes back"
    );
    sim.remove_dir_all(p("/sim/t")).unwrap();
    sim.sync_dir(p("/sim")).unwrap();
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert!(!sim.exists(p("/sim/t")).unwrap());
}

#[test]
fn renamed_directory_keeps_its_subtree() {
    let sim = setup();
    sim.create_dir_all(p("/sim/p1")).unwrap();
    sim.sync_dir(p("/sim")).unwrap();
    durable_file(&sim, "/sim/p1/seg", b"records");
    sim.rename(p("/sim/p1"), p("/sim/p2")).unwrap();
    assert_eq!(sim.read_file("/sim/p2/seg").unwrap(), b"records");
    assert_eq!(
        sim.rename(p("/sim/p2"), p("/sim/p2/in"))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    sim.sync_dir(p("/sim")).unwrap();
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.paths(), paths(&["/sim/p2/seg"]));
    assert_eq!(sim.read_file("/sim/p2/seg").unwrap(), b"records");
}

/// One unsynced operation, for the torn-crash model in the test.
#[derive(Clone, Copy)]
enum Op {
    Write(u64, &'static [u8]),
    SetLen(u64),
}

fn apply(data: &mut Vec<u8>, op: Op) {
    match op {
        Op::Write(pos, bytes) => write_into(data, pos as usize, bytes),
        Op::SetLen(len) => data.resize(len as usize, 0),
    }
}

#[test]
fn torn_crash_leaves_durable_contents_plus_a_prefix_of_pending_ops() {
    const BASE: &[u8] = b"base-base-";
    let ops = [
        Op::Write(2, b"AAAA"),
        Op::Write(8, b"BBBBBBBB"),
        Op::SetLen(12),
        Op::Write(11, b"CC"),
    ];
    // Every state the model allows: k whole ops, or k whole ops and a torn next write.
    let mut allowed = Vec::new();
    for k in 0..=ops.len() {
        let mut data = BASE.to_vec();
        ops[..k].iter().for_each(|&op| apply(&mut data, op));
        allowed.push(data.clone());
        if let Some(&Op::Write(pos, bytes)) = ops.get(k) {
            for cut in 0..bytes.len() {
                let mut torn = data.clone();
                apply(&mut torn, Op::Write(pos, &bytes[..cut]));
                allowed.push(torn);
            }
        }
    }
    let run = |seed| {
        let sim = setup();
        durable_file(&sim, "/sim/a", BASE);
        let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
        for op in ops {
            match op {
                Op::Write(pos, bytes) => f.write_all_at(bytes, pos).unwrap(),
                Op::SetLen(len) => f.set_len(len).unwrap(),
            }
        }
        sim.open(p("/sim/unsynced"), OpenMode::Create).unwrap();
        sim.crash(CrashMode::PowerLossTorn { seed });
        assert_eq!(
            sim.paths(),
            paths(&["/sim/a"]),
            "the namespace is the durable one"
        );
        assert_dead("old handle", f.len());
        sim.read_file("/sim/a").unwrap()
    };
    let mut seen = HashSet::new();
    for seed in 0..400 {
        let got = run(seed);
        assert!(
            allowed.contains(&got),
            "seed {seed}: {:?} is no prefix state",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(run(seed), got, "seed {seed} is not deterministic");
        seen.insert(got);
    }
    let mut whole = vec![BASE.to_vec()];
    for &op in &ops {
        let mut next = whole.last().unwrap().clone();
        apply(&mut next, op);
        whole.push(next);
    }
    assert!(seen.contains(BASE), "some crash must keep nothing");
    assert!(
        seen.contains(whole.last().unwrap()),
        "some crash must keep everything"
    );
    assert!(
        seen.iter().any(|s| !whole.contains(s)),
        "some crash must tear a write"
    );
    assert!(
        seen.len() >= 8,
        "torn writes should show up: only {} distinct outcomes",
        seen.len()
    );
}

#[test]
fn handles_mappings_and_locks_die_with_a_crash() {
    for mode in [
        CrashMode::ProcessKill,
        CrashMode::PowerLossDropUnsynced,
        CrashMode::PowerLossTorn { seed: 7 },
    ] {
        let sim = setup();
        durable_file(&sim, "/sim/a", &[0; 8]);
        let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
        // SAFETY: SimStorage maps nothing (see `map_mut`); the contract holds trivially.
        let mut region = unsafe { f.map_mut(8) }.unwrap();
        let lock = sim.try_lock(p("/sim/LOCK")).unwrap().expect("free");
        sim.crash(mode);

        assert_dead("read", f.read_at(&mut [0; 4], 0));
        assert_dead("write", f.write_all_at(b"x", 0));
        assert_dead("len", f.len());
        assert_dead("set_len", f.set_len(1));
        assert_dead("allocate", f.allocate(100));
        assert_dead("sync_data", f.sync_data());
        assert_dead("sync_all", f.sync_all());
        // SAFETY: as above.
        assert_dead("map_mut", unsafe { f.map_mut(8) });
        assert_dead("flush", region.flush());
        region.write(0, b"zz");
        assert_eq!(
            sim.read_file("/sim/a").unwrap(),
            [0; 8],
            "{mode:?}: dead mapping wrote"
        );

        // The restarted process can use everything again.
        let relock = sim.try_lock(p("/sim/LOCK")).unwrap();
        assert!(
            relock.is_some(),
            "{mode:?}: the crash must release the lock"
        );
        drop(lock); // the dead guard must not release the new holder's lock
        assert!(sim.try_lock(p("/sim/LOCK")).unwrap().is_none());
        drop((f, region));
        let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
        f.write_all_at(b"ok", 0).unwrap();
        assert_eq!(&sim.read_file("/sim/a").unwrap()[..2], b"ok");
    }
}

#[test]
fn fault_hook_sees_every_op_and_a_failed_op_changes_nothing() {
    let sim = setup();
    durable_file(&sim, "/sim/a", b"abc");
    let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    sim.set_fault_hook(move |op| {
        log.lock().push(op.clone());
        None
    });
    f.write_all_at(b"xyz", 7).unwrap();
    f.read_at(&mut [0; 2], 1).unwrap();
    sim.rename(p("/sim/a"), p("/sim/b")).unwrap();
    let want = |kind, path: &str, offset, len| SimOp {
        kind,
        path: path.into(),
        offset,
        len,
    };
    assert_eq!(
        *seen.lock(),
        [
            want(SimOpKind::Write, "/sim/a", 7, 3),
            want(SimOpKind::Read, "/sim/a", 1, 2),
            want(SimOpKind::Rename, "/sim/a", 0, 0)
        ]
    );
    sim.rename(p("/sim/b"), p("/sim/a")).unwrap();
    let content = sim.read_file("/sim/a").unwrap();

    sim.fail_when(SimOpKind::Write, "/sim/a", ErrorKind::Interrupted);
    assert_eq!(
        f.write_all_at(b"!!", 0).unwrap_err().kind(),
        ErrorKind::Interrupted
    );
    assert_eq!(sim.read_file("/sim/a").unwrap(), content);
    let other = sim.open(p("/sim/other"), OpenMode::Create).unwrap();
    other.write_all_at(b"fine", 0).unwrap(); // other paths are unaffected

    sim.fail_when(SimOpKind::SyncData, "", ErrorKind::Other);
    let syncs = sim.sync_count();
    assert!(f.sync_data().is_err());
    assert_eq!(
        (sim.sync_count(), sim.durable_len("/sim/a")),
        (syncs, Some(3))
    );

    for (kind, run) in [
        (
            SimOpKind::Rename,
            Box::new(|s: &SimStorage| s.rename(p("/sim/a"), p("/sim/z")))
                as Box<dyn Fn(&SimStorage) -> io::Result<()>>,
        ),
        (
            SimOpKind::RemoveFile,
            Box::new(|s| s.remove_file(p("/sim/a"))),
        ),
        (
            SimOpKind::Open,
            Box::new(|s| s.open(p("/sim/c"), OpenMode::Create).map(drop)),
        ),
        (
            SimOpKind::CreateDirAll,
            Box::new(|s| s.create_dir_all(p("/sim/dir"))),
        ),
        (SimOpKind::SyncDir, Box::new(|s| s.sync_dir(p("/sim")))),
    ] {
        sim.fail_when(kind, "/sim", ErrorKind::PermissionDenied);
        let before = (
            sim.paths(),
            sim.durable_paths(),
            sim.list_dir(p("/sim")).unwrap(),
        );
        assert_eq!(
            run(&sim).unwrap_err().kind(),
            ErrorKind::PermissionDenied,
            "{kind:?}"
        );
        assert_eq!(
            (
                sim.paths(),
                sim.durable_paths(),
                sim.list_dir(p("/sim")).unwrap()
            ),
            before,
            "{kind:?}"
        );
    }

    sim.clear_fault_hook();
    f.write_all_at(b"!!", 0).unwrap();
    f.sync_data().unwrap();
    assert_eq!(sim.durable_len("/sim/a"), Some(10));
}

#[test]
fn fault_hook_may_use_the_storage() {
    let sim = setup();
    let weak: Weak<SimStorage> = Arc::downgrade(&sim);
    sim.set_fault_hook(move |op| {
        let sim = weak.upgrade()?;
        // Fail the second write to a file: calls back into the storage while it runs.
        let has_data = sim.read_file(&op.path).is_some_and(|d| !d.is_empty());
        (op.kind == SimOpKind::Write && has_data).then(|| io::Error::other("second write"))
    });
    let f = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
    f.write_all_at(b"1", 0).unwrap();
    assert!(f.write_all_at(b"2", 1).is_err());
    assert_eq!(sim.read_file("/sim/a").unwrap(), b"1");
}

#[test]
fn capacity_fails_writes_with_storage_full_and_writes_nothing() {
    let sim = setup();
    sim.set_capacity(Some(10));
    let a = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
    a.write_all_at(b"12345678", 0).unwrap();
    a.write_all_at(b"9A", 8).unwrap();
    assert_eq!(sim.used_bytes(), 10);
    assert_eq!(
        a.write_all_at(b"B", 10).unwrap_err().kind(),
        ErrorKind::StorageFull
    );
    assert_eq!(sim.read_file("/sim/a").unwrap(), b"123456789A");
    a.write_all_at(b"ab", 0).unwrap(); // overwriting needs no new blocks

    let b = sim.open(p("/sim/b"), OpenMode::Create).unwrap();
    assert_eq!(b.allocate(1).unwrap_err().kind(), ErrorKind::StorageFull);
    assert_eq!(b.len().unwrap(), 0);
    b.set_len(100).unwrap(); // a hole costs nothing, but filling it does
    assert_eq!(
        b.write_all_at(b"x", 50).unwrap_err().kind(),
        ErrorKind::StorageFull
    );

    // An unlinked file keeps its blocks while open, like on POSIX.
    sim.remove_file(p("/sim/a")).unwrap();
    assert_eq!(sim.used_bytes(), 10);
    drop(a);
    assert_eq!(sim.used_bytes(), 0);
    b.allocate(10).unwrap();
    b.write_all_at(b"fits", 0).unwrap();
    assert_eq!(
        b.write_all_at(b"!", 99).unwrap_err().kind(),
        ErrorKind::StorageFull
    );
    sim.set_capacity(None);
    b.write_all_at(b"!", 99).unwrap();
}

#[test]
fn locks_conflict_and_release_on_drop() {
    let sim = setup();
    let guard = sim.try_lock(p("/sim/LOCK")).unwrap().expect("free");
    assert!(
        sim.exists(p("/sim/LOCK")).unwrap(),
        "try_lock creates the file"
    );
    assert!(sim.try_lock(p("/sim/LOCK")).unwrap().is_none());
    let other = sim.try_lock(p("/sim/OTHER")).unwrap();
    assert!(other.is_some(), "locks are per file");
    drop(guard);
    assert!(sim.try_lock(p("/sim/LOCK")).unwrap().is_some());
    assert_eq!(
        sim.try_lock(p("/missing/LOCK")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn mapped_writes_reach_the_file_but_are_durable_only_after_flush() {
    let sim = setup();
    durable_file(&sim, "/sim/idx", &[0; 16]);
    let f = sim.open(p("/sim/idx"), OpenMode::ReadWrite).unwrap();
    assert_eq!(
        // SAFETY: SimStorage maps nothing (see `map_mut`); the contract holds trivially.
        unsafe { f.map_mut(17) }.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    // SAFETY: SimStorage maps nothing (see `map_mut`); the contract holds trivially.
    let mut region = unsafe { f.map_mut(8) }.unwrap();
    region.write(2, b"xy");
    assert_eq!(&region.as_slice()[..4], b"\0\0xy");
    assert_eq!(&sim.read_file("/sim/idx").unwrap()[..4], b"\0\0xy");
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/sim/idx").unwrap(), [0; 16]);

    let f = sim.open(p("/sim/idx"), OpenMode::ReadWrite).unwrap();
    // SAFETY: SimStorage maps nothing (see `map_mut`); the contract holds trivially.
    let mut region = unsafe { f.map_mut(8) }.unwrap();
    region.write(6, b"zz");
    let syncs = sim.sync_count();
    region.flush().unwrap();
    assert_eq!(sim.sync_count(), syncs + 1);
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(&sim.read_file("/sim/idx").unwrap()[4..10], b"\0\0zz\0\0");

    let ro = sim.open(p("/sim/idx"), OpenMode::Read).unwrap();
    assert_eq!(
        // SAFETY: SimStorage maps nothing (see `map_mut`); the contract holds trivially.
        unsafe { ro.map_mut(8) }.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
}

#[test]
fn open_modes_follow_the_contract() {
    let sim = setup();
    for mode in [OpenMode::Read, OpenMode::ReadWrite] {
        assert_eq!(
            sim.open(p("/sim/a"), mode).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
    assert_eq!(
        sim.open(p("/nope/a"), OpenMode::Create).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        sim.open(p("/sim"), OpenMode::Read).unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
    let f = sim.open(p("/sim/a"), OpenMode::CreateNew).unwrap();
    f.write_all_at(b"kept", 0).unwrap();
    assert_eq!(
        sim.open(p("/sim/a"), OpenMode::CreateNew)
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        read_all(&*sim.open(p("/sim/a"), OpenMode::Create).unwrap()),
        b"kept"
    );
    assert_eq!(
        sim.open(p("/sim/a/b"), OpenMode::Create)
            .unwrap_err()
            .kind(),
        ErrorKind::NotADirectory
    );

    let ro = sim.open(p("/sim/a"), OpenMode::Read).unwrap();
    assert_eq!(
        ro.write_all_at(b"x", 0).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        ro.set_len(0).unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    let mut buf = [0; 8];
    assert_eq!(
        ro.read_at(&mut buf, 2).unwrap(),
        2,
        "short read at end of file"
    );
    assert_eq!(&buf[..2], b"pt");
    assert_eq!(ro.read_at(&mut buf, 100).unwrap(), 0);
}

#[test]
fn unlinked_file_lives_on_through_open_handles() {
    let sim = setup();
    durable_file(&sim, "/sim/a", b"abc");
    let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
    sim.remove_file(p("/sim/a")).unwrap();
    assert!(!sim.exists(p("/sim/a")).unwrap());
    f.write_all_at(b"d", 3).unwrap();
    assert_eq!(read_all(&*f), b"abcd");
    // A new file of the same name is a different inode.
    durable_file(&sim, "/sim/a", b"new");
    assert_eq!(read_all(&*f), b"abcd");
    assert_eq!(sim.read_file("/sim/a").unwrap(), b"new");
}

#[test]
fn a_hard_link_is_a_second_name_of_one_inode() {
    let sim = setup();
    durable_file(&sim, "/sim/a", b"sealed");
    sim.create_dir_all(p("/sim/copy")).unwrap();
    sim.sync_dir(p("/sim")).unwrap();
    sim.hard_link(p("/sim/a"), p("/sim/copy/a")).unwrap();
    // Both names reach the same data, also what is written through either later.
    assert_eq!(sim.read_file("/sim/copy/a").unwrap(), b"sealed");
    let f = sim.open(p("/sim/a"), OpenMode::ReadWrite).unwrap();
    f.write_all_at(b"!", 6).unwrap();
    assert_eq!(sim.read_file("/sim/copy/a").unwrap(), b"sealed!");
    f.set_len(6).unwrap();
    drop(f);
    // The new entry is durable only once its directory is synced.
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.paths(), paths(&["/sim/a"]));
    sim.hard_link(p("/sim/a"), p("/sim/copy/a")).unwrap();
    sim.sync_dir(p("/sim/copy")).unwrap();
    // Removing the first name leaves the data to the second, across a power loss too.
    sim.remove_file(p("/sim/a")).unwrap();
    sim.sync_dir(p("/sim")).unwrap();
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.paths(), paths(&["/sim/copy/a"]));
    assert_eq!(sim.read_file("/sim/copy/a").unwrap(), b"sealed");
    // Refused: an existing link name, a missing original, a directory.
    durable_file(&sim, "/sim/b", b"b");
    let kind = |r: io::Result<()>| r.unwrap_err().kind();
    let exists = sim.hard_link(p("/sim/b"), p("/sim/copy/a"));
    assert_eq!(kind(exists), ErrorKind::AlreadyExists);
    let missing = sim.hard_link(p("/sim/none"), p("/sim/copy/c"));
    assert_eq!(kind(missing), ErrorKind::NotFound);
    let dir = sim.hard_link(p("/sim/copy"), p("/sim/d"));
    assert_eq!(kind(dir), ErrorKind::PermissionDenied);
    assert_eq!(sim.read_file("/sim/copy/a").unwrap(), b"sealed");
    // A fault hook sees the link under its source, like a rename.
    sim.fail_when(SimOpKind::HardLink, "/sim/b", ErrorKind::CrossesDevices);
    let refused = sim.hard_link(p("/sim/b"), p("/sim/copy/b"));
    assert_eq!(kind(refused), ErrorKind::CrossesDevices);
    assert!(!sim.exists(p("/sim/copy/b")).unwrap());
}

#[test]
fn namespace_operations() {
    let sim = setup();
    sim.create_dir_all(p("/sim/d")).unwrap();
    durable_file(&sim, "/sim/x", b"x");
    durable_file(&sim, "/sim/y", b"y");
    let mut names = sim.list_dir(p("/sim")).unwrap();
    names.sort();
    assert_eq!(names, ["d", "x", "y"]);
    assert!(sim.list_dir(p("/")).unwrap().contains(&"sim".to_owned()));
    assert_eq!(
        sim.list_dir(p("/sim/x")).unwrap_err().kind(),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        sim.create_dir_all(p("/sim/x")).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    sim.create_dir_all(p("/sim/d")).unwrap(); // existing directories are fine

    sim.rename(p("/sim/x"), p("/sim/y")).unwrap();
    assert_eq!(sim.read_file("/sim/y").unwrap(), b"x");
    assert_eq!(sim.paths(), paths(&["/sim/y"]));
    assert_eq!(
        sim.rename(p("/sim/x"), p("/sim/z")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        sim.rename(p("/sim/y"), p("/sim/d")).unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        sim.remove_file(p("/sim/d")).unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        sim.remove_dir_all(p("/sim/y")).unwrap_err().kind(),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        sim.exists(p("/sim/../sim")).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(sim.exists(p("/")).unwrap());
}

#[test]
fn counters_count_ops_and_file_syncs() {
    let sim = setup();
    let (ops, syncs, dir_syncs) = (sim.op_count(), sim.sync_count(), sim.dir_sync_count());
    let f = sim.open(p("/sim/a"), OpenMode::Create).unwrap();
    f.write_all_at(b"x", 0).unwrap();
    f.sync_data().unwrap();
    f.sync_all().unwrap();
    sim.sync_dir(p("/sim")).unwrap();
    assert_eq!(sim.op_count(), ops + 5);
    assert_eq!(sim.sync_count(), syncs + 2);
    assert_eq!(sim.dir_sync_count(), dir_syncs + 1);
}

#[test]
fn write_file_plants_durable_bytes() {
    let sim = SimStorage::new();
    sim.write_file("/x/y/z", b"planted");
    assert_eq!(sim.op_count(), 0);
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/x/y/z").unwrap(), b"planted");

    let f = sim.open(p("/x/y/z"), OpenMode::ReadWrite).unwrap();
    f.write_all_at(b"P", 0).unwrap();
    sim.write_file("/x/y/z", b"corrupt"); // replaces the unsynced write too
    assert_eq!(read_all(&*f), b"corrupt");
    sim.crash(CrashMode::PowerLossDropUnsynced);
    assert_eq!(sim.read_file("/x/y/z").unwrap(), b"corrupt");
    assert!(format!("{sim:?}").starts_with("SimStorage { files: 1"));
}

#[test]
fn is_usable_from_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SimStorage>();
    let sim = setup();
    let log = sim.open(p("/sim/log"), OpenMode::Create).unwrap();
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    log.write_all_at(&[t; 4], (u64::from(t) * 100 + i) * 4)
                        .unwrap();
                    log.sync_data().unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    sim.sync_dir(p("/sim")).unwrap();
    sim.crash(CrashMode::PowerLossDropUnsynced);
    let data = sim.read_file("/sim/log").unwrap();
    assert_eq!(data.len(), 8 * 100 * 4);
    assert!(data
        .chunks(400)
        .enumerate()
        .all(|(t, c)| c.iter().all(|&b| usize::from(b) == t)));
}
