//! Node loss end to end: a three-member etcd with TLS and three real agents;
//! the node holding a one-shot run and a recurring job's firing dies (its
//! agent `kill -9`, its runs' processes killed through their cgroups, as on
//! a machine that went down). After `lease_ttl` and `node_loss_grace` the
//! one-shot run is bound to another node as attempt 2 and completes, and
//! the firing (a recurring job's default, `on_node_loss: fail`) ends `lost`
//! without being fired again. The dead node, started again, gets nothing
//! back.

mod agent_harness;
mod cluster_harness;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_harness::{job, secs, TestAgent};
use cluster_harness::{EtcdCluster, NodeOptions};
use corral::cluster::records::{Binding, ClusterRun, ClusterRunState, RunStatus};
use corral::vocab::Timestamp;

const GIB: u64 = 1 << 30;

struct Cluster {
    // Dropped first: the agents stop before etcd does.
    nodes: Vec<TestAgent>,
    etcd: EtcdCluster,
    files: PathBuf,
}

impl Cluster {
    fn runs(&self) -> BTreeMap<String, ClusterRun> {
        self.etcd.cluster_runs()
    }

    /// Waits until `done` holds of the cluster runs, failing with them.
    fn wait_runs(
        &self,
        what: &str,
        timeout: Duration,
        done: impl FnMut(&BTreeMap<String, ClusterRun>) -> bool,
    ) -> BTreeMap<String, ClusterRun> {
        self.etcd.wait_runs(what, timeout, done)
    }
}

fn run_of<'r>(runs: &'r BTreeMap<String, ClusterRun>, job: &str) -> Option<&'r ClusterRun> {
    runs.values().find(|r| r.job == job)
}

fn bound_node(run: &ClusterRun) -> Option<&str> {
    match &run.state {
        ClusterRunState::Bound { node, .. } => Some(node),
        _ => None,
    }
}

#[test]
fn a_lost_nodes_one_shot_run_moves_as_attempt_2_and_its_cron_firing_ends_lost() {
    let Some(etcd) = EtcdCluster::start(3, true) else { return };
    // node-x takes no part in scheduling (so its death is a node loss, not
    // a failover too) and has the most memory (so the runs go to it).
    let shapes: [(&str, u64, bool); 3] =
        [("node-a", 2 * GIB, true), ("node-b", 4 * GIB, true), ("node-x", 8 * GIB, false)];
    let nodes: Vec<TestAgent> = shapes
        .iter()
        .map(|(name, memory, scheduler)| {
            etcd.started_agent(
                name,
                &NodeOptions { memory: *memory, scheduler: *scheduler, ..Default::default() },
            )
        })
        .collect();
    let files = nodes[0].data_file("cluster-jobs");
    std::fs::create_dir_all(&files).unwrap();
    let c = Cluster { nodes, etcd, files };
    let keys = c.etcd.keys();
    c.etcd.wait_records("three nodes", &keys.nodes(), secs(30), |n| n.len() == 3);

    // The one-shot job logs each start; its first start sleeps (the run the
    // node loss cuts short), any later one ends at once.
    let log = c.nodes[0].data_file("loss.log");
    let first = c.nodes[0].data_file("loss.first");
    // Each attempt runs as a user of its own node: the files are made
    // writable by all.
    let script = format!(
        "umask 000; echo start $(date +%s%3N) >> {log}; \
         if mkdir {first} 2>/dev/null; then sleep 600; fi; echo done >> {log}",
        log = log.display(),
        first = first.display()
    );
    std::fs::write(
        c.files.join("loss.yaml"),
        job("loss", &script, "resources: {memory: {hard: 1Gi}}\n"),
    )
    .unwrap();
    // Every 20 s; a firing sleeps, so the next ones are skipped while it is
    // live (forbid), lost or not.
    std::fs::write(
        c.files.join("tick.yaml"),
        job(
            "tick",
            "sleep 600",
            "schedule: '*/20 * * * * *'\nconcurrency: forbid\n\
             resources: {memory: {hard: 1Gi}}\n",
        ),
    )
    .unwrap();
    c.nodes[0].corral_ok(&["apply", "--prune", &c.files.to_string_lossy()]);

    let runs = c.wait_runs("both running on node-x", secs(90), |runs| {
        ["loss", "tick"].iter().all(|j| run_of(runs, j).and_then(bound_node) == Some("node-x"))
            && log.exists()
    });
    let (loss, tick) = (run_of(&runs, "loss").unwrap(), run_of(&runs, "tick").unwrap());
    let (loss_id, tick_id) = (loss.run.clone(), tick.run.clone());
    assert_eq!(loss.attempt, 1);
    // node-x's local runs, to kill with the machine.
    let deadline = Instant::now() + secs(60);
    let local: Vec<String> = loop {
        let statuses: BTreeMap<String, RunStatus> = c.etcd.cluster_statuses();
        let running: Vec<String> = [&loss_id, &tick_id]
            .iter()
            .filter_map(|id| statuses.get(*id).filter(|s| s.phase == "running"))
            .filter_map(|s| s.node_run.clone())
            .collect();
        if running.len() == 2 {
            break running;
        }
        assert!(Instant::now() < deadline, "node-x did not report both running: {statuses:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };

    // The machine dies: the agent by kill -9, its runs' processes through
    // cgroup.kill (a dead agent alone leaves them running, and a node cut
    // off without fencing is what part of this other tests cover).
    let killed_at = Timestamp::now();
    let started = Instant::now();
    let mut x = c.nodes.into_iter();
    let (a, b, mut node_x) = (x.next().unwrap(), x.next().unwrap(), x.next().unwrap());
    let c = Cluster { nodes: vec![a, b], etcd: c.etcd, files: c.files };
    node_x.kill9();
    for run in &local {
        let kill = node_x.cgroup("unified", run).join("cgroup.kill");
        std::fs::write(&kill, "1").unwrap_or_else(|e| panic!("{}: {e}", kill.display()));
    }

    let runs = c.wait_runs("the runs lost", secs(60), |runs| {
        [&loss_id, &tick_id]
            .iter()
            .all(|id| runs.get(*id).is_some_and(|r| r.state.name() != "bound"))
    });
    let detected = started.elapsed();
    let since = match &runs[&loss_id].state {
        ClusterRunState::Lost { node, since } => {
            assert_eq!(node, "node-x");
            *since
        }
        other => panic!("{loss_id}: {other:?}"),
    };
    assert!(
        matches!(&runs[&tick_id].state, ClusterRunState::Lost { node, .. } if node == "node-x")
    );
    // Shown as lost meanwhile.
    let ps = c.nodes[0].corral_ok(&["ps", "--cluster"]);
    assert!(ps.contains("lost"), "{ps}");

    // After the grace: attempt 2 elsewhere, and it completes; the firing
    // ends lost.
    let runs = c.wait_runs("the one-shot run rebound", secs(60), |runs| {
        runs[&loss_id].attempt == 2 && runs[&loss_id].state.name() != "pending"
    });
    let rebound = started.elapsed();
    let node = bound_node(&runs[&loss_id])
        .map(str::to_owned)
        .or_else(|| match &runs[&loss_id].state {
            ClusterRunState::Ended { node, .. } => node.clone(),
            _ => None,
        })
        .unwrap();
    assert_ne!(node, "node-x");
    let runs = c.wait_runs("attempt 2 succeeded", secs(60), |runs| {
        matches!(&runs[&loss_id].state, ClusterRunState::Ended { outcome, .. } if outcome == "succeeded")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    let starts: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("start ").and_then(|t| t.parse().ok()))
        .collect();
    assert_eq!(starts.len(), 2, "one start per attempt:\n{text}");
    assert_eq!(text.lines().filter(|l| *l == "done").count(), 1, "{text}");
    let bindings: BTreeMap<String, Binding> = c.etcd.records(&keys.bindings());
    let replacement_started = starts[1] - since.as_millis();

    match &runs[&tick_id].state {
        ClusterRunState::Ended { outcome, node, .. } => {
            assert_eq!((outcome.as_str(), node.as_deref()), ("lost", Some("node-x")));
        }
        other => panic!("{tick_id}: {other:?}"),
    }
    assert_eq!(runs[&tick_id].attempt, 1, "a lost firing is not run again");
    // Later firings are new runs, each of its own time, never of the lost
    // one's.
    let later = c.wait_runs("a later firing", secs(60), |runs| {
        runs.values().any(|r| r.job == "tick" && r.run != tick_id && r.state.name() == "bound")
    });
    for r in later.values().filter(|r| r.job == "tick" && r.run != tick_id) {
        assert!(r.scheduled_for > runs[&tick_id].scheduled_for, "{r:?}");
        assert_eq!(r.attempt, 1);
    }
    assert!(
        bindings.keys().all(|k| !k.contains("/node-x/")),
        "nothing is bound to the lost node: {bindings:#?}"
    );

    eprintln!(
        "node loss (lease_ttl 3s, node_loss_grace 10s): kill -9 -> runs lost {:?}; \
         -> rebound {:?}; lost (since) -> replacement started {} ms; kill -> lost since {} ms",
        detected,
        rebound,
        replacement_started,
        since.as_millis() - killed_at.as_millis()
    );

    // The dead node comes back: its binding is gone, so it runs nothing of
    // the cluster's again.
    c.etcd.start_agent(&mut node_x);
    c.etcd.wait_records("node-x back", &keys.nodes(), secs(30), |n| n.len() == 3);
    std::thread::sleep(Duration::from_secs(2));
    let bindings: BTreeMap<String, Binding> = c.etcd.records(&keys.bindings_of("node-x"));
    assert!(bindings.is_empty(), "{bindings:#?}");
    let runs = c.runs();
    assert_eq!(runs[&loss_id].attempt, 2);
    assert!(
        matches!(&runs[&loss_id].state, ClusterRunState::Ended { outcome, .. } if outcome == "succeeded")
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("start ")).count(), 2, "{text}");
    drop(node_x);
}
