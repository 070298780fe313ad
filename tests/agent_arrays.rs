//! Arrays and `corral submit` against a real agent: submitted jobs run and
//! stay on record, `--set` changes them (and a bad one is refused with its
//! reason), an array never has more runs under way than its cap and runs
//! every index exactly once with its variables, `corral kill ARRAY` ends
//! every run, and a `kill -9` of the agent in the middle of an array
//! neither loses an index nor runs one twice.
//!
//! Each index writes `start I COUNT` to a shared log when it starts and
//! `end I` before it exits; the order of those lines, not their timing, is
//! what the tests check. Runs that must stay under way wait for a `go` file
//! the test creates.

mod agent_harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_harness::{job, secs, TestAgent};

/// Writes a job file outside the jobs directory, for `corral submit`.
fn submit_file(agent: &TestAgent, name: &str, text: &str) -> PathBuf {
    let path = agent.root.path().join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A job whose run logs its start with its index and count, waits for the
/// `go` file (when `wait`), then logs its end.
fn index_job(agent: &TestAgent, name: &str, wait: bool, extra: &str) -> String {
    let data = agent.data.display();
    let wait = if wait {
        format!("while [ ! -e {data}/go ]; do sleep 0.05; done; ")
    } else {
        String::new()
    };
    job(
        name,
        &format!(
            "echo \"start $CORRAL_ARRAY_INDEX $CORRAL_ARRAY_COUNT $CORRAL_ARRAY_ID\" >> {data}/log; \
             {wait}echo \"end $CORRAL_ARRAY_INDEX\" >> {data}/log"
        ),
        extra,
    )
}

/// The log's lines as (word, index) pairs, in order.
fn log_lines(agent: &TestAgent) -> Vec<(String, String)> {
    agent
        .read_data("log")
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            (words.next().unwrap_or("").to_owned(), words.next().unwrap_or("").to_owned())
        })
        .collect()
}

fn starts(agent: &TestAgent) -> usize {
    log_lines(agent).iter().filter(|(w, _)| w == "start").count()
}

/// Checks the log: every index of `indices` started once and ended, and
/// no prefix of it has more than `cap` runs between their start and end.
fn check_log(agent: &TestAgent, indices: &[u32], count: usize, array: &str, cap: usize) {
    let text = agent.read_data("log");
    let mut under_way = 0usize;
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "start" => {
                assert_eq!(words[2], count.to_string(), "CORRAL_ARRAY_COUNT in {line:?}");
                assert_eq!(words[3], array, "CORRAL_ARRAY_ID in {line:?}");
                *started.entry(words[1].to_owned()).or_default() += 1;
                under_way += 1;
                assert!(under_way <= cap, "more than {cap} under way at once:\n{text}");
            }
            "end" => under_way -= 1,
            other => panic!("unexpected line {other:?} in\n{text}"),
        }
    }
    let expected: BTreeMap<String, usize> = indices.iter().map(|i| (i.to_string(), 1)).collect();
    assert_eq!(started, expected, "every index started exactly once:\n{text}");
}

fn release(agent: &TestAgent) {
    std::fs::write(agent.data_file("go"), "").unwrap();
}

fn wait_all(agent: &TestAgent, job: &str, n: usize, phase: &str) {
    agent.wait_for(&format!("{n} runs of {job} {phase}"), secs(90), || {
        let runs = agent.runs_of(job);
        runs.len() == n && runs.iter().all(|r| agent.phase(r).as_deref() == Some(phase))
    });
}

#[test]
fn a_submitted_job_runs_and_shows_in_ps_show_and_its_history() {
    let agent = TestAgent::started("");
    let file = submit_file(&agent, "adhoc", &index_job(&agent, "adhoc", true, ""));
    let answer = agent.corral_ok(&["submit", file.to_str().unwrap()]);
    assert_eq!(answer.trim(), "submitted adhoc: run adhoc-1");
    agent.wait_phase("adhoc-1", "running", secs(30));

    let table = agent.corral_ok(&["ps"]);
    let line = table.lines().find(|l| l.contains("adhoc-1")).expect("adhoc-1 listed");
    assert!(line.starts_with("adhoc ") && line.contains("running"), "{table}");
    // Not an array: no index, no array in the JSON.
    let json: serde_json::Value =
        serde_json::from_str(&agent.corral_ok(&["ps", "--json"])).unwrap();
    let row = json.as_array().unwrap().iter().find(|r| r["run"] == "adhoc-1").unwrap();
    assert!(row.get("array").is_none(), "{row}");

    release(&agent);
    agent.wait_phase("adhoc-1", "succeeded", secs(30));
    let shown = agent.corral_ok(&["show", "adhoc"]);
    assert!(shown.contains("adhoc-1") && shown.contains("succeeded"), "{shown}");
    // The history is the store's, as for any run.
    let phases: Vec<String> = agent.transitions("adhoc-1").into_iter().map(|t| t.0).collect();
    assert_eq!(phases.first().map(String::as_str), Some("pending"));
    assert!(phases.contains(&"running".to_owned()), "{phases:?}");
    // Not in the jobs directory, and not taken for a job removed from it.
    assert!(std::fs::read_dir(&agent.jobs).unwrap().next().is_none());
    // Its name is free again once its runs are over.
    std::fs::remove_file(agent.data_file("log")).unwrap();
    let again = agent.corral_ok(&["submit", file.to_str().unwrap()]);
    assert_eq!(again.trim(), "submitted adhoc: run adhoc-2");
    agent.wait_phase("adhoc-2", "succeeded", secs(30));
}

#[test]
fn set_changes_the_submitted_job_and_a_bad_one_is_refused_with_its_reason() {
    let agent = TestAgent::started("");
    let data = agent.data.display().to_string();
    let file = submit_file(
        &agent,
        "greet",
        &job("greet", &format!("echo \"$WORD\" > {data}/word"), "priority: 40\n"),
    );
    let path = file.to_str().unwrap();
    agent.corral_ok(&["submit", path, "--set", "env.WORD=hello", "--set", "priority=80"]);
    agent.wait_phase("greet-1", "succeeded", secs(30));
    assert_eq!(agent.read_data("word").trim(), "hello");
    // The version on record is the overridden one.
    let meta: String = agent
        .db()
        .unwrap()
        .query_row("SELECT spec_meta FROM runs WHERE id = 'greet-1'", [], |r| r.get(0))
        .unwrap();
    assert!(meta.contains("\"priority\":80"), "{meta}");

    // Refused before anything is sent: the override is named.
    let bad = agent.corral(&["submit", path, "--set", "priority=high"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--set priority=high: priority: expected an integer"), "{stderr}");
    let typo = agent.corral(&["submit", path, "--set", "prioirty=3"]);
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success() && stderr.contains("did you mean `priority`"), "{stderr}");
    let array = agent.corral(&["submit", path, "--array", "5-1"]);
    let stderr = String::from_utf8_lossy(&array.stderr);
    assert!(!array.status.success() && stderr.contains("ends before it starts"), "{stderr}");
    // A file the socket would not take in one request line.
    let big = submit_file(
        &agent,
        "big",
        &format!("{}\n{}", "# padding ".repeat(7000), job("big", "true", "")),
    );
    let refused = agent.corral(&["submit", big.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("too large to submit"), "{stderr}");
    assert!(agent.runs_of("big").is_empty());
    assert_eq!(agent.runs_of("greet").len(), 1, "nothing refused was recorded");

    // A name the jobs directory uses is refused by the agent.
    agent.write_job("dirjob.yaml", &job("dirjob", "true", ""));
    agent.wait_phase("dirjob-1", "succeeded", secs(30));
    let taken = agent.corral(&["submit", path, "--set", "name=dirjob"]);
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(
        !taken.status.success() && stderr.contains("dirjob is a job of the jobs directory"),
        "{stderr}"
    );
}

#[test]
fn an_array_runs_every_index_once_never_more_than_its_cap_at_once() {
    let agent = TestAgent::started("");
    let file = submit_file(&agent, "sweep", &index_job(&agent, "sweep", true, ""));
    let answer = agent.corral_ok(&["submit", file.to_str().unwrap(), "--array", "0-14:2%2"]);
    assert_eq!(answer.trim(), "submitted array sweep (0-14:2%2): 8 runs, sweep-1 to sweep-8");
    agent.wait_for("two indices started", secs(60), || starts(&agent) == 2);
    // The rest wait for the cap, and say so.
    agent.wait_for("ps to show the array", secs(20), || {
        let table = agent.corral_ok(&["ps"]);
        table.lines().any(|l| {
            l.starts_with("sweep ")
                && l.contains("array: 8 runs")
                && l.contains("2 running")
                && l.contains("6 pending (array limit 2)")
        })
    });
    // Metrics: the waiting indices are counted per array, with no series
    // of their own.
    agent.wait_for("the array's counts in the scrape", secs(20), || {
        let (_, _, scrape) = agent.http_get("/metrics", None);
        scrape.contains("corral_array_runs{array=\"sweep\",state=\"pending\"} 6")
            && scrape.contains("corral_array_runs{array=\"sweep\",state=\"running\"} 2")
    });
    let (_, _, scrape) = agent.http_get("/metrics", None);
    assert!(!scrape.contains("run=\"sweep-8\""), "a waiting index has no series:\n{scrape}");
    let expanded = agent.corral_ok(&["ps", "sweep"]);
    assert_eq!(expanded.lines().filter(|l| l.starts_with("sweep ")).count(), 8, "{expanded}");
    assert!(expanded.contains("sweep-8 [14]"), "{expanded}");
    let json: serde_json::Value =
        serde_json::from_str(&agent.corral_ok(&["ps", "--json"])).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.iter().filter(|r| r["array"] == "sweep").count(), 8, "{json}");
    assert!(rows.iter().any(|r| r["array_index"] == 14));

    release(&agent);
    wait_all(&agent, "sweep", 8, "succeeded");
    check_log(&agent, &[0, 2, 4, 6, 8, 10, 12, 14], 8, "sweep", 2);
}

#[test]
fn an_array_in_the_jobs_directory_runs_each_index_once() {
    let agent = TestAgent::started("");
    agent.write_job(
        "grid.yaml",
        &index_job(&agent, "grid", false, "array: {indices: '1,3,5-7', parallel: 3}\n"),
    );
    wait_all(&agent, "grid", 5, "succeeded");
    check_log(&agent, &[1, 3, 5, 6, 7], 5, "grid", 3);
    // Reading the same file again asks for nothing new.
    agent.run_marker("after");
    assert_eq!(agent.runs_of("grid").len(), 5);

    // The example in jobs/: indices 0, 2, 4, 6, 8, in index order.
    agent.write_job("array-sweep.yaml", include_str!("../jobs/array-sweep.yaml"));
    wait_all(&agent, "array-sweep", 5, "succeeded");
    let out = agent.corral_ok(&["logs", "array-sweep-5"]);
    assert_eq!(out, "index 8 of 5: 64\n");
}

#[test]
fn kill_of_an_array_ends_its_runs_and_the_pending_ones_never_start() {
    let agent = TestAgent::started("");
    let file = submit_file(&agent, "stopme", &index_job(&agent, "stopme", true, ""));
    agent.corral_ok(&["submit", file.to_str().unwrap(), "--array", "0-5%2"]);
    agent.wait_for("two indices started", secs(60), || starts(&agent) == 2);
    let answer = agent.corral_ok(&["kill", "stopme"]);
    assert_eq!(answer.trim(), "stopme: 6 runs are being stopped");
    wait_all(&agent, "stopme", 6, "killed");
    let ran: usize = agent
        .runs_of("stopme")
        .iter()
        .filter(|r| agent.transitions(r).iter().any(|t| t.0 == "running"))
        .count();
    assert_eq!(ran, 2, "only the two under way ever ran");
    assert_eq!(starts(&agent), 2);
    let none = agent.corral(&["kill", "stopme"]);
    assert!(!none.status.success(), "nothing left to kill");
}

#[test]
fn kill_9_in_the_middle_of_an_array_loses_no_index_and_runs_none_twice() {
    let mut agent = TestAgent::started("");
    let file = submit_file(&agent, "durable", &index_job(&agent, "durable", true, ""));
    agent.corral_ok(&["submit", file.to_str().unwrap(), "--array", "0-5%2"]);
    agent.wait_for("two indices started", secs(60), || starts(&agent) == 2);
    agent.kill9();
    agent.start();
    // The restarted agent knows the submitted job from the store alone.
    agent.wait_for("the runs re-adopted", secs(30), || {
        agent.log_text().matches("re-adopting run").count() >= 6
    });
    release(&agent);
    wait_all(&agent, "durable", 6, "succeeded");
    check_log(&agent, &[0, 1, 2, 3, 4, 5], 6, "durable", 2);
    assert!(!Path::new(&agent.jobs.join("durable.yaml")).exists());
}

#[test]
fn kill_9_in_the_middle_of_an_array_of_the_jobs_directory_runs_each_index_once() {
    let mut agent = TestAgent::started("");
    agent.write_job(
        "grid.yaml",
        &index_job(&agent, "grid", true, "array: {indices: 0-4, parallel: 2}\n"),
    );
    agent.wait_for("two indices started", secs(60), || starts(&agent) == 2);
    agent.kill9();
    agent.start();
    // Its runs learn their spec from the job file again; none is added.
    agent.run_marker("after");
    assert_eq!(agent.runs_of("grid").len(), 5);
    release(&agent);
    wait_all(&agent, "grid", 5, "succeeded");
    check_log(&agent, &[0, 1, 2, 3, 4], 5, "grid", 2);
}

#[test]
fn a_changed_array_file_replaces_the_array_and_a_removed_one_stops_it() {
    let agent = TestAgent::started("");
    agent.write_job(
        "grid.yaml",
        &index_job(&agent, "grid", true, "array: {indices: 0-3, parallel: 1}\n"),
    );
    agent.wait_for("one index started", secs(60), || starts(&agent) == 1);
    // A new version: the old runs still under way stop, the new array starts.
    agent.write_job(
        "grid.yaml",
        &index_job(&agent, "grid", true, "array: {indices: 10-12, parallel: 1}\npriority: 60\n"),
    );
    agent.wait_for("the old array stopped", secs(60), || {
        let runs = agent.runs_of("grid");
        runs.len() == 7 && runs[..4].iter().all(|r| agent.phase(r).as_deref() == Some("killed"))
    });
    agent.wait_for("the new array's first index started", secs(60), || starts(&agent) == 2);
    let firsts: Vec<(String, String)> = log_lines(&agent);
    assert_eq!(firsts[1], ("start".to_owned(), "10".to_owned()), "{firsts:?}");
    // Removed: every run of it stops; the waiting ones never start. (The
    // store keeps the newest array's indices; the older ones may be pruned.)
    agent.remove_job("grid.yaml");
    agent.wait_for("the new array stopped", secs(60), || {
        ["grid-5", "grid-6", "grid-7"].iter().all(|r| agent.phase(r).as_deref() == Some("killed"))
    });
    assert_eq!(starts(&agent), 2);
}
