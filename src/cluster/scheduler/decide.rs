//! What the scheduler writes, as a pure function of what it has read.
//!
//! [`decide`] takes the cluster as the watch has delivered it ([`View`]),
//! the compiled jobs ([`Specs`]) and the time, and returns the writes to
//! make, each with the conditions it rests on ([`Guard`]). The shell adds
//! the leadership fence to every one and sends it as one etcd transaction;
//! a write whose guard fails lost to a concurrent change, and the next pass
//! (on the watch event that change caused) decides again from fresher
//! data. Nothing here reads a clock or the network.
//!
//! One pass writes each run key at most once, with this precedence: the
//! node's report on the current attempt (ended, handed back), then node
//! loss (see [`node_loss`]), then removal (its job deleted or changed),
//! then binding.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::cron;
use super::fit::{self, Candidate, Demand, HandedBack, InFlight};
use crate::cluster::records::{
    encode, Binding, ClusterRun, ClusterRunState, CronCursor, JobRecord, NodeRecord, RunStatus,
};
use crate::cluster::Keys;
use crate::spec::{Concurrency, JobSpec, OnNodeLoss, OnRemoval};
use crate::vocab::Timestamp;

/// Ended runs kept per job, newest first.
pub const KEEP_ENDED_PER_JOB: usize = 20;
/// Ended runs older than this are deleted whatever their number.
pub const KEEP_ENDED_FOR: Duration = Duration::from_secs(24 * 3600);

/// A value with the revision it was last written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// Everything under the prefix the scheduler acts on, as last read.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub jobs: BTreeMap<String, Versioned<JobRecord>>,
    pub runs: BTreeMap<String, Versioned<ClusterRun>>,
    /// By (node, run).
    pub bindings: BTreeMap<(String, String), Versioned<Binding>>,
    pub statuses: BTreeMap<String, Versioned<RunStatus>>,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub cursors: BTreeMap<String, Versioned<CronCursor>>,
    /// Keys whose value does not parse, with why: never acted on, and never
    /// written over (a create-if-absent on such a key would only fail).
    pub bad: BTreeMap<String, String>,
}

/// Compiled jobs, by (job, job record revision): the current records'
/// and the bindings' (an older version still running).
pub type Specs = BTreeMap<(String, i64), Arc<JobSpec>>;

/// What one pass needs besides the view.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    pub keys: &'a Keys,
    /// This scheduler's node name (`bound_by`).
    pub node: &'a str,
    pub default_timezone: Tz,
    pub catch_up_limit: u32,
    pub now: Timestamp,
    /// Runs whose pending reason was written a moment ago: a new reason
    /// for them waits (free room changes with every binding, and a burst
    /// of runs would otherwise rewrite every waiting run's reason each
    /// time). A run's first reason is written at once.
    pub quiet: &'a BTreeSet<String>,
    /// How long a run stays `lost` (its node's record gone) before it is
    /// bound anew or ended, per its job's `on_node_loss`.
    pub node_loss_grace: Duration,
}

/// A condition a write rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The key does not exist.
    Absent(String),
    /// The key was last written at this revision.
    Revision(String, i64),
}

/// What a write does, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Create {
        run: String,
    },
    Bind {
        run: String,
        node: String,
        waited: Duration,
    },
    Pending {
        run: String,
        reason: String,
    },
    HandedBack {
        run: String,
        node: String,
    },
    End {
        run: String,
        outcome: String,
    },
    Remove {
        run: String,
    },
    Cleanup {
        key: String,
    },
    Retire {
        run: String,
    },
    /// Its node's record is gone: the run waits for the grace.
    Lost {
        run: String,
        node: String,
    },
    /// Its node came back within the grace, the binding intact.
    Recovered {
        run: String,
        node: String,
    },
    /// Its node stayed lost past the grace: the old binding goes and the
    /// run waits for a node as its next attempt.
    Rescheduled {
        run: String,
        node: String,
    },
    Cron {
        job: String,
        fired: Vec<String>,
    },
}

/// One fenced transaction: if every guard holds, put and delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub kind: Kind,
    pub guards: Vec<Guard>,
    pub puts: Vec<(String, Vec<u8>)>,
    pub deletes: Vec<String>,
}

/// The run id of a one-shot job's record at `revision`.
pub fn one_shot_run(job: &str, revision: i64) -> String {
    format!("{job}-{revision}")
}

/// A run as first written: pending, attempt 1.
pub fn new_run(
    run: String,
    job: &str,
    job_revision: i64,
    scheduled_for: Option<Timestamp>,
    now: Timestamp,
) -> ClusterRun {
    ClusterRun {
        run,
        job: job.to_owned(),
        job_revision,
        scheduled_for,
        created_at: now,
        attempt: 1,
        state: ClusterRunState::Pending { reason: None },
        memory_hard: None,
        handed_back_by: BTreeMap::new(),
        removed: false,
        handed_back_at: BTreeMap::new(),
        pending_since: Some(now),
    }
}

/// Every write this pass makes.
pub fn decide(view: &View, specs: &Specs, settings: &Settings<'_>) -> Vec<Write> {
    let keys = settings.keys;
    let now = settings.now;
    let mut writes = Vec::new();
    // Run keys written this pass: one write per key.
    let mut touched: BTreeSet<String> = BTreeSet::new();

    // One run per version of each one-shot job.
    for (name, job) in &view.jobs {
        let Some(spec) = specs.get(&(name.clone(), job.mod_revision)) else { continue };
        if spec.recurrence.is_some() {
            continue;
        }
        let run = one_shot_run(name, job.mod_revision);
        let key = keys.run(&run);
        if view.runs.contains_key(&run) || view.bad.contains_key(&key) {
            continue;
        }
        let record = new_run(run.clone(), name, job.mod_revision, None, now);
        writes.push(Write {
            kind: Kind::Create { run: run.clone() },
            guards: vec![Guard::Absent(key.clone())],
            puts: vec![(key, encode(&record))],
            deletes: vec![],
        });
        touched.insert(run);
    }

    // Firings of recurring jobs, once for the cluster.
    for (name, job) in &view.jobs {
        let Some(spec) = specs.get(&(name.clone(), job.mod_revision)) else { continue };
        let Some(recurrence) = &spec.recurrence else { continue };
        let live: Vec<&ClusterRun> = view
            .runs
            .values()
            .map(|r| &r.value)
            .filter(|r| r.job == *name && !is_ended(r) && !r.removed)
            .collect();
        let cursor = view.cursors.get(name);
        let input = cron::Input {
            job: name,
            job_revision: job.mod_revision,
            spec,
            recurrence,
            cursor,
            live: &live,
            runs: &view.runs,
            bad: &view.bad,
        };
        if let Some(write) = cron::fire(&input, settings, &mut touched) {
            writes.push(write);
        }
    }

    // Reports on the current attempt, and removals.
    let mut pending = Vec::new();
    for (id, run) in &view.runs {
        let r = &run.value;
        if is_ended(r) || touched.contains(id) {
            continue;
        }
        let key = keys.run(id);
        let guard = Guard::Revision(key.clone(), run.mod_revision);
        if let ClusterRunState::Bound { node, .. } | ClusterRunState::Lost { node, .. } = &r.state {
            let status = view
                .statuses
                .get(id)
                .map(|s| &s.value)
                .filter(|s| s.attempt == r.attempt && s.node == *node);
            if let Some(end) = status.and_then(|s| s.ended.as_ref()) {
                let mut next = r.clone();
                next.state = ClusterRunState::Ended {
                    outcome: end.outcome.clone(),
                    at: end.at,
                    node: Some(node.clone()),
                };
                writes.push(Write {
                    kind: Kind::End { run: id.clone(), outcome: end.outcome.clone() },
                    guards: vec![guard],
                    puts: vec![(key, encode(&next))],
                    deletes: vec![keys.binding(node, id)],
                });
                touched.insert(id.clone());
                continue;
            }
            if let Some(back) = status.and_then(|s| s.handed_back.as_ref()) {
                let mut next = r.clone();
                next.handed_back_by.insert(node.clone(), back.reason.clone());
                next.handed_back_at.insert(node.clone(), back.at);
                next.attempt += 1;
                if let Some(memory) = back.needs_memory {
                    next.memory_hard = Some(memory);
                }
                next.state = ClusterRunState::Pending { reason: None };
                next.pending_since = Some(now);
                writes.push(Write {
                    kind: Kind::HandedBack { run: id.clone(), node: node.clone() },
                    guards: vec![guard],
                    puts: vec![(key, encode(&next))],
                    deletes: vec![keys.binding(node, id)],
                });
                touched.insert(id.clone());
                continue;
            }
        }
        let removed = r.removed || superseded(view, specs, keys, r);
        if let Some(write) = node_loss(view, specs, settings, run, removed) {
            writes.push(write);
            touched.insert(id.clone());
            continue;
        }
        if matches!(r.state, ClusterRunState::Lost { .. }) {
            // Within the grace: nothing to do until the node is back or
            // the grace is over.
            continue;
        }
        // Removed by `concurrency: replace`, or its job is gone.
        if removed {
            match &r.state {
                ClusterRunState::Pending { .. } => {
                    // Never started: nothing to stop, and its version of
                    // the job may be gone, so it could not be bound anyway.
                    let mut next = r.clone();
                    next.removed = true;
                    next.state =
                        ClusterRunState::Ended { outcome: "removed".into(), at: now, node: None };
                    writes.push(Write {
                        kind: Kind::End { run: id.clone(), outcome: "removed".into() },
                        guards: vec![guard],
                        puts: vec![(key, encode(&next))],
                        deletes: vec![],
                    });
                    touched.insert(id.clone());
                }
                ClusterRunState::Bound { node, .. } if !r.removed => {
                    let on_removal = specs
                        .get(&(r.job.clone(), r.job_revision))
                        .map_or(OnRemoval::Stop, |s| s.on_removal);
                    if on_removal == OnRemoval::Stop {
                        let mut next = r.clone();
                        next.removed = true;
                        writes.push(Write {
                            kind: Kind::Remove { run: id.clone() },
                            guards: vec![guard],
                            puts: vec![(key, encode(&next))],
                            deletes: vec![keys.binding(node, id)],
                        });
                        touched.insert(id.clone());
                    }
                }
                _ => {}
            }
            continue;
        }
        if matches!(r.state, ClusterRunState::Pending { .. }) {
            pending.push(run);
        }
    }

    bind_pending(view, specs, settings, pending, &mut writes);
    clean_up(view, keys, &touched, &mut writes);
    // The cursor of a deleted recurring job: applied again, the job starts
    // with its next firing, as a new job does.
    for (job, cursor) in &view.cursors {
        let key = keys.cron(job);
        if !view.jobs.contains_key(job) && !view.bad.contains_key(&keys.job(job)) {
            writes.push(Write {
                kind: Kind::Cleanup { key: key.clone() },
                guards: vec![Guard::Revision(key.clone(), cursor.mod_revision)],
                puts: vec![],
                deletes: vec![key],
            });
        }
    }
    retire(view, keys, now, &touched, &mut writes);
    writes
}

/// Whether `a` comes before `b` among a recurring job's runs: by firing
/// time (one pass may create several at once), then creation.
pub(super) fn earlier_firing(a: &ClusterRun, b: &ClusterRun) -> bool {
    (a.scheduled_for, a.created_at, &a.run) < (b.scheduled_for, b.created_at, &b.run)
}

fn is_ended(run: &ClusterRun) -> bool {
    matches!(run.state, ClusterRunState::Ended { .. })
}

/// What node loss does to a live run, if anything: a bound run whose node
/// has no record (its lease expired) becomes `lost`; a lost run whose node
/// is back with the binding intact is bound again; past the grace (or
/// with the node back but the binding gone) its binding is deleted and, in
/// the same transaction, the run is set pending as its next attempt
/// (`on_node_loss: reschedule`) or ended `lost` (`fail`); a removed one
/// ends `removed`. The node finds its binding gone when it comes back,
/// and kills what it still holds of the run (it froze it when it could no
/// longer renew its lease: docs/cluster.md).
fn node_loss(
    view: &View,
    specs: &Specs,
    settings: &Settings<'_>,
    run: &Versioned<ClusterRun>,
    removed: bool,
) -> Option<Write> {
    let keys = settings.keys;
    let r = &run.value;
    let key = keys.run(&r.run);
    let guard = Guard::Revision(key.clone(), run.mod_revision);
    // A node record that does not parse is not evidence the node is gone.
    let present =
        |node: &str| view.nodes.contains_key(node) || view.bad.contains_key(&keys.node(node));
    match &r.state {
        ClusterRunState::Bound { node, .. } if !present(node) => {
            let mut next = r.clone();
            next.state = ClusterRunState::Lost { node: node.clone(), since: settings.now };
            Some(Write {
                kind: Kind::Lost { run: r.run.clone(), node: node.clone() },
                guards: vec![guard],
                puts: vec![(key, encode(&next))],
                deletes: vec![],
            })
        }
        ClusterRunState::Lost { node, since } => {
            let binding = view
                .bindings
                .get(&(node.clone(), r.run.clone()))
                .filter(|b| b.value.attempt == r.attempt);
            let back = present(node);
            if let (true, Some(binding)) = (back, binding) {
                let mut next = r.clone();
                next.state =
                    ClusterRunState::Bound { node: node.clone(), at: binding.value.bound_at };
                return Some(Write {
                    kind: Kind::Recovered { run: r.run.clone(), node: node.clone() },
                    guards: vec![
                        guard,
                        Guard::Revision(keys.binding(node, &r.run), binding.mod_revision),
                    ],
                    puts: vec![(key, encode(&next))],
                    deletes: vec![],
                });
            }
            if !back && settings.now.since(*since) < settings.node_loss_grace {
                return None;
            }
            let mut next = r.clone();
            let lost_node = node.clone();
            let on_node_loss = specs
                .get(&(r.job.clone(), r.job_revision))
                .map_or(OnNodeLoss::Fail, |s| s.on_node_loss());
            let kind = if removed {
                next.removed = true;
                next.state = ClusterRunState::Ended {
                    outcome: "removed".into(),
                    at: settings.now,
                    node: Some(lost_node.clone()),
                };
                Kind::End { run: r.run.clone(), outcome: "removed".into() }
            } else if on_node_loss == OnNodeLoss::Reschedule {
                next.attempt += 1;
                next.state = ClusterRunState::Pending { reason: None };
                next.pending_since = Some(settings.now);
                Kind::Rescheduled { run: r.run.clone(), node: lost_node.clone() }
            } else {
                next.state = ClusterRunState::Ended {
                    outcome: "lost".into(),
                    at: settings.now,
                    node: Some(lost_node.clone()),
                };
                Kind::End { run: r.run.clone(), outcome: "lost".into() }
            };
            Some(Write {
                kind,
                guards: vec![guard],
                puts: vec![(key, encode(&next))],
                // Gone or not (a delete of an absent key is no error), in
                // the same transaction as the run's new state.
                deletes: vec![keys.binding(&lost_node, &r.run)],
            })
        }
        _ => None,
    }
}

/// Whether the job a live run runs is gone: deleted, or (a one-shot job)
/// changed since. A recurring job's firings keep running their version
/// when the job changes; only deleting it removes them. A job whose record
/// is bad is not gone: its runs are left alone until it is mended.
fn superseded(view: &View, specs: &Specs, keys: &Keys, run: &ClusterRun) -> bool {
    let Some(job) = view.jobs.get(&run.job) else {
        return !view.bad.contains_key(&keys.job(&run.job));
    };
    match specs.get(&(run.job.clone(), job.mod_revision)) {
        None => false,
        Some(spec) if spec.recurrence.is_some() => {
            // A pending firing of an older version cannot be bound: the
            // text it was fired from is gone.
            matches!(run.state, ClusterRunState::Pending { .. })
                && run.job_revision != job.mod_revision
        }
        Some(_) => run.job_revision != job.mod_revision,
    }
}

/// Binds pending runs, highest priority first, then oldest.
fn bind_pending(
    view: &View,
    specs: &Specs,
    settings: &Settings<'_>,
    mut pending: Vec<&Versioned<ClusterRun>>,
    writes: &mut Vec<Write>,
) {
    let keys = settings.keys;
    let priority = |r: &ClusterRun| {
        specs.get(&(r.job.clone(), r.job_revision)).map_or(0, |s| s.priority.get())
    };
    pending.sort_by(|a, b| {
        priority(&b.value)
            .cmp(&priority(&a.value))
            .then(a.value.created_at.cmp(&b.value.created_at))
            .then(a.value.run.cmp(&b.value.run))
    });

    // Charges not yet in each node's record: runs bound after it was
    // written. Their demand comes from their spec and grown limit.
    let mut in_flight: BTreeMap<&str, InFlight> = BTreeMap::new();
    let mut runs_of_job: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for run in view.runs.values().map(|r| &r.value) {
        let ClusterRunState::Bound { node, at } = &run.state else { continue };
        *runs_of_job.entry((node.as_str(), run.job.as_str())).or_default() += 1;
        let Some(record) = view.nodes.get(node) else { continue };
        if *at < record.updated_at {
            continue;
        }
        if let Some(spec) = specs.get(&(run.job.clone(), run.job_revision)) {
            let demand = Demand::of(spec, run.memory_hard);
            // The NUMA node the node will pick is its own choice; in flight
            // the run is charged to the totals only.
            in_flight.entry(node.as_str()).or_default().charge(&demand, None);
        }
    }

    for run in pending {
        let r = &run.value;
        // The binding carries the record's text: only a run of the record
        // as it stands can be bound (older ones were ended above).
        let Some(job) = view.jobs.get(&r.job).filter(|j| j.mod_revision == r.job_revision) else {
            continue;
        };
        let Some(spec) = specs.get(&(r.job.clone(), r.job_revision)) else { continue };
        let key = keys.run(&r.run);
        let guard = Guard::Revision(key.clone(), run.mod_revision);
        let waiting_for_previous = spec.recurrence.as_ref().is_some_and(|rec| {
            matches!(rec.concurrency, Concurrency::Queue | Concurrency::Replace)
        }) && view.runs.values().any(|o| {
            o.value.job == r.job
                && earlier_firing(&o.value, r)
                && matches!(
                    o.value.state,
                    ClusterRunState::Bound { .. } | ClusterRunState::Lost { .. }
                )
        });
        let choice = if waiting_for_previous {
            Err("waiting for the previous run of the job to end".to_owned())
        } else {
            let demand = Demand::of(spec, r.memory_hard);
            let candidates: Vec<Candidate<'_>> = view
                .nodes
                .values()
                .map(|record| Candidate {
                    record,
                    in_flight: in_flight.get(record.name.as_str()).cloned().unwrap_or_default(),
                    runs_of_job: runs_of_job
                        .get(&(record.name.as_str(), r.job.as_str()))
                        .copied()
                        .unwrap_or(0),
                })
                .collect();
            let handed_back: BTreeMap<String, HandedBack<'_>> = r
                .handed_back_by
                .iter()
                .map(|(node, reason)| {
                    let at = r.handed_back_at.get(node).copied();
                    (node.clone(), HandedBack { reason, at })
                })
                .collect();
            match fit::choose(&candidates, &spec.nodes, &handed_back, &demand) {
                Ok(choice) => {
                    let node = view.nodes.get(&choice.node).expect("chosen from the nodes");
                    in_flight.entry(node.name.as_str()).or_default().charge(&demand, choice.numa);
                    *runs_of_job.entry((node.name.as_str(), r.job.as_str())).or_default() += 1;
                    Ok(choice.node)
                }
                Err(no_fit) => Err(no_fit.to_string()),
            }
        };
        match choice {
            Ok(node) => {
                let mut next = r.clone();
                next.state = ClusterRunState::Bound { node: node.clone(), at: settings.now };
                let binding = Binding {
                    run: r.run.clone(),
                    job: r.job.clone(),
                    attempt: r.attempt,
                    job_revision: r.job_revision,
                    file: job.value.file.clone(),
                    source: job.value.source.clone(),
                    memory_hard: r.memory_hard,
                    scheduled_for: r.scheduled_for,
                    bound_by: settings.node.to_owned(),
                    bound_at: settings.now,
                };
                let binding_key = keys.binding(&node, &r.run);
                let waited = settings.now.since(r.pending_since.unwrap_or(r.created_at));
                writes.push(Write {
                    kind: Kind::Bind { run: r.run.clone(), node, waited },
                    guards: vec![guard],
                    puts: vec![(key, encode(&next)), (binding_key, encode(&binding))],
                    deletes: vec![],
                });
            }
            Err(reason) => {
                let current = match &r.state {
                    ClusterRunState::Pending { reason } => reason.as_deref(),
                    _ => None,
                };
                let hold = current.is_some() && settings.quiet.contains(&r.run);
                if current != Some(reason.as_str()) && !hold {
                    let mut next = r.clone();
                    next.state = ClusterRunState::Pending { reason: Some(reason.clone()) };
                    writes.push(Write {
                        kind: Kind::Pending { run: r.run.clone(), reason },
                        guards: vec![guard],
                        puts: vec![(key, encode(&next))],
                        deletes: vec![],
                    });
                }
            }
        }
    }
}

/// Deletes bindings no current attempt stands behind: the run ended, was
/// removed, was bound anew, or is gone.
fn clean_up(view: &View, keys: &Keys, touched: &BTreeSet<String>, writes: &mut Vec<Write>) {
    for ((node, run), binding) in &view.bindings {
        if touched.contains(run) {
            continue;
        }
        let current = view.runs.get(run).is_some_and(|r| {
            !r.value.removed
                && r.value.attempt == binding.value.attempt
                && matches!(
                    &r.value.state,
                    ClusterRunState::Bound { node: n, .. } | ClusterRunState::Lost { node: n, .. }
                        if n == node
                )
        });
        // A bad run record is not evidence the binding is stale.
        if current || view.bad.contains_key(&keys.run(run)) {
            continue;
        }
        let key = keys.binding(node, run);
        writes.push(Write {
            kind: Kind::Cleanup { key: key.clone() },
            guards: vec![Guard::Revision(key.clone(), binding.mod_revision)],
            puts: vec![],
            deletes: vec![key],
        });
    }
}

/// Deletes ended runs (and their statuses) past the retention: beyond the
/// newest [`KEEP_ENDED_PER_JOB`] of a job, or older than
/// [`KEEP_ENDED_FOR`]. The run of a one-shot job's current version stays
/// while the job does: it is what says that version has run.
fn retire(
    view: &View,
    keys: &Keys,
    now: Timestamp,
    touched: &BTreeSet<String>,
    writes: &mut Vec<Write>,
) {
    let mut ended: BTreeMap<&str, Vec<(Timestamp, &Versioned<ClusterRun>)>> = BTreeMap::new();
    for run in view.runs.values() {
        if let ClusterRunState::Ended { at, .. } = run.value.state {
            ended.entry(run.value.job.as_str()).or_default().push((at, run));
        }
    }
    // A status whose run is gone (a node reporting after the run was
    // retired) goes once it is as old as the oldest run kept.
    for (id, status) in &view.statuses {
        let orphan = !view.runs.contains_key(id) && !view.bad.contains_key(&keys.run(id));
        if orphan && now.since(status.value.updated_at) > KEEP_ENDED_FOR {
            let key = keys.status(id);
            writes.push(Write {
                kind: Kind::Cleanup { key: key.clone() },
                guards: vec![Guard::Revision(key.clone(), status.mod_revision)],
                puts: vec![],
                deletes: vec![key],
            });
        }
    }
    for (job, mut runs) in ended {
        runs.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.value.run.cmp(&a.1.value.run)));
        let current = view.jobs.get(job).map(|j| one_shot_run(job, j.mod_revision));
        for (i, (at, run)) in runs.into_iter().enumerate() {
            let id = &run.value.run;
            let keep = i < KEEP_ENDED_PER_JOB && now.since(at) <= KEEP_ENDED_FOR;
            if keep || current.as_deref() == Some(id.as_str()) || touched.contains(id) {
                continue;
            }
            let key = keys.run(id);
            writes.push(Write {
                kind: Kind::Retire { run: id.clone() },
                guards: vec![Guard::Revision(key.clone(), run.mod_revision)],
                puts: vec![],
                deletes: vec![key, keys.status(id)],
            });
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use super::*;
    use crate::cluster::records::{decode, Allocation, Capacity, HandBack, NumaCapacity, RunEnd};

    pub const GIB: u64 = 1 << 30;
    /// The node loss grace of the tests' passes, ms.
    pub const GRACE: Duration = Duration::from_millis(10_000);

    pub fn node(name: &str, memory: u64, updated: i64) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            labels: BTreeMap::new(),
            cgroup_mode: "hybrid".into(),
            version: "0".into(),
            api: None,
            capacity: Capacity {
                cpus: 2,
                memory,
                numa: vec![NumaCapacity { node: 0, cpus: 2, memory }],
            },
            allocated: Allocation::default(),
            updated_at: Timestamp::from_millis(updated),
        }
    }

    pub fn job(name: &str, body: &str) -> JobRecord {
        JobRecord {
            name: name.into(),
            file: format!("/jobs/{name}.yaml"),
            source: format!("name: {name}\ncommand: [/bin/true]\n{body}"),
            applied_at: Timestamp::from_millis(1),
            applied_by: "root@h".into(),
            origin: None,
        }
    }

    fn compile(view: &View) -> Specs {
        let mut specs = Specs::new();
        for (name, job) in &view.jobs {
            let jobs = crate::spec::compile_str(Path::new(&job.value.file), &job.value.source)
                .expect("the test's job compiles");
            let spec = jobs.into_iter().find(|j| j.spec.name.as_str() == name).unwrap().spec;
            specs.insert((name.clone(), job.mod_revision), Arc::new(spec));
        }
        specs
    }

    fn pass(view: &View, now: i64) -> Vec<Write> {
        let keys = Keys::new("/c");
        let settings = Settings {
            keys: &keys,
            node: "s",
            default_timezone: chrono_tz::UTC,
            catch_up_limit: 10,
            now: Timestamp::from_millis(now),
            quiet: &BTreeSet::new(),
            node_loss_grace: GRACE,
        };
        decide(view, &compile(view), &settings)
    }

    /// Applies the writes as etcd would (guards checked), at `revision`.
    fn apply(view: &mut View, writes: &[Write], revision: &mut i64) {
        for w in writes {
            *revision += 1;
            for (key, value) in &w.puts {
                if let Some(run) = key.strip_prefix("/c/runs/") {
                    let value = decode(key, value).unwrap();
                    view.runs.insert(run.into(), Versioned { value, mod_revision: *revision });
                } else if let Some(rest) = key.strip_prefix("/c/bindings/") {
                    let (n, r) = rest.split_once('/').unwrap();
                    let value = decode(key, value).unwrap();
                    view.bindings
                        .insert((n.into(), r.into()), Versioned { value, mod_revision: *revision });
                } else if let Some(job) = key.strip_prefix("/c/cron/") {
                    let value = decode(key, value).unwrap();
                    view.cursors.insert(job.into(), Versioned { value, mod_revision: *revision });
                }
            }
            for key in &w.deletes {
                if let Some(rest) = key.strip_prefix("/c/bindings/") {
                    let (n, r) = rest.split_once('/').unwrap();
                    view.bindings.remove(&(n.to_owned(), r.to_owned()));
                } else if let Some(run) = key.strip_prefix("/c/runs/") {
                    view.runs.remove(run);
                }
            }
        }
    }

    #[test]
    fn a_job_gets_one_run_bound_to_the_roomiest_node_and_a_huge_one_waits_saying_why() {
        let mut view = View::default();
        view.nodes.insert("n1".into(), node("n1", 4 * GIB, 0));
        view.nodes.insert("n2".into(), node("n2", 8 * GIB, 0));
        view.jobs.insert(
            "a".into(),
            Versioned { value: job("a", "resources: {memory: {hard: 1Gi}}\n"), mod_revision: 5 },
        );
        view.jobs.insert(
            "big".into(),
            Versioned { value: job("big", "resources: {memory: {hard: 16Gi}}\n"), mod_revision: 6 },
        );
        let mut rev = 10;
        let writes = pass(&view, 100);
        assert_eq!(
            writes.iter().map(|w| w.kind.clone()).collect::<Vec<_>>(),
            vec![Kind::Create { run: "a-5".into() }, Kind::Create { run: "big-6".into() }]
        );
        apply(&mut view, &writes, &mut rev);
        // Created again: the guard (absent) would refuse, and decide does not ask.
        let writes = pass(&view, 200);
        apply(&mut view, &writes, &mut rev);
        assert_eq!(
            view.runs["a-5"].value.state,
            ClusterRunState::Bound { node: "n2".into(), at: Timestamp::from_millis(200) }
        );
        assert_eq!(view.bindings[&("n2".to_owned(), "a-5".to_owned())].value.attempt, 1);
        let ClusterRunState::Pending { reason: Some(reason) } = &view.runs["big-6"].value.state
        else {
            panic!("{:?}", view.runs["big-6"]);
        };
        assert_eq!(
            reason,
            "too big for every node's capacity: n1: needs 16 GiB memory, 4 GiB in all; \
             n2: needs 16 GiB memory, 8 GiB in all"
        );
        // Nothing changed: nothing to write (the reason is not written again).
        assert_eq!(pass(&view, 300), vec![]);
    }

    #[test]
    fn a_hand_back_binds_elsewhere_as_the_next_attempt_and_an_end_cleans_up() {
        let mut view = View::default();
        view.nodes.insert("n1".into(), node("n1", 4 * GIB, 0));
        view.nodes.insert("n2".into(), node("n2", 8 * GIB, 0));
        view.jobs.insert(
            "a".into(),
            Versioned { value: job("a", "resources: {memory: {hard: 1Gi}}\n"), mod_revision: 5 },
        );
        let mut rev = 10;
        for now in [100, 200] {
            let writes = pass(&view, now);
            apply(&mut view, &writes, &mut rev);
        }
        let status =
            |node: &str, attempt, ended: Option<RunEnd>, back: Option<HandBack>| Versioned {
                value: RunStatus {
                    run: "a-5".into(),
                    node: node.into(),
                    attempt,
                    node_run: None,
                    phase: "x".into(),
                    detail: None,
                    ended,
                    handed_back: back,
                    events: vec![],
                    updated_at: Timestamp::from_millis(300),
                },
                mod_revision: 99,
            };
        view.statuses.insert(
            "a-5".into(),
            status(
                "n2",
                1,
                None,
                Some(HandBack {
                    reason: "no room".into(),
                    needs_memory: Some(3 * GIB),
                    at: Timestamp::from_millis(300),
                }),
            ),
        );
        let writes = pass(&view, 400);
        assert_eq!(writes[0].kind, Kind::HandedBack { run: "a-5".into(), node: "n2".into() });
        apply(&mut view, &writes, &mut rev);
        assert!(view.bindings.is_empty());
        let writes = pass(&view, 500);
        apply(&mut view, &writes, &mut rev);
        let run = &view.runs["a-5"].value;
        assert_eq!(run.attempt, 2);
        assert_eq!(run.memory_hard, Some(3 * GIB));
        assert!(matches!(&run.state, ClusterRunState::Bound { node, .. } if node == "n1"));
        assert_eq!(
            view.bindings[&("n1".to_owned(), "a-5".to_owned())].value.memory_hard,
            Some(3 * GIB)
        );

        // A report on the old attempt is not acted on; one on the current is.
        view.statuses.insert(
            "a-5".into(),
            status(
                "n1",
                2,
                Some(RunEnd {
                    outcome: "succeeded".into(),
                    exit_code: Some(0),
                    reason: None,
                    oom_kills: 0,
                    at: Timestamp::from_millis(600),
                }),
                None,
            ),
        );
        let writes = pass(&view, 700);
        assert_eq!(writes[0].kind, Kind::End { run: "a-5".into(), outcome: "succeeded".into() });
        apply(&mut view, &writes, &mut rev);
        assert!(view.bindings.is_empty());
        assert_eq!(pass(&view, 800), vec![]);
    }

    #[test]
    fn a_changed_job_stops_its_bound_run_per_on_removal_and_runs_anew() {
        let mut view = View::default();
        view.nodes.insert("n1".into(), node("n1", 4 * GIB, 0));
        view.jobs.insert("a".into(), Versioned { value: job("a", ""), mod_revision: 5 });
        view.jobs.insert(
            "f".into(),
            Versioned { value: job("f", "on_removal: finish\n"), mod_revision: 6 },
        );
        let mut rev = 10;
        for now in [100, 200] {
            let writes = pass(&view, now);
            apply(&mut view, &writes, &mut rev);
        }
        // The compiled specs of the bound versions stay known (the shell
        // compiles bindings too).
        let old = compile(&view);
        view.jobs
            .insert("a".into(), Versioned { value: job("a", "priority: 9\n"), mod_revision: 20 });
        view.jobs.remove("f");
        let keys = Keys::new("/c");
        let settings = Settings {
            keys: &keys,
            node: "s",
            default_timezone: chrono_tz::UTC,
            catch_up_limit: 10,
            now: Timestamp::from_millis(300),
            quiet: &BTreeSet::new(),
            node_loss_grace: GRACE,
        };
        let mut specs = compile(&view);
        specs.extend(old);
        let kinds: Vec<Kind> =
            decide(&view, &specs, &settings).into_iter().map(|w| w.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::Create { run: "a-20".into() }, Kind::Remove { run: "a-5".into() }]
        );
    }

    #[test]
    fn a_burst_binds_by_priority_and_never_past_a_nodes_free_room() {
        let mut view = View::default();
        view.nodes.insert("n1".into(), node("n1", 4 * GIB, 0));
        for (i, priority) in [10, 10, 10, 10, 10, 900].iter().enumerate() {
            let name = format!("j{i}");
            let body = format!("priority: {priority}\nresources: {{memory: {{hard: 1Gi}}}}\n");
            view.jobs.insert(
                name.clone(),
                Versioned { value: job(&name, &body), mod_revision: 5 + i as i64 },
            );
        }
        let mut rev = 100;
        for now in [100, 200] {
            let writes = pass(&view, now);
            apply(&mut view, &writes, &mut rev);
        }
        let bound: Vec<&str> = view
            .runs
            .values()
            .filter(|r| matches!(r.value.state, ClusterRunState::Bound { .. }))
            .map(|r| r.value.job.as_str())
            .collect();
        // Four fit; the high-priority job is among them although it came last.
        assert_eq!(bound.len(), 4, "{bound:?}");
        assert!(bound.contains(&"j5"), "{bound:?}");
        let waiting: Vec<String> = view
            .runs
            .values()
            .filter_map(|r| match &r.value.state {
                ClusterRunState::Pending { reason } => reason.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(waiting, vec!["n1: needs 1 GiB memory, 0 B free"; 2]);

        // The node publishes its allocation: still no room, nothing rebound.
        let mut record = node("n1", 4 * GIB, 300);
        record.allocated.memory = 4 * GIB;
        view.nodes.insert("n1".into(), record);
        assert_eq!(pass(&view, 400), vec![]);
    }

    #[test]
    fn a_pending_run_removed_by_replace_is_ended_not_bound() {
        let mut view = View::default();
        view.nodes.insert("n1".into(), node("n1", 4 * GIB, 0));
        view.jobs.insert(
            "c".into(),
            Versioned { value: job("c", "schedule: '0 * * * *'\n"), mod_revision: 5 },
        );
        let mut run = new_run(
            "c-60".into(),
            "c",
            5,
            Some(Timestamp::from_millis(60_000)),
            Timestamp::from_millis(1),
        );
        run.removed = true;
        view.runs.insert("c-60".into(), Versioned { value: run, mod_revision: 7 });
        let writes = pass(&view, 100);
        let ends: Vec<&Kind> =
            writes.iter().map(|w| &w.kind).filter(|k| !matches!(k, Kind::Cron { .. })).collect();
        assert_eq!(ends, vec![&Kind::End { run: "c-60".into(), outcome: "removed".into() }]);
    }

    /// Two nodes and job `a` bound to n2 (the roomier) as attempt 1; a
    /// recurring job's firing is written by the test, as one due earlier.
    fn bound_on_n2(body: &str) -> (View, i64) {
        let mut view = View::default();
        view.nodes.insert("n1".into(), node("n1", 4 * GIB, 0));
        view.nodes.insert("n2".into(), node("n2", 8 * GIB, 0));
        view.jobs.insert("a".into(), Versioned { value: job("a", body), mod_revision: 5 });
        if body.contains("schedule") {
            let at = Timestamp::from_millis(60_000);
            let run = new_run("a-60".into(), "a", 5, Some(at), Timestamp::from_millis(1));
            view.runs.insert("a-60".into(), Versioned { value: run, mod_revision: 6 });
        }
        let mut rev = 10;
        for now in [100, 200] {
            let writes = pass(&view, now);
            apply(&mut view, &writes, &mut rev);
        }
        assert_eq!(view.runs.len(), 1, "{:?}", view.runs);
        let run = &view.runs.values().next().unwrap().value;
        assert!(
            matches!(&run.state, ClusterRunState::Bound { node, .. } if node == "n2"),
            "{run:?}"
        );
        (view, rev)
    }

    /// The kinds of a pass's writes, without a cron cursor that fired
    /// nothing.
    fn kinds(writes: &[Write]) -> Vec<Kind> {
        writes
            .iter()
            .map(|w| w.kind.clone())
            .filter(|k| !matches!(k, Kind::Cron { fired, .. } if fired.is_empty()))
            .collect()
    }

    #[test]
    fn a_lost_nodes_run_waits_the_grace_then_is_bound_elsewhere_as_the_next_attempt() {
        let (mut view, mut rev) = bound_on_n2("");
        view.nodes.remove("n2");
        let writes = pass(&view, 1_000);
        assert_eq!(kinds(&writes), vec![Kind::Lost { run: "a-5".into(), node: "n2".into() }]);
        apply(&mut view, &writes, &mut rev);
        let since = Timestamp::from_millis(1_000);
        assert_eq!(
            view.runs["a-5"].value.state,
            ClusterRunState::Lost { node: "n2".into(), since }
        );
        // The binding stays through the grace, and nothing else is written.
        assert!(view.bindings.contains_key(&("n2".to_owned(), "a-5".to_owned())));
        assert_eq!(pass(&view, 1_000 + 9_999), vec![]);
        // Past it: the binding goes in the same write that makes the run
        // pending as attempt 2.
        let writes = pass(&view, 1_000 + 10_000);
        assert_eq!(
            kinds(&writes),
            vec![Kind::Rescheduled { run: "a-5".into(), node: "n2".into() }]
        );
        assert_eq!(writes[0].deletes, vec!["/c/bindings/n2/a-5".to_owned()]);
        assert_eq!(
            writes[0].guards,
            vec![Guard::Revision("/c/runs/a-5".into(), view.runs["a-5"].mod_revision)]
        );
        apply(&mut view, &writes, &mut rev);
        assert!(view.bindings.is_empty());
        let run = &view.runs["a-5"].value;
        assert_eq!((run.attempt, run.state.name()), (2, "pending"));
        // The next pass binds it to the node that is left, as attempt 2.
        let writes = pass(&view, 11_100);
        apply(&mut view, &writes, &mut rev);
        assert!(
            matches!(&view.runs["a-5"].value.state, ClusterRunState::Bound { node, .. } if node == "n1")
        );
        assert_eq!(view.bindings[&("n1".to_owned(), "a-5".to_owned())].value.attempt, 2);
        // The lost node comes back: it gets nothing back, and a report on
        // its old attempt is not acted on.
        view.nodes.insert("n2".into(), node("n2", 8 * GIB, 12_000));
        view.statuses.insert(
            "a-5".into(),
            Versioned {
                value: RunStatus {
                    run: "a-5".into(),
                    node: "n2".into(),
                    attempt: 1,
                    node_run: None,
                    phase: "killed".into(),
                    detail: None,
                    ended: Some(RunEnd {
                        outcome: "killed".into(),
                        exit_code: None,
                        reason: Some("superseded".into()),
                        oom_kills: 0,
                        at: Timestamp::from_millis(12_000),
                    }),
                    handed_back: None,
                    events: vec![],
                    updated_at: Timestamp::from_millis(12_000),
                },
                mod_revision: rev + 1,
            },
        );
        assert_eq!(pass(&view, 12_100), vec![]);
    }

    #[test]
    fn a_node_back_within_the_grace_keeps_its_run() {
        let (mut view, mut rev) = bound_on_n2("");
        let bound_at = view.bindings[&("n2".to_owned(), "a-5".to_owned())].value.bound_at;
        let record = view.nodes.remove("n2").unwrap();
        let writes = pass(&view, 1_000);
        apply(&mut view, &writes, &mut rev);
        view.nodes.insert("n2".into(), record);
        let writes = pass(&view, 5_000);
        assert_eq!(kinds(&writes), vec![Kind::Recovered { run: "a-5".into(), node: "n2".into() }]);
        apply(&mut view, &writes, &mut rev);
        let run = &view.runs["a-5"].value;
        assert_eq!(run.attempt, 1);
        assert_eq!(run.state, ClusterRunState::Bound { node: "n2".into(), at: bound_at });
        assert_eq!(pass(&view, 60_000), vec![]);
    }

    #[test]
    fn on_node_loss_fail_ends_the_run_lost_and_a_recurring_firing_is_not_fired_again() {
        // A recurring job fails by default; a one-shot one that asks to.
        for body in ["on_node_loss: fail\n", "schedule: '0 0 1 1 *'\n"] {
            let (mut view, mut rev) = bound_on_n2(body);
            let id = view.runs.keys().next().unwrap().clone();
            view.nodes.remove("n2");
            let writes = pass(&view, 1_000);
            apply(&mut view, &writes, &mut rev);
            let writes = pass(&view, 11_000);
            assert_eq!(
                kinds(&writes),
                vec![Kind::End { run: id.clone(), outcome: "lost".into() }],
                "{body}"
            );
            let end = writes.iter().find(|w| matches!(w.kind, Kind::End { .. })).unwrap();
            assert_eq!(end.deletes, vec![format!("/c/bindings/n2/{id}")]);
            apply(&mut view, &writes, &mut rev);
            assert_eq!(
                view.runs[&id].value.state,
                ClusterRunState::Ended {
                    outcome: "lost".into(),
                    at: Timestamp::from_millis(11_000),
                    node: Some("n2".into())
                }
            );
            assert!(view.bindings.is_empty());
            // No run is created in its place.
            assert_eq!(kinds(&pass(&view, 12_000)), vec![], "{body}");
            assert_eq!(view.runs.len(), 1);
        }
    }

    #[test]
    fn a_bad_node_record_is_no_loss_and_a_removed_lost_run_ends_removed() {
        let (mut view, mut rev) = bound_on_n2("");
        view.nodes.remove("n2");
        view.bad.insert("/c/nodes/n2".into(), "garbled".into());
        assert_eq!(pass(&view, 1_000), vec![]);
        view.bad.clear();
        let writes = pass(&view, 1_000);
        apply(&mut view, &writes, &mut rev);
        // Its job deleted while it was lost: after the grace it ends
        // removed, its binding deleted with it.
        view.jobs.remove("a");
        assert_eq!(pass(&view, 2_000), vec![]);
        let writes = pass(&view, 11_000);
        assert_eq!(
            kinds(&writes),
            vec![Kind::End { run: "a-5".into(), outcome: "removed".into() }]
        );
        assert_eq!(writes[0].deletes, vec!["/c/bindings/n2/a-5".to_owned()]);
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// A job: memory in GiB (0: no hard limit), pinned to a node or not.
        fn arb_jobs() -> impl Strategy<Value = Vec<(u64, Option<usize>)>> {
            proptest::collection::vec((0u64..4, proptest::option::of(0usize..3)), 1..12)
        }

        proptest! {
            // Each case compiles its jobs on every pass: fewer cases keep
            // the debug build's run short.
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Over passes with nodes handing runs back at random: no pass
            /// writes a run key twice, every binding is to a node the job
            /// admits, and no node is bound more memory than it has free.
            #[test]
            fn passes_keep_their_invariants(
                jobs in arb_jobs(),
                memories in proptest::collection::vec(1u64..6, 3),
                hand_backs in proptest::collection::vec(proptest::bool::weighted(0.3), 8),
            ) {
                let mut view = View::default();
                for (i, gib) in memories.iter().enumerate() {
                    let name = format!("n{i}");
                    view.nodes.insert(name.clone(), node(&name, gib * GIB, 0));
                }
                for (i, (gib, pin)) in jobs.iter().enumerate() {
                    let name = format!("j{i}");
                    let mut body = String::new();
                    if *gib > 0 {
                        body.push_str(&format!("resources: {{memory: {{hard: {gib}Gi}}}}\n"));
                    }
                    if let Some(n) = pin {
                        body.push_str(&format!("nodes: [n{n}]\n"));
                    }
                    view.jobs.insert(name.clone(), Versioned { value: job(&name, &body), mod_revision: 1 + i as i64 });
                }
                let mut rev = 100;
                for (step, hand_back) in hand_backs.iter().enumerate() {
                    let now = 1000 * (step as i64 + 1);
                    let writes = pass(&view, now);
                    let mut keys_written = BTreeSet::new();
                    for w in &writes {
                        for (key, _) in &w.puts {
                            if key.starts_with("/c/runs/") {
                                prop_assert!(keys_written.insert(key.clone()), "{key} twice");
                            }
                        }
                    }
                    apply(&mut view, &writes, &mut rev);
                    // Memory bound per node never exceeds its capacity.
                    let mut held: BTreeMap<String, u64> = BTreeMap::new();
                    let spec = compile(&view);
                    for ((n, _), b) in &view.bindings {
                        let s = &spec[&(b.value.job.clone(), b.value.job_revision)];
                        prop_assert!(s.nodes.admits(n, &view.nodes[n].labels));
                        *held.entry(n.clone()).or_default() +=
                            Demand::of(s, b.value.memory_hard).memory;
                    }
                    for (n, bytes) in &held {
                        prop_assert!(*bytes <= view.nodes[n].capacity.memory, "{n}: {bytes}");
                    }
                    // A node hands back its first binding: it must come back
                    // as the next attempt, never bound to that node again
                    // until it publishes.
                    if *hand_back {
                        if let Some(((n, r), b)) = view.bindings.iter().next() {
                            let status = RunStatus {
                                run: r.clone(),
                                node: n.clone(),
                                attempt: b.value.attempt,
                                node_run: None,
                                phase: "handed-back".into(),
                                detail: None,
                                ended: None,
                                handed_back: Some(HandBack {
                                    reason: "no".into(),
                                    needs_memory: None,
                                    at: Timestamp::from_millis(now + 1),
                                }),
                                events: vec![],
                                updated_at: Timestamp::from_millis(now + 1),
                            };
                            view.statuses.insert(r.clone(), Versioned { value: status, mod_revision: rev });
                        }
                    }
                }
                for run in view.runs.values() {
                    if let ClusterRunState::Bound { node, .. } = &run.value.state {
                        prop_assert!(!run.value.handed_back_by.contains_key(node));
                    }
                }
            }
        }
    }

    mod loss_props {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Nodes leave and come back at random while time passes: a
            /// run has at most one binding, of its current attempt, on the
            /// node its state names; nothing is bound to a node without a
            /// record; a lost run is acted on only past the grace or with
            /// its node back; and every run keeps going (none ends but by
            /// a node's report, which never comes here).
            #[test]
            fn node_loss_never_leaves_a_run_bound_twice(
                jobs in 1usize..6,
                steps in proptest::collection::vec((0usize..3, proptest::bool::ANY, 0i64..8_000), 1..24),
            ) {
                let mut view = View::default();
                let records: Vec<NodeRecord> =
                    (0..3).map(|i| node(&format!("n{i}"), 8 * GIB, 0)).collect();
                for r in &records {
                    view.nodes.insert(r.name.clone(), r.clone());
                }
                for i in 0..jobs {
                    let name = format!("j{i}");
                    view.jobs.insert(
                        name.clone(),
                        Versioned { value: job(&name, ""), mod_revision: 1 + i as i64 },
                    );
                }
                let mut rev = 100;
                let mut now = 1_000;
                for (n, present, advance) in steps {
                    if present {
                        view.nodes.insert(records[n].name.clone(), records[n].clone());
                    } else {
                        view.nodes.remove(&records[n].name);
                    }
                    now += advance;
                    let writes = pass(&view, now);
                    for w in &writes {
                        match &w.kind {
                            Kind::Bind { node, .. } => {
                                prop_assert!(view.nodes.contains_key(node), "bound to {node}, gone");
                            }
                            Kind::Rescheduled { run, node } => {
                                let ClusterRunState::Lost { since, .. } = &view.runs[run].value.state
                                else {
                                    panic!("rescheduled but not lost: {:?}", view.runs[run]);
                                };
                                prop_assert!(
                                    view.nodes.contains_key(node)
                                        || Timestamp::from_millis(now).since(*since) >= GRACE
                                );
                            }
                            Kind::End { outcome, .. } => prop_assert!(false, "ended {outcome}"),
                            _ => {}
                        }
                    }
                    apply(&mut view, &writes, &mut rev);
                    let mut per_run: BTreeMap<&str, usize> = BTreeMap::new();
                    for ((n, r), b) in &view.bindings {
                        *per_run.entry(r.as_str()).or_default() += 1;
                        let run = &view.runs[r].value;
                        prop_assert_eq!(b.value.attempt, run.attempt);
                        let named = match &run.state {
                            ClusterRunState::Bound { node, .. }
                            | ClusterRunState::Lost { node, .. } => Some(node),
                            _ => None,
                        };
                        prop_assert_eq!(named, Some(n), "{:?}", run);
                    }
                    prop_assert!(per_run.values().all(|&c| c == 1), "{:?}", per_run);
                    for run in view.runs.values() {
                        if let ClusterRunState::Bound { node, .. } | ClusterRunState::Lost { node, .. } =
                            &run.value.state
                        {
                            prop_assert!(view.bindings.contains_key(&(node.clone(), run.value.run.clone())));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn retention_keeps_the_newest_ended_runs_and_the_current_versions() {
        let mut view = View::default();
        view.jobs.insert("a".into(), Versioned { value: job("a", ""), mod_revision: 99 });
        let day = 24 * 3600 * 1000;
        let now = 3 * day;
        // 25 ended runs of older versions, one of the current version from
        // long ago, and an old status of a run already gone.
        for i in 0..25i64 {
            let mut run = new_run(one_shot_run("a", i), "a", i, None, Timestamp::from_millis(0));
            run.state = ClusterRunState::Ended {
                outcome: "succeeded".into(),
                at: Timestamp::from_millis(now - 1000 * (25 - i)),
                node: None,
            };
            view.runs.insert(run.run.clone(), Versioned { value: run, mod_revision: 10 + i });
        }
        let mut current = new_run(one_shot_run("a", 99), "a", 99, None, Timestamp::from_millis(0));
        current.state = ClusterRunState::Ended {
            outcome: "failed".into(),
            at: Timestamp::from_millis(0),
            node: None,
        };
        view.runs.insert(current.run.clone(), Versioned { value: current, mod_revision: 99 });
        let status = RunStatus {
            run: "gone-1".into(),
            node: "n1".into(),
            attempt: 1,
            node_run: None,
            phase: "succeeded".into(),
            detail: None,
            ended: None,
            handed_back: None,
            events: vec![],
            updated_at: Timestamp::from_millis(0),
        };
        view.statuses.insert("gone-1".into(), Versioned { value: status, mod_revision: 5 });
        let kinds: Vec<Kind> = pass(&view, now).into_iter().map(|w| w.kind).collect();
        let mut expected: Vec<Kind> =
            (0..5).map(|i| Kind::Retire { run: one_shot_run("a", i) }).collect();
        expected.insert(0, Kind::Cleanup { key: "/c/status/gone-1".into() });
        let mut got = kinds.clone();
        got.sort_by_key(|k| format!("{k:?}"));
        expected.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(got, expected);
    }
}
