//! The container a job runs in: namespaces, root filesystem, mounts, capabilities.

use std::collections::BTreeSet;
use std::fmt;

use super::check::{choice, optional, Checker, Choice};
use super::error::{FieldPath, SpecError};
use super::paths::AbsPath;
use super::tree::Node;
use crate::vocab::{Bytes, Capability, Namespace};

impl Choice for Namespace {
    const ALL: &'static [(&'static str, Self)] = &[
        (Namespace::Pid.word(), Namespace::Pid),
        (Namespace::Mount.word(), Namespace::Mount),
        (Namespace::Uts.word(), Namespace::Uts),
        (Namespace::Ipc.word(), Namespace::Ipc),
        (Namespace::Net.word(), Namespace::Net),
        (Namespace::User.word(), Namespace::User),
        (Namespace::Cgroup.word(), Namespace::Cgroup),
    ];
}

/// The namespaces a job gets when its file does not say: everything but `user` (which
/// changes what root and file ownership mean inside) and `cgroup` (which hides the job's
/// own limits from it).
pub const DEFAULT_NAMESPACES: &[Namespace] =
    &[Namespace::Pid, Namespace::Mount, Namespace::Uts, Namespace::Ipc, Namespace::Net];

/// A hostname (RFC 1123): dot-separated labels of letters, digits and `-`, at most 64
/// characters, the kernel's limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hostname(String);

impl Hostname {
    pub fn parse(text: &str) -> Result<Hostname, SpecError> {
        let invalid = |reason: &str| SpecError::Invalid {
            what: "hostname",
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if text.len() > 64 {
            return Err(invalid("it is longer than 64 characters"));
        }
        for label in text.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(invalid("each dot-separated part must be 1 to 63 characters"));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(invalid("only letters, digits, '-' and '.' are allowed"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("a part cannot start or end with '-'"));
            }
        }
        Ok(Hostname(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A capability as a job file names it: exactly as the kernel headers spell it, with a
/// hint for near misses (`NET_ADMIN`, `cap_net_admin`).
pub fn parse_capability(text: &str) -> Result<Capability, SpecError> {
    if let Some(cap) = Capability::from_name(text) {
        return Ok(cap);
    }
    let reason = match text.parse::<Capability>() {
        Ok(guess) => format!("did you mean {guess}?"),
        Err(_) => "not a Linux capability (see capabilities(7))".to_owned(),
    };
    Err(SpecError::Invalid { what: "capability", value: text.to_owned(), reason })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MountWord {
    Bind,
    Tmpfs,
}
choice!(MountWord { "bind" => Bind, "tmpfs" => Tmpfs });

/// What is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MountKind {
    /// A host directory or file.
    Bind { source: AbsPath },
    /// A fresh tmpfs; its pages are charged to the job's memory cgroup.
    Tmpfs { size: Option<Bytes> },
}

/// One extra mount inside the job's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mount {
    pub kind: MountKind,
    /// Where, inside the job's view of the filesystem (under `rootfs` if there is one).
    pub target: AbsPath,
    pub readonly: bool,
}

/// The isolation section of a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Isolation {
    pub namespaces: BTreeSet<Namespace>,
    /// A directory to `pivot_root` into; `None` keeps the host's root.
    pub rootfs: Option<AbsPath>,
    pub hostname: Option<Hostname>,
    /// Make the root filesystem (`rootfs`, or the host's) read-only inside the job.
    pub readonly: bool,
    pub mounts: Vec<Mount>,
    /// The only capabilities the job keeps (bounding, permitted, effective and ambient
    /// sets); empty by default, so even a root job holds none.
    pub capabilities: BTreeSet<Capability>,
    /// Device nodes the job may use besides the safe set every job gets.
    pub devices: Vec<super::devices::DeviceAllow>,
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation {
            namespaces: DEFAULT_NAMESPACES.iter().copied().collect(),
            rootfs: None,
            hostname: None,
            readonly: false,
            mounts: Vec::new(),
            capabilities: BTreeSet::new(),
            devices: Vec::new(),
        }
    }
}

impl Isolation {
    pub fn has(&self, namespace: Namespace) -> bool {
        self.namespaces.contains(&namespace)
    }
}

const FIELDS: &[&str] =
    &["namespaces", "rootfs", "hostname", "readonly", "mounts", "capabilities", "devices"];

pub(super) fn compile(
    cx: &mut Checker,
    node: Option<&Node>,
    path: &FieldPath,
) -> Option<Isolation> {
    let Some(node) = node else { return Some(Isolation::default()) };
    let fields = cx.map(node, path, FIELDS)?;

    let namespaces = match fields.get("namespaces") {
        None => Some(DEFAULT_NAMESPACES.iter().copied().collect()),
        Some(n) => set(cx, n, &fields.field("namespaces"), |cx, item, path| {
            cx.choice::<Namespace>(item, path)
        }),
    };
    let rootfs = optional(fields.get("rootfs"), |n| {
        cx.parsed(n, &fields.field("rootfs"), |t| AbsPath::parse(t, "root filesystem"))
    });
    let hostname = optional(fields.get("hostname"), |n| {
        cx.parsed(n, &fields.field("hostname"), Hostname::parse)
    });
    let readonly = match fields.get("readonly") {
        None => Some(false),
        Some(n) => cx.boolean(n, &fields.field("readonly")),
    };
    let mounts = match fields.get("mounts") {
        None => Some(Vec::new()),
        Some(n) => mounts(cx, n, &fields.field("mounts")),
    };
    let capabilities = match fields.get("capabilities") {
        None => Some(BTreeSet::new()),
        Some(n) => set(cx, n, &fields.field("capabilities"), |cx, item, path| {
            cx.parsed(item, path, parse_capability)
        }),
    };

    let devices = match fields.get("devices") {
        None => Some(Vec::new()),
        Some(n) => super::devices::compile(cx, n, &fields.field("devices")),
    };

    // Things that need a namespace the list leaves out.
    let mut ok = true;
    if let Some(namespaces) = &namespaces {
        // `readonly: false` and `mounts: []` ask for nothing, so they need nothing.
        let needs = [
            ("hostname", fields.has("hostname"), Namespace::Uts),
            ("rootfs", fields.has("rootfs"), Namespace::Mount),
            ("readonly", readonly == Some(true), Namespace::Mount),
            ("mounts", mounts.as_ref().is_some_and(|m| !m.is_empty()), Namespace::Mount),
        ];
        for (field, set, namespace) in needs {
            if set && !namespaces.contains(&namespace) {
                ok = false;
                cx.report(
                    fields.key_pos(field),
                    &fields.field(field),
                    SpecError::Requires {
                        field,
                        requirement: format!(
                            "the `{}` namespace in `namespaces`",
                            namespace.word()
                        ),
                    },
                );
            }
        }
    }
    ok.then_some(())?;

    Some(Isolation {
        namespaces: namespaces?,
        rootfs: rootfs?,
        hostname: hostname?,
        readonly: readonly?,
        mounts: mounts?,
        capabilities: capabilities?,
        devices: devices?,
    })
}

/// A list with no repeats, each item read by `item`.
fn set<T: Ord + fmt::Display>(
    cx: &mut Checker,
    node: &Node,
    path: &FieldPath,
    mut item: impl FnMut(&mut Checker, &Node, &FieldPath) -> Option<T>,
) -> Option<BTreeSet<T>> {
    let items = cx.seq(node, path)?;
    let mut out = BTreeSet::new();
    let mut ok = true;
    for (i, node) in items.iter().enumerate() {
        let path = path.index(i);
        match item(cx, node, &path) {
            Some(value) => {
                if out.contains(&value) {
                    ok = false;
                    cx.report(
                        node.pos,
                        &path,
                        SpecError::DuplicateItem { value: value.to_string() },
                    );
                } else {
                    out.insert(value);
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn mounts(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<Vec<Mount>> {
    let items = cx.seq(node, path)?;
    let mut out: Vec<Mount> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match mount(cx, item, &path.index(i)) {
            Some(m) => {
                if out.iter().any(|other| other.target == m.target) {
                    ok = false;
                    cx.report(
                        item.pos,
                        &path.index(i).key("target"),
                        SpecError::DuplicateItem { value: m.target.to_string() },
                    );
                } else {
                    out.push(m);
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn mount(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<Mount> {
    let fields = cx.map(node, path, &["kind", "source", "target", "readonly", "size"])?;
    let kind = match fields.get("kind") {
        None => Some(MountWord::Bind),
        Some(n) => cx.choice(n, &fields.field("kind")),
    };
    let source = optional(fields.get("source"), |n| {
        cx.parsed(n, &fields.field("source"), |t| AbsPath::parse(t, "mount source"))
    });
    let target = fields
        .require(cx, "target")
        .and_then(|n| cx.parsed(n, &fields.field("target"), |t| AbsPath::parse(t, "mount target")));
    let readonly = match fields.get("readonly") {
        None => Some(true),
        Some(n) => cx.boolean(n, &fields.field("readonly")),
    };
    let size = optional(fields.get("size"), |n| cx.bytes(n, &fields.field("size")));

    if target.as_ref().is_some_and(AbsPath::is_root) {
        cx.report(
            fields.key_pos("target"),
            &fields.field("target"),
            SpecError::Invalid {
                what: "mount target",
                value: "/".into(),
                reason: "mounting over / is what `rootfs` is for".into(),
            },
        );
        return None;
    }
    let kind = match kind? {
        MountWord::Bind => {
            if fields.has("size") {
                cx.report(
                    fields.key_pos("size"),
                    &fields.field("size"),
                    SpecError::Requires { field: "size", requirement: "`kind: tmpfs`".into() },
                );
                return None;
            }
            if !fields.has("source") {
                cx.report(fields.pos(), path, SpecError::Missing { field: "source" });
                return None;
            }
            MountKind::Bind { source: source?? }
        }
        MountWord::Tmpfs => {
            if fields.has("source") {
                cx.report(
                    fields.key_pos("source"),
                    &fields.field("source"),
                    SpecError::Requires {
                        field: "source",
                        requirement: "`kind: bind`; a tmpfs starts empty".into(),
                    },
                );
                return None;
            }
            MountKind::Tmpfs { size: size? }
        }
    };
    Some(Mount { kind, target: target?, readonly: readonly? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    #[test]
    fn a_full_isolation_section() {
        let iso = ok("isolation:\n  namespaces: [pid, mount, uts, ipc, net, user, cgroup]\n  rootfs: /var/lib/corral/rootfs/alpine\n\
                      \x20 hostname: etl\n  readonly: true\n  mounts:\n    - {source: /srv/data, target: /data}\n\
                      \x20   - {source: /srv/out, target: /out, readonly: false}\n    - {kind: tmpfs, target: /tmp, size: 64Mi}\n\
                      \x20 capabilities: [CAP_NET_BIND_SERVICE]\n")
        .isolation;
        assert_eq!(iso.namespaces.len(), 7);
        assert_eq!(iso.rootfs.unwrap().to_string(), "/var/lib/corral/rootfs/alpine");
        assert_eq!(iso.hostname.unwrap().as_str(), "etl");
        assert!(iso.readonly);
        assert_eq!(iso.mounts.len(), 3);
        assert!(iso.mounts[0].readonly, "mounts are read-only unless they say otherwise");
        assert!(!iso.mounts[1].readonly);
        assert_eq!(iso.mounts[2].kind, MountKind::Tmpfs { size: Some(Bytes(64 << 20)) });
        let caps: Vec<_> = iso.capabilities.iter().map(|c| c.name()).collect();
        assert_eq!(caps, ["CAP_NET_BIND_SERVICE"]);
    }

    #[test]
    fn no_namespaces_at_all_is_allowed() {
        assert!(ok("isolation: {namespaces: []}\n").isolation.namespaces.is_empty());
    }

    #[test]
    fn duplicate_and_unknown_namespaces() {
        assert_eq!(
            error("isolation: {namespaces: [pid, net, pid]}\n"),
            "3 isolation.namespaces[2]: \"pid\" is listed twice"
        );
        assert_eq!(
            error("isolation: {namespaces: [pid, network]}\n"),
            "3 isolation.namespaces[1]: \"network\" is not one of: pid, mount, uts, ipc, net, user, cgroup"
        );
    }

    #[test]
    fn features_need_their_namespace() {
        assert_eq!(
            error("isolation:\n  namespaces: [pid]\n  hostname: x\n"),
            "5 isolation.hostname: `hostname` requires the `uts` namespace in `namespaces`"
        );
        assert_eq!(
            errors("isolation:\n  namespaces: [uts]\n  rootfs: /r\n  readonly: true\n  mounts: [{kind: tmpfs, target: /t}]\n"),
            [
                "5 isolation.rootfs: `rootfs` requires the `mount` namespace in `namespaces`",
                "6 isolation.readonly: `readonly` requires the `mount` namespace in `namespaces`",
                "7 isolation.mounts: `mounts` requires the `mount` namespace in `namespaces`",
            ]
        );
        assert!(ok("isolation: {namespaces: [pid], readonly: false, mounts: []}\n")
            .isolation
            .mounts
            .is_empty());
    }

    #[test]
    fn paths_must_be_absolute_without_parent_components() {
        assert_eq!(
            error("isolation: {rootfs: rootfs/alpine}\n"),
            "3 isolation.rootfs: invalid root filesystem \"rootfs/alpine\": it must be an absolute path, starting with /"
        );
        assert_eq!(
            error("isolation:\n  mounts:\n    - {source: /srv, target: data}\n"),
            "5 isolation.mounts[0].target: invalid mount target \"data\": it must be an absolute path, starting with /"
        );
        assert_eq!(
            error("isolation:\n  mounts:\n    - {source: /srv, target: /data/../etc}\n"),
            "5 isolation.mounts[0].target: invalid mount target \"/data/../etc\": it contains a `..` component"
        );
        assert_eq!(
            error("isolation:\n  mounts:\n    - {source: /srv, target: /}\n"),
            "5 isolation.mounts[0].target: invalid mount target \"/\": mounting over / is what `rootfs` is for"
        );
    }

    #[test]
    fn mount_kinds_and_their_fields() {
        assert_eq!(
            error("isolation:\n  mounts:\n    - {target: /data}\n"),
            "5 isolation.mounts[0]: required field `source` is missing"
        );
        assert_eq!(
            error("isolation:\n  mounts:\n    - {source: /x}\n"),
            "5 isolation.mounts[0]: required field `target` is missing"
        );
        assert_eq!(
            error("isolation:\n  mounts:\n    - {kind: tmpfs, source: /x, target: /t}\n"),
            "5 isolation.mounts[0].source: `source` requires `kind: bind`; a tmpfs starts empty"
        );
        assert_eq!(
            error("isolation:\n  mounts:\n    - {source: /x, target: /t, size: 1Mi}\n"),
            "5 isolation.mounts[0].size: `size` requires `kind: tmpfs`"
        );
        assert_eq!(
            error("isolation:\n  mounts:\n    - {kind: overlay, target: /t}\n"),
            "5 isolation.mounts[0].kind: \"overlay\" is not one of: bind, tmpfs"
        );
        assert_eq!(
            error("isolation:\n  mounts:\n    - {source: /a, target: /t}\n    - {kind: tmpfs, target: /t}\n"),
            "6 isolation.mounts[1].target: \"/t\" is listed twice"
        );
    }

    #[test]
    fn capabilities_are_checked() {
        assert_eq!(
            error("isolation: {capabilities: [NET_ADMIN]}\n"),
            "3 isolation.capabilities[0]: invalid capability \"NET_ADMIN\": did you mean CAP_NET_ADMIN?"
        );
        assert_eq!(
            error("isolation: {capabilities: [CAP_KILL, CAP_KILL]}\n"),
            "3 isolation.capabilities[1]: \"CAP_KILL\" is listed twice"
        );
    }

    #[test]
    fn hostnames() {
        for ok in ["a", "etl-1", "etl.example.com", "A1"] {
            assert!(Hostname::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "a b",
            ".a",
            &"a".repeat(65),
            &format!("{}.b", "a".repeat(64)),
        ] {
            assert!(Hostname::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capabilities_by_name_with_hints() {
        assert_eq!(parse_capability("CAP_CHOWN").map(Capability::number), Ok(0));
        assert_eq!(parse_capability("CAP_NET_ADMIN").map(Capability::number), Ok(12));
        assert_eq!(parse_capability("CAP_CHECKPOINT_RESTORE").map(Capability::number), Ok(40));
        assert_eq!(parse_capability("CAP_SYS_ADMIN").unwrap().to_string(), "CAP_SYS_ADMIN");
        let hint = |t: &str| match parse_capability(t) {
            Err(SpecError::Invalid { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(hint("NET_ADMIN"), "did you mean CAP_NET_ADMIN?");
        assert_eq!(hint("cap_net_admin"), "did you mean CAP_NET_ADMIN?");
        assert_eq!(hint("CAP_FLY"), "not a Linux capability (see capabilities(7))");
    }

    #[test]
    fn defaults_leave_out_user_and_cgroup_namespaces() {
        let iso = Isolation::default();
        assert!(iso.has(Namespace::Pid) && iso.has(Namespace::Net) && iso.has(Namespace::Mount));
        assert!(!iso.has(Namespace::User) && !iso.has(Namespace::Cgroup));
        assert!(iso.capabilities.is_empty());
    }
}
