//! A real agent as a node of a cluster, against a real etcd member on
//! loopback: it publishes its record under its lease, runs what is bound to
//! it exactly once, across a `kill -9` of the agent, and reports the run's
//! status to its end; once the agent stops, its record leaves with the
//! lease.

mod agent_harness;
mod cluster_harness;

use agent_harness::{job, secs, TestAgent};
use cluster_harness::EtcdCluster;
use corral::cluster::records::{decode, encode, Binding, NodeRecord, RunStatus};
use corral::vocab::Timestamp;

/// One plaintext etcd member (the cluster harness's), removed when dropped.
struct Etcd {
    member: EtcdCluster,
    endpoint: String,
}

impl Etcd {
    /// Starts a member; `None` (saying why) where etcd is not installed and
    /// CI is not set.
    fn start() -> Option<Etcd> {
        let member = EtcdCluster::start(1, false)?;
        let endpoint = member.endpoint(0);
        Some(Etcd { member, endpoint })
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.member.get_prefix_raw(key).remove(key)
    }

    fn put(&self, key: &str, value: &[u8]) {
        self.member.put_raw(key, value);
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        self.member.etcdctl(cluster_harness::ROOT, args)
    }

    /// The member's log, for failure messages.
    fn log(&self) -> String {
        self.member.logs()
    }
}

fn status(etcd: &Etcd, key: &str) -> Option<RunStatus> {
    etcd.get(key).and_then(|v| decode(key, &v).ok())
}

fn phase_of(etcd: &Etcd, key: &str) -> String {
    status(etcd, key).map(|s| s.phase).unwrap_or_default()
}

#[test]
fn a_bound_run_runs_once_across_a_kill_9_and_reports_its_end() {
    let Some(etcd) = Etcd::start() else { return };
    let prefix = format!("/corral-test-{}", std::process::id());
    let mut agent = TestAgent::started(&format!(
        "cluster:\n  endpoints: [\"{}\"]\n  node_name: n1\n  labels: {{disk: ssd}}\n  \
         lease_ttl: 2s\n  prefix: {prefix}\n  scheduler: false\n",
        etcd.endpoint
    ));
    let node_key = format!("{prefix}/nodes/n1");
    agent.wait_for("the node record", secs(20), || etcd.get(&node_key).is_some());
    let record: NodeRecord = decode(&node_key, &etcd.get(&node_key).unwrap()).unwrap();
    assert_eq!(record.labels["disk"], "ssd");
    assert!(record.capacity.cpus >= 1 && record.capacity.memory > 0, "{record:?}");

    // The job waits for the test's go, so the agent can be killed mid-run.
    let data = agent.data.display().to_string();
    let script = format!("while [ ! -e {data}/go ]; do sleep 0.05; done; echo ran >> {data}/out");
    let binding = Binding {
        run: "work-7".into(),
        job: "work".into(),
        attempt: 1,
        job_revision: 7,
        file: "cluster/work.yaml".into(),
        source: job("work", &script, ""),
        memory_hard: None,
        scheduled_for: None,
        bound_by: "test".into(),
        bound_at: Timestamp::now(),
    };
    etcd.put(&format!("{prefix}/bindings/n1/work-7"), &encode(&binding));
    let status_key = format!("{prefix}/status/work-7");
    let phase = |etcd: &Etcd| status(etcd, &status_key).map(|s| s.phase);
    agent
        .wait_for("the run to be running", secs(30), || phase(&etcd).as_deref() == Some("running"));
    assert_eq!(agent.runs_of("work"), ["work-1"]);

    agent.kill9();
    agent.start();
    std::fs::write(agent.data.join("go"), "").unwrap();
    agent.wait_for_or(
        "the run to succeed",
        secs(30),
        || phase(&etcd).as_deref() == Some("succeeded"),
        || format!("status: {:?}\netcd log: {}", status(&etcd, &status_key), etcd.log()),
    );
    let end = status(&etcd, &status_key).unwrap();
    assert_eq!((end.node.as_str(), end.node_run.as_deref()), ("n1", Some("work-1")));
    let ended = end.ended.unwrap();
    assert_eq!((ended.outcome.as_str(), ended.exit_code), ("succeeded", Some(0)));
    // The binding, listed again by the restarted agent, ran nothing new.
    assert_eq!(agent.runs_of("work"), ["work-1"]);
    assert_eq!(agent.read_data("out"), "ran\n");
    // `corral show` on the node names the cluster run beside its own.
    let shown = agent.corral_ok(&["show", "work-1"]);
    assert!(shown.contains("cluster:   run work-7 (attempt 1)"), "{shown}");

    // A binding the scheduler deletes stops its run.
    let mut stays = binding.clone();
    stays.run = "stays-8".into();
    stays.job = "stays".into();
    stays.source = job("stays", "sleep 600", "");
    etcd.put(&format!("{prefix}/bindings/n1/stays-8"), &encode(&stays));
    let stays_key = format!("{prefix}/status/stays-8");
    agent.wait_for("stays to run", secs(30), || phase_of(&etcd, &stays_key) == "running");
    let out = etcd.ctl(&["del", &format!("{prefix}/bindings/n1/stays-8")]);
    assert!(out.status.success());
    agent.wait_for("stays to be killed", secs(30), || phase_of(&etcd, &stays_key) == "killed");
    let reason = status(&etcd, &stays_key).unwrap().ended.unwrap().reason.unwrap();
    assert!(reason.contains("removed from the cluster"), "{reason}");

    // One that can never fit here is handed back, with why.
    let mut huge = binding.clone();
    huge.run = "huge-9".into();
    huge.job = "huge".into();
    huge.source = job("huge", "true", "resources: {memory: {hard: 64Ti}}\n");
    etcd.put(&format!("{prefix}/bindings/n1/huge-9"), &encode(&huge));
    let huge_key = format!("{prefix}/status/huge-9");
    agent.wait_for("huge to be handed back", secs(30), || {
        phase_of(&etcd, &huge_key) == "handed-back"
    });
    let back = status(&etcd, &huge_key).unwrap().handed_back.unwrap();
    assert!(back.reason.contains("can never fit this node (n1)"), "{}", back.reason);
    assert!(agent.runs_of("huge").is_empty());

    // A job of the node's own directory that leaves the node out is a
    // problem of its file, and does not run; one that names it runs.
    agent.write_job("elsewhere.yaml", &job("elsewhere", "true", "nodes: [n2]\n"));
    agent.write_job("here.yaml", &job("here", "true", "nodes: [n1]\n"));
    agent.wait_phase("here-1", "succeeded", secs(30));
    assert!(agent.runs_of("elsewhere").is_empty());
    let log = agent.log_text();
    assert!(
        log.contains("nodes: refused: node constraints: this node (n1, labels: disk=ssd) is not in nodes [n2]"),
        "{log}"
    );

    agent.stop();
    agent.wait_for("the node record to go with its lease", secs(20), || {
        etcd.get(&node_key).is_none()
    });
}
