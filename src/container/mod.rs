//! Running one job in a container made from kernel primitives.
//!
//! # Processes
//!
//! ```text
//! agent (multi-threaded) ── launch() ── spawns ──▶ shim  `corral-shim RUN_DIR`
//!                                                   │  own session, outside the job's
//!                                                   │  namespaces and cgroups
//!                                                   └─ fork ─▶ init  (PID 1 of the pid ns)
//!                                                               │  joins cgroups, unshares,
//!                                                               │  mounts, pivot_root
//!                                                               └─ fork ─▶ job (PID 2)
//!                                                                          drops ids/caps, execve
//! ```
//!
//! The agent never forks itself into a container: a fork of a
//! multi-threaded process may only run async-signal-safe code. It starts
//! the shim, a fresh single-threaded process of the small `corral-shim`
//! binary (src/bin/corral-shim.rs: this module and nothing of the agent's
//! runtime), which does the work; see [`shim`] and [`init`]. The launcher
//! finds that binary beside the running `corral` or in
//! `../libexec/corral/` from its directory ([`launch::SHIM_PLACES`]). The shim outlives the launcher: it
//! is not the launcher's to kill, and it records the job's end in the run
//! directory whether or not anyone is still waiting.
//!
//! # Run directory
//!
//! One directory per run, given as [`ContainerConfig::run_dir`]:
//!
//! | file          | written by | when                         | content |
//! |---------------|------------|------------------------------|---------|
//! | `config.json` | launcher   | before the shim starts       | the [`ContainerConfig`]; its presence marks the directory as used |
//! | `shim.pid`    | shim       | first thing                  | `PID START_TIME` of the shim |
//! | `init.pid`    | shim       | once the job has exec'd      | `PID START_TIME` of the container's init (host pid) |
//! | `stdout.log`  | shim       | while the job runs; the end once it ended | the first `log_max_bytes` of the job's stdout; at the end, when more came, one marker line and the last `log_tail_bytes` |
//! | `stdout.log.tail.N` | shim | while the job runs past the head; removed after `status.json` | the rolling tail: segment N holds the stream from `log_max_bytes + N * log_tail_bytes` on; at most two exist |
//! | `stderr.log`, `stderr.log.tail.N` | shim | the same | the same for stderr |
//! | `status.json` | shim       | once, after the job ended    | the [`RunStatus`]: exit code or signal, timestamps, log byte counts |
//! | `shim.log`    | shim       | only if something went wrong after the launcher stopped listening | one line per problem |
//! | `abandoned`   | a restarted agent | when it finds `config.json` but no `shim.pid` | empty; a shim that finds it after writing `shim.pid` gives up ([`abandon`]) |
//!
//! `START_TIME` is field 22 of `/proc/PID/stat`: a pid file names a process
//! only while that process has the recorded start time, which guards every
//! signal and every "is it still running" against pid reuse
//! ([`ProcessIdentity`]). Files are replaced atomically (temporary file,
//! then rename); `status.json.tmp` is also fsynced before its rename and
//! the shim's exit, so a recorded status survives power loss: as
//! `status.json`, or as a complete `status.json.tmp` if the rename itself
//! was lost, which [`read_status`] accepts. A status's presence is what
//! "finished" means. When the status cannot be written (a full disk), the
//! shim keeps it in memory and tries again with backoff, for as long as it
//! takes: until then the shim is alive, and the run counts as still ending.
//!
//! # Namespaces and identity
//!
//! [`ContainerConfig::namespaces`] lists the fresh namespaces: pid (the
//! job is PID 2, a child of init), mount (see [`mounts`]; targets are
//! resolved inside the job's root by [`inroot`]), uts (hostname,
//! the job name by default), ipc, net (only `lo`, brought up), cgroup
//! (the joined cgroups become `/`) and user. With a user namespace exactly
//! one uid and one gid are mapped: the job user's, to 0 inside. The job is
//! root in its container and nobody special on the host; its capabilities
//! are still dropped as for any job.
//!
//! User and group names come from the job's root: its /etc/passwd and
//! /etc/group ([`passwd`]), read by the shim through [`inroot`] so that a
//! symlink in a rootfs never leads to the host's files.
//!
//! The job runs with its configured uid and gid, no supplementary groups,
//! `no_new_privs`, and no capabilities at all unless its user is root and
//! [`ContainerConfig::capabilities`] lists some (bounding set included).
//!
//! # Signals
//!
//! SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 sent to the shim or to
//! init reach the job ([`Launched::signal`], [`signal_process`]); SIGKILL
//! to init ends the container. Killing the shim kills init (parent-death
//! signal), since nobody would be left to record the run: a run whose shim
//! is gone without a status is [`ShimState::Lost`].
//!
//! # Logs
//!
//! See [`logs`]: the head and the tail of each stream are kept, what is
//! between them counted; [`logview`] reads them back in order.
//!
//! # Latency
//!
//! `cargo bench --bench launch` measures launch to recorded status for
//! `/bin/true` in a full container beside `crun run` of the same bundle.

pub mod caps;
pub mod config;
pub mod devices;
pub mod error;
pub mod exec;
pub mod init;
pub mod inroot;
pub mod launch;
pub mod logs;
pub mod logview;
pub mod masks;
pub mod mounts;
pub mod net;
pub mod nofile;
pub mod passwd;
pub mod procfs;
pub mod protocol;
pub mod rundir;
pub mod shim;
pub mod status;

pub use config::{ContainerConfig, IdSpec, Mount, MountKind, Rlimit, RlimitResource};
pub use error::{ContainerError, SetupError};
pub use launch::{
    abandon, launch, probe, read_status, signal_process, wait_for_status, Launched, Launcher,
    ShimState,
};
pub use procfs::ProcessIdentity;
pub use status::{ExitSource, JobExit, LogStats, RunStatus};
