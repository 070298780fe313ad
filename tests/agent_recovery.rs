//! Crash recovery on the real kernel: kill -9 the agent during runs, start
//! it again: nothing lost, nothing run twice. One agent per state directory;
//! a damaged store is refused with a clear message.

mod agent_harness;

use std::time::Duration;

use agent_harness::{job, secs, TestAgent};

/// A job that records each start in a counter file, sleeps, then exits.
fn counted(agent: &TestAgent, name: &str, sleep: &str, code: i32) -> String {
    let count = agent.data_file(&format!("{name}.count")).display().to_string();
    format!("echo start >> {count}; sleep {sleep}; exit {code}")
}

#[test]
fn kill_9_during_runs_then_restart_readopts_every_run_and_starts_none_twice() {
    let mut agent = TestAgent::new("");
    agent.start();
    // Ends while the agent is down, with a failure to record.
    agent.write_job("short.yaml", &job("short", &counted(&agent, "short", "1", 7), ""));
    // Outlives the outage.
    agent.write_job("long.yaml", &job("long", &counted(&agent, "long", "4", 0), ""));
    // Holds the one exclusive CPU; "waiting" queues behind it.
    agent.write_job(
        "pinned.yaml",
        &job("pinned", &counted(&agent, "pinned", "3", 0), "priority: 60\nresources: {cpus: 1}\n"),
    );
    agent.write_job(
        "waiting.yaml",
        &job(
            "waiting",
            &counted(&agent, "waiting", "0.2", 0),
            "priority: 10\nresources: {cpus: 1}\n",
        ),
    );
    for run in ["short-1", "long-1", "pinned-1"] {
        agent.wait_phase(run, "running", secs(20));
    }
    assert_eq!(agent.phase("waiting-1").as_deref(), Some("pending"));

    agent.kill9();
    // Jobs keep running while the agent is down; "short" ends meanwhile.
    agent.wait_for("short-1's shim to record its end", secs(20), || agent.exit_recorded("short-1"));
    assert_eq!(agent.read_data("long.count"), "start\n");
    agent.start();

    agent.wait_phase("short-1", "failed", secs(20));
    assert_eq!(agent.exit("short-1"), (Some(7), None), "exit status learnt from the shim's record");
    agent.wait_phase("pinned-1", "succeeded", secs(20));
    agent.wait_phase("long-1", "succeeded", secs(20));
    agent.wait_phase("waiting-1", "succeeded", secs(20));
    for name in ["short", "long", "pinned", "waiting"] {
        assert_eq!(
            agent.read_data(&format!("{name}.count")),
            "start\n",
            "{name} started exactly once"
        );
        assert_eq!(agent.runs_of(name).len(), 1, "{name}: one run");
    }
    // The queued run started only once the CPU was free again.
    let pinned_end = agent.transitions("pinned-1").last().unwrap().1;
    let waiting_start = agent.transitions("waiting-1").iter().find(|t| t.0 == "running").unwrap().1;
    assert!(waiting_start >= pinned_end, "{waiting_start} < {pinned_end}");
    let log = agent.log_text();
    assert!(log.contains("took over the runs of the previous agent"), "{log}");
    agent.wait_for("cgroups removed", secs(10), || agent.job_cgroups().is_empty());
}

#[test]
fn repeated_kill_9_at_any_moment_still_runs_each_job_exactly_once() {
    let mut agent = TestAgent::new("");
    agent.start();
    for i in 0..8 {
        let name = format!("burst{i}");
        agent
            .write_job(&format!("{name}.yaml"), &job(&name, &counted(&agent, &name, "0.3", 0), ""));
    }
    // Kill as soon as the first run is on record, whatever the others'
    // state, then again and again at other points of the restarts.
    agent.wait_for("a first run", secs(20), || agent.count_runs() > 0);
    agent.kill9();
    for delay_ms in [0, 20, 60, 150, 300] {
        agent.start();
        std::thread::sleep(Duration::from_millis(delay_ms));
        agent.kill9();
    }
    agent.start();
    for i in 0..8 {
        agent.wait_phase(&format!("burst{i}-1"), "succeeded", secs(30));
    }
    for i in 0..8 {
        assert_eq!(
            agent.read_data(&format!("burst{i}.count")),
            "start\n",
            "burst{i}\n{}",
            agent.log_text()
        );
    }
    assert_eq!(agent.count_runs(), 8);
}

#[test]
fn a_stray_cgroup_under_the_parent_is_removed_at_start() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("a.yaml", &job("a", "true", ""));
    agent.wait_phase("a-1", "succeeded", secs(20));
    agent.stop();
    // A cgroup of a run no record knows.
    for tree in ["memory", "cpu", "pids"] {
        std::fs::create_dir(agent.cgroup(tree, "ghost-1")).unwrap();
    }
    agent.start();
    agent.wait_for("the stray cgroup removed", secs(10), || {
        !agent.cgroup("memory", "ghost-1").exists()
    });
}

#[test]
fn a_second_agent_on_the_same_state_directory_is_refused() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.wait_for("the first agent to start", secs(10), || {
        agent.log_text().contains("agent starting")
    });
    let (status, stderr) = agent.start_another();
    assert!(!status.success());
    assert!(stderr.contains("lock") || stderr.contains("held"), "{stderr}");
    assert!(agent.is_running(), "the first agent is unaffected");
}

#[test]
fn a_damaged_store_is_refused_with_a_clear_message() {
    let agent = TestAgent::new("");
    std::fs::create_dir_all(&agent.state).unwrap();
    std::fs::write(
        agent.state.join("corral.db"),
        "this is not a database, just some text that is long enough",
    )
    .unwrap();
    let (status, stderr) = agent.start_another();
    assert!(!status.success());
    assert!(stderr.contains("corral.db"), "names the file: {stderr}");
    // Left as found.
    assert!(std::fs::read_to_string(agent.state.join("corral.db"))
        .unwrap()
        .starts_with("this is not"));
}

#[test]
fn sigterm_leaves_jobs_running_for_the_next_agent_or_stops_them_if_asked() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("stay.yaml", &job("stay", &counted(&agent, "stay", "2", 0), ""));
    agent.wait_phase("stay-1", "running", secs(20));
    assert!(agent.stop().success());
    assert_eq!(agent.phase("stay-1").as_deref(), Some("running"));
    agent.start();
    agent.wait_phase("stay-1", "succeeded", secs(20));
    assert_eq!(agent.read_data("stay.count"), "start\n");

    let mut stopping = TestAgent::new("stop_jobs_on_exit: true\n");
    stopping.start();
    stopping.write_job("go.yaml", &job("go", "sleep 60", ""));
    stopping.wait_phase("go-1", "running", secs(20));
    assert!(stopping.stop().success());
    assert_eq!(stopping.phase("go-1").as_deref(), Some("killed"));
    assert!(stopping.job_cgroups().is_empty(), "{:?}", stopping.job_cgroups());
}
