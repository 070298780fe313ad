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

/// Who jobs without a `user` run as: an account, or a uid of their own
/// from the agent's `dynamic_users` range (the word `dynamic`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DefaultUser {
    /// One uid per job name, allocated by the agent.
    Dynamic,
    /// One account shared by every job without `user`.
    Account(UserRef),
}

impl DefaultUser {
    /// The word that selects [`DefaultUser::Dynamic`]. An account that is
    /// really named so is given by its uid instead.
    pub const DYNAMIC: &'static str = "dynamic";

    pub fn parse(text: &str) -> Result<DefaultUser, SpecError> {
        if text == Self::DYNAMIC {
            return Ok(DefaultUser::Dynamic);
        }
        UserRef::parse(text).map(DefaultUser::Account)
    }

    /// The shared account, if jobs without `user` share one.
    pub fn account(&self) -> Option<&UserRef> {
        match self {
            DefaultUser::Dynamic => None,
            DefaultUser::Account(user) => Some(user),
        }
    }

    pub fn is_root(&self) -> bool {
        self.account().is_some_and(UserRef::is_root)
    }
}

impl fmt::Display for DefaultUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultUser::Dynamic => f.write_str(Self::DYNAMIC),
            DefaultUser::Account(user) => user.fmt(f),
        }
    }
}

/// A range of uids (and the gids of the same numbers) the agent hands out
/// to jobs, one per job name: `first-last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UidRange {
    first: u32,
    last: u32,
}

impl UidRange {
    /// systemd's range for its dynamic users, which distributions leave
    /// free of accounts (it sits below 65534 `nobody` and 65535, the 16-bit
    /// `(uid_t)-1`).
    pub const DEFAULT: UidRange = UidRange { first: 61184, last: 65519 };
    /// Uids at or above 2^31 are negative to tools that store them in a
    /// signed 32-bit integer; the range stays below.
    pub const MAX: u32 = (1 << 31) - 1;
    /// Never handed out: `nobody`, and 65535 which 16-bit interfaces read
    /// as "no uid".
    pub const RESERVED: [u32; 2] = [65534, 65535];

    /// `first-last`: at least 1, at most [`UidRange::MAX`], in order, and
    /// without the [reserved](UidRange::RESERVED) uids.
    pub fn parse(text: &str) -> Result<UidRange, SpecError> {
        let invalid = |reason: String| SpecError::Invalid {
            what: "uid range",
            value: text.to_owned(),
            reason,
        };
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| invalid("write it as FIRST-LAST, for example 61184-65519".into()))?;
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| invalid(format!("{s:?} is not a uid (a whole number)")))
        };
        let (first, last) = (number(a)?, number(b)?);
        if first == 0 {
            return Err(invalid("uid 0 is root; the range starts at 1 or above".into()));
        }
        if last > Self::MAX {
            return Err(invalid(format!("uids above {} are not handed out", Self::MAX)));
        }
        if first > last {
            return Err(invalid(format!("{first} is larger than {last}")));
        }
        if let Some(uid) = Self::RESERVED.iter().find(|&&u| (first..=last).contains(&u)) {
            return Err(invalid(format!(
                "it contains {uid}, which is reserved ({}); end it at 65533 or start it at 65536",
                if *uid == 65534 { "nobody" } else { "the 16-bit \"no uid\"" }
            )));
        }
        Ok(UidRange { first, last })
    }

    pub fn first(&self) -> u32 {
        self.first
    }

    pub fn last(&self) -> u32 {
        self.last
    }

    pub fn contains(&self, uid: u32) -> bool {
        (self.first..=self.last).contains(&uid)
    }

    /// How many uids it holds.
    pub fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Never: [`UidRange::parse`] refuses a range that runs backwards.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
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
    fn the_default_user_is_dynamic_or_an_account() {
        assert_eq!(DefaultUser::parse("dynamic"), Ok(DefaultUser::Dynamic));
        assert_eq!(
            DefaultUser::parse("nobody"),
            Ok(DefaultUser::Account(UserRef::Name("nobody".into())))
        );
        assert_eq!(DefaultUser::parse("0").map(|d| d.is_root()), Ok(true));
        assert!(!DefaultUser::Dynamic.is_root());
        assert_eq!(DefaultUser::Dynamic.to_string(), "dynamic");
    }

    #[test]
    fn uid_ranges() {
        let range = UidRange::parse("61184-65519").unwrap();
        assert_eq!(range, UidRange::DEFAULT);
        assert_eq!((range.len(), range.to_string()), (4336, "61184-65519".to_owned()));
        assert!(range.contains(61184) && range.contains(65519) && !range.contains(65520));
        assert_eq!(UidRange::parse("70000-70000").unwrap().len(), 1);
        assert!(UidRange::parse("100000-2147483647").is_ok());
        for (bad, why) in [
            ("0-10", "uid 0 is root"),
            ("10", "FIRST-LAST"),
            ("5-x", "not a uid"),
            ("20-10", "larger than"),
            ("60000-65534", "nobody"),
            ("65535-70000", "16-bit"),
            ("100-2147483648", "above 2147483647"),
        ] {
            let err = UidRange::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
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
