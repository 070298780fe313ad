//! The agent's reaction to an OOM on pure v2, measured over several trials:
//! a job allocating 1 MiB every 10 ms against a 32 MiB hard limit crosses
//! `memory.high` (the pause point under `oom: grow`), and the agent freezes
//! it (`frozen 1` in `cgroup.events`) and raises its limit. The node
//! benchmark (`benches/node/reaction.rs`) reads the line this prints from
//! the results file the run leaves in `target/vm/run/`. Under qemu TCG the
//! figures are far slower than on hardware.

use std::time::Duration;

use super::agent::Agent;
use super::oom::{limits_then_hog, run_watched};
use super::Context;

/// What the node benchmark looks for (its `GUEST_MARK`).
const MARK: &str = "reaction oom v2:";

/// Trials: each boots no new guest, but costs a job of about a second
/// under emulation.
const TRIALS: usize = 7;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, lowest and highest, in ms.
fn spread(mut values: Vec<Duration>) -> (f64, f64, f64) {
    values.sort();
    (ms(values[values.len() / 2]), ms(values[0]), ms(values[values.len() - 1]))
}

pub fn agent_oom_reaction_is_measured(_: &Context) {
    let mut agent = Agent::new("agent-oom-reaction");
    agent.start();
    let (mut frozen, mut grown) = (Vec::new(), Vec::new());
    for k in 0..TRIALS {
        let job = format!("react-{k}");
        let out = agent.data(&job);
        let seen = run_watched(
            &agent,
            &job,
            &limits_then_hog(&out, "--mib 48 --every-ms 10"),
            "resources: {memory: {hard: 32Mi}}\noom: {action: grow, grow_to: 96Mi, grow_step: 32Mi}\n",
            "succeeded",
        );
        let run = format!("{job}-1");
        assert_eq!(seen.oom_kills, 0, "{run} was killed, not frozen: {seen:?}");
        assert_eq!(agent.events(&run), ["oom", "memory-grown"], "{}", agent.read_data(&job));
        frozen.push(seen.reaction.unwrap_or_else(|| panic!("{run} never seen frozen: {seen:?}")));
        grown.push(seen.grown_after.unwrap_or_else(|| panic!("{run} never grown: {seen:?}")));
    }
    let (f, f_min, f_max) = spread(frozen);
    let (g, g_min, g_max) = spread(grown);
    println!(
        "{MARK} memory.high event → frozen median {f:.1} ms over {TRIALS} trials \
         ({f_min:.1}–{f_max:.1}); → limit raised median {g:.1} ms ({g_min:.1}–{g_max:.1}); \
         polled every 1 ms, qemu TCG"
    );
}
