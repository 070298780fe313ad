//! Dependencies between jobs (`after:`) on the real kernel with a real
//! agent: a chain runs in order, exactly once, across a `kill -9`; each
//! condition releases or fails its dependent with the reason on show; a
//! removed prerequisite fails its waiting dependent; a cycle is refused.

mod agent_harness;

use std::os::unix::fs::PermissionsExt;

use agent_harness::{job, secs, TestAgent};

/// A script that appends `line` to the shared `chain.log`, which every job
/// may write to (each runs under a uid of its own).
fn append(agent: &TestAgent, line: &str) -> String {
    let log = agent.data_file("chain.log");
    if !log.exists() {
        std::fs::write(&log, "").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    format!("echo {line} >> {}", log.display())
}

/// The phases a run went through, in order.
fn phases(agent: &TestAgent, run: &str) -> Vec<String> {
    agent.transitions(run).into_iter().map(|t| t.0).collect()
}

#[test]
fn a_chain_runs_in_order_exactly_once_across_a_kill_9() {
    let mut agent = TestAgent::started("");
    // The last step first: its prerequisite's file is not there yet, and it
    // waits for it, visibly.
    agent.write_job("c.yaml", &job("c", &append(&agent, "c"), "after: [b]\n"));
    agent.wait_phase("c-1", "blocked", secs(20));
    let ps = agent.corral_ok(&["ps"]);
    assert!(ps.contains("blocked (after b succeeded)"), "{ps}");

    let b = format!("{}; sleep 2; {}", append(&agent, "b-start"), append(&agent, "b-end"));
    agent.write_job("b.yaml", &job("b", &b, "after: [{job: a, when: succeeded}]\n"));
    agent.write_job("a.yaml", &job("a", &append(&agent, "a"), ""));
    agent.wait_phase("b-1", "running", secs(20));
    assert_eq!(agent.phase("c-1").as_deref(), Some("blocked"));

    // The agent dies while b runs; b ends while no agent is there.
    agent.kill9();
    agent.wait_for("b-1's shim to record its end", secs(20), || agent.exit_recorded("b-1"));
    agent.start();

    agent.wait_phase("c-1", "succeeded", secs(30));
    assert_eq!(agent.read_data("chain.log"), "a\nb-start\nb-end\nc\n");
    for name in ["a", "b", "c"] {
        assert_eq!(agent.runs_of(name), [format!("{name}-1")], "{name}: one run");
    }
    assert_eq!(phases(&agent, "b-1")[..2], ["blocked", "pending"]);
    assert_eq!(phases(&agent, "c-1")[..2], ["blocked", "pending"]);
    let released = &agent.transitions("c-1")[1].2;
    assert_eq!(released, "every job it comes after ended as asked; queued");
    // c was released only once b's run had ended.
    let b_end = agent.transitions("b-1").last().unwrap().1;
    let c_released = agent.transitions("c-1")[1].1;
    assert!(c_released >= b_end, "{c_released} < {b_end}");

    // A restart after the chain is done starts none of it again.
    agent.kill9();
    agent.start();
    agent.run_marker("after-restart");
    for name in ["a", "b", "c"] {
        assert_eq!(agent.runs_of(name).len(), 1, "{name} ran again after a restart");
    }
}

#[test]
fn each_condition_releases_or_fails_its_dependent_with_the_reason_shown() {
    let agent = TestAgent::started("");
    agent.write_job("bad.yaml", &job("bad", "sleep 0.5; exit 3", ""));
    agent.write_job("load.yaml", &job("load", "true", "after: [bad]\n"));
    agent.write_job("cleanup.yaml", &job("cleanup", "true", "after: [{job: bad, when: failed}]\n"));
    agent.write_job("report.yaml", &job("report", "true", "after: [{job: bad, when: ended}]\n"));
    agent.wait_phase("cleanup-1", "succeeded", secs(30));
    agent.wait_phase("report-1", "succeeded", secs(30));
    agent.wait_phase("load-1", "failed", secs(30));
    assert_eq!(phases(&agent, "load-1"), ["blocked", "failed"], "it never started");
    let shown = agent.corral_ok(&["show", "load-1"]);
    assert!(shown.contains("failed: dependency failed: bad-1 failed; it never started"), "{shown}");
    let (status, _, body) = agent.http_get("/v1/runs/load-1", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""failure":"dependency","detail":"bad-1 failed""#), "{body}");
    let events = agent.corral_ok(&["events"]);
    assert!(events.contains("dependency failed: bad-1 failed"), "{events}");

    // A condition the prerequisite's latest run already meets: at once.
    agent.write_job("late.yaml", &job("late", "true", "after: [{job: bad, when: ended}]\n"));
    agent.wait_phase("late-1", "succeeded", secs(30));

    // Waiting for a job not loaded shows on ps and the HTTP view.
    agent.write_job("orphan.yaml", &job("orphan", "true", "after: [missing]\n"));
    agent.wait_phase("orphan-1", "blocked", secs(20));
    let ps = agent.corral_ok(&["ps"]);
    assert!(ps.contains("blocked (after missing succeeded)"), "{ps}");
    let (_, _, body) = agent.http_get("/v1/runs/orphan-1", None);
    assert!(body.contains(r#""phase":{"phase":"blocked","after":"missing succeeded"}"#), "{body}");
    // The prerequisite comes: the dependent follows it.
    agent.write_job("missing.yaml", &job("missing", "true", ""));
    agent.wait_phase("orphan-1", "succeeded", secs(30));
}

#[test]
fn a_prerequisite_removed_before_it_ended_fails_its_waiting_dependent() {
    let agent = TestAgent::started("");
    agent.write_job("slow.yaml", &job("slow", "sleep 60", ""));
    agent.write_job("waiter.yaml", &job("waiter", "true", "after: [slow]\n"));
    agent.wait_phase("slow-1", "running", secs(20));
    agent.wait_phase("waiter-1", "blocked", secs(20));
    agent.remove_job("slow.yaml");
    agent.wait_phase("waiter-1", "failed", secs(30));
    let reason = agent.transitions("waiter-1").last().unwrap().2.clone();
    assert_eq!(
        reason,
        "failed: dependency failed: job slow was removed before its run ended as asked; \
         it never started"
    );
    agent.wait_phase("slow-1", "killed", secs(30));
}

#[test]
fn a_dependency_cycle_across_files_is_refused_naming_every_file() {
    let agent = TestAgent::started("");
    agent.write_job("one.yaml", &job("one", "true", "after: [two]\n"));
    agent.wait_phase("one-1", "blocked", secs(20));
    agent.write_job("two.yaml", &job("two", "true", "after: [one]\n"));
    agent.wait_for("the cycle reported", secs(20), || {
        agent.log_text().contains("dependency cycle: one (")
    });
    let log = agent.log_text();
    let line = log.lines().find(|l| l.contains("dependency cycle")).unwrap();
    assert!(line.contains("one.yaml:3:8") && line.contains("two.yaml:3:8"), "{line}");
    assert!(agent.runs_of("two").is_empty(), "a refused file adds no job");
    // `corral reload` lists the file not applied, and says so in its status.
    let out = agent.corral(&["reload"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("dependency cycle: one ("), "{stdout}");
}

#[test]
fn a_pipeline_step_runs_once_after_each_upstream_run_that_succeeds_even_across_a_kill_9() {
    let mut agent = TestAgent::started("");
    let flag = agent.data_file("fail-next");
    let extract = format!(
        "if [ -e {} ]; then exit 1; fi; sleep 1; {}",
        flag.display(),
        append(&agent, "extract")
    );
    // A schedule that does not fire during the test: its runs come from
    // `corral trigger`.
    agent.write_job("extract.yaml", &job("extract", &extract, "schedule: '0 0 1 1 *'\n"));
    agent.write_job("load.yaml", &job("load", &append(&agent, "load"), "after: [extract]\n"));
    // A third step, after the second: a pipeline step too.
    agent.write_job("publish.yaml", &job("publish", &append(&agent, "publish"), "after: [load]\n"));
    agent.sync_files("sync");
    assert!(agent.runs_of("load").is_empty(), "a pipeline step does not run when loaded");
    assert!(agent.runs_of("publish").is_empty());

    agent.corral_ok(&["trigger", "extract"]);
    agent.wait_phase("publish-1", "succeeded", secs(30));
    assert_eq!(agent.phase("load-1").as_deref(), Some("succeeded"));
    assert_eq!(agent.runs_of("extract"), ["extract-1"]);

    // An upstream run that fails starts nothing.
    std::fs::write(&flag, "").unwrap();
    agent.corral_ok(&["trigger", "extract"]);
    agent.wait_phase("extract-2", "failed", secs(30));
    std::fs::remove_file(&flag).unwrap();

    // The agent dies while the upstream runs, which ends while no agent is
    // there: the restarted agent starts the step for it, once.
    agent.corral_ok(&["trigger", "extract"]);
    agent.wait_phase("extract-3", "running", secs(30));
    agent.kill9();
    agent.wait_for("extract-3's shim to record its end", secs(20), || {
        agent.exit_recorded("extract-3")
    });
    agent.start();
    agent.wait_phase("publish-2", "succeeded", secs(30));

    // Another restart starts nothing more.
    agent.kill9();
    agent.start();
    agent.run_marker("after-restart");
    assert_eq!(agent.runs_of("load"), ["load-1", "load-2"]);
    assert_eq!(agent.runs_of("publish"), ["publish-1", "publish-2"]);
    assert_eq!(agent.read_data("chain.log"), "extract\nload\npublish\nextract\nload\npublish\n");
    let log = agent.log_text();
    assert!(log.contains("the pipeline step does not run after it: extract-2 failed"), "{log}");
}
