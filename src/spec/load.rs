//! Job files on disk: which files are job files, compiling them, and the set of jobs they
//! define together.
//!
//! A file is accepted whole or not at all: if any document in it is wrong, none of its
//! jobs are taken, so a half-edited file never half-applies.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::check::Checker;
use super::error::{Diagnostic, Diagnostics, FieldPath, SpecError};
use super::job::{self, JobSpec};
use super::name::JobName;
use super::source;
use super::tree::Pos;

/// Where a job was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// The position of the job's document (its first key).
    pub pos: Pos,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.pos)
    }
}

/// A compiled job and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub spec: JobSpec,
    pub origin: Origin,
}

/// Compiles the text of a job file. `file` is used in diagnostics only.
pub fn compile_str(file: &Path, text: &str) -> Result<Vec<Job>, Diagnostics> {
    let mut cx: Checker = Checker::new(file);
    let (documents, yaml_errors) = source::documents(text);
    let mut jobs = Vec::new();
    for document in &documents {
        if let Some(spec) = job::compile(&mut cx, document) {
            jobs.push(Job { spec, origin: Origin { file: file.to_owned(), pos: document.pos } });
        }
    }
    for (pos, error) in yaml_errors {
        cx.report(pos, &FieldPath::root(), error);
    }
    let diagnostics = cx.into_diagnostics();
    if diagnostics.is_empty() {
        Ok(jobs)
    } else {
        Err(Diagnostics(diagnostics))
    }
}

/// Reads and compiles one job file.
pub fn load_file(path: &Path) -> Result<Vec<Job>, Diagnostics> {
    match source::read_file(path, source::MAX_FILE_BYTES) {
        Ok(text) => compile_str(path, &text),
        Err((pos, error)) => Err(Diagnostics(vec![Diagnostic::new(path, pos, FieldPath::root(), error)])),
    }
}

/// Whether a directory entry is a job file: `*.yaml` or `*.yml`, not hidden. Hidden
/// names cover editor droppings that end in `.yaml` (Emacs' `.#job.yaml` lock links, Vim's
/// `.job.yaml.swp`); backups like `job.yaml~` or `job.yaml.bak` fail the suffix test.
pub fn is_job_file_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The job files directly inside `dir` (not in subdirectories), sorted by name.
pub fn job_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let read_error = |e: std::io::Error| {
        Diagnostic::new(dir, Pos::UNKNOWN, FieldPath::root(), SpecError::Read { reason: e.to_string() })
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        // `metadata` follows symlinks: a link to a job file counts, a link to a directory
        // does not.
        let is_file = fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
        if is_file && is_job_file_name(&name) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The outcome for one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileLoad {
    pub path: PathBuf,
    /// How many jobs the file defines (0 when it has problems).
    pub jobs: usize,
    pub diagnostics: Vec<Diagnostic>,
}

impl FileLoad {
    pub fn is_ok(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// The outcome of loading several files and directories together.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Every file looked at, in the order given (directories expanded in name order).
    pub files: Vec<FileLoad>,
    /// The jobs of every file without problems.
    pub jobs: JobSet,
}

impl Load {
    pub fn is_ok(&self) -> bool {
        self.files.iter().all(FileLoad::is_ok)
    }

    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.diagnostics.iter())
    }
}

/// Loads files and directories (their job files, see [`job_files`]). A job name defined
/// twice is an error in the file that defines it second, which then contributes no jobs.
pub fn load_paths(paths: &[PathBuf]) -> Load {
    let mut files = Vec::new();
    let mut set = JobSet::default();
    for path in paths {
        if path.is_dir() {
            match job_files(path) {
                Ok(found) => {
                    for file in found {
                        files.push(load_one(&file, &mut set));
                    }
                }
                Err(diagnostic) => {
                    files.push(FileLoad { path: path.clone(), jobs: 0, diagnostics: vec![diagnostic] })
                }
            }
        } else {
            files.push(load_one(path, &mut set));
        }
    }
    Load { files, jobs: set }
}

fn load_one(path: &Path, set: &mut JobSet) -> FileLoad {
    let jobs = match load_file(path) {
        Ok(jobs) => jobs,
        Err(diagnostics) => return FileLoad { path: path.to_owned(), jobs: 0, diagnostics: diagnostics.0 },
    };
    match set.extend(jobs) {
        Ok(count) => FileLoad { path: path.to_owned(), jobs: count, diagnostics: Vec::new() },
        Err(diagnostics) => FileLoad { path: path.to_owned(), jobs: 0, diagnostics },
    }
}

/// Jobs by name; no name twice.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSet {
    jobs: BTreeMap<JobName, Job>,
}

impl JobSet {
    pub fn new() -> JobSet {
        JobSet::default()
    }

    /// Adds all of `jobs` (typically one file's), or none of them if any name is taken,
    /// by the set or by another of `jobs`. Returns how many were added.
    pub fn extend(&mut self, jobs: Vec<Job>) -> Result<usize, Vec<Diagnostic>> {
        let mut diagnostics = Vec::new();
        let mut seen: BTreeMap<&JobName, &Origin> = BTreeMap::new();
        for job in &jobs {
            let name = &job.spec.name;
            let earlier = self.jobs.get(name).map(|j| &j.origin).or_else(|| seen.get(name).copied());
            if let Some(other) = earlier {
                diagnostics.push(Diagnostic::new(
                    &job.origin.file,
                    job.origin.pos,
                    FieldPath::root().key("name"),
                    SpecError::DuplicateJob { name: name.to_string(), other: other.to_string() },
                ));
            }
            seen.entry(name).or_insert(&job.origin);
        }
        if !diagnostics.is_empty() {
            return Err(diagnostics);
        }
        let count = jobs.len();
        for job in jobs {
            self.jobs.insert(job.spec.name.clone(), job);
        }
        Ok(count)
    }

    /// A set from jobs, reporting every repeated name.
    pub fn from_jobs(jobs: Vec<Job>) -> Result<JobSet, Diagnostics> {
        let mut set = JobSet::new();
        set.extend(jobs).map_err(Diagnostics)?;
        Ok(set)
    }

    pub fn get(&self, name: &JobName) -> Option<&Job> {
        self.jobs.get(name)
    }

    pub fn contains(&self, name: &JobName) -> bool {
        self.jobs.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Jobs in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    pub fn names(&self) -> impl Iterator<Item = &JobName> {
        self.jobs.keys()
    }
}
