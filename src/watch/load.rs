//! Job files read by the commands that run without an agent (`corral validate`,
//! `corral schedule`), with the watcher's own rules: which names are job files, and the
//! file rules a file must pass before it is read (type, links, owner, mode, size). The
//! same files are then compiled by [`crate::spec`], exactly as the agent compiles what
//! the watcher hands it.

use std::fs;
use std::path::{Path, PathBuf};

use super::inspect::{self, Outcome};
use super::name::is_job_file_name;
use super::policy::{Refusal, Rules as FileRules};
use crate::spec::load::at_file;
use crate::spec::{
    compile_bytes, AdmissionRules, Diagnostic, Diagnostics, FieldPath, JobSet, Pos, SpecError,
};

/// Reads one job file the way the agent's watcher does: [`FileRules`] judged on
/// `lstat` before the file is opened (so a fifo is never opened for a blocking
/// read and a device never opened at all), a symlink followed only to a file
/// inside the directory the link is in, and the read capped at the size limit.
pub fn read_checked(path: &Path, rules: &FileRules) -> Result<Vec<u8>, Diagnostics> {
    let fail = |error| Err(at_file(path, Pos::UNKNOWN, error));
    let (Some(name), parent) = (path.file_name(), path.parent()) else {
        return fail(SpecError::Read { reason: "it names no file".into() });
    };
    let parent = parent.filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // The watcher judges links against the canonical jobs directory; here the
    // directory the file is in stands for it.
    let dir = match fs::canonicalize(parent) {
        Ok(dir) => dir,
        Err(e) => return fail(SpecError::Read { reason: e.to_string() }),
    };
    match inspect::inspect(&dir, name, rules).outcome {
        Outcome::Accepted(bytes) => Ok(bytes),
        Outcome::Absent => fail(SpecError::Read { reason: "no such file".into() }),
        Outcome::Refused { reason: Refusal::TooLarge { size, limit }, .. } => {
            fail(SpecError::TooLarge { size, limit })
        }
        Outcome::Refused { reason, .. } => fail(SpecError::Refused { reason: reason.to_string() }),
        Outcome::Unsettled => fail(SpecError::Read {
            reason: "it changed while being read; try again once it is written".into(),
        }),
    }
}

/// The job files directly inside `dir` (not in subdirectories), sorted by name. Which
/// names are job files is the agent's watcher's rule, so that `corral validate DIR` checks
/// exactly the files the agent would look at, whatever their type: a fifo or a link
/// named like a job file is listed, and [`read_checked`] refuses it.
pub fn job_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !is_job_file_name(&entry.file_name()) {
            continue;
        }
        // Not followed: a link is judged by the file rules, like the watcher does.
        if entry.file_type().is_ok_and(|t| !t.is_dir()) {
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

/// What files are read and which jobs taken when loading paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRules {
    /// The watcher's rules for reading a file.
    pub files: FileRules,
    /// An agent's admission rules, when its verdict is wanted too.
    pub admission: Option<AdmissionRules>,
}

/// Loads files and directories (their job files, see [`job_files`]). A job name defined
/// twice is an error in the file that defines it second, which then contributes no jobs.
pub fn load_paths<P: AsRef<Path>>(paths: &[P], rules: &LoadRules) -> Load {
    let mut files = Vec::new();
    let mut set = JobSet::default();
    for path in paths {
        let path = path.as_ref();
        if path.is_dir() {
            match job_files(path) {
                Ok(found) => {
                    for file in found {
                        files.push(load_one(&file, rules, &mut set));
                    }
                }
                Err(e) => {
                    let error = SpecError::Read { reason: e.to_string() };
                    let diagnostic = Diagnostic::new(path, Pos::UNKNOWN, FieldPath::root(), error);
                    files.push(FileLoad {
                        path: path.to_owned(),
                        jobs: 0,
                        diagnostics: vec![diagnostic],
                    });
                }
            }
        } else {
            files.push(load_one(path, rules, &mut set));
        }
    }
    Load { files, jobs: set }
}

fn load_one(path: &Path, rules: &LoadRules, set: &mut JobSet) -> FileLoad {
    let refused = |diagnostics| FileLoad { path: path.to_owned(), jobs: 0, diagnostics };
    let jobs = match read_checked(path, &rules.files).and_then(|b| compile_bytes(path, &b)) {
        Ok(jobs) => jobs,
        Err(diagnostics) => return refused(diagnostics.0),
    };
    if let Some(admission) = &rules.admission {
        let problems: Vec<Diagnostic> = jobs.iter().flat_map(|job| admission.check(job)).collect();
        if !problems.is_empty() {
            return refused(problems);
        }
    }
    match set.extend(jobs) {
        Ok(count) => FileLoad { path: path.to_owned(), jobs: count, diagnostics: Vec::new() },
        Err(diagnostics) => refused(diagnostics),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::JobName;

    #[test]
    fn job_file_names() {
        let is_job_file_name = |name: &str| is_job_file_name(std::ffi::OsStr::new(name));
        for yes in ["a.yaml", "a.yml", "nightly-etl.yaml", "x.y.yaml"] {
            assert!(is_job_file_name(yes), "{yes}");
        }
        for no in [
            "a.yaml~",
            ".a.yaml.swp",
            ".#a.yaml",
            "#a.yaml#",
            "a.yaml.bak",
            "a.json",
            "README",
            ".hidden.yaml",
            "a.YAML",
        ] {
            assert!(!is_job_file_name(no), "{no}");
        }
    }

    fn rules() -> LoadRules {
        LoadRules { files: FileRules::checking_as(nix::unistd::geteuid()), admission: None }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn directories_give_their_job_files_in_name_order_without_recursing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.yml", "name: b\ncommand: [/bin/true]\n");
        write(dir.path(), "a.yaml", "name: a\ncommand: [/bin/true]\n");
        write(dir.path(), "a.yaml~", "garbage: [");
        write(dir.path(), ".#a.yaml", "garbage: [");
        write(dir.path(), ".a.yaml.swp", "\0\0");
        write(dir.path(), "notes.txt", "hello");
        fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        write(&dir.path().join("sub.yaml"), "c.yaml", "name: c\ncommand: [/bin/true]\n");
        let files = job_files(dir.path()).unwrap();
        let names: Vec<_> =
            files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["a.yaml", "b.yml"]);

        let load = load_paths(&[dir.path().to_owned()], &rules());
        assert!(load.is_ok());
        assert_eq!(load.jobs.names().map(JobName::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(load.files.iter().map(|f| f.jobs).collect::<Vec<_>>(), [1, 1]);
    }

    #[test]
    fn a_duplicate_name_names_both_files_and_rejects_the_second() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yaml", "name: etl\ncommand: [/bin/true]\n");
        let b = write(
            dir.path(),
            "b.yaml",
            "name: other\ncommand: [/bin/true]\n---\nname: etl\ncommand: [/bin/false]\n",
        );
        let load = load_paths(&[a.clone(), b.clone()], &rules());
        assert!(!load.is_ok());
        assert!(load.files[0].is_ok());
        let problems: Vec<_> = load.diagnostics().map(|d| d.to_string()).collect();
        assert_eq!(
            problems,
            [format!(
                "{}:4:1: name: job \"etl\" is also defined at {}:1:1",
                b.display(),
                a.display()
            )]
        );
        // The second file is rejected whole: its other job is not taken either.
        assert_eq!(load.jobs.names().map(JobName::as_str).collect::<Vec<_>>(), ["etl"]);
        assert_eq!(load.jobs.get(&JobName::parse("etl").unwrap()).unwrap().origin.file, a);
    }

    #[test]
    fn unreadable_paths_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "good.yaml", "name: good\ncommand: [/bin/true]\n");
        let missing = dir.path().join("missing.yaml");
        let load = load_paths(&[missing.clone(), good], &rules());
        assert_eq!(load.files.len(), 2);
        assert!(!load.files[0].is_ok());
        assert!(load.files[0].diagnostics[0]
            .to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())));
        assert!(load.files[1].is_ok());
        assert_eq!(load.jobs.len(), 1);
    }
}
