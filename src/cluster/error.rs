//! What can go wrong talking to the cluster.

use std::path::PathBuf;

use super::records::BadRecord;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read {what} {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd: {0}")]
    Request(#[from] etcd_client::Error),
    #[error(transparent)]
    BadRecord(#[from] BadRecord),
    /// A fenced write found this agent no longer the leader.
    #[error("no longer the cluster scheduler: another agent holds the leadership")]
    Deposed,
}
