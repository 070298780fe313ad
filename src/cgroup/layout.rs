//! Which cgroup hierarchies are mounted where, read from the mount table.
//!
//! The parsers are pure functions over file contents; [`detect`] is the thin
//! shell that reads `/proc/self/mountinfo`, `/proc/self/cgroup` and the v2
//! root's `cgroup.controllers` from injectable paths.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::CgroupError;
use super::fs::read_knob;

/// A cgroup controller, named as the kernel names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "&'static str")]
pub enum Controller {
    Cpu,
    Cpuacct,
    Cpuset,
    Memory,
    Pids,
    Freezer,
    /// v1 block I/O controller.
    Blkio,
    /// v2 block I/O controller.
    Io,
    Devices,
    Hugetlb,
    NetCls,
    NetPrio,
    PerfEvent,
    Rdma,
    Misc,
}

impl Controller {
    const ALL: [Controller; 15] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Memory,
        Controller::Pids,
        Controller::Freezer,
        Controller::Blkio,
        Controller::Io,
        Controller::Devices,
        Controller::Hugetlb,
        Controller::NetCls,
        Controller::NetPrio,
        Controller::PerfEvent,
        Controller::Rdma,
        Controller::Misc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
            Controller::Blkio => "blkio",
            Controller::Io => "io",
            Controller::Devices => "devices",
            Controller::Hugetlb => "hugetlb",
            Controller::NetCls => "net_cls",
            Controller::NetPrio => "net_prio",
            Controller::PerfEvent => "perf_event",
            Controller::Rdma => "rdma",
            Controller::Misc => "misc",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Controller::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl From<Controller> for &'static str {
    fn from(c: Controller) -> Self {
        c.name()
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Controllers corral enables for jobs in the v2 tree (those it offers).
pub const V2_USED: [Controller; 6] = [
    Controller::Cpuset,
    Controller::Cpu,
    Controller::Io,
    Controller::Memory,
    Controller::Pids,
    Controller::Hugetlb,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// Every controller in its own (or a co-mounted) v1 hierarchy.
    V1,
    /// One unified v2 tree.
    V2,
    /// v1 controller hierarchies plus a v2 tree, usually without controllers.
    Hybrid,
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutKind::V1 => "v1",
            LayoutKind::V2 => "v2",
            LayoutKind::Hybrid => "hybrid",
        })
    }
}

/// One line of the mount table that mounts a cgroup filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    /// The cgroup, within its hierarchy, that is the root of this mount
    /// (`/` on a host; a container's own cgroup inside some containers).
    pub root: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    V1 { controllers: Vec<Controller>, name: Option<String> },
    V2,
}

/// Parses `/proc/self/mountinfo`, keeping only `cgroup` and `cgroup2` mounts.
///
/// Format (proc(5)): `id parent major:minor root mount-point options
/// [optional fields...] - fstype source super-options`. v1 controllers are
/// named in the super options (`rw,cpu,cpuacct`); a named hierarchy carries
/// `name=...` instead.
pub fn parse_mountinfo(text: &str) -> Result<Vec<CgroupMount>, String> {
    let mut mounts = Vec::new();
    // Fields are separated by single spaces, lines end in `\n`. The kernel escapes space,
    // tab, newline and backslash in paths and writes any other character, whitespace
    // included, as it is: splitting on whitespace in general would cut such a path.
    for (index, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            return Err(format!("line {}: no ' - ' separator", index + 1));
        };
        if sep < 5 || fields.len() < sep + 4 {
            return Err(format!("line {}: too few fields", index + 1));
        }
        let fstype = fields[sep + 1];
        let kind = match fstype {
            "cgroup2" => MountKind::V2,
            "cgroup" => {
                let mut controllers = Vec::new();
                let mut name = None;
                for opt in fields[sep + 3].split(',') {
                    if let Some(n) = opt.strip_prefix("name=") {
                        name = Some(n.to_owned());
                    } else if let Some(c) = Controller::from_name(opt) {
                        controllers.push(c);
                    }
                }
                MountKind::V1 { controllers, name }
            }
            _ => continue,
        };
        mounts.push(CgroupMount {
            mount_point: PathBuf::from(unescape_octal(fields[4])),
            root: unescape_octal(fields[3]),
            kind,
        });
    }
    Ok(mounts)
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` octal.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = digits.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(value) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The calling process's cgroups, from `/proc/self/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfCgroups {
    /// `(controllers and name=... entries, path)` per v1 hierarchy.
    pub v1: Vec<(Vec<String>, String)>,
    /// The `0::/path` entry.
    pub unified: Option<String>,
}

/// Parses `/proc/self/cgroup` (`hierarchy-id:controller-list:path` per line).
pub fn parse_self_cgroup(text: &str) -> SelfCgroups {
    let mut out = SelfCgroups::default();
    // Lines end in `\n` alone; `lines()` would also take a `\r` that belongs to a path.
    for line in text.split('\n') {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && list.is_empty() {
            out.unified = Some(path.to_owned());
        } else {
            out.v1.push((list.split(',').map(str::to_owned).collect(), path.to_owned()));
        }
    }
    out
}

/// A mounted v1 hierarchy carrying at least one controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V1Hierarchy {
    /// Several when co-mounted, e.g. `cpu,cpuacct`.
    pub controllers: Vec<Controller>,
    pub mount_point: PathBuf,
    pub mount_root: String,
    /// This process's cgroup in the hierarchy, when known.
    pub own_cgroup: Option<String>,
}

/// A mounted v1 hierarchy without controllers (`name=systemd`): never used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedHierarchy {
    pub name: String,
    pub mount_point: PathBuf,
}

/// The mounted v2 tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnifiedHierarchy {
    pub mount_point: PathBuf,
    pub mount_root: String,
    pub own_cgroup: Option<String>,
    /// The mount root's `cgroup.controllers`: what the tree can offer.
    pub controllers: BTreeSet<Controller>,
}

/// Maps a cgroup path within a hierarchy to its directory under a mount.
fn cgroup_dir(mount_point: &Path, mount_root: &str, cgroup: &str) -> Result<PathBuf, CgroupError> {
    let rel = if mount_root == "/" {
        Some(cgroup.trim_start_matches('/'))
    } else {
        cgroup
            .strip_prefix(mount_root)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .map(|rest| rest.trim_start_matches('/'))
    };
    match rel {
        Some("") => Ok(mount_point.to_path_buf()),
        Some(rel) => Ok(mount_point.join(rel)),
        None => Err(CgroupError::OutsideMount {
            cgroup: cgroup.to_owned(),
            mount_root: mount_root.to_owned(),
            mount_point: mount_point.to_owned(),
        }),
    }
}

impl V1Hierarchy {
    pub fn dir_of(&self, cgroup: &str) -> Result<PathBuf, CgroupError> {
        cgroup_dir(&self.mount_point, &self.mount_root, cgroup)
    }

    pub fn label(&self) -> String {
        self.controllers.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")
    }
}

impl UnifiedHierarchy {
    pub fn dir_of(&self, cgroup: &str) -> Result<PathBuf, CgroupError> {
        cgroup_dir(&self.mount_point, &self.mount_root, cgroup)
    }
}

/// Every cgroup hierarchy the process can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub kind: LayoutKind,
    pub v1: Vec<V1Hierarchy>,
    pub named: Vec<NamedHierarchy>,
    pub unified: Option<UnifiedHierarchy>,
}

impl Layout {
    /// Builds the layout from parsed mounts. `unified_controllers` is the
    /// content of the v2 mount root's `cgroup.controllers` (empty if absent).
    ///
    /// A controller is mounted once; when the table repeats a hierarchy (bind
    /// mounts), the first mount wins. Returns `None` when nothing usable is
    /// mounted.
    pub fn from_parts(
        mounts: &[CgroupMount],
        own: &SelfCgroups,
        unified_controllers: &str,
    ) -> Option<Layout> {
        let mut v1: Vec<V1Hierarchy> = Vec::new();
        let mut named = Vec::new();
        let mut unified = None;
        for mount in mounts {
            match &mount.kind {
                MountKind::V1 { controllers, name } if controllers.is_empty() => {
                    if let Some(name) = name {
                        if !named.iter().any(|n: &NamedHierarchy| &n.name == name) {
                            named.push(NamedHierarchy {
                                name: name.clone(),
                                mount_point: mount.mount_point.clone(),
                            });
                        }
                    }
                }
                MountKind::V1 { controllers, .. } => {
                    if v1.iter().any(|h| h.controllers.iter().any(|c| controllers.contains(c))) {
                        continue;
                    }
                    let own_cgroup = own
                        .v1
                        .iter()
                        .find(|(list, _)| {
                            controllers.iter().any(|c| list.iter().any(|l| l == c.name()))
                        })
                        .map(|(_, path)| path.clone());
                    v1.push(V1Hierarchy {
                        controllers: controllers.clone(),
                        mount_point: mount.mount_point.clone(),
                        mount_root: mount.root.clone(),
                        own_cgroup,
                    });
                }
                MountKind::V2 => {
                    if unified.is_none() {
                        unified = Some(UnifiedHierarchy {
                            mount_point: mount.mount_point.clone(),
                            mount_root: mount.root.clone(),
                            own_cgroup: own.unified.clone(),
                            controllers: unified_controllers
                                .split_whitespace()
                                .filter_map(Controller::from_name)
                                .collect(),
                        });
                    }
                }
            }
        }
        let kind = match (v1.is_empty(), &unified) {
            (true, None) => return None,
            (true, Some(_)) => LayoutKind::V2,
            (false, None) => LayoutKind::V1,
            (false, Some(_)) => LayoutKind::Hybrid,
        };
        Some(Layout { kind, v1, named, unified })
    }

    /// The v1 hierarchy that carries `controller`.
    pub fn v1_hierarchy(&self, controller: Controller) -> Option<&V1Hierarchy> {
        self.v1.iter().find(|h| h.controllers.contains(&controller))
    }

    /// True when the v2 tree's root offers `controller`.
    pub fn unified_offers(&self, controller: Controller) -> bool {
        self.unified.as_ref().is_some_and(|u| u.controllers.contains(&controller))
    }

    /// The v2 tree jobs get a cgroup in: on pure v2 always, on a hybrid host
    /// when `use_unified` asks for it.
    pub fn unified_for_jobs(&self, use_unified: bool) -> Option<&UnifiedHierarchy> {
        self.unified.as_ref().filter(|_| use_unified || self.kind == LayoutKind::V2)
    }
}

/// Where to read the mount table and the process's cgroups from.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub mountinfo: PathBuf,
    pub self_cgroup: PathBuf,
    /// Prefix for every mount point in the mount table, for inspecting a
    /// copied or fake tree (`<cgroup_root>/sys/fs/cgroup/...`).
    pub cgroup_root: Option<PathBuf>,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            self_cgroup: PathBuf::from("/proc/self/cgroup"),
            cgroup_root: None,
        }
    }
}

impl HostPaths {
    fn rebase(&self, mount_point: &Path) -> PathBuf {
        match &self.cgroup_root {
            None => mount_point.to_path_buf(),
            Some(root) => root.join(mount_point.strip_prefix("/").unwrap_or(mount_point)),
        }
    }
}

/// Reads the mount table and the process's cgroups and builds the [`Layout`].
/// A missing `self_cgroup` file is tolerated (own cgroups stay unknown).
pub fn detect(paths: &HostPaths) -> Result<Layout, CgroupError> {
    let mountinfo = read_knob(&paths.mountinfo)?;
    let mut mounts = parse_mountinfo(&mountinfo)
        .map_err(|reason| CgroupError::Parse { path: paths.mountinfo.clone(), reason })?;
    for mount in &mut mounts {
        mount.mount_point = paths.rebase(&mount.mount_point);
    }
    let own = match std::fs::read_to_string(&paths.self_cgroup) {
        Ok(text) => parse_self_cgroup(&text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => SelfCgroups::default(),
        Err(source) => return Err(CgroupError::Read { path: paths.self_cgroup.clone(), source }),
    };
    let unified_controllers = match mounts.iter().find(|m| m.kind == MountKind::V2) {
        Some(m) => match std::fs::read_to_string(m.mount_point.join("cgroup.controllers")) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: m.mount_point.join("cgroup.controllers"),
                    source,
                })
            }
        },
        None => String::new(),
    };
    Layout::from_parts(&mounts, &own, &unified_controllers)
        .ok_or_else(|| CgroupError::NoHierarchy { mountinfo: paths.mountinfo.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = include_str!("../../tests/fixtures/cgroup/mountinfo-hybrid");
    const HYBRID_SELF: &str = include_str!("../../tests/fixtures/cgroup/self-cgroup-hybrid");
    const V1_COMOUNT: &str = include_str!("../../tests/fixtures/cgroup/mountinfo-v1-comount");
    const V2: &str = include_str!("../../tests/fixtures/cgroup/mountinfo-v2");
    const CONTAINER: &str = include_str!("../../tests/fixtures/cgroup/mountinfo-v1-container");

    /// Found by the `cgroup_layout` fuzz target: the kernel escapes only space, tab,
    /// newline and backslash in a path; any other whitespace is written as it is.
    #[test]
    fn mount_paths_keep_whitespace_the_kernel_does_not_escape() {
        let line = "36 25 0:31 /my\u{c}cgroups /sys/fs/cgroup/a\rb\u{a0}c\\040d rw,nosuid \
                    shared:9 - cgroup2 cgroup2 rw\n";
        let mounts = parse_mountinfo(line).unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].root, "/my\u{c}cgroups");
        assert_eq!(mounts[0].mount_point, Path::new("/sys/fs/cgroup/a\rb\u{a0}c d"));
    }

    /// Found by the `cgroup_layout` fuzz target: a cgroup name may end in a carriage
    /// return, which the kernel writes as is before the line's `\n`.
    #[test]
    fn self_cgroup_paths_keep_a_trailing_carriage_return() {
        let own = parse_self_cgroup("7:blkio:/job\r\n0::/job\r\n");
        assert_eq!(own.v1, vec![(vec!["blkio".to_owned()], "/job\r".to_owned())]);
        assert_eq!(own.unified.as_deref(), Some("/job\r"));
    }

    #[test]
    fn hybrid_host_is_detected_with_named_hierarchy_ignored() {
        let mounts = parse_mountinfo(HYBRID).unwrap();
        let own = parse_self_cgroup(HYBRID_SELF);
        let layout = Layout::from_parts(&mounts, &own, "hugetlb\n").unwrap();
        assert_eq!(layout.kind, LayoutKind::Hybrid);
        assert_eq!(layout.v1.len(), 8);
        assert_eq!(
            layout.named,
            vec![NamedHierarchy {
                name: "systemd".into(),
                mount_point: "/sys/fs/cgroup/systemd".into()
            }]
        );
        let memory = layout.v1_hierarchy(Controller::Memory).unwrap();
        assert_eq!(memory.mount_point, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(memory.own_cgroup.as_deref(), Some("/agent/ef3b"));
        assert_eq!(
            memory.dir_of("/agent/ef3b").unwrap(),
            Path::new("/sys/fs/cgroup/memory/agent/ef3b")
        );
        let unified = layout.unified.as_ref().unwrap();
        assert_eq!(unified.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(unified.own_cgroup.as_deref(), Some("/"));
        assert_eq!(unified.controllers, BTreeSet::from([Controller::Hugetlb]));
        assert!(!layout.unified_offers(Controller::Memory));
        assert_eq!(layout.unified_for_jobs(true), layout.unified.as_ref());
        assert_eq!(layout.unified_for_jobs(false), None);
    }

    #[test]
    fn comounted_controllers_share_one_hierarchy() {
        let mounts = parse_mountinfo(V1_COMOUNT).unwrap();
        let own = parse_self_cgroup(
            "4:cpu,cpuacct:/user.slice\n3:net_cls,net_prio:/\n1:name=systemd:/user.slice/x.scope\n",
        );
        let layout = Layout::from_parts(&mounts, &own, "").unwrap();
        assert_eq!(layout.kind, LayoutKind::V1);
        let cpu = layout.v1_hierarchy(Controller::Cpu).unwrap();
        let cpuacct = layout.v1_hierarchy(Controller::Cpuacct).unwrap();
        assert_eq!(cpu, cpuacct);
        assert_eq!(cpu.label(), "cpu,cpuacct");
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(cpu.own_cgroup.as_deref(), Some("/user.slice"));
        assert!(layout.v1_hierarchy(Controller::NetPrio).is_some());
        // The systemd-managed cgroup2 "unified" mount here is absent: pure v1.
        assert!(layout.unified.is_none());
        assert_eq!(layout.named.len(), 1);
    }

    #[test]
    fn pure_v2_takes_controllers_from_the_root() {
        let mounts = parse_mountinfo(V2).unwrap();
        let own = parse_self_cgroup("0::/system.slice/corral.service\n");
        let layout =
            Layout::from_parts(&mounts, &own, "cpuset cpu io memory hugetlb pids rdma misc\n")
                .unwrap();
        assert_eq!(layout.kind, LayoutKind::V2);
        assert!(layout.v1.is_empty());
        assert!(layout.unified_offers(Controller::Memory));
        assert!(layout.unified_offers(Controller::Io));
        // No v1 hierarchy to fall back to: the v2 tree is used regardless.
        assert!(layout.unified_for_jobs(false).is_some());
        let unified = layout.unified.unwrap();
        assert_eq!(
            unified.dir_of("/system.slice/corral.service").unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/corral.service")
        );
    }

    #[test]
    fn container_mount_roots_are_stripped_from_own_paths() {
        let mounts = parse_mountinfo(CONTAINER).unwrap();
        let own = parse_self_cgroup("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n");
        let layout = Layout::from_parts(&mounts, &own, "").unwrap();
        let memory = layout.v1_hierarchy(Controller::Memory).unwrap();
        assert_eq!(memory.mount_root, "/docker/abc");
        assert_eq!(memory.dir_of("/docker/abc").unwrap(), Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(
            memory.dir_of("/docker/abc/job").unwrap(),
            Path::new("/sys/fs/cgroup/memory/job")
        );
        assert!(memory.dir_of("/docker/other").is_err());
        assert!(memory.dir_of("/docker/abcdef").is_err());
    }

    #[test]
    fn mount_points_with_spaces_are_unescaped() {
        let line = "50 31 0:40 / /mnt/cg\\040root rw - cgroup2 cgroup2 rw\n";
        let mounts = parse_mountinfo(line).unwrap();
        assert_eq!(mounts[0].mount_point, Path::new("/mnt/cg root"));
        assert_eq!(unescape_octal("a\\134b"), "a\\b");
        assert_eq!(unescape_octal("trailing\\"), "trailing\\");
        assert_eq!(unescape_octal("short\\04"), "short\\04");
    }

    #[test]
    fn optional_fields_before_the_separator_are_skipped() {
        let line = "35 24 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:14 master:2 - cgroup cgroup rw,memory\n";
        let mounts = parse_mountinfo(line).unwrap();
        assert_eq!(
            mounts[0].kind,
            MountKind::V1 { controllers: vec![Controller::Memory], name: None }
        );
    }

    #[test]
    fn malformed_lines_are_reported() {
        assert!(parse_mountinfo("garbage line\n").is_err());
        assert!(parse_mountinfo("1 2 3 - cgroup\n").is_err());
    }

    #[test]
    fn nothing_mounted_is_no_layout() {
        let mounts = parse_mountinfo("22 1 0:21 / /proc rw - proc proc rw\n").unwrap();
        assert!(Layout::from_parts(&mounts, &SelfCgroups::default(), "").is_none());
    }

    #[test]
    fn detect_rebases_mount_points_under_a_cgroup_root() {
        let dir = tempfile::tempdir().unwrap();
        let unified = dir.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(&unified).unwrap();
        std::fs::write(unified.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let mountinfo = dir.path().join("mountinfo");
        std::fs::write(&mountinfo, V2).unwrap();
        let layout = detect(&HostPaths {
            mountinfo,
            self_cgroup: dir.path().join("absent"),
            cgroup_root: Some(dir.path().to_path_buf()),
        })
        .unwrap();
        let u = layout.unified.unwrap();
        assert_eq!(u.mount_point, unified);
        assert_eq!(u.own_cgroup, None);
        assert!(u.controllers.contains(&Controller::Pids));
    }
}
