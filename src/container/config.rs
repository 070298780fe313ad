//! What one container run needs: the launcher's input, also written to
//! `<run_dir>/config.json` for the shim to read.
//!
//! This is deliberately not the job spec: a later layer maps a compiled job
//! (plus its cgroups and placement) onto a [`ContainerConfig`]. Everything
//! here is already resolved to what the kernel needs, except user and group
//! names, which depend on the rootfs and are resolved by the shim.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::vocab::{Capability, Namespace};

/// The default `PATH` a job gets when its environment does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Default cap on each of `stdout.log` and `stderr.log`: 16 MiB.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 16 << 20;
/// The rolling tail kept after the head of each log (see [`super::logs`]).
pub const DEFAULT_LOG_TAIL_BYTES: u64 = 1 << 20;

/// The longest hostname the kernel accepts (`HOST_NAME_MAX`).
const HOSTNAME_MAX: usize = 64;

/// A user or group, by name (looked up in `/etc/passwd` / `/etc/group` of the
/// rootfs, or of the host without one) or by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IdSpec {
    Id(u32),
    Name(String),
}

impl fmt::Display for IdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdSpec::Id(id) => write!(f, "{id}"),
            IdSpec::Name(name) => f.write_str(name),
        }
    }
}

/// What a [`Mount`] puts at its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A host path (file or directory), bound recursively.
    Bind { source: PathBuf },
    /// A fresh, empty tmpfs with mode 1777, like `/tmp`. Its pages are
    /// charged to the memory cgroup of the process that touches them, i.e.
    /// to the job. `size_bytes` caps it (the kernel rounds up to whole
    /// pages); unset, the kernel's default of half the machine's RAM.
    Tmpfs { size_bytes: Option<u64> },
}

/// An extra mount inside the container, applied in list order (a later
/// mount may sit inside an earlier one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Absolute path inside the container (inside the rootfs when there is one).
    pub target: PathBuf,
    #[serde(default)]
    pub readonly: bool,
}

impl Mount {
    /// A bind of the host path `source` at `target`.
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<PathBuf>, readonly: bool) -> Self {
        Mount { kind: MountKind::Bind { source: source.into() }, target: target.into(), readonly }
    }

    /// A fresh tmpfs at `target`.
    pub fn tmpfs(target: impl Into<PathBuf>, size_bytes: Option<u64>, readonly: bool) -> Self {
        Mount { kind: MountKind::Tmpfs { size_bytes }, target: target.into(), readonly }
    }

    /// The host path of a bind mount.
    pub fn source(&self) -> Option<&Path> {
        match &self.kind {
            MountKind::Bind { source } => Some(source),
            MountKind::Tmpfs { .. } => None,
        }
    }
}

/// Resources a job may be limited in with `setrlimit(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RlimitResource {
    /// Open file descriptors (`RLIMIT_NOFILE`).
    Nofile,
    /// Processes of the job's uid (`RLIMIT_NPROC`).
    Nproc,
    /// Core dump size in bytes (`RLIMIT_CORE`).
    Core,
    /// Stack size in bytes (`RLIMIT_STACK`).
    Stack,
    /// CPU seconds (`RLIMIT_CPU`).
    Cpu,
    /// Locked memory in bytes (`RLIMIT_MEMLOCK`).
    Memlock,
    /// Largest file the job may write, in bytes (`RLIMIT_FSIZE`).
    Fsize,
    /// Data segment (heap, and since Linux 4.7 private writable mappings),
    /// in bytes (`RLIMIT_DATA`).
    Data,
    /// Address space (all mappings), in bytes (`RLIMIT_AS`).
    As,
}

/// One `setrlimit(2)` call. `u64::MAX` means unlimited (`RLIM_INFINITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: RlimitResource,
    pub soft: u64,
    pub hard: u64,
}

/// Everything the shim needs to start and supervise one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Job name, exported to the job as `CORRAL_JOB`.
    pub job: String,
    /// Run id, exported to the job as `CORRAL_RUN`.
    pub run: String,
    /// Directory that holds this run's files (see the module docs). Created by
    /// the launcher; must not have been used for another run.
    pub run_dir: PathBuf,
    /// `argv`. A first element without `/` is looked up in the job's `PATH`
    /// inside the container.
    pub command: Vec<String>,
    /// The job's environment, exactly; `PATH`, `HOME`, `CORRAL_JOB` and
    /// `CORRAL_RUN` are added (the first two only when missing).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory inside the container; `/` when unset.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// The job's user; root when unset.
    #[serde(default)]
    pub user: Option<IdSpec>,
    /// The job's group; the user's primary group when unset (for a numeric
    /// user without a passwd entry: the group with the same number).
    #[serde(default)]
    pub group: Option<IdSpec>,
    /// Namespaces the container gets fresh instances of.
    #[serde(default)]
    pub namespaces: BTreeSet<Namespace>,
    /// Hostname inside a fresh UTS namespace; the job name when unset.
    #[serde(default)]
    pub hostname: Option<String>,
    /// A directory to use as `/`; the host's root (made private) when unset.
    #[serde(default)]
    pub rootfs: Option<PathBuf>,
    /// Make the root filesystem read-only before the job starts: the rootfs,
    /// or without one the host's whole tree as the container sees it (every
    /// mount below `/`, recursively). The container's own `/proc`, `/tmp`
    /// and the `mounts` not marked read-only stay writable.
    #[serde(default)]
    pub readonly_rootfs: bool,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// `cgroup.procs` files the container's init writes `0` into, moving itself
    /// (and so the job it forks later) into each cgroup before anything else.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// Capabilities a job running as uid 0 keeps; ignored for other users,
    /// who never have any.
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    /// Refuse to start the job if its user resolves to uid 0 on the host.
    /// Checked after the name lookup, so a second name for uid 0 in the
    /// rootfs's `/etc/passwd` (`toor`) is caught too.
    #[serde(default)]
    pub refuse_root: bool,
    /// Refuse to start the job if its gid (from `group`, or the user's
    /// primary group) is one of these, names resolved in the host's and the
    /// rootfs's `/etc/group` (gid 0 is refused with `refuse_root`). The job
    /// gets no supplementary groups, so its one gid is all there is to check.
    #[serde(default)]
    pub refuse_groups: Vec<IdSpec>,
    /// The agent's `dynamic_users` range, first and last: refuse to start
    /// the job if its uid or gid falls inside it other than by number. Those
    /// ids belong to the jobs the agent gave them; a job's own dynamic uid
    /// comes by number, and numbers in the range written in a job file are
    /// refused before it gets here, so what is left to catch is a name that
    /// the rootfs's `/etc/passwd` or `/etc/group` maps into the range.
    #[serde(default)]
    pub refuse_ids_in: Option<(u32, u32)>,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// The head kept of each of `stdout.log` and `stderr.log`.
    #[serde(default = "default_log_max_bytes")]
    pub log_max_bytes: u64,
    /// The last this many bytes of each stream are kept too, after a marker
    /// line; 0 keeps the head only. Absent (0) in a config written before
    /// logs kept a tail, which is how such a run's logs are read.
    #[serde(default)]
    pub log_tail_bytes: u64,
    /// Also copy the job's output to the launcher's stdout and stderr, for a
    /// foreground run. Copying stops for good at the first failed write (a
    /// closed terminal or pipe); the log files are unaffected.
    #[serde(default)]
    pub tee_output: bool,
    /// Device nodes made in the rootfs's `/dev` besides the safe set
    /// (ignored without a rootfs: the job sees the host's `/dev`).
    #[serde(default)]
    pub devices: Vec<super::devices::DeviceNode>,
}

fn default_log_max_bytes() -> u64 {
    DEFAULT_LOG_MAX_BYTES
}

/// One thing wrong with a [`ContainerConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    #[error("command is empty")]
    EmptyCommand,
    #[error("{field} contains a NUL byte: {value:?}")]
    NulByte { field: String, value: String },
    #[error("environment variable name {name:?} is empty or contains '='")]
    BadEnvName { name: String },
    #[error("{field} must be an absolute path, got {path:?}")]
    NotAbsolute { field: &'static str, path: PathBuf },
    #[error("{what} needs the mount namespace")]
    NeedsMountNamespace { what: &'static str },
    #[error("a hostname needs the uts namespace")]
    HostnameWithoutUts,
    #[error("hostname {hostname:?} is empty or longer than {HOSTNAME_MAX} bytes")]
    BadHostname { hostname: String },
    #[error("a read-only root filesystem needs the mount namespace")]
    ReadonlyWithoutMountNamespace,
    #[error("rlimit {resource:?}: soft limit {soft} is above hard limit {hard}")]
    RlimitSoftAboveHard { resource: RlimitResource, soft: u64, hard: u64 },
    #[error("log_max_bytes must be at least 1")]
    ZeroLogCap,
    #[error("tmpfs at {target:?}: size 0 would mean no limit to the kernel")]
    ZeroTmpfsSize { target: PathBuf },
    #[error("{field} {value:?} is not a single path component")]
    BadName { field: &'static str, value: String },
    /// Where a mount lies is decided from its path (inside a tmpfs of the
    /// job, or not), which `..` would make a lie; `/` would cover it all.
    #[error("mount target {target:?} must name a directory below / without '..' components")]
    BadMountTarget { target: PathBuf },
}

impl ContainerConfig {
    /// A config with defaults for everything but the essentials: no
    /// namespaces, host root, root user.
    pub fn new(job: &str, run: &str, run_dir: &Path, command: &[&str]) -> Self {
        ContainerConfig {
            job: job.to_owned(),
            run: run.to_owned(),
            run_dir: run_dir.to_owned(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            group: None,
            namespaces: BTreeSet::new(),
            hostname: None,
            rootfs: None,
            readonly_rootfs: false,
            mounts: Vec::new(),
            cgroup_procs: Vec::new(),
            capabilities: BTreeSet::new(),
            refuse_root: false,
            refuse_groups: Vec::new(),
            refuse_ids_in: None,
            rlimits: Vec::new(),
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            log_tail_bytes: DEFAULT_LOG_TAIL_BYTES,
            tee_output: false,
            devices: Vec::new(),
        }
    }

    pub fn has(&self, ns: Namespace) -> bool {
        self.namespaces.contains(&ns)
    }

    /// Every problem with this config, not just the first. Checks only what
    /// can be known without touching the filesystem; the shim reports the
    /// rest (missing rootfs, unknown user, ...) before the job starts.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut no_nul = |field: &str, value: &str| {
            if value.contains('\0') {
                problems.push(ConfigProblem::NulByte {
                    field: field.to_owned(),
                    value: value.to_owned(),
                });
            }
        };
        no_nul("job", &self.job);
        no_nul("run", &self.run);
        for (i, arg) in self.command.iter().enumerate() {
            no_nul(&format!("command[{i}]"), arg);
        }
        for (name, value) in &self.env {
            no_nul(&format!("env {name}"), value);
        }
        let mut paths: Vec<(&'static str, &Path)> = vec![("run_dir", &self.run_dir)];
        paths.extend(self.workdir.as_deref().map(|p| ("workdir", p)));
        paths.extend(self.rootfs.as_deref().map(|p| ("rootfs", p)));
        for m in &self.mounts {
            paths.extend(m.source().map(|source| ("mount source", source)));
            paths.push(("mount target", &m.target));
        }
        for p in &self.cgroup_procs {
            paths.push(("cgroup_procs", p));
        }
        for (field, path) in &paths {
            no_nul(field, &path.to_string_lossy());
        }

        if self.command.is_empty() || self.command[0].is_empty() {
            problems.push(ConfigProblem::EmptyCommand);
        }
        for name in self.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                problems.push(ConfigProblem::BadEnvName { name: name.clone() });
            }
        }
        for (field, path) in paths {
            if !path.is_absolute() {
                problems.push(ConfigProblem::NotAbsolute { field, path: path.to_owned() });
            }
        }
        // The run id and job name end up in file names and environment
        // variables; keep them to one harmless path component.
        for (field, value) in [("job", &self.job), ("run", &self.run)] {
            if value.is_empty() || value.contains('/') || value == "." || value == ".." {
                problems.push(ConfigProblem::BadName { field, value: value.clone() });
            }
        }
        let mount_ns = self.has(Namespace::Mount);
        if !mount_ns {
            if self.rootfs.is_some() {
                problems.push(ConfigProblem::NeedsMountNamespace { what: "a rootfs" });
            }
            if !self.mounts.is_empty() {
                problems.push(ConfigProblem::NeedsMountNamespace { what: "mounts" });
            }
            if self.readonly_rootfs {
                problems.push(ConfigProblem::ReadonlyWithoutMountNamespace);
            }
        }
        if self.hostname.is_some() && !self.has(Namespace::Uts) {
            problems.push(ConfigProblem::HostnameWithoutUts);
        }
        if self.has(Namespace::Uts) {
            // Also the default (the job name), which the kernel would refuse
            // just the same.
            let hostname = self.effective_hostname();
            if hostname.is_empty() || hostname.len() > HOSTNAME_MAX || hostname.contains('\0') {
                problems.push(ConfigProblem::BadHostname { hostname: hostname.to_owned() });
            }
        }
        for r in &self.rlimits {
            if r.soft > r.hard {
                problems.push(ConfigProblem::RlimitSoftAboveHard {
                    resource: r.resource,
                    soft: r.soft,
                    hard: r.hard,
                });
            }
        }
        if self.log_max_bytes == 0 {
            problems.push(ConfigProblem::ZeroLogCap);
        }
        for m in &self.mounts {
            if m.kind == (MountKind::Tmpfs { size_bytes: Some(0) }) {
                problems.push(ConfigProblem::ZeroTmpfsSize { target: m.target.clone() });
            }
            let plain = m
                .target
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
            if !plain || m.target.parent().is_none() {
                problems.push(ConfigProblem::BadMountTarget { target: m.target.clone() });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The hostname the UTS namespace gets.
    pub fn effective_hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ContainerConfig {
        ContainerConfig::new("etl", "r1", Path::new("/var/lib/corral/runs/r1"), &["/bin/true"])
    }

    #[test]
    fn minimal_config_is_valid() {
        assert_eq!(base().validate(), Ok(()));
    }

    #[test]
    fn mount_targets_are_plain_paths_below_the_root() {
        for target in ["/", "/srv/../etc", "/.."] {
            let mut cfg = base();
            cfg.namespaces.insert(Namespace::Mount);
            cfg.mounts.push(Mount::tmpfs(target, None, false));
            let want = ConfigProblem::BadMountTarget { target: target.into() };
            assert_eq!(cfg.validate(), Err(vec![want]), "{target}");
        }
    }

    #[test]
    fn collects_every_problem() {
        let mut cfg = base();
        cfg.command.clear();
        cfg.workdir = Some("relative".into());
        cfg.rootfs = Some("/srv/rootfs".into());
        cfg.hostname = Some("h".into());
        cfg.env.insert("A=B".into(), "x".into());
        cfg.log_max_bytes = 0;
        let problems = cfg.validate().unwrap_err();
        assert!(problems.contains(&ConfigProblem::EmptyCommand));
        assert!(problems
            .contains(&ConfigProblem::NotAbsolute { field: "workdir", path: "relative".into() }));
        assert!(problems.contains(&ConfigProblem::NeedsMountNamespace { what: "a rootfs" }));
        assert!(problems.contains(&ConfigProblem::HostnameWithoutUts));
        assert!(problems.contains(&ConfigProblem::BadEnvName { name: "A=B".into() }));
        assert!(problems.contains(&ConfigProblem::ZeroLogCap));
        assert_eq!(problems.len(), 6, "{problems:?}");
    }

    #[test]
    fn rejects_nul_bytes_and_path_like_names() {
        let mut cfg = base();
        cfg.command.push("a\0b".into());
        cfg.run = "../x".into();
        let problems = cfg.validate().unwrap_err();
        assert!(
            matches!(&problems[0], ConfigProblem::NulByte { field, .. } if field == "command[1]")
        );
        assert!(problems.contains(&ConfigProblem::BadName { field: "run", value: "../x".into() }));
    }

    #[test]
    fn default_hostname_must_fit_too() {
        let mut cfg = base();
        cfg.namespaces.insert(Namespace::Uts);
        assert_eq!(cfg.validate(), Ok(()));
        cfg.job = "j".repeat(65);
        assert!(matches!(&cfg.validate().unwrap_err()[..], [ConfigProblem::BadHostname { .. }]));
        cfg.hostname = Some("short".into());
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn rlimit_soft_above_hard_is_refused() {
        let mut cfg = base();
        cfg.rlimits.push(Rlimit { resource: RlimitResource::Nofile, soft: 10, hard: 5 });
        assert_eq!(
            cfg.validate().unwrap_err(),
            vec![ConfigProblem::RlimitSoftAboveHard {
                resource: RlimitResource::Nofile,
                soft: 10,
                hard: 5
            }]
        );
    }

    #[test]
    fn mounts_and_a_readonly_root_need_the_mount_namespace() {
        let mut cfg = base();
        cfg.readonly_rootfs = true;
        cfg.mounts.push(Mount::tmpfs("/scratch", Some(1 << 20), false));
        assert_eq!(
            cfg.validate().unwrap_err(),
            vec![
                ConfigProblem::NeedsMountNamespace { what: "mounts" },
                ConfigProblem::ReadonlyWithoutMountNamespace
            ]
        );
        // A read-only host root is fine: no rootfs needed.
        cfg.namespaces.insert(Namespace::Mount);
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn a_tmpfs_of_size_zero_is_refused() {
        let mut cfg = base();
        cfg.namespaces.insert(Namespace::Mount);
        cfg.mounts.push(Mount::tmpfs("/scratch", Some(0), false));
        assert_eq!(
            cfg.validate().unwrap_err(),
            vec![ConfigProblem::ZeroTmpfsSize { target: "/scratch".into() }]
        );
    }

    #[test]
    fn mounts_round_trip_through_json() {
        let mut cfg = base();
        cfg.namespaces.insert(Namespace::Mount);
        cfg.mounts.push(Mount::bind("/data", "/mnt/data", true));
        cfg.mounts.push(Mount::tmpfs("/scratch", Some(16 << 20), false));
        cfg.rlimits.push(Rlimit { resource: RlimitResource::As, soft: 1 << 30, hard: 1 << 30 });
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains(r#"{"tmpfs":{"size_bytes":16777216}}"#), "{json}");
        assert!(json.contains(r#""resource":"as""#), "{json}");
        let again: ContainerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(again, cfg);
        assert_eq!(cfg.mounts[0].source(), Some(Path::new("/data")));
        assert_eq!(cfg.mounts[1].source(), None);
    }

    #[test]
    fn json_round_trip_with_defaults() {
        let text = r#"{"job":"j","run":"r","run_dir":"/r","command":["true"],
            "user":1000,"group":"staff","namespaces":["pid","net"],
            "capabilities":["CAP_NET_BIND_SERVICE"]}"#;
        let cfg: ContainerConfig = serde_json::from_str(text).unwrap();
        assert_eq!(cfg.user, Some(IdSpec::Id(1000)));
        assert_eq!(cfg.group, Some(IdSpec::Name("staff".into())));
        assert!(cfg.has(Namespace::Pid) && cfg.has(Namespace::Net) && !cfg.has(Namespace::Uts));
        assert_eq!(cfg.log_max_bytes, DEFAULT_LOG_MAX_BYTES);
        let again: ContainerConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(again, cfg);
    }
}
