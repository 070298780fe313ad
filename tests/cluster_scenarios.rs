//! Cluster mode end to end: a three-member etcd with TLS, three real agents
//! as nodes of 2, 4 and 8 GiB, jobs applied with `corral apply`, and what
//! the nodes then run, as etcd's records and the nodes' own stores say.

mod agent_harness;
mod cluster_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_harness::{job, secs, TestAgent};
use cluster_harness::{EtcdCluster, NodeOptions};
use corral::cluster::records::{ClusterRun, ClusterRunState, LeaderRecord, RunStatus};

const GIB: u64 = 1 << 30;

/// A three-member TLS etcd and three agents: node-a (2 GiB, zone a),
/// node-b (4 GiB, disk ssd), node-c (8 GiB).
struct Cluster {
    // Dropped last: the agents stop before etcd does.
    nodes: Vec<TestAgent>,
    etcd: EtcdCluster,
    /// Where the applied job files are written: outside /tmp, as jobs that
    /// share files with the test need.
    files: PathBuf,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let etcd = EtcdCluster::start(3, true)?;
        type Shape<'a> = (&'a str, u64, &'a [(&'a str, &'a str)]);
        let shapes: [Shape; 3] = [
            ("node-a", 2 * GIB, &[("zone", "a")]),
            ("node-b", 4 * GIB, &[("disk", "ssd")]),
            ("node-c", 8 * GIB, &[]),
        ];
        let nodes: Vec<TestAgent> = shapes
            .iter()
            .map(|(name, memory, labels)| {
                etcd.started_agent(
                    name,
                    &NodeOptions { memory: *memory, labels, ..Default::default() },
                )
            })
            .collect();
        let files = nodes[0].data_file("cluster-jobs");
        std::fs::create_dir_all(&files).unwrap();
        let cluster = Cluster { nodes, etcd, files };
        cluster
            .etcd
            .wait_records("three nodes", &cluster.etcd.keys().nodes(), secs(30), |n| n.len() == 3);
        Some(cluster)
    }

    fn node(&self, name: &str) -> &TestAgent {
        let i = ["node-a", "node-b", "node-c"].iter().position(|n| *n == name).unwrap();
        &self.nodes[i]
    }

    /// Writes `text` as `file` among the applied files.
    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.files.join(file), text).unwrap();
    }

    fn remove(&self, file: &str) {
        std::fs::remove_file(self.files.join(file)).unwrap();
    }

    /// `corral apply --prune` of the files directory, through node-a's
    /// configuration; its stdout.
    fn apply(&self) -> String {
        let dir = self.files.to_string_lossy().into_owned();
        self.nodes[0].corral_ok(&["apply", "--prune", &dir])
    }

    fn runs(&self) -> BTreeMap<String, ClusterRun> {
        self.etcd.cluster_runs()
    }

    fn statuses(&self) -> BTreeMap<String, RunStatus> {
        self.etcd.cluster_statuses()
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

    /// The run of `job` (its only one), once it has ended.
    fn ended(&self, job: &str, timeout: Duration) -> ClusterRun {
        let runs = self.wait_runs(&format!("{job} ended"), timeout, |runs| {
            runs.values().any(|r| r.job == job && matches!(r.state, ClusterRunState::Ended { .. }))
        });
        let of_job: Vec<&ClusterRun> = runs.values().filter(|r| r.job == job).collect();
        assert_eq!(of_job.len(), 1, "one run of {job}: {of_job:#?}");
        of_job[0].clone()
    }

    fn leader(&self) -> Option<String> {
        let key = self.etcd.keys().leader();
        self.etcd.records::<LeaderRecord>(&key).into_values().next().map(|l| l.node)
    }
}

fn outcome_and_node(run: &ClusterRun) -> (String, String) {
    match &run.state {
        ClusterRunState::Ended { outcome, node, .. } => {
            (outcome.clone(), node.clone().unwrap_or_default())
        }
        other => panic!("{} has not ended: {other:?}", run.run),
    }
}

/// A job's file: `sh -c script`, with `extra` YAML.
fn file(name: &str, script: &str, extra: &str) -> String {
    job(name, script, extra)
}

#[test]
fn applied_jobs_run_once_on_a_node_that_fits_and_one_too_big_waits_with_the_reason() {
    let Some(c) = Cluster::start() else { return };
    c.write("small.yaml", &file("small", "true", "resources: {memory: {hard: 64Mi}}\n"));
    c.write("big.yaml", &file("big", "true", "resources: {memory: {hard: 6Gi}}\n"));
    c.write("ssd.yaml", &file("ssd", "true", "node_selector: {disk: ssd}\n"));
    c.write("pinned.yaml", &file("pinned", "true", "nodes: [node-a]\n"));
    c.write("huge.yaml", &file("huge", "true", "resources: {memory: {hard: 20Gi}}\n"));
    let out = c.apply();
    for job in ["small", "big", "ssd", "pinned", "huge"] {
        assert!(out.contains(&format!("added {job}")), "{out}");
    }

    // Fits only node-c; only node-b has the label; named node-a.
    for (job, want) in [
        ("big", Some("node-c")),
        ("ssd", Some("node-b")),
        ("pinned", Some("node-a")),
        ("small", None),
    ] {
        let run = c.ended(job, secs(60));
        let (outcome, node) = outcome_and_node(&run);
        assert_eq!(outcome, "succeeded", "{run:#?}");
        if let Some(want) = want {
            assert_eq!(node, want, "{job}: {run:#?}");
        }
        assert_eq!(run.attempt, 1, "{run:#?}");
        // The node that ran it has exactly one local run of it, which
        // succeeded; no other node has any.
        for name in ["node-a", "node-b", "node-c"] {
            let local = c.node(name).runs_of(job);
            if name == node {
                assert_eq!(local.len(), 1, "{job} on {name}: {local:?}");
                assert_eq!(c.node(name).phase(&local[0]).as_deref(), Some("succeeded"));
            } else {
                assert!(local.is_empty(), "{job} also ran on {name}: {local:?}");
            }
        }
        let status = &c.statuses()[&run.run];
        assert_eq!(status.node, node);
        assert_eq!(status.ended.as_ref().map(|e| e.exit_code), Some(Some(0)), "{status:#?}");
    }

    // Too big for every node: it waits, saying so, and no node runs it.
    let runs = c.wait_runs("huge's reason", secs(30), |runs| {
        runs.values().any(|r| {
            r.job == "huge"
                && matches!(&r.state, ClusterRunState::Pending { reason: Some(reason) }
                    if reason.contains("too big for every node"))
        })
    });
    let huge = runs.values().find(|r| r.job == "huge").unwrap();
    let ClusterRunState::Pending { reason: Some(reason) } = &huge.state else { unreachable!() };
    for node in ["node-a", "node-b", "node-c"] {
        assert!(reason.contains(node), "every node named: {reason}");
        assert!(c.node(node).runs_of("huge").is_empty());
    }
    let ps = c.nodes[1].corral_ok(&["ps", "--cluster"]);
    assert!(ps.contains("huge") && ps.contains("too big for every node"), "{ps}");
    let nodes = c.nodes[2].corral_ok(&["nodes"]);
    for node in ["node-a", "node-b", "node-c"] {
        assert!(nodes.contains(node), "{nodes}");
    }
}

#[test]
fn delete_stops_a_run_and_a_change_lets_a_finishing_run_end() {
    let Some(c) = Cluster::start() else { return };
    let marker = c.nodes[0].data_file("finish.count").display().to_string();
    c.write("stopper.yaml", &file("stopper", "sleep 300", "on_removal: stop\n"));
    c.write(
        "finisher.yaml",
        &file("finisher", &format!("echo x >> {marker}; sleep 4"), "on_removal: finish\n"),
    );
    c.apply();
    let running = |job: &'static str| {
        move |runs: &BTreeMap<String, ClusterRun>| {
            runs.values().any(|r| r.job == job && matches!(r.state, ClusterRunState::Bound { .. }))
        }
    };
    c.wait_runs("stopper bound", secs(60), running("stopper"));
    let first = c.wait_runs("finisher bound", secs(60), running("finisher"));
    let first_finisher = first.values().find(|r| r.job == "finisher").unwrap().run.clone();
    // Both are running on their nodes before anything changes.
    let statuses = c.etcd.keys().statuses();
    c.etcd.wait_records("both running", &statuses, secs(60), |s| {
        s.values().filter(|v| v["phase"] == "running").count() == 2
    });

    // Deleted: on_removal stop ends its run as killed.
    c.remove("stopper.yaml");
    let out = c.apply();
    assert!(out.contains("removed stopper"), "{out}");
    let stopper = c.ended("stopper", secs(60));
    assert_eq!(outcome_and_node(&stopper).0, "killed", "{stopper:#?}");
    let node = outcome_and_node(&stopper).1;
    let local = c.node(&node).runs_of("stopper");
    assert_eq!(c.node(&node).phase(&local[0]).as_deref(), Some("killed"));

    // Changed: on_removal finish lets the old run end on its own, and the
    // new version gets a run of its own.
    c.write(
        "finisher.yaml",
        &file("finisher", &format!("echo x >> {marker}; sleep 1"), "on_removal: finish\n"),
    );
    assert!(c.apply().contains("changed finisher"));
    let runs = c.wait_runs("both finisher runs ended", secs(90), |runs| {
        runs.values().filter(|r| r.job == "finisher").count() == 2
            && runs.values().filter(|r| r.job == "finisher").all(|r| {
                matches!(&r.state, ClusterRunState::Ended { outcome, .. } if outcome == "succeeded")
            })
    });
    assert!(runs.contains_key(&first_finisher), "{runs:#?}");
    let count = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(count, "x\nx\n", "each version ran once");
}

#[test]
fn a_recurring_cluster_job_fires_once_per_schedule_across_the_cluster() {
    let Some(c) = Cluster::start() else { return };
    let log = c.nodes[0].data_file("ticks");
    let log_text = log.display().to_string();
    c.write(
        "tick.yaml",
        &file("tick", &format!("echo $CORRAL_RUN >> {log_text}"), "schedule: \"*/2 * * * * *\"\n"),
    );
    c.apply();
    // A dozen seconds of firings, decided by whichever agent leads.
    let started = Instant::now();
    c.wait_runs("five firings ended", secs(60), |runs| {
        runs.values()
            .filter(|r| r.job == "tick" && matches!(r.state, ClusterRunState::Ended { .. }))
            .count()
            >= 5
    });
    c.remove("tick.yaml");
    c.apply();
    std::thread::sleep(secs(3));
    let runs: Vec<ClusterRun> = c.runs().into_values().filter(|r| r.job == "tick").collect();
    assert!(runs.len() >= 5, "{runs:#?} after {:?}", started.elapsed());
    // One run per firing: every firing time once, two seconds apart.
    let times: Vec<i64> =
        runs.iter().map(|r| r.scheduled_for.expect("a firing time").as_millis()).collect();
    let distinct: BTreeSet<i64> = times.iter().copied().collect();
    assert_eq!(distinct.len(), times.len(), "{times:?}");
    assert!(times.iter().all(|t| t % 2000 == 0), "{times:?}");
    // And none ran twice: the runs' own lines (a node keeps
    // only a recurring job's latest runs in its store) equal the cluster
    // runs that reached a node (a firing still waiting when the job was
    // deleted ends without one).
    let executions = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
    let reached = runs
        .iter()
        .filter(|r| match &r.state {
            ClusterRunState::Bound { .. } | ClusterRunState::Lost { .. } => true,
            ClusterRunState::Ended { node, .. } => node.is_some(),
            ClusterRunState::Pending { .. } => false,
        })
        .count();
    let succeeded = runs
        .iter()
        .filter(|r| matches!(&r.state, ClusterRunState::Ended { outcome, .. } if outcome == "succeeded"))
        .count();
    // A run the deletion stopped may have been stopped before it started.
    assert!(
        (succeeded..=reached).contains(&executions),
        "{executions} executions, {succeeded} succeeded, {reached} reached a node: {runs:#?}"
    );
}

#[test]
fn leadership_moves_on_a_clean_stop_and_placements_go_on() {
    let Some(mut c) = Cluster::start() else { return };
    let deadline = Instant::now() + secs(30);
    let first = loop {
        if let Some(leader) = c.leader() {
            break leader;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        std::thread::sleep(Duration::from_millis(200));
    };
    c.write("before.yaml", &file("before", "true", ""));
    c.apply();
    c.ended("before", secs(60));

    let i = ["node-a", "node-b", "node-c"].iter().position(|n| *n == first).unwrap();
    let stopped_at = Instant::now();
    assert!(c.nodes[i].stop().success());
    let deadline = Instant::now() + secs(20);
    let second = loop {
        match c.leader() {
            Some(leader) if leader != first => break leader,
            _ => {}
        }
        assert!(Instant::now() < deadline, "no new leader after {first} stopped");
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("leadership moved from {first} to {second} in {:?}", stopped_at.elapsed());

    // The stopped node's lease went with it, so nothing is bound to it.
    c.etcd.wait_records("two nodes", &c.etcd.keys().nodes(), secs(30), |n| n.len() == 2);
    c.write("after.yaml", &file("after", "true", ""));
    c.apply();
    let run = c.ended("after", secs(60));
    let (outcome, node) = outcome_and_node(&run);
    assert_eq!(outcome, "succeeded");
    assert_ne!(node, first, "bound to the stopped node");
}

#[test]
fn an_oom_requeue_moves_to_a_node_with_more_memory() {
    let Some(c) = Cluster::start() else { return };
    // node-c's room is taken by a sleeper, so the 1 GiB job fits only
    // node-a (2 GiB) at first.
    c.write(
        "holder.yaml",
        &file("holder", "sleep 600", "nodes: [node-c]\nresources: {memory: {hard: 7500Mi}}\n"),
    );
    c.apply();
    c.etcd.wait_records("holder running", &c.etcd.keys().statuses(), secs(60), |s| {
        s.values().any(|v| {
            v["run"].as_str().is_some_and(|r| r.starts_with("holder-")) && v["phase"] == "running"
        })
    });
    c.wait_runs("node-c's record shows the holder", secs(30), |_| {
        let nodes = c.etcd.get_prefix_json(&c.etcd.keys().nodes());
        nodes
            .values()
            .any(|n| n["name"] == "node-c" && n["allocated"]["memory"].as_u64() >= Some(7000 << 20))
    });
    let attempts = c.nodes[0].data_file("grower.attempts").display().to_string();
    // About 1.1 GiB of shell string: more than the 1 GiB limit, well
    // within the 3 GiB of the requeued attempt.
    let hog = format!(
        "echo $CORRAL_RUN >> {attempts}; x=abcdefgh; i=0; while [ $i -lt 27 ]; do x=\"$x$x\"; i=$((i+1)); done; echo ${{#x}}"
    );
    c.write(
        "grower.yaml",
        &file(
            "grower",
            &hog,
            "nodes: [node-a, node-c]\nresources: {memory: {hard: 1Gi}}\n\
             oom: {action: requeue, requeue_factor: 3}\n",
        ),
    );
    c.apply();
    // The first attempt runs out of memory on node-a, which cannot hold
    // 3 GiB: it hands the run back, and it waits for node-c's room.
    let runs = c.wait_runs("grower handed back by node-a", secs(120), |runs| {
        runs.values().any(|r| r.job == "grower" && r.handed_back_by.contains_key("node-a"))
    });
    let grower = runs.values().find(|r| r.job == "grower").unwrap().clone();
    assert_eq!(grower.memory_hard, Some(3 * GIB), "{grower:#?}");
    assert!(grower.attempt >= 2, "{grower:#?}");
    assert_eq!(c.node("node-a").runs_of("grower").len(), 1);

    c.remove("holder.yaml");
    c.apply();
    let run = c.ended("grower", secs(120));
    let (outcome, node) = outcome_and_node(&run);
    assert_eq!((outcome.as_str(), node.as_str()), ("succeeded", "node-c"), "{run:#?}");
    assert_eq!(run.memory_hard, Some(3 * GIB));
    let local = c.node("node-c").runs_of("grower");
    assert_eq!(local.len(), 1, "{local:?}");
    assert_eq!(c.node("node-c").phase(&local[0]).as_deref(), Some("succeeded"));
}
