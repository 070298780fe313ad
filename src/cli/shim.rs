//! `corral internal-shim RUN_DIR`: the per-run supervisor, started by the
//! container launcher, never by hand. Kept lean: no runtime, no tracing.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::container::nofile::NofileLimit;

#[derive(Debug, clap::Args)]
pub struct ShimArgs {
    /// The run directory holding `config.json`.
    pub run_dir: PathBuf,
    /// The open-file limit (`SOFT:HARD`) to run with: the one the agent was
    /// started with, before it raised its own.
    #[arg(long)]
    pub nofile: Option<NofileLimit>,
}

pub fn run(args: ShimArgs) -> ExitCode {
    ExitCode::from(crate::container::shim::main(&args.run_dir, args.nofile))
}
