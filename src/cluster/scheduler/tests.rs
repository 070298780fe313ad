//! The scheduler against a real etcd member, with node records and job
//! records written by the test in place of agents and `corral apply`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, TxnOp};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::decide::tests::{job, node, GIB};
use super::election::{self, Fenced};
use super::*;
use crate::cluster::records::{encode, HandBack, RunStatus};
use crate::cluster::testing::TestEtcd;

const WAIT: Duration = Duration::from_secs(20);

struct Scheduler {
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    metrics: Arc<ClusterMetrics>,
}

impl Scheduler {
    async fn start(etcd: &TestEtcd, prefix: &str, name: &str) -> Scheduler {
        let config = etcd.config(name, prefix);
        let client = crate::cluster::etcd::connect(&config).await.unwrap();
        let settings = SchedulerSettings {
            keys: Keys::new(prefix),
            node: name.to_owned(),
            lease_ttl: config.lease_ttl,
            default_timezone: chrono_tz::UTC,
            catch_up_limit: 10,
            default_grace: Duration::from_secs(10),
            node_loss_grace: config.node_loss_grace,
        };
        let metrics = Arc::new(ClusterMetrics::new());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(client, settings, metrics.clone(), async {
            let _ = stopped.await;
        }));
        Scheduler { task, stop: Some(stop), metrics }
    }

    /// A clean stop: resigns.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

async fn client(etcd: &TestEtcd) -> Client {
    crate::cluster::etcd::connect(&etcd.config("test", "/")).await.unwrap()
}

async fn put<T: serde::Serialize>(client: &mut Client, key: String, value: &T) -> i64 {
    let r = client.put(key, encode(value), None).await.unwrap();
    r.header().unwrap().revision()
}

/// Every record under `under`, decoded, by the last part of its key.
async fn list<T: for<'de> serde::Deserialize<'de>>(
    client: &mut Client,
    under: &str,
) -> BTreeMap<String, T> {
    let r = client.get(under, Some(GetOptions::new().with_prefix())).await.unwrap();
    r.kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap();
            (key[under.len()..].to_owned(), decode(key, kv.value()).unwrap())
        })
        .collect()
}

/// Polls `check` until it returns `Some`, or fails the test with `what`.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_of(client: &Client, keys: &Keys, id: &str) -> Option<ClusterRun> {
    let mut client = client.clone();
    let r = client.get(keys.run(id), None).await.unwrap();
    r.kvs().first().map(|kv| decode(kv.key_str().unwrap(), kv.value()).unwrap())
}

async fn bound_to(client: &Client, keys: &Keys, id: &str) -> Option<(String, ClusterRun)> {
    let run = run_of(client, keys, id).await?;
    match &run.state {
        ClusterRunState::Bound { node, .. } => Some((node.clone(), run)),
        _ => None,
    }
}

fn status(run: &ClusterRun, node: &str, back: HandBack) -> RunStatus {
    RunStatus {
        run: run.run.clone(),
        node: node.into(),
        attempt: run.attempt,
        node_run: None,
        phase: "handed-back".into(),
        detail: None,
        ended: None,
        handed_back: Some(back),
        events: vec![],
        updated_at: Timestamp::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_runs_once_on_a_node_that_fits_and_one_too_big_waits_saying_so() {
    let Some(etcd) = TestEtcd::start() else { return };
    let prefix = "/fits";
    let keys = Keys::new(prefix);
    let mut c = client(&etcd).await;
    put(&mut c, keys.node("n1"), &node("n1", 4 * GIB, Timestamp::now().as_millis())).await;
    put(&mut c, keys.node("n2"), &node("n2", 8 * GIB, Timestamp::now().as_millis())).await;
    let a = put(&mut c, keys.job("a"), &job("a", "resources: {memory: {hard: 6Gi}}\n")).await;
    let pinned = put(&mut c, keys.job("p"), &job("p", "nodes: [n1]\n")).await;
    let big =
        put(&mut c, keys.job("big"), &job("big", "resources: {memory: {hard: 64Gi}}\n")).await;
    let scheduler = Scheduler::start(&etcd, prefix, "s1").await;

    let a_run = decide::one_shot_run("a", a);
    let (node_a, run) = until("a bound", || bound_to(&c, &keys, &a_run)).await;
    assert_eq!((node_a.as_str(), run.attempt), ("n2", 1));
    let p_run = decide::one_shot_run("p", pinned);
    let (node_p, _) = until("p bound", || bound_to(&c, &keys, &p_run)).await;
    assert_eq!(node_p, "n1");
    let binding: BTreeMap<String, Binding> = list(&mut c, &keys.bindings_of("n2")).await;
    assert_eq!(binding[&a_run].attempt, 1);
    assert_eq!(binding[&a_run].source, job("a", "resources: {memory: {hard: 6Gi}}\n").source);

    let big_run = decide::one_shot_run("big", big);
    let reason = until("big's reason", || async {
        match run_of(&c, &keys, &big_run).await?.state {
            ClusterRunState::Pending { reason } => reason,
            _ => None,
        }
    })
    .await;
    assert!(reason.starts_with("too big for every node's capacity: n1: needs 64 GiB"), "{reason}");

    // Applying the same text again writes nothing, so no new run comes.
    let runs: BTreeMap<String, ClusterRun> = list(&mut c, &keys.runs()).await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(scheduler.metrics.is_leader());
    assert_eq!(scheduler.metrics.bindings_total(BindingOutcome::Bound), 2);
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_back_binds_elsewhere_and_an_oom_requeue_goes_to_the_node_with_room() {
    let Some(etcd) = TestEtcd::start() else { return };
    let prefix = "/back";
    let keys = Keys::new(prefix);
    let mut c = client(&etcd).await;
    let mut n1 = node("n1", 8 * GIB, Timestamp::now().as_millis());
    n1.allocated.memory = 6 * GIB;
    put(&mut c, keys.node("n1"), &n1).await;
    put(&mut c, keys.node("n2"), &node("n2", 4 * GIB, Timestamp::now().as_millis())).await;
    let rev = put(&mut c, keys.job("a"), &job("a", "resources: {memory: {hard: 1Gi}}\n")).await;
    let scheduler = Scheduler::start(&etcd, prefix, "s1").await;

    let id = decide::one_shot_run("a", rev);
    let (node, run) = until("a bound", || bound_to(&c, &keys, &id)).await;
    assert_eq!(node, "n2", "the node with the most free memory");
    // n2's own placement disagrees: it hands the run back.
    let back = HandBack { reason: "no room here".into(), needs_memory: None, at: Timestamp::now() };
    put(&mut c, keys.status(&id), &status(&run, "n2", back)).await;
    let (node, run) = until("a bound again", || async {
        bound_to(&c, &keys, &id).await.filter(|(_, r)| r.attempt == 2)
    })
    .await;
    assert_eq!(node, "n1");
    assert_eq!(run.handed_back_by["n2"], "no room here");
    let n2_bindings: BTreeMap<String, Binding> = list(&mut c, &keys.bindings_of("n2")).await;
    assert!(n2_bindings.is_empty(), "{n2_bindings:?}");

    // OOM on n1: requeued with 6 GiB. n1 has 2 GiB free, n2 handed it back.
    let back = HandBack {
        reason: "oom: requeue".into(),
        needs_memory: Some(6 * GIB),
        at: Timestamp::now(),
    };
    put(&mut c, keys.status(&id), &status(&run, "n1", back)).await;
    let reason = until("a pending with a reason", || async {
        match run_of(&c, &keys, &id).await?.state {
            ClusterRunState::Pending { reason } => reason,
            _ => None,
        }
    })
    .await;
    assert!(reason.contains("n2: handed back: no room here"), "{reason}");
    assert!(reason.contains("n1: handed back: oom: requeue"), "{reason}");
    // n1's runs end and it publishes its new state: it is a candidate again.
    tokio::time::sleep(Duration::from_millis(5)).await;
    put(&mut c, keys.node("n1"), &node_rec("n1", 8 * GIB)).await;
    let (node, run) = until("a bound a third time", || async {
        bound_to(&c, &keys, &id).await.filter(|(_, r)| r.attempt == 3)
    })
    .await;
    assert_eq!(node, "n1");
    assert_eq!(run.memory_hard, Some(6 * GIB));
    let binding: BTreeMap<String, Binding> = list(&mut c, &keys.bindings_of("n1")).await;
    assert_eq!(binding[&id].memory_hard, Some(6 * GIB));
    assert_eq!(binding[&id].attempt, 3);
    assert_eq!(scheduler.metrics.bindings_total(BindingOutcome::HandedBack), 2);
    scheduler.stop().await;
}

fn node_rec(name: &str, memory: u64) -> crate::cluster::records::NodeRecord {
    node(name, memory, Timestamp::now().as_millis())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_schedulers_leads_and_the_other_takes_over_when_it_goes() {
    let Some(etcd) = TestEtcd::start() else { return };
    let prefix = "/two";
    let keys = Keys::new(prefix);
    let mut c = client(&etcd).await;
    put(&mut c, keys.node("n1"), &node_rec("n1", 8 * GIB)).await;
    let first = Scheduler::start(&etcd, prefix, "s1").await;
    let second = Scheduler::start(&etcd, prefix, "s2").await;
    let rev = put(&mut c, keys.job("a"), &job("a", "")).await;
    let a_run = decide::one_shot_run("a", rev);
    until("a bound", || bound_to(&c, &keys, &a_run)).await;
    let leaders = [&first, &second].iter().filter(|s| s.metrics.is_leader()).count();
    assert_eq!(leaders, 1);
    let (leader, other) = if first.metrics.is_leader() { (first, second) } else { (second, first) };

    // The leader's task dies without resigning: its key goes with its lease.
    leader.task.abort();
    let _ = leader.task.await;
    let rev = put(&mut c, keys.job("b"), &job("b", "")).await;
    let b_run = decide::one_shot_run("b", rev);
    until("b bound by the other", || bound_to(&c, &keys, &b_run)).await;
    assert!(other.metrics.is_leader());
    let bindings: BTreeMap<String, Binding> = list(&mut c, &keys.bindings_of("n1")).await;
    assert_eq!(bindings.len(), 2, "each run bound once: {bindings:?}");
    other.stop().await;
    let leader = c.get(keys.leader(), None).await.unwrap();
    assert!(leader.kvs().is_empty(), "a clean stop gives the key up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_writes_nothing() {
    let Some(etcd) = TestEtcd::start() else { return };
    let keys = Keys::new("/fence");
    let mut c = client(&etcd).await;
    let ttl = Duration::from_secs(5);
    let mine = election::campaign(&mut c, &keys, "s1", ttl).await.unwrap();
    let put_x = |v: &str| vec![TxnOp::put("/fence/x", v, None)];
    let wrote = election::fenced(&mut c, &keys, &mine, vec![], put_x("1")).await.unwrap();
    assert!(matches!(wrote, Fenced::Done { .. }));
    // A guard that fails is a conflict, not a loss of leadership.
    let absent = vec![Compare::create_revision("/fence/x", CompareOp::Equal, 0)];
    let lost = election::fenced(&mut c, &keys, &mine, absent, put_x("2")).await.unwrap();
    assert_eq!(lost, Fenced::Conflict);

    // The key is taken away under it, and another agent takes it.
    c.delete(keys.leader(), None).await.unwrap();
    let mut c2 = client(&etcd).await;
    let theirs = election::campaign(&mut c2, &keys, "s2", ttl).await.unwrap();
    let refused = election::fenced(&mut c, &keys, &mine, vec![], put_x("3")).await;
    assert!(matches!(refused, Err(ClusterError::Deposed)), "{refused:?}");
    let x = c.get("/fence/x", None).await.unwrap();
    assert_eq!(x.kvs()[0].value(), b"1", "the deposed write changed nothing");
    let ok = election::fenced(&mut c2, &keys, &theirs, vec![], put_x("4")).await.unwrap();
    assert!(matches!(ok, Fenced::Done { .. }));
    // Even with the old lease alive, re-creating the key under it does not
    // restore the old leadership: the fence is the key's create revision.
    c2.delete(keys.leader(), None).await.unwrap();
    c.put(keys.leader(), "x", Some(PutOptions::new().with_lease(mine.lease))).await.unwrap();
    let refused = election::fenced(&mut c, &keys, &mine, vec![], put_x("5")).await;
    assert!(matches!(refused, Err(ClusterError::Deposed)), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_fires_once_per_schedule_across_a_change_of_leader() {
    let Some(etcd) = TestEtcd::start() else { return };
    let prefix = "/cron";
    let keys = Keys::new(prefix);
    let mut c = client(&etcd).await;
    put(&mut c, keys.node("n1"), &node_rec("n1", 8 * GIB)).await;
    put(
        &mut c,
        keys.job("c"),
        &job("c", "schedule: '* * * * * *'\nconcurrency: allow\ncatch_up: all\n"),
    )
    .await;
    let first = Scheduler::start(&etcd, prefix, "s1").await;
    let second = Scheduler::start(&etcd, prefix, "s2").await;
    let watcher = c.clone();
    let fired = |n: usize| {
        let c = watcher.clone();
        let keys = keys.clone();
        move || {
            let mut c = c.clone();
            let keys = keys.clone();
            async move {
                let runs: BTreeMap<String, ClusterRun> = list(&mut c, &keys.runs()).await;
                (runs.len() >= n).then_some(runs)
            }
        }
    };
    until("two firings", fired(2)).await;
    // The leader stops cleanly; the other carries on from the cursor.
    let (leader, other) = if first.metrics.is_leader() { (first, second) } else { (second, first) };
    let before: BTreeMap<String, ClusterRun> = list(&mut c, &keys.runs()).await;
    leader.stop().await;
    let after = until("firings by the new leader", fired(before.len() + 3)).await;
    assert!(other.metrics.is_leader());
    other.stop().await;

    let runs: BTreeMap<String, ClusterRun> = list(&mut c, &keys.runs()).await;
    let mut times: Vec<i64> = runs
        .values()
        .map(|r| r.scheduled_for.expect("a firing has its time").as_millis() / 1000)
        .collect();
    times.sort();
    for (id, run) in &runs {
        assert_eq!(*id, cron::firing_run("c", run.scheduled_for.unwrap().to_datetime().unwrap()));
    }
    // One run per second: none twice (the ids are the times), and none
    // skipped across the change of leader, whose gap is within catch-up.
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], 1, "firings {times:?}");
    }
    assert!(after.len() >= before.len() + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_job_stops_its_run_per_on_removal_and_a_bad_record_is_left_alone() {
    let Some(etcd) = TestEtcd::start() else { return };
    let prefix = "/removal";
    let keys = Keys::new(prefix);
    let mut c = client(&etcd).await;
    put(&mut c, keys.node("n1"), &node_rec("n1", 8 * GIB)).await;
    let stop = put(&mut c, keys.job("s"), &job("s", "")).await;
    let finish = put(&mut c, keys.job("f"), &job("f", "on_removal: finish\n")).await;
    // Anything with write access can write this: it must not be run.
    let broken = job("x", "resources: {memory: {hard: lots}}\n");
    put(&mut c, keys.job("x"), &broken).await;
    c.put(keys.run("junk-1"), "{not json", None).await.unwrap();
    let scheduler = Scheduler::start(&etcd, prefix, "s1").await;

    let (s_run, f_run) = (decide::one_shot_run("s", stop), decide::one_shot_run("f", finish));
    until("s bound", || bound_to(&c, &keys, &s_run)).await;
    until("f bound", || bound_to(&c, &keys, &f_run)).await;
    c.delete(keys.job("s"), None).await.unwrap();
    c.delete(keys.job("f"), None).await.unwrap();
    let removed =
        until("s removed", || async { run_of(&c, &keys, &s_run).await.filter(|r| r.removed) })
            .await;
    assert!(
        matches!(removed.state, ClusterRunState::Bound { .. }),
        "it ends when its node says so"
    );
    let bindings: BTreeMap<String, Binding> = list(&mut c, &keys.bindings_of("n1")).await;
    assert_eq!(bindings.keys().collect::<Vec<_>>(), vec![&f_run], "finish: left to run");
    assert!(!run_of(&c, &keys, &f_run).await.unwrap().removed);

    let runs: BTreeMap<String, serde_json::Value> = {
        let r = c.get(keys.runs(), Some(GetOptions::new().with_prefix())).await.unwrap();
        r.kvs()
            .iter()
            .filter_map(|kv| {
                let value = serde_json::from_slice(kv.value()).ok()?;
                Some((kv.key_str().unwrap().to_owned(), value))
            })
            .collect()
    };
    assert!(runs.keys().all(|k| !k.contains("/x-")), "no run of a job that does not compile");
    let junk = c.get(keys.run("junk-1"), None).await.unwrap();
    assert_eq!(junk.kvs()[0].value(), b"{not json", "a bad record is reported, not rewritten");
    let text = {
        let mut registry = prometheus_client::registry::Registry::with_prefix("corral");
        registry.register_collector(Box::new(scheduler.metrics.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    };
    assert!(text.contains("corral_cluster_bad_records 2"), "{text}");
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_key_is_taken_away_stops_and_campaigns_again() {
    let Some(etcd) = TestEtcd::start() else { return };
    let prefix = "/gone";
    let keys = Keys::new(prefix);
    let mut c = client(&etcd).await;
    put(&mut c, keys.node("n1"), &node_rec("n1", 8 * GIB)).await;
    let scheduler = Scheduler::start(&etcd, prefix, "s1").await;
    let rev = put(&mut c, keys.job("a"), &job("a", "")).await;
    let a_run = decide::one_shot_run("a", rev);
    until("a bound", || bound_to(&c, &keys, &a_run)).await;
    assert_eq!(scheduler.metrics.leadership_changes(), 1);
    c.delete(keys.leader(), None).await.unwrap();
    let metrics = scheduler.metrics.clone();
    until("leading again", || {
        let metrics = metrics.clone();
        async move { (metrics.leadership_changes() == 2 && metrics.is_leader()).then_some(()) }
    })
    .await;
    // And it schedules under its new leadership.
    let rev = put(&mut c, keys.job("b"), &job("b", "")).await;
    let b_run = decide::one_shot_run("b", rev);
    until("b bound", || bound_to(&c, &keys, &b_run)).await;
    let leader = c.get(keys.leader(), None).await.unwrap();
    let record: crate::cluster::records::LeaderRecord =
        decode(&keys.leader(), leader.kvs()[0].value()).unwrap();
    assert_eq!(record.node, "s1");
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_compacted_past_lists_again_and_neither_misses_nor_repeats_a_binding() {
    let Some(etcd) = TestEtcd::start() else { return };
    let prefix = "/compact";
    let keys = Keys::new(prefix);
    let mut c = client(&etcd).await;
    put(&mut c, keys.node("n1"), &node_rec("n1", 8 * GIB)).await;
    let a = put(&mut c, keys.job("a"), &job("a", "")).await;
    let config = etcd.config("s1", prefix);
    let settings = SchedulerSettings {
        keys: keys.clone(),
        node: "s1".into(),
        lease_ttl: config.lease_ttl,
        default_timezone: chrono_tz::UTC,
        catch_up_limit: 10,
        default_grace: Duration::from_secs(10),
        node_loss_grace: config.node_loss_grace,
    };
    let mut sc = crate::cluster::etcd::connect(&config).await.unwrap();
    let leadership = election::campaign(&mut sc, &keys, "s1", config.lease_ttl).await.unwrap();
    let metrics = Arc::new(ClusterMetrics::new());
    let mut leader = Leader::new(sc, &settings, metrics.clone());
    let a_run = decide::one_shot_run("a", a);
    tokio::select! {
        e = leader.lead(&leadership) => panic!("stopped leading: {e}"),
        _ = until("a bound", || bound_to(&c, &keys, &a_run)) => {}
    }
    let (_, bound) = bound_to(&c, &keys, &a_run).await.unwrap();

    // The scheduler reads the cluster, then its watch starts late: in the
    // gap, a's node reports it ended and job b is applied, and etcd
    // compacts its history past the listing.
    let listed = leader.list(&leadership).await.unwrap();
    let end = RunStatus {
        run: a_run.clone(),
        node: "n1".into(),
        attempt: bound.attempt,
        node_run: Some("a-1".into()),
        phase: "succeeded".into(),
        detail: None,
        ended: Some(crate::cluster::records::RunEnd {
            outcome: "succeeded".into(),
            exit_code: Some(0),
            reason: None,
            oom_kills: 0,
            at: Timestamp::now(),
        }),
        handed_back: None,
        events: vec![],
        updated_at: Timestamp::now(),
    };
    put(&mut c, keys.status(&a_run), &end).await;
    let b = put(&mut c, keys.job("b"), &job("b", "")).await;
    c.compact(b, None).await.unwrap();
    // The watch from after the listing cannot be served: it ends, and the
    // one pass it made first (from the listing) wrote nothing stale.
    let watched = tokio::time::timeout(WAIT, leader.watch(&leadership, listed + 1)).await;
    assert!(matches!(watched, Ok(Ok(()))), "{watched:?}");
    assert_eq!(metrics.bindings_total(BindingOutcome::Bound), 1);

    // Leading on, it lists again: a's end is not missed (its binding goes)
    // and b is bound, each once.
    let b_run = decide::one_shot_run("b", b);
    tokio::select! {
        e = leader.lead(&leadership) => panic!("stopped leading: {e}"),
        _ = until("a ended and b bound", || async {
            let a = run_of(&c, &keys, &a_run).await?;
            let b = bound_to(&c, &keys, &b_run).await?;
            (a.state.name() == "ended").then_some(b)
        }) => {}
    }
    let bindings: BTreeMap<String, Binding> = list(&mut c, &keys.bindings_of("n1")).await;
    assert_eq!(bindings.keys().collect::<Vec<_>>(), vec![&b_run], "{bindings:?}");
    assert_eq!(bindings[&b_run].attempt, 1);
    let a_now = run_of(&c, &keys, &a_run).await.unwrap();
    assert_eq!((a_now.attempt, a_now.state.name()), (1, "ended"));
    assert_eq!(metrics.bindings_total(BindingOutcome::Bound), 2, "a and b, once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_expires_loses_its_run_which_moves_after_the_grace() {
    let Some(etcd) = TestEtcd::start() else { return };
    let prefix = "/loss";
    let keys = Keys::new(prefix);
    let mut c = client(&etcd).await;
    // n2 (the roomier) lives under a lease of its own, as an agent's does.
    let lease = c.lease_grant(2, None).await.unwrap().id();
    let record = encode(&node_rec("n2", 8 * GIB));
    c.put(keys.node("n2"), record, Some(PutOptions::new().with_lease(lease))).await.unwrap();
    put(&mut c, keys.node("n1"), &node_rec("n1", 4 * GIB)).await;
    let rev = put(&mut c, keys.job("a"), &job("a", "")).await;
    let scheduler = Scheduler::start(&etcd, prefix, "s1").await;
    let id = decide::one_shot_run("a", rev);
    let (node, _) = until("a bound", || bound_to(&c, &keys, &id)).await;
    assert_eq!(node, "n2");

    // n2 stops renewing: its record goes with the lease, as after a
    // kill -9 once the TTL has run out.
    c.lease_revoke(lease).await.unwrap();
    let lost = until("a lost", || async {
        let run = run_of(&c, &keys, &id).await?;
        matches!(run.state, ClusterRunState::Lost { .. }).then_some(run)
    })
    .await;
    assert_eq!(lost.attempt, 1);
    let bindings: BTreeMap<String, Binding> = list(&mut c, &keys.bindings_of("n2")).await;
    assert!(bindings.contains_key(&id), "kept through the grace: {bindings:?}");
    let (node, run) = until("a bound elsewhere", || async {
        bound_to(&c, &keys, &id).await.filter(|(_, r)| r.attempt == 2)
    })
    .await;
    assert_eq!(node, "n1");
    assert!(run.handed_back_by.is_empty());
    let bindings: BTreeMap<String, Binding> = list(&mut c, &keys.bindings_of("n2")).await;
    assert!(bindings.is_empty(), "the lost node's binding is gone: {bindings:?}");
    assert_eq!(scheduler.metrics.rescheduled_total(), 1);
    scheduler.stop().await;
}
