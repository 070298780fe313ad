//! The node side of cluster mode: the task that keeps this node in the
//! cluster and carries its traffic with etcd, so that the agent's main loop
//! never waits on the network.
//!
//! - [`lease`]: the node's lease and its record under it (`nodes/{node}`),
//!   written when the summary changes, at most once a second.
//! - [`bindings`]: the runs bound to this node (`bindings/{node}/`): a
//!   listing, then a watch from the listing's revision; they go to the main
//!   loop as [`NodeEvent`]s.
//! - [`status`]: what the node reports of each cluster run (`status/{run}`),
//!   made from the local run's record.
//! - [`record`]: what the node publishes about itself (pure).
//! - [`fence`]: self-fencing: freezing the node's cluster runs when its
//!   lease cannot be renewed, and the quorum-loss exception.
//!
//! One task holds one connection. When etcd cannot be reached, or the
//! connection breaks, the task connects again with backoff and starts over:
//! a new lease, the record, a fresh listing. Statuses wait meanwhile, the
//! latest per run, and are written in order once it is back.

pub mod bindings;
pub mod fence;
pub mod lease;
pub mod record;
pub mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::cluster::records::{Binding, RunStatus};
use crate::cluster::{ClusterError, Keys};
use crate::config::ClusterConfig;

pub use record::{NodeFacts, NodeSummary};

/// What the node task tells the main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// Everything bound to this node now, read after (re)connecting: each is
    /// taken as a [`NodeEvent::Bound`], and a live local run of a cluster
    /// run not in it is stopped as unbound.
    Listed(Vec<Binding>),
    /// A binding appeared or was rewritten.
    Bound(Binding),
    /// The binding of cluster run `run` was deleted.
    Unbound { run: String },
    /// The node's lease went unrenewed to the fence point: freeze every
    /// live cluster run (see [`fence`]). `problem` says why.
    Fenced { problem: String },
    /// The lease is renewed again (the same one, or a new one after the
    /// bindings were listed again under it): thaw the fenced runs.
    Unfenced,
    /// The cluster became unavailable without the node fencing (the
    /// quorum is lost), or available again (`None`).
    Unavailable { problem: Option<String> },
}

/// The main loop's end of the node task.
#[derive(Debug)]
pub struct NodeLink {
    pub events: mpsc::Receiver<NodeEvent>,
    /// Statuses to write; a later one for the same run replaces an earlier
    /// one not yet written.
    pub statuses: mpsc::UnboundedSender<RunStatus>,
    /// The latest summary; the task publishes it when it changed.
    pub summary: watch::Sender<NodeSummary>,
    pub node: String,
}

/// First wait before connecting again; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Starts the node task for `config`: the node joins with `facts` and the
/// summary sent on the link. The task ends when the link is dropped; its
/// lease then lapses and the node leaves the cluster view a TTL later.
pub fn spawn(config: ClusterConfig, facts: NodeFacts, summary: NodeSummary) -> NodeLink {
    let (events_tx, events) = mpsc::channel(256);
    let (statuses, statuses_rx) = mpsc::unbounded_channel();
    let (summary_tx, summary_rx) = watch::channel(summary);
    let node = config.node_name.clone();
    let (renewals, renewals_rx) = watch::channel(None);
    tokio::spawn(fence::watch(config.clone(), renewals_rx, events_tx.clone()));
    tokio::spawn(run(config, facts, summary_rx, statuses_rx, events_tx, renewals));
    NodeLink { events, statuses, summary: summary_tx, node }
}

/// Why a session ended.
enum Ended {
    /// The main loop is gone: stop.
    Closed,
    Failed(ClusterError),
    /// etcd stopped answering on a stream without the connection failing.
    Stalled(String),
}

impl From<ClusterError> for Ended {
    fn from(e: ClusterError) -> Ended {
        Ended::Failed(e)
    }
}

impl From<etcd_client::Error> for Ended {
    fn from(e: etcd_client::Error) -> Ended {
        Ended::Failed(e.into())
    }
}

/// Statuses waiting to be written: the latest per run, in the order the
/// runs were first queued.
#[derive(Debug, Default)]
struct Outbox {
    order: Vec<String>,
    latest: BTreeMap<String, RunStatus>,
}

impl Outbox {
    fn push(&mut self, status: RunStatus) {
        if !self.latest.contains_key(&status.run) {
            self.order.push(status.run.clone());
        }
        self.latest.insert(status.run.clone(), status);
    }

    fn front(&self) -> Option<&RunStatus> {
        self.order.first().and_then(|run| self.latest.get(run))
    }

    /// Keeps only the statuses of attempts `bound` still binds here: one
    /// queued while the node was cut off, of an attempt the scheduler has
    /// since bound elsewhere, would be written over the new attempt's.
    fn keep_bound(&mut self, bound: &[Binding]) {
        let still = |s: &RunStatus| bound.iter().any(|b| b.run == s.run && b.attempt == s.attempt);
        self.latest.retain(|_, s| still(s));
        let latest = &self.latest;
        self.order.retain(|run| latest.contains_key(run));
    }

    fn pop(&mut self) {
        if !self.order.is_empty() {
            let run = self.order.remove(0);
            self.latest.remove(&run);
        }
    }
}

async fn run(
    config: ClusterConfig,
    facts: NodeFacts,
    mut summary: watch::Receiver<NodeSummary>,
    mut statuses: mpsc::UnboundedReceiver<RunStatus>,
    events: mpsc::Sender<NodeEvent>,
    renewals: watch::Sender<Option<fence::Renewal>>,
) {
    let keys = Keys::new(&config.prefix);
    let mut outbox = Outbox::default();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        let ended = session(
            &config,
            &keys,
            &facts,
            &mut summary,
            &mut statuses,
            &mut outbox,
            &events,
            &renewals,
        )
        .await;
        let problem = match ended {
            Ended::Closed => return,
            Ended::Failed(e) => e.to_string(),
            Ended::Stalled(what) => what,
        };
        // A session that ran a while was a working connection that broke:
        // try again soon.
        if started.elapsed() > MAX_BACKOFF {
            backoff = FIRST_BACKOFF;
        }
        warn!(node = %config.node_name, retry_in = ?backoff, "cluster: {problem}; connecting again");
        // Statuses queued meanwhile are kept for the next session.
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                got = statuses.recv() => match got {
                    Some(status) => outbox.push(status),
                    None => return,
                },
            }
        }
        // Never longer than a third of the TTL: a node that could renew
        // again must not sit out its fence point waiting to reconnect.
        backoff = (backoff * 2).min(MAX_BACKOFF).min(config.lease_ttl / 3);
    }
}

/// One connection: join, list, then serve until something fails.
#[allow(clippy::too_many_arguments)]
async fn session(
    config: &ClusterConfig,
    keys: &Keys,
    facts: &NodeFacts,
    summary: &mut watch::Receiver<NodeSummary>,
    statuses: &mut mpsc::UnboundedReceiver<RunStatus>,
    outbox: &mut Outbox,
    events: &mpsc::Sender<NodeEvent>,
    renewals: &watch::Sender<Option<fence::Renewal>>,
) -> Ended {
    let mut client = match crate::cluster::etcd::connect(config).await {
        Ok(client) => client,
        Err(e) => return Ended::Failed(e),
    };
    let joined = lease::Lease::join(&mut client, config, keys, facts, summary, renewals.clone());
    let mut lease = match joined.await {
        Ok(lease) => lease,
        Err(e) => return e,
    };
    info!(node = %config.node_name, lease = lease.id(), "joined the cluster");
    let mut watching = match bindings::Bindings::start(&mut client, keys, &config.node_name).await {
        Ok((watching, listed)) => {
            outbox.keep_bound(&listed);
            if events.send(NodeEvent::Listed(listed)).await.is_err() {
                return Ended::Closed;
            }
            // Only now may a fence be lifted: the main loop has the listing
            // ahead of it and kills what is no longer bound here first.
            lease.joined();
            watching
        }
        Err(e) => return e.into(),
    };
    // Each stream has a client of its own: they wait at the same time.
    let (mut for_lease, mut for_watch) = (client.clone(), client.clone());
    loop {
        // Waiting statuses go first, one at a time, oldest first.
        if let Some(status) = outbox.front() {
            let key = keys.status(&status.run);
            let value = crate::cluster::records::encode(status);
            if let Err(e) = client.put(key, value, None).await {
                return e.into();
            }
            outbox.pop();
            continue;
        }
        tokio::select! {
            got = statuses.recv() => match got {
                Some(status) => outbox.push(status),
                None => return Ended::Closed,
            },
            kept = lease.keep(&mut for_lease, keys, facts, summary) => {
                if let Err(e) = kept {
                    return e;
                }
            }
            seen = watching.next(&mut for_watch, keys, &config.node_name) => match seen {
                Ok(found) => {
                    for event in found {
                        if events.send(event).await.is_err() {
                            return Ended::Closed;
                        }
                    }
                }
                Err(e) => return e.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Timestamp;

    fn status(run: &str, phase: &str) -> RunStatus {
        RunStatus {
            run: run.into(),
            node: "n1".into(),
            attempt: 1,
            node_run: None,
            phase: phase.into(),
            detail: None,
            ended: None,
            handed_back: None,
            events: Vec::new(),
            updated_at: Timestamp::EPOCH,
        }
    }

    #[test]
    fn the_outbox_keeps_the_latest_status_per_run_in_first_queued_order() {
        let mut out = Outbox::default();
        out.push(status("a-1", "pending"));
        out.push(status("b-1", "pending"));
        out.push(status("a-1", "running"));
        assert_eq!(
            out.front().map(|s| (s.run.as_str(), s.phase.as_str())),
            Some(("a-1", "running"))
        );
        out.pop();
        assert_eq!(out.front().map(|s| s.run.as_str()), Some("b-1"));
        out.pop();
        assert!(out.front().is_none());
        out.pop();
        assert!(out.front().is_none());
    }

    #[test]
    fn after_a_listing_only_statuses_of_attempts_still_bound_here_are_written() {
        let mut out = Outbox::default();
        out.push(status("a-1", "suspended"));
        out.push(status("b-1", "running"));
        let binding = |run: &str, attempt| Binding {
            run: run.into(),
            job: "a".into(),
            attempt,
            job_revision: 1,
            file: "a.yaml".into(),
            source: String::new(),
            memory_hard: None,
            scheduled_for: None,
            bound_by: "n0".into(),
            bound_at: Timestamp::EPOCH,
        };
        out.keep_bound(&[binding("b-1", 1), binding("a-1", 2)]);
        assert_eq!(out.front().map(|s| s.run.as_str()), Some("b-1"));
        out.pop();
        assert!(out.front().is_none(), "a-1's attempt 1 was rebound: not written");
    }
}
