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
    #[error(
        "cannot take over the runs of the previous agent: {0}. Nothing was changed: the runs \
         keep running and their shims keep their exit statuses; start the agent again once \
         the database can be written"
    )]
    CannotTakeOver(#[source] StoreError),
    #[error(
        "the state database {} is missing or empty, but an earlier agent ran here: {found}. \
         Starting afresh would take live runs for strays and kill them, and run finished \
         one-shot jobs again, so the agent does not start. Put the database back (with its \
         -wal file) if there is a copy; otherwise see \"Lost state database\" in \
         docs/agent.md: let the live runs end or stop them, remove the files of jobs that \
         must not run again, then move {} aside and start the agent",
        path.display(),
        runs_dir.display()
    )]
    LostStore { path: PathBuf, runs_dir: PathBuf, found: crate::agent::recovery::LostStoreEvidence },
    #[error("cannot wait for signals")]
    Signals(#[source] std::io::Error),
}
