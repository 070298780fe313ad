//! `corral validate` as a user runs it: on the example jobs, on a file full of mistakes,
//! on duplicate job names across files, and on hostile input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `corral validate ARGS` from the repository root.
fn validate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("validate")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run corral")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn the_example_jobs_are_valid() {
    let output = validate(&["jobs/"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&output.stderr));
    let files: Vec<&str> = out.lines().collect();
    assert!(files.len() >= 7, "{out}");
    for line in &files {
        assert!(line.starts_with("OK jobs/") && line.ends_with("(1 job)"), "{line}");
    }
    for job in [
        "hello-batch",
        "report-cron",
        "pinned-compute",
        "shared-weighted",
        "background-preemptible",
        "memory-grow",
        "cleanup-hourly",
    ] {
        assert!(out.contains(&format!("OK jobs/{job}.yaml (1 job)")), "{job} missing from\n{out}");
    }
}

#[test]
fn every_mistake_in_a_bad_file_is_reported_with_its_line() {
    let output = validate(&["tests/fixtures/spec/bad.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    let expected = [
        "tests/fixtures/spec/bad.yaml:3:7: name: invalid name \"Nightly-ETL\": it contains the upper-case letter 'N'",
        "tests/fixtures/spec/bad.yaml:5:11: schedule: invalid cron schedule \"0 25 * * *\": ",
        "tests/fixtures/spec/bad.yaml:6:11: timezone: unknown time zone \"Europe/Berlln\"",
        "tests/fixtures/spec/bad.yaml:9:3: resources.cpu_weight: `cpus` and `cpu_weight` cannot both be set",
        "tests/fixtures/spec/bad.yaml:11:5: resources.memory.soft: `soft` (2Gi) must not be larger than `hard` (1Gi)",
        "tests/fixtures/spec/bad.yaml:13:21: oom.grow_to: invalid grow_to \"512Mi\": it must be larger than resources.memory.hard (1Gi)",
        "tests/fixtures/spec/bad.yaml:14:33: restart.backoff: invalid backoff \"5m..10s\"",
        "tests/fixtures/spec/bad.yaml:17:3: isolation.hostname: `hostname` requires the `uts` namespace",
        "tests/fixtures/spec/bad.yaml:19:35: isolation.mounts[0].target: invalid mount target \"data\"",
        "tests/fixtures/spec/bad.yaml:21:1: required field `command` is missing",
        "tests/fixtures/spec/bad.yaml:22:1: comand: unknown field `comand`; did you mean `command`?",
        "tests/fixtures/spec/bad.yaml:23:10: timeout: invalid duration \"90\": a number has no unit",
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{out}");
    for (line, prefix) in lines.iter().zip(expected) {
        assert!(line.starts_with(prefix), "expected {prefix:?}\n     got {line:?}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("12 problems in 1 of 1 file"), "{stderr}");
}

#[test]
fn a_job_name_defined_in_two_files_names_both() {
    let output = validate(&["tests/fixtures/spec/duplicates"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "OK tests/fixtures/spec/duplicates/a.yaml (1 job)\n\
         tests/fixtures/spec/duplicates/b.yaml:4:1: name: job \"etl\" is also defined at \
         tests/fixtures/spec/duplicates/a.yaml:1:1\n"
    );
}

#[test]
fn good_and_bad_files_together_fail_but_still_say_which_are_ok() {
    let output = validate(&["jobs/hello-batch.yaml", "tests/fixtures/spec/bad.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).starts_with("OK jobs/hello-batch.yaml (1 job)\n"));
}

#[test]
fn hostile_files_fail_fast_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let huge = dir.path().join("huge.yaml");
    std::fs::File::create(&huge).unwrap().set_len(1 << 30).unwrap();
    let mut bomb = String::from(
        "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for i in 1..=9 {
        let prev = if i == 1 { "a".to_owned() } else { format!("l{}", i - 1) };
        bomb += &format!("l{i}: &l{i} [{}]\n", vec![format!("*{prev}"); 9].join(", "));
    }
    let files = [
        huge,
        write("binary.yaml", b"\x7fELF\x02\x01\x01\0\0\0\0"),
        write("latin1.yaml", b"name: caf\xe9\n"),
        write("deep.yaml", format!("a: {}{}", "[".repeat(5000), "]".repeat(5000)).as_bytes()),
        write("bomb.yaml", bomb.as_bytes()),
        write("documents.yaml", "name: a\ncommand: [x]\n---\n".repeat(1000).as_bytes()),
    ];
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let output = validate(&args);
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    let line_for = |file: &Path| -> String {
        out.lines().find(|l| l.starts_with(file.to_str().unwrap())).unwrap_or_default().to_owned()
    };
    assert!(
        line_for(&files[0])
            .ends_with("file is 1073741824 bytes; files are limited to 1048576 bytes"),
        "{out}"
    );
    assert!(line_for(&files[1]).contains("binary data"), "{out}");
    assert!(line_for(&files[2]).contains("not UTF-8"), "{out}");
    assert!(line_for(&files[3]).contains("YAML: "), "{out}");
    assert!(line_for(&files[4]).contains("YAML: "), "{out}");
    assert!(line_for(&files[5]).contains("more than 256 documents"), "{out}");
}

#[test]
fn the_example_agent_config_points_at_the_example_jobs() {
    let config =
        corral::config::load(&repo().join("config/agent.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let jobs_dir = config.jobs_dir.canonicalize().unwrap();
    assert_eq!(jobs_dir, repo().join("jobs").canonicalize().unwrap());
    assert!(config.state_dir.starts_with(repo().join("config")), "{:?}", config.state_dir);
    assert!(config.listen.ip().is_loopback());
    let load = corral::spec::load_paths(&[&config.jobs_dir]);
    assert!(load.is_ok());
    assert!(load.jobs.len() >= 7);
}
