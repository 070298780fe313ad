//! The agent's HTTP endpoint on the real kernel: per-run series read from
//! live cgroups, a finished run's OOM kill kept in the scrape (across agent
//! restarts too, for the configured retention), the OOM policy counted, the
//! JSON views, and promtool on a live scrape.

mod agent_harness;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use agent_harness::{job, secs, TestAgent, OOM_HOG};

/// The value of the sample `name{labels…}` whose labels include all of
/// `has`, if there is one.
fn sample(scrape: &str, name: &str, has: &[&str]) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        if !rest.starts_with(['{', ' ']) || !has.iter().all(|l| rest.contains(l)) {
            return None;
        }
        rest.rsplit(' ').next()?.parse().ok()
    })
}

fn scrape(agent: &TestAgent) -> String {
    let (status, content_type, body) = agent.http_get("/metrics", None);
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    body
}

#[test]
fn live_runs_and_an_oom_kill_reach_the_scrape() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("steady.yaml", &job("steady", "while :; do :; done", ""));
    agent.write_job(
        "oomy.yaml",
        &job("oomy", OOM_HOG, "resources: {memory: {hard: 16Mi}}\noom: {action: fail}\n"),
    );
    agent.wait_phase("steady-1", "running", secs(30));
    agent.wait_phase("oomy-1", "failed", secs(60));

    // The running run, read from its cgroup at scrape time.
    let mut text = String::new();
    // The scrape reads a snapshot the agent publishes after it stores a
    // change: on a busy machine it can trail the store by a moment.
    agent.wait_for("CPU time of steady-1 and the end of oomy-1", secs(30), || {
        text = scrape(&agent);
        sample(&text, "corral_run_cpu_usage_seconds_total", &["run=\"steady-1\""])
            .is_some_and(|s| s > 0.0)
            && sample(&text, "corral_run_state", &["run=\"oomy-1\"", "state=\"failed\""])
                == Some(1.0)
    });
    let run = ["job_name=\"steady\"", "run=\"steady-1\""];
    assert_eq!(
        sample(&text, "corral_run_state", &[&run[..], &["state=\"running\""]].concat()),
        Some(1.0)
    );
    assert!(
        sample(&text, "corral_run_memory_usage_bytes", &run).is_some_and(|b| b > 0.0),
        "{text}"
    );
    assert!(sample(&text, "corral_run_tasks", &run).is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(sample(&text, "corral_run_frozen", &run), Some(0.0));
    assert_eq!(sample(&text, "corral_runs", &["state=\"running\""]), Some(1.0));
    assert_eq!(sample(&text, "corral_cgroup_layout_info", &[]), Some(1.0));
    assert_eq!(sample(&text, "corral_spec_files", &["status=\"valid\""]), Some(2.0));
    assert!(
        sample(&text, "corral_job_info", &["job_name=\"steady\"", "scheduled=\"no\""]).is_some()
    );
    assert_eq!(sample(&text, "corral_launch_latency_seconds_count", &[]), Some(2.0));

    // The run that ended keeps its OOM kill; the policy's decision is counted.
    let oomy = ["job_name=\"oomy\"", "run=\"oomy-1\""];
    assert!(
        sample(&text, "corral_run_memory_oom_kills_total", &oomy).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "corral_run_state", &[&oomy[..], &["state=\"failed\""]].concat()),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "corral_oom_events_total", &["action=\"fail\"", "reached=\"killed\""]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "corral_runs_ended_total", &["state=\"failed\""]), Some(1.0));

    // OpenMetrics on request.
    let (status, content_type, body) =
        agent.http_get("/metrics", Some("application/openmetrics-text;version=1.0.0"));
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(body.ends_with("# EOF\n"));

    // promtool, where it is installed (the promtool test says why it may not be).
    if let Some(promtool) = prometheus::installed("promtool") {
        let (passed, report) = prometheus::check_metrics(&promtool, &text);
        assert!(passed && report.trim().is_empty(), "promtool: {report}");
    }
    dashboards_use_only_what_a_live_agent_exports(&text);
}

/// The samples of `run`, as `name{labels} value` lines, sorted.
fn series_of(scrape: &str, run: &str) -> Vec<String> {
    let label = format!("run=\"{run}\"");
    let mut lines: Vec<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Whether the shim of `run` has recorded how it ended.
#[test]
fn ended_runs_keep_their_final_series_across_restarts_for_the_retention() {
    let mut agent = TestAgent::new("");
    agent.start();
    let go = agent.data_file("go");
    let limits = "resources: {memory: {hard: 16Mi}}\noom: {action: fail}\n";
    agent.write_job("oomy.yaml", &job("oomy", OOM_HOG, limits));
    let wait_then_hog = format!("while [ ! -e {} ]; do sleep 0.1; done; {OOM_HOG}", go.display());
    agent.write_job("late.yaml", &job("late", &wait_then_hog, limits));
    agent.wait_phase("oomy-1", "failed", secs(60));
    agent.wait_phase("late-1", "running", secs(30));

    // The store has the end before the scrape does: the agent publishes
    // after the turn of its loop that stored it.
    let mut before = Vec::new();
    agent.wait_for("oomy-1's end in the scrape", secs(20), || {
        before = series_of(&scrape(&agent), "oomy-1");
        sample(&before.join("\n"), "corral_run_exit_code", &[]).is_some()
    });
    let text = before.join("\n");
    assert!(
        sample(&text, "corral_run_memory_oom_kills_total", &[]).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // The shell was killed with SIGKILL: 128 + 9.
    assert_eq!(sample(&text, "corral_run_exit_code", &[]), Some(137.0), "{text}");
    assert!(sample(&text, "corral_run_end_timestamp_seconds", &[]).is_some(), "{text}");

    // The agent stops, leaving late-1 running; it is OOM-killed while no
    // agent runs, and its shim records the exit.
    assert!(agent.stop().success());
    std::fs::write(&go, "").unwrap();
    agent.wait_for("late-1's exit recorded", secs(60), || agent.exit_recorded("late-1"));

    agent.start();
    agent.wait_phase("late-1", "failed", secs(30));
    let text = scrape(&agent);
    assert_eq!(series_of(&text, "oomy-1"), before, "oomy-1's final series, as before the restart");
    let late = series_of(&text, "late-1").join("\n");
    assert!(
        sample(&late, "corral_run_memory_oom_kills_total", &[]).is_some_and(|n| n >= 1.0),
        "the OOM kill recovery read from late-1's cgroup: {late}"
    );
    assert_eq!(sample(&late, "corral_run_exit_code", &[]), Some(137.0), "{late}");
    assert!(sample(&late, "corral_run_memory_max_usage_bytes", &[]).is_some(), "{late}");
    let states: Vec<&str> = late.lines().filter(|l| l.starts_with("corral_run_state{")).collect();
    assert!(matches!(states[..], [one] if one.contains("state=\"failed\"")), "{late}");

    // A restart with a retention both runs' ends are older than.
    assert!(agent.stop().success());
    let mut config = std::fs::OpenOptions::new().append(true).open(&agent.config).unwrap();
    config.write_all(b"finished_run_retention: 1s\n").unwrap();
    let ended = |run: &str| agent.transitions(run).last().expect("it ran").1;
    let last_end = ended("oomy-1").max(ended("late-1"));
    agent.wait_for("both runs' ends older than the retention", secs(10), || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        now.as_millis() as i64 > last_end + 1_000
    });
    agent.start();
    agent.wait_for("readiness", secs(30), || {
        std::net::TcpStream::connect(agent.listen).is_ok()
            && agent.http_get("/readyz", None).0 == 200
    });
    let text = scrape(&agent);
    assert!(series_of(&text, "oomy-1").is_empty(), "{text}");
    assert!(series_of(&text, "late-1").is_empty(), "{text}");
    assert_eq!(sample(&text, "corral_spec_files", &["status=\"valid\""]), Some(2.0), "{text}");
}

/// Every `corral_*` name in the dashboards and alert rules that a live
/// agent with a running and an OOM-killed run would export is there. Names
/// of events this test does not cause (preemptions, cron, I/O of devices
/// with throttle rules, PSI totals on v1) may be absent from this scrape;
/// the full check against every family is `tests/dashboards.rs`.
fn dashboards_use_only_what_a_live_agent_exports(scrape: &str) {
    let exported: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split(' ').nth(2))
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut used = BTreeSet::new();
    for file in ["node-overview.json", "job-detail.json", "alerts.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(name) = word.strip_prefix("corral_") {
                used.insert(format!("corral_{name}"));
            }
        }
    }
    let family = |name: &str| {
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if exported.contains(base) {
                    return true;
                }
            }
        }
        exported.contains(name)
    };
    let missing: Vec<_> = used.iter().filter(|n| !family(n)).collect();
    assert!(missing.is_empty(), "used on a dashboard, not in a live scrape: {missing:?}");
}

#[test]
fn health_readiness_and_the_json_views() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("steady.yaml", &job("steady", "sleep 60", "priority: 70\n"));
    agent.wait_phase("steady-1", "running", secs(30));

    let (status, _, body) = agent.http_get("/healthz", None);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    agent.wait_for("readiness", secs(10), || agent.http_get("/readyz", None).0 == 200);

    let (status, content_type, body) = agent.http_get("/v1/jobs", None);
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let jobs: serde_json::Value = serde_json::from_str(&body).unwrap();
    let steady = &jobs["jobs"][0];
    assert_eq!(steady["name"], "steady");
    assert_eq!(steady["priority"], 70);
    assert_eq!(steady["file_status"], "valid");
    assert_eq!(steady["runs"][0]["id"], "steady-1");
    assert_eq!(steady["runs"][0]["state"], "running");

    let mut run = serde_json::Value::Null;
    agent.wait_for("live statistics of steady-1", secs(10), || {
        let (status, _, body) = agent.http_get("/v1/runs/steady-1", None);
        assert_eq!(status, 200, "{body}");
        run = serde_json::from_str(&body).unwrap();
        run["stats"]["pids"]["current"].as_u64().is_some_and(|n| n >= 1)
    });
    assert_eq!(run["state"], "running");
    assert_eq!(run["transitions"][0]["to"], "pending");
    assert!(run["launch"]["init_pid"].as_u64().is_some(), "{run}");
    assert!(run["placement"]["mems"].is_string(), "{run}");

    assert_eq!(agent.http_get("/v1/runs/steady-99", None).0, 404);
    assert_eq!(agent.http_get("/v1/jobs/nope", None).0, 404);
    let (status, _, body) = agent.http_get("/v1/node", None);
    assert_eq!(status, 200);
    let node: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(node["layout"], "hybrid");
    assert!(node["numa_nodes"][0]["allocatable_cpus"].as_u64().is_some_and(|n| n >= 1), "{node}");
}

#[test]
fn an_invalid_job_file_is_counted_and_its_problems_served() {
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job("steady.yaml", &job("steady", "sleep 60", ""));
    agent.wait_phase("steady-1", "running", secs(20));
    agent.write_job("steady.yaml", &job("steady", "sleep 60", "priority: lots\n"));
    agent.wait_for("the invalid file counted", secs(20), || {
        sample(&scrape(&agent), "corral_spec_files", &["status=\"invalid\""]) == Some(1.0)
    });
    let (status, _, body) = agent.http_get("/v1/jobs/steady", None);
    assert_eq!(status, 200, "{body}");
    let steady: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(steady["file_status"], "invalid", "{steady}");
    let problem = steady["problems"][0].as_str().unwrap();
    assert!(problem.contains("priority"), "{problem}");
    // The last good version goes on.
    assert_eq!(steady["runs"][0]["state"], "running");
}

#[test]
fn a_preemption_shows_as_a_frozen_run_and_a_counted_suspension() {
    let mut agent = TestAgent::new("");
    agent.start();
    // Two CPUs, one kept shared: one exclusive CPU to go round.
    agent.write_job(
        "low.yaml",
        &job("low", "sleep 60", "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n"),
    );
    agent.wait_phase("low-1", "running", secs(20));
    agent.write_job("high.yaml", &job("high", "sleep 60", "priority: 90\nresources: {cpus: 1}\n"));
    agent.wait_phase("high-1", "running", secs(20));
    agent.wait_for("low-1 frozen in the kernel", secs(20), || agent.frozen("low-1"));

    let mut text = String::new();
    agent.wait_for("low-1 reported frozen", secs(10), || {
        text = scrape(&agent);
        sample(&text, "corral_run_frozen", &["run=\"low-1\""]) == Some(1.0)
    });
    assert_eq!(sample(&text, "corral_preemptions_total", &["mode=\"suspend\""]), Some(1.0));
    assert_eq!(sample(&text, "corral_preemptions_total", &["mode=\"requeue\""]), Some(0.0));
    assert_eq!(
        sample(&text, "corral_run_state", &["run=\"low-1\"", "state=\"suspended\""]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "corral_runs", &["state=\"suspended\""]), Some(1.0));
    assert_eq!(sample(&text, "corral_run_exclusive_cpus", &["run=\"high-1\""]), Some(1.0));
    assert_eq!(sample(&text, "corral_allocated_cpus", &["numa_node=\"0\""]), Some(1.0));
}

#[test]
fn a_taken_port_stops_the_agent_before_it_touches_anything() {
    let agent = TestAgent::new("");
    let _holder = std::net::TcpListener::bind(agent.listen).unwrap();
    let (status, stderr) = agent.start_another();
    assert!(!status.success());
    assert!(stderr.contains(&agent.listen.to_string()), "{stderr}");
    assert!(agent.job_cgroups().is_empty());
}
