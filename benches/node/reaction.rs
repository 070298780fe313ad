//! Section "reaction" of the node benchmark: how long the agent takes to act
//! on what it is told or what the kernel reports, from the moment the cause
//! is in place to the moment the kernel confirms the effect.
//!
//! - **Operator freeze**: a `freeze` request on the control socket → the
//!   run's cgroup reported frozen by the kernel, beside the floor: this
//!   process freezing the same run's cgroup itself once the agent has
//!   stopped (write, then re-read until the kernel says frozen), so the
//!   same processes in the same cgroups (CPU weight, cpuset) are frozen;
//!   and, for context, a cgroup of this process's own with as many
//!   sleeping processes.
//! - **Preemption**: an urgent job file renamed into the jobs directory while
//!   a preemptible low-priority run holds the only exclusive CPU → the
//!   urgent job's first action (it writes the time), with the victim frozen;
//!   broken down from the agent's log and the kernel.
//! - **OOM on v1**: a job crossing its hard limit (the kernel's own OOM
//!   eventfd, registered by this process on the job's `memory.oom_control`)
//!   → frozen by the agent (kernel-confirmed) and its limit raised.
//! - **OOM on v2**: measured inside the pure-v2 guest by the VM suite; this
//!   section reads the figure the last guest run left (see
//!   [`oom_v2_from_guest`]).
//!
//! Every figure is a median over `bench.scale(20, 2)` trials. Kernel state is
//! re-read in a loop by this process; that loop's resolution is stated where
//! it matters.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral::api::protocol::{Request, Response};
use corral::api::socket::Client;

use crate::agent_harness::{job, secs, TestAgent};
use crate::table::{Figure, Goal, Row};
use crate::Bench;

const SECTION: &str = "reaction";

pub fn measure(bench: &Bench) -> Vec<Row> {
    let trials = bench.scale(20, 2);
    let mut rows = Vec::new();
    rows.extend(operator_freeze(trials));
    rows.extend(preemption(trials));
    rows.extend(oom_v1(trials));
    rows.push(oom_v2_from_guest());
    rows
}

/// Runs `f`, turning a panic (a wait that timed out, a file that could not
/// be written) into the reason the row could not be measured, so that one
/// failed measure leaves the rest of the table standing.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panicked".to_owned());
        // Keep the table readable: the agent log a harness wait appends
        // goes to stderr only.
        eprintln!("reaction: {what} failed: {text}");
        let first = text.lines().next().unwrap_or_default().to_owned();
        format!("{what} failed: {first}")
    })
}

fn median(mut values: Vec<Duration>) -> Duration {
    assert!(!values.is_empty(), "no trials");
    values.sort();
    values[values.len() / 2]
}

fn median_ms(values: Vec<Duration>) -> Figure {
    Figure::ms(median(values))
}

/// Whether `cgroup.events` in `dir` says `frozen 1` (or `0`, for `false`).
fn frozen_is(dir: &Path, want: bool) -> bool {
    let line = if want { "frozen 1" } else { "frozen 0" };
    fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|t| t.lines().any(|l| l == line))
}

/// Re-reads `done` without sleeping until it holds; the time it took. Used
/// where the whole wait is a fraction of a millisecond to a few: sleeping
/// would add more than it measures.
fn spin_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        // Gives way to the agent and the job's processes, which need a CPU
        // of the two to act on what is being measured.
        std::thread::yield_now();
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------
// Operator freeze

/// The floor: a cgroup of this process's own with `procs` sleeping
/// processes, frozen and thawed by writing the freezer file and re-reading
/// the state until the kernel confirms.
struct FloorCgroup {
    dir: PathBuf,
    sleepers: Vec<Child>,
}

impl FloorCgroup {
    /// `tree` is "unified" (v2 `cgroup.freeze`) or "freezer" (v1).
    fn new(tree: &str, procs: usize) -> FloorCgroup {
        let dir = Path::new("/sys/fs/cgroup")
            .join(tree)
            .join(format!("corral-test-reaction-{}-{tree}", std::process::id()));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let mut floor = FloorCgroup { dir, sleepers: Vec::new() };
        for _ in 0..procs.max(1) {
            let child = Command::new("sleep")
                .arg("3600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn sleep");
            let pid = child.id();
            floor.sleepers.push(child);
            fs::write(floor.dir.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", floor.dir.display()));
        }
        floor
    }

    fn freeze_v2(&self) -> Duration {
        freeze_v2(&self.dir)
    }

    /// One v1 freeze, write `FROZEN` to reading `FROZEN`; thawed again.
    fn freeze_v1(&self) -> Duration {
        let state = self.dir.join("freezer.state");
        let is = |want: &str| fs::read_to_string(&state).is_ok_and(|s| s.trim() == want);
        let start = Instant::now();
        fs::write(&state, "FROZEN").expect("write freezer.state");
        spin_until("floor FROZEN", secs(10), || is("FROZEN"));
        let took = start.elapsed();
        fs::write(&state, "THAWED").expect("write freezer.state");
        spin_until("floor THAWED", secs(10), || is("THAWED"));
        took
    }
}

impl Drop for FloorCgroup {
    fn drop(&mut self) {
        for child in &mut self.sleepers {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The cgroup empties shortly after its last process is reaped.
        for _ in 0..200 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One v2 freeze of the cgroup `dir`, write to `frozen 1`; thawed again
/// afterwards.
fn freeze_v2(dir: &Path) -> Duration {
    let start = Instant::now();
    fs::write(dir.join("cgroup.freeze"), "1").expect("write cgroup.freeze");
    spin_until("floor frozen", secs(10), || frozen_is(dir, true));
    let took = start.elapsed();
    fs::write(dir.join("cgroup.freeze"), "0").expect("write cgroup.freeze");
    spin_until("floor thawed", secs(10), || frozen_is(dir, false));
    took
}

/// What one operator freeze took, measured from just before the request
/// was written to the socket.
struct FreezeTrial {
    frozen: Duration,
    answered: Duration,
}

fn operator_freeze(trials: usize) -> Vec<Row> {
    let what = "operator freeze: socket request → kernel says frozen";
    let measured = guarded("operator freeze", || {
        let mut agent = TestAgent::new("");
        agent.start();
        agent.write_job("hold.yaml", &job("hold", "exec sleep 100000", ""));
        agent.wait_phase("hold-1", "running", secs(30));
        let dir = agent.cgroup("unified", "hold-1");
        // The agent freezes through cgroup.freeze wherever the run's v2
        // cgroup has it (this hybrid host's too); the floor does the same.
        assert!(dir.join("cgroup.freeze").exists(), "no cgroup.freeze in {}", dir.display());
        let procs =
            fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines().count();
        let socket = agent.state.join("corral.sock");
        let mut runs = Vec::new();
        for _ in 0..trials {
            runs.push(freeze_once(&agent, &socket, &dir));
        }
        // Stopped, the agent leaves its runs running and touches them no
        // more: the floor freezes the very same cgroup.
        agent.stop();
        let floor: Vec<Duration> = (0..trials).map(|_| freeze_v2(&dir)).collect();
        drop(agent);
        let own_v2 = FloorCgroup::new("unified", procs);
        let own: Vec<Duration> = (0..trials).map(|_| own_v2.freeze_v2()).collect();
        drop(own_v2);
        let floor_v1 = FloorCgroup::new("freezer", procs);
        let floor_v1_times: Vec<Duration> = (0..trials).map(|_| floor_v1.freeze_v1()).collect();
        (runs, procs, floor, own, floor_v1_times)
    });
    match measured {
        Ok((runs, procs, floor, own, floor_v1)) => {
            let frozen = median_ms(runs.iter().map(|r| r.frozen).collect());
            let answered = median_ms(runs.iter().map(|r| r.answered).collect());
            vec![
                Row::new(SECTION, format!("{what} ({procs} processes in the run)"), Ok(frozen))
                    .against("write + poll floor, same cgroup", Ok(median_ms(floor)))
                    // The kernel's part is tens of microseconds (the
                    // floor), so no ratio to it is a fair target; the agent's
                    // own work (read the request, commit the transition,
                    // write cgroup.freeze, wait for the notification) fits
                    // in a few milliseconds, far below what an operator or a
                    // script notices.
                    .goal(Goal::AtMost(Figure::new(5.0, "ms")))
                    .when_missed(
                        "three hand-offs between the agent's threads (socket task, main \
                         loop with its store commit, the run's operation task), each waiting \
                         for a CPU when the machine is loaded; the kernel's part is the \
                         floor. Fewer hand-offs (writing cgroup.freeze from the main loop \
                         right after the commit) and a higher CPU weight for the agent than \
                         for what shares its CPUs would cut it",
                    ),
                Row::new(SECTION, "operator freeze: socket request → answer", Ok(answered)),
                Row::new(
                    SECTION,
                    format!("v2 floor, {procs} sleeping processes in a cgroup of the bench's own"),
                    Ok(median_ms(own)),
                ),
                Row::new(
                    SECTION,
                    "v1 freezer.state floor, same (the agent uses v2 where it has it)",
                    Ok(median_ms(floor_v1)),
                ),
            ]
        }
        Err(why) => vec![Row::new(SECTION, what, Err(why))],
    }
}

/// One freeze request, timed to the kernel's `frozen 1` (re-read without
/// sleeping) and to the agent's answer (read by a thread meanwhile); then a
/// thaw, waited for until the run is running again.
fn freeze_once(agent: &TestAgent, socket: &Path, dir: &Path) -> FreezeTrial {
    let mut client = Client::connect(socket).expect("connect to the control socket");
    let start = Instant::now();
    client.send(&Request::Freeze { run: "hold-1".into() }).expect("send freeze");
    let answer = std::thread::spawn(move || {
        let response = client.receive();
        (start.elapsed(), response)
    });
    let frozen = spin_until("hold-1 frozen", secs(20), || frozen_is(dir, true));
    let (answered, response) = answer.join().expect("answer thread");
    match response {
        Ok(Some(Response::Done { .. })) => {}
        other => panic!("freeze not accepted: {other:?}"),
    }
    let mut client = Client::connect(socket).expect("connect to the control socket");
    match client.ask(&Request::Thaw { run: "hold-1".into() }) {
        Ok(Response::Done { .. }) => {}
        other => panic!("thaw not accepted: {other:?}"),
    }
    agent.wait_for("hold-1 thawed", secs(20), || {
        frozen_is(dir, false) && agent.phase("hold-1").as_deref() == Some("running")
    });
    FreezeTrial { frozen, answered }
}

// ---------------------------------------------------------------------------
// Preemption

/// Wall-clock time, as the job's `date +%s%N` and the agent's log write it.
fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as i128
}

fn since(from_ns: i128, to_ns: i128) -> Duration {
    Duration::from_nanos(u64::try_from(to_ns - from_ns).unwrap_or(0))
}

/// The time of the first line of the agent's log (default text format:
/// an RFC 3339 UTC time first) that contains every one of `needles`.
fn logged_at(log: &str, needles: &[&str]) -> Option<i128> {
    let line = log.lines().find(|l| needles.iter().all(|n| l.contains(n)))?;
    let stamp = line.split_whitespace().next()?;
    let at = chrono::DateTime::parse_from_rfc3339(stamp).ok()?;
    at.timestamp_nanos_opt().map(i128::from)
}

/// Writes a job file as a deploy does (a hidden temporary, synced, then
/// renamed in) and returns the time just before the rename: from then on
/// the agent can see the file.
fn drop_job_file(agent: &TestAgent, file: &str, text: &str) -> i128 {
    let tmp = agent.jobs.join(format!(".{file}.tmp"));
    let mut f = fs::File::create(&tmp).expect("create job file");
    f.write_all(text.as_bytes()).expect("write job file");
    f.sync_all().expect("sync job file");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod job file");
    let at = now_ns();
    fs::rename(&tmp, agent.jobs.join(file)).expect("rename job file");
    at
}

/// Watches `dir` on a thread, re-reading `cgroup.events` every 100 µs,
/// and returns when it was first seen frozen (wall-clock ns), once `stop`.
fn watch_frozen(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Option<i128>> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if frozen_is(&dir, true) {
                return Some(now_ns());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        None
    })
}

/// One preemption, as wall-clock instants (ns) from the file's rename on.
struct PreemptTrial {
    /// The agent logged the file loaded (watcher settled, read, compiled).
    loaded: i128,
    /// The agent logged the preemption decision (scheduling pass).
    decided: i128,
    /// The kernel reported the victim frozen.
    frozen: i128,
    /// The agent logged the urgent run placed (its CPU assigned).
    placed: i128,
    /// The agent logged the urgent run running (the launcher reported it
    /// started).
    running: i128,
    /// The urgent job's first action.
    started: i128,
}

fn preemption(trials: usize) -> Vec<Row> {
    let what = "preemption: urgent job file renamed in → urgent job running, victim frozen";
    let measured = guarded("preemption", || {
        let mut agent = TestAgent::new("");
        agent.start();
        // Two CPUs, one kept for the shared pool: one exclusive CPU, which
        // the victim holds.
        agent.write_job(
            "low.yaml",
            &job(
                "low",
                "exec sleep 100000",
                "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n",
            ),
        );
        agent.wait_phase("low-1", "running", secs(30));
        let victim = agent.cgroup("unified", "low-1");
        let mut out = Vec::new();
        for k in 0..trials {
            let name = format!("urgent-{k:03}");
            let stamp = agent.data_file(&format!("{name}.start"));
            let stop = Arc::new(AtomicBool::new(false));
            let watcher = watch_frozen(victim.clone(), Arc::clone(&stop));
            let script = format!("date +%s%N > {}", stamp.display());
            let written = drop_job_file(
                &agent,
                &format!("{name}.yaml"),
                &job(&name, &script, "priority: 90\nresources: {cpus: 1}\n"),
            );
            let run = format!("{name}-1");
            agent.wait_phase(&run, "succeeded", secs(30));
            stop.store(true, Ordering::Relaxed);
            let frozen =
                watcher.join().expect("watcher").expect("the victim was never seen frozen");
            let started: i128 = fs::read_to_string(&stamp)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .expect("the urgent job's start time");
            let log = agent.log_text();
            let loaded = logged_at(&log, &[&format!("job file loaded: {name}")])
                .expect("the load in the agent's log");
            let decided = logged_at(&log, &["preempting low-1", &format!("for {run} ")])
                .expect("the preemption in the agent's log");
            let span = format!("run={run} attempt=");
            let placed = logged_at(&log, &[&span, "to=placed"]).expect("the placement logged");
            let running = logged_at(&log, &[&span, "to=running"]).expect("the launch logged");
            out.push((written, PreemptTrial { loaded, decided, frozen, placed, running, started }));
            // The victim resumes once the urgent run is over; the next
            // trial starts from the same state.
            agent.wait_for("low-1 thawed and running", secs(30), || {
                frozen_is(&victim, false) && agent.phase("low-1").as_deref() == Some("running")
            });
        }
        out
    });
    let trials = match measured {
        Ok(t) => t,
        Err(why) => return vec![Row::new(SECTION, what, Err(why))],
    };
    let stage = |f: &dyn Fn(i128, &PreemptTrial) -> Duration| {
        median_ms(trials.iter().map(|(w, t)| f(*w, t)).collect())
    };
    let total = stage(&|w, t| since(w, t.started.max(t.frozen)));
    vec![
        Row::new(SECTION, what, Ok(total)).goal(Goal::Info),
        Row::new(
            SECTION,
            "  of which: rename → file loaded (watcher quiet period 200 ms, read, compile)",
            Ok(stage(&|w, t| since(w, t.loaded))),
        ),
        Row::new(
            SECTION,
            "  of which: loaded → preemption decided (queue, scheduling pass)",
            Ok(stage(&|_, t| since(t.loaded, t.decided))),
        ),
        Row::new(
            SECTION,
            "  of which: decided → victim frozen (store commit, cgroup.freeze, kernel)",
            Ok(stage(&|_, t| since(t.decided, t.frozen))),
        ),
        Row::new(
            SECTION,
            "  of which: victim frozen → urgent run placed (the pass after the freeze is reported)",
            Ok(stage(&|_, t| since(t.frozen, t.placed))),
        ),
        Row::new(
            SECTION,
            "  of which: placed → the job's first action (launch: shim, container, exec, \
             its shell, `date`)",
            Ok(stage(&|_, t| since(t.placed, t.started))),
        ),
        Row::new(
            SECTION,
            "  (after: the job's first action → the agent records it running)",
            Ok(stage(&|_, t| since(t.started, t.running))),
        ),
    ]
}

// ---------------------------------------------------------------------------
// OOM on v1

/// Doubles a shell string to 64 MiB: under a 32 MiB hard limit the copy
/// that crosses it is a page fault, which the v1 kernel pauses.
fn hog() -> &'static str {
    "x=abcdefgh; i=0; while [ $i -lt 23 ]; do x=\"$x$x\"; i=$((i+1)); done"
}

/// The kernel's OOM notification for a v1 memory cgroup: an eventfd
/// registered in `cgroup.event_control` on `memory.oom_control`, as the
/// agent registers its own.
struct OomEventFd {
    eventfd: nix::sys::eventfd::EventFd,
    /// Kept open for as long as the registration is used.
    _control: fs::File,
}

impl OomEventFd {
    fn register(memory_dir: &Path) -> OomEventFd {
        let control =
            fs::File::open(memory_dir.join("memory.oom_control")).expect("open memory.oom_control");
        let eventfd = nix::sys::eventfd::EventFd::new().expect("eventfd");
        let line = format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd());
        fs::write(memory_dir.join("cgroup.event_control"), line)
            .expect("register on cgroup.event_control");
        OomEventFd { eventfd, _control: control }
    }

    /// Blocks until the kernel signals an OOM, up to `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(self.eventfd.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
            .expect("timeout");
        matches!(poll(&mut fds, ms), Ok(n) if n > 0)
    }
}

/// One OOM on v1, timed from the first sign of the crossing: this
/// process's OOM eventfd waking it, or the agent logging the pause, which
/// ever came first (on a loaded machine either can be woken late).
struct OomTrial {
    /// To the kernel's `frozen 1` in the run's v2 cgroup (the freezer the
    /// agent uses on this host), if it was seen.
    frozen: Option<Duration>,
    /// To `memory.limit_in_bytes` seen raised by this process.
    grown: Duration,
    /// The agent's own account, from its log: the pause reported (the
    /// transition to `oom-paused`) to the raise recorded.
    agent: Duration,
}

fn oom_v1(trials: usize) -> Vec<Row> {
    let what = "OOM v1: limit crossed (kernel OOM eventfd) → frozen (cgroup.events frozen 1)";
    let measured = guarded("OOM v1", || {
        let mut agent = TestAgent::new("");
        agent.start();
        let mut out = Vec::new();
        for k in 0..trials {
            let name = format!("oom-{k:03}");
            let run = format!("{name}-1");
            let go = agent.data_file(&format!("{name}.go"));
            // Waits for the go file, so that the measuring eventfd is in
            // place before the job allocates.
            let script = format!(
                "while [ ! -e {go} ]; do sleep 0.01; done; {}; echo ${{#x}} > {go}.done",
                hog(),
                go = go.display()
            );
            agent.write_job(
                &format!("{name}.yaml"),
                &job(
                    &name,
                    &script,
                    "resources: {memory: {hard: 32Mi}}\n\
                     oom: {action: grow, grow_to: 1Gi, grow_step: 256Mi}\n",
                ),
            );
            agent.wait_phase(&run, "running", secs(30));
            let memory = agent.cgroup("memory", &run);
            let unified = agent.cgroup("unified", &run);
            let oom = OomEventFd::register(&memory);
            let limit = || -> u64 {
                fs::read_to_string(memory.join("memory.limit_in_bytes"))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0)
            };
            fs::write(&go, "").expect("write the go file");
            assert!(oom.wait(secs(30)), "no OOM notification for {run}");
            let crossed = Instant::now();
            let crossed_wall = now_ns();
            let (mut frozen, mut grown) = (None, None);
            while grown.is_none() {
                assert!(crossed.elapsed() < secs(30), "{run}'s limit was never raised");
                if frozen.is_none() && frozen_is(&unified, true) {
                    frozen = Some(crossed.elapsed());
                }
                if limit() > 32 << 20 {
                    grown = Some(crossed.elapsed());
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            // The freeze may be confirmed only once the grown job can run
            // again into the freezer: keep looking until it is thawed.
            if frozen.is_none() {
                let deadline = Instant::now() + secs(5);
                while Instant::now() < deadline && agent.phase(&run).as_deref() != Some("succeeded")
                {
                    if frozen_is(&unified, true) {
                        frozen = Some(crossed.elapsed());
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            agent.wait_phase(&run, "succeeded", secs(60));
            let log = agent.log_text();
            let span = format!("run={run} attempt=");
            let paused = logged_at(&log, &[&span, "to=oom-paused"]).expect("the pause logged");
            let raised =
                logged_at(&log, &[&span, "memory limit raised"]).expect("the raise logged");
            // Re-based on the earlier of the two observers of the crossing.
            let early = Duration::from_nanos(u64::try_from(crossed_wall - paused).unwrap_or(0));
            let grown = grown.expect("grown") + early;
            let frozen = frozen.map(|f| f + early);
            out.push(OomTrial { frozen, grown, agent: since(paused, raised) });
        }
        out
    });
    let trials = match measured {
        Ok(t) => t,
        Err(why) => return vec![Row::new(SECTION, what, Err(why))],
    };
    let frozen: Vec<Duration> = trials.iter().filter_map(|t| t.frozen).collect();
    let seen = frozen.len();
    let frozen_row = if frozen.is_empty() {
        Err("never frozen while paused: the v1 kernel holds the job at its limit \
             (under_oom 1), where the v2 freezer does not reach it; the agent counts the \
             pause as the stop and raises the limit"
            .to_owned())
    } else {
        Ok(median_ms(frozen))
    };
    vec![
        Row::new(SECTION, format!("{what}, seen in {seen}/{} trials", trials.len()), frozen_row),
        Row::new(
            SECTION,
            "OOM v1: limit crossed → limit raised (grow), the kernel holding the job paused",
            Ok(median_ms(trials.iter().map(|t| t.grown).collect())),
        ),
        Row::new(
            SECTION,
            "  the agent's log: pause reported → limit raise recorded",
            Ok(median_ms(trials.iter().map(|t| t.agent).collect())),
        ),
    ]
}

// ---------------------------------------------------------------------------
// OOM on v2, in the guest

/// The line the guest's `agent_oom_reaction_is_measured` scenario prints.
pub const GUEST_MARK: &str = "reaction oom v2:";

/// The figure of the last VM suite run that included the guest's reaction
/// scenario (`cargo test --test vm_guest -- agent_oom_reaction`): booting a
/// guest under software emulation takes minutes and a test build of its
/// own, too much for this benchmark to start itself. The row names the file
/// and its time, so a stale figure shows as such.
fn oom_v2_from_guest() -> Row {
    let what = "OOM v2 (guest, qemu TCG: slower than hardware): memory.high event → frozen";
    // Where the VM suite leaves its logs: `$CARGO_TARGET_DIR/vm/run`, else
    // the checkout's `target/vm/run`.
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("vm/run");
    let found = fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "results"))
            .filter_map(|e| {
                let text = fs::read_to_string(e.path()).ok()?;
                let line = text.lines().rev().find(|l| l.contains(GUEST_MARK))?.to_owned();
                let when = e.metadata().ok()?.modified().ok()?;
                Some((when, e.path(), line))
            })
            .max_by_key(|(when, _, _)| *when)
    });
    let Some((when, path, line)) = found else {
        return Row::new(
            SECTION,
            what,
            Err(format!(
                "missing: no guest result in {}; run `cargo test --test vm_guest -- \
                 agent_oom_reaction` first (needs the guest kernel: tests/vm/fetch-kernel)",
                dir.display()
            )),
        );
    };
    let median = line
        .split_once("median ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok());
    let when = chrono::DateTime::<chrono::Utc>::from(when).format("%Y-%m-%d %H:%M UTC");
    let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    match median {
        Some(ms) => {
            Row::new(SECTION, format!("{what}; from {file}, {when}"), Ok(Figure::new(ms, "ms")))
        }
        None => Row::new(SECTION, what, Err(format!("unreadable guest line in {file}: {line}"))),
    }
}
