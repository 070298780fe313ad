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
//! - [`node`]: the node side: the node's lease and record, the runs bound
//!   to it, the statuses it reports.
//!
//! docs/cluster.md describes the layout, the fencing rule and the failure
//! model for operators.

pub mod error;
pub mod etcd;
pub mod keys;
pub mod node;
pub mod records;
#[cfg(test)]
pub mod testing;

pub use error::ClusterError;
pub use keys::Keys;
