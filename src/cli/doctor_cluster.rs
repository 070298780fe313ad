//! `corral doctor --cluster`: can this node use its cluster now? Each
//! member of the agent configuration's `cluster:` section asked for its
//! status, whether a quorum (a leader) exists, and whether the node holds
//! its lease (its record, which lives under the lease, is in etcd). A node
//! agent that is fenced says so in `/readyz` and `corral ps`.

use std::fmt::Write as _;

use crate::cluster::etcd::{self, EndpointHealth, EndpointState};
use crate::cluster::node::fence::unavailable;
use crate::cluster::Keys;
use crate::config::ClusterConfig;

/// What doctor found about the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterCheck {
    pub node: String,
    pub members: Vec<MemberCheck>,
    /// Why the cluster cannot be used; `None` when it can.
    pub unavailable: Option<String>,
    /// Whether the node's record (under its lease) is in etcd; `None` when
    /// etcd could not be read.
    pub lease_held: Option<bool>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberCheck {
    pub endpoint: String,
    /// `answered`, `down` (refuses connections) or `unreachable`.
    pub state: &'static str,
    pub leader: Option<u64>,
    pub error: Option<String>,
}

impl MemberCheck {
    fn of(h: &EndpointHealth) -> MemberCheck {
        let (state, leader, error) = match &h.state {
            EndpointState::Answered { leader, .. } => ("answered", Some(*leader), None),
            EndpointState::Down { error } => ("down", None, Some(error.clone())),
            EndpointState::Unreachable { error } => ("unreachable", None, Some(error.clone())),
        };
        MemberCheck { endpoint: h.endpoint.clone(), state, leader, error }
    }
}

impl ClusterCheck {
    pub async fn of(cluster: &ClusterConfig) -> anyhow::Result<ClusterCheck> {
        let health = etcd::probe(cluster).await?;
        let problem = unavailable(cluster.endpoints.len(), &health);
        let lease_held = if problem.is_none() {
            let keys = Keys::new(&cluster.prefix);
            match etcd::connect(cluster).await {
                Ok(mut client) => client
                    .get(keys.node(&cluster.node_name), None)
                    .await
                    .ok()
                    .map(|got| !got.kvs().is_empty()),
                Err(_) => None,
            }
        } else {
            None
        };
        Ok(ClusterCheck {
            node: cluster.node_name.clone(),
            members: health.iter().map(MemberCheck::of).collect(),
            unavailable: problem,
            lease_held,
        })
    }

    pub fn usable(&self) -> bool {
        self.unavailable.is_none()
    }

    pub fn render(&self) -> String {
        let mut out = String::from("cluster:\n");
        for m in &self.members {
            let what = match (m.state, m.leader, &m.error) {
                ("answered", Some(0), _) => "answers, knows no leader".to_owned(),
                ("answered", Some(leader), _) => format!("answers, leader {leader:x}"),
                (state, _, Some(error)) => format!("{state}: {error}"),
                (state, _, None) => state.to_owned(),
            };
            let _ = writeln!(out, "  member {}: {what}", m.endpoint);
        }
        match &self.unavailable {
            None => out.push_str("  quorum: yes\n"),
            Some(why) => {
                let _ = writeln!(
                    out,
                    "  UNAVAILABLE: {why}; local runs go on, no new cluster placements"
                );
            }
        }
        let _ = match self.lease_held {
            Some(true) => writeln!(out, "  node {}: lease held (its record is in etcd)", self.node),
            Some(false) => writeln!(
                out,
                "  node {}: no lease (no record in etcd: the agent is stopped, or fenced and \
                 joining again)",
                self.node
            ),
            None => writeln!(out, "  node {}: lease unknown (etcd cannot be read)", self.node),
        };
        out
    }
}
