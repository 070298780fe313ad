//! The uids and gids in use on the machine, read from an `/etc` and a
//! procfs root handed in (the real ones in the agent, fake trees in tests).

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::error::DynamicUserError;
use crate::container::passwd;
use crate::spec::UidRange;

/// Where the host's account files and procfs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoots {
    /// Holds `passwd` and `group`.
    pub etc: PathBuf,
    pub proc: PathBuf,
}

impl Default for HostRoots {
    fn default() -> HostRoots {
        HostRoots { etc: PathBuf::from("/etc"), proc: PathBuf::from("/proc") }
    }
}

/// Ids a dynamic uid must not be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIds {
    /// Uids of `passwd` entries and gids of `group` entries (a job's gid is
    /// its uid's number, so a group of that number would be joined), each
    /// with what it is, for the warning about accounts in the range.
    pub accounts: BTreeMap<u32, String>,
    /// Every uid and gid some process has, real, effective, saved or
    /// filesystem.
    pub processes: BTreeSet<u32>,
}

impl HostIds {
    pub fn read(roots: &HostRoots) -> Result<HostIds, DynamicUserError> {
        let mut ids = HostIds::default();
        let users = read_optional(&roots.etc.join("passwd"))?;
        for entry in passwd::parse_passwd(&users) {
            ids.accounts.entry(entry.uid).or_insert(format!("user {}", entry.name));
        }
        let groups = read_optional(&roots.etc.join("group"))?;
        for entry in passwd::parse_group(&groups) {
            ids.accounts.entry(entry.gid).or_insert(format!("group {}", entry.name));
        }
        ids.processes = process_ids(&roots.proc)?;
        Ok(ids)
    }

    /// Whether `id` may not be handed out.
    pub fn in_use(&self, id: u32) -> bool {
        self.accounts.contains_key(&id) || self.processes.contains(&id)
    }

    /// Host accounts and groups whose number is in `range`: they are
    /// skipped, and the agent says so at start.
    pub fn accounts_in(&self, range: UidRange) -> Vec<(u32, &str)> {
        self.accounts
            .range(range.first()..=range.last())
            .map(|(id, what)| (*id, what.as_str()))
            .collect()
    }
}

/// A missing file holds no accounts (a minimal host may have no `group`).
fn read_optional(path: &Path) -> Result<String, DynamicUserError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(DynamicUserError::Read { path: path.to_owned(), source }),
    }
}

/// The uids and gids on the `Uid:` and `Gid:` lines of every process's
/// `status`. A process may exit while the directory is read; it then has no
/// ids to report. Threads are not visited: a thread whose ids differ from
/// its process's needs a raw `setresuid` on that one thread, which the
/// jobs' libc wrappers never do.
fn process_ids(proc: &Path) -> Result<BTreeSet<u32>, DynamicUserError> {
    let read_err = |source| DynamicUserError::Read { path: proc.to_owned(), source };
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(proc).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let path = entry.path().join("status");
        match std::fs::read_to_string(&path) {
            Ok(text) => ids.extend(status_ids(&text)),
            // Gone since the listing (ESRCH shows up on a dying process).
            Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(source) => return Err(DynamicUserError::Read { path, source }),
        }
    }
    Ok(ids)
}

/// `Uid:\t0\t0\t0\t0` and `Gid:` likewise: real, effective, saved, fs.
pub fn status_ids(status: &str) -> Vec<u32> {
    status
        .lines()
        .filter_map(|line| line.strip_prefix("Uid:").or_else(|| line.strip_prefix("Gid:")))
        .flat_map(|rest| rest.split_whitespace().filter_map(|n| n.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn status_lines() {
        let status = "Name:\tsh\nUid:\t61184\t61185\t61186\t61187\nGid:\t7\t7\t7\t7\nGroups:\t9\n";
        assert_eq!(status_ids(status), [61184, 61185, 61186, 61187, 7, 7, 7, 7]);
    }

    #[test]
    fn accounts_and_processes_of_a_fake_host() {
        let dir = tempfile::tempdir().unwrap();
        let roots = HostRoots { etc: dir.path().join("etc"), proc: dir.path().join("proc") };
        write(
            &roots.etc.join("passwd"),
            "root:x:0:0::/root:/bin/sh\nsvc:x:61190:61190::/:/bin/false\n",
        );
        write(&roots.etc.join("group"), "root:x:0:\nlate:x:61200:\n");
        write(&roots.proc.join("1/status"), "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n");
        write(
            &roots.proc.join("4242/status"),
            "Uid:\t61184\t61184\t61184\t61184\nGid:\t61184\t61184\t61184\t61184\n",
        );
        write(&roots.proc.join("self/status"), "Uid:\t5\t5\t5\t5\n");
        write(&roots.proc.join("meminfo"), "MemTotal: 1 kB\n");
        std::fs::create_dir_all(roots.proc.join("77")).unwrap(); // exited mid-scan

        let ids = HostIds::read(&roots).unwrap();
        assert_eq!(ids.processes, [0, 61184].into());
        assert!(ids.in_use(61184) && ids.in_use(61190) && ids.in_use(61200));
        assert!(!ids.in_use(61185) && !ids.in_use(5));
        assert_eq!(
            ids.accounts_in(UidRange::DEFAULT),
            [(61190, "user svc"), (61200, "group late")]
        );
        let picked =
            super::super::pick(UidRange::DEFAULT, super::super::Order::Lowest, |u| ids.in_use(u));
        assert_eq!(picked, Some(61185));
    }

    #[test]
    fn a_missing_procfs_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let roots = HostRoots { etc: dir.path().join("etc"), proc: dir.path().join("noproc") };
        let err = HostIds::read(&roots).unwrap_err().to_string();
        assert!(err.contains("noproc"), "{err}");
    }

    #[test]
    fn the_real_host_has_this_process() {
        let ids = HostIds::read(&HostRoots::default()).unwrap();
        assert!(ids.processes.contains(&nix::unistd::geteuid().as_raw()));
    }
}
