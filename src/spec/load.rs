//! Job files compiled, and the set of jobs they define together. Which files are job
//! files, and the rules a file must pass before it is read, are the watcher's
//! ([`crate::watch::load`] for the commands that run without an agent).
//!
//! A file is accepted whole or not at all: if any document in it is wrong, none of its
//! jobs are taken, so a half-edited file never half-applies.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use super::check::Checker;
use super::error::{Diagnostic, Diagnostics, FieldPath, SpecError};
use super::job::{self, JobSpec};
use super::source;
use super::tree::{Node, Pos, Value};
use crate::vocab::JobName;

/// Where a job was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// The position of the job's document (its first key).
    pub pos: Pos,
    /// Where the values of the fields [`super::admission`] judges are written,
    /// by dotted path, for fields the document sets.
    pub fields: BTreeMap<&'static str, Pos>,
}

/// The fields whose positions an [`Origin`] keeps: those [`super::admission`]
/// judges, and `after`, where a dependency cycle through other files is told.
const ADMISSION_FIELDS: &[&str] =
    &["user", "group", "isolation", "isolation.namespaces", "after", "nodes", "node_selector"];

impl Origin {
    fn new(file: &Path, document: &Node) -> Origin {
        let fields = ADMISSION_FIELDS
            .iter()
            .filter_map(|&field| value_at(document, field).map(|node| (field, node.pos)))
            .collect();
        Origin { file: file.to_owned(), pos: document.pos, fields }
    }

    /// Where `field` (a dotted path) is written; else the closest enclosing
    /// field that is, else the document.
    pub fn pos_of(&self, field: &str) -> Pos {
        let mut path = field;
        loop {
            if let Some(&pos) = self.fields.get(path) {
                return pos;
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => return self.pos,
            }
        }
    }
}

/// The value at a dotted path of mapping keys.
fn value_at<'a>(document: &'a Node, path: &str) -> Option<&'a Node> {
    path.split('.').try_fold(document, |node, key| match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            .map(|(_, v)| v),
        _ => None,
    })
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
            jobs.push(Job { spec, origin: Origin::new(file, document) });
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

/// Compiles one document already parsed (a submission with its overrides
/// applied, see [`super::submission`]).
pub fn compile_document(file: &Path, document: &Node) -> Result<Job, Diagnostics> {
    let mut cx: Checker = Checker::new(file);
    let spec = job::compile(&mut cx, document);
    let diagnostics = cx.into_diagnostics();
    match spec {
        Some(spec) if diagnostics.is_empty() => {
            Ok(Job { spec, origin: Origin::new(file, document) })
        }
        _ => Err(Diagnostics(diagnostics)),
    }
}

/// Compiles the contents of a job file as read: refused as a whole, with the
/// offending byte's position, when it is not text.
pub fn compile_bytes(file: &Path, bytes: &[u8]) -> Result<Vec<Job>, Diagnostics> {
    match source::decode(bytes) {
        Ok(text) => compile_str(file, text),
        Err((pos, error)) => Err(at_file(file, pos, error)),
    }
}

/// Reads and compiles one job file.
pub fn load_file(path: &Path) -> Result<Vec<Job>, Diagnostics> {
    match source::read_file(path, source::MAX_FILE_BYTES) {
        Ok(text) => compile_str(path, &text),
        Err((pos, error)) => Err(at_file(path, pos, error)),
    }
}

/// A problem of the whole file (reading it, its encoding), at `pos`.
pub fn at_file(path: &Path, pos: Pos, error: SpecError) -> Diagnostics {
    Diagnostics(vec![Diagnostic::new(path, pos, FieldPath::root(), error)])
}

/// A dependency cycle that `jobs` (one file's) would close among
/// themselves and the jobs `others` finds by name, told at the `after` of the
/// first of `jobs` on it, with every job on the cycle and where it is
/// defined (in other files too).
pub fn dependency_cycle<'a>(
    jobs: &'a [Job],
    others: impl Fn(&JobName) -> Option<&'a Job>,
) -> Option<Diagnostic> {
    if jobs.iter().all(|j| j.spec.after.is_empty()) {
        return None;
    }
    let adding: BTreeMap<&JobName, &Job> = jobs.iter().map(|j| (&j.spec.name, j)).collect();
    let find = |name: &JobName| adding.get(name).copied().or_else(|| others(name));
    let cycle = super::after::find_cycle(adding.keys().copied(), |name| {
        find(name).map(|j| j.spec.after.as_slice())
    })?;
    let at =
        cycle.iter().find_map(|name| adding.get(name)).expect("the cycle goes through a new job");
    let told: Vec<String> = cycle
        .iter()
        .filter_map(find)
        .map(|job| {
            format!(
                "{} ({}:{})",
                job.spec.name,
                job.origin.file.display(),
                job.origin.pos_of("after")
            )
        })
        .collect();
    Some(Diagnostic::new(
        &at.origin.file,
        at.origin.pos_of("after"),
        FieldPath::root().key("after"),
        SpecError::DependencyCycle { jobs: told.join(" waits for "), first: cycle[0].to_string() },
    ))
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
            let earlier =
                self.jobs.get(name).map(|j| &j.origin).or_else(|| seen.get(name).copied());
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
        if let Some(cycle) = self.cycle_with(&jobs) {
            return Err(vec![cycle]);
        }
        let count = jobs.len();
        for job in jobs {
            self.jobs.insert(job.spec.name.clone(), job);
        }
        Ok(count)
    }

    /// A dependency cycle that `jobs` would close if added (see [`dependency_cycle`]).
    fn cycle_with(&self, jobs: &[Job]) -> Option<Diagnostic> {
        dependency_cycle(jobs, |name| self.jobs.get(name))
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn problems(text: &str) -> Vec<String> {
        compile_str(Path::new("jobs/etl.yaml"), text)
            .unwrap_err()
            .into_iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn every_mistake_in_a_file_is_reported_with_its_line() {
        let text = "\
name: Nightly-ETL
command: [/usr/bin/python3, etl.py]
schedule: '0 2 * * *'
timezone: Europe/Berlln
resources:
  cpus: 2
  cpu_weight: 100
  memory:
    soft: 2Gi
    hard: 1Gi
restart: {on: failure, backoff: 5m..10s}
isolation:
  namespaces: [pid, pid]
";
        assert_eq!(
            problems(text),
            [
                "jobs/etl.yaml:1:7: name: invalid name \"Nightly-ETL\": it contains the upper-case letter 'N' at position 1; names are lower case",
                "jobs/etl.yaml:4:11: timezone: unknown time zone \"Europe/Berlln\"; use an IANA name such as UTC or Europe/Berlin",
                "jobs/etl.yaml:7:3: resources.cpu_weight: `cpus` and `cpu_weight` cannot both be set: exclusive cores are not shared, so there is nothing to weigh",
                "jobs/etl.yaml:9:5: resources.memory.soft: `soft` (2Gi) must not be larger than `hard` (1Gi)",
                "jobs/etl.yaml:11:33: restart.backoff: invalid backoff \"5m..10s\": the first wait is longer than the longest (write min..max)",
                "jobs/etl.yaml:13:21: isolation.namespaces[1]: \"pid\" is listed twice",
            ]
        );
    }

    #[test]
    fn mistakes_in_several_documents_are_all_reported() {
        let text = "name: a\ncommand: [/bin/true]\npriority: high\n---\nname: b\n---\nname: c\ncommand: [/bin/true]\n";
        assert_eq!(
            problems(text),
            [
                "jobs/etl.yaml:3:11: priority: expected an integer, found the string \"high\"",
                "jobs/etl.yaml:5:1: required field `command` is missing",
            ]
        );
    }

    #[test]
    fn a_syntax_error_is_reported_with_the_problems_before_it() {
        let text = "name: a\ncommand: [/bin/true]\ntimeout: 1x\n---\nname: b\n  bad: indent\n";
        let all = problems(text);
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(all[0].starts_with("jobs/etl.yaml:3:10: timeout: invalid duration"), "{all:#?}");
        assert!(all[1].starts_with("jobs/etl.yaml:6:6: YAML: "), "{all:#?}");
    }

    #[test]
    fn several_jobs_per_file_in_order() {
        let jobs = compile_str(
            Path::new("x.yaml"),
            "name: a\ncommand: [/bin/true]\n---\n# second\nname: b\ncommand: [/bin/true]\n",
        )
        .unwrap();
        let found: Vec<_> =
            jobs.iter().map(|j| (j.spec.name.as_str(), j.origin.to_string())).collect();
        assert_eq!(found, [("a", "x.yaml:1:1".to_owned()), ("b", "x.yaml:5:1".to_owned())]);
        assert!(compile_str(Path::new("x.yaml"), "# nothing here\n").unwrap().is_empty());
    }

    #[test]
    fn a_duplicate_within_one_file_is_reported_too() {
        let jobs = compile_str(
            Path::new("x.yaml"),
            "name: a\ncommand: [/bin/true]\n---\nname: a\ncommand: [/bin/true]\n",
        )
        .unwrap();
        let problems: Vec<_> =
            JobSet::from_jobs(jobs).unwrap_err().into_iter().map(|d| d.to_string()).collect();
        assert_eq!(problems, ["x.yaml:4:1: name: job \"a\" is also defined at x.yaml:1:1"]);
    }

    #[test]
    fn a_dependency_cycle_across_files_names_every_job_and_file_and_takes_none() {
        let file = |path: &str, text: &str| compile_str(Path::new(path), text).unwrap();
        let mut set = JobSet::new();
        set.extend(file("a.yaml", "name: a\ncommand: [/bin/true]\nafter: [b]\n")).unwrap();
        set.extend(file(
            "b.yaml",
            "name: b\ncommand: [/bin/true]\nafter: [{job: c, when: ended}]\n",
        ))
        .unwrap();
        let problems: Vec<_> = set
            .extend(file("c.yaml", "name: c\ncommand: [/bin/true]\n\nafter:\n  - a\n"))
            .unwrap_err()
            .into_iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            problems,
            ["c.yaml:5:3: after: dependency cycle: a (a.yaml:3:8) waits for b (b.yaml:3:8) \
              waits for c (c.yaml:5:3), which waits for a; none of them could ever start"]
        );
        assert!(
            !set.contains(&JobName::parse("c").unwrap()),
            "the file is taken whole or not at all"
        );
        // Within one file too; a chain that ends at a job not loaded is fine.
        let one = file("x.yaml", "name: x\ncommand: [/bin/true]\nafter: [y]\n---\nname: y\ncommand: [/bin/true]\nafter: [x]\n");
        assert_eq!(JobSet::from_jobs(one).unwrap_err().len(), 1);
        set.extend(file("d.yaml", "name: d\ncommand: [/bin/true]\nafter: [c, zz]\n")).unwrap();
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn hostile_files_are_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::File::create(&big).unwrap().set_len(source::MAX_FILE_BYTES + 1).unwrap();
        let binary = write(dir.path(), "bin.yaml", "name: x\0\n");
        let latin1 = dir.path().join("latin1.yaml");
        std::fs::write(&latin1, b"name: caf\xe9\n").unwrap();
        let deep = write(
            dir.path(),
            "deep.yaml",
            &("a: ".to_owned() + &"[".repeat(200) + &"]".repeat(200)),
        );
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            bomb += &format!(
                "b{i}: &b{i} [{}]\n",
                vec![if i == 0 { "*a".to_owned() } else { format!("*b{}", i - 1) }; 10].join(", ")
            );
        }
        let bomb = write(dir.path(), "bomb.yaml", &bomb);
        let many =
            write(dir.path(), "many.yaml", &"name: a\n---\n".repeat(source::MAX_DOCUMENTS + 1));

        let message = |path: &Path| load_file(path).unwrap_err().0[0].to_string();
        assert_eq!(
            message(&big),
            format!("{}: file is 1048577 bytes; files are limited to 1048576 bytes", big.display())
        );
        assert_eq!(
            message(&binary),
            format!(
                "{}:1:8: binary data: NUL byte; a job file must be YAML text",
                binary.display()
            )
        );
        assert_eq!(
            message(&latin1),
            format!("{}:1:10: not UTF-8 text: invalid byte 0xe9", latin1.display())
        );
        assert!(message(&deep).contains("YAML: "), "{}", message(&deep));
        assert!(message(&bomb).contains("YAML: "), "{}", message(&bomb));
        let many_problems = load_file(&many).unwrap_err();
        assert!(
            many_problems
                .iter()
                .any(|d| d.error == SpecError::TooManyDocuments { limit: source::MAX_DOCUMENTS }),
            "{many_problems}"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}") {
            let _ = compile_str(Path::new("x.yaml"), &text);
        }

        #[test]
        fn yaml_shaped_text_never_panics(
            text in "([a-z_]{1,8}|[0-9.]{1,6}|[-:,\\[\\]{}&*!|>'\"#~ ]|\n {0,4}){0,120}"
        ) {
            let _ = compile_str(Path::new("x.yaml"), &text);
        }

        #[test]
        fn every_field_with_any_scalar_never_panics(
            field in proptest::sample::select(crate::spec::job::FIELDS),
            value in "[ -~]{0,20}",
        ) {
            let text = format!("name: t\ncommand: [/bin/true]\n{field}: {value}\n");
            let _ = compile_str(Path::new("x.yaml"), &text);
        }

        #[test]
        fn every_nested_field_with_any_scalar_never_panics(
            section in proptest::sample::select(&[
                "resources: {cpus: 1, FIELD: VALUE}",
                "resources: {memory: {hard: 64Mi, FIELD: VALUE}}",
                "resources: {memory: {hard: 64Mi}}\noom: {action: grow, FIELD: VALUE}",
                "resources: {memory: {hard: 64Mi}}\noom: {action: requeue, FIELD: VALUE}",
                "restart: {on: failure, FIELD: VALUE}",
                "isolation: {FIELD: VALUE}",
                "isolation: {mounts: [{kind: tmpfs, FIELD: VALUE}]}",
                "isolation: {mounts: [{source: /a, FIELD: VALUE}]}",
                "rlimits: {FIELD: VALUE}",
                "schedule: '@daily'\nhistory: {FIELD: VALUE}",
            ][..]),
            field in "(cpus|cpu_weight|cpu_quota|numa|pids|soft|high|hard|swap|grow_to|grow_step|\
                      requeue_factor|requeue_max|on|attempts|backoff|namespaces|rootfs|hostname|\
                      readonly|capabilities|target|size|kind|nofile|core|cpu|successful|failed)",
            value in "[ -~]{0,16}",
        ) {
            let section = section.replace("FIELD", &field).replace("VALUE", &format!("{value:?}"));
            let text = format!("name: t\ncommand: [/bin/true]\n{section}\n");
            let _ = compile_str(Path::new("x.yaml"), &text);
        }
    }
}
