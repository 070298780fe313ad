//! corral: a declarative batch/job scheduler node agent for Linux.
//!
//! # Layout
//!
//! The crate is split into a pure core, which decides, and a thin shell, which
//! touches the kernel. The core never reads `/sys`, `/proc` or the clock on its
//! own: roots and clocks are handed in, so it is tested on fake trees.
//!
//! Pure core:
//! - [`spec`]: job files (YAML) compiled into validated [`spec::JobSpec`]s, with
//!   every problem in a file reported at once, and the diff between two job sets.
//! - [`config`]: the agent's own configuration file, compiled the same way.
//! - [`topology`]: the machine's CPUs, cores, packages and NUMA nodes, parsed
//!   from a sysfs tree.
//! - [`placement`]: the allocator that hands out exclusive cores and the shared
//!   CPU pool, NUMA-aware, and answers "whom would we have to preempt".
//! - [`scheduler`]: what runs when; [`scheduler::cron`] for recurring jobs (next
//!   firing across clock changes, catch-up after downtime, overlap policies).
//!
//! Thin shell:
//! - [`cli`]: the `corral` command line.
//!
//! Later layers (cgroup drivers, container launcher, scheduler, store, metrics,
//! API) get a module each, beside these.

pub mod cli;
pub mod config;
pub mod placement;
pub mod scheduler;
pub mod spec;
pub mod topology;
pub mod units;
