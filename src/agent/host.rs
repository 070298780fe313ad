//! The machine as the agent's [`Runtime`]: job cgroups from [`crate::cgroup`],
//! containers from [`crate::container`], put together by [`crate::launch`].
//!
//! # Watching a run
//!
//! - **Its end**: a pidfd on the run's shim (the process that records the
//!   exit status), registered with the tokio reactor. When it becomes
//!   readable the shim has exited; it is reaped if it is this process's child
//!   and the status is read from the run directory. The same path serves
//!   runs this agent launched and runs it adopted after a restart, which it
//!   cannot `waitpid()`. Before the end is reported, whatever the job left
//!   in its cgroup is killed and the cgroup's accounting is read, once
//!   (peak memory, OOM kills, CPU time): that reading is what the agent
//!   records. The cgroup is removed only afterwards.
//! - **Memory**: the cgroup's OOM notifications (v1 OOM eventfd, v2
//!   `memory.events` watched on the agent's one shared inotify instance),
//!   mapped to "reached its limit" and "OOM kill". A run whose
//!   notifications cannot be set up is not left running without them: the
//!   failure goes to the state machine, which stops the run and says why.
//!
//! # Freezing at the memory limit
//!
//! A job paused at its v1 limit (`oom_kill_disable`, `under_oom 1`) sleeps in
//! the kernel in a way the v2 freezer does not interrupt: `frozen 1` comes
//! only once the limit is raised. Such a job cannot run anyway, so a freeze
//! counts as done when the cgroup is frozen *or* paused at its limit; the
//! freeze request stays in force and takes hold as soon as the job moves.
//!
//! On v2 the pause at the limit is the freeze itself, asked for when
//! `memory.high` (at the hard limit) is crossed. A job that allocates faster
//! reaches `memory.max` and is killed meanwhile; its cgroup then reads
//! `frozen 1` as soon as it is empty. So a freeze confirmed on v2 is checked
//! against the cgroup's `oom_kill` count, and a kill found there is reported
//! as the kill it is, not as a job paused at its limit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::{debug, warn, Instrument as _};

use crate::cgroup::{CgroupEvent, CgroupName, JobCgroup, Notifier};
use crate::container::rundir::RunDir;
use crate::container::shim::pidfd_open;
use crate::container::{self, ContainerError, JobExit, ProcessIdentity};
use crate::launch::{self, Host, LaunchError, RunInputs, RunPlan};
use crate::metrics::StatsHandle;
use crate::scheduler::ExitStatus;
use crate::spec::JobSpec;
use crate::store::LaunchInfo;
use crate::topology::CpuSet;
use crate::vocab::parse_run_id;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::runtime::{
    Cause, FinalStats, LaunchPlan, LiveSettings, Observation, Observed, Operation, Probe, Runtime,
    RuntimeError, Sink,
};

/// How long the kernel gets to confirm a freeze or thaw.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a pending freeze checks whether the job is paused at its limit.
const PAUSE_CHECK: Duration = Duration::from_millis(50);
/// How long a shim found still setting up a job after an agent restart gets
/// to finish (setup takes milliseconds).
const SETUP_PATIENCE: Duration = Duration::from_secs(5);
/// How long killing every process of a run may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HostRuntime {
    host: Arc<Host>,
    /// The one inotify instance every run's memory notifications share.
    notifier: Notifier,
}

impl HostRuntime {
    pub fn new(host: Host) -> HostRuntime {
        HostRuntime { host: Arc::new(host), notifier: Notifier::new() }
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The run's cgroup; `op` is what it is wanted for, which a failure
    /// names.
    fn cgroup(&self, run: &RunId, op: Operation) -> Result<JobCgroup, RuntimeError> {
        let name = CgroupName::new(run.as_str()).map_err(|e| RuntimeError::new(op, run, e))?;
        Ok(self.host.cgroups().job(&name))
    }
}

/// The run's job name, for the launch layer's messages.
fn job_of(run: &RunId) -> crate::vocab::JobName {
    parse_run_id(run)
        .map(|(job, _)| job)
        .unwrap_or_else(|| crate::vocab::JobName::parse("unknown").expect("valid name"))
}

fn exit_status(exit: JobExit) -> ExitStatus {
    match exit {
        JobExit::Exited { code } => ExitStatus::Code(code),
        JobExit::Signaled { signal, .. } => ExitStatus::Signal(signal),
    }
}

/// When the file at `path` was last written.
fn modified(path: &Path) -> Result<Timestamp, ContainerError> {
    std::fs::metadata(path).and_then(|m| m.modified()).map(Timestamp::from).map_err(|source| {
        ContainerError::Io { what: "read the modification time of", path: path.to_owned(), source }
    })
}

fn read_identity(path: &Path) -> Option<ProcessIdentity> {
    std::fs::read_to_string(path).ok()?.parse().ok()
}

impl Runtime for HostRuntime {
    fn plan(&self, spec: &JobSpec, run: &RunInputs<'_>) -> Result<RunPlan, LaunchError> {
        self.host.plan(spec, run)
    }

    async fn launch(&self, plan: LaunchPlan) -> Result<LaunchInfo, RuntimeError> {
        let run = plan.run().clone();
        let run_dir = plan.run_dir().to_owned();
        let err = |e: Cause| RuntimeError::new(Operation::Launch, &run, e);
        let host = Arc::clone(&self.host);
        let started = tokio::task::spawn_blocking(move || {
            // An administrator may have killed everything under the parent
            // and removed it: the runs that were there have ended on record,
            // and new ones need the parent back.
            let made = host.cgroups().restore_parent().map_err(Cause::from)?;
            if !made.is_empty() {
                let dirs: Vec<_> = made.iter().map(|d| d.display().to_string()).collect();
                warn!(
                    dirs = dirs.join(" "),
                    "the cgroup parent was removed behind the agent's back; made the cgroup \
                     parent again"
                );
            }
            launch::start(&host, &plan.plan).map_err(Cause::from)
        })
        .await
        .map_err(|e| err(e.into()))?
        .map_err(err)?;
        let (shim, init) = (started.shim(), started.init());
        // The shim stays this process's child; the watcher reaps it.
        drop(started);
        Ok(LaunchInfo {
            shim_pid: shim.pid as u32,
            init_pid: init.pid as u32,
            pid_start_time: init.start_time,
            run_dir,
            launched_at: Timestamp::now(),
        })
    }

    fn watch(
        &self,
        run: &RunId,
        launch: &LaunchInfo,
        epoch: u64,
        sink: Sink,
    ) -> Result<(), RuntimeError> {
        let cgroup = self.cgroup(run, Operation::Watch)?;
        let report = {
            let (run, sink) = (run.clone(), sink.clone());
            move |what| {
                let _ = sink.send(Observation { run: run.clone(), epoch, what });
            }
        };
        // Memory events, for as long as the cgroup exists. Opened before
        // the end is watched, but a failure is returned only after that,
        // so the run's end is recorded whatever happens here.
        let events = cgroup.oom_events(&self.notifier);
        // The end.
        let run_dir = launch.run_dir.clone();
        let ending = cgroup.clone();
        let run_id = run.clone();
        {
            let report = report.clone();
            tokio::spawn(
                async move {
                    let what = match wait_for_end(&run_dir).await {
                        // The agent removes a run's cgroup only after its
                        // end is reported: gone before means someone else
                        // removed it, after killing what ran in it.
                        Ok((exit, at)) if !ending.exists() => {
                            Observed::CgroupRemoved { status: exit_status(exit), at }
                        }
                        Ok((exit, at)) => {
                            // Leftovers (background processes of a job without
                            // a pid namespace) are killed first, so that the
                            // one reading is final.
                            let job = job_of(&run_id);
                            // Boxed: the task should not be the size of
                            // this future while it waits for the end.
                            let stats = match Box::pin(launch::empty_and_read(
                                &job,
                                &run_id,
                                &ending,
                                KILL_TIMEOUT,
                            ))
                            .await
                            {
                                Ok(stats) => stats,
                                Err((stats, e)) => {
                                    warn!("final statistics: {e}");
                                    stats
                                }
                            };
                            Observed::Exited { status: exit_status(exit), at, stats }
                        }
                        Err(detail) => Observed::Lost(detail),
                    };
                    debug!("{what:?}");
                    report(what);
                }
                .in_current_span(),
            );
        }
        let mut events = match events {
            Ok(events) => events,
            // No cgroup left to watch (removed behind the agent's back while
            // it was down, say): the end, on its way, says what happened.
            Err(e) if e.is_gone() => {
                debug!("no memory notifications to watch: {e}");
                return Ok(());
            }
            Err(e) => return Err(RuntimeError::new(Operation::Watch, run, e)),
        };
        // In the run's span, as the operation that starts them is.
        tokio::spawn(
            async move {
                while let Some(event) = events.next().await {
                    match event {
                        Ok(
                            CgroupEvent::Oom { .. }
                            | CgroupEvent::PausedAtLimit
                            | CgroupEvent::LimitReached,
                        ) => report(Observed::Oom),
                        Ok(CgroupEvent::OomKill { .. }) => report(Observed::OomKilled),
                        Ok(_) => {}
                        Err(e) => {
                            debug!("event stream ended: {e}");
                            break;
                        }
                    }
                }
            }
            .in_current_span(),
        );
        Ok(())
    }

    async fn freeze(&self, run: &RunId) -> Result<(), RuntimeError> {
        let cgroup = self.cgroup(run, Operation::Freeze)?;
        let freeze = cgroup.freeze(FREEZE_TIMEOUT);
        tokio::pin!(freeze);
        loop {
            tokio::select! {
                result = &mut freeze => {
                    result.map_err(|e| RuntimeError::new(Operation::Freeze, run, e))?;
                    // Unreadable means not known to be killed: the end, on
                    // its way if it was, carries the kill count.
                    return match cgroup.v2_oom_kills() {
                        Ok(Some(kills)) if kills > 0 => Err(RuntimeError::new(
                            Operation::Freeze,
                            run,
                            Cause::OomKilledFirst { kills },
                        )),
                        _ => Ok(()),
                    };
                }
                () = tokio::time::sleep(PAUSE_CHECK) => {
                    // Unreadable means not known to be paused: keep waiting
                    // for the freeze, which reports its own failure.
                    if cgroup.paused_at_limit().unwrap_or(false) {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn thaw(&self, run: &RunId) -> Result<(), RuntimeError> {
        self.cgroup(run, Operation::Thaw)?
            .thaw(FREEZE_TIMEOUT)
            .await
            .map_err(|e| RuntimeError::new(Operation::Thaw, run, e))
    }

    fn signal(&self, run: &RunId, launch: &LaunchInfo, signal: Signal) -> Result<(), RuntimeError> {
        let init =
            ProcessIdentity { pid: launch.init_pid as i32, start_time: launch.pid_start_time };
        container::signal_process(init, signal)
            .map_err(|e| RuntimeError::new(Operation::Signal, run, e))
    }

    async fn kill_all(&self, run: &RunId) -> Result<(), RuntimeError> {
        let cgroup = self.cgroup(run, Operation::Kill)?;
        if !cgroup.exists() {
            return Ok(());
        }
        cgroup.kill(KILL_TIMEOUT).await.map_err(|e| RuntimeError::new(Operation::Kill, run, e))
    }

    fn update(&self, run: &RunId, settings: &LiveSettings) -> Result<(), RuntimeError> {
        let cgroup = self.cgroup(run, Operation::Update)?;
        if !cgroup.exists() {
            return Ok(());
        }
        // The same mapping as the launch plan's, with the limit in force:
        // a grown limit raises `high` with it.
        let devices = launch::DeviceNumbers::resolve(&settings.spec)
            .map_err(|e| RuntimeError::new(Operation::Update, run, e))?;
        let resources = launch::resources(
            &settings.spec,
            &settings.assignment,
            &settings.cpus,
            self.host.cgroups().capabilities(),
            settings.memory_limit,
            &devices,
        );
        cgroup
            .update(&resources)
            .map(drop)
            .map_err(|e| RuntimeError::new(Operation::Update, run, e))
    }

    async fn remove(&self, run: &RunId) -> Result<(), RuntimeError> {
        let cgroup = self.cgroup(run, Operation::Remove)?;
        if !cgroup.exists() {
            return Ok(());
        }
        // The final statistics were read when the end was reported.
        launch::remove(&job_of(run), run, &cgroup, KILL_TIMEOUT)
            .await
            .map_err(|e| RuntimeError::new(Operation::Remove, run, e))
    }

    fn probe(&self, run: &RunId, run_dir: &Path) -> Result<Probe, RuntimeError> {
        let files = RunDir::new(run_dir);
        if !files.config().exists() {
            return Ok(Probe::NotStarted);
        }
        let err = |e: ContainerError| RuntimeError::new(Operation::Probe, run, e);
        // A shim found without init.pid is still setting the job up (its
        // launcher died mid-start); it carries on alone and either starts
        // the job or records why not. Give it time to get there.
        let mut found = container::probe(run_dir).map_err(err)?;
        // No shim on record: its launcher may have died just after starting
        // it, before it wrote shim.pid. Give the directory up so that such a
        // shim does not start the job; one that got there first is found.
        if found == container::ShimState::Lost
            && !files.shim_pid().exists()
            && container::abandon(run_dir).map_err(err)?
        {
            found = container::probe(run_dir).map_err(err)?;
        }
        let patience = std::time::Instant::now() + SETUP_PATIENCE;
        while matches!(found, container::ShimState::Running { init: None, .. })
            && std::time::Instant::now() < patience
        {
            std::thread::sleep(Duration::from_millis(10));
            found = container::probe(run_dir).map_err(err)?;
        }
        let shim = read_identity(&files.shim_pid());
        // When the job started, as the run directory tells: the shim writes
        // init.pid once the job runs; the config, written just before the
        // start, stands in for it where it is missing. Never the time of the
        // probe, which would make an adopted run look just started.
        let launched_at = match modified(&files.init_pid()) {
            Ok(at) => at,
            Err(_) => modified(&files.config()).map_err(err)?,
        };
        let launch_info = |init: ProcessIdentity| LaunchInfo {
            shim_pid: shim.map_or(0, |s| s.pid as u32),
            init_pid: init.pid as u32,
            pid_start_time: init.start_time,
            run_dir: run_dir.to_owned(),
            launched_at,
        };
        Ok(match found {
            container::ShimState::Finished(status) => Probe::Finished {
                launch: launch_info(status.init),
                status: exit_status(status.exit),
                at: Timestamp::from(status.finished_at),
            },
            container::ShimState::Running { init: Some(init), .. } => {
                Probe::Running { launch: launch_info(init) }
            }
            container::ShimState::Running { shim, init: None } => {
                // Stuck in setup: the job has not run. The shim's death takes
                // the container's init with it.
                let _ = container::signal_process(shim, Signal::SIGKILL);
                Probe::NeverRan { detail: "its start did not complete".into() }
            }
            // init.pid is written once the job has started.
            container::ShimState::Lost if !files.init_pid().exists() => {
                Probe::NeverRan { detail: "its start was interrupted before the job ran".into() }
            }
            container::ShimState::Lost => {
                Probe::Lost { detail: "no exit status recorded, and its shim is gone".into() }
            }
        })
    }

    fn stats(&self, run: &RunId) -> Option<FinalStats> {
        let cgroup = self.cgroup(run, Operation::Stats).ok()?;
        if !cgroup.exists() {
            return None;
        }
        cgroup.stats().ok().map(|stats| launch::final_stats(&stats))
    }

    fn stats_handle(&self, run: &RunId) -> Option<StatsHandle> {
        let cgroup = self.cgroup(run, Operation::Stats).ok()?;
        match cgroup.stats_reader() {
            Ok(reader) => Some(StatsHandle::new(reader)),
            Err(e) => {
                // Asked again after the next turn of the main loop.
                debug!(run = %run, "statistics files not open: {e}");
                None
            }
        }
    }

    fn live_runs(&self) -> Result<Vec<(RunId, Option<CpuSet>)>, RuntimeError> {
        let names = self
            .host
            .cgroups()
            .jobs()
            .map_err(|e| RuntimeError::new(Operation::List, &RunId::new("*"), e))?;
        Ok(names
            .into_iter()
            .map(|name| {
                // Recovery falls back on the placement on record.
                let cpus = self.host.cgroups().job(&name).cpus().ok().flatten();
                (RunId::new(name.as_str()), cpus)
            })
            .collect())
    }
}

/// Waits for the run in `run_dir` to end and returns how, from its status
/// file; `Err` when it ended without one.
async fn wait_for_end(run_dir: &Path) -> Result<(JobExit, Timestamp), String> {
    for round in 0u32.. {
        // The probe right after the shim's pidfd became readable is
        // immediate: a shim records the status before it exits, so it is
        // there now (waiting here would add its whole length to every
        // run's end). Only when that probe still finds the shim "alive"
        // does the loop back off: an exited shim that is not this process's
        // child stays a zombie until its parent reaps it.
        if round > 1 {
            tokio::time::sleep(Duration::from_millis(10 * u64::from((round - 1).min(10)))).await;
        }
        let shim = match container::probe(run_dir) {
            Ok(container::ShimState::Finished(status)) => {
                return Ok((status.exit, Timestamp::from(status.finished_at)))
            }
            Ok(container::ShimState::Lost) => {
                return Err("no exit status recorded, and its shim is gone".into())
            }
            Ok(container::ShimState::Running { shim, .. }) => shim,
            Err(e) => return Err(e.to_string()),
        };
        let pidfd = match pidfd_open(shim.pid) {
            Ok(fd) => fd,
            Err(_) => continue, // exited just now: probe again
        };
        // The pidfd may have caught a process that took over the pid.
        if !shim.is_alive(Path::new("/proc")) {
            continue;
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open
        // (and the same descriptor) for the whole registration.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
            .map_err(|e| format!("cannot wait for its shim: {e}"))?;
        let _ = pidfd.readable().await;
        // Reap it if it is this process's child (it is not after an agent
        // restart: then its new parent does).
        let _ = waitpid(Pid::from_raw(shim.pid), Some(WaitPidFlag::WNOHANG));
    }
    unreachable!("the loop above only ends by returning")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cgroup::fake::{FakeFs, FakeKind};
    use crate::launch::HostRoots;
    use crate::placement::{Assignment, CpuGrant};
    use crate::vocab::Bytes;

    /// A grown limit reaches the cgroup with `high` raised by as much, as
    /// at launch: the one mapping serves both.
    #[tokio::test]
    async fn an_update_with_a_grown_limit_raises_memory_high_too() {
        let fs = FakeFs::new(FakeKind::V2);
        fs.add_cgroup("corral");
        // The fake kernel's files of the run's cgroup, made in advance.
        fs.add_cgroup("corral/etl-1");
        let fixture = crate::topology::testing::fixture_root("vm-2cpu");
        let roots = HostRoots {
            sysfs: fixture.join("sys"),
            procfs: fixture.join("proc"),
            cgroups: fs.host_paths(),
        };
        let host = Host::discover_at(&crate::config::AgentConfig::default(), &roots).unwrap();
        let text =
            "name: etl\ncommand: [/bin/true]\nresources: {memory: {high: 48Mi, hard: 64Mi}}\n";
        let spec = crate::spec::compile_str(Path::new("etl.yaml"), text).unwrap().remove(0).spec;
        let run = RunId::new("etl-1");
        let assignment = Assignment {
            owner: run.clone(),
            cpus: CpuGrant::Shared,
            mems: "0".parse().unwrap(),
            memory: Default::default(),
        };
        let cpus: CpuSet = "0-1".parse().unwrap();
        let caps = *host.cgroups().capabilities();
        let at_launch = launch::resources(
            &spec,
            &assignment,
            &cpus,
            &caps,
            spec.resources.memory.hard,
            &launch::NO_DEVICES,
        );
        let name = CgroupName::new(run.as_str()).unwrap();
        host.cgroups().create(&name, &at_launch).unwrap();
        let runtime = HostRuntime::new(host);
        let settings = LiveSettings {
            spec: Arc::new(spec),
            assignment,
            cpus,
            memory_limit: Some(Bytes::from_mib(112)),
        };
        runtime.update(&run, &settings).unwrap();
        let dir = fs.unified_root().join("corral/etl-1");
        assert_eq!(fs.read(&dir.join("memory.max")).trim(), (112u64 << 20).to_string());
        assert_eq!(fs.read(&dir.join("memory.high")).trim(), (96u64 << 20).to_string());
    }
}
