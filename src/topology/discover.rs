//! Reads the topology from a sysfs tree and the agent's limits from procfs.
//!
//! The only part of the module that does I/O. Both roots are parameters so the
//! same code reads `/sys` and `/proc` in production and the fake trees under
//! `tests/fixtures/sysfs` in tests.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::cpuset::{CpuId, CpuSet, IdList, ListId, NodeId};
use super::error::{ParseError, TopologyError};
use super::model::{CoreId, CpuInfo, NodeInfo, PackageId, Topology};
use super::parse::{self, MemInfo};
use crate::vocab::Bytes;

pub const DEFAULT_SYSFS: &str = "/sys";
pub const DEFAULT_PROCFS: &str = "/proc";

/// Distance of a node to itself in the ACPI SLIT convention; used for the
/// single node of a kernel without NUMA support.
const LOCAL_DISTANCE: u32 = 10;

/// Reads the machine's topology from `sysfs` (normally `/sys`) and the agent's
/// allowed CPUs and memory nodes from `procfs` (normally `/proc`,
/// `self/status`).
///
/// `allowed_cpus` is the affinity the agent was started with. An agent that
/// later moves itself into a narrower cpuset (the shared pool) reads a
/// narrower list, so discovery belongs at start-up, before that move.
pub fn discover(sysfs: &Path, procfs: &Path) -> Result<Topology, TopologyError> {
    let cpu_dir = sysfs.join("devices/system/cpu");
    let online = read_list::<CpuId>(&cpu_dir.join("online"))?;
    // Older kernels have no `offline` file: what is present but not online is.
    let offline = match read_optional_list(&cpu_dir.join("offline"))? {
        Some(offline) => offline,
        None => read_optional_list(&cpu_dir.join("present"))?.unwrap_or_default(),
    }
    .difference(&online);

    let mut placed = BTreeMap::new();
    for cpu in online.iter() {
        placed.insert(cpu, read_cpu(&cpu_dir.join(format!("cpu{}", cpu.0)), &online)?);
    }

    let node_dir = sysfs.join("devices/system/node");
    let nodes = if node_dir.is_dir() {
        let mut nodes = read_nodes(&node_dir, &online)?;
        correct_single_memory_node(&mut nodes, procfs)?;
        nodes
    } else {
        // A kernel without CONFIG_NUMA has no node directory: one node holds
        // every CPU and all memory.
        let path = procfs.join("meminfo");
        let memory = parse_with(&path, parse::parse_meminfo)?;
        BTreeMap::from([(
            NodeId(0),
            NodeInfo {
                cpus: online.clone(),
                memory_total: memory.total,
                memory_free: memory.free,
                distances: BTreeMap::from([(NodeId(0), LOCAL_DISTANCE)]),
            },
        )])
    };

    let mut cpus = BTreeMap::new();
    for (cpu, (core, package, siblings)) in placed {
        let mut homes = nodes.iter().filter(|(_, n)| n.cpus.contains(cpu)).map(|(&id, _)| id);
        let node = match (homes.next(), homes.next()) {
            (Some(node), None) => node,
            (None, _) => {
                return Err(TopologyError::Inconsistent {
                    reason: format!(
                        "{cpu} is online but no cpulist under {} has it",
                        node_dir.display()
                    ),
                })
            }
            (Some(a), Some(b)) => {
                return Err(TopologyError::Inconsistent {
                    reason: format!(
                        "{cpu} is in the cpulist of both {a} and {b} under {}",
                        node_dir.display()
                    ),
                })
            }
        };
        cpus.insert(cpu, CpuInfo { core, package, node, siblings });
    }

    let status = procfs.join("self/status");
    let (allowed_cpus, allowed_mems) = parse_with(&status, parse::parse_status_allowed)?;
    Topology::new(cpus, offline, nodes, allowed_cpus, allowed_mems)
}

/// Core id, package id and online SMT siblings of one online CPU.
fn read_cpu(dir: &Path, online: &CpuSet) -> Result<(CoreId, PackageId, CpuSet), TopologyError> {
    let topo = dir.join("topology");
    let core = parse_with(&topo.join("core_id"), |t| parse::parse_id(t, "core_id"))?;
    let package =
        parse_with(&topo.join("physical_package_id"), |t| parse::parse_id(t, "package id"))?;
    // core_cpus_list is the Linux 5.x name; older kernels only have
    // thread_siblings_list, with the same content.
    let siblings = match read_optional_list(&topo.join("core_cpus_list"))? {
        Some(siblings) => siblings,
        None => read_list(&topo.join("thread_siblings_list"))?,
    };
    Ok((CoreId(core), PackageId(package), siblings.intersection(online)))
}

fn read_nodes(dir: &Path, online: &CpuSet) -> Result<BTreeMap<NodeId, NodeInfo>, TopologyError> {
    let ids: Vec<NodeId> = match read_optional_list::<NodeId>(&dir.join("online"))? {
        Some(online) => online.iter().collect(),
        None => node_dirs(dir)?,
    };
    let mut nodes = BTreeMap::new();
    for &id in &ids {
        let node = dir.join(format!("node{}", id.0));
        // x86 removes offline CPUs from the node mask but not every
        // architecture does; only online CPUs are placed.
        let cpus = read_list::<CpuId>(&node.join("cpulist"))?.intersection(online);
        let meminfo = node.join("meminfo");
        let memory: MemInfo = parse_with(&meminfo, |t| parse::parse_node_meminfo(t, id.0))?;
        let distance = node.join("distance");
        let row = parse_with(&distance, parse::parse_distances)?;
        // The row has one entry per online node, in node order.
        if row.len() != ids.len() {
            return Err(TopologyError::Inconsistent {
                reason: format!(
                    "{} has {} entries for {} online nodes",
                    distance.display(),
                    row.len(),
                    ids.len()
                ),
            });
        }
        let distances = ids.iter().copied().zip(row).collect();
        nodes.insert(
            id,
            NodeInfo { cpus, memory_total: memory.total, memory_free: memory.free, distances },
        );
    }
    Ok(nodes)
}

/// `nodeN` entries of the node directory, for kernels without `node/online`.
fn node_dirs(dir: &Path) -> Result<Vec<NodeId>, TopologyError> {
    let read_err = |source| TopologyError::Read { path: dir.to_owned(), source };
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let name = entry.map_err(read_err)?.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_prefix("node")) {
            if let Ok(n) = n.parse() {
                ids.push(NodeId(n));
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// With deferred struct-page initialisation (`deferred_init=lazy` on some VM
/// kernels) a node's MemTotal counts only the pages initialised so far, while
/// /proc/meminfo counts all of them: the development VM reports 7.6 GiB in
/// node0/meminfo and 23.5 GiB in /proc/meminfo. When one node holds all the
/// memory, the larger figures are the true ones. With several memory nodes
/// there is no way to split the difference, so their own figures stand.
fn correct_single_memory_node(
    nodes: &mut BTreeMap<NodeId, NodeInfo>,
    procfs: &Path,
) -> Result<(), TopologyError> {
    let mut with_memory = nodes.values_mut().filter(|n| n.memory_total > Bytes::ZERO);
    let (Some(node), None) = (with_memory.next(), with_memory.next()) else {
        return Ok(());
    };
    let path = procfs.join("meminfo");
    let Some(text) = read_optional(&path)? else { return Ok(()) };
    let system = parse::parse_meminfo(&text)
        .map_err(|source| TopologyError::Parse { path: path.clone(), source })?;
    node.memory_total = node.memory_total.max(system.total);
    node.memory_free = node.memory_free.max(system.free);
    Ok(())
}

fn read(path: &Path) -> Result<String, TopologyError> {
    std::fs::read_to_string(path)
        .map_err(|source| TopologyError::Read { path: path.to_owned(), source })
}

fn read_optional(path: &Path) -> Result<Option<String>, TopologyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TopologyError::Read { path: path.to_owned(), source }),
    }
}

fn parse_with<T>(
    path: &Path,
    parser: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, TopologyError> {
    let text = read(path)?;
    parser(&text).map_err(|source| TopologyError::Parse { path: PathBuf::from(path), source })
}

fn parse_list<T: ListId>(path: &Path, text: &str) -> Result<IdList<T>, TopologyError> {
    IdList::parse(text)
        .map_err(|err| TopologyError::Parse { path: path.to_owned(), source: err.into() })
}

fn read_list<T: ListId>(path: &Path) -> Result<IdList<T>, TopologyError> {
    parse_list(path, &read(path)?)
}

/// A list file that older kernels or some architectures do not have.
fn read_optional_list<T: ListId>(path: &Path) -> Result<Option<IdList<T>>, TopologyError> {
    read_optional(path)?.map(|text| parse_list(path, &text)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal tree in a temp dir, for the error paths; the full machines
    /// are tested in tests/topology_fixtures.rs.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const ONE_CPU: &[(&str, &str)] = &[
        ("sys/devices/system/cpu/online", "0\n"),
        ("sys/devices/system/cpu/cpu0/topology/core_id", "0\n"),
        ("sys/devices/system/cpu/cpu0/topology/physical_package_id", "0\n"),
        ("sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "0\n"),
        ("proc/meminfo", "MemTotal: 1024 kB\nMemFree: 512 kB\n"),
        ("proc/self/status", "Cpus_allowed_list:\t0\nMems_allowed_list:\t0\n"),
    ];

    fn discover_in(dir: &tempfile::TempDir) -> Result<Topology, TopologyError> {
        discover(&dir.path().join("sys"), &dir.path().join("proc"))
    }

    #[test]
    fn minimal_non_numa_tree() {
        let dir = tree(ONE_CPU);
        let topo = discover_in(&dir).unwrap();
        assert_eq!(topo.online_cpus().to_string(), "0");
        assert_eq!(topo.node(NodeId(0)).unwrap().memory_total, Bytes::from_kib(1024));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tree(&ONE_CPU[..3]);
        let err = discover_in(&dir).unwrap_err();
        assert!(
            matches!(&err, TopologyError::Read { path, .. } if path.ends_with("thread_siblings_list")),
            "{err}"
        );

        let mut files = ONE_CPU.to_vec();
        files[1] = ("sys/devices/system/cpu/cpu0/topology/core_id", "zero\n");
        let err = discover_in(&tree(&files)).unwrap_err();
        assert!(
            matches!(&err, TopologyError::Parse { path, .. } if path.ends_with("core_id")),
            "{err}"
        );
        assert!(err.to_string().contains("core_id"), "{err}");
    }

    #[test]
    fn distance_rows_must_cover_every_node() {
        let mut files = ONE_CPU.to_vec();
        files.extend([
            ("sys/devices/system/node/online", "0-1\n"),
            ("sys/devices/system/node/node0/cpulist", "0\n"),
            (
                "sys/devices/system/node/node0/meminfo",
                "Node 0 MemTotal: 1 kB\nNode 0 MemFree: 1 kB\n",
            ),
            ("sys/devices/system/node/node0/distance", "10\n"),
        ]);
        let err = discover_in(&tree(&files)).unwrap_err();
        assert!(err.to_string().contains("1 entries for 2 online nodes"), "{err}");
    }

    #[test]
    fn a_cpu_in_no_node_is_an_error() {
        let mut files = ONE_CPU.to_vec();
        files.extend([
            ("sys/devices/system/node/online", "0\n"),
            ("sys/devices/system/node/node0/cpulist", "\n"),
            (
                "sys/devices/system/node/node0/meminfo",
                "Node 0 MemTotal: 1 kB\nNode 0 MemFree: 1 kB\n",
            ),
            ("sys/devices/system/node/node0/distance", "10\n"),
        ]);
        let err = discover_in(&tree(&files)).unwrap_err();
        assert!(err.to_string().contains("cpu0 is online but no cpulist"), "{err}");
    }
}
