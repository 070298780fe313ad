//! `corral schedule` as a user runs it: on the example jobs, across clock changes, with the
//! agent configuration's default zone, and on mistakes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `corral schedule ARGS` from the repository root.
fn schedule(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("schedule")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run corral")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// The run lines of a job's block: local time and UTC, with any note.
fn runs<'a>(out: &'a str, job: &str) -> Vec<&'a str> {
    let header = format!("{job}: ");
    out.lines()
        .skip_while(|line| !line.starts_with(&header))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter(|line| line.contains("Z"))
        .map(str::trim)
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_example_jobs() {
    let output = schedule(&["jobs/", "--after", "2026-03-27T16:00:00Z", "--count", "3"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert!(
        out.contains(
            "cleanup-hourly: \"15 * * * *\" in UTC, the default zone (jobs/cleanup-hourly.yaml:"
        ),
        "{out}"
    );
    assert_eq!(
        runs(&out, "cleanup-hourly"),
        [
            "Fri 2026-03-27 16:15:00 UTC   2026-03-27T16:15:00Z",
            "Fri 2026-03-27 17:15:00 UTC   2026-03-27T17:15:00Z",
            "Fri 2026-03-27 18:15:00 UTC   2026-03-27T18:15:00Z",
        ]
    );
    // Weekday office hours in Berlin: Friday 17:00 CET is 16:00 UTC, so the rest of Friday,
    // then Monday, an hour closer to UTC after the clocks changed on Sunday.
    assert!(out.contains("report-cron: \"*/5 8-18 * * MON-FRI\" in Europe/Berlin ("), "{out}");
    assert!(out.contains("  each run starts "), "{out}");
    assert!(out.contains(" after its time on this machine (jitter up to 10s)"), "{out}");
    assert_eq!(
        runs(&out, "report-cron"),
        [
            "Fri 2026-03-27 17:05:00 CET   2026-03-27T16:05:00Z",
            "Fri 2026-03-27 17:10:00 CET   2026-03-27T16:10:00Z",
            "Fri 2026-03-27 17:15:00 CET   2026-03-27T16:15:00Z",
        ]
    );
    // One-shot jobs have no schedule to show.
    assert!(!out.contains("hello-batch"), "{out}");
}

#[test]
fn one_job_in_another_zone() {
    let output = schedule(&[
        "jobs/",
        "--job",
        "cleanup-hourly",
        "--timezone",
        "America/New_York",
        "--after",
        "2026-11-01T04:00:00Z",
        "--count",
        "4",
    ]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert!(!out.contains("report-cron"), "{out}");
    assert_eq!(
        runs(&out, "cleanup-hourly"),
        [
            "Sun 2026-11-01 00:15:00 EDT   2026-11-01T04:15:00Z",
            "Sun 2026-11-01 01:15:00 EDT   2026-11-01T05:15:00Z",
            "Sun 2026-11-01 01:15:00 EST   2026-11-01T06:15:00Z  (the clock went back: this time again)",
            "Sun 2026-11-01 02:15:00 EST   2026-11-01T07:15:00Z",
        ]
    );
}

#[test]
fn a_time_the_clock_skips_runs_once_right_after() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "backup.yaml",
        "name: backup\ncommand: [/bin/true]\nschedule: '30 2 * * *'\ntimezone: Europe/Berlin\n",
    );
    let output = schedule(&[
        dir.path().to_str().unwrap(),
        "--after",
        "2026-03-28T00:00:00Z",
        "--count",
        "3",
    ]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert_eq!(
        runs(&out, "backup"),
        [
            "Sat 2026-03-28 02:30:00 CET   2026-03-28T01:30:00Z",
            "Sun 2026-03-29 03:00:00 CEST  2026-03-29T01:00:00Z  (its time was skipped by the clock change; runs once right after)",
            "Mon 2026-03-30 02:30:00 CEST  2026-03-30T00:30:00Z",
        ]
    );
}

#[test]
fn the_default_zone_comes_from_the_agent_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "agent.yaml", "default_timezone: Asia/Tokyo\n");
    let output = schedule(&[
        "jobs/cleanup-hourly.yaml",
        "--config",
        config.to_str().unwrap(),
        "--after",
        "2026-06-01T00:00:00Z",
        "--count",
        "1",
    ]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}{}", stderr(&output));
    assert!(out.contains("in Asia/Tokyo, the default zone"), "{out}");
    assert_eq!(
        runs(&out, "cleanup-hourly"),
        ["Mon 2026-06-01 09:15:00 JST   2026-06-01T00:15:00Z"]
    );
    // --timezone wins over the configuration.
    let output = schedule(&[
        "jobs/cleanup-hourly.yaml",
        "--config",
        config.to_str().unwrap(),
        "--timezone",
        "UTC",
        "--after",
        "2026-06-01T00:00:00Z",
        "--count",
        "1",
    ]);
    assert_eq!(
        runs(&stdout(&output), "cleanup-hourly"),
        ["Mon 2026-06-01 00:15:00 UTC   2026-06-01T00:15:00Z"]
    );
    // The repository's example configuration works as it is.
    let output = schedule(&["jobs/", "--config", "config/agent.yaml", "--count", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn mistakes_are_reported() {
    let output = schedule(&["jobs/", "--job", "hello-batch"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("job hello-batch has no schedule"), "{}", stderr(&output));

    let output = schedule(&["jobs/", "--job", "no-such-job"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no job named no-such-job"), "{}", stderr(&output));

    let output = schedule(&["jobs/", "--after", "yesterday"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("expected RFC 3339"), "{}", stderr(&output));

    let output = schedule(&["jobs/", "--timezone", "Mars/Olympus"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unknown time zone"), "{}", stderr(&output));

    // A broken file is reported; the good ones are still shown.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yaml", "name: good\ncommand: [/bin/true]\nschedule: '@daily'\n");
    write(dir.path(), "never.yaml", "name: never\ncommand: [/bin/true]\nschedule: '0 0 30 2 *'\n");
    let output = schedule(&[
        dir.path().to_str().unwrap(),
        "--after",
        "2026-01-01T00:00:00Z",
        "--count",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(
            "never.yaml:3:11: schedule: invalid cron schedule \"0 0 30 2 *\": it never fires"
        ),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        runs(&stdout(&output), "good"),
        ["Fri 2026-01-02 00:00:00 UTC   2026-01-02T00:00:00Z"]
    );
}
