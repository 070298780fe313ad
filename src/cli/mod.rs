//! The `corral` command line: one file per subcommand.
//!
//! Commands return the process exit code they want; `anyhow` is used only at
//! this edge, to attach context to errors from the library modules.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::api::Request;
use crate::config::{self, AgentConfig};

pub mod act;
pub mod agent;
pub mod apply;
pub mod client;
pub mod cluster;
pub mod doctor;
pub mod doctor_cluster;
pub mod events;
pub mod generate_docs;
pub mod logs;
pub mod nodes;
pub mod ps;
pub mod reload;
pub mod run;
pub mod schedule;
pub mod show;
pub mod submit;
pub mod topology;
pub mod validate;

impl Command {
    /// Whether the command does nothing but report: it may end the moment
    /// nobody reads what it prints. The agent, the shim and `corral run`
    /// may not: they look after runs whatever happens to their output.
    fn only_prints(&self) -> bool {
        !matches!(self, Command::Agent(_) | Command::Run(_))
    }
}

/// The agent configuration file at `path`, every problem in it reported
/// under its name.
fn load_config(path: &Path) -> anyhow::Result<AgentConfig> {
    config::load(path)
        .map_err(|diagnostics| anyhow::anyhow!("{diagnostics}"))
        .with_context(|| format!("invalid configuration {}", path.display()))
}

/// Lets SIGPIPE end the process, as it ends other Unix tools: `corral
/// events -f | head -3` stops after three lines. Rust starts programs with
/// SIGPIPE ignored, which turns the reader going away into an error on the
/// next write, and into a panic in `println!`.
fn end_quietly_when_the_reader_goes() {
    // SAFETY: restores the default disposition; no handler code runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// The version and the commit it was built from (`build.rs`), as
/// `corral --version` prints them: a bug report then names the exact build.
pub const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CORRAL_COMMIT"), ")");

/// Declarative batch/job scheduler node agent.
#[derive(Debug, Parser)]
#[command(name = "corral", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent on a jobs directory.
    Agent(agent::AgentArgs),
    /// Check job files and report every problem in them.
    Validate(validate::ValidateArgs),
    /// Show when recurring jobs will run, in their time zone and in UTC.
    Schedule(schedule::ScheduleArgs),
    /// Show the CPUs, cores, NUMA nodes and memory the agent places jobs on.
    Topology(topology::TopologyArgs),
    /// Check the host's cgroup layout for what corral needs.
    Doctor(doctor::DoctorArgs),
    /// Run one job once, now, in the foreground.
    Run(run::RunArgs),
    /// List the runs the agent has under way.
    Ps(ps::PsArgs),
    /// Show a run, or a job's latest runs, in detail.
    Show(show::ShowArgs),
    /// Print a run's output.
    Logs(logs::LogsArgs),
    /// Freeze a running run until it is thawed.
    Freeze(act::RunArgs),
    /// Let a run frozen by `corral freeze` run again.
    Thaw(act::RunArgs),
    /// Stop a run, or every run of an array, for good.
    Kill(act::KillArgs),
    /// Stop a run gracefully and queue it again, keeping its attempt.
    Requeue(act::RunArgs),
    /// Start a run of a recurring job now.
    Trigger(act::JobArgs),
    /// Print run transitions, preemptions and OOMs.
    Events(events::EventsArgs),
    /// Read the jobs directory again now and show what came of it.
    Reload(reload::ReloadArgs),
    /// Run a job file (once, or as an array) without putting it in the jobs directory.
    Submit(submit::SubmitArgs),
    /// Put job files into the cluster (added, changed, unchanged; one transaction).
    Apply(apply::ApplyArgs),
    /// Delete jobs from the cluster.
    Delete(apply::DeleteArgs),
    /// List the cluster's nodes and which one schedules.
    Nodes(nodes::NodesArgs),
    /// Write the man pages and shell completions (run by the package build).
    #[command(name = "generate-docs", hide = true)]
    GenerateDocs(generate_docs::GenerateDocsArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.command.only_prints() {
        end_quietly_when_the_reader_goes();
    }
    match cli.command {
        Command::Agent(args) => agent::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Schedule(args) => schedule::run(args),
        Command::Topology(args) => topology::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Run(args) => run::run(args),
        Command::Ps(args) => ps::run(args),
        Command::Show(args) => show::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Freeze(a) => act::run(&a.socket, Request::Freeze { run: a.run }),
        Command::Thaw(a) => act::run(&a.socket, Request::Thaw { run: a.run }),
        Command::Kill(a) => act::run(&a.socket, Request::Kill { run: a.run }),
        Command::Requeue(a) => act::run(&a.socket, Request::Requeue { run: a.run }),
        Command::Trigger(a) => act::run(&a.socket, Request::Trigger { job: a.job }),
        Command::Events(args) => events::run(args),
        Command::Reload(args) => reload::run(args),
        Command::Submit(args) => submit::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Delete(args) => apply::delete(args),
        Command::Nodes(args) => nodes::run(args),
        Command::GenerateDocs(args) => generate_docs::run(args),
    }
}
