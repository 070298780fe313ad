//! The node's lease and its record under it.
//!
//! The record lives under the lease, so a node that stops renewing it (the
//! agent killed, the machine gone, cut off from etcd) leaves the cluster
//! view one TTL later without anyone deleting it. The lease is renewed at a
//! third of its TTL, so two renewals may be lost before it lapses. A renewal
//! etcd answers with TTL 0 means the lease already lapsed (the agent paused
//! longer than the TTL, etcd lost its leader): the node takes a new lease
//! and puts its record again, which is all joining takes. Freezing the
//! node's cluster runs when it cannot renew is the next step of cluster
//! mode, not done here.

use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::warn;

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
    ) -> Result<Lease, Ended> {
        let ttl = config.lease_ttl;
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
            written,
            last_put: Instant::now(),
            dirty: false,
        })
    }

    pub fn id(&self) -> i64 {
        self.id
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
                self.keeper.keep_alive().await?
            }
            answer = self.stream.message() => match answer? {
                Some(answer) if answer.ttl() > 0 => self.answered = Instant::now(),
                _ => {
                    warn!(
                        node = %facts.name,
                        lease = self.id,
                        "cluster: the node's lease lapsed; taking a new one and publishing \
                         the node again"
                    );
                    let (id, keeper, stream) = grant(client, self.ttl).await?;
                    (self.id, self.keeper, self.stream) = (id, keeper, stream);
                    self.answered = Instant::now();
                    self.written = summary.borrow_and_update().clone();
                    put(client, keys, facts, &self.written, self.id).await?;
                    self.last_put = Instant::now();
                    self.dirty = false;
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
