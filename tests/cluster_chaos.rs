//! The chaos run: for `CORRAL_CHAOS_SECS` seconds (60 by default), a
//! seeded random sequence of agent `kill -9`s (each restarted a little
//! later), etcd member kills (one at a time, restarted) and link cuts
//! (reconnected), while one-shot and recurring cluster jobs are applied;
//! then everything is healed and the cluster left to settle. The seed is
//! printed; `CORRAL_CHAOS_SEED` replays a sequence (the faults' order and
//! spacing; how the agents react to them still depends on timing).
//!
//! The soak, a quarter of an hour:
//!
//! ```text
//! CORRAL_CHAOS_SECS=900 cargo test --release --test cluster_chaos -- --nocapture
//! ```

mod agent_harness;
mod cluster_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use agent_harness::{job, secs};
use cluster_harness::faults::{outcome_and_node, FaultCluster, Rng, Timeline, NODES};
use corral::cluster::records::ClusterRunState;
use corral::cluster::scheduler::decide::KEEP_ENDED_PER_JOB;

const TTL: Duration = Duration::from_secs(3);

/// A fault in progress, and when it is healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    AgentDown(usize),
    MemberDown(usize),
    LinkCut(usize),
}

fn chaos_secs() -> u64 {
    match std::env::var("CORRAL_CHAOS_SECS") {
        Ok(text) => text.trim().parse().unwrap_or_else(|e| {
            panic!("CORRAL_CHAOS_SECS={text:?}: not a number of seconds ({e})")
        }),
        Err(_) => 60,
    }
}

#[test]
fn chaos_of_kills_cuts_and_etcd_faults_loses_no_run_and_runs_none_twice_at_once() {
    let (mut rng, seed) = Rng::from_env("CORRAL_CHAOS_SEED");
    let duration = Duration::from_secs(chaos_secs());
    let Some(mut c) = FaultCluster::start(TTL, "") else { return };
    let mut timeline = Timeline::default();
    timeline.note(format!("seed {seed}, {duration:?} of chaos, lease TTL {TTL:?}"));

    // A recurring job that writes its cluster run (where the agent gives
    // it) and a token of its process, once per firing.
    let ticks = cluster_harness::faults::shared_file(&c.nodes[0], "ticks");
    let tick = format!(
        "t=$(od -An -N8 -tx8 /dev/urandom | tr -d \" \"); echo \"${{CORRAL_CLUSTER_RUN:-none}} $t\" >> {} || exit 3",
        ticks.display()
    );
    c.write_job("tick", &job("tick", &tick, "schedule: \"*/5 * * * * *\"\n"));
    c.apply();
    timeline.note("applied tick (every 5 s)");

    let mut one_shots: BTreeMap<String, u32> = BTreeMap::new();
    let mut faults: Vec<(Instant, Fault)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        // Heal what is due.
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = faults.into_iter().partition(|(at, _)| *at <= now);
        faults = later;
        for (_, fault) in due {
            heal(&mut c, fault, &mut timeline);
        }
        let down = |f: &dyn Fn(&Fault) -> bool| faults.iter().any(|(_, x)| f(x));
        match rng.below(10) {
            0..=3 => {
                let name = format!("j{}", one_shots.len());
                let secs = 2 + rng.below(7) as u32;
                c.write_stamp_job(&name, secs, "");
                // A failed apply (etcd unreachable from the host's client)
                // is noted, not retried here, so that faults still heal on
                // time: the file stays, and the next apply carries it.
                match c.try_apply() {
                    Ok(_) => timeline.note(format!("applied {name} ({secs} s of stamps)")),
                    Err(e) => timeline.note(format!("wrote {name}; apply failed: {e}")),
                }
                one_shots.insert(name, secs * 10);
            }
            4..=5 => {
                let i = rng.below(3) as usize;
                if !down(&|f| matches!(f, Fault::AgentDown(j) | Fault::LinkCut(j) if *j == i)) {
                    c.kill9(i);
                    let back = rng.millis(1000, 5000);
                    timeline.note(format!("kill -9 {} (restart in {back:?})", NODES[i]));
                    faults.push((Instant::now() + back, Fault::AgentDown(i)));
                }
            }
            6..=7 => {
                let m = rng.below(3) as usize;
                if !down(&|f| matches!(f, Fault::MemberDown(_))) {
                    c.etcd.kill_member(m);
                    let back = rng.millis(2000, 6000);
                    timeline.note(format!("kill -9 etcd m{m} (restart in {back:?})"));
                    faults.push((Instant::now() + back, Fault::MemberDown(m)));
                }
            }
            _ => {
                let i = rng.below(3) as usize;
                if !down(&|f| matches!(f, Fault::AgentDown(j) | Fault::LinkCut(j) if *j == i)) {
                    c.cut(i);
                    // Up to 20 s: a cut past the lease TTL and the
                    // scheduler's node_loss_grace (3 + 10 s) loses the
                    // node, and its runs move while it is frozen.
                    let back = rng.millis(1000, 20000);
                    timeline.note(format!("cut {} off (reconnect in {back:?})", NODES[i]));
                    faults.push((Instant::now() + back, Fault::LinkCut(i)));
                }
            }
        }
        std::thread::sleep(rng.millis(500, 2000));
    }
    for (_, fault) in std::mem::take(&mut faults) {
        heal(&mut c, fault, &mut timeline);
    }
    c.remove_job("tick");
    c.apply_within(Duration::from_secs(60));
    timeline.note("healed; tick deleted; settling");

    let runs = c.settle(secs(240));
    timeline.note("settled");
    eprintln!("timeline:\n{}", timeline.render());
    let stamps = c.read_stamps();
    eprintln!("{}", stamps.assert_no_overlap(&format!("chaos, seed {seed}")));

    // Every one-shot run completed: it succeeded, and its last copy wrote
    // every line (it ran to its end, not cut short and counted done).
    for (name, lines) in &one_shots {
        let of_job = c.runs_of(&runs, name);
        assert_eq!(of_job.len(), 1, "one run of {name} (seed {seed}): {of_job:#?}");
        let run = &of_job[0];
        assert_eq!(outcome_and_node(run).0, "succeeded", "seed {seed}: {run:#?}");
        let copies = stamps.runs.get(name.as_str()).or_else(|| stamps.runs.get(&run.run));
        let copies = copies.unwrap_or_else(|| panic!("{name} wrote nothing (seed {seed})"));
        assert_eq!(copies.last().unwrap().lines as u32, *lines, "{name}: {copies:?}");
        // An extra copy only comes with an extra attempt: a node's copy
        // that came through a fault (kill -9 of its agent, a cut) is the
        // same process, adopted or thawed.
        assert!(
            copies.len() as u32 <= run.attempt,
            "{name}: {} copies in {} attempts (seed {seed}): {copies:?}",
            copies.len(),
            run.attempt
        );
        if run.attempt > 1 {
            eprintln!("{name}: {} attempts", run.attempt);
        }
    }

    // Every firing of tick at most once: distinct firing times, and no
    // cluster run executed twice.
    let tick_runs = c.runs_of(&runs, "tick");
    let times: Vec<_> = tick_runs.iter().map(|r| r.scheduled_for).collect();
    let distinct: BTreeSet<_> = times.iter().collect();
    assert_eq!(distinct.len(), times.len(), "a firing decided twice (seed {seed}): {times:?}");
    let lines = std::fs::read_to_string(&ticks).unwrap_or_default();
    let executions: Vec<(&str, &str)> = lines.lines().filter_map(|l| l.split_once(' ')).collect();
    let named: Vec<&str> = executions.iter().map(|(r, _)| *r).filter(|r| *r != "none").collect();
    let unique: BTreeSet<&str> = named.iter().copied().collect();
    assert_eq!(unique.len(), named.len(), "a firing ran twice (seed {seed}): {lines}");
    let reached = tick_runs
        .iter()
        .filter(|r| matches!(&r.state, ClusterRunState::Ended { node: Some(_), .. }))
        .count();
    // Runs past the retention are gone from etcd but ran: counted only
    // where none was retired.
    if tick_runs.len() < KEEP_ENDED_PER_JOB {
        assert!(
            executions.len() <= reached,
            "{} executions of tick, {reached} runs reached a node (seed {seed})",
            executions.len()
        );
    }
    // Retention holds: no more ended runs of one job than it keeps, but
    // for the current one-shot runs.
    assert!(tick_runs.len() <= KEEP_ENDED_PER_JOB, "{} tick runs kept", tick_runs.len());

    c.assert_clean();
    eprintln!("chaos run of seed {seed}: {} one-shot runs, {} firings", one_shots.len(), reached);
}

fn heal(c: &mut FaultCluster, fault: Fault, timeline: &mut Timeline) {
    match fault {
        Fault::AgentDown(i) => {
            c.restart(i);
            timeline.note(format!("restarted {}", NODES[i]));
        }
        Fault::MemberDown(m) => {
            c.etcd.start_member(m);
            timeline.note(format!("restarted etcd m{m}"));
        }
        Fault::LinkCut(i) => {
            c.reconnect(i);
            timeline.note(format!("reconnected {}", NODES[i]));
        }
    }
}
