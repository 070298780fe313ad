//! Why no dynamic uid could be handed out.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DynamicUserError {
    #[error(
        "job {job}: no free uid in dynamic_users range {range} ({allocated} allocated to jobs, \
         the rest used by host accounts or processes); widen `dynamic_users: {{range: ...}}` in \
         the agent configuration, or remove jobs"
    )]
    Exhausted { job: String, range: String, allocated: usize },

    #[error("cannot read {path} to find the uids in use: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
