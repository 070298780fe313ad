//! Which device nodes a job may use, independent of cgroup version: rules in
//! the kernel's device-controller terms (type, major, minor, access), each
//! an allowance; everything no rule allows is denied.

use std::fmt;

/// Block or character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceType {
    Char,
    Block,
}

impl DeviceType {
    /// The letter the v1 controller's files use.
    pub fn letter(self) -> char {
        match self {
            DeviceType::Char => 'c',
            DeviceType::Block => 'b',
        }
    }
}

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl Access {
    pub const RWM: Access = Access { read: true, write: true, mknod: true };
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (set, c) in [(self.read, "r"), (self.write, "w"), (self.mknod, "m")] {
            if set {
                f.write_str(c)?;
            }
        }
        Ok(())
    }
}

/// One allowance. `None` for a number matches any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceRule {
    pub kind: DeviceType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: Access,
}

impl DeviceRule {
    pub const fn node(kind: DeviceType, major: u32, minor: u32, access: Access) -> Self {
        DeviceRule { kind, major: Some(major), minor: Some(minor), access }
    }
}

/// The v1 `devices.allow` line: `c 1:3 rwm`, `*` for any number.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.kind.letter(),
            number(self.major),
            number(self.minor),
            self.access
        )
    }
}

/// The devices every job may use, as numbered in the kernel's
/// `Documentation/admin-guide/devices.txt`: null, zero, full, random,
/// urandom, tty, ptmx and the pseudo-terminals (`/dev/pts/*`, major 136).
/// With `mknod` (`m`), because a container's init makes these in its own
/// `/dev` after it has joined the cgroup. Unlike runc, no blanket `mknod`
/// of other nodes: a job file asks for `m` where it needs it.
pub const SAFE_DEVICES: [DeviceRule; 8] = [
    DeviceRule::node(DeviceType::Char, 1, 3, Access::RWM),
    DeviceRule::node(DeviceType::Char, 1, 5, Access::RWM),
    DeviceRule::node(DeviceType::Char, 1, 7, Access::RWM),
    DeviceRule::node(DeviceType::Char, 1, 8, Access::RWM),
    DeviceRule::node(DeviceType::Char, 1, 9, Access::RWM),
    DeviceRule::node(DeviceType::Char, 5, 0, Access::RWM),
    DeviceRule::node(DeviceType::Char, 5, 2, Access::RWM),
    DeviceRule { kind: DeviceType::Char, major: Some(136), minor: None, access: Access::RWM },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_the_v1_controller_writes_them() {
        let lines: Vec<String> = SAFE_DEVICES.iter().map(ToString::to_string).collect();
        assert_eq!(lines[0], "c 1:3 rwm");
        assert_eq!(lines[7], "c 136:* rwm");
        let any =
            DeviceRule { kind: DeviceType::Char, major: None, minor: None, access: Access::RWM };
        assert_eq!(any.to_string(), "c *:* rwm");
        let read_only = Access { read: true, write: false, mknod: false };
        assert_eq!(DeviceRule::node(DeviceType::Block, 254, 0, read_only).to_string(), "b 254:0 r");
    }
}
