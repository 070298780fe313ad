//! Which directory entries are job files.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Whether `name`, an entry directly in the jobs directory, is a job file:
/// `*.yaml` or `*.yml`, not hidden.
///
/// The two rules between them drop what editors and deploy tools leave behind
/// while they work, without a list per tool: Vim's swap files (`.job.yaml.swp`,
/// `.swx`) and Emacs' lock links (`.#job.yaml`) and rsync's temporaries
/// (`.job.yaml.Xa81bQ`) are hidden; backups (`job.yaml~`, `job.yaml.bak`),
/// Vim's write probe `4913` and partial downloads (`job.yaml.part`) fail the
/// suffix. A name that is not UTF-8 is never a job file: the job name inside
/// must be, and a path that cannot be printed makes a poor log line.
pub fn is_job_file_name(name: &OsStr) -> bool {
    let Ok(name) = std::str::from_utf8(name.as_bytes()) else { return false };
    let stem = name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml"));
    !name.starts_with('.') && stem.is_some_and(|stem| !stem.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_job(name: &str) -> bool {
        is_job_file_name(OsStr::new(name))
    }

    #[test]
    fn yaml_and_yml_files_are_job_files() {
        assert!(is_job("etl.yaml"));
        assert!(is_job("etl.yml"));
        assert!(is_job("nightly.etl.yaml"));
    }

    #[test]
    fn other_suffixes_are_not() {
        for name in ["etl", "etl.json", "etl.YAML", "etl.yaml.bak", "etl.yaml.part", "README"] {
            assert!(!is_job(name), "{name}");
        }
    }

    #[test]
    fn editor_and_deploy_droppings_are_not() {
        for name in [
            ".etl.yaml.swp",
            ".etl.yaml.swx",
            "etl.yaml~",
            ".#etl.yaml",
            "4913",
            ".etl.yaml",
            ".etl.yaml.Xa81bQ",
            "#etl.yaml#",
        ] {
            assert!(!is_job(name), "{name}");
        }
    }

    #[test]
    fn a_bare_suffix_is_not_a_job_file() {
        assert!(!is_job(".yaml"));
        assert!(!is_job("yaml"));
    }

    #[test]
    fn non_utf8_names_are_not() {
        assert!(!is_job_file_name(OsStr::from_bytes(b"caf\xe9.yaml")));
    }
}
