//! The `corral` command line: one file per subcommand.
//!
//! Commands return the process exit code they want; `anyhow` is used only at
//! this edge, to attach context to errors from the library modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod doctor;

/// Declarative batch/job scheduler node agent.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the host's cgroup layout for what corral needs.
    Doctor(doctor::DoctorArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor(args) => doctor::run(args),
    }
}
