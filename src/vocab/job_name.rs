//! Job names.
//!
//! A job's name becomes a directory name under the agent's state directory and a cgroup
//! name under the agent's cgroup parent, and it labels every metric the job produces. So it
//! is held to the strictest common rule, the DNS label (RFC 1123): 1 to 63 characters of
//! `a-z`, `0-9` and `-`, starting and ending with a letter or digit. No `/`, no `.`, no
//! upper case (cgroup paths are case-sensitive; people are not), nothing to escape anywhere.

use std::fmt;

/// A validated job name. It is stored (run records, the cron journal) as its plain text, and
/// checked again when read back, so a damaged record cannot smuggle in a path.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct JobName(String);

/// The longest name allowed.
pub const MAX_LEN: usize = 63;

/// What is wrong with a name. Each says exactly what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("it is empty")]
    Empty,
    #[error("it is {len} characters long; the limit is {MAX_LEN}")]
    TooLong { len: usize },
    #[error("it contains '/'; a name is used as a single directory and cgroup name, not a path")]
    Slash,
    #[error("it contains '.'; names may only use a-z, 0-9 and '-'")]
    Dot,
    #[error("it contains the upper-case letter {ch:?} at position {at}; names are lower case")]
    UpperCase { ch: char, at: usize },
    #[error(
        "character {ch:?} at position {at} is not allowed; names may only use a-z, 0-9 and '-'"
    )]
    BadChar { ch: char, at: usize },
    #[error("it must start and end with a letter or digit, not '-'")]
    Hyphen,
    /// Names that are labels, but not cgroup names (`tasks`, a v1 file in every cgroup).
    #[error("a cgroup cannot have this name: {reason}")]
    Cgroup { reason: &'static str },
}

/// Files a cgroup v1 directory holds beside its child cgroups whose names carry no dot
/// (the others look like `<controller>.<file>`): no cgroup can have these names.
pub const RESERVED_CGROUP_NAMES: &[&str] = &["tasks", "notify_on_release", "release_agent"];

/// Checks `name` against the label rule above, and that a cgroup can have it (a label
/// used as a cgroup name on its own, like the agent's cgroup parent).
pub fn check_cgroup_label(name: &str) -> Result<(), NameError> {
    check_label(name)?;
    if RESERVED_CGROUP_NAMES.contains(&name) {
        return Err(NameError::Cgroup { reason: "collides with a cgroup v1 file name" });
    }
    Ok(())
}

/// Checks `name` against the label rule above.
pub fn check_label(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let len = name.chars().count();
    if len > MAX_LEN {
        return Err(NameError::TooLong { len });
    }
    // Path-shaped mistakes first: `../x` and `a/b` are the names that could escape a
    // directory, and the message should say so rather than complain about the dot.
    if name.contains('/') {
        return Err(NameError::Slash);
    }
    if name.contains('.') {
        return Err(NameError::Dot);
    }
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            return Err(NameError::UpperCase { ch, at: i + 1 });
        }
        if !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-') {
            return Err(NameError::BadChar { ch, at: i + 1 });
        }
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::Hyphen);
    }
    Ok(())
}

impl JobName {
    pub fn parse(name: &str) -> Result<JobName, NameError> {
        check_label(name)?;
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

impl TryFrom<String> for JobName {
    type Error = NameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        check_label(&name)?;
        Ok(JobName(name))
    }
}

impl From<JobName> for String {
    fn from(name: JobName) -> String {
        name.0
    }
}

impl std::str::FromStr for JobName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_names() {
        let longest = "x".repeat(63);
        for name in ["a", "0", "nightly-etl", "a1-b2-c3", longest.as_str(), "9lives"] {
            assert_eq!(JobName::parse(name).map(|n| n.to_string()).as_deref(), Ok(name));
        }
    }

    #[test]
    fn stored_as_text_and_checked_when_read_back() {
        let name = JobName::parse("nightly-etl").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"nightly-etl\"");
        assert_eq!(serde_json::from_str::<JobName>("\"nightly-etl\"").unwrap(), name);
        let e = serde_json::from_str::<JobName>("\"../etc\"").unwrap_err().to_string();
        assert!(e.contains("it contains '/'"), "{e}");
    }

    #[test]
    fn each_bad_name_gets_its_own_reason() {
        assert_eq!(check_label(""), Err(NameError::Empty));
        assert_eq!(check_label(&"a".repeat(200)), Err(NameError::TooLong { len: 200 }));
        assert_eq!(check_label(&"a".repeat(64)), Err(NameError::TooLong { len: 64 }));
        assert_eq!(check_label("../x"), Err(NameError::Slash));
        assert_eq!(check_label("a/b"), Err(NameError::Slash));
        assert_eq!(check_label("/"), Err(NameError::Slash));
        assert_eq!(check_label("."), Err(NameError::Dot));
        assert_eq!(check_label(".."), Err(NameError::Dot));
        assert_eq!(check_label("etl.v2"), Err(NameError::Dot));
        assert_eq!(check_label("Nightly"), Err(NameError::UpperCase { ch: 'N', at: 1 }));
        assert_eq!(check_label("nightlyETL"), Err(NameError::UpperCase { ch: 'E', at: 8 }));
        assert_eq!(check_label("a_b"), Err(NameError::BadChar { ch: '_', at: 2 }));
        assert_eq!(check_label("a b"), Err(NameError::BadChar { ch: ' ', at: 2 }));
        assert_eq!(check_label("café"), Err(NameError::BadChar { ch: 'é', at: 4 }));
        assert_eq!(check_label("a\0"), Err(NameError::BadChar { ch: '\0', at: 2 }));
        assert_eq!(check_label("-a"), Err(NameError::Hyphen));
        assert_eq!(check_label("a-"), Err(NameError::Hyphen));
        assert_eq!(check_label("-"), Err(NameError::Hyphen));
    }

    #[test]
    fn messages_say_what_is_wrong() {
        assert_eq!(
            check_label("../x").unwrap_err().to_string(),
            "it contains '/'; a name is used as a single directory and cgroup name, not a path"
        );
        assert_eq!(
            check_label(&"a".repeat(200)).unwrap_err().to_string(),
            "it is 200 characters long; the limit is 63"
        );
        assert_eq!(
            check_label("Etl").unwrap_err().to_string(),
            "it contains the upper-case letter 'E' at position 1; names are lower case"
        );
    }

    proptest! {
        #[test]
        fn accepted_names_match_the_dns_label_pattern(s in ".{0,70}") {
            let ok = check_label(&s).is_ok();
            let bytes = s.as_bytes();
            let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
            let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            let expected = !bytes.is_empty()
                && bytes.len() <= MAX_LEN
                && bytes.iter().all(inner)
                && edge(&bytes[0])
                && edge(&bytes[bytes.len() - 1]);
            prop_assert_eq!(ok, expected);
        }

        #[test]
        fn label_shaped_strings_round_trip(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            let name = JobName::parse(&s).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
        }
    }
}
