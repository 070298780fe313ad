//! The cgroup layer on this machine's real kernel (hybrid layout, root).
//!
//! Every test creates its own parent `corral-test-<pid>-<n>` under this
//! process's cgroup in each hierarchy and a guard removes it, killing what
//! is left, even when the test fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use corral::cgroup::{
    detect, Anchor, CgroupEvent, CgroupManager, CgroupName, CgroupPath, EventOptions, FreezerKind,
    FreezerState, HostPaths, JobCgroup, KillKind, LayoutKind, ManagerConfig, MemoryLimits,
    Notifier, OomMode, Resources,
};
use corral::topology::CpuSet;
use corral::vocab::CpuWeight;
use corral::vocab::MilliCpus;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

// The conditions waited for read kernel files only: polling them blocks one
// worker of a test's runtime, and nothing on it has to run meanwhile.
#[path = "common/wait.rs"]
mod wait;
use wait::wait_until;

const MI: u64 = 1 << 20;
const SECOND: Duration = Duration::from_secs(1);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A test's parent cgroup in every tree, removed with everything under it on drop.
struct TestParent {
    prefix: String,
    manager: CgroupManager,
}

impl TestParent {
    fn new(use_unified: bool) -> Self {
        let prefix =
            format!("corral-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let layout = detect(&HostPaths::default()).expect("detect layout");
        let config = ManagerConfig {
            parent: CgroupPath::new(&prefix).unwrap(),
            anchor: Anchor::OwnCgroup,
            use_unified,
        };
        let manager = CgroupManager::open(layout, &config).expect("open manager");
        TestParent { prefix, manager }
    }

    fn create(&self, job: &str, resources: &Resources) -> JobCgroup {
        self.manager.create(&CgroupName::new(job).unwrap(), resources).expect("create job cgroup")
    }
}

impl Drop for TestParent {
    fn drop(&mut self) {
        remove_tree(&self.manager.parent_dirs());
    }
}

/// Kills every process below `parents` and removes all the cgroups, without
/// relying on the code under test.
fn remove_tree(parents: &[PathBuf]) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), out);
                }
            }
        }
        out.push(dir.to_path_buf());
    }
    let mut dirs = Vec::new();
    for parent in parents {
        walk(parent, &mut dirs);
    }
    let procs = |dir: &Path| -> Vec<i32> {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut busy = false;
        for dir in &dirs {
            if procs(dir).is_empty() {
                continue;
            }
            busy = true;
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            let _ = std::fs::write(dir.join("freezer.state"), "FROZEN");
            for pid in procs(dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
        }
        if !busy || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for dir in &dirs {
        for _ in 0..100 {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// Starts `script` under `sh` after the shell has joined every `cgroup.procs`
/// of `job` itself (writing 0 moves the writer), as a launcher does.
fn spawn_in(job: &JobCgroup, script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(r#"for f do echo 0 > "$f" || exit 97; done; exec sh -c "$CORRAL_TEST_SCRIPT""#)
        .arg("sh")
        .args(job.procs_files())
        .env("CORRAL_TEST_SCRIPT", script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh")
}

async fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "pid {} still running after {timeout:?}", child.id());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn next_event(events: &mut corral::cgroup::EventStream, timeout: Duration) -> CgroupEvent {
    match tokio::time::timeout(timeout, events.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(other) => panic!("event stream ended or failed: {other:?}"),
        Err(_) => panic!("no event within {timeout:?}"),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn cpu_usage(job: &JobCgroup) -> u64 {
    job.stats().unwrap().cpu.usage_ns.expect("cpu usage")
}

#[test]
fn this_host_is_detected_as_hybrid() {
    let layout = detect(&HostPaths::default()).unwrap();
    assert_eq!(layout.kind, LayoutKind::Hybrid);
    assert!(layout.named.iter().any(|n| n.name == "systemd"));
    let unified = layout.unified.as_ref().unwrap();
    assert_eq!(unified.mount_point, Path::new("/sys/fs/cgroup/unified"));
    for c in ["cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio"] {
        let c = corral::cgroup::Controller::from_name(c).unwrap();
        assert!(layout.v1_hierarchy(c).is_some(), "{c} not found");
        assert!(!layout.unified_offers(c));
    }
}

#[test]
fn resources_are_applied_read_back_updated_and_removed() {
    let t = TestParent::new(true);
    let caps = *t.manager.capabilities();
    assert_eq!(caps.freezer, FreezerKind::V2);
    assert_eq!(caps.kill, KillKind::CgroupKill);
    assert!(caps.populated_events && caps.pressure && caps.pause_at_limit);

    let res = Resources {
        cpu_weight: Some(CpuWeight::new(300).unwrap()),
        cpu_quota: Some(MilliCpus::new(1500).unwrap()),
        cpus: Some(CpuSet::parse("1").unwrap()),
        mems: None,
        memory: MemoryLimits {
            hard_bytes: Some(64 * MI),
            soft_bytes: Some(32 * MI),
            high_bytes: Some(48 * MI),
            swap_bytes: Some(0),
        },
        pids_max: Some(100),
        oom: OomMode::Kill,
        ..Default::default()
    };
    let plan = t.manager.plan(&res).unwrap();
    assert_eq!(plan.skipped.len(), 1, "memory.high has no v1 counterpart");
    let job = t.create("job-1", &res);
    let v1 = |c: &str, f: &str| {
        read(&job.v1_dir(corral::cgroup::Controller::from_name(c).unwrap()).unwrap().join(f))
    };
    assert_eq!(v1("cpu", "cpu.shares"), "3072");
    assert_eq!(v1("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(v1("cpu", "cpu.cfs_quota_us"), "150000");
    assert_eq!(v1("cpuset", "cpuset.cpus"), "1");
    assert_eq!(job.cpus().unwrap(), Some(CpuSet::parse("1").unwrap()));
    assert_eq!(v1("cpuset", "cpuset.mems"), "0");
    assert_eq!(v1("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(v1("memory", "memory.memsw.limit_in_bytes"), "67108864");
    assert_eq!(v1("memory", "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(v1("pids", "pids.max"), "100");
    assert!(job.unified_dir().unwrap().is_dir());

    // Raise past the current memsw (memsw first), then lower (limit first).
    let mut bigger = res.clone();
    bigger.memory =
        MemoryLimits { hard_bytes: Some(256 * MI), swap_bytes: Some(0), ..Default::default() };
    job.update(&bigger).unwrap();
    assert_eq!(v1("memory", "memory.limit_in_bytes"), "268435456");
    assert_eq!(v1("memory", "memory.memsw.limit_in_bytes"), "268435456");
    assert_eq!(v1("memory", "memory.soft_limit_in_bytes"), "9223372036854771712");
    job.update(&res).unwrap();
    assert_eq!(v1("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(v1("memory", "memory.memsw.limit_in_bytes"), "67108864");

    // Back to defaults.
    job.update(&Resources::default()).unwrap();
    assert_eq!(v1("cpu", "cpu.shares"), "1024");
    assert_eq!(v1("cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(
        v1("cpuset", "cpuset.cpus"),
        read(
            &t.manager
                .parent_dirs()
                .iter()
                .find(|d| d.starts_with("/sys/fs/cgroup/cpuset"))
                .unwrap()
                .join("cpuset.cpus")
        )
    );
    assert_eq!(v1("memory", "memory.limit_in_bytes"), "9223372036854771712");
    assert_eq!(v1("pids", "pids.max"), "max");

    // An impossible value is refused by the kernel with file and value named.
    let err = job
        .update(&Resources { cpus: Some(CpuSet::parse("0-4095").unwrap()), ..Default::default() })
        .unwrap_err();
    assert!(err.to_string().contains("not within the parent's"), "{err}");

    job.remove().unwrap();
    assert!(job.dirs().all(|d| !d.exists()));
    job.remove().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_joins_every_tree_and_follows_live_cpuset_changes() {
    let t = TestParent::new(true);
    let res = Resources { cpus: Some(CpuSet::parse("1").unwrap()), ..Default::default() };
    let job = t.create("pinned", &res);
    let mut child = spawn_in(&job, "exec sleep 30");
    let pid = child.id();
    let joined_all = || job.procs_files().iter().all(|f| read(f) == pid.to_string());
    wait_until("the job to join every tree", 5 * SECOND, joined_all);
    assert_eq!(job.pids().unwrap(), vec![Pid::from_raw(pid as i32)]);

    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let theirs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in theirs.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, list, path) =
            (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let own_path = own
            .lines()
            .find(|l| l.starts_with(&format!("{id}:{list}:")))
            .map(|l| l.splitn(3, ':').nth(2).unwrap().to_owned())
            .unwrap();
        let joined = ["cpu", "cpuset", "memory", "pids", "blkio", ""].contains(&list);
        if joined {
            let want = format!("{}/{}/pinned", own_path.trim_end_matches('/'), t.prefix);
            assert_eq!(path, want, "hierarchy {list:?}");
        } else {
            assert_eq!(path, own_path, "hierarchy {list:?} must not be touched");
        }
    }
    let cpus_allowed = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:").map(|v| v.trim().to_owned()))
            .unwrap()
    };
    assert_eq!(cpus_allowed(), "1");
    job.update(&Resources { cpus: Some(CpuSet::parse("0").unwrap()), ..Default::default() })
        .unwrap();
    assert_eq!(cpus_allowed(), "0");

    // A process moved in from outside.
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    job.add_process(Pid::from_raw(other.id() as i32)).unwrap();
    assert_eq!(job.pids().unwrap().len(), 2);

    job.kill(5 * SECOND).await.unwrap();
    assert!(job.pids().unwrap().is_empty());
    child.wait().unwrap();
    other.wait().unwrap();
    job.remove().unwrap();
}

async fn freeze_and_thaw_a_busy_loop(use_unified: bool) {
    let t = TestParent::new(use_unified);
    let job = t.create("busy", &Resources::default());
    let mut child = spawn_in(&job, "while :; do :; done");
    wait_until("the loop to burn CPU", 10 * SECOND, || cpu_usage(&job) > 20_000_000);

    let start = Instant::now();
    job.freeze(5 * SECOND).await.unwrap();
    let took = start.elapsed();
    assert_eq!(job.freezer_state().unwrap(), FreezerState::Frozen);
    let frozen_at = cpu_usage(&job);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = cpu_usage(&job);
    assert!(still - frozen_at < 1_000_000, "frozen job used {} ns", still - frozen_at);

    job.thaw(5 * SECOND).await.unwrap();
    assert_eq!(job.freezer_state().unwrap(), FreezerState::Thawed);
    wait_until("the loop to run again", 10 * SECOND, || cpu_usage(&job) > still + 20_000_000);
    eprintln!("freeze confirmed by the kernel after {took:?} (unified tree: {use_unified})");

    job.kill(5 * SECOND).await.unwrap();
    child.wait().unwrap();
    job.remove().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_freezer_stops_and_resumes_a_busy_loop() {
    freeze_and_thaw_a_busy_loop(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_freezer_stops_and_resumes_a_busy_loop() {
    freeze_and_thaw_a_busy_loop(false).await;
}

/// Every shell keeps forking; a failed fork makes that shell exit, so the
/// population churns at the pids limit.
const FORK_BOMB: &str = "b() { while :; do b & done; }; b";

async fn kill_a_fork_bomb(use_unified: bool) {
    let t = TestParent::new(use_unified);
    let expected = if use_unified { KillKind::CgroupKill } else { KillKind::FreezeAndSignal };
    assert_eq!(t.manager.capabilities().kill, expected);
    let job = t.create("bomb", &Resources { pids_max: Some(64), ..Default::default() });
    let mut child = spawn_in(&job, FORK_BOMB);
    let pids_current = job.v1_dir(corral::cgroup::Controller::Pids).unwrap().join("pids.current");
    wait_until("the bomb to reach the limit", 20 * SECOND, || {
        read(&pids_current).parse::<u64>().unwrap() >= 60
    });
    assert!(read(&pids_current).parse::<u64>().unwrap() <= 64);

    job.kill(10 * SECOND).await.unwrap();
    assert!(job.pids().unwrap().is_empty());
    for file in job.procs_files() {
        assert_eq!(read(&file), "", "{}", file.display());
    }
    child.wait().unwrap();
    job.remove().unwrap();
    assert!(job.dirs().all(|d| !d.exists()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroup_kill_empties_a_fork_bomb() {
    kill_a_fork_bomb(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_and_signal_empties_a_fork_bomb() {
    kill_a_fork_bomb(false).await;
}

/// Doubles a shell string to 64 MiB, then prints its length. The memory is
/// touched by user-space copies, so hitting the limit is a user page fault:
/// the kind the v1 OOM pause stops (a charge made inside a system call,
/// e.g. `read()` into a fresh buffer, fails with `EFAULT` instead).
const MEMORY_HOG: &str =
    r#"x=abcdefgh; i=0; while [ $i -lt 23 ]; do x="$x$x"; i=$((i+1)); done; echo ${#x}"#;

async fn pause_at_limit_then_grow(use_unified: bool) {
    let t = TestParent::new(use_unified);
    let limits =
        MemoryLimits { hard_bytes: Some(32 * MI), swap_bytes: Some(0), ..Default::default() };
    let res = Resources { memory: limits, oom: OomMode::PauseAtLimit, ..Default::default() };
    let job = t.create("hog", &res);
    let mut events = job.events(&Notifier::new(), &EventOptions { memory_pressure: None }).unwrap();
    assert!(events.sources().v1_oom);
    assert_eq!(events.sources().cgroup_events, use_unified);

    let mut child = spawn_in(&job, MEMORY_HOG);
    if use_unified {
        assert_eq!(next_event(&mut events, 5 * SECOND).await, CgroupEvent::Populated);
    }
    let oom_control =
        job.v1_dir(corral::cgroup::Controller::Memory).unwrap().join("memory.oom_control");
    wait_until("the job to be paused", 20 * SECOND, || read(&oom_control).contains("under_oom 1"));
    let paused_seen = Instant::now();
    // The notification is there within a second of the kernel pausing it.
    assert!(matches!(next_event(&mut events, SECOND).await, CgroupEvent::Oom { .. }));
    assert_eq!(next_event(&mut events, SECOND).await, CgroupEvent::PausedAtLimit);
    eprintln!("OOM event {:?} after under_oom was readable", paused_seen.elapsed());

    let stats = job.stats().unwrap();
    assert_eq!(stats.memory.under_oom, Some(true));
    assert!(job.paused_at_limit().unwrap());
    assert!(stats.memory.usage_bytes.unwrap() >= 31 * MI);
    // Present, though this kernel (6.18) no longer counts v1 failcnt.
    assert!(stats.memory.limit_hits.is_some());
    assert!(child.try_wait().unwrap().is_none(), "a paused job must not die");

    // Growing the limit (memsw before limit, as it rises) lets it finish.
    let grown =
        MemoryLimits { hard_bytes: Some(512 * MI), swap_bytes: Some(0), ..Default::default() };
    job.update(&Resources { memory: grown, ..res }).unwrap();
    let status = wait_exit(&mut child, 30 * SECOND).await;
    assert!(status.success(), "{status:?}");
    assert!(!job.paused_at_limit().unwrap());
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out.trim(), "67108864");
    assert_eq!(job.stats().unwrap().memory.oom_kills, Some(0));
    // The hog is gone (only the v2 tree reports it).
    if use_unified {
        loop {
            match next_event(&mut events, 5 * SECOND).await {
                CgroupEvent::Emptied => break,
                CgroupEvent::Oom { .. } | CgroupEvent::PausedAtLimit => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    job.remove().unwrap();
    // Removal ends the stream.
    assert!(tokio::time::timeout(5 * SECOND, events.next()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_paused_at_its_limit_is_reported_and_resumes_when_grown() {
    pause_at_limit_then_grow(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_at_limit_works_with_v1_notifications_alone() {
    pause_at_limit_then_grow(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_limit_is_oom_killed_and_counted() {
    let t = TestParent::new(true);
    let limits =
        MemoryLimits { hard_bytes: Some(32 * MI), swap_bytes: Some(0), ..Default::default() };
    let job = t.create("hog", &Resources { memory: limits, ..Default::default() });
    let mut events = job.events(&Notifier::new(), &EventOptions { memory_pressure: None }).unwrap();
    let mut child = spawn_in(&job, MEMORY_HOG);
    let status = wait_exit(&mut child, 30 * SECOND).await;
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status:?}");

    let mut oom = 0;
    let mut killed = 0;
    while killed == 0 {
        match next_event(&mut events, 5 * SECOND).await {
            CgroupEvent::Oom { count } => oom += count,
            CgroupEvent::OomKill { count } => killed += count,
            CgroupEvent::Populated | CgroupEvent::Emptied => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(oom >= 1);
    let stats = job.stats().unwrap();
    assert!(stats.memory.oom_kills.unwrap() >= 1);
    assert_eq!(stats.memory.under_oom, Some(false));
    job.kill(5 * SECOND).await.unwrap();
    job.remove().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_process_leaving_is_reported() {
    let t = TestParent::new(true);
    let job = t.create("short", &Resources::default());
    let mut events = job.events(&Notifier::new(), &EventOptions::default()).unwrap();
    let mut child = spawn_in(&job, "sleep 0.3");
    assert_eq!(next_event(&mut events, 5 * SECOND).await, CgroupEvent::Populated);
    assert_eq!(next_event(&mut events, 5 * SECOND).await, CgroupEvent::Emptied);
    // Unreaped, the shell is a zombie: it no longer populates the cgroup.
    assert!(job.pids().unwrap().is_empty());
    job.remove().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_trigger_fires_on_the_unified_tree() {
    let t = TestParent::new(true);
    let limits = MemoryLimits { hard_bytes: Some(8 * MI), ..Default::default() };
    let job = t.create("thrash", &Resources { memory: limits, ..Default::default() });
    let mut events = job.events(&Notifier::new(), &EventOptions::default()).unwrap();
    let trigger = events.sources().memory_pressure.expect("PSI trigger registered");
    eprintln!("PSI trigger in force: {trigger}");

    // Re-reading a file bigger than the limit refaults its page cache over
    // and over; memcg reclaim and refaults are memory stalls.
    let file = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(file.path(), vec![7u8; 48 << 20]).unwrap();
    // Out of the page cache, so the job's own reads charge it to the job.
    let f = std::fs::File::open(file.path()).unwrap();
    f.sync_all().unwrap();
    nix::fcntl::posix_fadvise(&f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .unwrap();
    let script = format!("while :; do cat {} > /dev/null; done", file.path().display());
    let mut child = spawn_in(&job, &script);
    loop {
        match next_event(&mut events, 30 * SECOND).await {
            CgroupEvent::MemoryPressure => break,
            CgroupEvent::Populated | CgroupEvent::Oom { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let pressure = job.stats().unwrap().pressure.unwrap().memory.unwrap();
    assert!(pressure.some.total_us > 0);
    job.kill(5 * SECOND).await.unwrap();
    child.wait().unwrap();
    job.remove().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_of_a_live_job_are_plausible() {
    let t = TestParent::new(true);
    let job = t.create("live", &Resources { pids_max: Some(50), ..Default::default() });
    let mut reader = job.stats_reader().unwrap();
    let mut child =
        spawn_in(&job, r#"x=$(head -c 20000000 /dev/zero | tr "\0" a); while :; do :; done"#);
    wait_until("CPU and memory use", 20 * SECOND, || {
        let s = job.stats().unwrap();
        s.cpu.usage_ns.unwrap() > 200_000_000 && s.memory.anon_bytes.unwrap() > 20_000_000
    });
    let first = reader.read().unwrap();
    let cpu = &first.cpu;
    assert!(cpu.user_ns.unwrap() > 0);
    assert!(cpu.user_ns.unwrap() + cpu.system_ns.unwrap() <= cpu.usage_ns.unwrap() + 20_000_000);
    assert_eq!(cpu.throttled_periods, Some(0));
    let mem = &first.memory;
    let usage = mem.usage_bytes.unwrap();
    assert!(usage >= 20_000_000);
    assert!(mem.working_set_bytes.unwrap() <= usage);
    assert!(mem.anon_bytes.unwrap() >= 20_000_000);
    assert!(mem.max_usage_bytes.unwrap() >= usage);
    assert_eq!(mem.swap_bytes, Some(0));
    assert_eq!(mem.oom_kills, Some(0));
    assert!(first.pids.current.unwrap() >= 1);
    assert!(first.io.is_some());
    let pressure = first.pressure.as_ref().unwrap();
    assert!(pressure.cpu.is_some() && pressure.memory.is_some() && pressure.io.is_some());

    // The busy job goes on using CPU: its kept-open files, read again, say so.
    wait_until("kept-open files re-read", 10 * SECOND, || {
        reader.read().unwrap().cpu.usage_ns.unwrap() > first.cpu.usage_ns.unwrap()
    });
    job.kill(5 * SECOND).await.unwrap();
    child.wait().unwrap();
    job.remove().unwrap();
}

#[test]
fn invalid_resources_touch_nothing_on_the_host() {
    let t = TestParent::new(true);
    let res = Resources {
        memory: MemoryLimits {
            soft_bytes: Some(2 * MI),
            hard_bytes: Some(MI),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = t.manager.create(&CgroupName::new("bad").unwrap(), &res).unwrap_err();
    assert!(err.to_string().contains("exceeds the hard limit"), "{err}");
    for dir in t.manager.parent_dirs() {
        assert!(!dir.join("bad").exists());
    }
}

/// More event streams than the per-user inotify instance limit (128 by
/// default): they share one instance, and each still hears its own job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_event_streams_share_one_inotify_instance() {
    const JOBS: usize = 400;
    let limit: usize = read(Path::new("/proc/sys/fs/inotify/max_user_instances")).parse().unwrap();
    eprintln!("fs.inotify.max_user_instances = {limit}");
    let t = TestParent::new(true);
    let notifier = Notifier::new();
    let mut jobs = Vec::new();
    for i in 0..JOBS {
        let job = t.create(&format!("j{i}"), &Resources::default());
        let events = job
            .events(&notifier, &EventOptions { memory_pressure: None })
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        assert!(events.sources().cgroup_events && events.sources().v1_oom);
        jobs.push((job, events));
    }
    let instances = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify")
            })
            .count()
    };
    // One for these streams; the other tests of this binary, running at the
    // same time, hold a few of their own.
    let open = instances(std::process::id());
    eprintln!("{open} inotify instances open in this process for {JOBS} streams");
    assert!(open < 16, "{open} inotify instances for {JOBS} streams");

    // Every other job gets a process: exactly those hear `Populated`.
    let mut children = Vec::new();
    for (job, _) in jobs.iter().step_by(2) {
        children.push(spawn_in(job, "sleep 30"));
    }
    for (i, (_, events)) in jobs.iter_mut().enumerate().step_by(2) {
        assert_eq!(next_event(events, 5 * SECOND).await, CgroupEvent::Populated, "j{i}");
    }
    for (i, (_, events)) in jobs.iter_mut().enumerate().skip(1).step_by(2) {
        let heard = tokio::time::timeout(Duration::from_millis(1), events.next()).await;
        assert!(heard.is_err(), "j{i} heard {heard:?}");
    }
    // Removed, every stream ends: the shared parent watch tells each its own.
    for (job, events) in &mut jobs {
        job.kill(5 * SECOND).await.unwrap();
        job.remove().unwrap();
        let end = tokio::time::timeout(5 * SECOND, async {
            while let Some(event) = events.next().await {
                event.unwrap();
            }
        })
        .await;
        assert!(end.is_ok(), "{} did not end", job.name());
    }
    for mut child in children {
        let _ = child.wait();
    }
}
