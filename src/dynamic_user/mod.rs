//! Dynamic users: a uid of its own for every job without `user`, from the
//! agent's `dynamic_users` range, so that jobs do not share one uid (and,
//! without a pid namespace, each other's `/proc/PID/environ` and signals).
//!
//! - [`allocate`]: the pure choice of a uid, given what is unavailable.
//! - [`host`]: what is unavailable on the machine: uids and gids of host
//!   accounts, and of every process (read from an injected procfs root).
//! - [`store`](mod@store): the agent's [`Allocator`]: a job's uid from the
//!   store, or chosen and recorded there before it is used.
//!
//! The agent records each job's uid in the store
//! ([`DynamicUsers`](crate::store::DynamicUsers)) before launching a run
//! with it; `corral run` takes a uid for the length of its run only.

pub mod allocate;
pub mod error;
pub mod host;
pub mod store;

pub use allocate::{pick, Order};
pub use error::DynamicUserError;
pub use host::{HostIds, HostRoots};
pub use store::Allocator;
