//! A restarted agent takes over running runs as they were: the launch time
//! on record (what the API showed before), and CPU shares measured from it,
//! not from the moment of the restart.

mod agent_harness;

use std::process::Command;
use std::time::Duration;

use agent_harness::{job, secs, TestAgent};

/// `corral ps --json` against the agent: the run's CPU share, once the run is
/// listed with one.
fn cpu_percent(agent: &TestAgent, run: &str) -> Option<f64> {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["ps", "--json", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let row = rows.as_array()?.iter().find(|r| r["run"] == run)?;
    row["cpu_percent"].as_f64()
}

/// The run's `launched_at` from `GET /v1/runs/{run}`, once it has one.
fn launched_at(agent: &TestAgent, run: &str) -> Option<String> {
    let (status, _, body) = agent.http_get(&format!("/v1/runs/{run}"), None);
    if status != 200 {
        return None;
    }
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    view["launch"]["launched_at"].as_str().map(str::to_owned)
}

fn wait_some<T>(agent: &TestAgent, what: &str, mut read: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    agent.wait_for(what, secs(20), || {
        found = read();
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_restart_keeps_the_launch_time_and_does_not_inflate_the_cpu_share() {
    let mut agent = TestAgent::new("");
    agent.start();
    // Busy for a moment, then idle: its share of a CPU since launch only
    // falls once the busy part is over.
    let burnt = agent.data_file("burnt").display().to_string();
    let script = format!(
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo done > {burnt}; exec sleep 600"
    );
    agent.write_job("burn.yaml", &job("burn", &script, ""));
    agent.wait_phase("burn-1", "running", secs(20));
    agent.wait_for("the busy part to end", secs(60), || agent.read_data("burnt") == "done\n");
    let launched = wait_some(&agent, "launched_at from the API", || launched_at(&agent, "burn-1"));
    // Long enough after the launch that a share measured from a restart
    // that follows at once would be several times larger.
    std::thread::sleep(Duration::from_secs(2));
    let before = wait_some(&agent, "a CPU share in `corral ps`", || cpu_percent(&agent, "burn-1"));
    assert!(before > 0.0, "the busy part used CPU: {before}");

    agent.kill9();
    agent.start();
    let after = wait_some(&agent, "the adopted run's CPU share", || cpu_percent(&agent, "burn-1"));
    assert_eq!(agent.phase("burn-1").as_deref(), Some("running"));
    // Idle since: the same CPU time over a longer span. Measured from the
    // restart instead, it would be the busy part's time over well under
    // the span before.
    assert!(after <= before, "CPU share {after:.2}% after the restart, {before:.2}% before it");
    assert_eq!(
        launched_at(&agent, "burn-1").as_deref(),
        Some(launched.as_str()),
        "the launch time on record, not the restart's"
    );
}
