//! Linux capabilities, by kernel number and by name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Capability names by kernel number, 0..=40 (`include/uapi/linux/capability.h`,
/// Linux 5.9+): the one list both the job files and the container use.
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A Linux capability, by its kernel number; only numbers with a name in
/// [`CAPABILITY_NAMES`] exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}")]
pub struct UnknownCapability(pub String);

impl Capability {
    pub const NET_BIND_SERVICE: Capability = Capability(10);
    pub const SYS_ADMIN: Capability = Capability(21);

    /// The number `capset(2)` and the bounding-set `prctl`s take.
    pub fn number(self) -> u8 {
        self.0
    }

    /// The capability with kernel number `n`, if it has a name here.
    pub fn from_number(n: u8) -> Option<Capability> {
        (usize::from(n) < CAPABILITY_NAMES.len()).then_some(Capability(n))
    }

    /// The capability spelt exactly `name` (`CAP_NET_ADMIN`).
    pub fn from_name(name: &str) -> Option<Capability> {
        CAPABILITY_NAMES.iter().position(|c| *c == name).map(|n| Capability(n as u8))
    }

    pub fn name(self) -> &'static str {
        CAPABILITY_NAMES[usize::from(self.0)]
    }
}

/// Accepts `CAP_NET_ADMIN`, `net_admin` and any case in between.
impl FromStr for Capability {
    type Err = UnknownCapability;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
        Capability::from_name(&full).ok_or_else(|| UnknownCapability(s.to_owned()))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_in_any_spelling() {
        assert_eq!("CAP_NET_BIND_SERVICE".parse(), Ok(Capability::NET_BIND_SERVICE));
        assert_eq!("net_bind_service".parse(), Ok(Capability::NET_BIND_SERVICE));
        assert_eq!("Cap_Sys_Admin".parse(), Ok(Capability::SYS_ADMIN));
        assert_eq!("CAP_FLY".parse::<Capability>(), Err(UnknownCapability("CAP_FLY".into())));
    }

    #[test]
    fn every_name_round_trips() {
        for i in 0..CAPABILITY_NAMES.len() {
            let cap = Capability(i as u8);
            assert_eq!(cap.to_string().parse(), Ok(cap));
        }
        assert_eq!(Capability(40).to_string(), "CAP_CHECKPOINT_RESTORE");
    }

    #[test]
    fn from_number_knows_the_named_ones_only() {
        assert_eq!(Capability::from_number(10), Some(Capability::NET_BIND_SERVICE));
        assert_eq!(Capability::from_number(40), Some(Capability(40)));
        assert_eq!(Capability::from_number(41), None);
    }

    #[test]
    fn from_name_takes_the_kernel_spelling_only() {
        assert_eq!(Capability::from_name("CAP_SYS_ADMIN"), Some(Capability::SYS_ADMIN));
        assert_eq!(Capability::from_name("SYS_ADMIN"), None);
        assert_eq!(Capability::from_name("cap_sys_admin"), None);
    }

    #[test]
    fn serialized_by_name() {
        let json = serde_json::to_string(&Capability::NET_BIND_SERVICE).unwrap();
        assert_eq!(json, "\"CAP_NET_BIND_SERVICE\"");
        assert_eq!(
            serde_json::from_str::<Capability>(&json).unwrap(),
            Capability::NET_BIND_SERVICE
        );
    }
}
