//! `publish_dir`: a directory of job files kept in the cluster, so that
//! "drop a file in a directory" works for cluster jobs as it does for a
//! node's own jobs directory.
//!
//! The directory is read by the jobs directory's own watcher
//! ([`crate::watch::JobDirWatcher`]: owner and mode checks, settled files
//! only) and held by the agent's own [`JobDirectory`]: each file's last good
//! version stays in force while a newer one has problems, and every problem
//! is logged with file:line:col. After each batch the jobs in force are
//! applied to the cluster by [`super::apply`] in one transaction:
//! added, changed, and removed with their file.
//!
//! Each record it writes carries its origin (`{publisher}:{directory}`);
//! it deletes only records of that origin and leaves alone a job of the
//! same name applied by hand or published elsewhere (logged). A write that
//! fails (etcd away, a concurrent apply twice) is tried again later from a
//! fresh read, and the directory is compared with the cluster again every
//! [`RESYNC`], so a published job deleted by hand comes back.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::Client;
use tracing::{error, info, warn};

use super::apply::{self, cluster_problems, Applied, ApplyError, Owner, Stamp, Wanted};
use super::keys::Keys;
use crate::agent::reconcile::{FileNote, JobDirectory};
use crate::config::{AgentConfig, ClusterConfig};
use crate::spec::{AdmissionRules, Diagnostic, Job};
use crate::vocab::Timestamp;
use crate::watch::{FileChange, JobDirWatcher, WatchError, WatchOptions};

/// How long after a failed write the publisher tries again.
pub const RETRY: Duration = Duration::from_secs(2);
/// How often the directory is compared with the cluster without a change
/// in the directory.
pub const RESYNC: Duration = Duration::from_secs(60);

/// The directory as the publisher holds it: the jobs in force and the text
/// of the file version each comes from.
#[derive(Debug, Default)]
pub struct Published {
    directory: JobDirectory,
    /// The text of each file's version in force (its last good one).
    texts: BTreeMap<PathBuf, String>,
}

impl Published {
    pub fn new() -> Published {
        Published::default()
    }

    /// Takes one batch from the watcher; says what became of each file.
    pub fn absorb(
        &mut self,
        changes: Vec<FileChange>,
        admission: &AdmissionRules,
    ) -> Vec<FileNote> {
        let mut candidates = BTreeMap::new();
        for change in &changes {
            match change {
                FileChange::Upserted { path, bytes } => {
                    candidates.insert(path.clone(), String::from_utf8_lossy(bytes).into_owned());
                }
                FileChange::Removed { path } => {
                    self.texts.remove(path);
                }
                FileChange::Refused { .. } => {}
            }
        }
        let admit = |job: &Job| -> Vec<Diagnostic> {
            let mut problems = cluster_problems(job);
            problems.extend(admission.check(job));
            problems
        };
        let reconciled = self.directory.apply(changes, &admit);
        for (path, text) in candidates {
            // A version with problems leaves the last good text in force.
            if self.directory.problem(&path).is_none() {
                self.texts.insert(path, text);
            }
        }
        reconciled.notes
    }

    /// The jobs in force, as they are to be in the cluster.
    pub fn wanted(&self) -> BTreeMap<String, Wanted> {
        self.directory
            .jobs()
            .iter()
            .filter_map(|job| {
                let source = self.texts.get(&job.origin.file)?;
                let name = job.spec.name.to_string();
                let file = job.origin.file.display().to_string();
                Some((name.clone(), Wanted { name, file, source: source.clone() }))
            })
            .collect()
    }
}

/// The origin a publisher of `dir` writes into its records.
pub fn origin(publisher: &str, dir: &std::path::Path) -> String {
    format!("{publisher}:{}", dir.display())
}

/// Publishes `dir` to the cluster until `shutdown` completes. `applied_by`
/// names the publisher in the records (the node's name) and, with the
/// directory, their origin. Ends early only when the directory cannot be
/// watched at all.
pub async fn run(
    mut client: Client,
    keys: Keys,
    dir: PathBuf,
    applied_by: String,
    admission: AdmissionRules,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WatchError> {
    let mut watcher = JobDirWatcher::new(&dir, WatchOptions::default())?;
    let owner = Owner::Origin(origin(&applied_by, watcher.dir()));
    let mut published = Published::new();
    // Nothing is written before the first batch (the start-up scan): until
    // then the publisher does not know what the directory holds.
    let mut scanned = false;
    let mut due: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let wake = due.unwrap_or_else(|| tokio::time::Instant::now() + RESYNC);
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            batch = watcher.next_batch() => match batch {
                Ok(changes) => {
                    for note in published.absorb(changes, &admission) {
                        note.log();
                    }
                    scanned = true;
                    due = Some(tokio::time::Instant::now());
                }
                Err(e) if e.is_fatal() => return Err(e),
                // The directory is gone or unsafe: its jobs stay as last
                // published, as a node's jobs stay while its directory is.
                Err(e) => warn!(dir = %dir.display(), "publish_dir: {e}"),
            },
            () = tokio::time::sleep_until(wake), if scanned => {
                due = Some(tokio::time::Instant::now());
            }
        }
        if !scanned || due.is_none_or(|at| at > tokio::time::Instant::now()) {
            continue;
        }
        let stamp = Stamp { applied_by: applied_by.clone(), applied_at: Timestamp::now() };
        match apply::apply(&mut client, &keys, &published.wanted(), &owner, &stamp, false).await {
            Ok(applied) => {
                log_applied(&dir, &applied);
                due = None;
            }
            Err(e) => {
                log_failed(&dir, &e);
                due = Some(tokio::time::Instant::now() + RETRY);
            }
        }
    }
}

/// The publisher as the agent runs it: started when the agent's `cluster:`
/// section names a `publish_dir`, stopped with the agent.
pub struct Publishing {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Publishing {
    /// Starts publishing `config.cluster.publish_dir`, if set, on a task of
    /// its own.
    pub fn start(config: &AgentConfig) -> Option<Publishing> {
        let cluster = config.cluster.clone()?;
        let dir = cluster.publish_dir.clone()?;
        let admission = config.admission().for_cluster();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(cluster, dir, admission, async {
            let _ = stopped.await;
        }));
        Some(Publishing { stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            error!("the publish_dir task failed: {e}");
        }
    }
}

/// Connects to the cluster and publishes `dir` until `shutdown`; neither
/// etcd being away nor the directory being unusable stops the agent: each
/// is logged and tried again every [`RETRY`] (the directory's jobs stay in
/// the cluster as last published meanwhile).
pub async fn serve(
    cluster: ClusterConfig,
    dir: PathBuf,
    admission: AdmissionRules,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let keys = Keys::new(&cluster.prefix);
    loop {
        let attempt = async {
            let client = super::etcd::connect(&cluster).await.map_err(|e| e.to_string())?;
            info!(dir = %dir.display(), "publish_dir: publishing to the cluster");
            let publisher = cluster.node_name.clone();
            run(client, keys.clone(), dir.clone(), publisher, admission.clone(), &mut shutdown)
                .await
                .map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(()) => return,
            Err(e) => error!(
                dir = %dir.display(),
                "publish_dir: not publishing, trying again in {}s: {e}",
                RETRY.as_secs()
            ),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

fn log_applied(dir: &std::path::Path, applied: &Applied) {
    let plan = &applied.plan;
    if plan.writes() {
        info!(
            dir = %dir.display(),
            added = ?plan.added,
            changed = ?plan.changed,
            removed = ?plan.removed,
            revision = applied.revision,
            "publish_dir: applied to the cluster"
        );
    }
    for (name, whose) in &plan.held_elsewhere {
        warn!(dir = %dir.display(), job = %name, "publish_dir: not published: the cluster's job of that name was {whose}");
    }
}

fn log_failed(dir: &std::path::Path, e: &ApplyError) {
    error!(dir = %dir.display(), "publish_dir: not applied to the cluster, trying again in {}s: {e}", RETRY.as_secs());
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
