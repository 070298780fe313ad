//! The name a job goes by in run records, run ids and cgroup paths.

use std::fmt;
use std::str::FromStr;

/// A job's name: a DNS label (RFC 1123), 1 to 63 characters of `a-z`, `0-9`
/// and `-`, starting and ending with a letter or digit.
///
/// Run ids are built from it (`<job>-<seq>`) and become cgroup and directory
/// names, so the rule is the strictest of those places: nothing to escape,
/// no case folding, no path separators.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct JobName(String);

/// The longest job name.
pub const MAX_LEN: usize = 63;

/// Why a string is not a job name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobNameError {
    #[error("job name is empty")]
    Empty,
    #[error("job name {name:?} is {len} characters long; the limit is {MAX_LEN}")]
    TooLong { name: String, len: usize },
    #[error("job name {name:?} has {ch:?} at position {at}; only a-z, 0-9 and '-' are allowed")]
    BadChar { name: String, ch: char, at: usize },
    #[error("job name {name:?} must start and end with a letter or digit")]
    Hyphen { name: String },
}

impl JobName {
    pub fn parse(name: &str) -> Result<JobName, JobNameError> {
        if name.is_empty() {
            return Err(JobNameError::Empty);
        }
        let len = name.chars().count();
        if len > MAX_LEN {
            return Err(JobNameError::TooLong { name: name.to_owned(), len });
        }
        if let Some((at, ch)) = name
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(JobNameError::BadChar { name: name.to_owned(), ch, at });
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(JobNameError::Hyphen { name: name.to_owned() });
        }
        Ok(JobName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for JobName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for JobName {
    type Err = JobNameError;

    fn from_str(s: &str) -> Result<JobName, JobNameError> {
        JobName::parse(s)
    }
}

impl TryFrom<String> for JobName {
    type Error = JobNameError;

    fn try_from(s: String) -> Result<JobName, JobNameError> {
        JobName::parse(&s)
    }
}

impl From<JobName> for String {
    fn from(name: JobName) -> String {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "nightly-etl", "0", "a-1-b", &"x".repeat(MAX_LEN)] {
            assert_eq!(JobName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else_with_the_reason() {
        assert_eq!(JobName::parse(""), Err(JobNameError::Empty));
        assert!(matches!(
            JobName::parse(&"x".repeat(MAX_LEN + 1)),
            Err(JobNameError::TooLong { len: 64, .. })
        ));
        for (bad, ch, at) in [("Etl", 'E', 0), ("a.b", '.', 1), ("a/b", '/', 1), ("a_b", '_', 1)] {
            assert_eq!(
                JobName::parse(bad),
                Err(JobNameError::BadChar { name: bad.into(), ch, at }),
                "{bad}"
            );
        }
        for bad in ["-a", "a-", "-"] {
            assert_eq!(JobName::parse(bad), Err(JobNameError::Hyphen { name: bad.into() }));
        }
    }

    #[test]
    fn serde_checks_the_rule() {
        let name: JobName = serde_json::from_str("\"etl\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"etl\"");
        assert!(serde_json::from_str::<JobName>("\"ETL\"").is_err());
    }
}
