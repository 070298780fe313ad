//! Backfill on the real kernel: a high-priority job that does not fit holds
//! a reservation; lower jobs start ahead of it only where they cannot delay
//! its start, and it starts as soon as the job it waits for ends.
//!
//! On this two-CPU machine one exclusive CPU goes round (the shared pool
//! keeps the other), so the jobs contend for that CPU and for memory, which
//! placement charges at each job's hard limit: the limits are sized in
//! eighths of what the agent may charge on the node, whatever the machine's
//! memory is.

mod agent_harness;

use agent_harness::{job, secs, TestAgent};

/// What the agent may charge on node 0, from `GET /v1/node`.
fn chargeable(agent: &TestAgent) -> u64 {
    let (status, _, body) = agent.http_get("/v1/node", None);
    assert_eq!(status, 200, "{body}");
    let node: serde_json::Value = serde_json::from_str(&body).unwrap();
    node["numa_nodes"][0]["allocatable_memory_bytes"].as_u64().unwrap()
}

/// `n` eighths of the chargeable memory as a hard limit in MiB, rounded
/// down: eight of them always fit.
fn eighths(unit_mib: u64, n: u64) -> String {
    format!("{}Mi", unit_mib * n)
}

/// The `state` column of `corral ps --json` for `run`.
fn ps_state(agent: &TestAgent, run: &str) -> Option<String> {
    let rows: serde_json::Value =
        serde_json::from_str(&agent.corral_ok(&["ps", "--json"])).unwrap();
    let row = rows.as_array()?.iter().find(|r| r["run"] == run)?;
    row["state"].as_str().map(str::to_owned)
}

/// `reserved_for` of `GET /v1/runs/{run}`.
fn reserved_for(agent: &TestAgent, run: &str) -> Option<String> {
    let (status, _, body) = agent.http_get(&format!("/v1/runs/{run}"), None);
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    view["reserved_for"].as_str().map(str::to_owned)
}

/// When the run was placed, in the agent's record (milliseconds).
fn placed_at(agent: &TestAgent, run: &str) -> i64 {
    agent
        .transitions(run)
        .into_iter()
        .find(|(to, _, _)| to == "placed")
        .map(|(_, at, _)| at)
        .unwrap_or_else(|| panic!("{run} was never placed"))
}

#[test]
fn a_blocked_high_priority_job_starts_when_the_job_it_waits_for_ends_and_only_harmless_jobs_go_first(
) {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.wait_for("the HTTP endpoint", secs(20), || {
        std::net::TcpStream::connect(agent.listen).is_ok()
    });
    let unit = chargeable(&agent) / 8 / (1024 * 1024);
    let mem = |n| format!("memory: {{hard: {}}}", eighths(unit, n));
    let gate = |name: &str| {
        let go = agent.data_file(&format!("{name}.go")).display().to_string();
        format!("while [ ! -e {go} ]; do sleep 0.05; done")
    };
    let mark = |name: &str| {
        let out = agent.data_file(name).display().to_string();
        format!("echo done > {out}")
    };

    // Holds the exclusive CPU and half the memory until released; it may
    // not be preempted, and its timeout bounds its end.
    agent.write_job(
        "long.yaml",
        &job(
            "long",
            &gate("long"),
            &format!(
                "priority: 10\npreemption: never\ntimeout: 5m\nresources: {{cpus: 1, {}}}\n",
                mem(4)
            ),
        ),
    );
    agent.wait_phase("long-1", "running", secs(20));

    // Wants the exclusive CPU and three quarters of the memory: it starts
    // when long-1 ends, at the latest when long-1's timeout runs out.
    agent.write_job(
        "big.yaml",
        &job("big", &mark("big"), &format!("priority: 90\nresources: {{cpus: 1, {}}}\n", mem(6))),
    );
    agent.run_marker("after-big");
    assert_eq!(agent.phase("big-1").as_deref(), Some("pending"));

    // Ends well before big-1's reserved start (its timeout is shorter than
    // what long-1 has left): backfilled.
    agent.write_job(
        "short.yaml",
        &job(
            "short",
            &mark("short"),
            &format!("priority: 10\ntimeout: 30s\nresources: {{{}}}\n", mem(2)),
        ),
    );
    agent.wait_phase("short-1", "succeeded", secs(20));
    assert_eq!(agent.read_data("short"), "done\n");

    // No timeout, but it fits in what big-1 leaves over at its start (two
    // eighths): started at once, and it stays beside big-1.
    agent.write_job(
        "beside.yaml",
        &job("beside", &gate("beside"), &format!("priority: 10\nresources: {{{}}}\n", mem(1))),
    );
    agent.wait_phase("beside-1", "running", secs(20));

    // No timeout and more than big-1 leaves over: held back.
    agent.write_job(
        "open.yaml",
        &job("open", &mark("open"), &format!("priority: 10\nresources: {{{}}}\n", mem(3))),
    );
    // A timeout longer than what long-1 has left, and more than the one
    // eighth still left over: held back too.
    agent.write_job(
        "slow.yaml",
        &job(
            "slow",
            &mark("slow"),
            &format!("priority: 10\ntimeout: 1h\nresources: {{{}}}\n", mem(2)),
        ),
    );
    // Nothing left over at big-1's start, but gone well before it: started.
    agent.write_job(
        "quick.yaml",
        &job(
            "quick",
            &mark("quick"),
            &format!("priority: 10\ntimeout: 20s\nresources: {{{}}}\n", mem(1)),
        ),
    );
    agent.wait_phase("quick-1", "succeeded", secs(20));
    agent.run_marker("after-quick");

    for run in ["open-1", "slow-1"] {
        assert_eq!(agent.phase(run).as_deref(), Some("pending"), "{run}");
        assert_eq!(ps_state(&agent, run).as_deref(), Some("pending (reserved for big-1)"), "{run}");
        assert_eq!(reserved_for(&agent, run).as_deref(), Some("big-1"), "{run}");
    }
    assert_eq!(agent.phase("big-1").as_deref(), Some("pending"));
    assert_eq!(agent.phase("long-1").as_deref(), Some("running"));
    // Published after the turn that held them back.
    agent.wait_for("the held-back gauge", secs(10), || {
        agent.http_get("/metrics", None).2.lines().any(|l| l == "corral_queue_held_back 2")
    });
    assert_eq!(reserved_for(&agent, "big-1"), None);
    let log = agent.log_text();
    assert!(
        log.contains("held back: it fits, but starting it could delay the reserved start of big-1"),
        "{log}"
    );
    assert!(log.contains("reservation for the head of the queue"), "{log}");

    // The reservation is made again from the stored runs by the next agent:
    // long-1's running time (and so big-1's start) survives a kill -9.
    agent.kill9();
    agent.start();
    agent.wait_for("the new agent to take over", secs(10), || {
        agent.log_text().contains("took over the runs")
    });
    agent.run_marker("after-restart");
    for run in ["open-1", "slow-1"] {
        assert_eq!(ps_state(&agent, run).as_deref(), Some("pending (reserved for big-1)"), "{run}");
    }
    assert_eq!(agent.phase("big-1").as_deref(), Some("pending"));
    assert_eq!(agent.phase("beside-1").as_deref(), Some("running"));

    // long-1 ends: big-1 starts from the pass that follows, ahead of the
    // runs held back for it.
    std::fs::write(agent.data_file("long.go"), "").unwrap();
    agent.wait_phase("long-1", "succeeded", secs(20));
    agent.wait_phase("big-1", "succeeded", secs(20));
    agent.wait_phase("open-1", "succeeded", secs(20));
    agent.wait_phase("slow-1", "succeeded", secs(20));
    let big = placed_at(&agent, "big-1");
    for run in ["open-1", "slow-1"] {
        assert!(placed_at(&agent, run) >= big, "{run} was placed before big-1");
    }
    // big-1 ran beside beside-1, which never stopped.
    assert_eq!(agent.phase("beside-1").as_deref(), Some("running"));
    assert!(placed_at(&agent, "beside-1") < big);
    for name in ["big", "open", "slow"] {
        assert_eq!(agent.read_data(name), "done\n", "{name}");
    }
    std::fs::write(agent.data_file("beside.go"), "").unwrap();
    agent.wait_phase("beside-1", "succeeded", secs(20));
}
