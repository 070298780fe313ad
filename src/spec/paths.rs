//! Absolute paths as job files write them.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::error::SpecError;

/// The kernel's limit on a path passed to a system call (`PATH_MAX`, including the NUL).
const PATH_MAX: usize = 4096;

/// An absolute path with no `..` component.
///
/// `..` is refused rather than resolved: in a mount target or a workdir it is either a
/// mistake or an attempt to reach outside the place the path seems to name, and which one
/// depends on symlinks the compiler cannot see.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbsPath(PathBuf);

impl AbsPath {
    /// Checks `text`; `what` names the field in the message ("working directory").
    pub fn parse(text: &str, what: &'static str) -> Result<AbsPath, SpecError> {
        let invalid = |reason: &str| SpecError::Invalid {
            what,
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if !text.starts_with('/') {
            return Err(invalid("it must be an absolute path, starting with /"));
        }
        if text.contains('\0') {
            return Err(invalid("it contains a NUL character"));
        }
        if text.len() >= PATH_MAX {
            return Err(invalid("it is longer than the kernel's 4095-byte path limit"));
        }
        if Path::new(text).components().any(|c| c == Component::ParentDir) {
            return Err(invalid("it contains a `..` component"));
        }
        Ok(AbsPath(PathBuf::from(text)))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// Whether this is `/` itself.
    pub fn is_root(&self) -> bool {
        self.0.components().all(|c| c == Component::RootDir || c == Component::CurDir)
    }
}

impl AsRef<Path> for AbsPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> String {
        match AbsPath::parse(text, "path") {
            Err(SpecError::Invalid { reason, .. }) => reason,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn absolute_paths_are_accepted() {
        for p in ["/", "/srv/etl", "/srv/etl/", "/a/./b", "/with space/ok", "/.hidden"] {
            assert_eq!(AbsPath::parse(p, "path").unwrap().to_string(), p);
        }
        assert!(AbsPath::parse("/", "path").unwrap().is_root());
        assert!(!AbsPath::parse("/srv", "path").unwrap().is_root());
    }

    #[test]
    fn relative_parent_empty_nul_and_long_paths_are_refused() {
        assert_eq!(reason(""), "it is empty");
        assert_eq!(reason("srv/etl"), "it must be an absolute path, starting with /");
        assert_eq!(reason("./x"), "it must be an absolute path, starting with /");
        assert_eq!(reason("/srv/../etc"), "it contains a `..` component");
        assert_eq!(reason("/.."), "it contains a `..` component");
        assert_eq!(reason("/a\0b"), "it contains a NUL character");
        assert_eq!(
            reason(&format!("/{}", "a".repeat(4095))),
            "it is longer than the kernel's 4095-byte path limit"
        );
        assert!(AbsPath::parse("/srv/..x/ok", "path").is_ok(), "`..x` is an ordinary name");
    }
}
