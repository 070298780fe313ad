//! `corral run FILE`: run one job once, now, in the foreground.
//!
//! The job is compiled, placed alone against the live topology, planned,
//! given its cgroup and container exactly as the agent would, and its
//! output streams to the terminal (and to the run directory's logs). The
//! run is driven by the agent's run state machine through a one-run
//! executor (`supervise.rs`) on the agent's runtime: restarts, timeout, stop
//! grace and OOM handling are the agent's. SIGINT, SIGTERM and SIGHUP
//! become stop requests. After each attempt it prints a summary line, and
//! it exits with the last attempt's exit code. See `docs/run.md`.

mod summary;
mod supervise;

use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::agent::host::HostRuntime;
use crate::config::{self, AgentConfig, CgroupParent};
use crate::container::{ContainerError, SetupError};
use crate::dynamic_user;
use crate::launch::{self, Host, LaunchError};
use crate::spec::{self, JobSpec};
use crate::vocab::RunId;

pub use summary::{summary_line, Ending, RunObservations};

/// Run one job once, in the foreground.
///
/// Exits with the job's exit code, or 128 + the number of the signal that
/// killed it (137 for an OOM kill). Before the job runs: 2 for an invalid
/// job file or configuration, 127 if the command is not found, 126 if it
/// cannot be executed, 125 for any other failure of corral's.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The job to run, if the file defines several.
    #[arg(long, value_name = "JOB")]
    pub name: Option<String>,
    /// The agent configuration to use (default: the built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the run's directories go (`<DIR>/runs/<run>/<placed-at>`);
    /// created if missing. Overrides the configuration's `state_dir`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The cgroup the job's cgroup is created under, in every hierarchy.
    /// Overrides the configuration's `cgroup_parent`.
    #[arg(long, value_name = "NAME")]
    pub cgroup_parent: Option<String>,
    /// Print nothing of corral's own but errors; the job's output still
    /// streams.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Exit code for an invalid job file or configuration.
const EXIT_INVALID: u8 = 2;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match agent_config(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let spec = match pick_job(&args, &config) {
        Ok(spec) => spec,
        Err(message) => {
            eprintln!("{message}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    // One run in the foreground has no place for an array's many.
    if let Some(array) = &spec.array {
        eprintln!(
            "corral: {} is an array ({array}); `corral run` runs one run: submit it to the \
             agent with `corral submit {}`",
            spec.name,
            args.file.display()
        );
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    match foreground(spec, &config, args.quiet) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(err) => {
            eprintln!("corral: {}", describe(&err));
            Ok(ExitCode::from(failure_code(&err)))
        }
    }
}

/// The one job to run, or every problem with the file as `corral validate
/// --config` prints them: the agent's admission rules apply here too.
fn pick_job(args: &RunArgs, config: &AgentConfig) -> Result<JobSpec, String> {
    let file = args.file.display();
    let admission = config.admission();
    let admitted = spec::load_file(&args.file).and_then(|jobs| {
        let refused: Vec<_> = jobs.iter().flat_map(|job| admission.check(job)).collect();
        if refused.is_empty() {
            Ok(jobs)
        } else {
            Err(spec::Diagnostics(refused))
        }
    });
    let mut jobs = match admitted {
        Ok(jobs) => jobs,
        Err(diagnostics) => {
            let n = diagnostics.len();
            return Err(format!(
                "{diagnostics}\ncorral: {n} problem{} in {file}",
                if n == 1 { "" } else { "s" }
            ));
        }
    };
    let names = || jobs.iter().map(|j| j.spec.name.to_string()).collect::<Vec<_>>().join(", ");
    match &args.name {
        Some(name) => match jobs.iter().position(|j| j.spec.name.as_str() == name) {
            Some(i) => Ok(jobs.swap_remove(i).spec),
            None => Err(format!("corral: {file} has no job {name:?}; it has: {}", names())),
        },
        None if jobs.len() == 1 => Ok(jobs.remove(0).spec),
        None if jobs.is_empty() => Err(format!("corral: {file} defines no job")),
        None => {
            Err(format!("corral: {file} defines several jobs ({}); pick one with --name", names()))
        }
    }
}

fn agent_config(args: &RunArgs) -> Result<AgentConfig, String> {
    let mut config = match &args.config {
        Some(path) => config::load(path).map_err(|diagnostics| {
            format!("{diagnostics}\ncorral: invalid configuration {}", path.display())
        })?,
        None => AgentConfig::default(),
    };
    if let Some(dir) = &args.state_dir {
        config.state_dir = std::path::absolute(dir)
            .map_err(|e| format!("corral: --state-dir {}: {e}", dir.display()))?;
    }
    if let Some(parent) = &args.cgroup_parent {
        config.cgroup_parent = CgroupParent::parse(parent)
            .map_err(|e| format!("corral: invalid --cgroup-parent {parent:?}: {e}"))?;
    }
    Ok(config)
}

/// A run id of its own: `<job>-<n>` where `n` is the time in milliseconds,
/// bumped until its directory could be created. Time-based so that it does
/// not collide with the agent's sequence numbers in a shared state
/// directory; the directory's creation is what reserves it.
fn reserve_run(config: &AgentConfig, spec: &JobSpec) -> anyhow::Result<RunId> {
    let runs = launch::runs_dir(&config.state_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&runs)
        .with_context(|| format!("cannot create {}", runs.display()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut seq = u64::try_from(now.as_millis()).unwrap_or(u64::MAX / 2);
    loop {
        // The form of the store's run ids, `<job>-<seq>`.
        let run = RunId::new(format!("{}-{seq}", spec.name));
        let dir = runs.join(run.as_str());
        match std::fs::DirBuilder::new().mode(0o750).create(&dir) {
            Ok(()) => return Ok(run),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => seq += 1,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
}

/// Runs the job through the run state machine, as the agent would (see
/// `supervise.rs`); returns the last attempt's exit code.
fn foreground(spec: JobSpec, config: &AgentConfig, quiet: bool) -> anyhow::Result<u8> {
    let notes = supervise::Notes { quiet };
    let host = Host::discover(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = supervise::Signals::catch()?;
        let run = reserve_run(config, &spec)?;
        let reserved = launch::runs_dir(&config.state_dir).join(run.as_str());
        let uid = || one_run_uid(&spec, config);
        let result = match supervise::Foreground::new(
            HostRuntime::new(host),
            spec.clone(),
            config,
            run,
            notes,
        ) {
            Ok(foreground) => foreground.run(&mut signals, &uid).await,
            Err(err) => Err(err.into()),
        };
        if result.is_err() {
            // The run's id is given back if nothing was made for it.
            let _ = std::fs::remove_dir(&reserved);
        }
        result
    })
}

/// The error and its causes, each cause left out where the message before
/// already quotes it (the library's errors say what their source said).
/// The uid of a foreground run of a job without `user` under `default_user:
/// dynamic`: with no store to record it, one no process and no host account
/// has, taken for this run only and from the top of the range, away from
/// the agent's allocations (which start at the bottom). Chosen again for each
/// attempt: a job whose processes are all gone holds nothing.
fn one_run_uid(spec: &JobSpec, config: &AgentConfig) -> anyhow::Result<Option<u32>> {
    if spec.user.is_some() || config.default_user != spec::DefaultUser::Dynamic {
        return Ok(None);
    }
    let host = dynamic_user::HostIds::read(&dynamic_user::HostRoots::default())?;
    let range = config.dynamic_users;
    let uid = dynamic_user::pick(range, dynamic_user::Order::Highest, |uid| host.in_use(uid))
        .ok_or_else(|| dynamic_user::DynamicUserError::Exhausted {
            job: spec.name.to_string(),
            range: range.to_string(),
            allocated: 0,
        })?;
    Ok(Some(uid))
}

/// The error and its causes, each cause left out where the message before
/// already quotes it (the library's errors say what their source said).
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

/// The exit code for a failure of corral's own, before the job ran.
fn failure_code(err: &anyhow::Error) -> u8 {
    let setup = err.downcast_ref::<LaunchError>().and_then(|e| match e {
        LaunchError::Start { source, .. } => match source.as_ref() {
            ContainerError::Setup(setup) => Some(setup),
            _ => None,
        },
        _ => None,
    });
    match setup {
        Some(SetupError::CommandNotFound { .. }) => summary::EXIT_NOT_FOUND,
        Some(SetupError::Exec { .. }) => summary::EXIT_CANNOT_EXECUTE,
        _ => summary::EXIT_CORRAL_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let setup = SetupError::CommandNotFound {
            command: "nosuchcmd".into(),
            place: "the host".into(),
            path: "/bin".into(),
        };
        let err = anyhow::Error::from(LaunchError::Start {
            job: "nf".into(),
            run: "nf-1".into(),
            source: Box::new(ContainerError::Setup(setup)),
        });
        assert_eq!(
            describe(&err),
            "job nf, run nf-1: command \"nosuchcmd\" not found in the host (PATH=/bin)"
        );
        assert_eq!(failure_code(&err), summary::EXIT_NOT_FOUND);
        let io = std::io::Error::new(ErrorKind::PermissionDenied, "denied");
        let err = anyhow::Error::from(io).context("cannot create /state/runs");
        assert_eq!(describe(&err), "cannot create /state/runs: denied");
        assert_eq!(failure_code(&err), summary::EXIT_CORRAL_FAILED);
    }
}
