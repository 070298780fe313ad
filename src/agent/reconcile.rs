//! The jobs directory as the agent holds it: file changes in, the compiled
//! job set and what changed in it out.
//!
//! Pure. Each file keeps the jobs of its *last good version*: a version that
//! compiled and that the agent admits (see [`Admission`]). A new version that
//! does not compile, is not admitted, or is refused by the watcher leaves the
//! last good one in force, so a typo never stops a job. Each problem is
//! reported in [`Reconciled::notes`] once, when it appears or changes, never
//! again while it stands.
//!
//! A job name defined by two files belongs to the file that comes first in
//! path order; the other file contributes none of its jobs (a file is taken
//! whole or not at all) until the clash is gone.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::spec::{self, AdmissionRules, Diagnostic, Job, JobSet, JobSetDiff};
use crate::vocab::JobName;
use crate::watch::FileChange;

/// Whether the agent accepts a compiled job (e.g. `user: root` only where
/// root jobs are allowed): every reason it does not, at its field.
pub trait Admission {
    fn admit(&self, job: &Job) -> Vec<Diagnostic>;
}

impl Admission for AdmissionRules {
    fn admit(&self, job: &Job) -> Vec<Diagnostic> {
        self.check(job)
    }
}

impl<F: Fn(&Job) -> Vec<Diagnostic>> Admission for F {
    fn admit(&self, job: &Job) -> Vec<Diagnostic> {
        self(job)
    }
}

/// Something to tell the operator about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileNote {
    /// A new version is in force.
    Loaded { path: PathBuf, jobs: Vec<JobName> },
    /// The new version has problems; `kept` jobs of the last good version
    /// stay in force.
    Invalid { path: PathBuf, problems: Vec<String>, kept: Vec<JobName> },
    /// The watcher did not read the file; `kept` as above.
    Refused { path: PathBuf, reason: String, kept: Vec<JobName> },
    /// The file is gone, and with it `jobs`.
    Removed { path: PathBuf, jobs: Vec<JobName> },
}

/// A problem that currently stands for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    Invalid(Vec<Diagnostic>),
    Refused(String),
}

impl FileProblem {
    /// The problem as lines of an answer to root (a reload over the control
    /// socket): every message whole, quoting the file's values.
    pub fn lines(&self) -> Vec<String> {
        match self {
            FileProblem::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            refused @ FileProblem::Refused(_) => vec![refused.to_string()],
        }
    }

    /// The problem as lines anyone on the machine may read (the HTTP API):
    /// positions and fields but no value from the file, which may be readable
    /// by root alone (see [`crate::spec::SpecError::redacted`]). A refusal says
    /// what is wrong with the file's type, owner or mode, never its content.
    pub fn redacted_lines(&self) -> Vec<String> {
        match self {
            FileProblem::Invalid(problems) => {
                problems.iter().map(|d| d.redacted().to_string()).collect()
            }
            refused @ FileProblem::Refused(_) => vec![refused.to_string()],
        }
    }
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Invalid(problems) => {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("; "))
            }
            FileProblem::Refused(reason) => write!(f, "refused: {reason}"),
        }
    }
}

/// The outcome of one batch of changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    /// Between the job set before and after the batch.
    pub diff: JobSetDiff,
    pub notes: Vec<FileNote>,
}

/// A job file whose current version is not in force, as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplied {
    pub path: PathBuf,
    /// The file's own problems, then its clash with an earlier file.
    pub problems: Vec<String>,
    /// Jobs of its last good version that stay in force.
    pub in_force: Vec<JobName>,
}

#[derive(Debug, Clone, Default)]
struct FileEntry {
    good: Vec<Job>,
    problem: Option<FileProblem>,
    /// The file's jobs clash with an earlier file's: the reason, as reported.
    clash: Option<Vec<String>>,
}

impl FileEntry {
    /// Whether the file's current version is the one in force.
    fn is_applied(&self) -> bool {
        self.problem.is_none() && self.clash.is_none()
    }
}

/// Every job file seen, its last good version and its standing problem.
#[derive(Debug, Clone, Default)]
pub struct JobDirectory {
    files: BTreeMap<PathBuf, FileEntry>,
    jobs: JobSet,
}

impl JobDirectory {
    pub fn new() -> JobDirectory {
        JobDirectory::default()
    }

    /// The jobs in force.
    pub fn jobs(&self) -> &JobSet {
        &self.jobs
    }

    pub fn get(&self, name: &JobName) -> Option<&Job> {
        self.jobs.get(name)
    }

    /// Job files seen: `(valid, invalid)`, where an invalid file's current
    /// version is not in force: it has a problem of its own, or its jobs
    /// clash with an earlier file's.
    pub fn file_counts(&self) -> (u64, u64) {
        let invalid = self.files.values().filter(|e| !e.is_applied()).count() as u64;
        (self.files.len() as u64 - invalid, invalid)
    }

    /// Every file whose current version is not in force, in path order, with
    /// everything that stands against it now (not only what changed lately).
    pub fn not_applied(&self) -> Vec<NotApplied> {
        self.files
            .iter()
            .filter(|(_, e)| !e.is_applied())
            .map(|(path, e)| {
                let mut problems = e.problem.as_ref().map(FileProblem::lines).unwrap_or_default();
                problems.extend(e.clash.iter().flatten().cloned());
                // A clashing file contributes none of its jobs, whichever version.
                let in_force = if e.clash.is_none() { names_of(&e.good) } else { Vec::new() };
                NotApplied { path: path.clone(), problems, in_force }
            })
            .collect()
    }

    /// The problem standing for the file at `path`, if any.
    pub fn problem(&self, path: &Path) -> Option<&FileProblem> {
        self.files.get(path).and_then(|e| e.problem.as_ref())
    }

    /// Applies one batch from the watcher.
    pub fn apply(&mut self, changes: Vec<FileChange>, admission: &impl Admission) -> Reconciled {
        let mut notes = Vec::new();
        for change in changes {
            match change {
                FileChange::Upserted { path, bytes } => {
                    let compiled = compile(&path, &bytes, admission)
                        .and_then(|jobs| self.without_cycle(&path, jobs));
                    let entry = self.files.entry(path.clone()).or_default();
                    match compiled {
                        Ok(jobs) => {
                            let names = jobs.iter().map(|j| j.spec.name.clone()).collect();
                            entry.good = jobs;
                            entry.problem = None;
                            notes.push(FileNote::Loaded { path, jobs: names });
                        }
                        Err(diagnostics) => {
                            let problems = diagnostics.iter().map(ToString::to_string).collect();
                            entry.problem = Some(FileProblem::Invalid(diagnostics));
                            let kept = names_of(&entry.good);
                            notes.push(FileNote::Invalid { path, problems, kept });
                        }
                    }
                }
                FileChange::Refused { path, reason } => {
                    let entry = self.files.entry(path.clone()).or_default();
                    let reason = reason.to_string();
                    entry.problem = Some(FileProblem::Refused(reason.clone()));
                    notes.push(FileNote::Refused { path, reason, kept: names_of(&entry.good) });
                }
                FileChange::Removed { path } => {
                    let jobs =
                        self.files.remove(&path).map(|e| names_of(&e.good)).unwrap_or_default();
                    notes.push(FileNote::Removed { path, jobs });
                }
            }
        }
        let before = std::mem::take(&mut self.jobs);
        self.rebuild(&mut notes);
        Reconciled { diff: spec::diff(&before, &self.jobs), notes }
    }

    /// `jobs`, the new version of the file at `path`, unless they would
    /// close a dependency cycle with the other files' last good versions:
    /// then the version is invalid like one that does not compile, and the
    /// last good one stays in force.
    fn without_cycle(&self, path: &Path, jobs: Vec<Job>) -> Result<Vec<Job>, Vec<Diagnostic>> {
        if jobs.iter().all(|j| j.spec.after.is_empty()) {
            return Ok(jobs);
        }
        let others: BTreeMap<&JobName, &Job> = self
            .files
            .iter()
            .filter(|(other, _)| other.as_path() != path)
            .flat_map(|(_, e)| e.good.iter().map(|j| (&j.spec.name, j)))
            .collect();
        match spec::dependency_cycle(&jobs, |name| others.get(name).copied()) {
            Some(cycle) => Err(vec![cycle]),
            None => Ok(jobs),
        }
    }

    /// The job set from every file's last good version, in path order.
    fn rebuild(&mut self, notes: &mut Vec<FileNote>) {
        let mut set = JobSet::new();
        for (path, entry) in &mut self.files {
            let clash = match set.extend(entry.good.clone()) {
                Ok(_) => None,
                Err(diagnostics) => Some(diagnostics.iter().map(ToString::to_string).collect()),
            };
            if clash != entry.clash {
                if let Some(problems) = &clash {
                    notes.push(FileNote::Invalid {
                        path: path.clone(),
                        problems: problems.clone(),
                        kept: Vec::new(),
                    });
                } else if entry.clash.is_some() && entry.problem.is_none() {
                    notes
                        .push(FileNote::Loaded { path: path.clone(), jobs: names_of(&entry.good) });
                }
                entry.clash = clash;
            }
        }
        self.jobs = set;
    }
}

fn names_of(jobs: &[Job]) -> Vec<JobName> {
    jobs.iter().map(|j| j.spec.name.clone()).collect()
}

/// Compiles one file's bytes and admits every job in it, reporting every problem.
fn compile(
    path: &Path,
    bytes: &[u8],
    admission: &impl Admission,
) -> Result<Vec<Job>, Vec<Diagnostic>> {
    let jobs = spec::compile_bytes(path, bytes).map_err(|diagnostics| diagnostics.0)?;
    let refused: Vec<Diagnostic> = jobs.iter().flat_map(|job| admission.admit(job)).collect();
    if refused.is_empty() {
        Ok(jobs)
    } else {
        Err(refused)
    }
}

impl FileNote {
    /// Says what became of the file, at the level its news deserves.
    pub fn log(&self) {
        let names = |jobs: &[crate::vocab::JobName]| {
            jobs.iter().map(|j| j.as_str()).collect::<Vec<_>>().join(", ")
        };
        match self {
            FileNote::Loaded { path, jobs } => {
                info!(file = %path.display(), "job file loaded: {}", names(jobs))
            }
            FileNote::Invalid { path, problems, kept } => {
                let kept = if kept.is_empty() {
                    "no earlier version is in force".to_owned()
                } else {
                    format!("its last good version stays in force ({})", names(kept))
                };
                error!(file = %path.display(), "job file not applied, {kept}: {}", problems.join("; "))
            }
            FileNote::Refused { path, reason, kept } => {
                let kept = if kept.is_empty() {
                    String::new()
                } else {
                    format!("; {} stay as last read", names(kept))
                };
                warn!(file = %path.display(), "job file refused: {reason}{kept}")
            }
            FileNote::Removed { path, jobs } => {
                info!(file = %path.display(), "job file removed: {}", names(jobs))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::policy::Refusal;

    fn allow_all(_: &Job) -> Vec<Diagnostic> {
        Vec::new()
    }

    fn up(path: &str, text: &str) -> FileChange {
        FileChange::Upserted { path: PathBuf::from(path), bytes: text.as_bytes().to_vec() }
    }

    fn names(list: &[JobName]) -> Vec<&str> {
        list.iter().map(JobName::as_str).collect()
    }

    const A: &str = "name: a\ncommand: [/bin/true]\n";
    const A2: &str = "name: a\ncommand: [/bin/false]\n";
    const B: &str = "name: b\ncommand: [/bin/true]\n";

    #[test]
    fn added_changed_removed() {
        let mut dir = JobDirectory::new();
        let r = dir.apply(vec![up("/j/a.yaml", A), up("/j/b.yaml", B)], &allow_all);
        assert_eq!(names(&r.diff.added), ["a", "b"]);
        assert_eq!(r.notes.len(), 2);
        let r = dir.apply(vec![up("/j/a.yaml", A2)], &allow_all);
        assert_eq!(names(&r.diff.changed), ["a"]);
        let r = dir.apply(vec![FileChange::Removed { path: "/j/b.yaml".into() }], &allow_all);
        assert_eq!(names(&r.diff.removed), ["b"]);
        assert_eq!(
            r.notes,
            [FileNote::Removed {
                path: "/j/b.yaml".into(),
                jobs: vec![JobName::parse("b").unwrap()]
            }]
        );
    }

    #[test]
    fn an_invalid_version_keeps_the_last_good_one_and_is_reported_once() {
        let mut dir = JobDirectory::new();
        dir.apply(vec![up("/j/a.yaml", A)], &allow_all);
        let r = dir.apply(vec![up("/j/a.yaml", "name: a\ncommand: 3\n")], &allow_all);
        assert!(r.diff.is_empty(), "{:?}", r.diff);
        let [FileNote::Invalid { problems, kept, .. }] = r.notes.as_slice() else {
            panic!("{:?}", r.notes)
        };
        assert!(problems[0].contains("/j/a.yaml:2"), "{problems:?}");
        assert_eq!(names(kept), ["a"]);
        assert!(dir.problem(Path::new("/j/a.yaml")).is_some());
        assert_eq!(dir.file_counts(), (0, 1));
        // An unrelated batch says nothing more about it.
        let r = dir.apply(vec![up("/j/b.yaml", B)], &allow_all);
        assert_eq!(r.notes.len(), 1);
        assert!(matches!(&r.notes[0], FileNote::Loaded { .. }));
        // Valid again: the new version is in force, the problem gone.
        let r = dir.apply(vec![up("/j/a.yaml", A2)], &allow_all);
        assert_eq!(names(&r.diff.changed), ["a"]);
        assert!(dir.problem(Path::new("/j/a.yaml")).is_none());
        assert_eq!(dir.file_counts(), (2, 0));
    }

    /// A file that is not text is reported as `corral validate` reports it:
    /// the position of the offending byte and what is wrong with it.
    #[test]
    fn a_file_that_is_not_text_is_refused_where_its_bad_byte_is() {
        let mut dir = JobDirectory::new();
        let latin1 = FileChange::Upserted {
            path: PathBuf::from("/j/a.yaml"),
            bytes: b"name: a\ndescription: caf\xe9\n".to_vec(),
        };
        let binary =
            FileChange::Upserted { path: PathBuf::from("/j/b.yaml"), bytes: b"name: b\0".to_vec() };
        dir.apply(vec![latin1, binary], &allow_all);
        let problem = |file| dir.problem(Path::new(file)).unwrap().lines();
        assert_eq!(problem("/j/a.yaml"), ["/j/a.yaml:2:17: not UTF-8 text: invalid byte 0xe9"]);
        assert_eq!(
            problem("/j/b.yaml"),
            ["/j/b.yaml:1:8: binary data: NUL byte; a job file must be YAML text"]
        );
        assert_eq!(dir.file_counts(), (0, 2));
    }

    #[test]
    fn a_new_invalid_file_adds_nothing() {
        let mut dir = JobDirectory::new();
        let r = dir.apply(vec![up("/j/x.yaml", "name: [\n")], &allow_all);
        assert!(r.diff.is_empty());
        assert!(matches!(&r.notes[0], FileNote::Invalid { kept, .. } if kept.is_empty()));
        let r = dir.apply(vec![up("/j/y.yaml", "\u{0}\u{ff}")], &allow_all);
        assert!(r.diff.is_empty());
    }

    #[test]
    fn refused_files_keep_their_last_good_version() {
        let mut dir = JobDirectory::new();
        dir.apply(vec![up("/j/a.yaml", A)], &allow_all);
        let reason = Refusal::Unreadable { error: "denied".into() };
        let r =
            dir.apply(vec![FileChange::Refused { path: "/j/a.yaml".into(), reason }], &allow_all);
        assert!(r.diff.is_empty());
        assert!(
            matches!(&r.notes[0], FileNote::Refused { reason, .. } if reason.contains("denied"))
        );
        assert!(dir.jobs().contains(&JobName::parse("a").unwrap()));
    }

    #[test]
    fn jobs_the_agent_does_not_admit_make_the_file_invalid() {
        let mut dir = JobDirectory::new();
        let text = "name: a\ncommand: [/bin/true]\nuser: root\ngroup: shadow\n";
        let r = dir.apply(vec![up("/j/a.yaml", text)], &AdmissionRules::default());
        assert!(r.diff.is_empty());
        let [FileNote::Invalid { problems, .. }] = r.notes.as_slice() else { panic!() };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("/j/a.yaml:3:7: user: it would run as root"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("/j/a.yaml:4:8: group: group \"shadow\" is privileged"));
    }

    #[test]
    fn files_not_applied_are_listed_with_every_standing_problem() {
        let mut dir = JobDirectory::new();
        dir.apply(vec![up("/j/a.yaml", A), up("/j/b.yaml", B)], &allow_all);
        assert_eq!(dir.file_counts(), (2, 0));
        assert!(dir.not_applied().is_empty());

        // An invalid edit of a.yaml, a refused c.yaml, a d.yaml clashing with b.
        let reason = Refusal::Unreadable { error: "denied".into() };
        dir.apply(
            vec![
                up("/j/a.yaml", "name: a\ncommand: 3\n"),
                FileChange::Refused { path: "/j/c.yaml".into(), reason },
                up("/j/d.yaml", B),
            ],
            &allow_all,
        );
        // Listed again by a later batch that changed none of them.
        dir.apply(vec![], &allow_all);
        assert_eq!(dir.file_counts(), (1, 3));
        let listed = dir.not_applied();
        let paths: Vec<&Path> = listed.iter().map(|n| n.path.as_path()).collect();
        assert_eq!(paths, [Path::new("/j/a.yaml"), Path::new("/j/c.yaml"), Path::new("/j/d.yaml")]);
        assert!(listed[0].problems[0].contains("/j/a.yaml:2"), "{:?}", listed[0]);
        assert_eq!(names(&listed[0].in_force), ["a"]);
        assert_eq!(listed[1].problems, ["refused: it cannot be read: denied"]);
        assert!(listed[1].in_force.is_empty());
        assert_eq!(listed[2].problems.len(), 1);
        assert!(listed[2].problems[0].contains('b'), "{:?}", listed[2]);
        assert!(listed[2].in_force.is_empty());

        // Each fixed: nothing is listed.
        dir.apply(
            vec![
                up("/j/a.yaml", A2),
                FileChange::Removed { path: "/j/c.yaml".into() },
                FileChange::Removed { path: "/j/d.yaml".into() },
            ],
            &allow_all,
        );
        assert!(dir.not_applied().is_empty());
        assert_eq!(dir.file_counts(), (2, 0));
    }

    #[test]
    fn an_edit_that_closes_a_dependency_cycle_keeps_the_last_good_version() {
        let mut dir = JobDirectory::new();
        let one = "name: one\ncommand: [/bin/true]\nafter: [two]\n";
        dir.apply(
            vec![up("/j/one.yaml", one), up("/j/two.yaml", "name: two\ncommand: [/bin/true]\n")],
            &allow_all,
        );
        let cyclic = "name: two\ncommand: [/bin/false]\nafter: [one]\n";
        let r = dir.apply(vec![up("/j/two.yaml", cyclic)], &allow_all);
        assert!(r.diff.is_empty(), "{:?}", r.diff);
        let [FileNote::Invalid { problems, kept, .. }] = r.notes.as_slice() else {
            panic!("{:?}", r.notes)
        };
        assert_eq!(
            problems,
            &["/j/two.yaml:3:8: after: dependency cycle: one (/j/one.yaml:3:8) waits for two \
               (/j/two.yaml:3:8), which waits for one; none of them could ever start"]
        );
        assert_eq!(names(kept), ["two"], "the last good version stays in force");
        assert!(dir.jobs().get(&JobName::parse("two").unwrap()).unwrap().spec.after.is_empty());
        // Both new in one batch: the file that would close the cycle is refused.
        let mut dir = JobDirectory::new();
        let r = dir.apply(vec![up("/j/a.yaml", one), up("/j/b.yaml", cyclic)], &allow_all);
        assert_eq!(names(&r.diff.added), ["one"]);
        assert!(dir.problem(Path::new("/j/b.yaml")).is_some());
    }

    #[test]
    fn a_name_clash_keeps_the_first_file_and_is_reported_until_resolved() {
        let mut dir = JobDirectory::new();
        dir.apply(vec![up("/j/1.yaml", A)], &allow_all);
        let r = dir.apply(vec![up("/j/2.yaml", &format!("{A2}---\n{B}"))], &allow_all);
        assert!(r.diff.is_empty(), "{:?}", r.diff);
        assert!(r.notes.iter().any(
            |n| matches!(n, FileNote::Invalid { path, .. } if path == Path::new("/j/2.yaml"))
        ));
        // Nothing repeated on the next batch.
        let r = dir.apply(vec![], &allow_all);
        assert!(r.notes.is_empty());
        // The first file goes: the second one's jobs come in.
        let r = dir.apply(vec![FileChange::Removed { path: "/j/1.yaml".into() }], &allow_all);
        assert_eq!(names(&r.diff.added), ["b"]);
        assert_eq!(names(&r.diff.changed), ["a"]);
    }
}
