//! From a compiled job to a running container, and back to its accounting.
//!
//! Pure core:
//! - [`plan`](mod@plan): the mapping. [`request()`] (job → placement
//!   request), [`resources()`] (job + assignment + the memory limit in force
//!   → job cgroup resources, its memory limits from [`memory_limits()`]),
//!   [`container_config()`] (job + agent config → container config), and
//!   [`plan()`], all three at once as a final [`RunPlan`]; [`run_dir()`],
//!   the one layout of run directories.
//! - [`hugepages`]: whether the host can honour a job's huge page
//!   limits ([`hugepages::check`]), from its pools read by the shell.
//! - [`oom`]: which [`OomMode`](crate::cgroup::OomMode) a policy gets on a
//!   host.
//!
//! Thin shell:
//! - [`host`]: [`Host`], the machine as launching needs it (topology,
//!   cgroup manager, agent config, shim executable), built once from
//!   injectable roots.
//! - [`run`]: [`start()`] creates the job cgroup and launches the container
//!   (removing the cgroup again if the launch fails), in two steps if the
//!   caller wants to subscribe to the cgroup's events in between
//!   ([`prepare()`], [`PreparedRun::launch`]); [`StartedRun`] waits;
//!   [`EndedRun::finish`] and [`collect()`] empty the cgroup, read the final
//!   statistics ([`FinalStats`], read once, with nothing left in the
//!   cgroup) and remove the cgroup; [`empty_and_read()`] and [`remove()`]
//!   are those two halves for callers that report the statistics before
//!   removing.
//!
//! The whole mapping, field by field and for each cgroup version, is in
//! `docs/run.md`.
//!
//! # Order of a launch
//!
//! ```text
//! request(spec) ─▶ placement::place ─▶ plan(spec, run inputs) ─▶ start:
//!     create the job cgroup (validated as a whole first) ─▶ launch the shim,
//!     whose init joins the cgroup before anything else ─▶ StartedRun
//! StartedRun::wait ─▶ EndedRun::finish: kill leftovers, read stats once, remove cgroup
//! ```

pub mod devices;
pub mod error;
pub mod host;
pub mod hugepages;
pub mod oom;
pub mod plan;
pub mod run;

pub use devices::{DeviceNumbers, NO_DEVICES};
pub use error::{LaunchError, UserOrigin};
pub use host::{Host, HostRoots};
pub use oom::oom_mode;
pub use plan::{
    container_config, memory_limits, placement_config, plan, request, resources, run_dir, runs_dir,
    PlanInputs, RunInputs, RunPlan,
};
pub use run::{
    collect, empty_and_read, final_stats, prepare, remove, start, EndedRun, FinalStats,
    FinishedRun, PreparedRun, StartedRun,
};
