//! Cluster mode: many node agents, one queue, on etcd.
//!
//! Each node agent stays what it is alone: its own placement, cgroups,
//! freezer and SQLite store. Cluster mode adds, on etcd's leases,
//! transactions and watches (no consensus of corral's own):
//!
//! ```text
//!  corral apply ──txn──▶ jobs/*            nodes/* ◀── each agent, under its lease
//!                           │                 │
//!                           ▼                 ▼
//!               scheduler (one agent, elected: leader)
//!                 creates runs/*, binds each to a node that fits,
//!                 every write fenced by its leadership
//!                           │
//!                           ▼
//!                bindings/{node}/* ──watch──▶ that node's agent: a local run
//!                                             of the bound job; hands it back
//!                                             if its own placement disagrees
//!                           status/* ◀────────  transitions, exit, OOM
//! ```
//!
//! - [`keys`], [`records`]: the key layout and the values, JSON.
//! - [`etcd`]: connecting, with TLS.
//! - [`apply`]: job files into `jobs/` in one transaction (`corral apply`,
//!   `corral delete`); [`publish`]: the same for a watched directory
//!   (`publish_dir`); [`view`]: the cluster as the commands show it.
//! - [`scheduler`]: the elected cluster scheduler (runs, bindings, cron).
//! - [`node`]: the node side: the node's lease and record, the runs bound
//!   to it, the statuses it reports.
//!
//! docs/cluster.md describes the layout, the fencing rule and the failure
//! model for operators.

pub mod apply;
pub mod error;
pub mod etcd;
pub mod keys;
pub mod node;
pub mod publish;
pub mod records;
pub mod scheduler;
#[cfg(test)]
pub mod testing;
pub mod view;

pub use error::ClusterError;
pub use keys::Keys;
