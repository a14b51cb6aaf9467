//! Bad input: one clear line on stderr naming the path, and the documented exit code; never a
//! panic. Usage errors are clap's, with exit code 2.

use predicates::prelude::*;

use crate::common::{annals, arg, assert_one_line_error, mixed_log, open, run};

#[test]
fn dump_of_a_path_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here.log");
    let ran = run(&["dump", arg(&missing)], "");
    assert_one_line_error(
        &ran,
        1,
        &[&format!(
            "annals: dump {}: no such file or directory",
            missing.display()
        )],
    );
    assert_eq!(ran.stdout, "");
}

#[test]
fn dump_of_files_that_are_not_segments() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "hello").unwrap();
    let ran = run(&["dump", arg(&notes)], "");
    assert_one_line_error(
        &ran,
        1,
        &[&format!("dump {}: not a segment file", notes.display())],
    );

    let fake = dir.path().join("00000000000000000000.log");
    std::fs::write(&fake, "this is a text file, not a record batch at all\n").unwrap();
    let ran = run(&["dump", arg(&fake)], "");
    assert_one_line_error(
        &ran,
        1,
        &[&format!(
            "dump {}: not a segment: it holds no record batch",
            fake.display()
        )],
    );
}

#[test]
fn dump_of_a_directory_without_segments() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run(&["dump", arg(dir.path())], "");
    assert_one_line_error(
        &ran,
        1,
        &["no segment files (<base offset>.log) in this directory"],
    );

    // A whole log directory: the error points at a partition directory.
    let log_dir = tempfile::tempdir().unwrap();
    let partition = mixed_log(log_dir.path());
    let ran = run(&["dump", arg(log_dir.path())], "");
    assert_one_line_error(
        &ran,
        1,
        &[
            "it looks like a log directory",
            &partition.display().to_string(),
        ],
    );
}

#[test]
fn owner_commands_refuse_a_directory_that_is_not_a_log_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), "meow").unwrap();
    for args in [
        vec!["maintain", arg(&other)],
        vec!["delete-records", arg(&other), "t", "0", "1"],
        vec!["produce", arg(&other), "t"],
        vec!["produce", arg(&other), "t", "--create-partitions", "1"],
    ] {
        let ran = run(&args, "x\n");
        assert_one_line_error(
            &ran,
            1,
            &[&format!("{}: not an annals log directory", other.display())],
        );
    }
    let names: Vec<_> = std::fs::read_dir(&other)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["cat.jpg"], "nothing written into it");

    let missing = dir.path().join("missing");
    let ran = run(&["maintain", arg(&missing)], "");
    assert_one_line_error(
        &ran,
        1,
        &[&format!(
            "maintain {}: no such log directory",
            missing.display()
        )],
    );
    assert!(!missing.exists(), "not created");
}

#[test]
fn maintain_of_a_locked_log_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let ran = run(&["maintain", arg(dir.path())], "");
    assert_one_line_error(&ran, 1, &["locked", &dir.path().display().to_string()]);
    log.close().unwrap();
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["dump"],
        vec!["dump", "--no-such-flag", "x"],
        vec!["frobnicate"],
        vec!["delete-records", "d", "t", "zero", "1"],
        vec!["produce", "d", "t", "--create-partitions", "0"],
        vec!["produce", "d", "t", "--key-separator", ""],
    ] {
        annals()
            .args(&args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::starts_with("error: "))
            .stderr(predicate::str::contains("panicked").not());
    }
}

#[test]
fn help_documents_every_command_with_an_example() {
    for command in ["dump", "produce", "maintain", "delete-records"] {
        let ran = run(&[command, "--help"], "");
        assert_eq!(ran.code, 0, "{command}: {}", ran.stderr);
        assert!(
            ran.stdout.contains(&format!("Example: annals {command}"))
                || ran.stdout.contains(&format!("| annals {command}")),
            "{command}: {}",
            ran.stdout
        );
        assert!(ran.stdout.contains("--json"), "{command}");
    }
    let ran = run(&["--help"], "");
    assert_eq!(ran.code, 0);
    assert!(ran.stdout.contains("3 damage found"), "{}", ran.stdout);
}

/// Without feature `kafka` the binary has no librdkafka, and no commands that would need it.
#[cfg(not(feature = "kafka"))]
#[test]
fn relay_and_mirror_exist_only_with_feature_kafka() {
    for command in ["relay", "mirror"] {
        let ran = run(&[command, "data", "--bootstrap", "127.0.0.1:9092"], "");
        assert_eq!(ran.code, 2, "{command}: {}", ran.stderr);
        assert!(
            ran.stderr
                .contains(&format!("unrecognized subcommand '{command}'")),
            "{}",
            ran.stderr
        );
    }
}
