//! `corral apply PATH...` and `corral delete JOB...`: the cluster's job set.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::cluster::{applied_by, block_on, cluster_config, cluster_of, connect, ClusterArgs};
use crate::cluster::apply::{self, Owner, Stamp};
use crate::vocab::Timestamp;
use crate::watch::policy::Rules;
use crate::watch::LoadRules;

/// Put job files into the cluster: each job runs once on a node that fits.
///
/// The files are read and checked exactly as `corral validate` checks them
/// (with the admission rules of --config), and the cluster cannot yet run
/// `after:` or `array:`; any problem in any file is printed as
/// `FILE:LINE:COL: FIELD: message` and nothing is written. Otherwise every
/// job whose text changed is written in one etcd transaction, and each job
/// is listed as `added`, `changed` or `unchanged`. Cluster jobs not in these
/// files are left alone, unless --prune removes those that came from the
/// same files or directories.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Job files, or directories of job files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also delete cluster jobs applied from these files or directories that
    /// they no longer define.
    #[arg(long)]
    pub prune: bool,
    /// Print what would change, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.cluster.config)?;
    let rules = LoadRules {
        files: Rules::checking_as(nix::unistd::geteuid()),
        admission: Some(config.admission().for_cluster()),
    };
    let cluster = cluster_of(config, &args.cluster.config)?;
    let loaded = apply::load(&args.paths, &rules);
    if !loaded.is_ok() {
        let mut out = std::io::stdout().lock();
        for diagnostic in loaded.diagnostics() {
            writeln!(out, "{diagnostic}")?;
        }
        out.flush()?;
        let problems = loaded.diagnostics().count();
        eprintln!(
            "corral: {problems} problem{}; nothing was applied",
            if problems == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::from(1));
    }
    let owner = if args.prune {
        Owner::HandPruning { files: loaded.files_given.clone(), dirs: loaded.dirs_given.clone() }
    } else {
        Owner::Hand
    };
    let stamp = Stamp { applied_by: applied_by(), applied_at: Timestamp::now() };
    let applied = block_on(async {
        let (mut client, keys) = connect(&cluster).await?;
        anyhow::Ok(
            apply::apply(&mut client, &keys, &loaded.wanted, &owner, &stamp, args.dry_run).await?,
        )
    })??;
    print!("{}", applied.plan);
    match (args.dry_run, applied.revision) {
        (true, _) => eprintln!("corral: dry run: nothing was written"),
        (false, Some(revision)) => eprintln!("corral: applied at etcd revision {revision}"),
        (false, None) => eprintln!("corral: nothing to write"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Delete jobs from the cluster, in one transaction. Their runs stop or
/// finish as each job's `on_removal` says.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Cluster job names.
    #[arg(required = true, value_name = "JOB")]
    pub jobs: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let cluster = cluster_config(&args.cluster.config)?;
    let done = block_on(async {
        let (mut client, keys) = connect(&cluster).await?;
        anyhow::Ok(apply::delete(&mut client, &keys, &args.jobs).await?)
    })??;
    for name in &done.deleted {
        println!("deleted {name}");
    }
    for name in &done.unknown {
        eprintln!("corral: no cluster job named {name:?}");
    }
    Ok(if done.unknown.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
