//! Validated cgroup names and relative paths.
//!
//! A job's name ends up as a directory in several cgroupfs trees, beside the
//! kernel's own knob files. Names are therefore restricted to a conservative
//! alphabet and may not look like a knob (`memory.max`, `tasks`).

use std::fmt;
use std::path::{Path, PathBuf};

use super::error::CgroupError;
use super::layout::Controller;
use crate::vocab::RESERVED_CGROUP_NAMES;

const MAX_NAME_LEN: usize = 128;

/// One path component: the name of a single cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CgroupName(String);

impl CgroupName {
    pub fn new(name: impl Into<String>) -> Result<Self, CgroupError> {
        let name = name.into();
        let invalid = |reason| Err(CgroupError::InvalidName { name: name.clone(), reason });
        if name.is_empty() {
            return invalid("empty");
        }
        if name.len() > MAX_NAME_LEN {
            return invalid("longer than 128 bytes");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
        {
            return invalid("only ASCII letters, digits and _ - . @ are allowed");
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() && name.as_bytes()[0] != b'_' {
            return invalid("must start with a letter, digit or _");
        }
        if RESERVED_CGROUP_NAMES.contains(&name.as_str()) {
            return invalid("collides with a cgroup v1 file name");
        }
        if let Some((prefix, _)) = name.split_once('.') {
            if prefix == "cgroup" || Controller::from_name(prefix).is_some() {
                return invalid("looks like a cgroup knob (<controller>.<file>)");
            }
        }
        Ok(CgroupName(name))
    }

    /// The leaf name of one run of a job: `<job>-<run>`.
    pub fn for_run(job: &str, run: u64) -> Result<Self, CgroupError> {
        CgroupName::new(format!("{job}-{run}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CgroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-empty relative path of cgroup names, e.g. `corral` or `batch/corral`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupPath(Vec<CgroupName>);

impl CgroupPath {
    pub fn new(path: &str) -> Result<Self, CgroupError> {
        let parts: Vec<CgroupName> = path
            .split('/')
            .filter(|part| !part.is_empty())
            .map(CgroupName::new)
            .collect::<Result<_, _>>()?;
        if parts.is_empty() {
            return Err(CgroupError::InvalidName {
                name: path.to_owned(),
                reason: "a parent path needs at least one component",
            });
        }
        Ok(CgroupPath(parts))
    }

    pub fn components(&self) -> &[CgroupName] {
        &self.0
    }

    pub fn to_path_buf(&self) -> PathBuf {
        self.0.iter().map(CgroupName::as_str).collect()
    }

    /// Every directory from `base` down to `base/self`, `base` excluded.
    pub(crate) fn dirs_under(&self, base: &Path) -> Vec<PathBuf> {
        let mut dir = base.to_path_buf();
        self.0
            .iter()
            .map(|name| {
                dir.push(name.as_str());
                dir.clone()
            })
            .collect()
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(part.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_job_run_names() {
        assert_eq!(CgroupName::for_run("nightly-etl", 42).unwrap().as_str(), "nightly-etl-42");
        assert!(CgroupName::new("a.b_c@d").is_ok());
        assert!(CgroupName::new("_x").is_ok());
    }

    #[test]
    fn rejects_names_that_escape_or_collide() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "-x",
            ".hidden",
            "tasks",
            "memory.max",
            "cgroup.procs",
            "cpu.x",
            "sp ace",
            "nl\n",
            &"x".repeat(129),
        ] {
            assert!(CgroupName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn paths_split_and_print() {
        let path = CgroupPath::new("/batch/corral/").unwrap();
        assert_eq!(path.to_string(), "batch/corral");
        assert_eq!(
            path.dirs_under(Path::new("/m")),
            vec![PathBuf::from("/m/batch"), PathBuf::from("/m/batch/corral")]
        );
        assert!(CgroupPath::new("/").is_err());
        assert!(CgroupPath::new("a/../b").is_err());
    }
}
