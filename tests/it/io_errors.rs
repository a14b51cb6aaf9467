//! Every I/O error a user sees names the operation and the path: a log opened on a regular
//! file, under a regular file, without permission, out of file descriptors (a real
//! `RLIMIT_NOFILE` in a child process) and on a full disk.

use crate::common;

use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Stdio};

use annals::storage::{SimOpKind, SimStorage};
use annals::{Error, Log, Record, TopicConfig};
use common::*;

/// `err` is an `Error::Io` whose message says "could not <op> <path>: ..." for a path that
/// starts with `under`, and whose kind is `kind` (when given).
fn assert_names_path(err: &Error, op: &str, under: &Path, kind: Option<ErrorKind>) {
    let text = err.to_string();
    match err {
        Error::Io {
            op: got_op,
            path: Some(path),
            ..
        } => {
            assert!(path.starts_with(under), "{text}: path {path:?}");
            assert_eq!(*got_op, op, "{text}");
            let want = format!("could not {op} {}: ", path.display());
            assert!(
                text.starts_with(&want),
                "{text:?} should start with {want:?}"
            );
        }
        other => panic!("expected an Io error naming a path, got {other:?}"),
    }
    if let Some(kind) = kind {
        assert_eq!(err.io_kind(), Some(kind), "{text}");
    }
}

#[test]
fn opening_a_log_on_a_regular_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a log").unwrap();

    let err = Log::open(&file).unwrap_err();
    assert_names_path(
        &err,
        "create directory",
        &file,
        Some(ErrorKind::AlreadyExists),
    );

    // A path below a regular file: ENOTDIR, the error a missing permission would give a
    // non-root user in the same place (tests run as root, which no mode bit stops).
    let below = file.join("log");
    let err = Log::open(&below).unwrap_err();
    assert_names_path(&err, "look up", &file, Some(ErrorKind::NotADirectory));
    assert!(err.to_string().contains("plain-file/log"), "{err}");
}

#[test]
fn permission_denied_names_the_file_and_the_operation() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, "/sim/log").open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    log.close().unwrap();

    // Reopening reads the partition's segment; the file system refuses.
    sim.fail_when(
        SimOpKind::Open,
        "00000000000000000000.log",
        ErrorKind::PermissionDenied,
    );
    let err = TestLog::sim(&sim, "/sim/log").try_open().unwrap_err();
    assert_names_path(
        &err,
        "open for reading",
        Path::new("/sim/log/t-0/00000000000000000000.log"),
        Some(ErrorKind::PermissionDenied),
    );
    sim.clear_fault_hook();

    // A metadata file, written at create_topic.
    let log = TestLog::sim(&sim, "/sim/log").open();
    sim.fail_when(SimOpKind::Open, "topics.meta", ErrorKind::PermissionDenied);
    let err = log.create_topic("u", TopicConfig::default()).unwrap_err();
    assert_names_path(
        &err,
        "open or create",
        Path::new("/sim/log/topics.meta.tmp"),
        Some(ErrorKind::PermissionDenied),
    );
}

#[test]
fn a_full_disk_names_the_segment_being_written() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, "/sim/log").open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&simple_records(0, 3)).unwrap();
    sim.set_capacity(Some(sim.used_bytes() + 100));
    // Same era as the records before it, so the append does not roll a segment first.
    let big = [Record::new(vec![7u8; 5000]).timestamp(1_700_000_000_000)];
    let err = p.append(&big).expect_err("no room for the batch");
    assert_names_path(
        &err,
        "write",
        Path::new("/sim/log/t-0/00000000000000000000.log"),
        Some(ErrorKind::StorageFull),
    );
    // A roll that cannot write the new segment's checkpoint names that file instead.
    let now = [Record::new(vec![7u8; 5000])];
    let err = p.append(&now).expect_err("no room for the checkpoint");
    assert_names_path(
        &err,
        "write",
        Path::new("/sim/log/t-0/partition.ckpt.tmp"),
        Some(ErrorKind::StorageFull),
    );
}

#[test]
fn a_failed_fsync_names_the_file() {
    let sim = SimStorage::new();
    let log = TestLog::sim(&sim, "/sim/log").open();
    log.create_topic("t", TopicConfig::default()).unwrap();
    let p = log.partition("t", 0).unwrap();
    p.append(&simple_records(0, 3)).unwrap();
    sim.set_fault_hook(|op| {
        (op.kind == SimOpKind::SyncData).then(|| std::io::Error::other("injected EIO"))
    });
    let err = p.sync().unwrap_err();
    assert_names_path(
        &err,
        "sync",
        Path::new("/sim/log/t-0/00000000000000000000.log"),
        Some(ErrorKind::Other),
    );
}

const ENV_EMFILE_DIR: &str = "ANNALS_TEST_EMFILE_DIR";
const PARTITIONS: u32 = 40;

/// The child side of the descriptor test. Does nothing unless the parent set the variable;
/// then it opens the log under the tiny descriptor limit its shell gave it and prints the
/// error.
#[test]
fn emfile_child() {
    let Some(dir) = std::env::var_os(ENV_EMFILE_DIR) else {
        return;
    };
    match Log::builder(&dir).maintenance_interval(None).open() {
        Ok(_) => println!("RESULT opened"),
        Err(e) => {
            let raw = match &e {
                Error::Io { source, .. } => source.raw_os_error(),
                _ => None,
            };
            println!("RESULT {raw:?} {e}");
        }
    }
}

/// Running out of file descriptors for real: a child process whose shell set `ulimit -n` below
/// what the log's 40 partitions need opens it. The error names the file it could not open.
#[test]
fn too_many_open_files_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::builder(dir.path())
            .maintenance_interval(None)
            .open()
            .unwrap();
        log.create_topic("t", TopicConfig::default().partitions(PARTITIONS))
            .unwrap();
        log.close().unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    // Three descriptors per partition are needed (a segment and its two indexes); 32 is
    // enough for the test harness and well short of that.
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"ulimit -n 32 && exec "$0" --exact "$1" --nocapture --test-threads=1"#)
        .arg(&exe)
        .arg(common::test_path(module_path!(), "emfile_child"))
        .env(ENV_EMFILE_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, rest)| rest))
        .unwrap_or_else(|| {
            panic!(
                "child printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    // EMFILE is 24 on Linux.
    let message = line
        .strip_prefix("Some(24) ")
        .unwrap_or_else(|| panic!("expected EMFILE, got {line}"));
    assert!(message.starts_with("could not "), "{message}");
    let partition_dirs = dir.path().join("t-");
    assert!(
        message.contains(&*partition_dirs.to_string_lossy()),
        "{message} should name a file in a partition directory"
    );
    assert!(message.contains("Too many open files"), "{message}");
}
