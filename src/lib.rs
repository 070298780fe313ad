//! corral: a declarative batch/job scheduler node agent for Linux.
//!
//! # Layout
//!
//! ARCHITECTURE.md (at the top of the repository) follows one job through
//! these modules and states the rules between them.
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
//! - [`scheduler`]: the run state machine, `transition(state, event, policy,
//!   moment)`, with restart backoff, OOM and preemption policies, the one
//!   place a run's fate is decided; the policy a job spec maps to, the queue
//!   and the scheduling pass (place, resume, preempt); and
//!   [`scheduler::cron`] for recurring jobs (next firing across clock changes,
//!   catch-up after downtime, overlap policies).
//! - [`vocab`]: the words every layer shares (run ids, job names, byte
//!   quantities, CPU weights and quotas, timestamps, capabilities, namespaces),
//!   each a type that only holds valid values; it depends on no other module.
//!
//! Thin shell:
//! - [`cgroup`]: job cgroups on v1, v2 and hybrid hosts: layout detection,
//!   resource plans, freeze/thaw, kill, statistics and kernel events.
//! - [`dynamic_user`]: a uid of its own per job without `user`, chosen from
//!   the configured range away from host accounts and every process's ids.
//! - [`container`]: runs one job in namespaces, a rootfs and given cgroups,
//!   under a per-run supervisor (the shim) that records how it ended.
//! - [`watch`]: the jobs directory, watched with inotify, reported in settled
//!   batches, with ownership and permission checks on every file.
//! - [`launch`]: a compiled job mapped onto placement, cgroup and container
//!   inputs (pure), and the shell that starts one run and collects its
//!   accounting; `corral run` and the agent both go through it.
//! - [`store`]: run records, their history and the cron journal, durable in
//!   SQLite, behind traits; the state directory lock.
//! - [`agent`]: `corral agent`: the jobs directory reconciled into runs, the
//!   priority queue, preemption and OOM handling over the run state machine,
//!   every transition stored before it is acted on, recurring jobs fired by
//!   the cron engine (each decision stored with its run before the run is
//!   queued), and crash recovery. It decides nothing the core can: it feeds
//!   events to [`scheduler`] and carries out the actions; the machine is one
//!   trait, implemented on [`launch`], [`cgroup`] and [`container`], which
//!   `corral run` drives through the same state machine.
//! - [`metrics`]: Prometheus families, collected at scrape time from a
//!   snapshot of the agent and each run's cgroup files (kept open); finished
//!   runs kept with their final counters; the agent's counters and one typed
//!   event per place something countable happens.
//! - [`api`]: the HTTP endpoint: `/metrics`, health checks, and read-only JSON
//!   of jobs, runs and the node, its connections capped and each under a
//!   deadline; and the control socket.
//! - [`cli`]: the `corral` command line, a file per subcommand.
//!
//! [`fuzzing`] re-exports the few crate-private parsers the fuzz targets in
//! `fuzz/` drive (docs/fuzzing.md); nothing else uses it.

pub mod agent;
pub mod api;
pub mod cgroup;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod container;
pub mod dynamic_user;
#[doc(hidden)]
pub mod fuzzing;
pub mod launch;
pub mod metrics;
pub mod placement;
pub mod scheduler;
pub mod spec;
pub mod store;
pub mod topology;
pub mod vocab;
pub mod watch;
