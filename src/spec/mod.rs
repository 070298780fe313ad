//! Job spec compiler: job files (YAML) in, validated [`JobSpec`]s out.
//!
//! Compiling goes in two steps. [`source`] reads a file under strict limits and parses
//! each YAML document into a [`tree::Node`] tree that remembers every line and column.
//! [`job::compile`] then walks that tree by hand with the typed reads in [`check`], recording
//! a [`Diagnostic`] for each problem and carrying on, so one run reports everything that
//! is wrong with a file, each with its file, line, column and field path.
//!
//! Each part of a job has a file of its own: [`schedule`], [`resources`] (with [`io`]),
//! [`oom`], [`restart`], [`signal`] (`stop_signal`, `timeout_signal`), [`isolation`] (with
//! [`devices`]), [`rlimits`]; value types with their own syntax have theirs:
//! [`duration`], [`paths`], [`identity`] (job names and byte quantities are shared words,
//! in [`crate::vocab`]). [`load`] deals with files and directories and builds the
//! [`JobSet`]; [`diff()`] compares two of those for a reload.
//!
//! The reference for the file format is `docs/spec.md`.

pub mod admission;
pub mod after;
pub mod array;
pub mod check;
pub mod devices;
pub mod diff;
pub mod duration;
pub mod error;
pub mod hugepages;
pub mod identity;
pub mod io;
pub mod isolation;
pub mod job;
pub mod load;
pub mod nodes;
pub mod oom;
pub mod paths;

pub mod resources;
pub mod restart;
pub mod rlimits;
pub mod schedule;
pub mod signal;
pub mod source;
pub mod submission;
#[cfg(test)]
mod testutil;
pub mod tree;

pub use admission::AdmissionRules;
pub use after::{After, AfterWhen};
pub use array::ArraySpec;
pub use devices::{DeviceAccess, DeviceAllow};
pub use diff::{diff, JobSetDiff};
pub use error::{Diagnostic, Diagnostics, FieldPath, SpecError};
pub use hugepages::{HugepageLimit, HugepageLimits};
pub use identity::{DefaultUser, GroupRef, UidRange, UserRef};
pub use io::{BlockDevice, IoDeviceLimit, IoLimits};
pub use isolation::{Hostname, Isolation, Mount, MountKind};
pub use job::{Command, JobSpec, OnNodeLoss, OnRemoval, Preemption, Priority};
pub use load::{compile_bytes, compile_str, dependency_cycle, load_file, Job, JobSet, Origin};
pub use nodes::NodeConstraints;
pub use oom::OomPolicy;
pub use paths::AbsPath;
pub use resources::{CpuRequest, MemoryLimits, Resources};
pub use restart::{Backoff, ExitCodes, RestartOn, RestartPolicy};
pub use rlimits::{Rlimit, RlimitValue, Rlimits};
pub use schedule::{CatchUp, Concurrency, History, Recurrence, Schedule};
pub use signal::{JobSignal, TimeoutSignal};
pub use tree::Pos;
