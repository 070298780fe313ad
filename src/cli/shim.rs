//! `corral internal-shim RUN_DIR`: the per-run supervisor, started by the
//! container launcher, never by hand. Kept lean: no runtime, no tracing.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ShimArgs {
    /// The run directory holding `config.json`.
    pub run_dir: PathBuf,
}

pub fn run(args: ShimArgs) -> ExitCode {
    ExitCode::from(crate::container::shim::main(&args.run_dir))
}
