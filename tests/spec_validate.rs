//! `corral validate` as a user runs it: on the example jobs, on a file full of mistakes,
//! on duplicate job names across files, and on hostile input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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
    assert!(files.len() >= 8, "{out}");
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
        "heartbeat",
        "pipeline-extract",
        "pipeline-load",
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
    let rules = corral::watch::LoadRules {
        files: corral::watch::policy::Rules::checking_as(nix::unistd::geteuid()),
        admission: Some(config.admission()),
    };
    let load = corral::watch::load_paths(&[&config.jobs_dir], &rules);
    assert!(load.is_ok());
    assert!(load.jobs.len() >= 7);
}

/// Runs `corral validate ARGS`, killing it if it has not finished within
/// `limit`: a hang is a failure, not a stuck test run.
fn validate_within(limit: Duration, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("validate")
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run corral");
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "corral validate {args:?} still running after {limit:?}; stdout:\n{}",
                stdout(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    (child.wait_with_output().unwrap(), elapsed)
}

/// A marker the tests look for in corral's output; it must never appear.
const MARKER: &str = "MARKER-7f3a9c-must-not-be-printed";

/// A jobs directory with a fifo named like a job file and a symlink to a
/// file outside it whose text (invalid YAML, as /etc/shadow is) holds the marker.
fn hostile_dir() -> (tempfile::TempDir, tempfile::TempDir) {
    let jobs = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("shadow");
    std::fs::write(&secret, format!("root:{MARKER}:19000:0:99999:7:::\n")).unwrap();
    nix::unistd::mkfifo(
        &jobs.path().join("x.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, jobs.path().join("link.yaml")).unwrap();
    (jobs, outside)
}

#[test]
fn a_fifo_is_refused_at_once_given_alone_or_in_a_directory() {
    let (jobs, _outside) = hostile_dir();
    let fifo = jobs.path().join("x.yaml");
    for arg in [fifo.to_str().unwrap(), jobs.path().to_str().unwrap()] {
        let (output, elapsed) = validate_within(Duration::from_secs(20), &[arg]);
        assert_eq!(output.status.code(), Some(1));
        let out = stdout(&output);
        let line = out.lines().find(|l| l.contains("x.yaml")).unwrap_or_default();
        assert!(
            line.ends_with("x.yaml: refused: it is a fifo, not a regular file"),
            "{arg}: {out}"
        );
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    }
}

#[test]
fn a_symlink_out_of_the_directory_is_refused_unread() {
    let (jobs, outside) = hostile_dir();
    let link = jobs.path().join("link.yaml");
    for arg in [link.to_str().unwrap(), jobs.path().to_str().unwrap()] {
        let (output, _) = validate_within(Duration::from_secs(20), &[arg]);
        assert_eq!(output.status.code(), Some(1));
        let out = stdout(&output);
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!out.contains(MARKER) && !err.contains(MARKER), "{out}{err}");
        let line = out.lines().find(|l| l.contains("link.yaml")).unwrap_or_default();
        let target = outside.path().canonicalize().unwrap().join("shadow");
        assert!(
            line.ends_with(&format!(
                "link.yaml: refused: it is a symlink to {}, outside the jobs directory",
                target.display()
            )),
            "{arg}: {out}"
        );
    }
    // A link to a job file in the same directory is read, as the agent reads it.
    std::fs::write(jobs.path().join("real.yml"), "name: a\ncommand: [/bin/true]\n").unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("real.yml", &link).unwrap();
    let output = validate(&[link.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}

#[test]
fn the_agents_admission_rules_apply_and_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("name: {}\ncommand: [/bin/true]\n{text}", &name[..1]))
            .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let root = write("r.yaml", "user: root\n");
    let zero = write("z.yaml", "user: '0'\n");
    let shadow = write("s.yaml", "group: shadow\n");
    let gid0 = write("g.yaml", "group: '0'\n");
    let shared = write("n.yaml", "isolation:\n  namespaces: []\n");
    let files = [&root, &zero, &shadow, &gid0, &shared].map(String::as_str);

    let output = validate(&files);
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("admission rules of the built-in defaults: root jobs refused"), "{err}");
    let expected = [
        format!("{root}:3:7: user: it would run as root"),
        format!("{zero}:3:7: user: it would run as root"),
        format!("{shadow}:3:8: group: group \"shadow\" is privileged"),
        format!("{gid0}:3:8: group: group \"0\" is privileged"),
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected.len() + 1, "{out}");
    for (line, prefix) in lines.iter().zip(&expected) {
        assert!(line.starts_with(prefix.as_str()), "expected {prefix:?}\n     got {line:?}");
    }
    assert_eq!(lines[4], format!("OK {shared} (1 job)"));
    // By default a job without `user` has a uid of its own: no pid namespace
    // exposes it to nobody. A shared default_user brings the rule back.
    assert!(err.contains("default_user dynamic (a uid of its own per job"), "{err}");
    let shared_config = dir.path().join("shared.conf");
    std::fs::write(&shared_config, "default_user: nobody\n").unwrap();
    let output = validate(&["--config", shared_config.to_str().unwrap(), &shared]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output)
            .starts_with(&format!("{shared}:4:15: isolation.namespaces: without a pid namespace")),
        "{}",
        stdout(&output)
    );

    let config = dir.path().join("agent.conf");
    std::fs::write(
        &config,
        "allow_root_jobs: true\nallow_shared_uid_without_pid_namespace: true\n",
    )
    .unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend(files);
    let output = validate(&args);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{}{err}", stdout(&output));
    assert!(err.contains("root jobs and privileged groups allowed"), "{err}");
    assert!(err.contains(config.to_str().unwrap()), "{err}");
}
