//! The node's lease and its record under it.
//!
//! The record lives under the lease, so a node that stops renewing it (the
//! agent killed, the machine gone, cut off from etcd) leaves the cluster
//! view one TTL later without anyone deleting it. The lease is renewed at a
//! third of its TTL, so two renewals may be lost before it lapses. A renewal
//! etcd answers with TTL 0 means the lease already lapsed (the agent paused
//! longer than the TTL, etcd lost its leader): the node takes a new lease
//! ends the session: the next one takes a new lease, puts the record and
//! lists the node's bindings again, since the scheduler may have rebound
//! some of them meanwhile. Every renewal etcd answers is reported with the
//! time it was sent, for the fence rule ([`super::fence`]).

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::warn;

use super::fence::Renewal;
use super::{Ended, NodeFacts, NodeSummary};
use crate::cluster::records::encode;
use crate::cluster::Keys;
use crate::config::ClusterConfig;
use crate::vocab::Timestamp;

/// The record is written at most this often, however often the summary
/// changes: etcd keeps every revision until compaction, and a busy node
/// changes its allocation with every run.
pub const MIN_PUT_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct Lease {
    id: i64,
    ttl: Duration,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    renew: Interval,
    /// When etcd last answered a renewal.
    answered: Instant,
    /// When the renewals not answered yet were sent, oldest first: etcd
    /// answers them in order on the stream.
    in_flight: VecDeque<Instant>,
    /// When the lease was asked for: its first "renewal".
    granted: Instant,
    renewals: watch::Sender<Option<Renewal>>,
    /// What the record says now.
    written: NodeSummary,
    last_put: Instant,
    /// The summary changed since it was written.
    dirty: bool,
}

impl Lease {
    /// Takes a lease and puts the node's record under it.
    pub async fn join(
        client: &mut Client,
        config: &ClusterConfig,
        keys: &Keys,
        facts: &NodeFacts,
        summary: &mut watch::Receiver<NodeSummary>,
        renewals: watch::Sender<Option<Renewal>>,
    ) -> Result<Lease, Ended> {
        let ttl = config.lease_ttl;
        let granted = Instant::now();
        let (id, keeper, stream) = grant(client, ttl).await?;
        let mut renew = tokio::time::interval(ttl / 3);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let written = summary.borrow_and_update().clone();
        put(client, keys, facts, &written, id).await?;
        Ok(Lease {
            id,
            ttl,
            keeper,
            stream,
            renew,
            answered: Instant::now(),
            in_flight: VecDeque::new(),
            granted,
            renewals,
            written,
            last_put: Instant::now(),
            dirty: false,
        })
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// Counts the new lease as renewed: called once the node's bindings
    /// were listed under it, so that the fence is lifted only after the
    /// main loop knows which of its runs are still bound here.
    pub fn joined(&self) {
        self.renewals.send_replace(Some(Renewal { lease: self.id, sent: self.granted }));
    }

    /// Does the next thing the lease needs: a renewal, taking a new lease
    /// when the old one lapsed, or writing a changed summary. Cancel safe:
    /// what is left undone is done by the next call.
    pub async fn keep(
        &mut self,
        client: &mut Client,
        keys: &Keys,
        facts: &NodeFacts,
        summary: &mut watch::Receiver<NodeSummary>,
    ) -> Result<(), Ended> {
        let due = self.dirty.then(|| self.last_put + MIN_PUT_INTERVAL);
        tokio::select! {
            _ = self.renew.tick() => {
                // Renewals unanswered for a whole TTL: the lease may be gone
                // without the connection saying so. Start over.
                if self.answered.elapsed() > self.ttl {
                    return Err(Ended::Stalled(format!(
                        "etcd has not answered the renewals of lease {} for {:?}",
                        self.id, self.ttl
                    )));
                }
                self.in_flight.push_back(Instant::now());
                self.keeper.keep_alive().await?
            }
            answer = self.stream.message() => match answer? {
                Some(answer) if answer.ttl() > 0 => {
                    self.answered = Instant::now();
                    // An answer nothing was sent for (none expected) counts
                    // from the oldest moment that could be its send time.
                    let sent = self.in_flight.pop_front().unwrap_or(self.granted);
                    self.renewals.send_replace(Some(Renewal { lease: self.id, sent }));
                }
                _ => {
                    warn!(
                        node = %facts.name,
                        lease = self.id,
                        "cluster: the node's lease lapsed; joining again with a new one"
                    );
                    return Err(Ended::Stalled(format!("lease {} lapsed", self.id)));
                }
            },
            changed = summary.changed(), if !self.dirty => match changed {
                Ok(()) => self.dirty = *summary.borrow() != self.written,
                Err(_) => return Err(Ended::Closed),
            },
            () = sleep_until(due), if due.is_some() => {
                let latest = summary.borrow_and_update().clone();
                if latest != self.written {
                    put(client, keys, facts, &latest, self.id).await?;
                    self.written = latest;
                    self.last_put = Instant::now();
                }
                self.dirty = false;
            }
        }
        Ok(())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn grant(
    client: &mut Client,
    ttl: Duration,
) -> Result<(i64, LeaseKeeper, LeaseKeepAliveStream), Ended> {
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let id = client.lease_grant(ttl, None).await?.id();
    let (keeper, stream) = client.lease_keep_alive(id).await?;
    Ok((id, keeper, stream))
}

async fn put(
    client: &mut Client,
    keys: &Keys,
    facts: &NodeFacts,
    summary: &NodeSummary,
    lease: i64,
) -> Result<(), Ended> {
    let record = facts.record(summary, Timestamp::now());
    client
        .put(keys.node(&facts.name), encode(&record), Some(PutOptions::new().with_lease(lease)))
        .await?;
    Ok(())
}
