//! What the cluster commands share: finding the cluster from the agent
//! configuration's `cluster:` section, talking to etcd, and `corral ps
//! --cluster`, `corral show` and `corral logs` for cluster runs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use etcd_client::Client;
use serde::Serialize;

use super::client::{age, bytes, table};
use crate::cluster::records::{Binding, ClusterRun, ClusterRunState, RunStatus};
use crate::cluster::view::{self, ClusterView, LogsAt};
use crate::cluster::Keys;
use crate::config::{self, ClusterConfig};
use crate::vocab::Timestamp;

/// Which cluster to talk to: the one the agent configuration joins.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The agent configuration whose `cluster:` section names etcd (its
    /// endpoints, TLS files and key prefix).
    #[arg(long, value_name = "FILE", env = "CORRAL_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

/// The `cluster:` section of the configuration at `path`, or an error
/// saying there is none.
pub fn cluster_config(path: &Path) -> anyhow::Result<ClusterConfig> {
    cluster_of(super::load_config(path)?, path)
}

/// The `cluster:` section of `config`, read from `path`, or an error saying
/// there is none.
pub fn cluster_of(config: config::AgentConfig, path: &Path) -> anyhow::Result<ClusterConfig> {
    config.cluster.with_context(|| {
        format!(
            "{} has no `cluster:` section, so this agent is not in a cluster; name the \
             configuration of a cluster member with --config FILE (or CORRAL_CONFIG)",
            path.display()
        )
    })
}

/// The cluster section when the file exists and has one: for commands that
/// fall back to the cluster (`show`, `logs`).
pub fn configured(path: &Path) -> anyhow::Result<Option<ClusterConfig>> {
    if !path.exists() {
        return Ok(None);
    }
    Ok(super::load_config(path)?.cluster)
}

/// Runs `future` to its end on a runtime of its own: the commands are
/// synchronous, etcd's client is not.
pub fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime for the etcd client")?;
    Ok(runtime.block_on(future))
}

pub async fn connect(cluster: &ClusterConfig) -> anyhow::Result<(Client, Keys)> {
    let client = crate::cluster::etcd::connect(cluster).await?;
    Ok((client, Keys::new(&cluster.prefix)))
}

/// The whole cluster view.
pub fn read_view(cluster: &ClusterConfig) -> anyhow::Result<ClusterView> {
    block_on(async {
        let (mut client, keys) = connect(cluster).await?;
        Ok(view::read(&mut client, &keys).await?)
    })?
}

/// `user@host`, for the records this command writes.
pub fn applied_by() -> String {
    let uid = nix::unistd::geteuid();
    let user =
        nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(|| uid.to_string(), |u| u.name);
    format!("{user}@{}", crate::scheduler::cron::jitter::node_name())
}

fn age_of(at: Timestamp) -> String {
    age(Timestamp::now().since(at).as_secs())
}

/// `corral ps --cluster`.
pub fn ps(config: &Path, job: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let view = read_view(&cluster_config(config)?)?;
    let mut rows = view::run_rows(&view);
    if let Some(job) = job {
        rows.retain(|r| r.job == job);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.run.clone(),
                r.job.clone(),
                r.state.clone(),
                dash(&r.node),
                dash(&r.node_run),
                r.attempt.map_or_else(|| "-".into(), |a| a.to_string()),
                r.created_at.map_or_else(|| "-".into(), age_of),
            ]
        })
        .collect();
    table(&["RUN", "JOB", "STATE", "NODE", "NODE RUN", "ATTEMPT", "AGE"], &lines);
    Ok(ExitCode::SUCCESS)
}

/// A cluster run with everything known about it, for `corral show`.
#[derive(Debug, Serialize)]
pub struct ShownClusterRun<'a> {
    pub run: &'a ClusterRun,
    pub binding: Option<(&'a str, &'a Binding)>,
    pub status: Option<&'a RunStatus>,
}

/// The cluster runs `target` names: the run of that id, or every run of
/// the job of that name; empty when the cluster knows neither.
pub fn shown<'a>(view: &'a ClusterView, target: &str) -> Vec<ShownClusterRun<'a>> {
    let mut runs: Vec<&ClusterRun> = match view.runs.get(target) {
        Some(run) => vec![run],
        None => view.runs.values().filter(|r| r.job == target).collect(),
    };
    runs.sort_by_key(|r| (r.created_at, r.run.clone()));
    runs.into_iter()
        .map(|run| ShownClusterRun {
            run,
            binding: view.bindings.get(&run.run).map(|(node, b)| (node.as_str(), b)),
            status: view.statuses.get(&run.run),
        })
        .collect()
}

/// `corral show` for the cluster: `Ok(None)` when the cluster does not
/// know `target` either.
pub fn show(cluster: &ClusterConfig, target: &str, json: bool) -> anyhow::Result<Option<ExitCode>> {
    let view = read_view(cluster)?;
    let runs = shown(&view, target);
    if runs.is_empty() {
        return Ok(None);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(Some(ExitCode::SUCCESS));
    }
    for (i, shown) in runs.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", show_text(shown));
    }
    Ok(Some(ExitCode::SUCCESS))
}

/// The lines `corral show` prints for one cluster run.
pub fn show_text(shown: &ShownClusterRun<'_>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let run = shown.run;
    let mut line = |label: &str, text: String| {
        let head = format!("{label}:");
        let _ = writeln!(out, "{head:<10} {text}");
    };
    line("run", format!("{} (cluster job {}, attempt {})", run.run, run.job, run.attempt));
    line(
        "state",
        match &run.state {
            ClusterRunState::Pending { reason: Some(reason) } => format!("pending: {reason}"),
            ClusterRunState::Pending { reason: None } => "pending".into(),
            ClusterRunState::Bound { node, at } => format!("bound to {node} at {at}"),
            ClusterRunState::Lost { node, since } => {
                format!("lost: bound to {node}, whose record is gone since {since}")
            }
            ClusterRunState::Ended { outcome, at, node } => match node {
                Some(node) => format!("ended {outcome} at {at} on {node}"),
                None => format!("ended {outcome} at {at}"),
            },
        },
    );
    line("created", format!("{} (job record revision {})", run.created_at, run.job_revision));
    if let Some(at) = run.scheduled_for {
        line("scheduled", at.to_string());
    }
    if run.memory_hard.is_some() {
        line("memory", format!("hard limit {} (replaces the job's)", bytes(run.memory_hard)));
    }
    if run.removed {
        line("removed", "its job was deleted or changed (on_removal: stop)".into());
    }
    for (node, reason) in &run.handed_back_by {
        line("handed back", format!("by {node}: {reason}"));
    }
    match shown.binding {
        Some((node, b)) => line(
            "binding",
            format!("{node}, attempt {}, bound by {} at {}", b.attempt, b.bound_by, b.bound_at),
        ),
        None => line("binding", "none".into()),
    }
    if let Some(s) = shown.status {
        let node_run = s.node_run.as_deref().unwrap_or("no local run");
        let mut text = format!("{} on {} ({node_run}, attempt {})", s.phase, s.node, s.attempt);
        if let Some(detail) = &s.detail {
            text.push_str(&format!(": {detail}"));
        }
        text.push_str(&format!(", reported at {}", s.updated_at));
        line("status", text);
        if let Some(end) = &s.ended {
            let exit = end.exit_code.map_or_else(|| "no exit code".into(), |c| format!("exit {c}"));
            let reason = end.reason.as_deref().map(|r| format!(", {r}")).unwrap_or_default();
            line(
                "exit",
                format!(
                    "{} ({exit}{reason}) at {}, OOM kills {}",
                    end.outcome, end.at, end.oom_kills
                ),
            );
        }
        if let Some(back) = &s.handed_back {
            let needs = back
                .needs_memory
                .map(|m| format!(", needs {}", bytes(Some(m))))
                .unwrap_or_default();
            line("hand-back", format!("{}{needs} at {}", back.reason, back.at));
        }
        if !s.events.is_empty() {
            let _ = writeln!(out, "events:");
            for e in &s.events {
                let _ = writeln!(out, "  {}  {}", e.at, e.what);
            }
        }
    }
    out
}

/// Where a cluster run's logs are, seen from this node; `Ok(None)` when
/// the cluster does not know the run.
pub fn logs_at(cluster: &ClusterConfig, run: &str) -> anyhow::Result<Option<LogsAt>> {
    let view = read_view(cluster)?;
    Ok(view.runs.get(run).map(|r| view::logs_at(&view, r, &cluster.node_name)))
}

/// What `corral logs` says of a cluster run whose logs are not here.
pub fn logs_elsewhere_text(run: &str, at: &LogsAt) -> Option<String> {
    match at {
        LogsAt::Here { .. } => None,
        LogsAt::Elsewhere { node, node_run } => Some(format!(
            "{run} ran on node {node} as its run {node_run}; its logs are on that node: run \
             `corral logs {node_run}` there. Reading another node's logs from here (served \
             between nodes over mutual TLS) is not built yet."
        )),
        LogsAt::NotStarted { state } => {
            Some(format!("{run} has no logs yet: no node has started it ({state})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::records::{HandBack, StatusEvent};

    #[test]
    fn a_cluster_run_shows_its_binding_status_events_and_hand_backs() {
        let t = Timestamp::from_millis;
        let run = ClusterRun {
            run: "a-7".into(),
            job: "a".into(),
            job_revision: 7,
            scheduled_for: None,
            created_at: t(0),
            attempt: 2,
            state: ClusterRunState::Bound { node: "n2".into(), at: t(1000) },
            memory_hard: Some(2 << 30),
            handed_back_by: BTreeMap::from([("n1".into(), "needs 2Gi, holds 1Gi".into())]),
            removed: false,
            handed_back_at: BTreeMap::new(),
            pending_since: None,
        };
        let binding = Binding {
            run: "a-7".into(),
            job: "a".into(),
            attempt: 2,
            job_revision: 7,
            file: "/j/a.yaml".into(),
            source: String::new(),
            memory_hard: Some(2 << 30),
            scheduled_for: None,
            bound_by: "n3".into(),
            bound_at: t(1000),
        };
        let status = RunStatus {
            run: "a-7".into(),
            node: "n2".into(),
            attempt: 2,
            node_run: Some("a-1".into()),
            phase: "running".into(),
            detail: None,
            ended: None,
            handed_back: Some(HandBack { reason: "x".into(), needs_memory: None, at: t(0) }),
            events: vec![StatusEvent { at: t(2000), what: "running".into() }],
            updated_at: t(2000),
        };
        let text = show_text(&ShownClusterRun {
            run: &run,
            binding: Some(("n2", &binding)),
            status: Some(&status),
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "run:       a-7 (cluster job a, attempt 2)");
        assert!(lines[1].starts_with("state:     bound to n2 at "), "{text}");
        assert!(text.contains("memory:    hard limit 2Gi (replaces the job's)\n"), "{text}");
        assert!(text.contains("handed back: by n1: needs 2Gi, holds 1Gi\n"), "{text}");
        assert!(text.contains("binding:   n2, attempt 2, bound by n3 at "), "{text}");
        assert!(text.contains("status:    running on n2 (a-1, attempt 2), reported at "), "{text}");
        assert!(text.contains("events:\n  "), "{text}");
    }

    #[test]
    fn logs_of_a_run_elsewhere_name_the_node_and_its_run_and_what_is_not_built() {
        let at = LogsAt::Elsewhere { node: "n2".into(), node_run: "a-1".into() };
        let text = logs_elsewhere_text("a-7", &at).unwrap();
        assert!(text.starts_with("a-7 ran on node n2 as its run a-1"), "{text}");
        assert!(text.contains("`corral logs a-1` there"), "{text}");
        assert!(text.contains("not built yet"), "{text}");
        assert_eq!(logs_elsewhere_text("a-7", &LogsAt::Here { node_run: "a-1".into() }), None);
    }
}
