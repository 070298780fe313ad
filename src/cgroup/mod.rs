//! The cgroup layer: job cgroups on cgroup v1, v2 and hybrid hosts behind one
//! interface.
//!
//! # Shape
//!
//! - [`layout`]: which hierarchies are mounted where ([`detect`] from
//!   `/proc/self/mountinfo` and `/proc/self/cgroup`, paths injectable).
//! - [`CgroupManager`]: set up once per agent on a parent cgroup (`corral`);
//!   creates [`JobCgroup`]s.
//! - [`JobCgroup`]: a job's cgroup in each tree: processes, resources,
//!   freeze/thaw, kill, statistics, events, removal.
//! - [`plan`](mod@plan): [`Resources`] → ordered knob writes, validated as a whole
//!   before the first write; the per-version mappings live in [`v1`] and
//!   [`v2`], one file per controller.
//! - [`stats`], [`events`]: accounting and kernel notifications.
//! - [`delegation`]: whether the tree goes below a cgroup a service manager
//!   delegated to the agent, or at the root of every hierarchy.
//!
//! # Layouts
//!
//! | Layout | Job cgroups | Freeze | Kill | Empty notification | PSI |
//! |---|---|---|---|---|---|
//! | v1 | one per used hierarchy (`cpu`, `cpuacct`, `cpuset`, `memory`, `pids`, `freezer`, `blkio`; co-mounts count once) | `freezer.state`, re-read with back-off | freeze, SIGKILL each pid, thaw | none | none |
//! | v2 | one, controllers `cpuset cpu io memory pids` enabled down from the anchor | `cgroup.freeze` + `cgroup.events` | `cgroup.kill` | `cgroup.events` | yes |
//! | hybrid | one per used v1 hierarchy, plus one in the v2 tree | v2 `cgroup.freeze` | `cgroup.kill` | `cgroup.events` | yes (v2 tree) |
//!
//! In a hybrid layout, resources are set in the v1 controllers (the v2 tree
//! has none of them) and the v2 tree is used for everything it does without
//! controllers: freezing, killing, `populated` notifications and PSI. The v2
//! freezer is preferred over the v1 one there because the kernel notifies
//! when freezing completes (no re-reading), a v2-frozen task still dies on
//! SIGKILL so `cgroup.kill` works on a frozen job, and it is the same code
//! path as on pure v2. The v1 `freezer` and `cpuacct` hierarchies are then
//! not joined at all, one `mkdir` and one `cgroup.procs` write fewer per
//! launch each. Named hierarchies (`name=systemd`) are never touched.
//! [`ManagerConfig::use_unified`] = `false` makes a hybrid host behave like
//! pure v1.
//!
//! # Parent setup
//!
//! [`CgroupManager::open`] creates `<anchor>/<parent>` in every tree. In v1
//! `cpuset`, every created level gets its parent's `cpuset.cpus`/`mems`
//! (empty sets refuse tasks); `cgroup.clone_children` is left alone as it
//! belongs to a parent corral may not own. In v2, each level from the anchor
//! down to the parent gets `+cpuset +cpu +io +memory +pids` (those the anchor
//! offers) in `cgroup.subtree_control`; a non-root level holding processes
//! cannot (no-internal-process rule) and is reported as such.
//!
//! # Mapping of [`Resources`]
//!
//! | Setting | v1 | v2 |
//! |---|---|---|
//! | cpu weight *w* (1–10000, default 100) | `cpu.shares` = max(2, *w* × 1024 / 100) | `cpu.weight` = *w* |
//! | cpu quota *m* millicpus (≥ 10) | `cpu.cfs_period_us` = 100000, then `cpu.cfs_quota_us` = *m* × 100 | `cpu.max` = "*m*×100 100000" |
//! | cpus / mems | `cpuset.cpus` / `cpuset.mems`; unset: the parent's (required before tasks join) | `cpuset.cpus` / `cpuset.mems`; unset: "" (inherit) |
//! | exclusive cores | not `cpuset.cpu_exclusive` (constrains siblings and ancestors); placement keeps cores apart | — |
//! | memory hard | `memory.limit_in_bytes` | `memory.max` |
//! | memory soft | `memory.soft_limit_in_bytes` | `memory.low` (protection below, reclaimed first above; see [`v2::memory`]) |
//! | memory high | none: skipped, reported in [`Plan::skipped`] | `memory.high` |
//! | swap *s* (needs hard *h*) | `memory.memsw.limit_in_bytes` = *h* + *s* when memsw exists, else skipped | `memory.swap.max` = *s* when present, else skipped |
//! | pids max | `pids.max` | `pids.max` |
//! | OOM: kill | default (`memory.oom_control` 0): the kernel kills one task | `memory.oom.group` = 1: the whole job dies together |
//! | OOM: pause at limit | `memory.oom_control` = 1 (`oom_kill_disable`): stopped at the limit, `under_oom 1` | refused: v2 cannot pause at `memory.max` |
//!
//! Validation (all problems at once, before any write): weight (1–10000)
//! and quota (10 millicpus to 4096 CPUs) are in range by their types, sets
//! non-empty and within the parent's, limits
//! ≥ 4096 bytes, soft ≤ hard, high ≤ hard, swap only with hard, pids ≥ 1, and
//! every setting's controller present.
//!
//! Write order: cpuset first (a v1 task cannot join before), then cpu
//! (period before quota), memory (v1: `oom_control` first; limit and memsw in
//! the order that keeps limit ≤ memsw at every step; v2: `oom.group`, `low`,
//! `high`, then `max`), pids. A new cgroup only gets the settings asked for;
//! [`JobCgroup::update`] writes every knob, unset ones back to the kernel
//! default.

pub mod delegation;
pub mod error;
pub mod events;
#[cfg(test)]
pub(crate) mod fake;
pub mod freezer;
pub mod fs;
pub mod inspect;
pub mod job;
pub mod layout;
pub mod manager;
pub mod notify;
pub mod path;
pub mod plan;
pub mod resources;
pub mod stats;
pub mod v1;
pub mod v2;

pub use error::CgroupError;
pub use events::{CgroupEvent, EventOptions, EventSources, EventStream};
pub use freezer::FreezerState;
pub use job::JobCgroup;
pub use layout::{detect, Controller, HostPaths, Layout, LayoutKind};
pub use manager::{Anchor, Capabilities, CgroupManager, FreezerKind, KillKind, ManagerConfig};
pub use notify::Notifier;
pub use path::{CgroupName, CgroupPath};
pub use plan::{Plan, PlanError, PlanProblem, PlannedWrite, Skipped};
pub use resources::{MemoryLimits, OomMode, Resources};
pub use stats::{Stats, StatsReader};
pub use v2::psi::{Pressure, PsiTrigger, StallKind};
