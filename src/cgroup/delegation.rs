//! Where the agent's cgroup tree is rooted: in a cgroup a service manager
//! delegated to it, or at the root of every hierarchy.
//!
//! A service manager that owns the cgroup tree (systemd) lets a service write
//! only below the cgroup it delegated to it, and marks that cgroup: systemd
//! (251 and later) sets the extended attribute `trusted.delegate` to `1` on a
//! unit's cgroup when the unit has `Delegate=yes` (`user.delegate` for a user
//! manager, which may not set `trusted.` attributes). An agent started by an
//! unprivileged user in a cgroup delegated by `chown` is told apart by the
//! ownership of the cgroup's files instead.
//!
//! [`decide`] is a function of the layout, what the configuration asks and
//! the extended attributes and owners it reads; [`prepare`] makes the
//! delegated layout:
//!
//! ```text
//! D/                 the delegated cgroup (…/corral.service)
//! ├── agent/         the agent itself
//! ├── shims/         every run's shim
//! └── <parent>/…     the job tree, as at the root of a hierarchy
//! ```
//!
//! The agent cannot stay in `D` itself: once controllers are enabled in
//! `D`'s `cgroup.subtree_control` for the job tree, `D` may hold no process
//! (the v2 no-internal-process rule). Under systemd 254 and later,
//! `DelegateSubgroup=agent` starts the agent in `D/agent` directly, which is
//! also what lets a restarted service's process into the unit at all once
//! `D` has controllers enabled; an agent started by hand in `D` moves
//! itself. A shim outlives the agent that started it, so it must not sit in
//! the agent's cgroup, where a service manager that stops the agent's
//! cgroup would take it along. All shims share one cgroup: they are small
//! and need no limits of their own, and a cgroup per shim would be a `mkdir`
//! per launch and an empty cgroup to remove after each shim exits, from
//! outside it.

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::CgroupError;
use super::fs::{mkdir, write_knob};
use super::layout::{Layout, LayoutKind, UnifiedHierarchy};
use super::path::CgroupPath;

/// The agent's own cgroup below the delegated one.
pub const AGENT_LEAF: &str = "agent";
/// The cgroup every shim is moved into, below the delegated one.
pub const SHIMS_LEAF: &str = "shims";

/// The extended attributes a service manager marks a delegated cgroup with,
/// in the order they are looked for.
const DELEGATE_XATTRS: [(&str, Signal); 2] =
    [("trusted.delegate", Signal::TrustedXattr), ("user.delegate", Signal::UserXattr)];

/// What the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootRequest {
    /// A delegated cgroup when one is found, else the hierarchy roots.
    Auto,
    /// This cgroup of the v2 hierarchy, which must hold the agent.
    Cgroup(String),
}

/// How the delegated cgroup was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// `trusted.delegate` = `1` (systemd's system manager).
    TrustedXattr,
    /// `user.delegate` = `1` (systemd's user manager).
    UserXattr,
    /// Its `cgroup.procs` and `cgroup.subtree_control` belong to the agent's
    /// (non-root) user.
    OwnedByAgentUser,
    /// Named by `cgroup_root`.
    Configured,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::TrustedXattr => "it carries trusted.delegate=1",
            Signal::UserXattr => "it carries user.delegate=1",
            Signal::OwnedByAgentUser => {
                "its cgroup.procs and cgroup.subtree_control belong to the agent's user"
            }
            Signal::Configured => "cgroup_root names it",
        })
    }
}

/// Why the tree is rooted at the hierarchy roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum AtRoot {
    /// The v1 hierarchies carry the controllers, and no service manager
    /// delegates those.
    NotPureV2 { layout: LayoutKind },
    /// `/proc/self/cgroup` has no v2 entry.
    OwnCgroupUnknown,
    /// The agent runs in the root cgroup: nothing was delegated to it.
    RunningAtRoot,
    /// Neither the agent's cgroup nor, when it is an `agent` leaf, the one
    /// above carries a delegation mark.
    NotDelegated { cgroup: String },
}

impl fmt::Display for AtRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtRoot::NotPureV2 { layout } => write!(
                f,
                "the host's layout is {layout}: the v1 hierarchies carry the controllers and are \
                 never delegated"
            ),
            AtRoot::OwnCgroupUnknown => f.write_str("the agent's v2 cgroup is unknown"),
            AtRoot::RunningAtRoot => f.write_str("the agent runs in the root cgroup"),
            AtRoot::NotDelegated { cgroup } => write!(
                f,
                "the agent's cgroup {cgroup} is not delegated to it (no trusted.delegate or \
                 user.delegate attribute, not owned by the agent's user)"
            ),
        }
    }
}

/// A cgroup delegated to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delegated {
    /// Its path in the v2 hierarchy (`/system.slice/corral.service`).
    pub cgroup: String,
    /// Its directory.
    pub dir: PathBuf,
    pub signal: Signal,
    /// The agent's cgroup when it was decided.
    pub agent_cgroup: String,
}

impl Delegated {
    pub fn agent_dir(&self) -> PathBuf {
        self.dir.join(AGENT_LEAF)
    }

    pub fn shims_dir(&self) -> PathBuf {
        self.dir.join(SHIMS_LEAF)
    }
}

/// Where the tree goes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    Root(AtRoot),
    Delegated(Delegated),
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Root(why) => write!(f, "root of every hierarchy: {why}"),
            Mode::Delegated(d) => write!(f, "delegated at {}: {}", d.cgroup, d.signal),
        }
    }
}

/// Decides where the tree goes. `uid` is the agent's effective user.
///
/// With [`RootRequest::Auto`], the agent's own cgroup is looked at, and the
/// one above it when the agent's is named [`AGENT_LEAF`] (where
/// `DelegateSubgroup=agent` starts it): no further up, so that a cgroup
/// delegated to someone else higher up (a user's `user@.service`) is never
/// taken for the agent's. An explicitly named cgroup must exist and hold the
/// agent.
pub fn decide(layout: &Layout, request: &RootRequest, uid: u32) -> Result<Mode, CgroupError> {
    let refuse = |cgroup: &str, reason: String| CgroupError::Delegation {
        cgroup: cgroup.to_owned(),
        reason,
    };
    let unified = match (&layout.unified, layout.kind) {
        (Some(u), LayoutKind::V2) => u,
        (_, kind) => {
            return match request {
                RootRequest::Auto => Ok(Mode::Root(AtRoot::NotPureV2 { layout: kind })),
                RootRequest::Cgroup(c) => Err(refuse(
                    c,
                    format!("the host's layout is {kind}; a delegated root needs pure cgroup v2"),
                )),
            };
        }
    };
    let Some(own) = unified.own_cgroup.as_deref() else {
        return match request {
            RootRequest::Auto => Ok(Mode::Root(AtRoot::OwnCgroupUnknown)),
            RootRequest::Cgroup(c) => {
                Err(refuse(c, "the agent's v2 cgroup is unknown (/proc/self/cgroup)".to_owned()))
            }
        };
    };
    let delegated = |cgroup: &str, signal| -> Result<Mode, CgroupError> {
        Ok(Mode::Delegated(Delegated {
            cgroup: cgroup.to_owned(),
            dir: unified.dir_of(cgroup)?,
            signal,
            agent_cgroup: own.to_owned(),
        }))
    };
    match request {
        RootRequest::Cgroup(cgroup) => {
            let inside = own == cgroup
                || own.strip_prefix(cgroup.as_str()).is_some_and(|rest| rest.starts_with('/'));
            if !inside {
                return Err(refuse(
                    cgroup,
                    format!("the agent runs in {own}, which is not in it or below it"),
                ));
            }
            let dir = unified.dir_of(cgroup)?;
            if !dir.is_dir() {
                return Err(refuse(cgroup, format!("{} does not exist", dir.display())));
            }
            delegated(cgroup, Signal::Configured)
        }
        RootRequest::Auto => {
            if is_root(unified, own) {
                return Ok(Mode::Root(AtRoot::RunningAtRoot));
            }
            // The one above first: were a service manager to mark the
            // subgroup it starts the agent in too, the unit's cgroup would
            // still be the root of the tree.
            let mut candidates = Vec::new();
            if let Some((above, leaf)) = own.rsplit_once('/') {
                if leaf == AGENT_LEAF && !above.is_empty() && !is_root(unified, above) {
                    candidates.push(above.to_owned());
                }
            }
            candidates.push(own.to_owned());
            for cgroup in &candidates {
                let Ok(dir) = unified.dir_of(cgroup) else { continue };
                if let Some(signal) = delegation_signal(&dir, uid) {
                    return delegated(cgroup, signal);
                }
            }
            Ok(Mode::Root(AtRoot::NotDelegated { cgroup: own.to_owned() }))
        }
    }
}

fn is_root(unified: &UnifiedHierarchy, cgroup: &str) -> bool {
    unified.dir_of(cgroup).is_ok_and(|dir| dir == unified.mount_point)
}

/// The mark that says `dir` is delegated to a process running as `uid`.
pub fn delegation_signal(dir: &Path, uid: u32) -> Option<Signal> {
    for (name, signal) in DELEGATE_XATTRS {
        if read_xattr(dir, name).is_some_and(|value| value.trim_ascii() == b"1") {
            return Some(signal);
        }
    }
    // Root owns every cgroup: ownership says nothing about delegation to it.
    let owned = |file: &str| std::fs::metadata(dir.join(file)).is_ok_and(|m| m.uid() == uid);
    if uid != 0 && owned("cgroup.procs") && owned("cgroup.subtree_control") {
        return Some(Signal::OwnedByAgentUser);
    }
    None
}

/// The value of the extended attribute `name` of `path`; `None` when it is
/// absent or cannot be read (an unprivileged reader never sees `trusted.`).
fn read_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = CString::new(name).ok()?;
    // The mark is one or two bytes; a longer value is not a mark.
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // kernel writes at most `buf.len()` bytes into `buf`.
    let len =
        unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(len).ok().map(|len| buf[..len].to_vec())
}

/// What [`prepare`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Where a shim writes itself to leave the agent's cgroup.
    pub shims_procs: PathBuf,
    /// Whether the agent moved itself into [`AGENT_LEAF`].
    pub moved_agent: bool,
}

/// Makes `D/agent` and `D/shims` and moves the agent (`pid`) into
/// `D/agent` unless it is there already. Refuses a job parent whose first
/// level would be one of those two.
pub fn prepare(
    delegated: &Delegated,
    parent: &CgroupPath,
    pid: u32,
) -> Result<Prepared, CgroupError> {
    if let Some(first) = parent.components().first() {
        if [AGENT_LEAF, SHIMS_LEAF].contains(&first.as_str()) {
            return Err(CgroupError::Delegation {
                cgroup: delegated.cgroup.clone(),
                reason: format!(
                    "the cgroup parent {parent} would share {}/{first} with the agent's own \
                     cgroups; choose another cgroup_parent",
                    delegated.cgroup
                ),
            });
        }
    }
    let agent_dir = delegated.agent_dir();
    let shims_dir = delegated.shims_dir();
    mkdir(&agent_dir)?;
    mkdir(&shims_dir)?;
    let agent_cgroup = format!("{}/{AGENT_LEAF}", delegated.cgroup);
    let moved_agent = delegated.agent_cgroup != agent_cgroup;
    if moved_agent {
        // One pid moves the whole thread group (cgroup.procs, not threads).
        write_knob(&agent_dir.join("cgroup.procs"), &pid.to_string())?;
    }
    Ok(Prepared { shims_procs: shims_dir.join("cgroup.procs"), moved_agent })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fake::{FakeFs, FakeKind};

    const SERVICE: &str = "/system.slice/corral.service";

    fn set_xattr(path: &Path, name: &str, value: &[u8]) {
        let path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let name = CString::new(name).unwrap();
        // SAFETY: NUL-terminated strings and a slice that outlive the call.
        let rc = unsafe {
            libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0)
        };
        assert_eq!(rc, 0, "setxattr {name:?}: {}", std::io::Error::last_os_error());
    }

    /// A pure v2 fake tree with the agent in `own`.
    fn v2_with_agent_in(own: &str) -> FakeFs {
        let fs = FakeFs::new(FakeKind::V2);
        fs.add_cgroup(own.trim_start_matches('/'));
        std::fs::write(fs.dir.path().join("self-cgroup"), format!("0::{own}\n")).unwrap();
        fs
    }

    fn service_dir(fs: &FakeFs) -> PathBuf {
        fs.unified_root().join(SERVICE.trim_start_matches('/'))
    }

    #[test]
    fn a_service_cgroup_marked_trusted_delegate_is_the_root() {
        let fs = v2_with_agent_in(SERVICE);
        set_xattr(&service_dir(&fs), "trusted.delegate", b"1");
        let mode = decide(&fs.layout(), &RootRequest::Auto, 0).unwrap();
        let Mode::Delegated(d) = mode else { panic!("{mode:?}") };
        assert_eq!(d.cgroup, SERVICE);
        assert_eq!(d.dir, service_dir(&fs));
        assert_eq!(d.signal, Signal::TrustedXattr);
    }

    #[test]
    fn an_agent_started_in_its_delegate_subgroup_roots_the_tree_one_level_up() {
        let fs = v2_with_agent_in(&format!("{SERVICE}/agent"));
        set_xattr(&service_dir(&fs), "user.delegate", b"1");
        let Mode::Delegated(d) = decide(&fs.layout(), &RootRequest::Auto, 0).unwrap() else {
            panic!()
        };
        assert_eq!(d.cgroup, SERVICE);
        assert_eq!(d.signal, Signal::UserXattr);
        assert_eq!(d.agent_cgroup, format!("{SERVICE}/agent"));
        // A mark on the subgroup as well changes nothing.
        set_xattr(&service_dir(&fs).join("agent"), "trusted.delegate", b"1");
        let Mode::Delegated(d) = decide(&fs.layout(), &RootRequest::Auto, 0).unwrap() else {
            panic!()
        };
        assert_eq!(d.cgroup, SERVICE);
    }

    #[test]
    fn a_delegated_cgroup_two_levels_up_is_someone_elses() {
        // user@1000.service is delegated to the user's manager, not to an
        // agent in one of its scopes.
        let fs = v2_with_agent_in("/user.slice/user@1000.service/app.slice/x.scope");
        set_xattr(
            &fs.unified_root().join("user.slice/user@1000.service"),
            "trusted.delegate",
            b"1",
        );
        let mode = decide(&fs.layout(), &RootRequest::Auto, 0).unwrap();
        assert_eq!(
            mode,
            Mode::Root(AtRoot::NotDelegated {
                cgroup: "/user.slice/user@1000.service/app.slice/x.scope".into()
            })
        );
        // Nor is the parent of a leaf that is not named `agent`.
        let fs = v2_with_agent_in(&format!("{SERVICE}/worker"));
        set_xattr(&service_dir(&fs), "trusted.delegate", b"1");
        assert!(matches!(
            decide(&fs.layout(), &RootRequest::Auto, 0).unwrap(),
            Mode::Root(AtRoot::NotDelegated { .. })
        ));
    }

    #[test]
    fn unmarked_root_hybrid_and_zero_valued_cgroups_stay_at_the_root() {
        let fs = v2_with_agent_in(SERVICE);
        assert_eq!(
            decide(&fs.layout(), &RootRequest::Auto, 0).unwrap(),
            Mode::Root(AtRoot::NotDelegated { cgroup: SERVICE.into() })
        );
        set_xattr(&service_dir(&fs), "trusted.delegate", b"0");
        assert!(matches!(
            decide(&fs.layout(), &RootRequest::Auto, 0).unwrap(),
            Mode::Root(AtRoot::NotDelegated { .. })
        ));
        // Root owns everything: ownership is no mark for uid 0.
        assert_eq!(delegation_signal(&service_dir(&fs), 0), None);

        let at_root = FakeFs::new(FakeKind::V2);
        assert_eq!(
            decide(&at_root.layout(), &RootRequest::Auto, 0).unwrap(),
            Mode::Root(AtRoot::RunningAtRoot)
        );
        let hybrid = FakeFs::new(FakeKind::Hybrid);
        assert_eq!(
            decide(&hybrid.layout(), &RootRequest::Auto, 0).unwrap(),
            Mode::Root(AtRoot::NotPureV2 { layout: LayoutKind::Hybrid })
        );
        assert!(decide(&hybrid.layout(), &RootRequest::Cgroup(SERVICE.into()), 0).is_err());
    }

    #[test]
    fn a_cgroup_owned_by_the_agents_user_is_delegated_to_it() {
        let fs = v2_with_agent_in(SERVICE);
        let dir = service_dir(&fs);
        for file in ["cgroup.procs", "cgroup.subtree_control"] {
            std::os::unix::fs::chown(dir.join(file), Some(4242), None).unwrap();
        }
        assert_eq!(delegation_signal(&dir, 4242), Some(Signal::OwnedByAgentUser));
        assert_eq!(delegation_signal(&dir, 4243), None);
        // One of the two files is not enough.
        std::os::unix::fs::chown(dir.join("cgroup.subtree_control"), Some(0), None).unwrap();
        assert_eq!(delegation_signal(&dir, 4242), None);
    }

    #[test]
    fn a_configured_cgroup_must_exist_and_hold_the_agent() {
        let fs = v2_with_agent_in(&format!("{SERVICE}/agent"));
        let layout = fs.layout();
        let Mode::Delegated(d) = decide(&layout, &RootRequest::Cgroup(SERVICE.into()), 0).unwrap()
        else {
            panic!()
        };
        assert_eq!(d.signal, Signal::Configured);
        let elsewhere = decide(&layout, &RootRequest::Cgroup("/system.slice".into()), 0);
        assert!(elsewhere.is_ok(), "an ancestor holds the agent too");
        let sibling = decide(&layout, &RootRequest::Cgroup("/system.slice/corral".into()), 0);
        let err = sibling.unwrap_err().to_string();
        assert!(err.contains("not in it or below it"), "{err}");
        std::fs::write(fs.dir.path().join("self-cgroup"), "0::/gone/agent\n").unwrap();
        let err = decide(&fs.layout(), &RootRequest::Cgroup("/gone".into()), 0).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn prepare_moves_the_agent_into_its_leaf_once() {
        let fs = v2_with_agent_in(SERVICE);
        fs.add_cgroup("system.slice/corral.service/agent");
        fs.add_cgroup("system.slice/corral.service/shims");
        let delegated = Delegated {
            cgroup: SERVICE.into(),
            dir: service_dir(&fs),
            signal: Signal::Configured,
            agent_cgroup: SERVICE.into(),
        };
        let parent = CgroupPath::new("corral").unwrap();
        let prepared = prepare(&delegated, &parent, 4321).unwrap();
        assert!(prepared.moved_agent);
        assert_eq!(fs.read(&service_dir(&fs).join("agent/cgroup.procs")), "4321");
        assert_eq!(prepared.shims_procs, service_dir(&fs).join("shims/cgroup.procs"));

        let already = Delegated { agent_cgroup: format!("{SERVICE}/agent"), ..delegated.clone() };
        std::fs::write(service_dir(&fs).join("agent/cgroup.procs"), "").unwrap();
        assert!(!prepare(&already, &parent, 4321).unwrap().moved_agent);
        assert_eq!(fs.read(&service_dir(&fs).join("agent/cgroup.procs")), "");

        let clash = prepare(&delegated, &CgroupPath::new("shims/jobs").unwrap(), 1);
        assert!(clash.unwrap_err().to_string().contains("choose another cgroup_parent"));
    }

    /// Every file and directory outside `inside`, with each file's content.
    fn snapshot_outside(root: &Path, inside: &Path) -> Vec<(PathBuf, Option<String>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.starts_with(inside) {
                    continue;
                }
                if path.is_dir() {
                    out.push((path.clone(), None));
                    stack.push(path);
                } else {
                    let content = std::fs::read_to_string(&path).unwrap_or_default();
                    out.push((path, Some(content)));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn the_delegated_tree_writes_nothing_outside_the_delegated_cgroup() {
        use crate::cgroup::{Anchor, CgroupManager, CgroupName, ManagerConfig, Resources};
        let fs = v2_with_agent_in(SERVICE);
        let service = service_dir(&fs);
        set_xattr(&service, "trusted.delegate", b"1");
        // The fake's mkdir makes bare directories: the kernel's files are
        // made in advance where the agent will write them.
        for rel in ["agent", "shims", "corral", "corral/job-1"] {
            fs.add_cgroup(&format!("system.slice/corral.service/{rel}"));
        }
        let before = snapshot_outside(fs.dir.path(), &service);

        let Mode::Delegated(delegated) = decide(&fs.layout(), &RootRequest::Auto, 0).unwrap()
        else {
            panic!()
        };
        let parent = CgroupPath::new("corral").unwrap();
        prepare(&delegated, &parent, 4321).unwrap();
        let config = ManagerConfig {
            parent,
            anchor: Anchor::Delegated(delegated.cgroup.clone()),
            use_unified: true,
        };
        let manager = CgroupManager::open(fs.layout(), &config).unwrap();
        assert_eq!(manager.parent_dirs(), vec![service.join("corral")]);
        for dir in [&service, &service.join("corral")] {
            assert_eq!(
                fs.read(&dir.join("cgroup.subtree_control")),
                "+cpu +cpuset +memory +pids +io",
                "{}",
                dir.display()
            );
        }
        let job = manager.create(&CgroupName::new("job-1").unwrap(), &Resources::default());
        let job = job.unwrap();
        assert_eq!(job.procs_files(), vec![service.join("corral/job-1/cgroup.procs")]);
        // A restarted agent finds the run's cgroup under the same anchor.
        assert_eq!(manager.jobs().unwrap(), vec![CgroupName::new("job-1").unwrap()]);
        assert_eq!(manager.restore_parent().unwrap(), Vec::<PathBuf>::new());

        assert_eq!(snapshot_outside(fs.dir.path(), &service), before);
    }

    #[test]
    fn a_delegated_anchor_refuses_v1_hierarchies() {
        use crate::cgroup::{Anchor, CgroupManager, ManagerConfig};
        let fs = FakeFs::new(FakeKind::Hybrid);
        let config = ManagerConfig {
            parent: CgroupPath::new("corral").unwrap(),
            anchor: Anchor::Delegated(SERVICE.into()),
            use_unified: true,
        };
        let err = CgroupManager::open(fs.layout(), &config).unwrap_err();
        assert!(matches!(err, CgroupError::Delegation { .. }), "{err}");
    }
}
