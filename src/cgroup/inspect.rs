//! A read-only health check of the host's cgroups for corral (`corral
//! doctor`): what is mounted, which controllers corral can use, how it will
//! freeze and kill, and what is missing. Nothing is created or written.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::layout::{Controller, Layout, V2_USED};
use super::manager::{Anchor, FreezerKind, KillKind};
use super::path::CgroupPath;
use super::{v1, v2};

/// Kernel releases that introduced `cgroup.freeze` and `cgroup.kill`.
const FREEZE_SINCE: (u32, u32) = (5, 2);
const KILL_SINCE: (u32, u32) = (5, 14);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    /// Something corral needs is missing: the agent cannot run here.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerReport {
    pub controller: Controller,
    /// corral cannot run without it.
    pub required: bool,
    /// `v1` or `v2`, `None` when unusable.
    pub via: Option<&'static str>,
    pub mount_point: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mechanisms {
    pub freezer: FreezerKind,
    pub kill: KillKind,
    pub populated_events: bool,
    pub pressure: bool,
    pub pause_at_limit: bool,
    /// v1 memsw or v2 `memory.swap.max`; `None` when it cannot be told yet.
    pub swap_limits: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    pub layout: Layout,
    pub parent: String,
    pub controllers: Vec<ControllerReport>,
    pub mechanisms: Mechanisms,
    pub findings: Vec<Finding>,
}

impl Inspection {
    /// True when nothing corral needs is missing.
    pub fn usable(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// What [`inspect`] looks at besides the layout.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    pub parent: CgroupPath,
    pub anchor: Anchor,
    pub use_unified: bool,
    /// `uname -r`, used when no existing cgroup shows what the v2 tree offers.
    pub kernel_release: Option<String>,
    /// Whether the agent will hold `CAP_SYS_RESOURCE`, which PSI triggers
    /// with windows other than multiples of 2 s need.
    pub cap_sys_resource: Option<bool>,
}

/// `6.18.44-fc` → `(6, 18)`.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn has_processes(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|t| !t.trim().is_empty())
}

/// A non-root cgroup of the v2 tree to see which per-cgroup files the kernel
/// offers: the parent, or any existing child of the anchor or the mount.
fn v2_probe_dir(anchor: &Path, mount_point: &Path, parent: &Path) -> Option<PathBuf> {
    if parent.is_dir() {
        return Some(parent.to_path_buf());
    }
    if anchor != mount_point && anchor.is_dir() {
        return Some(anchor.to_path_buf());
    }
    std::fs::read_dir(mount_point)
        .ok()?
        .flatten()
        .find(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
}

pub fn inspect(layout: &Layout, options: &InspectOptions) -> Inspection {
    let mut findings = Vec::new();
    let mut say = |severity, message: String| findings.push(Finding { severity, message });
    let release = options.kernel_release.as_deref().and_then(parse_release);

    let anchor_of =
        |mount_point: &Path, own: Option<&str>, dir_of: &dyn Fn(&str) -> Option<PathBuf>| {
            match &options.anchor {
                Anchor::HierarchyRoot => Some(mount_point.to_path_buf()),
                Anchor::OwnCgroup => own.and_then(dir_of),
                Anchor::Delegated(cgroup) => dir_of(cgroup),
            }
        };

    // The v2 tree, when corral would use it.
    let unified = layout.unified_for_jobs(options.use_unified);
    let mut v2_available = Vec::new();
    let mut v2_anchor = None;
    if let Some(u) = unified {
        match anchor_of(&u.mount_point, u.own_cgroup.as_deref(), &|c| u.dir_of(c).ok()) {
            Some(anchor) => {
                v2_available = std::fs::read_to_string(anchor.join(v2::CONTROLLERS))
                    .map(|t| v2::parse_controllers(&t).into_iter().collect())
                    .unwrap_or_default();
                v2_anchor = Some(anchor);
            }
            None => say(
                Severity::Error,
                "the agent's own cgroup in the v2 tree is unknown (no 0:: line in /proc/self/cgroup)".into(),
            ),
        }
    }

    // Controllers.
    let mut controllers = Vec::new();
    let wanted: &[(Controller, bool, &str)] = &[
        (Controller::Cpu, true, "cpu weight and quota"),
        (Controller::Cpuset, true, "CPU and NUMA pinning"),
        (Controller::Memory, true, "memory limits and OOM handling"),
        (Controller::Pids, true, "task limits (fork bombs)"),
    ];
    for &(controller, required, purpose) in wanted {
        let (via, mount_point) = if let Some(h) = layout.v1_hierarchy(controller) {
            (Some("v1"), Some(h.mount_point.clone()))
        } else if v2_available.contains(&controller) {
            (Some("v2"), unified.map(|u| u.mount_point.clone()))
        } else {
            (None, None)
        };
        if via.is_none() {
            let where_ = if unified.is_some() {
                "neither mounted as a v1 hierarchy nor available in the v2 tree"
            } else {
                "not mounted"
            };
            say(
                Severity::Error,
                format!("{controller} controller is {where_}: needed for {purpose}"),
            );
        }
        controllers.push(ControllerReport { controller, required, via, mount_point });
    }
    let io = if layout.v1_hierarchy(Controller::Blkio).is_some() {
        Some(Controller::Blkio)
    } else if v2_available.contains(&Controller::Io) {
        Some(Controller::Io)
    } else {
        None
    };
    if io.is_none() {
        say(Severity::Warning, "no blkio/io controller: no per-job block I/O statistics".into());
    }
    if layout.v1_hierarchy(Controller::Blkio).is_some() {
        say(
            Severity::Info,
            "v1 blkio counts I/O in blkio.throttle.* only for devices with a throttle rule on recent kernels".into(),
        );
    }

    // v2: controllers must be enabled from the anchor down to the parent.
    if let (Some(u), Some(anchor)) = (unified, &v2_anchor) {
        let needed: Vec<Controller> =
            V2_USED.into_iter().filter(|c| v2_available.contains(c)).collect();
        let mut levels = vec![anchor.clone()];
        levels.extend(options.parent.dirs_under(anchor));
        for dir in levels.iter().take_while(|d| d.is_dir()) {
            let enabled = std::fs::read_to_string(dir.join(v2::SUBTREE_CONTROL))
                .map(|t| v2::parse_controllers(&t))
                .unwrap_or_default();
            let missing: Vec<String> =
                needed.iter().filter(|c| !enabled.contains(c)).map(|c| format!("+{c}")).collect();
            if missing.is_empty() {
                continue;
            }
            let is_root = dir == &u.mount_point && u.mount_root == "/";
            if !is_root && has_processes(dir) {
                say(
                    Severity::Error,
                    format!(
                        "{} holds processes, so {} cannot be enabled in its cgroup.subtree_control \
                         (no-internal-process rule); move them into a leaf",
                        dir.display(),
                        missing.join(" ")
                    ),
                );
            } else {
                say(
                    Severity::Info,
                    format!(
                        "corral will write {} to {}",
                        missing.join(" "),
                        dir.join(v2::SUBTREE_CONTROL).display()
                    ),
                );
            }
        }
    }

    // v1 cpuset: the anchor must have CPUs and nodes to hand down.
    if let Some(h) = layout.v1_hierarchy(Controller::Cpuset) {
        if let Some(anchor) =
            anchor_of(&h.mount_point, h.own_cgroup.as_deref(), &|c| h.dir_of(c).ok())
        {
            for file in [v1::cpuset::CPUS, v1::cpuset::MEMS] {
                let value = std::fs::read_to_string(anchor.join(file)).unwrap_or_default();
                if value.trim().is_empty() {
                    say(
                        Severity::Error,
                        format!("{} is empty: nothing to give jobs", anchor.join(file).display()),
                    );
                }
            }
        }
    }

    // Freezing, killing, notifications.
    let probe = match (unified, &v2_anchor) {
        (Some(u), Some(anchor)) => {
            let parent = options.parent.dirs_under(anchor).pop().unwrap_or_default();
            v2_probe_dir(anchor, &u.mount_point, &parent)
        }
        _ => None,
    };
    let v2_offers = |file: &str, since: (u32, u32)| -> bool {
        if unified.is_none() {
            return false;
        }
        match &probe {
            Some(dir) => dir.join(file).exists(),
            None => release.is_some_and(|r| r >= since),
        }
    };
    let freezer = FreezerKind::choose(
        v2_offers(v2::freezer::FREEZE, FREEZE_SINCE),
        layout.v1_hierarchy(Controller::Freezer).is_some(),
    );
    if freezer == FreezerKind::None {
        say(Severity::Error, "no freezer (no v1 freezer hierarchy, no cgroup.freeze in a v2 tree): jobs cannot be suspended".into());
    }
    let kill = KillKind::choose(v2_offers(v2::kill::KILL, KILL_SINCE), freezer);
    if kill == KillKind::Signal {
        say(
            Severity::Warning,
            "no cgroup.kill and no v1 freezer: a forking job is killed by repeated signalling"
                .into(),
        );
    }
    let populated_events = unified.is_some();
    if !populated_events {
        say(
            Severity::Warning,
            "no v2 tree in use: no notification when a job's last process exits".into(),
        );
    }
    let pressure = match (&v2_anchor, unified) {
        (Some(anchor), Some(_)) => {
            anchor.join(v2::psi::MEMORY).exists()
                || probe.as_ref().is_some_and(|p| p.join(v2::psi::MEMORY).exists())
        }
        _ => false,
    };
    if pressure && options.cap_sys_resource == Some(false) {
        say(
            Severity::Info,
            "no CAP_SYS_RESOURCE: PSI trigger windows are rounded up to a multiple of 2 s".into(),
        );
    }
    if unified.is_some() && !pressure {
        say(
            Severity::Warning,
            "no PSI files in the v2 tree (kernel without CONFIG_PSI or booted with psi=0)".into(),
        );
    }

    let v1_memory = layout.v1_hierarchy(Controller::Memory);
    let pause_at_limit = v1_memory.is_some();
    let swap_limits = if let Some(h) = v1_memory {
        let anchor = anchor_of(&h.mount_point, h.own_cgroup.as_deref(), &|c| h.dir_of(c).ok());
        anchor.map(|a| a.join(v1::memory::MEMSW_LIMIT).exists())
    } else if v2_available.contains(&Controller::Memory) {
        probe
            .as_ref()
            .filter(|p| p.join(v2::memory::CURRENT).exists())
            .map(|p| p.join(v2::memory::SWAP_MAX).exists())
    } else {
        None
    };
    match swap_limits {
        Some(false) => say(
            Severity::Warning,
            "swap accounting is off (no memory.memsw.* / memory.swap.max): swap limits are not enforced; boot with swapaccount=1".into(),
        ),
        None if v1_memory.is_some() || v2_available.contains(&Controller::Memory) => say(
            Severity::Info,
            "swap accounting is checked when corral creates its parent cgroup".into(),
        ),
        _ => {}
    }
    if !pause_at_limit && v2_available.contains(&Controller::Memory) {
        say(
            Severity::Info,
            "memory is on v2: jobs cannot be paused at their limit (OOM kills the whole job)"
                .into(),
        );
    }
    for named in &layout.named {
        say(
            Severity::Info,
            format!(
                "named hierarchy name={} at {} is ignored",
                named.name,
                named.mount_point.display()
            ),
        );
    }

    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Inspection {
        layout: layout.clone(),
        parent: options.parent.to_string(),
        controllers,
        mechanisms: Mechanisms {
            freezer,
            kill,
            populated_events,
            pressure,
            pause_at_limit,
            swap_limits,
        },
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fake::{FakeFs, FakeKind};

    fn options() -> InspectOptions {
        InspectOptions {
            parent: CgroupPath::new("corral").unwrap(),
            anchor: Anchor::HierarchyRoot,
            use_unified: true,
            kernel_release: Some("6.1.0-13-amd64".into()),
            cap_sys_resource: Some(true),
        }
    }

    #[test]
    fn releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0\n"), Some((5, 4)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn a_complete_hybrid_host_is_usable() {
        let fs = FakeFs::new(FakeKind::Hybrid);
        let report = inspect(&fs.layout(), &options());
        assert!(report.usable(), "{:?}", report.findings);
        assert_eq!(report.mechanisms.freezer, FreezerKind::V2);
        assert_eq!(report.mechanisms.kill, KillKind::CgroupKill);
        assert_eq!(report.mechanisms.swap_limits, Some(true));
        assert!(report.controllers.iter().all(|c| c.via == Some("v1")));
    }

    #[test]
    fn missing_cpuset_and_freezer_on_v1_are_errors() {
        let fs = FakeFs::new(FakeKind::V1);
        let mut layout = fs.layout();
        layout.v1.retain(|h| {
            !h.controllers.contains(&Controller::Cpuset)
                && !h.controllers.contains(&Controller::Freezer)
        });
        let report = inspect(&layout, &options());
        assert!(!report.usable());
        let errors: Vec<&str> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.message.as_str())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("cpuset controller is not mounted"));
        assert!(errors[1].contains("no freezer"));
        assert_eq!(report.mechanisms.kill, KillKind::Signal);
    }

    #[test]
    fn v2_reports_controllers_to_enable_and_blocked_levels() {
        let fs = FakeFs::new(FakeKind::V2);
        let report = inspect(&fs.layout(), &options());
        assert!(report.usable(), "{:?}", report.findings);
        assert!(report
            .findings
            .iter()
            .any(|f| f.message.contains("corral will write +cpuset +cpu +io +memory +pids")));

        // Anchored at a non-root cgroup that holds processes: blocked.
        std::fs::write(fs.dir.path().join("self-cgroup"), "0::/agent\n").unwrap();
        fs.add_cgroup("agent");
        std::fs::write(fs.unified_root().join("agent/cgroup.procs"), "77\n").unwrap();
        let report =
            inspect(&fs.layout(), &InspectOptions { anchor: Anchor::OwnCgroup, ..options() });
        assert!(!report.usable());
        assert!(
            report.findings[0].message.contains("no-internal-process rule"),
            "{:?}",
            report.findings
        );
    }

    #[test]
    fn v2_without_memory_is_unusable() {
        let fs = FakeFs::new(FakeKind::V2);
        std::fs::write(fs.unified_root().join("cgroup.controllers"), "cpuset cpu pids\n").unwrap();
        let report = inspect(&fs.layout(), &options());
        assert!(!report.usable());
        assert!(report
            .findings
            .iter()
            .any(|f| f.message.starts_with("memory controller is neither")));
    }

    #[test]
    fn old_kernels_fall_back_when_nothing_shows_the_v2_files() {
        let fs = FakeFs::new(FakeKind::Hybrid);
        let report = inspect(
            &fs.layout(),
            &InspectOptions { kernel_release: Some("4.19.0".into()), ..options() },
        );
        assert_eq!(report.mechanisms.freezer, FreezerKind::V1);
        assert_eq!(report.mechanisms.kill, KillKind::FreezeAndSignal);
    }
}
