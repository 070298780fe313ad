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

#[path = "../../tests/agent_harness/mod.rs"]
mod agent_harness;
#[path = "../../tests/cluster_harness/mod.rs"]
mod cluster_harness;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let trials: usize = if full {
        args.iter().find_map(|a| a.parse().ok()).unwrap_or(5)
    } else {
        1
    };
    let Some(mut c) = FaultCluster::start(TTL, "") else { return };
    let failover = failover(&mut c, trials);
    println!();
    println!("cluster faults, {trials} trial(s) each, lease TTL {TTL:?}, 3 agents, 3 etcd members");
    println!("{:<44} {:>10} {:>22}", "measure", "median", "all (ms)");
    println!("{:<44} {:>7} ms {:>22}", "failover: leader kill -9 → next binding", median(failover.clone()), format!("{failover:?}"));
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
            runs.values().any(|r| r.job == name && !matches!(r.state, ClusterRunState::Pending { .. }))
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
