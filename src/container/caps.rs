//! Linux capabilities: dropping them before the job runs.
//!
//! The job gets no capabilities unless it runs as uid 0 and the config lists
//! some. The bounding set is cut to that list too, which matters for root:
//! on `execve` a uid-0 process gets its whole bounding set as permitted, so
//! the bounding set, not the current sets, is what really limits it.

use std::collections::BTreeSet;

use nix::errno::Errno;

use crate::vocab::Capability;

/// The 64-bit mask the kernel uses for a set of capabilities.
pub fn mask(caps: &BTreeSet<Capability>) -> u64 {
    caps.iter().fold(0, |m, c| m | 1 << c.number())
}

/// Removes every capability not in `keep` from the bounding set. Needs
/// `CAP_SETPCAP`, so it runs before the uid change.
pub fn drop_bounding_set(keep: &BTreeSet<Capability>) -> Result<(), Errno> {
    let keep = mask(keep);
    // The kernel may know more capabilities than the names table; walk until it says
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
    fn mask_sets_one_bit_per_capability() {
        let caps: BTreeSet<_> = [Capability::NET_BIND_SERVICE, Capability::SYS_ADMIN].into();
        assert_eq!(mask(&caps), (1 << 10) | (1 << 21));
        assert_eq!(mask(&BTreeSet::new()), 0);
    }
}
