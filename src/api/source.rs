//! What the agent answers the read-only API with.

use super::error::ApiError;
use super::model::{JobView, NodeView, RunView};
use crate::vocab::JobName;
use crate::vocab::RunId;

/// The agent's side of the read-only API. Calls may block (run details come
/// from the store): the server makes them on blocking threads, never on the
/// async workers.
pub trait ApiSource: Send + Sync + 'static {
    /// `Ok` once the agent serves its purpose: runs taken over from an
    /// earlier agent and the jobs directory read. `Err` says what it waits for.
    fn ready(&self) -> Result<(), String>;

    /// Every job known from the jobs directory, valid or not, by name.
    fn jobs(&self) -> Vec<JobView>;

    fn job(&self, name: &JobName) -> Option<JobView>;

    /// A run from the store, with live statistics while it has a cgroup.
    fn run(&self, id: &RunId) -> Result<Option<RunView>, ApiError>;

    /// `None` until the agent knows its node (answered with 503).
    fn node(&self) -> Option<NodeView>;
}
