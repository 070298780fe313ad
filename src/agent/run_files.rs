//! The files each run keeps under the runs directory (logs, exit status,
//! container config), named by run id: they go when the run's record does.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::store::{Retention, RunStore};
use crate::vocab::parse_run_id;
use crate::vocab::JobName;
use crate::vocab::RunId;

use super::error::AgentError;

/// Prunes `job`'s history to `keep` records once one of its runs ended,
/// and the files of the records that went. The runs directory is listed
/// only when records went: a run ending rarely pushes one out. (Files a
/// crash left behind after their record was pruned go with the job's next
/// prune.)
pub(super) fn prune_history<S: RunStore>(
    runs_dir: &Path,
    store: &mut S,
    job: &JobName,
    keep: Option<Retention>,
) -> Result<(), AgentError> {
    if let Some(keep) = keep {
        if store.prune(job, keep)? > 0 {
            prune(runs_dir, store, job)?;
        }
    }
    Ok(())
}

/// Deletes the run directories (logs, status, config) of `job`'s runs
/// whose records are gone: a pruned run takes its files with it.
fn prune<S: RunStore>(runs_dir: &Path, store: &S, job: &JobName) -> Result<(), AgentError> {
    let kept: std::collections::HashSet<RunId> =
        store.runs_for_job(job, usize::MAX)?.into_iter().map(|r| r.id).collect();
    let Ok(entries) = std::fs::read_dir(runs_dir) else { return Ok(()) };
    let stale: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let id = RunId::new(e.file_name().to_str()?.to_owned());
            let (of, _) = parse_run_id(&id)?;
            (&of == job && !kept.contains(&id)).then(|| e.path())
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    debug!(job = %job, dirs = stale.len(), "removing the files of pruned runs");
    // Logs can be large: removed off the main loop.
    tokio::task::spawn_blocking(move || {
        for dir in stale {
            remove_dir(&dir);
        }
    });
    Ok(())
}

fn remove_dir(dir: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!("cannot remove the files of a pruned run, {}: {e}", dir.display());
        }
    }
}
