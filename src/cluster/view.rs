//! The cluster as the commands show it (`corral nodes`, `corral ps
//! --cluster`, `corral show`, `corral logs`): every record under the prefix,
//! read at one revision, and the rows made of them.
//!
//! Reading is one range read; making rows is pure. A record that does not
//! parse is listed as a bad record, never dropped and never fatal: anything
//! with write access to the prefix can put anything there.

use std::collections::BTreeMap;

use etcd_client::{Client, GetOptions};
use serde::Serialize;

use super::error::ClusterError;
use super::keys::Keys;
use super::records::{
    decode, BadRecord, Binding, ClusterRun, ClusterRunState, JobRecord, LeaderRecord, NodeRecord,
    RunStatus,
};
use crate::vocab::{Bytes, Timestamp};

/// Everything under the prefix, parsed, at `revision`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    pub revision: i64,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub leader: Option<LeaderRecord>,
    pub jobs: BTreeMap<String, JobRecord>,
    pub runs: BTreeMap<String, ClusterRun>,
    /// By run: the node it is bound to and the binding.
    pub bindings: BTreeMap<String, (String, Binding)>,
    pub statuses: BTreeMap<String, RunStatus>,
    /// Records that do not parse, or whose key and content disagree.
    pub bad: Vec<BadRecord>,
}

/// Reads the whole view in one request.
pub async fn read(client: &mut Client, keys: &Keys) -> Result<ClusterView, ClusterError> {
    let response = client.get(keys.all(), Some(GetOptions::new().with_prefix())).await?;
    let mut view = ClusterView {
        revision: response.header().map_or(0, |h| h.revision()),
        ..ClusterView::default()
    };
    for kv in response.kvs() {
        view.take(keys, &String::from_utf8_lossy(kv.key()), kv.value());
    }
    Ok(view)
}

impl ClusterView {
    /// Files one key's value where it belongs; other keys are not corral's
    /// business here and are skipped.
    pub fn take(&mut self, keys: &Keys, key: &str, value: &[u8]) {
        fn named<T: for<'de> serde::Deserialize<'de>>(
            key: &str,
            value: &[u8],
            name: &str,
            name_of: impl Fn(&T) -> &str,
        ) -> Result<T, BadRecord> {
            let record: T = decode(key, value)?;
            if name_of(&record) != name {
                return Err(BadRecord {
                    key: key.to_owned(),
                    reason: format!("it is about {:?}, not {name:?}", name_of(&record)),
                });
            }
            Ok(record)
        }
        let result = if key == keys.leader() {
            decode(key, value).map(|r| self.leader = Some(r))
        } else if let Some(name) = Keys::name_in(key, &keys.nodes()) {
            named(key, value, name, |r: &NodeRecord| &r.name)
                .map(|r| drop(self.nodes.insert(name.to_owned(), r)))
        } else if let Some(name) = Keys::name_in(key, &keys.jobs()) {
            named(key, value, name, |r: &JobRecord| &r.name)
                .map(|r| drop(self.jobs.insert(name.to_owned(), r)))
        } else if let Some(name) = Keys::name_in(key, &keys.runs()) {
            named(key, value, name, |r: &ClusterRun| &r.run)
                .map(|r| drop(self.runs.insert(name.to_owned(), r)))
        } else if let Some(name) = Keys::name_in(key, &keys.statuses()) {
            named(key, value, name, |r: &RunStatus| &r.run)
                .map(|r| drop(self.statuses.insert(name.to_owned(), r)))
        } else if let Some((node, run)) = keys.binding_parts(key) {
            named(key, value, run, |r: &Binding| &r.run)
                .map(|r| drop(self.bindings.insert(run.to_owned(), (node.to_owned(), r))))
        } else {
            Ok(())
        };
        if let Err(bad) = result {
            self.bad.push(bad);
        }
    }

    /// The status of `run` if it is about the run's current attempt.
    pub fn current_status(&self, run: &ClusterRun) -> Option<&RunStatus> {
        self.statuses.get(&run.run).filter(|s| s.attempt == run.attempt)
    }
}

/// One line of `corral ps --cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub run: String,
    pub job: String,
    /// `pending (reason)`, `bound`, the node's phase, `ended: outcome`, or
    /// `bad record: ...`.
    pub state: String,
    pub node: Option<String>,
    pub node_run: Option<String>,
    pub attempt: Option<u32>,
    pub created_at: Option<Timestamp>,
}

/// Every cluster run, oldest first (newest last), then the bad records.
pub fn run_rows(view: &ClusterView) -> Vec<RunRow> {
    let mut runs: Vec<&ClusterRun> = view.runs.values().collect();
    runs.sort_by(|a, b| (a.created_at, &a.run).cmp(&(b.created_at, &b.run)));
    let mut rows: Vec<RunRow> = runs.into_iter().map(|run| run_row(view, run)).collect();
    rows.extend(view.bad.iter().map(|bad| RunRow {
        run: bad.key.clone(),
        job: "-".into(),
        state: format!("bad record: {}", bad.reason),
        node: None,
        node_run: None,
        attempt: None,
        created_at: None,
    }));
    rows
}

fn run_row(view: &ClusterView, run: &ClusterRun) -> RunRow {
    let status = view.current_status(run);
    let mut state = match &run.state {
        ClusterRunState::Pending { reason: Some(reason) } => format!("pending ({reason})"),
        ClusterRunState::Pending { reason: None } => "pending".to_owned(),
        ClusterRunState::Bound { .. } => match status {
            Some(s) => match &s.detail {
                Some(detail) => format!("{} ({detail})", s.phase),
                None => s.phase.clone(),
            },
            None => "bound".to_owned(),
        },
        ClusterRunState::Ended { outcome, .. } => format!("ended: {outcome}"),
        ClusterRunState::Lost { since, .. } => format!("lost (node gone since {since})"),
    };
    if run.removed && !matches!(run.state, ClusterRunState::Ended { .. }) {
        state.push_str(", removed");
    }
    let node = match &run.state {
        ClusterRunState::Bound { node, .. } | ClusterRunState::Lost { node, .. } => {
            Some(node.clone())
        }
        ClusterRunState::Ended { node, .. } => node.clone(),
        ClusterRunState::Pending { .. } => None,
    };
    RunRow {
        run: run.run.clone(),
        job: run.job.clone(),
        state,
        node: node.or_else(|| status.map(|s| s.node.clone())),
        node_run: status.and_then(|s| s.node_run.clone()),
        attempt: Some(run.attempt),
        created_at: Some(run.created_at),
    }
}

/// One line of `corral nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub scheduler: bool,
    pub labels: BTreeMap<String, String>,
    pub cgroup_mode: String,
    pub cpus_allocated: u32,
    pub cpus_allocatable: u32,
    pub memory_allocated: u64,
    pub memory_allocatable: u64,
    pub runs: u32,
    pub pending: u32,
    pub version: String,
    pub api: Option<String>,
    pub updated_at: Timestamp,
    /// Per NUMA node: `(node, cpus allocated/allocatable, memory allocated/allocatable)`.
    pub numa: Vec<NumaRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaRow {
    pub node: u32,
    pub cpus_allocated: u32,
    pub cpus_allocatable: u32,
    pub memory_allocated: u64,
    pub memory_allocatable: u64,
}

pub fn node_rows(view: &ClusterView) -> Vec<NodeRow> {
    let leader = view.leader.as_ref().map(|l| l.node.as_str());
    view.nodes
        .values()
        .map(|n| NodeRow {
            name: n.name.clone(),
            scheduler: leader == Some(n.name.as_str()),
            labels: n.labels.clone(),
            cgroup_mode: n.cgroup_mode.clone(),
            cpus_allocated: n.allocated.exclusive_cpus,
            cpus_allocatable: n.capacity.cpus,
            memory_allocated: n.allocated.memory,
            memory_allocatable: n.capacity.memory,
            runs: n.allocated.runs,
            pending: n.allocated.pending,
            version: n.version.clone(),
            api: n.api.clone(),
            updated_at: n.updated_at,
            numa: n
                .capacity
                .numa
                .iter()
                .map(|cap| {
                    let held = n.allocated.numa.iter().find(|a| a.node == cap.node);
                    NumaRow {
                        node: cap.node,
                        cpus_allocated: held.map_or(0, |h| h.cpus),
                        cpus_allocatable: cap.cpus,
                        memory_allocated: held.map_or(0, |h| h.memory),
                        memory_allocatable: cap.memory,
                    }
                })
                .collect(),
        })
        .collect()
}

/// `a=1,b=2`, or `-`.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// `2/4`: allocated of allocatable.
pub fn share(allocated: u64, allocatable: u64, as_bytes: bool) -> String {
    if as_bytes {
        format!("{}/{}", Bytes(allocated), Bytes(allocatable))
    } else {
        format!("{allocated}/{allocatable}")
    }
}

/// Where to read a cluster run's logs, as `corral logs` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogsAt {
    /// This node ran it: the local run's id.
    Here { node_run: String },
    /// Another node ran it.
    Elsewhere { node: String, node_run: String },
    /// No node has reported a local run for it yet.
    NotStarted { state: String },
}

/// Where the logs of cluster run `run` are, for node `this_node`.
pub fn logs_at(view: &ClusterView, run: &ClusterRun, this_node: &str) -> LogsAt {
    // The latest status names the node that ran the latest attempt, even
    // when the scheduler has moved the run on since.
    match view.statuses.get(&run.run) {
        Some(RunStatus { node, node_run: Some(node_run), .. }) if node == this_node => {
            LogsAt::Here { node_run: node_run.clone() }
        }
        Some(RunStatus { node, node_run: Some(node_run), .. }) => {
            LogsAt::Elsewhere { node: node.clone(), node_run: node_run.clone() }
        }
        _ => LogsAt::NotStarted { state: run_row(view, run).state },
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
