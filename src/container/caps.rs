//! Linux capabilities: names, and dropping them before the job runs.
//!
//! The job gets no capabilities unless it runs as uid 0 and the config lists
//! some. The bounding set is cut to that list too, which matters for root:
//! on `execve` a uid-0 process gets its whole bounding set as permitted, so
//! the bounding set, not the current sets, is what really limits it.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use nix::errno::Errno;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// The table is the job spec's (pure); the container maps it onto the kernel.
use crate::vocab::CAPABILITY_NAMES as NAMES;

/// A capability by its kernel number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}")]
pub struct UnknownCapability(pub String);

impl Capability {
    pub const NET_BIND_SERVICE: Capability = Capability(10);
    pub const SYS_ADMIN: Capability = Capability(21);

    pub fn number(self) -> u8 {
        self.0
    }

    /// The capability with kernel number `n`, if it has a name here.
    pub fn from_number(n: u8) -> Option<Capability> {
        (usize::from(n) < NAMES.len()).then_some(Capability(n))
    }
}

/// Accepts `CAP_NET_ADMIN`, `net_admin` and any case in between.
impl FromStr for Capability {
    type Err = UnknownCapability;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
        NAMES
            .iter()
            .position(|name| *name == full)
            .map(|i| Capability(i as u8))
            .ok_or_else(|| UnknownCapability(s.to_owned()))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAMES[usize::from(self.0)])
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

/// The 64-bit mask the kernel uses for a set of capabilities.
pub fn mask(caps: &BTreeSet<Capability>) -> u64 {
    caps.iter().fold(0, |m, c| m | 1 << c.0)
}

/// Removes every capability not in `keep` from the bounding set. Needs
/// `CAP_SETPCAP`, so it runs before the uid change.
pub fn drop_bounding_set(keep: &BTreeSet<Capability>) -> Result<(), Errno> {
    let keep = mask(keep);
    // The kernel may know more capabilities than NAMES; walk until it says
    // EINVAL (past CAP_LAST_CAP) instead of trusting the table.
    for cap in 0..64u64 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes one integer argument and touches no
        // memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            match Errno::last() {
                Errno::EINVAL => break,
                errno => return Err(errno),
            }
        }
    }
    Ok(())
}

/// Empties the ambient set, so nothing is carried across `execve` that way.
pub fn clear_ambient() -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes only integer arguments.
    let rc = unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
    };
    Errno::result(rc).map(drop)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets effective and permitted to `keep` and inheritable to nothing, for
/// the calling thread. Only ever shrinks: the kernel refuses to add to
/// permitted.
pub fn set_current(keep: &BTreeSet<Capability>) -> Result<(), Errno> {
    let bits = mask(keep);
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let half = |shift: u32| CapData {
        effective: (bits >> shift) as u32,
        permitted: (bits >> shift) as u32,
        inheritable: 0,
    };
    let data = [half(0), half(32)];
    // SAFETY: capset reads one header and, for version 3, two data structs;
    // both live on this stack frame for the whole call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    Errno::result(rc).map(drop)
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
        for i in 0..NAMES.len() {
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
    fn mask_sets_one_bit_per_capability() {
        let caps: BTreeSet<_> = [Capability::NET_BIND_SERVICE, Capability::SYS_ADMIN].into();
        assert_eq!(mask(&caps), (1 << 10) | (1 << 21));
        assert_eq!(mask(&BTreeSet::new()), 0);
    }
}
