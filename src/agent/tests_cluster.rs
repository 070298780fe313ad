//! Cluster runs on a fake machine: a binding becomes exactly one local run,
//! a replayed binding none, a restart keeps the run and its spec, a removed
//! binding stops its run, and what this node will not run is handed back
//! with the reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cluster::ClusterNode;
use super::runtime::{Observed, Probe};
use super::tests::{job, Bench};
use crate::cluster::node::status::HANDED_BACK;
use crate::cluster::records::{Binding, RunStatus};
use crate::store::{ClusterRuns, RunStore};
use crate::vocab::{Bytes, RunId, Timestamp};

fn binding(run: &str, attempt: u32, source: &str) -> Binding {
    Binding {
        run: run.into(),
        job: "etl".into(),
        attempt,
        job_revision: 5,
        file: "cluster/etl.yaml".into(),
        source: source.into(),
        memory_hard: None,
        scheduled_for: None,
        bound_by: "n0".into(),
        bound_at: Timestamp::EPOCH,
    }
}

fn labels() -> BTreeMap<String, String> {
    [("disk".to_owned(), "ssd".to_owned())].into()
}

/// A bench whose jobs directory was read, in the cluster as node n1.
async fn node() -> Bench {
    let mut b = Bench::new();
    b.files(&[]).await;
    let rewritten = b.sup.join_cluster(ClusterNode::new("n1".into(), labels())).unwrap();
    assert!(rewritten.is_empty());
    b
}

fn local_runs(b: &Bench) -> usize {
    b.sup.store().runs_for_job(&"etl".parse().unwrap(), 10).unwrap().len()
}

fn one(statuses: Vec<RunStatus>) -> RunStatus {
    assert_eq!(statuses.len(), 1, "{statuses:#?}");
    statuses.into_iter().next().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_binding_becomes_one_run_and_reports_it_to_its_end() {
    let mut b = node().await;
    let bound = binding("etl-5", 1, &job("etl", ""));
    let first = one(b.sup.cluster_bound(&bound).unwrap());
    assert_eq!((first.run.as_str(), first.node.as_str(), first.attempt), ("etl-5", "n1", 1));
    assert_eq!((first.node_run.as_deref(), first.phase.as_str()), (Some("etl-1"), "pending"));
    b.settle().await;
    assert_eq!(b.fake.launched(), ["etl-1"]);
    // Seen again (a replayed watch, a listing): nothing new, its status again.
    let again = one(b.sup.cluster_bound(&bound).unwrap());
    assert_eq!((again.node_run.as_deref(), again.phase.as_str()), (Some("etl-1"), "running"));
    let listed = b.sup.cluster_listed(std::slice::from_ref(&bound)).unwrap();
    assert_eq!(listed.len(), 1);
    b.settle().await;
    assert_eq!(local_runs(&b), 1);
    assert_eq!(b.fake.launched(), ["etl-1"]);
    // `corral ps` lists it like a local run, with the cluster's id beside.
    let (reply, answer) = tokio::sync::oneshot::channel();
    b.sup.command(crate::api::Command { request: crate::api::Request::Ps, reply }).unwrap();
    let crate::api::Response::Ps { runs } = crate::api::socket::response(answer.await.unwrap())
    else {
        panic!("ps")
    };
    let row = runs.iter().find(|r| r.run == "etl-1").expect("listed");
    let cluster = row.cluster_run.as_ref().expect("a cluster run");
    assert_eq!((cluster.run.as_str(), cluster.attempt), ("etl-5", 1));
    b.fake.exit("etl-1", 0);
    b.settle().await;
    let ended = one(b.sup.cluster_statuses([RunId::new("etl-1")]).unwrap());
    let end = ended.ended.clone().expect("ended");
    assert_eq!((end.outcome.as_str(), end.exit_code), ("succeeded", Some(0)));
    assert!(ended.events.iter().any(|e| e.what.starts_with("running -> succeeded")), "{ended:#?}");
    // Reported once it ended: no longer a live cluster run.
    assert!(b.sup.cluster_runs().is_empty());
    assert!(b.sup.cluster_statuses([RunId::new("etl-1")]).unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_restart_keeps_the_run_its_spec_and_its_mapping() {
    let mut b = node().await;
    let source = job("etl", "env: {FROM: cluster}\n");
    b.sup.cluster_bound(&binding("etl-5", 1, &source)).unwrap();
    b.settle().await;
    assert_eq!(b.fake.env("etl-1")["FROM"], "cluster");
    let launch = b.launch("etl-1");
    let fake = Arc::clone(&b.fake);
    fake.set_probe(&launch.run_dir, Probe::Running { launch: launch.clone() });
    fake.set_live(vec![(RunId::new("etl-1"), None)]);
    let mut b = b.restart();
    b.sup.recover().unwrap();
    // The directory does not have the job; the binding's text does.
    b.files(&[]).await;
    assert_eq!(b.phase("etl-1"), "running");
    let rewritten = b.sup.join_cluster(ClusterNode::new("n1".into(), labels())).unwrap();
    let status = one(rewritten);
    assert_eq!((status.run.as_str(), status.phase.as_str()), ("etl-5", "running"));
    assert!(b.sup.cluster_bound(&binding("etl-5", 1, &source)).unwrap()[0].ended.is_none());
    b.settle().await;
    assert_eq!(local_runs(&b), 1, "the binding seen again after the restart runs nothing new");
    assert!(b.fake.launched().is_empty());
    b.fake.exit("etl-1", 3);
    b.settle().await;
    let ended = one(b.sup.cluster_statuses([RunId::new("etl-1")]).unwrap());
    assert_eq!(ended.ended.map(|e| (e.outcome, e.exit_code)), Some(("failed".into(), Some(3))));
}

#[tokio::test(start_paused = true)]
async fn a_removed_binding_stops_its_run() {
    let mut b = node().await;
    b.sup.cluster_bound(&binding("etl-5", 1, &job("etl", ""))).unwrap();
    b.settle().await;
    assert_eq!(b.phase("etl-1"), "running");
    b.sup.cluster_unbound("etl-5").unwrap();
    b.settle().await;
    assert_eq!(b.phase("etl-1"), "killed");
    let status = one(b.sup.cluster_statuses([RunId::new("etl-1")]).unwrap());
    let end = status.ended.unwrap();
    assert_eq!(end.outcome, "killed");
    assert!(end.reason.unwrap().contains("removed from the cluster"));
    // A listing without it after a reconnection stops it too.
    b.sup.cluster_bound(&binding("etl-6", 1, &job("etl", ""))).unwrap();
    b.settle().await;
    b.sup.cluster_listed(&[]).unwrap();
    b.settle().await;
    assert_eq!(b.phase("etl-2"), "killed");
}

#[tokio::test(start_paused = true)]
async fn a_new_attempt_bound_here_stops_the_earlier_one() {
    let mut b = node().await;
    b.sup.cluster_bound(&binding("etl-5", 1, &job("etl", ""))).unwrap();
    b.settle().await;
    assert_eq!(b.phase("etl-1"), "running");
    let second = one(b.sup.cluster_bound(&binding("etl-5", 2, &job("etl", ""))).unwrap());
    assert_eq!((second.attempt, second.node_run.as_deref()), (2, Some("etl-2")));
    b.settle().await;
    assert_eq!(b.phase("etl-1"), "killed");
    assert_eq!(b.phase("etl-2"), "running");
    // Only the new attempt reports.
    let statuses = b.sup.cluster_statuses([RunId::new("etl-1"), RunId::new("etl-2")]).unwrap();
    assert_eq!(one(statuses).attempt, 2);
}

#[tokio::test(start_paused = true)]
async fn what_this_node_will_not_run_is_handed_back_with_why() {
    let mut b = node().await;
    b.files(&[("local.yaml", &job("etl", ""))]).await;
    let clash = one(b.sup.cluster_bound(&binding("etl-5", 1, &job("etl", ""))).unwrap());
    assert_eq!(clash.phase, HANDED_BACK);
    let reason = clash.handed_back.unwrap().reason;
    assert!(reason.contains("etl is a job of this node's own jobs directory"), "{reason}");
    b.remove("local.yaml").await;
    let before = local_runs(&b);

    let too_big = job("etl", "resources: {memory: {hard: 100Gi}}\n");
    let back = one(b.sup.cluster_bound(&binding("etl-6", 1, &too_big)).unwrap());
    let reason = back.handed_back.unwrap().reason;
    assert!(reason.contains("it can never fit this node (n1)"), "{reason}");

    let cpus = job("etl", "resources: {cpus: 8}\n");
    let back = one(b.sup.cluster_bound(&binding("etl-7", 1, &cpus)).unwrap());
    assert!(back.handed_back.unwrap().reason.contains("never fit"));

    let elsewhere = job("etl", "nodes: [n2]\nnode_selector: {disk: hdd}\n");
    let back = one(b.sup.cluster_bound(&binding("etl-8", 1, &elsewhere)).unwrap());
    let reason = back.handed_back.unwrap().reason;
    assert_eq!(
        reason,
        "node constraints: this node (n1, labels: disk=ssd) is not in nodes [n2] and \
         lacks node_selector disk=hdd"
    );

    let broken = binding("etl-9", 1, "name: etl\ncommand: 3\n");
    let back = one(b.sup.cluster_bound(&broken).unwrap());
    let reason = back.handed_back.unwrap().reason;
    assert!(reason.starts_with("the job does not compile here: cluster/etl.yaml:2"), "{reason}");
    assert_eq!(local_runs(&b), before, "a refusal creates no run");
    assert!(b.sup.store().cluster_mapping("etl-6", 1).unwrap().is_none());

    // The hard limit a binding carries replaces the job's.
    let mut grown = binding("etl-10", 2, &job("etl", "resources: {memory: {hard: 64Mi}}\n"));
    grown.memory_hard = Some(Bytes::from_mib(128).get());
    let taken = one(b.sup.cluster_bound(&grown).unwrap());
    assert!(taken.handed_back.is_none());
    let run = RunId::new(taken.node_run.unwrap());
    assert_eq!(b.state(run.as_str()).memory_limit, Some(Bytes::from_mib(128)));
}

#[tokio::test(start_paused = true)]
async fn an_oom_requeue_past_this_node_is_handed_back_with_the_memory_it_needs() {
    let mut b = node().await;
    // The fake machine has 23.5 GiB: 16 GiB fit, 32 never.
    let spec = "resources: {memory: {hard: 16Gi}}\noom: {action: requeue, requeue_factor: 2}\n";
    b.sup.cluster_bound(&binding("etl-5", 1, &job("etl", spec))).unwrap();
    b.settle().await;
    assert_eq!(b.phase("etl-1"), "running");
    b.fake.report(&RunId::new("etl-1"), Observed::Oom);
    b.settle().await;
    let statuses = b.sup.cluster_statuses([RunId::new("etl-1")]).unwrap();
    let back = one(statuses);
    assert_eq!((back.phase.as_str(), back.node_run.as_deref()), (HANDED_BACK, Some("etl-1")));
    let handed = back.handed_back.unwrap();
    assert_eq!(handed.needs_memory, Some(Bytes::from_gib(32).get()));
    assert!(handed.reason.contains("grew to 32"), "{}", handed.reason);
    b.settle().await;
    assert_eq!(b.phase("etl-1"), "killed", "the local run ends with the hand-back");
    assert!(b.sup.cluster_statuses([RunId::new("etl-1")]).unwrap().is_empty());
    // Seen again (a listing after a reconnection), the binding is answered
    // with the hand-back, not with the end of the local run.
    let again = one(b.sup.cluster_listed(&[binding("etl-5", 1, &job("etl", spec))]).unwrap());
    assert_eq!(again.phase, HANDED_BACK);
    assert_eq!(again.handed_back.unwrap().needs_memory, Some(Bytes::from_gib(32).get()));
    assert_eq!(local_runs(&b), 1);
}

/// Whether a value read from etcd is the one waited for.
type Ready<'a> = &'a dyn Fn(&[u8]) -> bool;

/// Waits (polling etcd, up to 20 s) until `key` holds a value `ready`
/// accepts, or is gone when `ready` is `None`.
async fn wait_for_key(
    client: &mut etcd_client::Client,
    key: &str,
    what: &str,
    ready: Option<Ready<'_>>,
) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got = client.get(key, None).await.unwrap();
        let value = got.kvs().first().map(|kv| kv.value().to_vec());
        match (&value, ready) {
            (Some(v), Some(ready)) if ready(v) => return value,
            (None, None) => return None,
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "waiting for {what} at {key}: {value:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The node side against a real etcd: the main loop with the node task, on
/// the fake machine. The node's record appears under its lease; a binding
/// written into etcd becomes a local run whose status reaches `succeeded`
/// with exit 0; once the agent stops, its record leaves with its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_in_etcd_runs_here_and_its_status_ends_succeeded() {
    use tokio::sync::{mpsc, oneshot};

    use super::{drive_in_cluster, JobFiles, OnExit};
    use crate::cluster::node::{self, NodeFacts};
    use crate::cluster::records::{decode, encode, NodeRecord};
    use crate::cluster::testing::TestEtcd;
    use crate::cluster::Keys;

    let Some(etcd) = TestEtcd::start() else { return };
    let prefix = format!("/t-node-{}", std::process::id());
    let config = etcd.config("n1", &prefix);
    let keys = Keys::new(&prefix);
    let mut client = crate::cluster::etcd::connect(&config).await.unwrap();

    let mut b = Bench::new();
    b.files(&[]).await;
    let (mut sup, rx, fake, dir) = b.into_parts();
    let rewritten = sup.join_cluster(ClusterNode::new("n1".into(), labels())).unwrap();
    assert!(rewritten.is_empty());
    let facts = NodeFacts {
        name: "n1".into(),
        labels: labels(),
        cgroup_mode: "hybrid".into(),
        version: "test".into(),
        api: None,
    };
    let link = node::spawn(config.clone(), facts, sup.node_summary());
    // No job file changes come: the directory was read above.
    let (_updates_tx, updates) = mpsc::channel(1);
    let (reloads, _asked) = mpsc::channel(1);
    let files = JobFiles { updates, reloads, dir: "/jobs".into() };
    let (_commands_tx, commands) = mpsc::channel(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let agent = tokio::spawn(drive_in_cluster(
        sup,
        files,
        rx,
        commands,
        Some(link),
        async {
            let _ = stopped.await;
        },
        OnExit::LeaveRunning,
    ));

    let record = wait_for_key(&mut client, &keys.node("n1"), "the node record", Some(&|_| true))
        .await
        .unwrap();
    let record: NodeRecord = decode("node", &record).unwrap();
    assert_eq!((record.capacity.cpus, record.labels["disk"].as_str()), (2, "ssd"));
    assert_eq!(record.allocated.runs, 0);
    let got = client.get(keys.node("n1"), None).await.unwrap();
    let lease = got.kvs()[0].lease();
    assert_ne!(lease, 0, "the record lives under a lease");
    // The lease lost (revoked here, as an expiry would end it): the node
    // takes a new one and publishes itself again.
    client.lease_revoke(lease).await.unwrap();
    let other_lease = |v: &[u8]| decode::<NodeRecord>("node", v).is_ok();
    wait_for_key(&mut client, &keys.node("n1"), "the record again", Some(&other_lease)).await;
    let got = client.get(keys.node("n1"), None).await.unwrap();
    assert_ne!(got.kvs()[0].lease(), lease, "under a new lease");

    let bound = binding("etl-5", 1, &job("etl", ""));
    client.put(keys.binding("n1", "etl-5"), encode(&bound), None).await.unwrap();
    let is = |phase: &'static str| {
        move |v: &[u8]| decode::<RunStatus>("status", v).is_ok_and(|s| s.phase == phase)
    };
    let running = is("running");
    wait_for_key(&mut client, &keys.status("etl-5"), "a running status", Some(&running)).await;
    // The node's record follows what its runs hold.
    let holding = |v: &[u8]| decode::<NodeRecord>("node", v).is_ok_and(|r| r.allocated.runs == 1);
    wait_for_key(&mut client, &keys.node("n1"), "the run in the record", Some(&holding)).await;
    // The run ends while etcd does not answer: its status waits, and is
    // written once etcd is back.
    etcd.pause();
    fake.exit("etl-1", 0);
    let store = crate::store::SqliteStore::open(&dir.path().join("corral.db")).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.run(&RunId::new("etl-1")).unwrap().unwrap().record.state.phase.name() != "succeeded"
    {
        assert!(tokio::time::Instant::now() < deadline, "the run's end on record");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    etcd.resume();
    let succeeded = is("succeeded");
    let status =
        wait_for_key(&mut client, &keys.status("etl-5"), "the end", Some(&succeeded)).await;
    let status: RunStatus = decode("status", &status.unwrap()).unwrap();
    assert_eq!((status.node.as_str(), status.attempt), ("n1", 1));
    assert_eq!(status.node_run.as_deref(), Some("etl-1"));
    let end = status.ended.unwrap();
    assert_eq!((end.outcome.as_str(), end.exit_code), ("succeeded", Some(0)));
    assert_eq!(fake.launched(), ["etl-1"]);

    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
    // Nothing renews the lease now: the record goes when it lapses.
    wait_for_key(&mut client, &keys.node("n1"), "the record to go", None).await;
}

// ---- Self-fencing ----

use super::fake::Call;
use crate::scheduler::{Phase, StopIntent, StopReason, SuspendedBy};

fn ps_state(b: &mut Bench, run: &str) -> String {
    let (reply, mut answer) = tokio::sync::oneshot::channel();
    b.sup.command(crate::api::Command { request: crate::api::Request::Ps, reply }).unwrap();
    let crate::api::Response::Ps { runs } =
        crate::api::socket::response(answer.try_recv().unwrap())
    else {
        panic!("ps")
    };
    runs.iter().find(|r| r.run == run).expect("listed").state.clone()
}

fn position(calls: &[Call], wanted: &Call) -> Option<usize> {
    calls.iter().position(|c| c == wanted)
}

/// A node with cluster run etl-5 (local etl-1, attempt 2) and local job
/// `local` running.
async fn running_both() -> Bench {
    let mut b = node().await;
    b.files(&[("local.yaml", &job("local", ""))]).await;
    b.sup.cluster_bound(&binding("etl-5", 2, &job("etl", "preemption: never\n"))).unwrap();
    b.settle().await;
    assert_eq!((b.phase("etl-1"), b.phase("local-1")), ("running", "running"));
    b
}

#[tokio::test(start_paused = true)]
async fn a_cluster_run_knows_its_cluster_run_and_attempt() {
    let b = running_both().await;
    let env = b.fake.env("etl-1");
    assert_eq!(
        (env["CORRAL_CLUSTER_RUN"].as_str(), env["CORRAL_CLUSTER_ATTEMPT"].as_str()),
        ("etl-5", "2")
    );
    assert!(!b.fake.env("local-1").contains_key("CORRAL_CLUSTER_RUN"), "a local run is none");
}

#[tokio::test(start_paused = true)]
async fn a_fence_freezes_the_cluster_runs_only_and_a_renewal_thaws_them() {
    let mut b = running_both().await;
    b.fake.clear();
    b.sup.cluster_fenced("no etcd member answers (0 of 3)".into()).unwrap();
    b.settle().await;
    // Frozen whatever its preemption mode (`never` here), for the fence.
    assert!(
        matches!(
            b.state("etl-1").phase,
            Phase::Suspended { by: SuspendedBy::Fence, frozen: true, .. }
        ),
        "{:?}",
        b.state("etl-1").phase
    );
    assert_eq!(b.phase("local-1"), "running", "a local run is never fenced");
    let calls = b.fake.calls();
    assert!(calls.contains(&Call::Freeze(RunId::new("etl-1"))), "{calls:?}");
    assert!(!calls.contains(&Call::Freeze(RunId::new("local-1"))), "{calls:?}");
    assert_eq!(ps_state(&mut b, "etl-1"), "suspended (fenced: cluster unreachable)");
    let detail = b.sup.store().run(&RunId::new("etl-1")).unwrap().unwrap();
    let last = &detail.transitions.last().unwrap().reason;
    assert!(last.contains("fence"), "{last}");
    // The scheduling pass keeps it frozen while the fence holds.
    b.settle().await;
    assert!(!b.fake.calls().contains(&Call::Thaw(RunId::new("etl-1"))));
    // Its status says so.
    let status = one(b.sup.cluster_statuses([RunId::new("etl-1")]).unwrap());
    assert_eq!(status.phase, "suspended");

    b.sup.cluster_unfenced();
    b.settle().await;
    assert_eq!(b.phase("etl-1"), "running");
    assert!(b.fake.calls().contains(&Call::Thaw(RunId::new("etl-1"))));
    let detail = b.sup.store().run(&RunId::new("etl-1")).unwrap().unwrap();
    let last = &detail.transitions.last().unwrap().reason;
    assert!(last.contains("renewed its cluster lease"), "{last}");
}

#[tokio::test(start_paused = true)]
async fn a_fenced_run_bound_elsewhere_meanwhile_is_killed_without_a_thaw() {
    let mut b = running_both().await;
    b.sup.cluster_fenced("cannot renew".into()).unwrap();
    b.settle().await;
    b.fake.clear();
    // The node's new lease lists its bindings: etl-5 is not among them.
    let statuses = b.sup.cluster_listed(&[]).unwrap();
    assert!(statuses.is_empty(), "{statuses:?}");
    b.settle().await;
    let calls = b.fake.calls();
    assert!(position(&calls, &Call::KillAll(RunId::new("etl-1"))).is_some(), "{calls:?}");
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Thaw(_) | Call::Signal(..))),
        "killed as it is, never thawed nor signalled: {calls:?}"
    );
    let reason = StopReason::Superseded { cluster_run: "etl-5".into() };
    assert_eq!(b.state("etl-1").phase, Phase::Killed { reason: reason.clone() });
    assert_eq!(reason.to_string(), "superseded: run etl-5 rebound elsewhere");
    // Its end is not written over the new attempt's status.
    assert!(b.sup.cluster_runs().is_empty());
    assert!(b.sup.cluster_statuses([RunId::new("etl-1")]).unwrap().is_empty());
    b.sup.cluster_unfenced();
    b.settle().await;
    assert_eq!(b.phase("local-1"), "running");
}

#[tokio::test(start_paused = true)]
async fn a_fenced_run_still_bound_is_thawed_after_the_listing() {
    let mut b = running_both().await;
    b.sup.cluster_fenced("cannot renew".into()).unwrap();
    b.settle().await;
    let source = job("etl", "preemption: never\n");
    b.sup.cluster_listed(&[binding("etl-5", 2, &source)]).unwrap();
    b.settle().await;
    assert!(matches!(b.state("etl-1").phase, Phase::Suspended { by: SuspendedBy::Fence, .. }));
    b.sup.cluster_unfenced();
    b.settle().await;
    assert_eq!(b.phase("etl-1"), "running");
}

#[tokio::test(start_paused = true)]
async fn a_newer_attempt_bound_here_kills_the_fenced_one_without_a_thaw() {
    let mut b = running_both().await;
    b.sup.cluster_fenced("cannot renew".into()).unwrap();
    b.settle().await;
    b.fake.clear();
    b.sup.cluster_bound(&binding("etl-5", 3, &job("etl", "preemption: never\n"))).unwrap();
    let calls = b.fake.calls();
    assert!(!calls.contains(&Call::Thaw(RunId::new("etl-1"))), "{calls:?}");
    assert!(matches!(
        b.state("etl-1").phase,
        Phase::Stopping { intent: StopIntent::Stop { .. }, escalated: true, .. }
            | Phase::Killed { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_cluster_run_started_while_fenced_is_frozen_by_the_sweep() {
    let mut b = node().await;
    b.sup.cluster_fenced("cannot renew".into()).unwrap();
    b.sup.cluster_bound(&binding("etl-5", 1, &job("etl", ""))).unwrap();
    b.settle().await;
    b.sup.fence_sweep().unwrap();
    b.settle().await;
    assert!(
        matches!(b.state("etl-1").phase, Phase::Suspended { by: SuspendedBy::Fence, .. }),
        "{:?}",
        b.state("etl-1").phase
    );
}

#[tokio::test(start_paused = true)]
async fn quorum_loss_is_reported_without_fencing() {
    let mut b = running_both().await;
    b.sup.set_cluster_problem(Some("no quorum".into()));
    b.settle().await;
    assert_eq!(b.phase("etl-1"), "running");
    assert_eq!(b.sup.fence(), None);
    b.sup.set_cluster_problem(None);
}
