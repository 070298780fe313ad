//! Errors of the launch layer. Every variant names the job (and the run,
//! once there is one), so a log line alone says whose launch failed.

use std::fmt;

use crate::cgroup::CgroupError;
use crate::container::config::ConfigProblem;
use crate::container::ContainerError;
use crate::placement::PlacementError;
use crate::topology::TopologyError;

/// Where the user a job would run as came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrigin {
    /// The job file's `user`.
    Job,
    /// The agent's `default_user`, for a job without `user`.
    DefaultUser,
    /// A uid of the job's own from the `dynamic_users` range.
    Dynamic,
}

impl fmt::Display for UserOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UserOrigin::Job => "its `user`",
            UserOrigin::DefaultUser => "the agent's `default_user`",
            UserOrigin::Dynamic => "the agent's `dynamic_users` range",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "job {job}: would run as {user:?} (from {origin}), which is root; root jobs need \
         `allow_root_jobs: true` in the agent configuration"
    )]
    RootRefused { job: String, user: String, origin: UserOrigin },

    #[error(
        "job {job}: runs as a dynamic user (default_user: dynamic) but was given {} from the \
         dynamic_users range {range}",
        uid.map_or_else(|| "no uid".to_owned(), |uid| format!("uid {uid}, which is not"))
    )]
    NoDynamicUid { job: String, uid: Option<u32>, range: String },

    #[error("job {job}: run id {run:?} cannot name a cgroup: {source}")]
    RunId { job: String, run: String, source: Box<CgroupError> },

    #[error("job {job}, run {run}: the container config is invalid: {}", join(problems))]
    Container { job: String, run: String, problems: Vec<ConfigProblem> },

    #[error("cannot read the machine's topology: {0}")]
    Topology(#[source] Box<TopologyError>),

    #[error("cannot detect the cgroup layout: {0}")]
    CgroupLayout(#[source] Box<CgroupError>),

    #[error("cannot set up the cgroup parent {parent:?}: {source}")]
    CgroupParent { parent: String, source: Box<CgroupError> },

    #[error("the agent configuration does not fit this machine: {0}")]
    PlacementConfig(#[source] Box<PlacementError>),

    #[error("job {job}: cannot be placed: {source}")]
    Placement { job: String, source: Box<PlacementError> },

    #[error("job {job}, run {run}: cannot create its cgroup: {source}")]
    CreateCgroup { job: String, run: String, source: Box<CgroupError> },

    #[error("job {job}, run {run}: {source}")]
    Start { job: String, run: String, source: Box<ContainerError> },

    #[error("job {job}, run {run}: {source}")]
    Wait { job: String, run: String, source: Box<ContainerError> },

    #[error("job {job}, run {run}: cannot signal it: {source}")]
    Signal { job: String, run: String, source: Box<ContainerError> },

    #[error("job {job}, run {run}: cannot change its memory limit: {source}")]
    Grow { job: String, run: String, source: Box<CgroupError> },

    #[error("job {job}, run {run}: cannot kill what is left in its cgroup: {source}")]
    Kill { job: String, run: String, source: Box<CgroupError> },

    #[error("job {job}, run {run}: cannot read its final statistics: {source}")]
    Stats { job: String, run: String, source: Box<CgroupError> },

    #[error("job {job}: device {}: {reason}", path.display())]
    Device { job: String, path: std::path::PathBuf, reason: String },

    #[error("job {job}, run {run}: cannot remove its cgroup: {source}")]
    RemoveCgroup { job: String, run: String, source: Box<CgroupError> },

    #[error("job {job}, run {run}: {refusal}")]
    Hugepages { job: String, run: String, refusal: super::hugepages::HugepageRefusal },
}

fn join(problems: &[ConfigProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
