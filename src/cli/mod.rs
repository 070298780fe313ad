//! The `corral` command line: one file per subcommand.
//!
//! Commands return the process exit code they want; `anyhow` is used only at
//! this edge, to attach context to errors from the library modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod agent;
pub mod doctor;
pub mod run;
pub mod schedule;
pub mod shim;
pub mod topology;
pub mod validate;

/// Declarative batch/job scheduler node agent.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, propagate_version = true)]
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
    /// The per-run container supervisor (started by the launcher).
    #[command(name = "internal-shim", hide = true)]
    InternalShim(shim::ShimArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agent(args) => agent::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Schedule(args) => schedule::run(args),
        Command::Topology(args) => topology::run(args),
        Command::InternalShim(args) => Ok(shim::run(args)),
        Command::Doctor(args) => doctor::run(args),
        Command::Run(args) => run::run(args),
    }
}
