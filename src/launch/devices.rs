//! Device paths of a job file made into device numbers, and the job's
//! device rules and I/O throttles in the cgroup layer's terms.
//!
//! [`DeviceNumbers::resolve`] is the one place that reads the host: it
//! stats every device path the job names (`resources.io` and
//! `isolation.devices`), so that a path that is missing or not a device
//! refuses the run with its reason, at plan time, before anything is made.
//! The mapping ([`io_resources`], [`device_rules`]) is pure.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::LaunchError;
use crate::cgroup::{DeviceAccess, DeviceRule, DeviceType, IoResources, IoThrottle, SAFE_DEVICES};
use crate::spec::{BlockDevice, JobSpec};

/// A device node on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceNode {
    pub kind: DeviceType,
    pub major: u32,
    pub minor: u32,
}

/// The nodes behind the device paths of one job, by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceNumbers(BTreeMap<PathBuf, DeviceNode>);

/// For plans made without looking at the host (a job that names no device
/// path needs nothing from it).
pub static NO_DEVICES: DeviceNumbers = DeviceNumbers(BTreeMap::new());

impl DeviceNumbers {
    /// Stats every device path `spec` names.
    pub fn resolve(spec: &JobSpec) -> Result<DeviceNumbers, LaunchError> {
        let mut numbers = BTreeMap::new();
        for path in paths(spec) {
            let node = stat(path).map_err(|reason| LaunchError::Device {
                job: spec.name.to_string(),
                path: path.to_path_buf(),
                reason,
            })?;
            numbers.insert(path.to_path_buf(), node);
        }
        Ok(DeviceNumbers(numbers))
    }

    pub fn from_nodes(nodes: impl IntoIterator<Item = (PathBuf, DeviceNode)>) -> DeviceNumbers {
        DeviceNumbers(nodes.into_iter().collect())
    }

    pub fn get(&self, path: &Path) -> Option<DeviceNode> {
        self.0.get(path).copied()
    }

    /// Checks that every path of `spec` is here and of the right kind: an
    /// I/O limit needs a block device. Every problem is in the error.
    pub fn check(&self, spec: &JobSpec) -> Result<(), LaunchError> {
        let problem = |path: &Path, reason: &str| LaunchError::Device {
            job: spec.name.to_string(),
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        for limit in &spec.resources.io.devices {
            if let BlockDevice::Path(path) = &limit.device {
                match self.get(path.as_path()) {
                    None => {
                        return Err(problem(path.as_path(), "it was not looked up on the host"))
                    }
                    Some(node) if node.kind != DeviceType::Block => {
                        return Err(problem(
                            path.as_path(),
                            "it is a character device; I/O limits apply to block devices",
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        for device in &spec.isolation.devices {
            if self.get(device.path.as_path()).is_none() {
                return Err(problem(device.path.as_path(), "it was not looked up on the host"));
            }
        }
        Ok(())
    }
}

fn paths(spec: &JobSpec) -> impl Iterator<Item = &Path> {
    let io = spec.resources.io.devices.iter().filter_map(|l| match &l.device {
        BlockDevice::Path(path) => Some(path.as_path()),
        BlockDevice::Number { .. } => None,
    });
    io.chain(spec.isolation.devices.iter().map(|d| d.path.as_path()))
}

fn stat(path: &Path) -> Result<DeviceNode, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such device on this host".to_owned(),
        _ => format!("cannot read it: {e}"),
    })?;
    let kind = if meta.file_type().is_block_device() {
        DeviceType::Block
    } else if meta.file_type().is_char_device() {
        DeviceType::Char
    } else {
        return Err("it is not a device node".to_owned());
    };
    let rdev = meta.rdev();
    Ok(DeviceNode { kind, major: libc::major(rdev), minor: libc::minor(rdev) })
}

/// The job's I/O weight and throttles, devices by number. A path missing
/// from `numbers` is left out; [`DeviceNumbers::check`] refuses such a plan.
pub fn io_resources(spec: &JobSpec, numbers: &DeviceNumbers) -> IoResources {
    let io = &spec.resources.io;
    let throttles = io
        .devices
        .iter()
        .filter_map(|limit| {
            let (major, minor) = match &limit.device {
                BlockDevice::Number { major, minor } => (*major, *minor),
                BlockDevice::Path(path) => {
                    let node = numbers.get(path.as_path())?;
                    (node.major, node.minor)
                }
            };
            Some(IoThrottle {
                major,
                minor,
                read_bps: limit.read_bps.map(|b| b.get()),
                write_bps: limit.write_bps.map(|b| b.get()),
                read_iops: limit.read_iops,
                write_iops: limit.write_iops,
            })
        })
        .collect();
    IoResources { weight: io.weight, throttles }
}

/// The safe set every job gets, then the job's own devices. With a rootfs,
/// a listed device also gets `m`: the container makes its node in the
/// rootfs's `/dev` after joining the cgroup.
pub fn device_rules(spec: &JobSpec, numbers: &DeviceNumbers) -> Vec<DeviceRule> {
    let mut rules = SAFE_DEVICES.to_vec();
    let rootfs = spec.isolation.rootfs.is_some();
    for device in &spec.isolation.devices {
        let Some(node) = numbers.get(device.path.as_path()) else { continue };
        let access = DeviceAccess {
            read: device.access.read,
            write: device.access.write,
            mknod: device.access.mknod || rootfs,
        };
        rules.push(DeviceRule::node(node.kind, node.major, node.minor, access));
    }
    rules
}

/// The nodes a rootfs's `/dev` gets besides the safe set: the job's listed
/// devices, as the host has them. None without a rootfs, where the job
/// sees the host's `/dev`.
pub fn rootfs_nodes(
    spec: &JobSpec,
    numbers: &DeviceNumbers,
) -> Vec<crate::container::devices::DeviceNode> {
    if spec.isolation.rootfs.is_none() {
        return Vec::new();
    }
    spec.isolation
        .devices
        .iter()
        .filter_map(|device| {
            let node = numbers.get(device.path.as_path())?;
            Some(crate::container::devices::DeviceNode {
                path: device.path.as_path().to_path_buf(),
                block: node.kind == DeviceType::Block,
                major: node.major.into(),
                minor: node.minor.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> JobSpec {
        let text = format!("name: t\ncommand: [/bin/true]\n{extra}");
        crate::spec::compile_str(Path::new("t.yaml"), &text).unwrap().remove(0).spec
    }

    #[test]
    fn host_nodes_resolve_and_others_refuse_with_the_reason() {
        let job = spec("isolation: {devices: [{path: /dev/null, access: r}]}\n");
        let numbers = DeviceNumbers::resolve(&job).unwrap();
        assert_eq!(
            numbers.get(Path::new("/dev/null")),
            Some(DeviceNode { kind: DeviceType::Char, major: 1, minor: 3 })
        );
        numbers.check(&job).unwrap();
        let rules = device_rules(&job, &numbers);
        assert_eq!(rules.len(), SAFE_DEVICES.len() + 1);
        assert_eq!(rules.last().unwrap().to_string(), "c 1:3 r");

        let missing = spec("isolation: {devices: [{path: /dev/no-such-device}]}\n");
        let err = DeviceNumbers::resolve(&missing).unwrap_err().to_string();
        assert_eq!(err, "job t: device /dev/no-such-device: no such device on this host");
        let not_a_device = spec("isolation: {devices: [{path: /dev/shm}]}\n");
        let err = DeviceNumbers::resolve(&not_a_device).unwrap_err().to_string();
        assert!(err.ends_with("it is not a device node"), "{err}");
    }

    #[test]
    fn io_limits_need_block_devices_and_map_to_numbers() {
        let job = spec("resources: {io: {weight: 300, limits: [{device: /dev/null, write_bps: 1Mi}, {device: '8:16', read_iops: 10}]}}\n");
        let numbers = DeviceNumbers::resolve(&job).unwrap();
        let err = numbers.check(&job).unwrap_err().to_string();
        assert!(err.contains("it is a character device"), "{err}");
        let block = DeviceNode { kind: DeviceType::Block, major: 254, minor: 0 };
        let numbers = DeviceNumbers::from_nodes([(PathBuf::from("/dev/null"), block)]);
        numbers.check(&job).unwrap();
        let io = io_resources(&job, &numbers);
        assert_eq!(io.weight, Some(300));
        assert_eq!(
            io.throttles,
            [
                IoThrottle { major: 254, minor: 0, write_bps: Some(1 << 20), ..Default::default() },
                IoThrottle { major: 8, minor: 16, read_iops: Some(10), ..Default::default() },
            ]
        );
        assert!(NO_DEVICES.check(&job).is_err(), "a plan without the lookup is refused");
    }

    #[test]
    fn a_rootfs_job_may_make_its_listed_nodes() {
        let job =
            spec("isolation: {rootfs: /var/tmp/r, devices: [{path: /dev/null, access: r}]}\n");
        let numbers = DeviceNumbers::resolve(&job).unwrap();
        assert_eq!(device_rules(&job, &numbers).last().unwrap().to_string(), "c 1:3 rm");
        let nodes = rootfs_nodes(&job, &numbers);
        assert_eq!(nodes.len(), 1);
        assert_eq!(
            (nodes[0].path.as_path(), nodes[0].block, nodes[0].major, nodes[0].minor),
            (Path::new("/dev/null"), false, 1, 3)
        );
        let hosted = spec("isolation: {devices: [{path: /dev/null}]}\n");
        assert!(rootfs_nodes(&hosted, &DeviceNumbers::resolve(&hosted).unwrap()).is_empty());
    }
}
