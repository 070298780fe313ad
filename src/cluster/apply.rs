//! Putting a set of job files into the cluster: `corral apply`, `corral
//! delete` and the directory publisher ([`super::publish`]).
//!
//! Three steps, the middle one pure:
//!
//! 1. [`load`]: the files are read and compiled exactly as `corral validate`
//!    reads and compiles them (the watcher's file rules, the spec compiler,
//!    the agent's admission rules, one name once), plus what the cluster
//!    cannot run yet (`after:`, `array:`). Any problem in any file, and
//!    nothing is written.
//! 2. [`plan`]: the jobs wanted against the job records read from etcd:
//!    added, changed (other text), unchanged (same text: no write, so the
//!    record's revision, and with it the run id, stays), removed (only what
//!    the caller owns: `--prune`'s files and directories, or the
//!    publisher's own directory), and the rest left alone.
//! 3. [`apply`]: one transaction writes every key of the plan, conditioned
//!    on each key's `mod_revision` being what was read (0: still absent), so
//!    a concurrent writer is noticed rather than overwritten. The write is
//!    tried once more from a fresh read, then given up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::Serialize;

use super::error::ClusterError;
use super::keys::Keys;
use super::records::{decode, encode, BadRecord, JobRecord};
use crate::spec::{compile_bytes, Diagnostic, FieldPath, Job, JobSet, SpecError};
use crate::vocab::Timestamp;
use crate::watch::{job_files, read_checked, FileLoad, LoadRules};

/// A job as it is to be in the cluster: its name, the file it comes from
/// (absolute) and the whole text of that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    pub file: String,
    pub source: String,
}

/// A job record as read from etcd, with the revision a write is
/// conditioned on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub record: Result<JobRecord, BadRecord>,
    pub mod_revision: i64,
}

/// Which cluster jobs missing from the wanted set the caller removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// `corral apply` without `--prune`: none; every job is overwritten by
    /// the wanted one of its name, whoever applied it.
    Hand,
    /// `corral apply --prune`: those applied from one of `files` or from a
    /// file directly in one of `dirs` (absolute paths).
    HandPruning { files: BTreeSet<String>, dirs: BTreeSet<String> },
    /// The publisher of a directory: those it published (`origin`). It
    /// leaves alone a job of the same name applied otherwise.
    Origin(String),
}

impl Owner {
    /// The origin written into the records.
    fn origin(&self) -> Option<&str> {
        match self {
            Owner::Origin(origin) => Some(origin),
            Owner::Hand | Owner::HandPruning { .. } => None,
        }
    }

    fn owns(&self, record: &JobRecord) -> bool {
        match self {
            Owner::Hand => false,
            Owner::HandPruning { files, dirs } => {
                let file = Path::new(&record.file);
                files.contains(&record.file)
                    || file.parent().and_then(Path::to_str).is_some_and(|d| dirs.contains(d))
            }
            Owner::Origin(origin) => record.origin.as_deref() == Some(origin.as_str()),
        }
    }
}

/// What an apply does, each list in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyPlan {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Deleted: owned by the caller and no longer wanted.
    pub removed: Vec<String>,
    /// In the cluster, not wanted, not the caller's: left as they are.
    pub left_alone: Vec<String>,
    /// Wanted, but held by a record another origin wrote (publisher only):
    /// not written, with whom it belongs to.
    pub held_elsewhere: Vec<(String, String)>,
    /// Records that do not parse and that this apply does not overwrite.
    pub bad: Vec<String>,
}

impl ApplyPlan {
    /// Whether anything is to be written.
    pub fn writes(&self) -> bool {
        !(self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty())
    }
}

/// The diff between the jobs wanted and the records in the cluster.
pub fn plan(
    wanted: &BTreeMap<String, Wanted>,
    current: &BTreeMap<String, Current>,
    owner: &Owner,
) -> ApplyPlan {
    let mut plan = ApplyPlan::default();
    for (name, job) in wanted {
        match current.get(name).map(|c| &c.record) {
            None => plan.added.push(name.clone()),
            // A record that does not parse is overwritten by a good one.
            Some(Err(_)) => plan.changed.push(name.clone()),
            Some(Ok(record)) => {
                if let Owner::Origin(_) = owner {
                    if !owner.owns(record) {
                        let whose = match &record.origin {
                            Some(origin) => format!("published from {origin}"),
                            None => format!("applied by {}", record.applied_by),
                        };
                        plan.held_elsewhere.push((name.clone(), whose));
                        continue;
                    }
                }
                if record.source == job.source {
                    plan.unchanged.push(name.clone());
                } else {
                    plan.changed.push(name.clone());
                }
            }
        }
    }
    for (name, current) in current {
        if wanted.contains_key(name) {
            continue;
        }
        match &current.record {
            Ok(record) if owner.owns(record) => plan.removed.push(name.clone()),
            Ok(_) => plan.left_alone.push(name.clone()),
            Err(_) => plan.bad.push(name.clone()),
        }
    }
    plan
}

/// Who applies, and when, as written into each record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub applied_by: String,
    pub applied_at: Timestamp,
}

/// The one transaction that carries out `plan`: every key it writes or
/// deletes must still be at the revision read.
pub fn transaction(
    keys: &Keys,
    plan: &ApplyPlan,
    wanted: &BTreeMap<String, Wanted>,
    current: &BTreeMap<String, Current>,
    owner: &Owner,
    stamp: &Stamp,
) -> Txn {
    let revision = |name: &str| current.get(name).map_or(0, |c| c.mod_revision);
    let mut compares = Vec::new();
    let mut ops = Vec::new();
    for name in plan.added.iter().chain(&plan.changed) {
        let job = &wanted[name];
        let record = JobRecord {
            name: name.clone(),
            file: job.file.clone(),
            source: job.source.clone(),
            applied_at: stamp.applied_at,
            applied_by: stamp.applied_by.clone(),
            origin: owner.origin().map(str::to_owned),
        };
        compares.push(Compare::mod_revision(keys.job(name), CompareOp::Equal, revision(name)));
        ops.push(TxnOp::put(keys.job(name), encode(&record), None));
    }
    for name in &plan.removed {
        compares.push(Compare::mod_revision(keys.job(name), CompareOp::Equal, revision(name)));
        ops.push(TxnOp::delete(keys.job(name), None));
    }
    Txn::new().when(compares).and_then(ops)
}

/// Every job record in the cluster, by name, and the revision read at.
pub async fn read_jobs(
    client: &mut Client,
    keys: &Keys,
) -> Result<(BTreeMap<String, Current>, i64), ClusterError> {
    let under = keys.jobs();
    let response = client.get(under.as_str(), Some(GetOptions::new().with_prefix())).await?;
    let revision = response.header().map_or(0, |h| h.revision());
    let mut jobs = BTreeMap::new();
    for kv in response.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let Some(name) = Keys::name_in(&key, &under) else { continue };
        let record = decode::<JobRecord>(&key, kv.value()).and_then(|r| {
            if r.name == name {
                Ok(r)
            } else {
                Err(BadRecord {
                    key: key.clone(),
                    reason: format!("it names job {:?}, not {name:?}", r.name),
                })
            }
        });
        jobs.insert(name.to_owned(), Current { record, mod_revision: kv.mod_revision() });
    }
    Ok((jobs, revision))
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub plan: ApplyPlan,
    /// The revision of the one write; `None` when nothing was written.
    pub revision: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// etcd refused the transaction (too large, too many operations ...).
    #[error(
        "etcd refused the transaction writing {keys} keys: {source} (etcd takes at most \
         --max-txn-ops operations, 128 unless raised, and --max-request-bytes per request)"
    )]
    Write {
        keys: usize,
        #[source]
        source: etcd_client::Error,
    },
    #[error(
        "the cluster's jobs changed while this apply was writing, twice in a row \
         (another apply or publisher at work); nothing was written: try again"
    )]
    Concurrent,
}

/// Reads the cluster's jobs, plans, and writes the plan in one
/// transaction; on a concurrent change, once more from a fresh read.
/// `dry_run` plans only.
pub async fn apply(
    client: &mut Client,
    keys: &Keys,
    wanted: &BTreeMap<String, Wanted>,
    owner: &Owner,
    stamp: &Stamp,
    dry_run: bool,
) -> Result<Applied, ApplyError> {
    for _ in 0..2 {
        let (current, _) = read_jobs(client, keys).await?;
        let plan = plan(wanted, &current, owner);
        if dry_run || !plan.writes() {
            return Ok(Applied { plan, revision: None });
        }
        let count = plan.added.len() + plan.changed.len() + plan.removed.len();
        let txn = transaction(keys, &plan, wanted, &current, owner, stamp);
        let response =
            client.txn(txn).await.map_err(|source| ApplyError::Write { keys: count, source })?;
        if response.succeeded() {
            let revision = response.header().map(|h| h.revision());
            return Ok(Applied { plan, revision });
        }
    }
    Err(ApplyError::Concurrent)
}

/// What `corral delete` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub deleted: Vec<String>,
    pub unknown: Vec<String>,
}

/// Deletes the records of `names` in one transaction (each conditioned on
/// still being there as read); names without a record are reported.
pub async fn delete(
    client: &mut Client,
    keys: &Keys,
    names: &[String],
) -> Result<Deleted, ApplyError> {
    for _ in 0..2 {
        let (current, _) = read_jobs(client, keys).await?;
        let mut done = Deleted::default();
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for name in names.iter().collect::<BTreeSet<_>>() {
            match current.get(name) {
                Some(c) => {
                    compares.push(Compare::mod_revision(
                        keys.job(name),
                        CompareOp::Equal,
                        c.mod_revision,
                    ));
                    ops.push(TxnOp::delete(keys.job(name), None));
                    done.deleted.push(name.clone());
                }
                None => done.unknown.push(name.clone()),
            }
        }
        if ops.is_empty() {
            return Ok(done);
        }
        let count = ops.len();
        let txn = Txn::new().when(compares).and_then(ops);
        let response =
            client.txn(txn).await.map_err(|source| ApplyError::Write { keys: count, source })?;
        if response.succeeded() {
            return Ok(done);
        }
    }
    Err(ApplyError::Concurrent)
}

/// The files of an apply, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Every file looked at, in the order given, with its problems.
    pub files: Vec<FileLoad>,
    /// The jobs, when no file has a problem.
    pub wanted: BTreeMap<String, Wanted>,
    /// The files and directories given, absolute, for `--prune`.
    pub files_given: BTreeSet<String>,
    pub dirs_given: BTreeSet<String>,
}

impl Loaded {
    pub fn is_ok(&self) -> bool {
        self.files.iter().all(FileLoad::is_ok)
    }

    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.diagnostics.iter())
    }
}

/// Reads and compiles `paths` (files, or directories of job files) as
/// `corral validate` does, and holds every job to what the cluster runs.
pub fn load<P: AsRef<Path>>(paths: &[P], rules: &LoadRules) -> Loaded {
    let mut loaded = Loaded {
        files: Vec::new(),
        wanted: BTreeMap::new(),
        files_given: BTreeSet::new(),
        dirs_given: BTreeSet::new(),
    };
    let mut set = JobSet::new();
    let mut sources: BTreeMap<PathBuf, String> = BTreeMap::new();
    for path in paths {
        let path = path.as_ref();
        if path.is_dir() {
            if let Ok(dir) = std::fs::canonicalize(path) {
                loaded.dirs_given.insert(dir.display().to_string());
            }
            match job_files(path) {
                Ok(found) => {
                    for file in found {
                        loaded.files.push(load_one(&file, rules, &mut set, &mut sources));
                    }
                }
                Err(e) => loaded.files.push(FileLoad {
                    path: path.to_owned(),
                    jobs: 0,
                    diagnostics: vec![Diagnostic::new(
                        path,
                        crate::spec::Pos::UNKNOWN,
                        FieldPath::root(),
                        SpecError::Read { reason: e.to_string() },
                    )],
                }),
            }
        } else {
            if let Some(file) = absolute(path) {
                loaded.files_given.insert(file);
            }
            loaded.files.push(load_one(path, rules, &mut set, &mut sources));
        }
    }
    if loaded.is_ok() {
        for job in set.iter() {
            let Some(source) = sources.get(&job.origin.file) else { continue };
            let name = job.spec.name.to_string();
            let file =
                absolute(&job.origin.file).unwrap_or_else(|| job.origin.file.display().to_string());
            loaded.wanted.insert(name.clone(), Wanted { name, file, source: source.clone() });
        }
    }
    loaded
}

fn load_one(
    path: &Path,
    rules: &LoadRules,
    set: &mut JobSet,
    sources: &mut BTreeMap<PathBuf, String>,
) -> FileLoad {
    let refused = |diagnostics| FileLoad { path: path.to_owned(), jobs: 0, diagnostics };
    let bytes = match read_checked(path, &rules.files) {
        Ok(bytes) => bytes,
        Err(diagnostics) => return refused(diagnostics.0),
    };
    let jobs = match compile_bytes(path, &bytes) {
        Ok(jobs) => jobs,
        Err(diagnostics) => return refused(diagnostics.0),
    };
    let mut problems: Vec<Diagnostic> = jobs.iter().flat_map(cluster_problems).collect();
    if let Some(admission) = &rules.admission {
        problems.extend(jobs.iter().flat_map(|job| admission.check(job)));
    }
    if !problems.is_empty() {
        return refused(problems);
    }
    match set.extend(jobs) {
        Ok(count) => {
            // compile_bytes took the bytes as UTF-8 text, so this is lossless.
            sources.insert(path.to_owned(), String::from_utf8_lossy(&bytes).into_owned());
            FileLoad { path: path.to_owned(), jobs: count, diagnostics: Vec::new() }
        }
        Err(diagnostics) => refused(diagnostics),
    }
}

/// What a job may say on one node that a cluster cannot carry out yet.
pub fn cluster_problems(job: &Job) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let at = |field: &str, reason: &str| {
        Diagnostic::new(
            &job.origin.file,
            job.origin.pos_of(field),
            FieldPath::root().key(field),
            SpecError::Refused { reason: reason.to_owned() },
        )
    };
    if !job.spec.after.is_empty() {
        problems.push(at(
            "after",
            "a cluster job cannot wait for other jobs yet (dependencies between cluster \
             jobs are not built); put both jobs in one node's jobs directory",
        ));
    }
    if job.spec.array.is_some() {
        problems.push(at("array", "arrays run on one node: use corral submit there"));
    }
    problems
}

/// `path` made absolute without following a link at its end: the
/// directory it is in, canonical, and its own name.
pub fn absolute(path: &Path) -> Option<String> {
    let name = path.file_name()?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(parent).ok()?;
    Some(dir.join(name).display().to_string())
}

impl fmt::Display for ApplyPlan {
    /// One line per job: `added a`, `changed b`, `unchanged c`, `removed d`,
    /// then what was left alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (word, names) in [
            ("added", &self.added),
            ("changed", &self.changed),
            ("unchanged", &self.unchanged),
            ("removed", &self.removed),
        ] {
            for name in names {
                writeln!(f, "{word} {name}")?;
            }
        }
        for (name, whose) in &self.held_elsewhere {
            writeln!(f, "not published {name}: the cluster's job of that name was {whose}")?;
        }
        if !self.left_alone.is_empty() {
            writeln!(
                f,
                "left alone (in the cluster, not in these files): {}",
                self.left_alone.join(", ")
            )?;
        }
        if !self.bad.is_empty() {
            writeln!(f, "bad records left alone: {}", self.bad.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
