//! The agent's own configuration file, compiled the way job files are: every problem
//! reported at once, with file, line, column and field.
//!
//! The reference for the file is `docs/config.md`; `config/agent.yaml` is an example that
//! runs from a checkout.

mod agent;
mod cluster;
mod error;

pub use agent::{
    compile_str, load, AgentConfig, CgroupParent, CgroupRoot, HttpLimits, LogFormat, DEFAULT_PATH,
    MAX_SOCKET_PATH,
};
pub use cluster::{ClusterConfig, ClusterTls};
pub use error::ConfigError;
