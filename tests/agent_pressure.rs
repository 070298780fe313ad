//! Node-pressure protection on the real kernel: a page-cache hog under a
//! small memory limit stalls in reclaim, which shows in the `memory.pressure`
//! of the agent's parent cgroup (PSI counts every run below it, on this
//! hybrid host through the controller-less v2 tree). The agent freezes the
//! low-priority preemptible run, leaves `preemption: never` runs alone,
//! holds new runs back, keeps all of it across a `kill -9`, and resumes the
//! frozen run once the hog is gone and the readings have calmed down.

mod agent_harness;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use agent_harness::{job, secs, TestAgent};

/// Low enough that the hog below crosses it within seconds here, high
/// enough that sleeping runs never reach it (they read 0.00). How much
/// pressure one reader of the file makes varies from run to run on the
/// 2-CPU test machine: `some avg10` of the parent rose to 12 within 10 s in
/// one series and stayed near 1.3 in another, so the hog runs two readers
/// and the trigger is 1.
const CONFIG: &str = "pressure:\n  check_every: 500ms\n  memory_some_above: 1\n  \
                      memory_some_release: 0.5\n  trigger_after: 2\n  release_after: 2s\n  \
                      requeue_after: 10m\n";

/// A file bigger than the hog's limit, written by the test and dropped from
/// the page cache, so that the hog's reads are charged to the hog.
fn big_file(agent: &TestAgent) -> String {
    let path = agent.data_file("big");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk: Vec<u8> =
        (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    for _ in 0..192 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    // POSIX_FADV_DONTNEED on the whole file: pages the test's own cgroup
    // holds would be read by the hog without being charged to it.
    let dropped = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()
        .unwrap();
    assert!(dropped.success(), "dropping the file from the page cache");
    path.display().to_string()
}

/// Runs until `<name>.stop` appears in the data directory.
fn until_stopped(agent: &TestAgent, name: &str, body: &str) -> String {
    let stop = agent.data_file(&format!("{name}.stop")).display().to_string();
    format!("while [ ! -e {stop} ]; do {body}; done")
}

/// The hog: two readers of `big` at once, under a 64 MiB limit, until
/// stopped; it outranks the runs the tests expect frozen and is never one.
fn write_hog(agent: &TestAgent, big: &str) {
    let readers = format!("cat {big} > /dev/null & cat {big} > /dev/null; wait");
    agent.write_job(
        "hog.yaml",
        &job(
            "hog",
            &until_stopped(agent, "hog", &readers),
            "priority: 50\npreemption: never\nresources: {memory: {hard: 64Mi}}\n",
        ),
    );
}

fn stop(agent: &TestAgent, name: &str) {
    std::fs::write(agent.data_file(&format!("{name}.stop")), "").unwrap();
}

fn parent_pressure(agent: &TestAgent) -> String {
    let file = Path::new("/sys/fs/cgroup/unified").join(&agent.parent).join("memory.pressure");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| format!("unreadable: {e}"));
    format!("{}:\n{text}", file.display())
}

fn phases(agent: &TestAgent, run: &str) -> Vec<String> {
    agent.transitions(run).into_iter().map(|(phase, _, _)| phase).collect()
}

#[test]
fn memory_pressure_freezes_the_lowest_preemptible_run_and_resumes_it_when_over() {
    let mut agent = TestAgent::new(CONFIG);
    let big = big_file(&agent);
    agent.start();
    // The lowest priority of all, but never to be touched.
    agent.write_job(
        "keep.yaml",
        &job(
            "keep",
            &until_stopped(&agent, "keep", "sleep 0.1"),
            "priority: 1\npreemption: never\n",
        ),
    );
    let progress = agent.data_file("low.progress").display().to_string();
    agent.write_job(
        "low.yaml",
        &job(
            "low",
            &until_stopped(&agent, "low", &format!("date +%s%N > {progress}; sleep 0.1")),
            "priority: 10\npreemption: suspend\n",
        ),
    );
    agent.wait_phase("keep-1", "running", secs(20));
    agent.wait_phase("low-1", "running", secs(20));

    write_hog(&agent, &big);
    agent.wait_phase("hog-1", "running", secs(20));
    agent.wait_for_or(
        "low-1 frozen for memory pressure",
        secs(60),
        || agent.frozen("low-1") && agent.phase("low-1").as_deref() == Some("suspended"),
        || format!("the hog could not make enough pressure here?\n{}", parent_pressure(&agent)),
    );
    assert!(agent.state_json("low-1").contains(r#""by":"memory-pressure""#));
    assert_eq!(agent.events("low-1"), ["pressure-frozen"]);
    // The freeze, with the reading that caused it.
    let reasons: Vec<String> =
        agent.transitions("low-1").into_iter().map(|(_, _, reason)| reason).collect();
    let freeze = reasons.iter().find(|r| r.starts_with("freezing under memory pressure: "));
    assert!(
        freeze.is_some_and(|r| r.contains("memory.some avg10=") && r.contains(" above 1")),
        "{reasons:?}"
    );
    // Neither the hog (a higher priority) nor keep-1 (the lowest, but
    // `never`) is frozen, then or later.
    for run in ["keep-1", "hog-1"] {
        assert_eq!(agent.phase(run).as_deref(), Some("running"), "{run}");
        assert!(!agent.frozen(run), "{run}");
    }

    let metric = |line: &str| {
        let (status, _, metrics) = agent.http_get("/metrics", None);
        assert_eq!(status, 200);
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    };
    metric("corral_pressure_actions_total{action=\"freeze\"} 1");
    metric("corral_pressure_holding 1");
    let (_, _, node) = agent.http_get("/v1/node", None);
    let node: serde_json::Value = serde_json::from_str(&node).unwrap();
    assert_eq!(node["pressure"]["holding"], true, "{node}");
    assert!(node["pressure"]["reading"].as_str().unwrap().contains("memory.some avg10="), "{node}");

    // A crash while the run is frozen for pressure: the next agent keeps it
    // frozen, and holds new runs back, from its first reading.
    agent.kill9();
    agent.start();
    agent.wait_for("the new agent to hold new runs back", secs(20), || {
        agent.log_text().matches("new runs are held back").count() == 2
    });
    assert!(agent.frozen("low-1"), "kept frozen across the restart");
    assert_eq!(agent.phase("low-1").as_deref(), Some("suspended"));
    agent.write_job("late.yaml", &job("late", "true", "priority: 90\n"));
    let frozen_progress = agent.read_data("low.progress");

    stop(&agent, "hog");
    agent.wait_phase("hog-1", "succeeded", secs(30));
    agent.wait_for_or(
        "low-1 resumed once the pressure is over",
        secs(120),
        || agent.phase("low-1").as_deref() == Some("running") && !agent.frozen("low-1"),
        || parent_pressure(&agent),
    );
    assert_eq!(agent.events("low-1"), ["pressure-frozen", "pressure-released", "resumed"]);
    agent.wait_for("low-1 to make progress again", secs(20), || {
        agent.read_data("low.progress") != frozen_progress
    });
    // The late run was held back until the watch stood down, after the
    // release of the frozen run.
    agent.wait_phase("late-1", "succeeded", secs(60));
    let released_at: i64 = agent
        .db()
        .unwrap()
        .query_row(
            "SELECT at FROM run_events WHERE run_id = 'low-1' AND kind = 'pressure-released'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let (_, placed_at, _) =
        agent.transitions("late-1").into_iter().find(|(p, _, _)| p == "placed").unwrap();
    assert!(
        placed_at >= released_at,
        "late-1 placed at {placed_at}, low-1 released at {released_at}"
    );

    for run in ["keep-1", "hog-1"] {
        assert!(
            !phases(&agent, run).iter().any(|p| p == "suspended"),
            "{run}: {:?}",
            phases(&agent, run)
        );
        assert!(agent.events(run).is_empty(), "{run}: {:?}", agent.events(run));
    }
    // Counted by the agent that did it (this one froze nothing).
    let metric = |line: &str| {
        let (status, _, metrics) = agent.http_get("/metrics", None);
        assert_eq!(status, 200);
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    };
    metric("corral_pressure_actions_total{action=\"release\"} 1");
    metric("corral_pressure_actions_total{action=\"requeue\"} 0");
    metric("corral_pressure_holding 0");
    let (_, _, metrics) = agent.http_get("/metrics", None);
    assert!(
        metrics.contains("corral_pressure_memory_stall_avg10_ratio{kind=\"some\"}"),
        "{metrics}"
    );

    for name in ["keep", "low"] {
        stop(&agent, name);
        agent.wait_phase(&format!("{name}-1"), "succeeded", secs(30));
    }
}

#[test]
fn pressure_that_persists_requeues_the_frozen_run_which_starts_again_with_its_attempt() {
    let config = CONFIG.replace("requeue_after: 10m", "requeue_after: 3s");
    let mut agent = TestAgent::new(&config);
    let big = big_file(&agent);
    agent.start();
    let started = agent.data_file("low.starts").display().to_string();
    let body = until_stopped(&agent, "low", "sleep 0.1");
    agent.write_job(
        "low.yaml",
        &job("low", &format!("echo >> {started}; {body}"), "priority: 10\npreemption: requeue\n"),
    );
    agent.wait_phase("low-1", "running", secs(20));
    write_hog(&agent, &big);
    // Frozen first, whatever its mode; stopped and queued again once the
    // pressure has lasted requeue_after.
    agent.wait_for_or(
        "low-1 requeued for memory pressure",
        secs(90),
        || agent.events("low-1").iter().any(|e| e == "pressure-requeued"),
        || format!("events: {:?}\n{}", agent.events("low-1"), parent_pressure(&agent)),
    );
    assert_eq!(agent.events("low-1"), ["pressure-frozen", "pressure-requeued"]);
    agent.wait_phase("low-1", "pending", secs(30));
    let requeued = agent
        .transitions("low-1")
        .into_iter()
        .find(|(_, _, reason)| reason.starts_with("stopping to requeue for memory-pressure: "));
    assert!(requeued.is_some(), "{:?}", agent.transitions("low-1"));

    stop(&agent, "hog");
    agent.wait_phase("hog-1", "succeeded", secs(30));
    agent.wait_for_or(
        "low-1 started again once the pressure is over",
        secs(120),
        || agent.read_data("low.starts").lines().count() == 2,
        || parent_pressure(&agent),
    );
    agent.wait_phase("low-1", "running", secs(20));
    assert_eq!(agent.runs_of("low"), ["low-1"], "the same run, not a new one");
    assert!(agent.state_json("low-1").contains(r#""attempt":1"#), "{}", agent.state_json("low-1"));
    stop(&agent, "low");
    agent.wait_phase("low-1", "succeeded", secs(30));
}
