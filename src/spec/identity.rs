//! The user and group a job runs as.
//!
//! Only the syntax is checked here. Whether the account exists is a fact about the machine
//! the job lands on, resolved when it is launched, so a job file stays valid when moved.

use std::fmt;

use super::error::SpecError;

/// Longest account name accepted (the `utmp` limit most tools still observe).
const MAX_NAME_LEN: usize = 32;

/// A user account, by name or by numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserRef {
    Name(String),
    Id(u32),
}

/// A group, by name or by numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupRef {
    Name(String),
    Id(u32),
}

/// A name or an id: digits are an id, anything else must look like an account name
/// (`[A-Za-z_][A-Za-z0-9_.-]*`, optionally ending in `$` for machine accounts).
fn parse(text: &str, what: &'static str) -> Result<Result<u32, String>, SpecError> {
    let invalid = |reason: String| SpecError::Invalid { what, value: text.to_owned(), reason };
    if text.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            // (uid_t)-1 means "unchanged" to setresuid(2); it cannot name an account.
            Ok(u32::MAX) | Err(_) => Err(invalid(format!("ids go from 0 to {}", u32::MAX - 1))),
            Ok(id) => Ok(Ok(id)),
        };
    }
    if text.len() > MAX_NAME_LEN {
        return Err(invalid(format!("it is longer than {MAX_NAME_LEN} characters")));
    }
    let body = text.strip_suffix('$').unwrap_or(text);
    let mut chars = body.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok {
        return Err(invalid("a name must start with a letter or '_'".into()));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(format!("character {bad:?} is not allowed in an account name")));
    }
    Ok(Err(text.to_owned()))
}

impl UserRef {
    pub fn parse(text: &str) -> Result<UserRef, SpecError> {
        Ok(match parse(text, "user")? {
            Ok(id) => UserRef::Id(id),
            Err(name) => UserRef::Name(name),
        })
    }

    /// Whether this names the superuser, by name or by id.
    pub fn is_root(&self) -> bool {
        matches!(self, UserRef::Id(0)) || matches!(self, UserRef::Name(n) if n == "root")
    }
}

impl GroupRef {
    pub fn parse(text: &str) -> Result<GroupRef, SpecError> {
        Ok(match parse(text, "group")? {
            Ok(id) => GroupRef::Id(id),
            Err(name) => GroupRef::Name(name),
        })
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::Name(name) => f.write_str(name),
            UserRef::Id(id) => write!(f, "{id}"),
        }
    }
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupRef::Name(name) => f.write_str(name),
            GroupRef::Id(id) => write!(f, "{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(UserRef::parse("etl"), Ok(UserRef::Name("etl".into())));
        assert_eq!(UserRef::parse("_apt"), Ok(UserRef::Name("_apt".into())));
        assert_eq!(UserRef::parse("svc.backup-2"), Ok(UserRef::Name("svc.backup-2".into())));
        assert_eq!(UserRef::parse("host$"), Ok(UserRef::Name("host$".into())));
        assert_eq!(UserRef::parse("1000"), Ok(UserRef::Id(1000)));
        assert_eq!(UserRef::parse("0"), Ok(UserRef::Id(0)));
        assert_eq!(GroupRef::parse("4294967294"), Ok(GroupRef::Id(4_294_967_294)));
        assert_eq!(GroupRef::parse("adm"), Ok(GroupRef::Name("adm".into())));
    }

    #[test]
    fn root_by_name_or_id() {
        assert!(UserRef::parse("root").unwrap().is_root());
        assert!(UserRef::parse("0").unwrap().is_root());
        assert!(!UserRef::parse("nobody").unwrap().is_root());
        assert!(!UserRef::parse("00root").is_ok_and(|u| u.is_root()));
    }

    #[test]
    fn bad_syntax_is_refused() {
        for bad in [
            "",
            "-x",
            "1abc",
            "a b",
            "a:b",
            "a/b",
            "4294967295",
            "99999999999",
            "é",
            &"a".repeat(33),
        ] {
            assert!(UserRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
