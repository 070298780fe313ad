//! Leader failover end to end: a three-member etcd with TLS and three real
//! agents, each standing for election. The leading agent is killed with
//! `kill -9` (no resignation: its key goes only when its lease expires);
//! another takes over within about one `lease_ttl`, places the runs applied
//! meanwhile, and no run is bound twice. Repeated, with the time from the
//! kill to the next binding printed for each trial.

mod agent_harness;
mod cluster_harness;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_harness::{job, secs, TestAgent};
use cluster_harness::{EtcdCluster, NodeOptions};
use corral::cluster::records::{Binding, ClusterRun, ClusterRunState, LeaderRecord};
use corral::vocab::Timestamp;

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];
const TRIALS: usize = 3;

struct Cluster {
    // Dropped first: the agents stop before etcd does.
    nodes: Vec<TestAgent>,
    etcd: EtcdCluster,
    files: PathBuf,
}

impl Cluster {
    fn leader(&self) -> Option<String> {
        let key = self.etcd.keys().leader();
        self.etcd.records::<LeaderRecord>(&key).into_values().next().map(|l| l.node)
    }

    fn wait_leader(&self, what: &str, mut ok: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + secs(30);
        loop {
            if let Some(leader) = self.leader().filter(|l| ok(l)) {
                return leader;
            }
            assert!(Instant::now() < deadline, "no leader: {what}\n{}", self.etcd.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn runs(&self) -> BTreeMap<String, ClusterRun> {
        self.etcd
            .records(&self.etcd.keys().runs())
            .into_iter()
            .map(|(k, v)| (k.rsplit('/').next().unwrap().to_owned(), v))
            .collect()
    }

    /// `corral apply --prune` of the files, through node `via`.
    fn apply(&self, via: usize) {
        self.nodes[via].corral_ok(&["apply", "--prune", &self.files.to_string_lossy()]);
    }

    fn wait_ended(&self, job: &str) -> ClusterRun {
        let deadline = Instant::now() + secs(60);
        loop {
            let runs = self.runs();
            if let Some(r) = runs.values().find(|r| r.job == job && r.state.name() == "ended") {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{job} did not end: {runs:#?}\n{}",
                self.etcd.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[test]
fn a_killed_leaders_successor_places_pending_runs_and_none_is_bound_twice() {
    let Some(etcd) = EtcdCluster::start(3, true) else { return };
    let lease_ttl = secs(3);
    let nodes: Vec<TestAgent> = NAMES
        .iter()
        .map(|name| etcd.started_agent(name, &NodeOptions { lease_ttl, ..Default::default() }))
        .collect();
    let files = nodes[0].data_file("cluster-jobs");
    std::fs::create_dir_all(&files).unwrap();
    let mut c = Cluster { nodes, etcd, files };
    let keys = c.etcd.keys();
    c.etcd.wait_records("three nodes", &keys.nodes(), secs(30), |n| n.len() == 3);

    let mut failovers = Vec::new();
    let mut to_binding = Vec::new();
    for trial in 0..TRIALS {
        let old = c.wait_leader("before the kill", |_| true);
        let i = NAMES.iter().position(|n| *n == old).unwrap();
        let via = (i + 1) % NAMES.len();
        let killed_at = Timestamp::now();
        let started = Instant::now();
        c.nodes[i].kill9();
        // Applied at once: the run waits for the next leader to create and
        // bind it. It sleeps, so that its binding is there to be seen.
        let name = format!("after-{trial}");
        // The killed node's record outlives it by up to a lease: the job
        // admits only the others, so that it is not bound to a dead node
        // (that is node loss, tests/cluster_node_loss.rs).
        let others: Vec<&str> = NAMES.iter().copied().filter(|n| *n != old).collect();
        let only = format!("nodes: [{}]\n", others.join(", "));
        std::fs::write(c.files.join(format!("{name}.yaml")), job(&name, "sleep 2", &only)).unwrap();
        c.apply(via);
        let new = c.wait_leader("after the kill", |l| l != old);
        failovers.push(started.elapsed());
        let bound = c.etcd.wait_records("the run bound", &keys.bindings(), secs(60), |b| {
            b.values().any(|v| v["job"] == name.as_str())
        });
        let binding: Binding = bound
            .values()
            .find(|v| v["job"] == name.as_str())
            .map(|v| serde_json::from_value(v.clone()).unwrap())
            .unwrap();
        assert_eq!(binding.bound_by, new, "bound by the new leader");
        let waited = binding.bound_at.as_millis() - killed_at.as_millis();
        to_binding.push(Duration::from_millis(u64::try_from(waited).unwrap()));
        let run = c.wait_ended(&name);
        match &run.state {
            ClusterRunState::Ended { outcome, node, .. } => {
                assert_eq!(outcome, "succeeded", "{run:?}");
                assert_ne!(node.as_deref(), Some(old.as_str()), "bound to the killed node");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(run.attempt, 1, "bound once: {run:?}");
        eprintln!(
            "trial {trial}: kill -9 of leader {old} -> {new} leading after {:?}; \
             -> the next binding {:?}",
            failovers.last().unwrap(),
            to_binding.last().unwrap()
        );
        // The killed agent comes back as a follower; its lease is gone, so
        // it must join anew (a node record of its own again).
        c.etcd.start_agent(&mut c.nodes[i]);
        c.etcd.wait_records("three nodes again", &keys.nodes(), secs(30), |n| n.len() == 3);
    }

    // No run bound twice: every run has one attempt, and no binding is
    // left behind (every run ended).
    let runs = c.runs();
    assert_eq!(runs.len(), TRIALS, "{runs:#?}");
    for run in runs.values() {
        assert_eq!(run.attempt, 1, "{run:#?}");
    }
    let bindings: BTreeMap<String, Binding> = c.etcd.records(&keys.bindings());
    assert!(bindings.is_empty(), "{bindings:#?}");
    eprintln!(
        "failover (lease_ttl {lease_ttl:?}), median of {TRIALS}: kill -9 -> new leader {:?}; \
         kill -9 -> next binding {:?}",
        median(failovers),
        median(to_binding)
    );
}
