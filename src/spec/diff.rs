//! What changed between two sets of jobs: the plan for a reload.

use super::load::JobSet;
use crate::vocab::JobName;

/// Jobs to start managing, to reconfigure, and to let go, each in name order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobSetDiff {
    /// In the new set only.
    pub added: Vec<JobName>,
    /// In both, with specs that differ.
    pub changed: Vec<JobName>,
    /// In the old set only.
    pub removed: Vec<JobName>,
}

impl JobSetDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Compares two job sets by name and spec. Where a job is defined (file, line) does not
/// count: moving a job between files, or reordering a file, changes nothing that runs.
pub fn diff(old: &JobSet, new: &JobSet) -> JobSetDiff {
    let mut result = JobSetDiff::default();
    for job in new.iter() {
        match old.get(&job.spec.name) {
            None => result.added.push(job.spec.name.clone()),
            Some(before) if before.spec != job.spec => result.changed.push(job.spec.name.clone()),
            Some(_) => {}
        }
    }
    result.removed = old.names().filter(|name| !new.contains(name)).cloned().collect();
    result
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::load::compile_str;

    fn set(file: &str, text: &str) -> JobSet {
        JobSet::from_jobs(compile_str(Path::new(file), text).unwrap()).unwrap()
    }

    fn names(list: &[JobName]) -> Vec<&str> {
        list.iter().map(JobName::as_str).collect()
    }

    const A: &str = "name: a\ncommand: [/bin/true]\n";
    const B: &str = "name: b\ncommand: [/bin/true]\n";
    const B2: &str = "name: b\ncommand: [/bin/false]\n";
    const C: &str = "name: c\ncommand: [/bin/true]\n";

    #[test]
    fn identical_sets_have_no_diff() {
        let old = set("x.yaml", &format!("{A}---\n{B}"));
        assert!(diff(&old, &old.clone()).is_empty());
        assert!(diff(&JobSet::new(), &JobSet::new()).is_empty());
    }

    #[test]
    fn added_changed_removed() {
        let old = set("x.yaml", &format!("{A}---\n{B}"));
        let new = set("x.yaml", &format!("{B2}---\n{C}"));
        let d = diff(&old, &new);
        assert_eq!(names(&d.added), ["c"]);
        assert_eq!(names(&d.changed), ["b"]);
        assert_eq!(names(&d.removed), ["a"]);
    }

    #[test]
    fn from_nothing_and_to_nothing() {
        let jobs = set("x.yaml", &format!("{A}---\n{B}"));
        let up = diff(&JobSet::new(), &jobs);
        assert_eq!(names(&up.added), ["a", "b"]);
        assert!(up.changed.is_empty() && up.removed.is_empty());
        let down = diff(&jobs, &JobSet::new());
        assert_eq!(names(&down.removed), ["a", "b"]);
    }

    #[test]
    fn moving_a_job_or_reformatting_it_is_not_a_change() {
        let old = set("one.yaml", &format!("{A}---\n{B}"));
        let new = set("two.yaml", &format!("# moved\n{B}---\nname: a\ncommand:\n  - /bin/true\n"));
        assert!(diff(&old, &new).is_empty());
    }

    #[test]
    fn any_field_change_is_a_change() {
        let old = set("x.yaml", A);
        for edit in [
            "name: a\ncommand: [/bin/true]\npriority: 51\n",
            "name: a\ncommand: [/bin/true]\nenv: {X: y}\n",
            "name: a\ncommand: [/bin/true]\nresources: {memory: {hard: 1Gi}}\n",
            "name: a\ncommand: [/bin/true]\nschedule: '@daily'\n",
            "name: a\ncommand: [/bin/true]\nisolation: {namespaces: [pid]}\n",
            "name: a\ncommand: [/bin/true]\ndescription: now documented\n",
        ] {
            let new = set("x.yaml", edit);
            assert_eq!(names(&diff(&old, &new).changed), ["a"], "{edit}");
        }
        // Writing a default out explicitly is not a change.
        let explicit =
            set("x.yaml", "name: a\ncommand: [/bin/true]\npriority: 50\npreemption: never\n");
        assert!(diff(&old, &explicit).is_empty());
    }
}
