//! `corral validate PATH...`: check job files without running anything.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{self, AgentConfig};
use crate::watch::policy::Rules;
use crate::watch::{self, LoadRules};

/// Check job files and print every problem in them.
///
/// Directories stand for the `*.yaml` and `*.yml` files directly inside them (hidden
/// files, editor backups and subdirectories are skipped). Files are read the way the
/// agent reads them: only regular files, symlinks only to files in the same directory,
/// not world- or group-writable, owned by root or by you, at most 1 MiB. Every job is
/// then held to the agent's admission rules (root, privileged groups, pid namespace),
/// taken from --config or from the built-in defaults; the rules applied are printed on
/// standard error. Problems are printed as `FILE:LINE:COL: FIELD: message`; a file
/// without problems gets an `OK FILE (N jobs)` line. Exits with 1 if any file has a
/// problem, including a job name defined twice.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Job files, or directories of job files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The agent configuration whose admission rules to apply (default: the
    /// built-in defaults, as `corral run` uses).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let (config, from) = match &args.config {
        Some(path) => (
            config::load(path)
                .map_err(|diagnostics| anyhow::anyhow!("{diagnostics}"))
                .with_context(|| format!("invalid configuration {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (AgentConfig::default(), "the built-in defaults".to_owned()),
    };
    let admission = config.admission();
    eprintln!("corral: admission rules of {from}: {admission}");
    let rules =
        LoadRules { files: Rules::checking_as(nix::unistd::geteuid()), admission: Some(admission) };
    let load = watch::load_paths(&args.paths, &rules);
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
