//! Device nodes a job lists (`isolation.devices`), made in a rootfs's
//! `/dev`, which starts as an empty tmpfs holding only the safe set.
//!
//! A node is made with the host node's type and numbers, mode 0666 like
//! the safe set's: who may open it is the device cgroup's list, which
//! allows exactly the access the job file gave.

use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use serde::{Deserialize, Serialize};

use super::inroot::{Kind, ResolveError, Root};

/// One node to make inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// Where, as the job sees it: below `/dev`.
    pub path: PathBuf,
    pub block: bool,
    pub major: u64,
    pub minor: u64,
}

/// Makes `node` in the current root, with the directories above it (inside
/// the `/dev` tmpfs). A node already there (one of the safe set) is left.
pub fn make(root: &Root, node: &DeviceNode) -> Result<(), Errno> {
    let (Some(dir), Some(name)) = (node.path.parent(), node.path.file_name()) else {
        return Err(Errno::EINVAL);
    };
    let dir = root.make(dir, Kind::Dir, true).map_err(|e| match e {
        ResolveError::Missing { .. } => Errno::ENOENT,
        ResolveError::Os { errno, .. } => errno,
    })?;
    let kind = if node.block { SFlag::S_IFBLK } else { SFlag::S_IFCHR };
    match mknodat(
        dir.as_fd(),
        name,
        kind,
        Mode::from_bits_truncate(0o666),
        makedev(node.major, node.minor),
    ) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(errno) => Err(errno),
    }
}
