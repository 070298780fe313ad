//! `/etc/passwd` and `/etc/group`, parsed by hand so that names resolve
//! against the container's rootfs rather than through the host's NSS.

use serde::{Deserialize, Serialize};

use super::config::IdSpec;

/// One line of `/etc/passwd` (the fields corral uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of `/etc/group` (the fields corral uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
}

/// Who the job runs as, fully resolved to numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Home directory from the passwd entry, if the user has one.
    pub home: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("unknown user {name:?}")]
    UnknownUser { name: String },
    #[error("unknown group {name:?}")]
    UnknownGroup { name: String },
}

/// Parses passwd lines `name:password:uid:gid:gecos:home:shell`. Comments,
/// blank and malformed lines are skipped, as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            if line.starts_with('#') {
                return None;
            }
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 || fields[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0].to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: fields[5].to_owned(),
            })
        })
        .collect()
}

/// Parses group lines `name:password:gid:members`.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            if line.starts_with('#') {
                return None;
            }
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 3 || fields[0].is_empty() {
                return None;
            }
            Some(GroupEntry { name: fields[0].to_owned(), gid: fields[2].parse().ok()? })
        })
        .collect()
}

/// Resolves a user and group against parsed passwd and group files.
///
/// No user means root. A numeric user needs no passwd entry; without one
/// and without a group, its group is the gid with the same number (the
/// user-private-group convention). A name that is all digits is taken as a
/// number, like `chown` does.
pub fn resolve(
    user: Option<&IdSpec>,
    group: Option<&IdSpec>,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<Credentials, CredentialError> {
    let as_number = |spec: &IdSpec| match spec {
        IdSpec::Id(id) => Some(*id),
        IdSpec::Name(name) => name.parse().ok(),
    };
    let user = user.cloned().unwrap_or(IdSpec::Id(0));
    let entry = match as_number(&user) {
        Some(uid) => passwd.iter().find(|e| e.uid == uid),
        None => {
            let name = user.to_string();
            Some(
                passwd
                    .iter()
                    .find(|e| e.name == name)
                    .ok_or(CredentialError::UnknownUser { name })?,
            )
        }
    };
    let uid = as_number(&user).or(entry.map(|e| e.uid)).expect("name resolved above");
    let gid = match group {
        Some(spec) => match as_number(spec) {
            Some(gid) => gid,
            None => {
                let name = spec.to_string();
                groups
                    .iter()
                    .find(|g| g.name == name)
                    .map(|g| g.gid)
                    .ok_or(CredentialError::UnknownGroup { name })?
            }
        },
        None => entry.map_or(uid, |e| e.gid),
    };
    Ok(Credentials { uid, gid, home: entry.map(|e| e.home.clone()).filter(|h| !h.is_empty()) })
}

/// The gids of `refused` groups, with the name each was given by: numbers as
/// they are, names as found in any of `dbs` (the host's and the rootfs's group
/// files, which may disagree: a name refused on either is refused). A name in
/// none of them cannot be a job's group.
pub fn refused_gids(refused: &[IdSpec], dbs: &[&[GroupEntry]]) -> Vec<(u32, String)> {
    let mut gids = Vec::new();
    for spec in refused {
        match spec {
            IdSpec::Id(id) => gids.push((*id, id.to_string())),
            IdSpec::Name(name) => match name.parse() {
                Ok(id) => gids.push((id, name.clone())),
                Err(_) => gids.extend(
                    dbs.iter()
                        .flat_map(|db| db.iter())
                        .filter(|g| &g.name == name)
                        .map(|g| (g.gid, name.clone())),
                ),
            },
        }
    }
    gids
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
broken line
etl:x:1000:1001:ETL runner:/home/etl:/bin/sh
nohome:x:1002:1002:::/bin/false
bad:x:notanumber:1:::
";
    const GROUP: &str = "root:x:0:\nstaff:x:50:etl\netl:x:1001:\n\nodd:x:\n";

    fn resolve_str(
        user: Option<IdSpec>,
        group: Option<IdSpec>,
    ) -> Result<Credentials, CredentialError> {
        resolve(user.as_ref(), group.as_ref(), &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn parses_valid_lines_and_skips_the_rest() {
        let users = parse_passwd(PASSWD);
        assert_eq!(users.len(), 3);
        assert_eq!(
            users[1],
            PasswdEntry { name: "etl".into(), uid: 1000, gid: 1001, home: "/home/etl".into() }
        );
        let groups = parse_group(GROUP);
        assert_eq!(groups.iter().map(|g| g.gid).collect::<Vec<_>>(), [0, 50, 1001]);
    }

    #[test]
    fn refused_groups_resolve_in_every_database() {
        let host = parse_group("shadow:x:42:\ndisk:x:6:\n");
        let rootfs = parse_group("shadow:x:15:\n");
        let refused = [
            IdSpec::Name("shadow".into()),
            IdSpec::Name("disk".into()),
            IdSpec::Name("docker".into()),
            IdSpec::Id(7),
        ];
        let gids: Vec<u32> =
            refused_gids(&refused, &[&host, &rootfs]).into_iter().map(|(gid, _)| gid).collect();
        assert_eq!(gids, [42, 15, 6, 7]);
    }

    #[test]
    fn no_user_is_root() {
        let creds = resolve_str(None, None).unwrap();
        assert_eq!((creds.uid, creds.gid, creds.home.as_deref()), (0, 0, Some("/root")));
    }

    #[test]
    fn user_by_name_takes_its_primary_group() {
        let creds = resolve_str(Some(IdSpec::Name("etl".into())), None).unwrap();
        assert_eq!((creds.uid, creds.gid, creds.home.as_deref()), (1000, 1001, Some("/home/etl")));
    }

    #[test]
    fn explicit_group_by_name_or_number_wins() {
        let by_name =
            resolve_str(Some(IdSpec::Name("etl".into())), Some(IdSpec::Name("staff".into())));
        assert_eq!(by_name.unwrap().gid, 50);
        let by_number = resolve_str(Some(IdSpec::Id(1000)), Some(IdSpec::Id(7)));
        assert_eq!(by_number.unwrap().gid, 7);
    }

    #[test]
    fn numeric_user_without_entry_uses_same_numbered_group() {
        let creds = resolve_str(Some(IdSpec::Id(4242)), None).unwrap();
        assert_eq!(creds, Credentials { uid: 4242, gid: 4242, home: None });
        let digits = resolve_str(Some(IdSpec::Name("1000".into())), None).unwrap();
        assert_eq!((digits.uid, digits.gid), (1000, 1001));
    }

    #[test]
    fn empty_home_is_none() {
        let creds = resolve_str(Some(IdSpec::Name("nohome".into())), None).unwrap();
        assert_eq!(creds.home, None);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve_str(Some(IdSpec::Name("ghost".into())), None),
            Err(CredentialError::UnknownUser { name: "ghost".into() })
        );
        assert_eq!(
            resolve_str(None, Some(IdSpec::Name("ghosts".into()))),
            Err(CredentialError::UnknownGroup { name: "ghosts".into() })
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC*") {
            parse_passwd(&text);
            parse_group(&text);
        }

        #[test]
        fn valid_lines_parse_back(
            name in "[a-z_][a-z0-9_-]{0,15}",
            uid in proptest::prelude::any::<u32>(),
            gid in proptest::prelude::any::<u32>(),
            home in "/[a-z/]{0,20}",
        ) {
            let line = format!("{name}:x:{uid}:{gid}:gecos:{home}:/bin/sh\n");
            let parsed = parse_passwd(&line);
            proptest::prop_assert_eq!(parsed, vec![PasswdEntry { name, uid, gid, home }]);
        }
    }
}
