//! Freeze-first OOM through `corral agent` on pure v2: a job at its hard
//! limit is frozen at `memory.high` and then grown in place, requeued with a
//! bigger limit or failed, as its `oom` policy says; a job that allocates
//! faster than the freeze is killed at `memory.max` and its policy applied as
//! after a kill. Observed through the kernel (cgroup files, polled by the
//! test) and the run store.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use corral::cgroup::v2::memory::{freeze_margin, parse_events};

use super::agent::Agent;
use super::Context;

pub(super) const SECOND: Duration = Duration::from_secs(1);
const MI: u64 = 1 << 20;
/// The spec's hard limit in every test here.
pub(super) const HARD: u64 = 32 * MI;

/// A job script that appends its cgroup's `memory.max` and `memory.high` to
/// `out`, then runs the hog with `hog_args`, its output appended to `out`.
pub(super) fn limits_then_hog(out: &Path, hog_args: &str) -> String {
    let out = out.display();
    format!(
        "dir=/sys/fs/cgroup$(sed -n s/^0:://p /proc/self/cgroup); \
         echo limits $(cat $dir/memory.max) $(cat $dir/memory.high) >> {out}; \
         exec /corral-vm/vm_guest hog {hog_args} >> {out}"
    )
}

/// The `(memory.max, memory.high)` each attempt printed, in order.
fn limits(output: &str) -> Vec<(u64, u64)> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("limits "))
        .map(|l| {
            let (max, high) = l.split_once(' ').unwrap();
            (max.parse().unwrap(), high.parse().unwrap())
        })
        .collect()
}

/// What the test saw of one cgroup, polling it every millisecond.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Seen {
    /// From the first `high` event to `frozen 1`.
    pub(super) reaction: Option<Duration>,
    /// `memory.current` above the hard limit once frozen.
    pub(super) past_limit: Option<u64>,
    /// `memory.high` and `memory.max` after the thaw.
    pub(super) after_thaw: Option<(u64, u64)>,
    /// From the first `high` event to `memory.high` raised.
    pub(super) grown_after: Option<Duration>,
    pub(super) oom_kills: u64,
}

/// Polls `dir` until `stop`: when `memory.events` first counts a `high`
/// event, when `cgroup.events` says `frozen 1`, what the job held then,
/// and its limits once it runs again. Polling adds up to a millisecond to
/// each end of the reaction time.
fn watch(dir: std::path::PathBuf, stop: Arc<AtomicBool>) -> JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        let mut high_at = None;
        let mut frozen = false;
        let number = |file: &str| -> Option<u64> {
            fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
        };
        while !stop.load(Ordering::Relaxed) {
            let Ok(events) = fs::read_to_string(dir.join("memory.events")) else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            let events = parse_events(&events);
            seen.oom_kills = seen.oom_kills.max(events.oom_kill);
            if high_at.is_none() && events.high > 0 {
                high_at = Some(Instant::now());
            }
            let now_frozen = fs::read_to_string(dir.join("cgroup.events"))
                .is_ok_and(|t| t.lines().any(|l| l == "frozen 1"));
            if now_frozen && !frozen {
                if let (Some(at), None) = (high_at, seen.reaction) {
                    seen.reaction = Some(at.elapsed());
                    seen.past_limit = number("memory.current").map(|c| c.saturating_sub(HARD));
                }
            }
            if let (Some(at), None) = (high_at, seen.grown_after) {
                if number("memory.high").is_some_and(|high| high > HARD) {
                    seen.grown_after = Some(at.elapsed());
                }
            }
            if frozen && !now_frozen && seen.after_thaw.is_none() {
                seen.after_thaw = number("memory.high").zip(number("memory.max"));
            }
            frozen = now_frozen;
            std::thread::sleep(Duration::from_millis(1));
        }
        seen
    })
}

/// Runs `job` under `agent` with a watcher on its first attempt's cgroup,
/// until the run is `phase`.
pub(super) fn run_watched(
    agent: &Agent,
    job: &str,
    script: &str,
    extra: &str,
    phase: &str,
) -> Seen {
    let run = format!("{job}-1");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(agent.cgroup(&run), Arc::clone(&stop));
    agent.write_job(job, script, extra);
    agent.wait_phase(&run, phase, 60 * SECOND);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap()
}

fn report(what: &str, seen: &Seen) {
    let ms =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
    if let Some(past) = seen.past_limit {
        println!(
            "measured ({what}): high event to frozen {} ms, to the limit raised {} ms; {} KiB \
             allocated past the hard limit when frozen",
            ms(seen.reaction),
            ms(seen.grown_after),
            past / 1024
        );
    }
}

pub fn agent_oom_grow_freezes_a_slow_allocator_and_grows_it_in_place(_: &Context) {
    let mut agent = Agent::new("agent-oom-grow");
    agent.start();
    let out = agent.data("grow");
    let seen = run_watched(
        &agent,
        "grow",
        &limits_then_hog(&out, "--mib 48 --every-ms 10"),
        "resources: {memory: {hard: 32Mi}}\noom: {action: grow, grow_to: 96Mi, grow_step: 32Mi}\n",
        "succeeded",
    );
    report("grow, 1 MiB every 10 ms", &seen);
    let output = agent.read_data("grow");
    assert_eq!(agent.events("grow-1"), ["oom", "memory-grown"], "{output}");
    assert_eq!(agent.exit("grow-1"), (Some(0), None));
    assert_eq!(agent.count_runs(), 1);
    assert_eq!(limits(&output), [(HARD + freeze_margin(HARD), HARD)], "one attempt: {output}");
    assert_eq!(seen.oom_kills, 0, "the kernel killed: {seen:?}");
    assert!(seen.reaction.is_some(), "never seen frozen after a high event: {seen:?}");
    assert_eq!(seen.after_thaw, Some((64 * MI, 64 * MI + freeze_margin(64 * MI))), "{seen:?}");
    // Complete output: every step, and the end.
    for n in 1..=48 {
        assert!(output.contains(&format!("hog: at {n} MiB\n")), "step {n} missing: {output}");
    }
    assert!(output.contains("hog: allocated 48 MiB"), "{output}");
}

pub fn agent_oom_requeue_starts_a_bigger_second_attempt(_: &Context) {
    let mut agent = Agent::new("agent-oom-requeue");
    agent.start();
    let out = agent.data("requeue");
    let seen = run_watched(
        &agent,
        "requeue",
        &limits_then_hog(&out, "--mib 48 --every-ms 10"),
        "resources: {memory: {hard: 32Mi}}\noom: {action: requeue, requeue_factor: 2}\n",
        "succeeded",
    );
    report("requeue, 1 MiB every 10 ms", &seen);
    let output = agent.read_data("requeue");
    assert_eq!(agent.events("requeue-1"), ["oom", "oom-requeued"], "{output}");
    assert_eq!(agent.exit("requeue-1"), (Some(0), None));
    let grown = 64 * MI;
    assert_eq!(
        limits(&output),
        [(HARD + freeze_margin(HARD), HARD), (grown + freeze_margin(grown), grown)],
        "{output}"
    );
    assert_eq!(seen.oom_kills, 0, "the first attempt was killed by the kernel: {seen:?}");
    assert_eq!(output.matches("hog: allocated 48 MiB").count(), 1, "{output}");
}

pub fn agent_oom_fail_is_killed_at_the_limit(_: &Context) {
    let mut agent = Agent::new("agent-oom-fail");
    agent.start();
    let out = agent.data("fail");
    let seen = run_watched(
        &agent,
        "fail",
        &limits_then_hog(&out, "--mib 48 --every-ms 10"),
        "resources: {memory: {hard: 32Mi}}\n",
        "failed",
    );
    let output = agent.read_data("fail");
    // memory.max at the limit, memory.high untouched: the kernel kills.
    assert!(output.contains("limits 33554432 max"), "{output}");
    assert!(agent.events("fail-1").contains(&"oom-killed".to_owned()), "{output}");
    assert!(seen.oom_kills >= 1, "{seen:?}");
    assert!(!output.contains("hog: allocated"), "{output}");
    assert_eq!(agent.count_runs(), 1);
}

pub fn agent_oom_burst_is_never_grown_in_place_after_a_kill(_: &Context) {
    let mut agent = Agent::new("agent-oom-burst");
    agent.start();
    let out = agent.data("burst");
    // 56 MiB in one system call, past memory.max (48 MiB) unless the kernel
    // holds it first, and within the grown 64 MiB.
    let seen = run_watched(
        &agent,
        "burst",
        &limits_then_hog(&out, "--mib 56 --populate"),
        "resources: {memory: {hard: 32Mi}}\noom: {action: grow, grow_to: 128Mi, grow_step: 32Mi}\n",
        "succeeded",
    );
    let output = agent.read_data("burst");
    let events = agent.events("burst-1");
    let first = (HARD + freeze_margin(HARD), HARD);
    let attempts = limits(&output);
    assert_eq!(attempts.first(), Some(&first), "{output}");
    match events.iter().position(|e| e == "oom-killed") {
        // The kernel throttled the charge at memory.high inside the system
        // call (in a killable sleep, which the freezer cannot stop before
        // the call returns) and never reached memory.max: the agent's
        // freeze timed out, the limit was raised, and the call went on in
        // place. Nothing was killed, so growing in place was right.
        None => {
            assert_eq!(events, ["oom", "memory-grown"], "{output}");
            assert_eq!(seen.oom_kills, 0, "{seen:?}");
            assert_eq!(attempts.len(), 1, "one attempt: {output}");
        }
        // Killed at memory.max, before any grow or after one (held, grown,
        // then over the grown memory.max): one kill on record, reported as
        // a kill, never followed by a grow in place, then a new attempt.
        Some(kill) => {
            assert_eq!(events.iter().filter(|e| *e == "oom-killed").count(), 1, "{events:?}");
            assert_eq!(events[kill + 1..], ["oom-requeued"], "{events:?}\n{output}");
            assert!(seen.oom_kills >= 1, "{seen:?}");
            assert_eq!(attempts.len(), 2, "a second attempt: {output}");
            // With a grown limit: 64Mi, or 96Mi when it was grown in place first.
            let (max, high) = attempts[1];
            assert!(high >= 64 * MI && max == high + freeze_margin(high), "{output}");
        }
    }
    assert_eq!(output.matches("hog: allocated 56 MiB").count(), 1, "{output}");
    assert_eq!(agent.exit("burst-1"), (Some(0), None));
}
