//! Electing one scheduler, and fencing everything it writes.
//!
//! The leader holds `{prefix}/leader` under a lease of its own, taken by a
//! transaction conditioned on the key's absence. The key's create revision
//! is the leadership's identity: etcd gives every creation a new one, so a
//! leader that lost the key (its lease expired while it was paused, say)
//! and a new leader that took it can never hold the same one. Every write
//! of the scheduler goes through [`fenced`], which conditions it on that
//! revision still being the key's: a deposed leader's write changes nothing.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::cluster::records::{encode, LeaderRecord};
use crate::cluster::{ClusterError, Keys};
use crate::vocab::Timestamp;

/// This agent's leadership while it lasts.
#[derive(Debug)]
pub struct Leadership {
    pub lease: i64,
    /// The create revision of the leader key this agent wrote: the fence.
    pub revision: i64,
    /// Turns true when the lease is lost (a keepalive failed or expired).
    lost: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl Leadership {
    /// Resolves once the lease is known lost.
    pub async fn lost(&self) {
        // An error means the keeper ended, which it does only on loss.
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|lost| *lost).await;
    }

    /// Gives the leadership up at once: deletes the key (fenced: only if it
    /// is still ours) and revokes the lease, so another agent takes over
    /// without waiting for the TTL.
    pub async fn resign(self, client: &mut Client, keys: &Keys) {
        let leader = keys.leader();
        let txn = Txn::new()
            .when([Compare::create_revision(leader.clone(), CompareOp::Equal, self.revision)])
            .and_then([TxnOp::delete(leader, None)]);
        if let Err(e) = client.txn(txn).await {
            warn!("cluster scheduler: resigning: {e}");
        }
        if let Err(e) = client.lease_revoke(self.lease).await {
            debug!("cluster scheduler: revoking lease {:x}: {e}", self.lease);
        }
    }
}

/// What a fenced write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// Written, at this revision.
    Done { revision: i64 },
    /// Still the leader, but another guard failed: something changed first.
    Conflict,
}

/// Waits until this agent is the leader (or an etcd error).
pub async fn campaign(
    client: &mut Client,
    keys: &Keys,
    node: &str,
    ttl: Duration,
) -> Result<Leadership, ClusterError> {
    let leader = keys.leader();
    loop {
        let grant = client.lease_grant(ttl.as_secs().max(1) as i64, None).await?;
        let lease = grant.id();
        let record = LeaderRecord { node: node.to_owned(), since: Timestamp::now() };
        let txn = Txn::new()
            .when([Compare::create_revision(leader.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                leader.clone(),
                encode(&record),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(leader.clone(), None)]);
        let response = client.txn(txn).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            let (tx, lost) = watch::channel(false);
            let keeper = tokio::spawn(keep_alive(client.clone(), lease, ttl, tx));
            return Ok(Leadership { lease, revision, lost, keeper });
        }
        let _ = client.lease_revoke(lease).await;
        // Someone leads: wait for its key to go, watching from just after
        // the read so that a deletion in between is not missed.
        let holder = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.create_revision()),
            _ => None,
        });
        if holder.is_some() {
            wait_deleted(client, &leader, revision + 1).await?;
        }
    }
}

/// Returns when `key` is deleted at or after `from`.
async fn wait_deleted(client: &mut Client, key: &str, from: i64) -> Result<(), ClusterError> {
    let options = WatchOptions::new().with_start_revision(from);
    let mut stream = client.watch(key, Some(options)).await?;
    while let Some(response) = stream.message().await? {
        if response.canceled() {
            // Compacted past `from`: read afresh.
            return Ok(());
        }
        if response.events().iter().any(|e| e.event_type() == EventType::Delete) {
            return Ok(());
        }
    }
    Ok(())
}

/// Renews the lease every third of its TTL; reports the loss when a renewal
/// fails or etcd says the lease is gone.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let every = (ttl / 3).max(Duration::from_millis(200));
    let result: Result<(), ClusterError> = async {
        let (mut keeper, mut responses) = client.lease_keep_alive(lease).await?;
        loop {
            keeper.keep_alive().await?;
            match tokio::time::timeout(ttl, responses.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Ok(()),
            }
            tokio::time::sleep(every).await;
        }
    }
    .await;
    if let Err(e) = result {
        warn!("cluster scheduler: keeping lease {lease:x} alive: {e}");
    }
    let _ = lost.send(true);
}

/// Writes `ops` if this agent still leads and every guard in `compares`
/// holds, in one transaction. `Err(Deposed)`: the leader key is no longer
/// ours; nothing was written.
pub async fn fenced(
    client: &mut Client,
    keys: &Keys,
    leadership: &Leadership,
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
) -> Result<Fenced, ClusterError> {
    let leader = keys.leader();
    let mut when =
        vec![Compare::create_revision(leader.clone(), CompareOp::Equal, leadership.revision)];
    when.extend(compares);
    let txn = Txn::new().when(when).and_then(ops).or_else([TxnOp::get(leader, None)]);
    let response = client.txn(txn).await?;
    if response.succeeded() {
        return Ok(Fenced::Done { revision: response.header().map_or(0, |h| h.revision()) });
    }
    let still_ours = response.op_responses().into_iter().any(|r| match r {
        TxnOpResponse::Get(get) => {
            get.kvs().first().is_some_and(|kv| kv.create_revision() == leadership.revision)
        }
        _ => false,
    });
    if still_ours {
        Ok(Fenced::Conflict)
    } else {
        Err(ClusterError::Deposed)
    }
}
