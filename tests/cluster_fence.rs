//! Self-fencing on real agents: a node in its own network namespace, cut
//! off from a three-member TLS etcd while it runs a cluster run and a local
//! run, freezes the cluster run before its lease can lapse and leaves the
//! local run alone; reconnected, it thaws the run, which completes. With
//! two of three members killed (no quorum) the node does not fence, and
//! `/readyz` says the cluster is unavailable; with the members back the
//! run completes (a node still reconnecting at its next fence point may
//! fence briefly then, which the test prints).
//!
//! The jobs append `<cluster run> <attempt> <wall ms>` every 100 ms to a
//! file of the test, so what ran when is read from what they wrote.

mod agent_harness;
mod cluster_harness;

use std::path::{Path, PathBuf};
use std::time::Instant;

use agent_harness::{job, secs, TestAgent};
use cluster_harness::{EtcdCluster, NodeOptions};

/// A job that appends a tick to `log` every 100 ms, `ticks` times.
fn ticker(name: &str, log: &Path, ticks: u32) -> String {
    let log = log.display();
    job(
        name,
        &format!(
            "i=0; while [ $i -lt {ticks} ]; do \
             echo \"${{CORRAL_CLUSTER_RUN:-local}} ${{CORRAL_CLUSTER_ATTEMPT:-0}} $(date +%s%3N)\" >> {log}; \
             sleep 0.1; i=$((i+1)); done"
        ),
        "",
    )
}

/// The ticks written to `log`: (run, attempt, wall ms).
fn ticks(log: &Path) -> Vec<(String, u32, i64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            Some((
                parts.next()?.to_owned(),
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
            ))
        })
        .collect()
}

struct Node {
    // Dropped first: the agent stops before etcd does.
    agent: TestAgent,
    etcd: EtcdCluster,
    files: PathBuf,
}

impl Node {
    /// Bridged etcd and one agent in its own network namespace, which is
    /// also the cluster's scheduler: every cluster run is bound to it.
    fn start(lease_ttl: u64) -> Option<Node> {
        let etcd = EtcdCluster::start_bridged(3, true)?;
        let options = NodeOptions { netns: true, lease_ttl: secs(lease_ttl), ..Default::default() };
        let agent = etcd.started_agent("node-a", &options);
        let files = agent.data_file("cluster-jobs");
        std::fs::create_dir_all(&files).unwrap();
        etcd.wait_records("the node", &etcd.keys().nodes(), secs(30), |n| n.len() == 1);
        Some(Node { agent, etcd, files })
    }

    /// Applies `text` as a cluster job; the local run it becomes here.
    fn apply(&self, name: &str, text: &str) -> String {
        std::fs::write(self.files.join(format!("{name}.yaml")), text).unwrap();
        let dir = self.files.to_string_lossy().into_owned();
        self.agent.corral_ok(&["apply", "--prune", &dir]);
        let mut run = None;
        self.agent.wait_for(&format!("a local run of {name}"), secs(30), || {
            run = self.agent.runs_of(name).into_iter().next();
            run.is_some()
        });
        let run = run.unwrap();
        self.agent.wait_phase(&run, "running", secs(30));
        run
    }

    fn ps(&self) -> String {
        self.agent.corral_ok(&["ps"])
    }
}

#[test]
fn a_node_cut_off_freezes_its_cluster_runs_before_its_lease_lapses_and_thaws_them_back() {
    let Some(node) = Node::start(3) else { return };
    let a = &node.agent;
    let cluster_log = a.data_file("cluster-ticks");
    let local_log = a.data_file("local-ticks");
    a.write_job("local.yaml", &ticker("local", &local_log, 250));
    a.wait_phase("local-1", "running", secs(30));
    let run = node.apply("ticker", &ticker("ticker", &cluster_log, 100));
    a.wait_for("the cluster run's first ticks", secs(20), || ticks(&cluster_log).len() >= 3);

    let net = node.etcd.net.as_ref().unwrap();
    let record = node.etcd.keys().node("node-a");
    let cut = Instant::now();
    net.cut_off(&a.parent);
    a.wait_for("the cluster run frozen", secs(20), || a.frozen(&run));
    let fenced_after = cut.elapsed();
    // The fence is in place while the node's record, which lives under its
    // lease, is still there: the run was frozen before the lease lapsed.
    let lease_alive = !node.etcd.get_prefix_raw(&record).is_empty();
    println!("cut off -> cluster run frozen: {fenced_after:?} (lease TTL 3s, fence point 2s)");
    assert!(lease_alive, "frozen only after the lease lapsed");
    assert_eq!(a.phase(&run).as_deref(), Some("suspended"));
    let ps = node.ps();
    assert!(ps.contains("suspended (fenced: cluster unreachable)"), "{ps}");

    // Frozen, it writes nothing; the local run goes on.
    let (frozen_ticks, local_ticks) = (ticks(&cluster_log).len(), ticks(&local_log).len());
    std::thread::sleep(secs(2));
    assert_eq!(ticks(&cluster_log).len(), frozen_ticks, "a frozen run writes nothing");
    assert!(ticks(&local_log).len() > local_ticks, "the local run keeps running");
    assert_eq!(a.phase("local-1").as_deref(), Some("running"));

    net.reconnect(&a.parent);
    a.wait_for("the cluster run thawed", secs(30), || a.phase(&run).as_deref() == Some("running"));
    a.wait_phase(&run, "succeeded", secs(60));
    // One attempt, all its ticks; a gap where it was frozen.
    let written = ticks(&cluster_log);
    assert_eq!(written.len(), 100, "every tick written once");
    assert!(written.iter().all(|(r, attempt, _)| r != "local" && *attempt == 1), "{written:?}");
    let gap = written.windows(2).map(|w| w[1].2 - w[0].2).max().unwrap();
    assert!(gap >= 1000, "frozen for a while: longest gap {gap} ms");
    // The local run was never touched.
    let local: Vec<String> = a.transitions("local-1").into_iter().map(|(to, _, _)| to).collect();
    assert!(!local.iter().any(|t| t == "suspended"), "{local:?}");
}

#[test]
fn with_the_quorum_lost_a_node_keeps_its_cluster_runs_running_and_says_so() {
    // etcd's survivor notices it lost its leader only after its election
    // timeout (2.5 to 5 s here); a node whose fence point comes earlier
    // fences (the safe side) and thaws once the quorum is back. The
    // members are asked a sixth of the TTL ahead of the fence point: a TTL
    // of 15 s asks them 7.5 s after the last renewal, past that timeout.
    let Some(mut node) = Node::start(15) else { return };
    let cluster_log = node.agent.data_file("cluster-ticks");
    let run = node.apply("ticker", &ticker("ticker", &cluster_log, 400));
    assert_eq!(node.agent.http_get("/readyz", None).0, 200);

    node.etcd.kill_member(1);
    node.etcd.kill_member(2);
    // Well past the fence point, and past the TTL.
    std::thread::sleep(secs(18));
    let a = &node.agent;
    assert_eq!(a.phase(&run).as_deref(), Some("running"), "{}", a.log_text());
    assert!(!a.frozen(&run));
    let before = ticks(&cluster_log).len();
    std::thread::sleep(secs(1));
    assert!(ticks(&cluster_log).len() > before, "still writing");
    let (status, _, body) = a.http_get("/readyz", None);
    assert_eq!(status, 503, "{body}\n{}", a.log_text());
    assert!(body.contains("cluster is unavailable") && body.contains("no quorum"), "{body}");

    node.etcd.start_member(1);
    node.etcd.start_member(2);
    node.etcd.wait_healthy(&[0, 1, 2]);
    let a = &node.agent;
    a.wait_for("/readyz ready again", secs(30), || a.http_get("/readyz", None).0 == 200);
    a.wait_phase(&run, "succeeded", secs(60));
    let written = ticks(&cluster_log);
    assert_eq!(written.len(), 400);
    // While the quorum was lost the run went on (checked above). Once a
    // leader is back the node's lease runs from the election, and a node
    // that has not renewed by its next fence point (still reconnecting)
    // fences until it does: safe, and said here when it happened.
    let transitions: Vec<String> = a.transitions(&run).into_iter().map(|(to, _, _)| to).collect();
    let fenced = transitions.iter().filter(|t| *t == "suspended").count();
    println!(
        "transitions of the cluster run: {transitions:?} (fenced {fenced} times, during recovery)"
    );
}
