//! Why the agent cannot start or cannot go on.

use std::path::PathBuf;

use crate::launch::LaunchError;
use crate::placement::PlacementError;
use crate::store::StoreError;
use crate::topology::TopologyError;
use crate::watch::WatchError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store refused a write. The agent stops rather than act on a
    /// decision it could not record: after a restart it would not know what
    /// it had done.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("cannot read this machine's topology")]
    Topology(#[from] TopologyError),
    #[error("cannot set up job placement")]
    Placement(#[from] PlacementError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("cannot create {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    #[error(transparent)]
    Control(#[from] crate::api::SocketError),
    #[error(
        "http.max_connections is {max_connections}, but the open file limit of {limit} leaves \
         room for {allowed} HTTP connections beside what the agent and its runs need (the port \
         may take a quarter of the descriptors); lower http.max_connections, or raise the hard \
         limit (LimitNOFILE= in a systemd unit, ulimit -Hn)"
    )]
    HttpBudget { max_connections: u32, limit: u64, allowed: u64 },
    #[error("cannot wait for signals")]
    Signals(#[source] std::io::Error),
}
