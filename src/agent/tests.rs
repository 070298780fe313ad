//! The supervisor on a fake machine: job files in, runtime calls and store
//! records out, on a paused clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::clock::Clock;
use super::fake::{Call, FakeRuntime};
use super::runtime::{FinalStats, Observation, Observed, Operation, Probe, RuntimeError};
use super::supervisor::{run_dir, Supervisor};
use super::telemetry::Telemetry;
use super::Settings;
use crate::api::socket::response;
use crate::cgroup::CgroupError;
use crate::metrics::{Metrics, MetricsConfig, PublishedSnapshot};
use crate::placement::{Ledger, PlacementConfig};
use crate::scheduler::{ExitStatus, FailReason, Phase, RunState, StopReason};
use crate::store::{CronJournal, LaunchInfo, RunStore, SqliteStore};
use crate::topology::testing::fixture;
use crate::topology::Topology;
use crate::vocab::RunId;
use crate::vocab::Timestamp;
use crate::watch::FileChange;

fn vm() -> Topology {
    fixture("vm-2cpu")
}

pub(super) struct Bench {
    pub(super) sup: Supervisor<FakeRuntime, SqliteStore>,
    rx: mpsc::UnboundedReceiver<Observation>,
    pub(super) fake: Arc<FakeRuntime>,
    pub(super) dir: tempfile::TempDir,
}

/// Where the bench's clock starts: 1970-01-01T00:16:40Z.
pub(super) const START: Timestamp = Timestamp::from_millis(1_000_000);

fn settings(dir: &Path) -> Settings {
    Settings {
        runs_dir: dir.join("runs"),
        default_grace: Duration::from_secs(5),
        min_runtime_before_preemption: Duration::ZERO,
        admission: crate::spec::AdmissionRules::default(),
        host_ids: fake_host_ids(dir),
    }
}

/// A host with no accounts and no processes, for dynamic uids.
fn fake_host_ids(dir: &Path) -> crate::dynamic_user::HostRoots {
    let roots =
        crate::dynamic_user::HostRoots { etc: dir.join("host-etc"), proc: dir.join("host-proc") };
    std::fs::create_dir_all(&roots.proc).unwrap();
    roots
}

impl Bench {
    pub(super) fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        Bench::on(dir, Arc::new(FakeRuntime::new()))
    }

    /// A supervisor over the store in `dir`, as after an agent restart.
    fn on(dir: tempfile::TempDir, fake: Arc<FakeRuntime>) -> Bench {
        Bench::on_at(dir, fake, START)
    }

    /// [`on`](Bench::on) with the clock reading `now`.
    fn on_at(dir: tempfile::TempDir, fake: Arc<FakeRuntime>, now: Timestamp) -> Bench {
        let topo = vm();
        let ledger = Ledger::new(&topo, PlacementConfig::default()).unwrap();
        let store = SqliteStore::open(&dir.path().join("corral.db")).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let clock = Clock::starting_at(now);
        let sup = Supervisor::new(
            settings(dir.path()),
            topo,
            ledger,
            store,
            Arc::clone(&fake),
            clock,
            tx,
        );
        Bench { sup, rx, fake, dir }
    }

    /// The supervisor, where its runs report, the fake machine and the
    /// state directory: for a test that drives the main loop itself.
    pub(super) fn into_parts(
        self,
    ) -> (
        Supervisor<FakeRuntime, SqliteStore>,
        mpsc::UnboundedReceiver<Observation>,
        Arc<FakeRuntime>,
        tempfile::TempDir,
    ) {
        (self.sup, self.rx, self.fake, self.dir)
    }

    pub(super) fn restart(self) -> Bench {
        let Bench { sup, dir, fake, .. } = self;
        drop(sup);
        fake.clear();
        Bench::on(dir, fake)
    }

    /// An agent restart after the agent was down `down`.
    pub(super) fn restart_after(self, down: Duration) -> Bench {
        let now = self.sup.clock.now().plus(down);
        let Bench { sup, dir, fake, .. } = self;
        drop(sup);
        fake.clear();
        Bench::on_at(dir, fake, now)
    }

    /// Lets the run tasks work and the supervisor react until quiet.
    pub(super) async fn settle(&mut self) {
        for _ in 0..20 {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            while let Ok(obs) = self.rx.try_recv() {
                self.sup.observe(obs).unwrap();
            }
            self.sup.fire_timers().unwrap();
            self.sup.schedule().unwrap();
        }
    }

    pub(super) async fn files(&mut self, files: &[(&str, &str)]) {
        let changes = files.iter().map(|(name, text)| upsert(name, text)).collect();
        self.sup.apply_files(changes).unwrap();
        self.settle().await;
    }

    pub(super) async fn remove(&mut self, name: &str) {
        self.sup
            .apply_files(vec![FileChange::Removed { path: PathBuf::from("/jobs").join(name) }])
            .unwrap();
        self.settle().await;
    }

    pub(super) fn state(&self, run: &str) -> RunState {
        self.sup.store().run(&RunId::new(run)).unwrap().unwrap().record.state
    }

    pub(super) fn phase(&self, run: &str) -> &'static str {
        self.state(run).phase.name()
    }

    pub(super) fn events(&self, run: &str) -> Vec<&'static str> {
        let detail = self.sup.store().run(&RunId::new(run)).unwrap().unwrap();
        detail.events.iter().map(|e| e.event.kind()).collect()
    }

    /// The run's launch, as the store recorded it.
    pub(super) fn launch(&self, run: &str) -> LaunchInfo {
        self.sup.store().run(&RunId::new(run)).unwrap().unwrap().record.launch.unwrap()
    }

    /// Has the supervisor count into, and publish for, metrics that `make`
    /// builds over the snapshot it publishes to, as the agent does.
    fn telemetry(&mut self, make: impl FnOnce(Arc<PublishedSnapshot>) -> Metrics) -> Arc<Metrics> {
        let snapshot = Arc::new(PublishedSnapshot::default());
        let metrics = Arc::new(make(Arc::clone(&snapshot)));
        self.sup.set_telemetry(Telemetry::new(Arc::clone(&metrics), snapshot, None));
        metrics
    }

    /// [`telemetry`](Bench::telemetry) with the default metrics.
    fn metrics(&mut self) -> Arc<Metrics> {
        self.telemetry(|snapshot| Metrics::new(&MetricsConfig::default(), snapshot))
    }
}

pub(super) fn job(name: &str, extra: &str) -> String {
    format!("name: {name}\ncommand: [/bin/true]\n{extra}")
}

/// The watcher's report of job file `name` in `/jobs` holding `text`.
fn upsert(name: &str, text: &str) -> FileChange {
    FileChange::Upserted {
        path: PathBuf::from("/jobs").join(name),
        bytes: text.as_bytes().to_vec(),
    }
}

#[tokio::test(start_paused = true)]
async fn each_job_gets_one_run_per_version() {
    let mut b = Bench::new();
    b.files(&[("a.yaml", &job("a", "")), ("b.yaml", &job("b", "")), ("c.yaml", &job("c", ""))])
        .await;
    assert_eq!(b.fake.launched(), ["a-1", "b-1", "c-1"]);
    for run in ["a-1", "b-1", "c-1"] {
        assert_eq!(b.phase(run), "running");
        b.fake.exit(run, 0);
    }
    b.settle().await;
    assert_eq!(b.phase("a-1"), "succeeded");
    // The same version again (a restart reads every file): no new run.
    let mut b = b.restart();
    b.sup.recover().unwrap();
    b.files(&[("a.yaml", &job("a", "")), ("b.yaml", &job("b", "")), ("c.yaml", &job("c", ""))])
        .await;
    assert!(b.fake.launched().is_empty());
    // A new version of a finished job is a new run.
    b.files(&[("a.yaml", &job("a", "env: {X: '1'}\n"))]).await;
    assert_eq!(b.fake.launched(), ["a-2"]);
}

#[tokio::test(start_paused = true)]
async fn jobs_without_user_get_uids_of_their_own_kept_until_the_job_is_gone() {
    use crate::store::DynamicUsers;
    let mut b = Bench::new();
    b.files(&[
        ("a.yaml", &job("a", "")),
        ("b.yaml", &job("b", "")),
        ("u.yaml", &job("u", "user: etl\n")),
    ])
    .await;
    assert_eq!(b.fake.launched(), ["a-1", "b-1", "u-1"]);
    assert_eq!(
        (b.fake.uid("a-1"), b.fake.uid("b-1"), b.fake.uid("u-1")),
        (Some(61184), Some(61185), None)
    );
    b.fake.exit("a-1", 0);
    b.settle().await;
    // Every run of a job has its uid, across versions and agent restarts.
    b.files(&[("a.yaml", &job("a", "env: {X: '1'}\n"))]).await;
    assert_eq!(b.fake.uid("a-2"), Some(61184));
    let mut b = b.restart();
    b.sup.recover().unwrap();
    b.files(&[
        ("a.yaml", &job("a", "env: {X: '2'}\n")),
        ("b.yaml", &job("b", "")),
        ("u.yaml", &job("u", "user: etl\n")),
    ])
    .await;
    assert_eq!(b.fake.launched(), ["a-3"]);
    assert_eq!(b.fake.uid("a-3"), Some(61184));

    // b's file goes: its uid is given up once its run has ended.
    b.remove("b.yaml").await;
    assert_eq!(b.phase("b-1"), "failed", "stopped for removal");
    assert_eq!(b.sup.store().job_uid(&crate::vocab::JobName::parse("b").unwrap()).unwrap(), None);
    // A process left with 61185 keeps it from the next job.
    let status = b.dir.path().join("host-proc/4242/status");
    std::fs::create_dir_all(status.parent().unwrap()).unwrap();
    std::fs::write(&status, "Uid:\t61185\t61185\t61185\t61185\n").unwrap();
    b.files(&[("c.yaml", &job("c", ""))]).await;
    assert_eq!(b.fake.uid("c-1"), Some(61186));
}

#[tokio::test(start_paused = true)]
async fn no_free_dynamic_uid_fails_the_launch_naming_the_range() {
    let mut b = Bench::new();
    let range = crate::spec::UidRange::parse("70000-70000").unwrap();
    b.sup.settings.admission.dynamic_users = range;
    b.fake.configure(|config| config.dynamic_users = range);
    b.files(&[("a.yaml", &job("a", "")), ("b.yaml", &job("b", ""))]).await;
    assert_eq!(b.fake.launched(), ["a-1"]);
    assert_eq!(b.fake.uid("a-1"), Some(70000));
    let detail = b.sup.store().run(&RunId::new("b-1")).unwrap().unwrap();
    let reasons: Vec<&str> = detail.transitions.iter().map(|t| t.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("no free uid in dynamic_users range 70000-70000")),
        "{reasons:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_plan_fails_the_run_before_it_is_placed_and_without_restarts() {
    let mut b = Bench::new();
    // The host's configuration makes jobs without `user` run as root,
    // which it does not allow: every plan of such a job is refused.
    b.fake.configure(|config| {
        config.default_user = crate::spec::DefaultUser::Account(crate::spec::UserRef::Id(0))
    });
    let refused = "resources: {cpus: 1}\nrestart: {on: failure, attempts: 3, backoff: 1s..2s}\n";
    b.files(&[("a.yaml", &job("a", refused))]).await;
    assert!(b.fake.launched().is_empty());
    assert_eq!(b.phase("a-1"), "failed");
    let detail = b.sup.store().run(&RunId::new("a-1")).unwrap().unwrap();
    let phases: Vec<&str> = detail.transitions.iter().map(|t| t.to.as_str()).collect();
    assert_eq!(phases, ["pending", "failed"], "never placed");
    let last = &detail.transitions.last().unwrap().reason;
    assert!(last.contains("allow_root_jobs") && last.contains("not restarted"), "{last}");
    assert_eq!(detail.record.assignment, None);
    // The CPU it was about to be given went back: the one exclusive CPU
    // this machine has room for goes to the next job.
    b.fake.configure(|config| config.default_user = crate::spec::DefaultUser::Dynamic);
    b.files(&[("x.yaml", &job("x", "resources: {cpus: 1}\n"))]).await;
    assert_eq!(b.fake.launched(), ["x-1"]);
}

#[tokio::test(start_paused = true)]
async fn recurring_jobs_are_left_to_the_schedule_engine() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &job("r", "schedule: '*/5 * * * *'\n"))]).await;
    // In force, and handed to the schedule engine: not a file that failed to
    // load and so started nothing.
    assert_eq!(b.sup.jobs.problem(Path::new("/jobs/r.yaml")), None);
    let scheduled: Vec<String> =
        b.sup.store().cron_states().unwrap().into_iter().map(|(job, _)| job.to_string()).collect();
    assert_eq!(scheduled, ["r"]);
    assert!(b.fake.launched().is_empty());
}

#[tokio::test(start_paused = true)]
async fn higher_priority_first_and_one_exclusive_cpu_at_a_time() {
    let mut b = Bench::new();
    b.files(&[
        ("low.yaml", &job("low", "priority: 10\nresources: {cpus: 1}\n")),
        ("high.yaml", &job("high", "priority: 90\nresources: {cpus: 1}\n")),
    ])
    .await;
    assert_eq!(b.fake.launched(), ["high-1"]);
    assert_eq!(b.phase("low-1"), "pending");
    b.fake.exit("high-1", 0);
    b.settle().await;
    assert_eq!(b.fake.launched(), ["high-1", "low-1"]);
}

#[tokio::test(start_paused = true)]
async fn a_run_that_does_not_fit_is_counted_once_while_it_waits() {
    use crate::metrics::agent::PlacementOutcome;

    let mut b = Bench::new();
    let metrics = b.metrics();
    let count = |outcome| metrics.agent().placement_decisions.get(outcome);

    b.files(&[
        ("low.yaml", &job("low", "priority: 10\nresources: {cpus: 1}\n")),
        ("high.yaml", &job("high", "priority: 90\nresources: {cpus: 1}\n")),
    ])
    .await;
    // low-1 waited through every pass of the settling, and is counted once.
    assert_eq!(b.phase("low-1"), "pending");
    assert_eq!(count(PlacementOutcome::NoFit), 1);
    assert_eq!(count(PlacementOutcome::Placed), 1);
    b.sup.schedule().unwrap();
    assert_eq!(count(PlacementOutcome::NoFit), 1);

    b.fake.exit("high-1", 0);
    b.settle().await;
    assert_eq!(b.fake.launched(), ["high-1", "low-1"]);
    assert_eq!(count(PlacementOutcome::Placed), 2);
    // Another run that does not fit is counted in its turn.
    b.files(&[("other.yaml", &job("other", "priority: 10\nresources: {cpus: 1}\n"))]).await;
    assert_eq!(b.phase("other-1"), "pending");
    assert_eq!(count(PlacementOutcome::NoFit), 2);
    assert_eq!(count(PlacementOutcome::Refused), 0);
}

#[tokio::test(start_paused = true)]
async fn a_suspendable_low_priority_run_is_frozen_for_a_high_one_and_resumed_after() {
    let mut b = Bench::new();
    b.files(&[(
        "low.yaml",
        &job("low", "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n"),
    )])
    .await;
    b.fake.clear();
    b.files(&[("high.yaml", &job("high", "priority: 90\nresources: {cpus: 1}\n"))]).await;
    let calls = b.fake.calls();
    let freeze = calls.iter().position(|c| *c == Call::Freeze(RunId::new("low-1"))).unwrap();
    let launch = calls
        .iter()
        .position(|c| matches!(c, Call::Launch { run, .. } if run.as_str() == "high-1"))
        .unwrap();
    assert!(freeze < launch, "{calls:?}");
    assert!(matches!(b.state("low-1").phase, Phase::Suspended { frozen: true, .. }));
    assert_eq!(b.events("low-1"), ["preempted"]);

    b.fake.clear();
    b.fake.exit("high-1", 0);
    b.settle().await;
    let calls = b.fake.calls();
    let update = calls
        .iter()
        .position(|c| matches!(c, Call::Update { run, cpus, .. } if run.as_str() == "low-1" && cpus.len() == 1))
        .unwrap_or_else(|| panic!("re-pinned before the thaw: {calls:?}"));
    let thaw = calls.iter().position(|c| *c == Call::Thaw(RunId::new("low-1"))).unwrap();
    assert!(update < thaw, "{calls:?}");
    assert_eq!(b.phase("low-1"), "running");
    assert_eq!(b.events("low-1"), ["preempted", "resumed"]);
    b.fake.exit("low-1", 0);
    b.settle().await;
    assert_eq!(b.phase("low-1"), "succeeded");
}

#[tokio::test(start_paused = true)]
async fn a_victim_whose_freeze_times_out_is_resumed() {
    let mut b = Bench::new();
    b.files(&[(
        "low.yaml",
        &job("low", "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n"),
    )])
    .await;
    b.fake.fail_freezes(|| CgroupError::FreezerTimeout {
        path: "/sys/fs/cgroup/unified/corral/low-1".into(),
        wanted: "frozen",
        state: "freezing".into(),
        timeout: Duration::from_secs(10),
    });
    b.fake.clear();
    b.files(&[("high.yaml", &job("high", "priority: 90\nresources: {cpus: 1}\n"))]).await;
    // Not suspended after all: thawed and resumed, and high did not get
    // its CPU.
    let calls = b.fake.calls();
    assert_eq!(calls[..2], [Call::Freeze(RunId::new("low-1")), Call::Thaw(RunId::new("low-1"))]);
    assert_eq!(b.events("low-1")[..2], ["preempted", "resumed"]);
    assert!(!b.fake.launched().contains(&"high-1".to_owned()), "{calls:?}");
    assert_eq!(b.phase("high-1"), "pending");
}

#[tokio::test(start_paused = true)]
async fn a_victim_whose_cgroup_is_gone_is_left_to_the_report_of_its_end() {
    let mut b = Bench::new();
    b.files(&[(
        "low.yaml",
        &job("low", "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n"),
    )])
    .await;
    b.fake.fail_freezes(|| CgroupError::Write {
        path: "/sys/fs/cgroup/unified/corral/low-1/cgroup.freeze".into(),
        value: "1".into(),
        source: std::io::Error::from_raw_os_error(libc::ENOENT),
    });
    b.fake.clear();
    b.files(&[("high.yaml", &job("high", "priority: 90\nresources: {cpus: 1}\n"))]).await;
    assert_eq!(b.fake.calls()[0], Call::Freeze(RunId::new("low-1")));
    // Not resumed (there is nothing to resume): its end is on its way.
    assert!(matches!(b.state("low-1").phase, Phase::Suspended { frozen: false, .. }));
    assert!(!b.fake.calls().contains(&Call::Thaw(RunId::new("low-1"))), "{:?}", b.fake.calls());
    b.fake.report(
        &RunId::new("low-1"),
        Observed::CgroupRemoved { status: ExitStatus::Signal(9), at: Timestamp::EPOCH },
    );
    b.settle().await;
    assert_eq!(b.phase("low-1"), "failed");
    assert_eq!(b.fake.launched(), ["high-1"]);
}

#[tokio::test(start_paused = true)]
async fn a_requeue_victim_is_stopped_and_queued_again_with_its_attempt() {
    let mut b = Bench::new();
    b.files(&[(
        "low.yaml",
        &job("low", "priority: 10\npreemption: requeue\nresources: {cpus: 1}\n"),
    )])
    .await;
    b.fake.clear();
    b.files(&[("high.yaml", &job("high", "priority: 90\nresources: {cpus: 1}\n"))]).await;
    // SIGTERM ended it (the fake's jobs die on it); high took the CPU.
    assert_eq!(
        b.fake.calls()[0],
        Call::Signal(RunId::new("low-1"), nix::sys::signal::Signal::SIGTERM)
    );
    assert_eq!(b.fake.launched(), ["high-1"]);
    assert_eq!(b.phase("low-1"), "pending");
    assert_eq!(b.state("low-1").attempt, 1, "being preempted is not a failed attempt");
    assert_eq!(b.events("low-1"), ["preempted"]);
    b.fake.exit("high-1", 0);
    b.settle().await;
    assert_eq!(b.fake.launched(), ["high-1", "low-1"]);
}

#[tokio::test(start_paused = true)]
async fn young_runs_are_not_preempted() {
    let mut b = Bench::new();
    b.sup.settings.min_runtime_before_preemption = Duration::from_secs(10);
    b.files(&[(
        "low.yaml",
        &job("low", "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n"),
    )])
    .await;
    b.fake.clear();
    b.files(&[("high.yaml", &job("high", "priority: 90\nresources: {cpus: 1}\n"))]).await;
    assert!(b.fake.calls().is_empty(), "{:?}", b.fake.calls());
    // The agent wakes up when the run becomes old enough, with nothing
    // else happening.
    let wake = b.sup.next_deadline().expect("a wake-up is due");
    assert_eq!(wake - tokio::time::Instant::now(), Duration::from_secs(10));
    tokio::time::advance(Duration::from_secs(10)).await;
    b.settle().await;
    assert_eq!(b.fake.calls()[0], Call::Freeze(RunId::new("low-1")));
}

#[tokio::test(start_paused = true)]
async fn oom_grow_raises_the_limit_in_place() {
    let mut b = Bench::new();
    let metrics = b.metrics();
    let spec =
        "resources: {memory: {hard: 64Mi}}\noom: {action: grow, grow_to: 256Mi, grow_step: 64Mi}\n";
    b.files(&[("m.yaml", &job("m", spec))]).await;
    b.fake.clear();
    b.fake.report(&RunId::new("m-1"), Observed::Oom);
    b.settle().await;
    let calls = b.fake.calls();
    assert_eq!(calls[0], Call::Freeze(RunId::new("m-1")));
    assert!(
        matches!(&calls[1], Call::Update { memory: Some(m), .. } if m.get() == 128 << 20),
        "{calls:?}"
    );
    assert_eq!(calls[2], Call::Thaw(RunId::new("m-1")));
    assert_eq!(b.phase("m-1"), "running");
    assert_eq!(b.events("m-1"), ["oom", "memory-grown"]);
    let oom = metrics.agent().oom_events.clone();
    assert_eq!(oom.get(crate::metrics::OomAction::Grow, crate::metrics::OomReached::Paused), 1);
    b.fake.exit("m-1", 0);
    b.settle().await;
    assert_eq!(b.phase("m-1"), "succeeded");
}

/// v2: the limit reached, then the kernel killed the job before the freeze
/// took hold. It is not grown in place as if paused; the kill ends the
/// attempt and the grow policy starts the next one with the grown limit.
#[tokio::test(start_paused = true)]
async fn oom_grow_after_a_kill_that_beat_the_freeze_starts_again_grown() {
    use crate::metrics::agent::{OomAction, OomReached};
    let mut b = Bench::new();
    let metrics = b.metrics();
    let spec =
        "resources: {memory: {hard: 64Mi}}\noom: {action: grow, grow_to: 256Mi, grow_step: 64Mi}\n";
    b.files(&[("m.yaml", &job("m", spec))]).await;
    b.fake.oom_kill_before_freezes();
    b.fake.set_stats(&RunId::new("m-1"), FinalStats { oom_kills: Some(1), ..Default::default() });
    b.fake.clear();
    b.fake.report(&RunId::new("m-1"), Observed::Oom);
    b.settle().await;
    assert!(
        !b.fake.calls().iter().any(|c| matches!(c, Call::Update { .. } | Call::Thaw(_))),
        "grown in place: {:?}",
        b.fake.calls()
    );
    // The kill ended the attempt (the fake's kill reports the end at once).
    let launches: Vec<_> = b
        .fake
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Launch { memory, .. } => memory,
            _ => None,
        })
        .collect();
    assert_eq!(launches, [crate::vocab::Bytes::from_mib(128)]);
    assert_eq!(b.events("m-1"), ["oom", "oom-killed", "oom-requeued"]);
    let oom = metrics.agent().oom_events.clone();
    assert_eq!(oom.get(OomAction::Requeue, OomReached::Killed), 1);
    assert_eq!(oom.get(OomAction::Grow, OomReached::Paused), 0);
}

#[tokio::test(start_paused = true)]
async fn oom_fail_and_kernel_oom_kills_end_as_oom() {
    let mut b = Bench::new();
    b.files(&[("f.yaml", &job("f", "resources: {memory: {hard: 64Mi}}\n"))]).await;
    // The kernel killed it; only the exit's accounting says so.
    let stats = FinalStats { oom_kills: Some(1), ..FinalStats::default() };
    b.fake.report(
        &RunId::new("f-1"),
        Observed::Exited { status: ExitStatus::Signal(9), at: Timestamp::EPOCH, stats },
    );
    b.settle().await;
    assert_eq!(b.state("f-1").phase, Phase::Failed { reason: FailReason::Oom });
    assert_eq!(b.events("f-1"), ["oom-killed"]);
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_cgroup_was_removed_by_someone_else_ends_lost_with_its_signal() {
    let mut b = Bench::new();
    b.files(&[("g.yaml", &job("g", ""))]).await;
    b.fake.report(
        &RunId::new("g-1"),
        Observed::CgroupRemoved { status: ExitStatus::Signal(9), at: Timestamp::EPOCH },
    );
    b.settle().await;
    let detail = "killed by signal 9 after its cgroup was removed by someone other than the agent";
    assert_eq!(
        b.state("g-1").phase,
        Phase::Failed { reason: FailReason::Lost { detail: detail.into() } }
    );
}

#[tokio::test(start_paused = true)]
async fn oom_requeue_starts_again_with_a_larger_limit() {
    let mut b = Bench::new();
    let spec = "resources: {memory: {hard: 64Mi}}\noom: {action: requeue, requeue_factor: 2}\n";
    b.files(&[("q.yaml", &job("q", spec))]).await;
    b.fake.clear();
    b.fake.report(&RunId::new("q-1"), Observed::Oom);
    b.settle().await;
    let launches: Vec<_> = b
        .fake
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Launch { memory, .. } => memory,
            _ => None,
        })
        .collect();
    assert_eq!(launches, [crate::vocab::Bytes::from_mib(128)]);
    assert_eq!(b.state("q-1").attempt, 2);
    b.fake.exit("q-1", 0);
    b.settle().await;
    assert_eq!(b.phase("q-1"), "succeeded");
}

#[tokio::test(start_paused = true)]
async fn removal_stops_the_run_unless_it_may_finish() {
    let mut b = Bench::new();
    b.files(&[("a.yaml", &job("a", "")), ("b.yaml", &job("b", "on_removal: finish\n"))]).await;
    b.fake.clear();
    b.remove("a.yaml").await;
    b.remove("b.yaml").await;
    assert_eq!(
        b.fake.calls()[0],
        Call::Signal(RunId::new("a-1"), nix::sys::signal::Signal::SIGTERM)
    );
    assert!(matches!(b.state("a-1").phase, Phase::Killed { .. }));
    assert_eq!(b.phase("b-1"), "running");
    b.fake.exit("b-1", 0);
    b.settle().await;
    assert_eq!(b.phase("b-1"), "succeeded");
}

#[tokio::test(start_paused = true)]
async fn a_file_removed_and_put_back_runs_its_job_again() {
    let mut b = Bench::new();
    b.files(&[("a.yaml", &job("a", ""))]).await;
    b.remove("a.yaml").await;
    assert!(matches!(b.state("a-1").phase, Phase::Killed { .. }));
    b.files(&[("a.yaml", &job("a", ""))]).await;
    assert_eq!(b.fake.launched(), ["a-1", "a-2"]);
    // Also while the removed run is still stopping.
    b.fake.clear();
    let fake = Arc::clone(&b.fake);
    b.sup.apply_files(vec![FileChange::Removed { path: "/jobs/a.yaml".into() }]).unwrap();
    b.files(&[("a.yaml", &job("a", "env: {V: '2'}\n"))]).await;
    assert_eq!(fake.launched(), ["a-3"]);
    assert!(matches!(b.state("a-2").phase, Phase::Killed { .. }));
}

#[tokio::test(start_paused = true)]
async fn an_invalid_edit_changes_nothing_and_a_valid_one_is_taken_over_by_the_run() {
    let mut b = Bench::new();
    b.files(&[("a.yaml", &job("a", "resources: {memory: {hard: 64Mi}}\n"))]).await;
    b.fake.clear();
    b.files(&[("a.yaml", "name: a\ncommand: 7\n")]).await;
    assert!(b.fake.calls().is_empty());
    assert_eq!(b.phase("a-1"), "running");
    b.files(&[("a.yaml", &job("a", "resources: {memory: {hard: 96Mi}, cpu_weight: 200}\n"))]).await;
    let calls = b.fake.calls();
    assert!(
        matches!(&calls[..], [Call::Update { memory: Some(m), .. }] if m.get() == 96 << 20),
        "{calls:?}"
    );
    assert_eq!(b.fake.launched().len(), 0, "no second run while the first takes the change");
    b.fake.exit("a-1", 0);
    b.settle().await;
    assert_eq!(b.phase("a-1"), "succeeded");
    assert!(b.fake.launched().is_empty());
}

#[tokio::test(start_paused = true)]
async fn root_jobs_are_refused_unless_allowed() {
    let mut b = Bench::new();
    b.files(&[("r.yaml", &job("r", "user: root\n"))]).await;
    // Refused for running as root and for nothing else: the file compiled.
    let problem = b.sup.jobs.problem(Path::new("/jobs/r.yaml")).expect("the file is refused");
    let lines = problem.lines();
    assert!(lines.len() == 1 && lines[0].contains("allow_root_jobs is false"), "{lines:#?}");
    assert!(b.fake.launched().is_empty());

    let mut allowed = Bench::new();
    // The agent's configuration, as admission and the runtime's plans read it.
    allowed.sup.settings.admission.allow_root_jobs = true;
    allowed.fake.configure(|config| config.allow_root_jobs = true);
    allowed.files(&[("r.yaml", &job("r", "user: root\n"))]).await;
    assert_eq!(allowed.sup.jobs.problem(Path::new("/jobs/r.yaml")), None);
    assert_eq!(allowed.fake.launched(), ["r-1"]);
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_restarts_come_from_the_state_machine() {
    let mut b = Bench::new();
    b.files(&[(
        "t.yaml",
        &job("t", "timeout: 10s\nrestart: {on: failure, attempts: 1, backoff: 2s}\n"),
    )])
    .await;
    tokio::time::advance(Duration::from_secs(11)).await;
    b.settle().await;
    // SIGTERM ended it; the restart waits out its backoff.
    assert_eq!(b.phase("t-1"), "backoff-waiting");
    tokio::time::advance(Duration::from_secs(3)).await;
    b.settle().await;
    assert_eq!(b.fake.launched(), ["t-1", "t-1"]);
    assert_eq!(b.state("t-1").attempt, 2);
}

#[tokio::test(start_paused = true)]
async fn the_timeout_signal_is_sent_once_across_a_restart_and_stops_use_the_stop_signal() {
    use nix::sys::signal::Signal;
    let mut b = Bench::new();
    // The job lives through its warning (the fake ends a run on any signal
    // unless told otherwise).
    b.fake.set_term_kills(false);
    let extra = "timeout: 10s\nstop_grace: 2s\nstop_signal: INT\n\
                 timeout_signal: {signal: USR1, before: 4s}\n";
    b.files(&[("w.yaml", &job("w", extra))]).await;
    b.fake.clear();
    tokio::time::advance(Duration::from_secs(5)).await;
    b.settle().await;
    assert!(b.fake.calls().is_empty(), "not due before 6s of running time");
    tokio::time::advance(Duration::from_secs(2)).await;
    b.settle().await;
    assert_eq!(b.fake.calls(), [Call::Signal(RunId::new("w-1"), Signal::SIGUSR1)]);
    assert!(b.state("w-1").timeout_signal_sent);
    // A restarted agent adopts the run and does not send it again.
    let launch = b.launch("w-1");
    let fake = Arc::clone(&b.fake);
    fake.set_probe(&launch.run_dir, Probe::Running { launch: launch.clone() });
    fake.set_live(vec![(RunId::new("w-1"), None)]);
    let mut b = b.restart_after(Duration::ZERO);
    assert_eq!(b.sup.recover().unwrap().running, 1);
    b.files(&[("w.yaml", &job("w", extra))]).await;
    tokio::time::advance(Duration::from_secs(4)).await;
    b.settle().await;
    let calls = b.fake.calls();
    let signals: Vec<_> = calls.iter().filter(|c| matches!(c, Call::Signal(..))).collect();
    // The timeout: the job's stop signal, not SIGTERM, and no second USR1.
    assert_eq!(signals, [&Call::Signal(RunId::new("w-1"), Signal::SIGINT)], "{calls:?}");
    assert_eq!(b.phase("w-1"), "stopping");
    b.fake.exit("w-1", 0);
    b.settle().await;
    assert!(matches!(
        b.state("w-1").phase,
        Phase::Failed { reason: crate::scheduler::FailReason::Timeout }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_adopts_running_runs_and_learns_how_others_ended() {
    let mut b = Bench::new();
    b.files(&[
        ("a.yaml", &job("a", "")),
        ("b.yaml", &job("b", "")),
        ("c.yaml", &job("c", "priority: 1\nresources: {cpus: 1}\n")),
        ("d.yaml", &job("d", "priority: 0\nresources: {cpus: 1}\n")),
    ])
    .await;
    let a = b.launch("a-1");
    let bl = b.launch("b-1");
    let c = b.launch("c-1");
    // The agent dies. Meanwhile b ends; a and c go on.
    let fake = Arc::clone(&b.fake);
    fake.set_probe(&a.run_dir, Probe::Running { launch: a.clone() });
    fake.set_probe(&c.run_dir, Probe::Running { launch: c.clone() });
    fake.set_probe(
        &bl.run_dir,
        Probe::Finished { launch: bl.clone(), status: ExitStatus::Code(3), at: Timestamp::EPOCH },
    );
    fake.set_live(vec![
        (RunId::new("a-1"), None),
        (RunId::new("b-1"), None),
        (RunId::new("c-1"), Some("1".parse().unwrap())),
        (RunId::new("zombie-9"), None),
    ]);
    let mut b = b.restart();
    let summary = b.sup.recover().unwrap();
    assert_eq!(
        (summary.runs, summary.running, summary.ended_while_down, summary.stray_cgroups),
        (4, 2, 1, 1)
    );
    b.files(&[
        ("a.yaml", &job("a", "")),
        ("b.yaml", &job("b", "")),
        ("c.yaml", &job("c", "priority: 1\nresources: {cpus: 1}\n")),
        ("d.yaml", &job("d", "priority: 0\nresources: {cpus: 1}\n")),
    ])
    .await;
    assert_eq!(
        b.state("b-1").phase,
        Phase::Failed { reason: FailReason::Exit { status: ExitStatus::Code(3) } }
    );
    assert_eq!(b.phase("a-1"), "running");
    assert!(b.fake.calls().contains(&Call::Remove(RunId::new("zombie-9"))));
    // Nothing started twice; d still waits for c's CPU.
    assert!(b.fake.launched().is_empty(), "{:?}", b.fake.launched());
    assert_eq!(b.phase("d-1"), "pending");
    b.fake.exit("c-1", 0);
    b.settle().await;
    assert_eq!(b.fake.launched(), ["d-1"]);
}

#[tokio::test(start_paused = true)]
async fn an_adopted_run_keeps_the_launch_time_on_record() {
    let mut b = Bench::new();
    b.files(&[("a.yaml", &job("a", "")), ("b.yaml", &job("b", ""))]).await;
    let a = b.launch("a-1");
    // What the probe makes of the run directory is close to the time on
    // record, not equal; a new process in the same directory is another
    // launch.
    let probed = LaunchInfo { launched_at: START.plus(Duration::from_millis(3)), ..a.clone() };
    b.fake.set_probe(&a.run_dir, Probe::Running { launch: probed });
    let bl = b.launch("b-1");
    let other =
        LaunchInfo { pid_start_time: bl.pid_start_time + 1, launched_at: START, ..bl.clone() };
    b.fake.set_probe(&bl.run_dir, Probe::Running { launch: other.clone() });
    let mut b = b.restart_after(Duration::from_secs(600));
    b.sup.recover().unwrap();
    assert_eq!(b.launch("a-1"), a);
    assert_eq!(b.launch("b-1"), other);
}

/// Records, as an agent that died right after placing it would have, a run
/// of `job` placed on the shared pool and not started.
fn forge_placed_run(b: &mut Bench, job: &str, spec: &str) -> (RunId, PathBuf) {
    use crate::agent::job::RunMeta;
    use crate::placement::{Assignment, CpuGrant};
    let parsed = crate::spec::compile_str(Path::new("x.yaml"), spec).unwrap().remove(0).spec;
    let version =
        crate::agent::job::version(&RunMeta::of(&parsed, Duration::from_secs(5)), &parsed);
    let name = crate::vocab::JobName::parse(job).unwrap();
    let store = &mut b.sup.store;
    let pending = RunState::new(None, Timestamp::from_millis(5_000));
    let run = store
        .create_versioned_run(&name, &pending, Timestamp::from_millis(5_000), &version)
        .unwrap();
    let assignment = Assignment {
        owner: run.clone(),
        cpus: CpuGrant::Shared,
        mems: "0".parse().unwrap(),
        memory: Default::default(),
    };
    store.set_placement(&run, Some(&assignment)).unwrap();
    let placed =
        RunState { phase: Phase::Placed, since: Timestamp::from_millis(6_000), ..pending.clone() };
    store
        .record_transition(&run, &pending, &placed, Timestamp::from_millis(6_000), "placed")
        .unwrap();
    let dir = run_dir(&b.dir.path().join("runs"), &run, Timestamp::from_millis(6_000));
    (run, dir)
}

#[tokio::test(start_paused = true)]
async fn a_run_placed_but_not_started_before_a_restart_is_started_once() {
    let mut b = Bench::new();
    let spec = job("a", "");
    let (run, dir) = forge_placed_run(&mut b, "a", &spec);
    let mut b = b.restart();
    b.sup.recover().unwrap();
    assert!(b.fake.launched().is_empty(), "not before its job file is read");
    b.files(&[("a.yaml", &spec)]).await;
    let calls = b.fake.calls();
    assert!(
        matches!(&calls[..], [Call::Launch { run: r, dir: d, .. }] if *r == run && *d == dir),
        "started once, in the directory named by its placement: {calls:?}"
    );
    assert_eq!(b.phase("a-1"), "running");
}

#[tokio::test(start_paused = true)]
async fn a_start_found_under_way_after_a_restart_is_adopted_not_repeated() {
    let mut b = Bench::new();
    let spec = job("a", "");
    let (run, dir) = forge_placed_run(&mut b, "a", &spec);
    let launch = LaunchInfo {
        shim_pid: 50,
        init_pid: 51,
        pid_start_time: 5,
        run_dir: dir.clone(),
        launched_at: Timestamp::EPOCH,
    };
    b.fake.set_probe(&dir, Probe::Running { launch: launch.clone() });
    let mut b = b.restart();
    b.sup.recover().unwrap();
    b.files(&[("a.yaml", &spec)]).await;
    assert!(b.fake.launched().is_empty());
    assert_eq!(b.phase("a-1"), "running");
    let stored = b.sup.store().run(&run).unwrap().unwrap().record.launch;
    assert_eq!(stored, Some(launch));
    b.fake.exit("a-1", 0);
    b.settle().await;
    assert_eq!(b.phase("a-1"), "succeeded");
}

#[tokio::test(start_paused = true)]
async fn an_oom_kill_while_the_agent_was_down_is_recorded_as_oom() {
    let mut b = Bench::new();
    b.files(&[("f.yaml", &job("f", "resources: {memory: {hard: 64Mi}}\n"))]).await;
    let run = RunId::new("f-1");
    let launch = b.launch("f-1");
    b.fake.set_probe(
        &launch.run_dir,
        Probe::Finished {
            launch: launch.clone(),
            status: ExitStatus::Signal(9),
            at: Timestamp::EPOCH,
        },
    );
    b.fake.set_stats(&run, FinalStats { oom_kills: Some(1), ..FinalStats::default() });
    let mut b = b.restart();
    b.sup.recover().unwrap();
    assert_eq!(b.state("f-1").phase, Phase::Failed { reason: FailReason::Oom });
}

/// What followers of `corral events -f` are pushed is exactly what the
/// store's history reads back: the socket relies on that to show each entry
/// once when a follower's history read and the feed overlap.
#[tokio::test(start_paused = true)]
async fn every_recorded_entry_is_announced_as_the_history_reads_it() {
    use crate::api::{Command, Request, Response};

    let mut b = Bench::new();
    let mut feed = b.sup.feed().subscribe();
    b.files(&[(
        "low.yaml",
        &job("low", "priority: 10\npreemption: suspend\nresources: {cpus: 1}\n"),
    )])
    .await;
    b.files(&[("high.yaml", &job("high", "priority: 90\nresources: {cpus: 1}\n"))]).await;
    b.fake.exit("high-1", 0);
    b.settle().await;
    b.fake.exit("low-1", 3);
    b.settle().await;

    let mut announced = Vec::new();
    while let Ok(entry) = feed.try_recv() {
        announced.push(entry.line);
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    b.sup
        .command(Command { request: Request::Events { since: None, follow: false }, reply })
        .unwrap();
    let Ok(Response::Events { events: mut history, upto }) = answer.await.unwrap() else {
        panic!()
    };
    assert_eq!(upto, Some(u64::try_from(announced.len()).unwrap()));
    let key = |l: &crate::api::protocol::EventLine| {
        (l.at_ms, l.run.clone(), l.kind.clone(), l.detail.clone())
    };
    announced.sort_by_key(key);
    history.sort_by_key(key);
    assert_eq!(announced, history);
    let kinds: Vec<&str> = announced.iter().map(|l| l.kind.as_str()).collect();
    assert!(kinds.contains(&"preempted") && kinds.contains(&"resumed"), "{kinds:?}");
    assert!(announced.iter().any(|l| l.detail.starts_with("(new) -> pending")), "{announced:?}");
}

/// Asks the supervisor what the control socket would, and returns the answer.
pub(super) async fn ask(b: &mut Bench, request: crate::api::Request) -> crate::api::Response {
    let (reply, answer) = tokio::sync::oneshot::channel();
    b.sup.command(crate::api::Command { request, reply }).unwrap();
    b.settle().await;
    response(answer.await.unwrap())
}

/// A restart of the agent with `runs` living on through it (as they do: the
/// shim outlives the agent), then the jobs directory holding `files`.
async fn restart_keeping(b: Bench, runs: &[&str], files: &[(&str, &str)]) -> Bench {
    let fake = Arc::clone(&b.fake);
    let mut live = Vec::new();
    for run in runs {
        let id = RunId::new(*run);
        let launch = b.launch(run);
        fake.set_probe(&launch.run_dir, Probe::Running { launch: launch.clone() });
        live.push((id, None));
    }
    fake.set_live(live);
    let mut b = b.restart();
    b.sup.recover().unwrap();
    b.files(files).await;
    b
}

#[tokio::test(start_paused = true)]
async fn a_freeze_by_hand_outlives_an_agent_restart_and_a_thaw_does_too() {
    use crate::api::{Request, Response};

    let work = job("work", "resources: {cpus: 1}\n");
    let hog = job("hog", "priority: 90\nresources: {cpus: 1}\n");
    let mut b = Bench::new();
    b.files(&[("work.yaml", &work)]).await;
    let freeze = ask(&mut b, Request::Freeze { run: "work-1".into() }).await;
    assert!(matches!(freeze, Response::Done { .. }), "{freeze:?}");
    assert!(matches!(b.state("work-1").phase, Phase::Suspended { frozen: true, .. }));

    // Restarted, the agent keeps it frozen though its CPU is free.
    let mut b = restart_keeping(b, &["work-1"], &[("work.yaml", &work)]).await;
    assert!(matches!(b.state("work-1").phase, Phase::Suspended { .. }), "{:?}", b.state("work-1"));
    assert!(!b.fake.calls().contains(&Call::Thaw(RunId::new("work-1"))), "{:?}", b.fake.calls());
    let Response::Ps { runs } = ask(&mut b, Request::Ps).await else { panic!() };
    assert_eq!(runs[0].state, "suspended (by operator)");

    // Thawed, it resumes; the thaw is in its history.
    let thaw = ask(&mut b, Request::Thaw { run: "work-1".into() }).await;
    assert!(matches!(thaw, Response::Done { .. }), "{thaw:?}");
    assert_eq!(b.phase("work-1"), "running");
    assert_eq!(b.events("work-1"), ["released", "resumed"]);

    // Frozen again, and thawed while another run holds the CPU: an agent
    // restarting before it resumes does not take it for held.
    ask(&mut b, Request::Freeze { run: "work-1".into() }).await;
    b.files(&[("hog.yaml", &hog)]).await;
    assert_eq!(b.phase("hog-1"), "running");
    ask(&mut b, Request::Thaw { run: "work-1".into() }).await;
    assert!(matches!(b.state("work-1").phase, Phase::Suspended { .. }));
    let files = [("work.yaml", work.as_str()), ("hog.yaml", hog.as_str())];
    let mut b = restart_keeping(b, &["work-1", "hog-1"], &files).await;
    let Response::Ps { runs } = ask(&mut b, Request::Ps).await else { panic!() };
    let states: Vec<(&str, &str)> =
        runs.iter().map(|r| (r.run.as_str(), r.state.as_str())).collect();
    assert_eq!(states, [("hog-1", "running"), ("work-1", "suspended")]);
    b.fake.exit("hog-1", 0);
    b.settle().await;
    assert_eq!(b.phase("work-1"), "running");
}

/// Log lines as the agent's JSON log format writes them, captured.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}

/// Every line about a run is in its attempt's span (job, run id, attempt),
/// so a log search for a run finds all of it: the transitions, the lines
/// about its removal or its failures, and those of its next attempt.
#[tokio::test(start_paused = true)]
async fn every_line_about_a_run_is_in_the_span_of_its_attempt() {
    // A process-wide subscriber: a thread-scoped one misses events whose
    // call sites other tests' threads reached first (tracing caches each
    // call site's interest process-wide). The lines of other tests land
    // here too; the job's name is used by no other test.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only test setting one");

    let mut b = Bench::new();
    let spec = job("span-probe", "restart: {on: failure, attempts: 1, backoff: 2s}\n");
    b.files(&[("span-probe.yaml", &spec)]).await;
    let run = "span-probe-1";
    b.fake.exit(run, 1);
    b.settle().await;
    tokio::time::advance(Duration::from_secs(3)).await;
    b.settle().await;
    assert_eq!(b.state(run).attempt, 2);
    b.remove("span-probe.yaml").await;

    let lines = captured.lines();
    let about_run: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["span"]["run"] == run).collect();
    for line in &about_run {
        assert_eq!(line["span"]["name"], "run", "{line}");
        assert_eq!(line["span"]["job"], "span-probe", "{line}");
    }
    let message = |l: &serde_json::Value| l["fields"]["message"].as_str().unwrap_or("").to_owned();
    let attempt_of = |text: &str| -> Vec<String> {
        about_run
            .iter()
            .filter(|l| message(l).contains(text) || l["fields"]["to"] == text)
            .map(|l| l["span"]["attempt"].to_string())
            .collect()
    };
    assert_eq!(attempt_of("run queued"), ["1"]);
    assert_eq!(attempt_of("running"), ["1", "2"], "{about_run:#?}");
    assert_eq!(attempt_of("job removed: stopping its run"), ["2"]);
    // Nothing about the run is logged outside it.
    let outside: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["span"]["run"] != run && l.to_string().contains(run)).collect();
    assert!(outside.is_empty(), "{outside:#?}");
}

/// The sample lines of `name` for `run` in a Prometheus text scrape.
fn samples<'a>(scrape: &'a str, name: &str, run: &str) -> Vec<&'a str> {
    let run = format!("run=\"{run}\"");
    scrape
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
        .filter(|l| l.contains(&run))
        .collect()
}

fn value(scrape: &str, name: &str, run: &str) -> Option<f64> {
    match samples(scrape, name, run)[..] {
        [line] => line.rsplit(' ').next()?.parse().ok(),
        [] => None,
        ref many => panic!("{name} of {run} is in the scrape {} times: {many:?}", many.len()),
    }
}

#[tokio::test(start_paused = true)]
async fn runs_that_ended_within_the_retention_are_in_the_scrape_again_after_a_restart() {
    use crate::metrics::Format;
    use std::time::SystemTime;

    let mut b = Bench::new();
    b.files(&[
        ("old.yaml", &job("old", "")),
        ("done.yaml", &job("done", "")),
        ("oomy.yaml", &job("oomy", "resources: {memory: {hard: 64Mi}}\n")),
    ])
    .await;
    // old-1 ends, and 20 minutes later done-1 ends, both while the agent runs.
    b.fake.exit("old-1", 0);
    b.settle().await;
    tokio::time::advance(Duration::from_secs(20 * 60)).await;
    let done_stats = FinalStats {
        peak_memory_bytes: Some(8 << 20),
        oom_kills: Some(0),
        cpu_seconds: Some(1.5),
        ..FinalStats::default()
    };
    b.fake.report(
        &RunId::new("done-1"),
        Observed::Exited { status: ExitStatus::Code(0), at: START, stats: done_stats },
    );
    b.settle().await;
    assert_eq!((b.phase("old-1"), b.phase("done-1")), ("succeeded", "succeeded"));
    // oomy-1 is OOM-killed while the agent is down: recovery finds the
    // shim's status and reads the counters from the cgroup left behind.
    let oomy = RunId::new("oomy-1");
    let launch = b.launch("oomy-1");
    b.fake.set_probe(
        &launch.run_dir,
        Probe::Finished { launch: launch.clone(), status: ExitStatus::Signal(9), at: START },
    );
    b.fake.set_stats(
        &oomy,
        FinalStats {
            peak_memory_bytes: Some(64 << 20),
            oom_kills: Some(1),
            cpu_seconds: Some(0.25),
            ..FinalStats::default()
        },
    );

    let mut b = b.restart_after(Duration::from_secs(60));
    b.sup.recover().unwrap();
    assert_eq!(b.state("oomy-1").phase, Phase::Failed { reason: FailReason::Oom });
    let now = b.sup.clock.now();
    let wall = SystemTime::from(now);
    let metrics = b.telemetry(|snapshot| {
        Metrics::with_clock(&MetricsConfig::default(), snapshot, Arc::new(move || wall))
    });
    // old-1 ended 21 minutes ago, past the 15-minute retention.
    assert_eq!(b.sup.restore_finished().unwrap(), 2);
    b.sup.publish();

    let check = |scrape: &str| {
        assert_eq!(value(scrape, "corral_run_memory_oom_kills_total", "oomy-1"), Some(1.0));
        assert_eq!(value(scrape, "corral_run_exit_code", "oomy-1"), Some(137.0));
        assert_eq!(value(scrape, "corral_run_cpu_usage_seconds_total", "oomy-1"), Some(0.25));
        assert_eq!(
            value(scrape, "corral_run_memory_max_usage_bytes", "oomy-1"),
            Some((64 << 20) as f64)
        );
        // Counted from when recovery learned it ended.
        assert_eq!(
            value(scrape, "corral_run_end_timestamp_seconds", "oomy-1"),
            Some(now.as_millis() as f64 / 1000.0)
        );
        assert_eq!(samples(scrape, "corral_run_state", "oomy-1").len(), 1, "{scrape}");
        assert!(samples(scrape, "corral_run_state", "oomy-1")[0].contains("state=\"failed\""));
        assert_eq!(value(scrape, "corral_run_cpu_usage_seconds_total", "done-1"), Some(1.5));
        assert_eq!(value(scrape, "corral_run_exit_code", "done-1"), Some(0.0));
        assert!(samples(scrape, "corral_run_state", "old-1").is_empty(), "{scrape}");
    };
    check(&metrics.render(Format::Prometheus).unwrap());
    // Putting them back again changes nothing: each run is there once.
    assert_eq!(b.sup.restore_finished().unwrap(), 2);
    check(&metrics.render(Format::Prometheus).unwrap());
}

fn reloaded(answer: crate::api::Response) -> crate::api::protocol::ReloadReport {
    match answer {
        crate::api::Response::Reloaded(report) => report,
        other => panic!("not a reload report: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_reload_is_applied_as_a_batch_and_answered_with_the_files_as_they_stand() {
    let mut b = Bench::new();
    let jobs = Path::new("/jobs");
    b.files(&[("old.yaml", &job("old", "")), ("kept.yaml", &job("kept", ""))]).await;

    let read = vec![
        FileChange::Removed { path: "/jobs/old.yaml".into() },
        upsert("kept.yaml", "name: kept\ncommand: 7\n"),
        upsert("new.yaml", &job("new", "")),
    ];
    let report = reloaded(response(b.sup.apply_reload(jobs, Ok(read)).unwrap()));
    b.settle().await;
    assert_eq!(report.jobs_dir, "/jobs");
    assert_eq!(
        (report.added, report.changed, report.removed),
        (vec!["new".to_owned()], vec![], vec!["old".to_owned()])
    );
    assert_eq!((report.files_applied, report.files_not_applied), (1, 1));
    let [file] = report.not_applied.as_slice() else { panic!("{:?}", report.not_applied) };
    assert_eq!(file.file, "/jobs/kept.yaml");
    assert!(file.problems[0].contains("/jobs/kept.yaml:2"), "{:?}", file.problems);
    assert_eq!(file.in_force, ["kept"]);
    assert!(b.fake.launched().contains(&"new-1".to_owned()));

    // Nothing read anew: nothing changed, and the file still stands as it is.
    let again = reloaded(response(b.sup.apply_reload(jobs, Ok(Vec::new())).unwrap()));
    assert!(again.added.is_empty() && again.changed.is_empty() && again.removed.is_empty());
    assert_eq!(again.not_applied.len(), 1);
    assert!(!again.all_applied());
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_cannot_read_the_directory_changes_nothing_and_says_why() {
    let mut b = Bench::new();
    b.files(&[("a.yaml", &job("a", ""))]).await;
    let gone = crate::watch::WatchError::List {
        path: "/jobs".into(),
        source: std::io::Error::from_raw_os_error(libc::EIO),
    };
    let answer = response(b.sup.apply_reload(Path::new("/jobs"), Err(gone)).unwrap());
    let crate::api::Response::Error { message } = answer else { panic!("{answer:?}") };
    assert!(message.starts_with("failed to list job directory /jobs: "), "{message}");
    assert!(message.ends_with("; the jobs in force stay as they are"), "{message}");
    assert!(message.contains("Input/output error"), "the cause is given: {message}");
    assert!(b.sup.jobs.get(&crate::vocab::JobName::parse("a").unwrap()).is_some());
}

/// The main loop hands a reload to the watcher task (played here by a task
/// that answers with a fixed read) and answers once the read is applied;
/// with the watcher task gone, a reload is answered at once.
#[tokio::test(start_paused = true)]
async fn the_main_loop_hands_reloads_to_the_watcher_task_and_answers_when_applied() {
    use tokio::sync::oneshot;

    use super::{drive, DirUpdate, JobFiles, OnExit};
    use crate::api::{Command, Request, Response};

    let Bench { sup, rx, fake, dir: _dir } = Bench::new();
    let (updates_tx, updates) = mpsc::channel(4);
    let (reloads, mut asked) = mpsc::channel::<oneshot::Sender<crate::api::Answer>>(4);
    let watcher = tokio::spawn(async move {
        // One reload, then the task ends, as a watcher that failed would.
        let reply = asked.recv().await.unwrap();
        let read = Ok(vec![upsert("a.yaml", &job("a", ""))]);
        updates_tx.send(DirUpdate::Reloaded { read, reply }).await.unwrap();
    });
    let files = JobFiles { updates, reloads, dir: PathBuf::from("/jobs") };
    let (commands_tx, commands) = mpsc::channel(4);
    let (stop, stopped) = oneshot::channel::<()>();
    let agent = tokio::spawn(drive(
        sup,
        files,
        rx,
        commands,
        async {
            let _ = stopped.await;
        },
        OnExit::LeaveRunning,
    ));

    let ask = |commands_tx: mpsc::Sender<Command>| async move {
        let (reply, answer) = oneshot::channel();
        commands_tx.send(Command { request: Request::Reload, reply }).await.unwrap();
        response(answer.await.unwrap())
    };
    let report = reloaded(ask(commands_tx.clone()).await);
    assert_eq!(report.added, ["a"]);
    assert!(report.all_applied());
    watcher.await.unwrap();

    let Response::Error { message } = ask(commands_tx.clone()).await else {
        panic!("a reload without a watcher task must be refused")
    };
    assert!(message.contains("no longer watched"), "{message}");

    stop.send(()).unwrap();
    let sup = agent.await.unwrap().unwrap();
    assert!(sup.jobs.get(&crate::vocab::JobName::parse("a").unwrap()).is_some());
    assert_eq!(fake.launched(), ["a-1"]);
}

/// Runs that ended while no agent ran are counted when recovery finds them,
/// as any other end is; runs an earlier agent started are not timed again
/// (their "launch latency" would be the time the agent was down).
#[tokio::test(start_paused = true)]
async fn recovery_counts_the_ends_it_finds_and_times_no_launch() {
    use crate::metrics::agent::{EndState, OomAction, OomReached};
    use crate::metrics::Format;

    let mut b = Bench::new();
    b.files(&[("f.yaml", &job("f", "resources: {memory: {hard: 64Mi}}\n"))]).await;
    let oomy = RunId::new("f-1");
    let launch = b.launch("f-1");
    let killed = ExitStatus::Signal(9);
    let run_dir = launch.run_dir.clone();
    b.fake.set_probe(&run_dir, Probe::Finished { launch, status: killed, at: START });
    b.fake.set_stats(&oomy, FinalStats { oom_kills: Some(1), ..FinalStats::default() });
    let spec = job("a", "");
    let (_, dir) = forge_placed_run(&mut b, "a", &spec);
    let started = LaunchInfo {
        shim_pid: 50,
        init_pid: 51,
        pid_start_time: 5,
        run_dir: dir.clone(),
        launched_at: START,
    };
    b.fake.set_probe(&dir, Probe::Running { launch: started });

    let mut b = b.restart_after(Duration::from_secs(3600));
    let metrics = b.metrics();
    b.sup.recover().unwrap();
    b.files(&[("f.yaml", &job("f", "resources: {memory: {hard: 64Mi}}\n")), ("a.yaml", &spec)])
        .await;

    assert_eq!(b.phase("f-1"), "failed");
    assert_eq!(b.phase("a-1"), "running");
    assert_eq!(metrics.agent().oom_events.get(OomAction::Fail, OomReached::Killed), 1);
    assert_eq!(metrics.agent().runs_ended.get(EndState::Failed), 1);
    let scrape = metrics.render(Format::Prometheus).unwrap();
    assert!(scrape.contains("\ncorral_launch_latency_seconds_count 0\n"), "{scrape}");
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_memory_notifications_fail_at_launch_is_stopped_too() {
    let mut b = Bench::new();
    b.fake.fail_watches(|| CgroupError::Event {
        path: "/sys/fs/cgroup/unified/corral/w-1/memory.events".into(),
        source: std::io::Error::from_raw_os_error(libc::EMFILE),
    });
    b.files(&[("w.yaml", &job("w", "resources: {memory: {hard: 64Mi}}\n"))]).await;
    assert!(b
        .fake
        .calls()
        .contains(&Call::Signal(RunId::new("w-1"), nix::sys::signal::Signal::SIGTERM)));
    let Phase::Killed { reason: StopReason::Unwatched { detail } } = b.state("w-1").phase else {
        panic!("{:?}", b.state("w-1").phase)
    };
    assert!(detail.contains("memory.events"), "{detail}");
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_memory_notifications_fail_is_stopped_and_says_why() {
    let mut b = Bench::new();
    b.files(&[("w.yaml", &job("w", "resources: {memory: {hard: 64Mi}}\n"))]).await;
    assert_eq!(b.phase("w-1"), "running");
    b.fake.clear();
    let cause = CgroupError::Event {
        path: "/sys/fs/cgroup/unified/corral/w-1/memory.events".into(),
        source: std::io::Error::from_raw_os_error(libc::EMFILE),
    };
    let error = cause.to_string();
    let failed = RuntimeError::new(Operation::Watch, &RunId::new("w-1"), cause);
    b.fake.report(&RunId::new("w-1"), Observed::Failed(failed));
    b.settle().await;
    // Stopped (the fake dies on SIGTERM), never left running unhandled.
    assert_eq!(
        b.fake.calls()[0],
        Call::Signal(RunId::new("w-1"), nix::sys::signal::Signal::SIGTERM)
    );
    assert_eq!(
        b.state("w-1").phase,
        Phase::Killed { reason: StopReason::Unwatched { detail: error } }
    );
}
