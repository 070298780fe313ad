//! Dependencies between jobs: `after: [{job: extract, when: succeeded}]`.
//!
//! A job with `after` waits until the latest run of each job it names has
//! ended as asked. This file compiles the field and finds dependency cycles
//! in a set of jobs, which may span files; what a waiting run does is the
//! scheduler's ([`crate::scheduler::dependency`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::check::{choice, Checker};
use super::error::{FieldPath, SpecError};
use super::tree::{Node, Value};
use crate::vocab::JobName;

/// How a prerequisite's run must have ended (Slurm's afterok, afternotok, afterany).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum AfterWhen {
    /// It succeeded. The default: a pipeline step needs its input.
    #[default]
    Succeeded,
    /// It did not succeed: it failed or was killed.
    Failed,
    /// It ended, whichever way.
    Ended,
}
choice!(AfterWhen { "succeeded" => Succeeded, "failed" => Failed, "ended" => Ended });

/// One prerequisite of a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct After {
    pub job: JobName,
    pub when: AfterWhen,
}

impl fmt::Display for After {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.job, self.when)
    }
}

/// Every prerequisite of a job, as one line: `extract succeeded, clean ended`.
pub fn describe(after: &[After]) -> String {
    after.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Compiles `after`, a list whose items are `{job: NAME, when: WHEN}` or a
/// bare `NAME` (when: succeeded). `own`: the job's own name, if it compiled,
/// which it may not name.
pub(super) fn compile(
    cx: &mut Checker,
    node: Option<&Node>,
    path: &FieldPath,
    own: Option<&JobName>,
) -> Option<Vec<After>> {
    let Some(node) = node else { return Some(Vec::new()) };
    let items = cx.seq(node, path)?;
    let mut out: Vec<After> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = path.index(i);
        let Some((entry, job_node)) = entry(cx, item, &item_path) else {
            ok = false;
            continue;
        };
        if own == Some(&entry.job) {
            ok = false;
            cx.report(
                job_node.pos,
                &item_path,
                SpecError::Invalid {
                    what: "dependency",
                    value: entry.job.to_string(),
                    reason: "a job cannot wait for itself".into(),
                },
            );
            continue;
        }
        if out.iter().any(|a| a.job == entry.job) {
            ok = false;
            cx.report(
                job_node.pos,
                &item_path,
                SpecError::DuplicateItem { value: entry.job.to_string() },
            );
            continue;
        }
        out.push(entry);
    }
    ok.then_some(out)
}

/// One item; with the node of its job name, where problems with it are reported.
fn entry<'n>(cx: &mut Checker, item: &'n Node, path: &FieldPath) -> Option<(After, &'n Node)> {
    let name = |cx: &mut Checker, node: &Node, path: &FieldPath| {
        cx.parsed(node, path, |text| {
            JobName::parse(text)
                .map_err(|reason| SpecError::Name { value: text.to_owned(), reason })
        })
    };
    if let Value::Str(_) = &item.value {
        let job = name(cx, item, path)?;
        return Some((After { job, when: AfterWhen::default() }, item));
    }
    if !matches!(item.value, Value::Map(_)) {
        let expected = "a job name or a mapping such as {job: extract, when: succeeded}";
        cx.report(item.pos, path, SpecError::wrong_type(expected, &item.value));
        return None;
    }
    let fields = cx.map(item, path, &["job", "when"])?;
    let job_node = fields.require(cx, "job");
    let job = job_node.and_then(|n| name(cx, n, &fields.field("job")));
    let when = match fields.get("when") {
        None => Some(AfterWhen::default()),
        Some(n) => cx.choice(n, &fields.field("when")),
    };
    Some((After { job: job?, when: when? }, job_node?))
}

/// A dependency cycle among jobs: `a → b → a` is `[a, b]`, each job waiting
/// for the next and the last for the first.
pub type Cycle = Vec<JobName>;

/// A cycle that goes through one of `start`, in the graph where each job
/// waits for the jobs `after_of` names (`None`: the job is not in the set,
/// which ends a path: a job not loaded cannot close a cycle). The cycle
/// begins at the smallest name in it, so the same cycle is always told the
/// same way.
pub fn find_cycle<'a>(
    start: impl IntoIterator<Item = &'a JobName>,
    after_of: impl Fn(&JobName) -> Option<&'a [After]>,
) -> Option<Cycle> {
    // Depth-first search with the path kept: a job met again while still on
    // the path closes a cycle. `done` jobs lead to no cycle.
    let mut done: BTreeSet<JobName> = BTreeSet::new();
    for root in start {
        if done.contains(root) {
            continue;
        }
        let mut path: Vec<JobName> = vec![root.clone()];
        let mut on_path: BTreeMap<JobName, usize> = BTreeMap::from([(root.clone(), 0)]);
        // For each job on the path, the index of its next prerequisite to visit.
        let mut next: Vec<usize> = vec![0];
        while let Some(job) = path.last().cloned() {
            let prerequisites = after_of(&job).unwrap_or(&[]);
            let i = *next.last().expect("one index per job on the path");
            let Some(after) = prerequisites.get(i) else {
                path.pop();
                next.pop();
                on_path.remove(&job);
                done.insert(job);
                continue;
            };
            *next.last_mut().expect("one index per job on the path") += 1;
            let target = &after.job;
            if let Some(&at) = on_path.get(target) {
                return Some(rotate(path[at..].to_vec()));
            }
            if done.contains(target) || after_of(target).is_none() {
                continue;
            }
            on_path.insert(target.clone(), path.len());
            path.push(target.clone());
            next.push(0);
        }
    }
    None
}

/// The cycle starting at its smallest name.
fn rotate(mut cycle: Cycle) -> Cycle {
    if let Some(min) = cycle.iter().enumerate().min_by_key(|(_, n)| *n).map(|(i, _)| i) {
        cycle.rotate_left(min);
    }
    cycle
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    fn name(n: &str) -> JobName {
        JobName::parse(n).unwrap()
    }

    #[test]
    fn entries_default_to_succeeded_and_take_bare_names() {
        let spec = ok("after:\n  - {job: extract}\n  - {job: clean, when: ended}\n  - audit\n");
        assert_eq!(
            spec.after,
            [
                After { job: name("extract"), when: AfterWhen::Succeeded },
                After { job: name("clean"), when: AfterWhen::Ended },
                After { job: name("audit"), when: AfterWhen::Succeeded },
            ]
        );
        assert_eq!(describe(&spec.after), "extract succeeded, clean ended, audit succeeded");
        assert!(ok("").after.is_empty());
        assert!(ok("after: []\n").after.is_empty());
        assert_eq!(ok("after: [{job: x, when: failed}]\n").after[0].when, AfterWhen::Failed);
    }

    #[test]
    fn every_mistake_is_reported_at_its_item() {
        assert_eq!(
            errors("after:\n  - {job: t}\n  - {job: Extract}\n  - {when: ok, job: x}\n  - {job: y}\n  - {job: y}\n  - 3\n"),
            [
                "4 after[0]: invalid dependency \"t\": a job cannot wait for itself",
                "5 after[1].job: invalid name \"Extract\": it contains the upper-case letter 'E' at position 1; names are lower case",
                "6 after[2].when: \"ok\" is not one of: succeeded, failed, ended",
                "8 after[4]: \"y\" is listed twice",
                "9 after[5]: expected a job name or a mapping such as {job: extract, when: succeeded}, found the integer 3",
            ]
        );
        assert_eq!(
            error("after: extract\n"),
            "3 after: expected a list, found the string \"extract\""
        );
        assert_eq!(
            error("after: [{when: ended}]\n"),
            "3 after[0]: required field `job` is missing"
        );
        assert_eq!(error("after: [{job: x, on: ended}]\n"), "3 after[0].on: unknown field `on`");
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<JobName, Vec<After>> {
        edges
            .iter()
            .map(|(job, after)| {
                let after = after
                    .iter()
                    .map(|a| After { job: name(a), when: AfterWhen::Succeeded })
                    .collect();
                (name(job), after)
            })
            .collect()
    }

    fn cycle_in(g: &BTreeMap<JobName, Vec<After>>) -> Option<Vec<String>> {
        find_cycle(g.keys(), |j| g.get(j).map(Vec::as_slice))
            .map(|c| c.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn cycles_are_found_and_told_from_their_smallest_name() {
        assert_eq!(cycle_in(&graph(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])), None);
        assert_eq!(
            cycle_in(&graph(&[("c", &["a"]), ("a", &["b"]), ("b", &["c"])])),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        // A diamond is no cycle; a job not in the set ends the path.
        let diamond = graph(&[("d", &["b", "c"]), ("b", &["a"]), ("c", &["a"]), ("a", &["x"])]);
        assert_eq!(cycle_in(&diamond), None);
        let tail = graph(&[("z", &["y"]), ("y", &["x"]), ("x", &["y"])]);
        assert_eq!(cycle_in(&tail), Some(vec!["x".into(), "y".into()]));
    }

    /// Whether `g` has a cycle, by removing jobs that wait for nothing in the
    /// set until none is left (Kahn): a different method from the search.
    fn has_cycle_by_peeling(g: &BTreeMap<JobName, Vec<After>>) -> bool {
        let mut left: BTreeMap<&JobName, BTreeSet<&JobName>> = g
            .iter()
            .map(|(j, after)| {
                (j, after.iter().map(|a| &a.job).filter(|p| g.contains_key(*p)).collect())
            })
            .collect();
        loop {
            let free: Vec<&JobName> =
                left.iter().filter(|(_, w)| w.is_empty()).map(|(j, _)| *j).collect();
            if free.is_empty() {
                return !left.is_empty();
            }
            for j in &free {
                left.remove(j);
            }
            for waits in left.values_mut() {
                waits.retain(|p| !free.contains(p));
            }
        }
    }

    proptest! {
        /// The search finds a cycle exactly when there is one, and what it
        /// returns is one: each job waits for the next, the last for the first.
        #[test]
        fn the_search_finds_a_cycle_exactly_when_there_is_one(
            edges in proptest::collection::vec((0u8..8, 0u8..9), 0..16)
        ) {
            let mut g: BTreeMap<JobName, Vec<After>> = BTreeMap::new();
            for i in 0..8u8 {
                g.insert(name(&format!("j{i}")), Vec::new());
            }
            for (from, to) in edges {
                // j8 is never in the set: a prerequisite not loaded.
                let to = name(&format!("j{to}"));
                let list = g.get_mut(&name(&format!("j{from}"))).unwrap();
                if !list.iter().any(|a| a.job == to) {
                    list.push(After { job: to, when: AfterWhen::Ended });
                }
            }
            let found = find_cycle(g.keys(), |j| g.get(j).map(Vec::as_slice));
            prop_assert_eq!(found.is_some(), has_cycle_by_peeling(&g));
            if let Some(cycle) = found {
                let distinct: BTreeSet<_> = cycle.iter().collect();
                prop_assert_eq!(distinct.len(), cycle.len());
                for (i, job) in cycle.iter().enumerate() {
                    let waits_for = &cycle[(i + 1) % cycle.len()];
                    prop_assert!(g[job].iter().any(|a| &a.job == waits_for));
                }
                prop_assert_eq!(cycle.iter().min(), cycle.first());
            }
        }
    }
}
