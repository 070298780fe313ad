//! How fast the cluster recovers from faults, on a real three-member TLS
//! etcd and three agents in network namespaces of their own (the fault
//! tests' cluster, `tests/cluster_harness/faults.rs`): medians over
//! repeated trials, printed with the lease TTL they depend on.
//!
//! ```text
//! cargo bench --bench cluster_faults            # 5 trials per figure
//! cargo bench --bench cluster_faults -- 9       # 9 trials
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench` argument) one trial
//! runs, as a smoke test: the figure then means little.
//!
//! - failover: `kill -9` of the leading agent → the next run bound (by the
//!   new leader). A job is applied right after the kill; the time is from
//!   the kill to the binding's own timestamp in etcd.
//! - node loss: the node's agent and its runs' processes killed → the run
//!   marked `lost` (detection), and → its replacement running on another
//!   node (its status says so). Bounded below by the TTL and the grace.
//! - self-fence: the node's link taken down → its cluster run frozen (the
//!   kernel reports the cgroup frozen). Bounded below by 2/3 of the TTL.

#[path = "../../tests/agent_harness/mod.rs"]
mod agent_harness;
#[path = "../../tests/cluster_harness/mod.rs"]
mod cluster_harness;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_harness::{job, secs};
use cluster_harness::faults::{FaultCluster, NODES};
use corral::cluster::records::ClusterRunState;

const TTL: Duration = Duration::from_secs(3);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let trials: usize =
        if full { args.iter().find_map(|a| a.parse().ok()).unwrap_or(5) } else { 1 };
    let Some(mut c) = FaultCluster::start(TTL, "") else { return };
    let failover = failover(&mut c, trials);
    let (detected, replaced) = node_loss(&mut c, trials);
    let fenced = fence(&mut c, trials);
    println!();
    println!(
        "cluster faults, {trials} trial(s) each; lease TTL {TTL:?} (fence point {:?}), \
         node_loss_grace {GRACE:?}; 3 agents, 3 etcd members",
        TTL * 2 / 3
    );
    println!("{:<46} {:>10}  all (ms)", "measure", "median");
    for (what, times) in [
        ("failover: leader kill -9 → next binding", failover),
        ("node loss: kill → run marked lost", detected),
        ("node loss: kill → replacement running", replaced),
        ("self-fence: link cut → run frozen", fenced),
    ] {
        println!("{what:<46} {:>7} ms  {times:?}", median(times.clone()));
    }
}

/// The scheduler's `node_loss_grace` (the default; the harness's agents
/// do not set it).
const GRACE: Duration = Duration::from_secs(10);

/// A stamp-free long job, not pinned, so that it can move.
fn sleeper(c: &FaultCluster, name: &str) {
    c.write_job(name, &job(name, "sleep 60", ""));
    c.apply();
}

/// Loses the node running a job (agent and processes killed), measures to
/// `lost` and to the replacement running elsewhere; then brings the node
/// back and deletes the job.
fn node_loss(c: &mut FaultCluster, trials: usize) -> (Vec<i64>, Vec<i64>) {
    let (mut detected, mut replaced) = (Vec::new(), Vec::new());
    for n in 0..trials {
        let name = format!("loss-{n}");
        sleeper(c, &name);
        let node = c.wait_running(&name, secs(60));
        let i = c.index(&node);
        let killed = Instant::now();
        c.lose(i);
        c.wait_runs("the run lost", secs(60), |runs| {
            runs.values().any(|r| r.job == name && matches!(r.state, ClusterRunState::Lost { .. }))
        });
        detected.push(killed.elapsed().as_millis() as i64);
        let elsewhere = c.wait_running(&name, secs(90));
        assert_ne!(elsewhere, node);
        replaced.push(killed.elapsed().as_millis() as i64);
        eprintln!("node loss {n}: {node} lost; replaced on {elsewhere}");
        c.restart(i);
        c.wait_nodes(3, secs(30));
        c.remove_job(&name);
        c.apply();
    }
    (detected, replaced)
}

/// Cuts the node running a job off, measures to its cluster run frozen;
/// then reconnects it (within the TTL and grace, so the run is thawed, not
/// moved) and deletes the job.
fn fence(c: &mut FaultCluster, trials: usize) -> Vec<i64> {
    let mut times = Vec::new();
    for n in 0..trials {
        let name = format!("fence-{n}");
        sleeper(c, &name);
        let node = c.wait_running(&name, secs(60));
        let i = c.index(&node);
        let run = c.nodes[i].runs_of(&name)[0].clone();
        let cut = Instant::now();
        c.cut(i);
        // Polled: the freeze comes seconds after the cut, so a few
        // milliseconds of polling add little.
        while !c.nodes[i].frozen(&run) {
            assert!(
                cut.elapsed() < TTL * 3,
                "{run} on {node} not frozen after {:?}",
                cut.elapsed()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(cut.elapsed().as_millis() as i64);
        c.reconnect(i);
        c.nodes[i].wait_for("the fenced run thawed", secs(30), || !c.nodes[i].frozen(&run));
        eprintln!("fence {n}: {node} froze {run}");
        c.remove_job(&name);
        c.apply();
    }
    times
}

/// Kills the leader, applies a job at once, and measures from the kill to
/// the job's binding; then restarts the killed agent and waits until all
/// three nodes are back, for the next trial.
fn failover(c: &mut FaultCluster, trials: usize) -> Vec<i64> {
    let mut times = Vec::new();
    for n in 0..trials {
        let leader = c.wait_leader(None, secs(30));
        let i = c.index(&leader);
        let others: Vec<&str> = NODES.iter().copied().filter(|x| *x != leader).collect();
        let name = format!("failover-{n}");
        c.write_job(&name, &job(&name, "sleep 5", &format!("nodes: [{}]\n", others.join(", "))));
        let killed = now_ms();
        c.kill9(i);
        c.apply();
        let runs = c.wait_runs("the run bound by the new leader", secs(60), |runs| {
            runs.values()
                .any(|r| r.job == name && !matches!(r.state, ClusterRunState::Pending { .. }))
        });
        let run = runs.values().find(|r| r.job == name).unwrap();
        // The job sleeps longer than the polling takes, so it is seen
        // bound, with the scheduler's own time of binding.
        let ClusterRunState::Bound { at, .. } = &run.state else {
            panic!("{name} not bound when first seen placed: {run:#?}")
        };
        let bound_at = at.as_millis();
        let ms = bound_at - killed;
        eprintln!("trial {n}: {leader} killed; bound {ms} ms later");
        times.push(ms);
        c.restart(i);
        c.wait_nodes(3, secs(30));
    }
    times
}
