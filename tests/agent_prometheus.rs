//! End to end with a real Prometheus server (the Debian `prometheus`
//! package): an agent runs a job that the kernel OOM-kills and a job that is
//! preempted; Prometheus, on loopback, scrapes the agent every second; its
//! query API must then return the per-job series, the OOM kill and the
//! preemption with the right values; an agent leading a one-member etcd
//! cluster must give every query of the cluster dashboard data. Outside CI,
//! a machine without the
//! prometheus binary skips the test with a note; under `CI=true` it fails.

mod agent_harness;
mod cluster_harness;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent_harness::{job, secs, TestAgent, OOM_HOG};

/// A Prometheus server on a free loopback port, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &std::path::Path, target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: corral\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus { child, addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The result vector of an instant query, as `(labels, value)`, or
    /// `None` while the server is not answering yet.
    fn query(&self, promql: &str) -> Option<Vec<(serde_json::Value, f64)>> {
        let mut stream = TcpStream::connect(self.addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            stream,
            "GET /api/v1/query?query={} HTTP/1.1\r\nHost: prometheus\r\nConnection: close\r\n\r\n",
            percent_encode(promql)
        )
        .ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        // Small answers come in one piece; a chunked one starts with its size.
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = answer["data"]["result"].as_array()?;
        Some(
            result
                .iter()
                .map(|r| (r["metric"].clone(), r["value"][1].as_str().unwrap().parse().unwrap()))
                .collect(),
        )
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_per_job_series_an_oom_kill_and_a_preemption() {
    let Some(binary) = prometheus::installed("prometheus") else { return };
    let mut agent = TestAgent::new("");
    agent.start();
    agent.write_job(
        "oomy.yaml",
        &job("oomy", OOM_HOG, "resources: {memory: {hard: 16Mi}}\noom: {action: fail}\n"),
    );
    agent.write_job(
        "low.yaml",
        &job("low", "sleep 120", "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n"),
    );
    agent.wait_phase("oomy-1", "failed", secs(60));
    agent.wait_phase("low-1", "running", secs(20));
    agent.write_job("high.yaml", &job("high", "sleep 120", "priority: 90\nresources: {cpus: 1}\n"));
    agent.wait_for("low-1 frozen in the kernel", secs(20), || agent.frozen("low-1"));

    let prometheus = Prometheus::start(&binary, agent.listen);
    let value = |promql: &str| -> Option<f64> {
        let result = prometheus.query(promql)?;
        (result.len() == 1).then(|| result[0].1)
    };
    let mut seen = (None, None, None, None);
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        agent.wait_for("the series in Prometheus", secs(60), || {
            seen = (
                value("up{job=\"corral\"}"),
                value("corral_run_memory_oom_kills_total{job=\"corral\", job_name=\"oomy\", run=\"oomy-1\"}"),
                value("corral_preemptions_total{mode=\"suspend\"}"),
                value("corral_run_state{job_name=\"low\", run=\"low-1\", state=\"suspended\"}"),
            );
            seen.0 == Some(1.0)
                && seen.1.is_some_and(|n| n >= 1.0)
                && seen.2 == Some(1.0)
                && seen.3 == Some(1.0)
        })
    }));
    assert!(waited.is_ok(), "last seen {seen:?}\nprometheus log:\n{}", prometheus.log());

    // Per-job series of the running run, with the job's descriptive labels
    // joined on.
    let cpu = prometheus
        .query("corral_run_cpu_usage_seconds_total{job_name=\"high\"} * on (job_name) group_left (priority) corral_job_info")
        .unwrap();
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    assert_eq!(cpu[0].0["priority"], "90");
    assert_eq!(cpu[0].0["run"], "high-1");
    assert_eq!(value("corral_oom_events_total{action=\"fail\",reached=\"killed\"}"), Some(1.0));
    assert_eq!(value("corral_run_frozen{run=\"low-1\"}"), Some(1.0));
    assert_eq!(value("corral_runs{state=\"suspended\"}"), Some(1.0));
    // No series lost its job_name to the target's job label.
    assert_eq!(prometheus.query("count({exported_job!=\"\"})").unwrap().len(), 0);

    // The example OOM alert fires for oomy-1, whose series Prometheus first
    // scraped already counting the kill (the job ended before Prometheus
    // started): the case an alert on increase() alone misses.
    let expr = alert_expr("CorralRunOomKilled");
    let firing = prometheus.query(&expr).unwrap();
    let runs: Vec<&serde_json::Value> = firing.iter().map(|(labels, _)| &labels["run"]).collect();
    assert_eq!(runs, ["oomy-1"], "{expr}: {firing:?}");
    assert_eq!(firing[0].1, 1.0);
}

/// The expression of `alert` in dashboards/alerts.yaml.
fn alert_expr(alert: &str) -> String {
    let rule = prometheus::alert_rules().into_iter().find(|r| r.alert == alert);
    rule.unwrap_or_else(|| panic!("no alert {alert}")).expr
}

#[test]
fn every_query_of_the_cluster_dashboard_has_data_from_a_leading_agent() {
    let Some(binary) = prometheus::installed("prometheus") else { return };
    let Some(etcd) = cluster_harness::EtcdCluster::start(1, true) else { return };
    let agent = etcd.started_agent("node-a", &cluster_harness::NodeOptions::default());
    // One job applied and bound, so that the bindings counter and the
    // scheduling histogram have observations, not only zeros.
    let files = agent.data_file("cluster-jobs");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("once.yaml"), job("once", "true", "")).unwrap();
    agent.corral_ok(&["apply", &files.to_string_lossy()]);
    agent.wait_for("the leader to count a binding", secs(60), || {
        let (_, _, body) = agent.http_get("/metrics", None);
        body.contains("corral_cluster_bindings_total{outcome=\"bound\"} 1")
            && body.contains("corral_cluster_scheduling_seconds_count 1")
    });

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("dashboards/cluster-overview.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // Each panel's queries with Grafana's variables as it would fill them:
    // every agent, and a rate window holding several 1 s scrapes.
    let mut queries: Vec<(String, String)> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let filled = expr.replace("$instance", ".*").replace("$__rate_interval", "30s");
            queries.push((panel["title"].as_str().unwrap().to_owned(), filled));
        }
    }
    assert!(queries.len() >= 10, "{queries:?}");

    let prometheus = Prometheus::start(&binary, agent.listen);
    let mut empty: Vec<(String, String)> = Vec::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        agent.wait_for("data for every cluster dashboard query", secs(90), || {
            empty = queries
                .iter()
                .filter(|(_, q)| prometheus.query(q).is_none_or(|r| r.is_empty()))
                .cloned()
                .collect();
            empty.is_empty()
        })
    }));
    assert!(waited.is_ok(), "no data for {empty:#?}\nprometheus log:\n{}", prometheus.log());

    // The leader panel names this agent; the counts are the cluster's.
    let leader = prometheus.query(&queries[0].1).unwrap();
    assert_eq!(leader.len(), 1, "{leader:?}");
    assert_eq!(leader[0].0["instance"], agent.listen.to_string());
    let nodes = prometheus.query("max(corral_cluster_nodes{state=\"ready\"})").unwrap();
    assert_eq!(nodes[0].1, 1.0, "one node: {nodes:?}");
    let bound = prometheus.query("sum(corral_cluster_bindings_total{outcome=\"bound\"})").unwrap();
    assert_eq!(bound[0].1, 1.0, "{bound:?}");
}
