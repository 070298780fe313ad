//! `corral validate PATH...`: check job files without running anything.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::spec;

/// Check job files and print every problem in them.
///
/// Directories stand for the `*.yaml` and `*.yml` files directly inside them (hidden
/// files, editor backups and subdirectories are skipped). Problems are printed as
/// `FILE:LINE:COL: FIELD: message`; a file without problems gets an `OK FILE (N jobs)` line.
/// Exits with 1 if any file has a problem, including a job name defined twice.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Job files, or directories of job files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let load = spec::load_paths(&args.paths);
    let mut out = std::io::stdout().lock();
    for file in &load.files {
        if file.is_ok() {
            let noun = if file.jobs == 1 { "job" } else { "jobs" };
            writeln!(out, "OK {} ({} {noun})", file.path.display(), file.jobs)?;
        } else {
            for diagnostic in &file.diagnostics {
                writeln!(out, "{diagnostic}")?;
            }
        }
    }
    out.flush()?;
    if load.is_ok() {
        return Ok(ExitCode::SUCCESS);
    }
    let problems = load.diagnostics().count();
    let bad_files = load.files.iter().filter(|f| !f.is_ok()).count();
    eprintln!(
        "corral: {problems} problem{} in {bad_files} of {} file{}",
        if problems == 1 { "" } else { "s" },
        load.files.len(),
        if load.files.len() == 1 { "" } else { "s" },
    );
    Ok(ExitCode::from(1))
}
