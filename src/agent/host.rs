//! The machine as the agent's [`Runtime`](super::runtime::Runtime): cgroups
//! and containers.
