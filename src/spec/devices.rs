//! `isolation.devices`: the device nodes a job may use beyond the safe set every job gets.
//!
//! Whether a path is a device node, and which, is a fact of the host: the launch layer
//! reads it there. The compiler checks the paths' shape, the access words and repeats.

use std::fmt;

use super::check::Checker;
use super::error::{FieldPath, SpecError};
use super::paths::AbsPath;
use super::tree::Node;

/// What a job may do with a device node, as the kernel's device controller words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAccess {
    pub read: bool,
    pub write: bool,
    /// Create the node (`mknod`).
    pub mknod: bool,
}

impl DeviceAccess {
    pub const ALL: DeviceAccess = DeviceAccess { read: true, write: true, mknod: true };

    pub fn parse(text: &str) -> Result<DeviceAccess, SpecError> {
        let invalid = |reason: &str| SpecError::Invalid {
            what: "device access",
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("it is empty; write r, w, m or a combination such as rw"));
        }
        let mut access = DeviceAccess { read: false, write: false, mknod: false };
        for c in text.chars() {
            let flag = match c {
                'r' => &mut access.read,
                'w' => &mut access.write,
                'm' => &mut access.mknod,
                _ => return Err(invalid("only r (read), w (write) and m (mknod) are allowed")),
            };
            if *flag {
                return Err(invalid("a letter is repeated"));
            }
            *flag = true;
        }
        Ok(access)
    }
}

impl fmt::Display for DeviceAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (set, c) in [(self.read, "r"), (self.write, "w"), (self.mknod, "m")] {
            if set {
                f.write_str(c)?;
            }
        }
        Ok(())
    }
}

/// One device node a job may use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceAllow {
    /// The node on the host, under `/dev`.
    pub path: AbsPath,
    pub access: DeviceAccess,
}

pub(super) fn compile(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<Vec<DeviceAllow>> {
    let items = cx.seq(node, path)?;
    let mut out: Vec<DeviceAllow> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = path.index(i);
        match device(cx, item, &path) {
            Some(device) if out.iter().any(|other| other.path == device.path) => {
                ok = false;
                cx.report(
                    item.pos,
                    &path.key("path"),
                    SpecError::DuplicateItem { value: device.path.to_string() },
                );
            }
            Some(device) => out.push(device),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn device(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<DeviceAllow> {
    let fields = cx.map(node, path, &["path", "access"])?;
    let device_path = fields.require(cx, "path").and_then(|n| {
        cx.parsed(n, &fields.field("path"), |text| {
            let path = AbsPath::parse(text, "device path")?;
            // Device nodes live under /dev; anything else is a mistake (a file, a
            // mount target) that would fail at launch for a less clear reason.
            if !path.as_path().starts_with("/dev") || path.as_path() == std::path::Path::new("/dev")
            {
                return Err(SpecError::Invalid {
                    what: "device path",
                    value: text.to_owned(),
                    reason: "device nodes are under /dev".into(),
                });
            }
            Ok(path)
        })
    });
    let access = match fields.get("access") {
        None => Some(DeviceAccess { read: true, write: true, mknod: false }),
        Some(n) => cx.parsed(n, &fields.field("access"), DeviceAccess::parse),
    };
    Some(DeviceAllow { path: device_path?, access: access? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    fn access(text: &str) -> DeviceAccess {
        DeviceAccess::parse(text).unwrap()
    }

    #[test]
    fn paths_with_access() {
        let devices = ok("isolation:\n  devices:\n    - {path: /dev/fuse, access: rw}\n    - {path: /dev/net/tun, access: r}\n    - {path: /dev/kvm}\n")
            .isolation
            .devices;
        let names: Vec<String> =
            devices.iter().map(|d| format!("{} {}", d.path, d.access)).collect();
        assert_eq!(names, ["/dev/fuse rw", "/dev/net/tun r", "/dev/kvm rw"]);
        assert!(ok("isolation: {}\n").isolation.devices.is_empty());
    }

    #[test]
    fn access_words() {
        assert_eq!(access("mwr"), DeviceAccess::ALL);
        assert_eq!(access("m").to_string(), "m");
        assert_eq!(access("wr").to_string(), "rw");
        for bad in ["", "x", "rr", "rwmx", "R"] {
            assert!(DeviceAccess::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        assert_eq!(
            errors("isolation:\n  devices:\n    - {path: /etc/passwd}\n    - {path: /dev/fuse, access: rwx}\n    - {path: /dev/fuse}\n    - {path: /dev/fuse}\n    - {access: r}\n"),
            [
                "5 isolation.devices[0].path: invalid device path \"/etc/passwd\": device nodes \
                 are under /dev",
                "6 isolation.devices[1].access: invalid device access \"rwx\": only r (read), \
                 w (write) and m (mknod) are allowed",
                "8 isolation.devices[3].path: \"/dev/fuse\" is listed twice",
                "9 isolation.devices[4]: required field `path` is missing",
            ]
        );
        assert_eq!(
            error("isolation: {devices: [{path: /dev}]}\n"),
            "3 isolation.devices[0].path: invalid device path \"/dev\": device nodes are under /dev"
        );
    }
}
