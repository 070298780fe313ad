//! Preemption on the real kernel: a high-priority job on a full machine
//! freezes a low-priority one, which is thawed afterwards and finishes.

mod agent_harness;

use agent_harness::{job, secs, TestAgent};

/// Counts to `n` in tenths of a second, then records that it finished. A
/// frozen run makes no progress: `n` steps take longer than `n / 10` s.
fn counter(agent: &TestAgent, name: &str, n: u32) -> String {
    let out = agent.data_file(name).display().to_string();
    format!("i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo $i > {out}.progress; sleep 0.1; done; echo done >> {out}")
}

fn cpus_of(agent: &TestAgent, run: &str) -> String {
    std::fs::read_to_string(agent.cgroup("cpuset", run).join("cpuset.cpus"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn a_high_priority_job_freezes_a_suspendable_one_which_resumes_and_completes_afterwards() {
    let mut agent = TestAgent::new("");
    agent.start();
    // Two CPUs, one kept shared: one exclusive CPU to go round.
    agent.write_job(
        "low.yaml",
        &job(
            "low",
            &counter(&agent, "low", 20),
            "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n",
        ),
    );
    agent.wait_phase("low-1", "running", secs(20));
    let low_cpu = cpus_of(&agent, "low-1");
    assert_eq!(low_cpu.len(), 1, "one exclusive CPU: {low_cpu}");

    agent.write_job(
        "high.yaml",
        &job("high", &counter(&agent, "high", 10), "priority: 90\nresources: {cpus: 1}\n"),
    );
    agent.wait_for("low-1 frozen in the kernel", secs(20), || agent.frozen("low-1"));
    agent.wait_phase("high-1", "running", secs(20));
    assert_eq!(agent.phase("low-1").as_deref(), Some("suspended"));
    let progress = agent.read_data("low.progress");
    // While high-1 counts four steps, low-1 would have counted as many.
    let high_step = || agent.read_data("high.progress").trim().parse::<u32>().unwrap_or(0);
    let high_from = high_step();
    agent.wait_for("high-1 to count four steps", secs(20), || high_step() >= high_from + 4);
    assert_eq!(agent.read_data("low.progress"), progress, "a frozen job makes no progress");
    assert!(agent.frozen("low-1"));
    assert_eq!(cpus_of(&agent, "high-1").len(), 1);

    agent.wait_phase("high-1", "succeeded", secs(30));
    agent.wait_for("low-1 thawed", secs(20), || agent.phase("low-1").as_deref() == Some("running"));
    // The resumption is recorded before the thaw is written (every
    // transition is stored before it is acted on): the kernel follows.
    agent.wait_for("low-1 thawed in the kernel", secs(20), || !agent.frozen("low-1"));
    assert_eq!(cpus_of(&agent, "low-1").len(), 1, "re-pinned to one exclusive CPU");
    agent.wait_phase("low-1", "succeeded", secs(30));
    assert_eq!(agent.read_data("low"), "done\n");
    assert_eq!(agent.read_data("low.progress").trim(), "20");
    assert_eq!(agent.exit("low-1"), (Some(0), None));
    assert_eq!(agent.events("low-1"), ["preempted", "resumed"]);
    let log = agent.log_text();
    assert!(log.contains("preempting low-1 (job low, priority 10) by suspend for high-1"), "{log}");
}

#[test]
fn never_and_equal_priority_jobs_are_not_preempted() {
    let mut agent = TestAgent::new("");
    agent.start();
    // Holds its CPU until the test has looked.
    let go = agent.data_file("first.go").display().to_string();
    let gated = format!("while [ ! -e {go} ]; do sleep 0.05; done");
    agent.write_job("first.yaml", &job("first", &gated, "priority: 10\nresources: {cpus: 1}\n"));
    agent.wait_phase("first-1", "running", secs(20));
    agent.write_job("second.yaml", &job("second", "true", "priority: 90\nresources: {cpus: 1}\n"));
    // The pass that starts the marker on the shared CPU tried second-1 first.
    agent.run_marker("later");
    assert_eq!(agent.phase("second-1").as_deref(), Some("pending"));
    assert!(!agent.frozen("first-1"));
    std::fs::write(&go, "").unwrap();
    agent.wait_phase("first-1", "succeeded", secs(20));
    agent.wait_phase("second-1", "succeeded", secs(20));
}

#[test]
fn a_frozen_run_stays_frozen_across_an_agent_crash_and_resumes_under_the_next_agent() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job(
        "low.yaml",
        &job(
            "low",
            &counter(&agent, "low", 10),
            "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n",
        ),
    );
    agent.wait_phase("low-1", "running", secs(20));
    // Counts only once the test has looked: high-1 holds its CPU until then.
    let go = agent.data_file("high.go").display().to_string();
    let gated_high =
        format!("while [ ! -e {go} ]; do sleep 0.05; done; {}", counter(&agent, "high", 15));
    agent.write_job("high.yaml", &job("high", &gated_high, "priority: 90\nresources: {cpus: 1}\n"));
    agent.wait_for("low-1 frozen", secs(20), || agent.frozen("low-1"));
    agent.wait_phase("high-1", "running", secs(20));
    agent.kill9();
    agent.start();
    agent.wait_for("the new agent to take over", secs(10), || {
        agent.log_text().contains("took over the runs")
    });
    // A scheduling pass of the new agent has looked at low-1.
    agent.run_marker("later");
    assert!(agent.frozen("low-1"), "kept suspended");
    std::fs::write(&go, "").unwrap();
    agent.wait_phase("high-1", "succeeded", secs(30));
    agent.wait_phase("low-1", "succeeded", secs(30));
    assert_eq!(agent.read_data("low"), "done\n");
    assert_eq!(agent.read_data("high"), "done\n");
}

#[test]
fn shared_pool_jobs_follow_the_pool_as_exclusive_jobs_come_and_go() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("shared.yaml", &job("shared", "sleep 30", ""));
    agent.wait_phase("shared-1", "running", secs(20));
    agent.wait_for("the whole pool", secs(10), || cpus_of(&agent, "shared-1") == "0-1");
    agent.write_job("pinned.yaml", &job("pinned", "sleep 1", "resources: {cpus: 1}\n"));
    agent.wait_phase("pinned-1", "running", secs(20));
    let pinned = cpus_of(&agent, "pinned-1");
    agent.wait_for("the pool without the pinned CPU", secs(10), || {
        let shared = cpus_of(&agent, "shared-1");
        shared.len() == 1 && shared != pinned
    });
    agent.wait_phase("pinned-1", "succeeded", secs(20));
    agent.wait_for("the whole pool again", secs(10), || cpus_of(&agent, "shared-1") == "0-1");
}
