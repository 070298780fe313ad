//! The shell around one run: create the cgroup, launch, wait, collect.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Serialize;

use super::error::LaunchError;
use super::host::Host;
use super::plan::RunPlan;
use crate::cgroup::{CgroupError, JobCgroup, Resources};
use crate::container::{ContainerConfig, Launched, Launcher, ProcessIdentity, RunStatus};
use crate::vocab::JobName;
use crate::vocab::RunId;

/// A run whose job is executing (or has just ended, unobserved).
#[derive(Debug)]
pub struct StartedRun {
    job: JobName,
    run: RunId,
    cgroup: JobCgroup,
    launched: Launched,
}

/// A run whose job has ended: the status the shim recorded, or why there is
/// none. Its cgroup still exists; [`finish`](Self::finish) removes it.
#[derive(Debug)]
pub struct EndedRun {
    pub job: JobName,
    pub run: RunId,
    pub cgroup: JobCgroup,
    pub status: Result<RunStatus, LaunchError>,
}

/// What a run's cgroup counted, read once: after the job ended and
/// whatever it left in the cgroup was killed, before the cgroup is removed.
/// The agent records it with the run's end; `corral run` prints it.
///
/// `None` where the host's layout has no such counter (see the statistics
/// table in [`crate::cgroup::stats`]): v1 counts OOM kills but not OOM
/// events, which only its event stream reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FinalStats {
    /// All CPU time, in seconds (v1 `cpuacct.usage`, v2 `usage_usec`).
    pub cpu_seconds: Option<f64>,
    pub cpu_user_seconds: Option<f64>,
    pub cpu_system_seconds: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
    pub oom_events: Option<u64>,
    pub oom_kills: Option<u64>,
}

/// A run that is over, its cgroup gone (unless `cleanup` says otherwise).
#[derive(Debug)]
pub struct FinishedRun {
    pub job: JobName,
    pub run: RunId,
    pub status: Result<RunStatus, LaunchError>,
    pub stats: FinalStats,
    /// What went wrong emptying, reading or removing the cgroup, if anything.
    pub cleanup: Option<LaunchError>,
}

/// A run whose cgroup exists and is configured, with nothing in it yet:
/// the moment to subscribe to the cgroup's events, so that none is missed.
#[derive(Debug)]
pub struct PreparedRun {
    job: JobName,
    run: RunId,
    cgroup: JobCgroup,
    launcher: Launcher,
}

/// Creates the run's cgroup and starts its container there. Nothing is
/// left behind on failure: a cgroup created here is removed again if the
/// launch fails.
pub fn start(host: &Host, plan: &RunPlan) -> Result<StartedRun, LaunchError> {
    prepare(host, plan)?.launch(&plan.container)
}

/// Creates the run's cgroup (validated as a whole before the first write;
/// see [`crate::cgroup::CgroupManager::create`]).
pub fn prepare(host: &Host, plan: &RunPlan) -> Result<PreparedRun, LaunchError> {
    let cgroup = host.cgroups().create(&plan.cgroup, &plan.resources).map_err(|source| {
        LaunchError::CreateCgroup {
            job: plan.job.to_string(),
            run: plan.run.to_string(),
            source: source.into(),
        }
    })?;
    Ok(PreparedRun {
        job: plan.job.clone(),
        run: plan.run.clone(),
        cgroup,
        launcher: host.launcher().clone(),
    })
}

impl PreparedRun {
    pub fn cgroup(&self) -> &JobCgroup {
        &self.cgroup
    }

    /// Starts the container (normally the plan's; a caller may adjust it,
    /// e.g. `tee_output` for a foreground run). On failure the cgroup is
    /// removed again.
    pub fn launch(self, container: &ContainerConfig) -> Result<StartedRun, LaunchError> {
        let PreparedRun { job, run, cgroup, launcher } = self;
        match launcher.launch(container) {
            Ok(launched) => Ok(StartedRun { job, run, cgroup, launched }),
            Err(source) => {
                // The job never ran (the shim reports failures before exec),
                // so the cgroup holds at most a dying init.
                let _ = remove_when_empty(&cgroup);
                Err(LaunchError::Start {
                    job: job.to_string(),
                    run: run.to_string(),
                    source: source.into(),
                })
            }
        }
    }

    /// Gives the run up before launching: removes its cgroup.
    pub fn abandon(self) -> Result<(), LaunchError> {
        remove_when_empty(&self.cgroup).map_err(|source| LaunchError::RemoveCgroup {
            job: self.job.to_string(),
            run: self.run.to_string(),
            source: source.into(),
        })
    }
}

impl StartedRun {
    pub fn job(&self) -> &JobName {
        &self.job
    }

    pub fn run(&self) -> &RunId {
        &self.run
    }

    pub fn cgroup(&self) -> &JobCgroup {
        &self.cgroup
    }

    /// The container's init (host pid); signals to it reach the job.
    pub fn init(&self) -> ProcessIdentity {
        self.launched.init()
    }

    /// The run's supervisor.
    pub fn shim(&self) -> ProcessIdentity {
        self.launched.shim()
    }

    /// Sends `signal` to the job (through its init: SIGTERM, SIGINT,
    /// SIGHUP, SIGUSR1 and SIGUSR2 are forwarded; SIGKILL ends the whole
    /// container).
    pub fn signal(&self, signal: Signal) -> Result<(), LaunchError> {
        self.launched.signal(signal).map_err(|source| LaunchError::Signal {
            job: self.job.to_string(),
            run: self.run.to_string(),
            source: source.into(),
        })
    }

    /// Changes the running job's cgroup resources (an OOM grow step).
    pub fn update(&self, resources: &Resources) -> Result<(), LaunchError> {
        self.cgroup.update(resources).map(drop).map_err(|source| LaunchError::Grow {
            job: self.job.to_string(),
            run: self.run.to_string(),
            source: source.into(),
        })
    }

    /// Blocks until the job has ended and its status is recorded (call it
    /// from `spawn_blocking` in async code).
    pub fn wait(self) -> EndedRun {
        let StartedRun { job, run, cgroup, launched } = self;
        let status = launched.wait().map_err(|source| LaunchError::Wait {
            job: job.to_string(),
            run: run.to_string(),
            source: source.into(),
        });
        EndedRun { job, run, cgroup, status }
    }
}

impl EndedRun {
    /// Kills whatever the job left in its cgroup, reads the final
    /// statistics and removes the cgroup (see [`collect`]).
    pub async fn finish(self, kill_timeout: Duration) -> FinishedRun {
        let EndedRun { job, run, cgroup, status } = self;
        let (stats, cleanup) = match collect(&job, &run, &cgroup, kill_timeout).await {
            Ok(stats) => (stats, None),
            Err((stats, err)) => (stats, Some(err)),
        };
        FinishedRun { job, run, status, stats, cleanup }
    }
}

/// Empties, reads and removes a run's cgroup: for a run that ended, found
/// after a restart or otherwise. See [`empty_and_read`] and [`remove`].
/// On an error the statistics read so far come with it.
pub async fn collect(
    job: &JobName,
    run: &RunId,
    cgroup: &JobCgroup,
    kill_timeout: Duration,
) -> Result<FinalStats, (FinalStats, LaunchError)> {
    let stats = match empty_and_read(job, run, cgroup, kill_timeout).await {
        Ok(stats) => stats,
        Err((stats, err)) => {
            let _ = remove_when_empty_async(cgroup).await;
            return Err((stats, err));
        }
    };
    // Empty already: killing again would only repeat the wait. If the
    // removal still fails, `remove` kills and tries once more.
    if remove_when_empty_async(cgroup).await.is_err() {
        remove(job, run, cgroup, kill_timeout).await.map_err(|err| (stats, err))?;
    }
    Ok(stats)
}

/// Kills whatever is left in a run's cgroup and reads its final
/// statistics: after the kill, so that they are final (the leftovers'
/// CPU time and memory count too), and before the removal, after which
/// they are gone. On an error the statistics read so far come with it.
pub async fn empty_and_read(
    job: &JobName,
    run: &RunId,
    cgroup: &JobCgroup,
    kill_timeout: Duration,
) -> Result<FinalStats, (FinalStats, LaunchError)> {
    let names = || (job.to_string(), run.to_string());
    // Without a pid namespace, processes the job started in the background
    // outlive it and would keep the cgroup busy.
    let killed = cgroup.kill(kill_timeout).await;
    let stats = match cgroup.stats() {
        Ok(stats) => final_stats(&stats),
        Err(source) => {
            let (job, run) = names();
            return Err((
                FinalStats::default(),
                LaunchError::Stats { job, run, source: source.into() },
            ));
        }
    };
    if let Err(source) = killed {
        let (job, run) = names();
        return Err((stats, LaunchError::Kill { job, run, source: source.into() }));
    }
    Ok(stats)
}

/// Removes a run's cgroup, killing anything still in it first; its
/// statistics are not read. The removal is tried even when the kill
/// failed: a cgroup missing from some trees (made by hand, or half
/// removed) cannot be killed as a whole, but an empty one can go.
pub async fn remove(
    job: &JobName,
    run: &RunId,
    cgroup: &JobCgroup,
    kill_timeout: Duration,
) -> Result<(), LaunchError> {
    let names = || (job.to_string(), run.to_string());
    let killed = cgroup.kill(kill_timeout).await;
    match (remove_when_empty_async(cgroup).await, killed) {
        (Ok(()), _) => Ok(()),
        (Err(_), Err(source)) => {
            let (job, run) = names();
            Err(LaunchError::Kill { job, run, source: source.into() })
        }
        (Err(source), Ok(())) => {
            let (job, run) = names();
            Err(LaunchError::RemoveCgroup { job, run, source: source.into() })
        }
    }
}

/// The final statistics in the units reported: seconds and bytes.
pub fn final_stats(stats: &crate::cgroup::Stats) -> FinalStats {
    let seconds = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e9);
    FinalStats {
        cpu_seconds: seconds(stats.cpu.usage_ns),
        cpu_user_seconds: seconds(stats.cpu.user_ns),
        cpu_system_seconds: seconds(stats.cpu.system_ns),
        peak_memory_bytes: stats.memory.max_usage_bytes,
        oom_events: stats.memory.oom_events,
        oom_kills: stats.memory.oom_kills,
    }
}

/// How often, and how far apart, removal is tried: the kernel lets a
/// cgroup go only once its last task has fully exited, which trails the
/// exit status its parent sees by a little (the task is still being torn
/// down), so an immediate `rmdir` can find it busy.
const REMOVE_ATTEMPTS: u32 = 100;
const REMOVE_PAUSE: Duration = Duration::from_millis(5);

/// One removal attempt: `Ok(false)` while the cgroup is still busy.
fn try_remove(cgroup: &JobCgroup) -> Result<bool, CgroupError> {
    match cgroup.remove() {
        Ok(()) => Ok(true),
        Err(CgroupError::Remove { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

fn remove_when_empty(cgroup: &JobCgroup) -> Result<(), CgroupError> {
    for _ in 1..REMOVE_ATTEMPTS {
        if try_remove(cgroup)? {
            return Ok(());
        }
        std::thread::sleep(REMOVE_PAUSE);
    }
    cgroup.remove()
}

async fn remove_when_empty_async(cgroup: &JobCgroup) -> Result<(), CgroupError> {
    for _ in 1..REMOVE_ATTEMPTS {
        if try_remove(cgroup)? {
            return Ok(());
        }
        tokio::time::sleep(REMOVE_PAUSE).await;
    }
    cgroup.remove()
}
