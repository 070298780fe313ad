//! The security rules a job file and the directories above it must pass before
//! the agent reads it, in the spirit of sshd's `StrictModes`: whoever can write a
//! job file decides what runs, so only root and the configured owner may.
//!
//! These are pure functions of stat results ([`Facts`]); [`super::inspect`]
//! gathers the facts and applies them.

use std::fmt;
use std::path::PathBuf;

use nix::unistd::Uid;

use super::options::WatchOptions;

/// A `st_mode`: file type and permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(pub u32);

impl Mode {
    pub fn kind(self) -> FileKind {
        match self.0 & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            _ => FileKind::Unknown,
        }
    }

    /// The permission bits, including set-id and sticky.
    pub fn permissions(self) -> u32 {
        self.0 & 0o7777
    }

    fn world_writable(self) -> bool {
        self.0 & 0o002 != 0
    }

    fn group_writable(self) -> bool {
        self.0 & 0o020 != 0
    }

    fn sticky(self) -> bool {
        self.0 & 0o1000 != 0
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.permissions())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Symlink => "a symlink",
            FileKind::Fifo => "a fifo",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Unknown => "of unknown type",
        })
    }
}

/// Who may own job files and the directories above them: root, and optionally
/// one more user (the account a deploy tool runs as).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owners {
    pub extra: Option<Uid>,
}

impl Owners {
    pub fn allows(self, uid: Uid) -> bool {
        uid.is_root() || self.extra == Some(uid)
    }
}

impl fmt::Display for Owners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.extra {
            Some(uid) if !uid.is_root() => write!(f, "root or uid {uid}"),
            _ => f.write_str("root"),
        }
    }
}

/// The rules, taken from [`WatchOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub owners: Owners,
    pub allow_group_writable: bool,
    pub max_file_bytes: u64,
}

impl From<&WatchOptions> for Rules {
    fn from(options: &WatchOptions) -> Rules {
        Rules {
            owners: Owners { extra: options.owner_uid },
            allow_group_writable: options.allow_group_writable,
            max_file_bytes: options.max_file_bytes,
        }
    }
}

impl Rules {
    /// The rules for checking job files from the command line (`corral
    /// validate`, `corral schedule`) as the agent would read them: the same
    /// type, symlink, mode and size rules, with `invoker` allowed to own files
    /// besides root, as files are checked in a checkout before they are
    /// deployed (and `chown`ed) to the jobs directory.
    pub fn checking_as(invoker: Uid) -> Rules {
        Rules { owners: Owners { extra: Some(invoker) }, ..Rules::from(&WatchOptions::default()) }
    }
}

/// What the rules look at in a stat result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub mode: Mode,
    pub uid: Uid,
    pub size: u64,
}

impl From<&std::fs::Metadata> for Facts {
    fn from(meta: &std::fs::Metadata) -> Facts {
        use std::os::unix::fs::MetadataExt;
        Facts { mode: Mode(meta.mode()), uid: Uid::from_raw(meta.uid()), size: meta.size() }
    }
}

/// Why a job file is not read. The message completes "refused {path}: ".
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// Reading a fifo would block until a writer shows up, a device can do
    /// anything on open; only regular files are job files.
    #[error("it is {kind}, not a regular file")]
    NotRegular { kind: FileKind },
    #[error("it is owned by uid {uid}; job files must be owned by {owners}")]
    Owner { uid: Uid, owners: Owners },
    #[error("it is world-writable (mode {mode})")]
    WorldWritable { mode: Mode },
    #[error("it is group-writable (mode {mode}) and group-writable job files are not allowed")]
    GroupWritable { mode: Mode },
    /// Checked on the size before opening, so a huge file is never read.
    #[error("it is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("it is a symlink owned by uid {uid}; links must be owned by {owners}")]
    LinkOwner { uid: Uid, owners: Owners },
    /// The link's target, fully resolved, is not inside the jobs directory.
    #[error("it is a symlink to {}, outside the jobs directory", target.display())]
    LinkOutside { target: PathBuf },
    /// Dangling, a loop, or a component not searchable.
    #[error("it is a symlink that does not resolve: {error}")]
    LinkBroken { error: String },
    /// A directory between the jobs directory and a link's target.
    #[error("its target is in {}, which {problem}", dir.display())]
    UnsafeDirectory { dir: PathBuf, problem: DirProblem },
    #[error("it cannot be read: {error}")]
    Unreadable { error: String },
}

/// Why a directory (the jobs directory, one above it, or one below it that
/// holds a link's target) is not trusted. The message completes "{dir} ".
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DirProblem {
    #[error("is {kind}, not a directory")]
    NotDirectory { kind: FileKind },
    #[error("is owned by uid {uid}, not {owners}")]
    Owner { uid: Uid, owners: Owners },
    #[error("is world-writable without the sticky bit (mode {mode})")]
    WorldWritable { mode: Mode },
    #[error("is group-writable without the sticky bit (mode {mode})")]
    GroupWritable { mode: Mode },
}

/// The rules for a job file (after following a symlink, for its target).
///
/// The type comes first: it is what makes reading unsafe rather than merely
/// untrusted. Size comes last, so a refused file's reason is about who could
/// have written it whenever that is also wrong.
pub fn check_file(facts: &Facts, rules: &Rules) -> Result<(), Refusal> {
    let mode = facts.mode;
    match mode.kind() {
        FileKind::Regular => {}
        kind => return Err(Refusal::NotRegular { kind }),
    }
    if !rules.owners.allows(facts.uid) {
        return Err(Refusal::Owner { uid: facts.uid, owners: rules.owners });
    }
    if mode.world_writable() {
        return Err(Refusal::WorldWritable { mode });
    }
    if mode.group_writable() && !rules.allow_group_writable {
        return Err(Refusal::GroupWritable { mode });
    }
    if facts.size > rules.max_file_bytes {
        return Err(Refusal::TooLarge { size: facts.size, limit: rules.max_file_bytes });
    }
    Ok(())
}

/// The rules for a symlink in the jobs directory. A link's own mode means
/// nothing (always 0777) but its owner is who chose the target.
pub fn check_link(facts: &Facts, rules: &Rules) -> Result<(), Refusal> {
    if rules.owners.allows(facts.uid) {
        Ok(())
    } else {
        Err(Refusal::LinkOwner { uid: facts.uid, owners: rules.owners })
    }
}

/// The rules for a directory whose entries the agent trusts. Anyone who can
/// write a directory can replace the files in it, so a directory must be as
/// trustworthy as the files. The sticky bit lifts the write rules (that is how
/// `/tmp` is safe above a jobs directory): in a sticky directory only an
/// entry's owner can rename or remove it, and new entries belong to whoever
/// made them, which the file rules check.
pub fn check_dir(facts: &Facts, rules: &Rules) -> Result<(), DirProblem> {
    let mode = facts.mode;
    match mode.kind() {
        FileKind::Directory => {}
        kind => return Err(DirProblem::NotDirectory { kind }),
    }
    if !rules.owners.allows(facts.uid) {
        return Err(DirProblem::Owner { uid: facts.uid, owners: rules.owners });
    }
    if mode.world_writable() && !mode.sticky() {
        return Err(DirProblem::WorldWritable { mode });
    }
    if mode.group_writable() && !mode.sticky() && !rules.allow_group_writable {
        return Err(DirProblem::GroupWritable { mode });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn rules() -> Rules {
        Rules { owners: Owners { extra: None }, allow_group_writable: false, max_file_bytes: MIB }
    }

    fn file(mode: u32) -> Facts {
        Facts { mode: Mode(libc::S_IFREG | mode), uid: Uid::from_raw(0), size: 100 }
    }

    fn dir(mode: u32) -> Facts {
        Facts { mode: Mode(libc::S_IFDIR | mode), uid: Uid::from_raw(0), size: 4096 }
    }

    #[test]
    fn a_root_owned_file_not_writable_by_others_passes() {
        assert_eq!(check_file(&file(0o644), &rules()), Ok(()));
        assert_eq!(check_file(&file(0o600), &rules()), Ok(()));
        assert_eq!(check_file(&file(0o400), &rules()), Ok(()));
    }

    #[test]
    fn only_regular_files_pass() {
        for (kind_bits, kind) in [
            (libc::S_IFIFO, FileKind::Fifo),
            (libc::S_IFSOCK, FileKind::Socket),
            (libc::S_IFCHR, FileKind::CharDevice),
            (libc::S_IFBLK, FileKind::BlockDevice),
            (libc::S_IFDIR, FileKind::Directory),
            (libc::S_IFLNK, FileKind::Symlink),
        ] {
            let facts = Facts { mode: Mode(kind_bits | 0o644), ..file(0) };
            assert_eq!(check_file(&facts, &rules()), Err(Refusal::NotRegular { kind }));
        }
    }

    #[test]
    fn world_writable_files_are_refused() {
        assert_eq!(
            check_file(&file(0o666), &rules()),
            Err(Refusal::WorldWritable { mode: Mode(libc::S_IFREG | 0o666) })
        );
        // Allowing group-writable files does not extend to the world.
        let lenient = Rules { allow_group_writable: true, ..rules() };
        assert!(matches!(check_file(&file(0o646), &lenient), Err(Refusal::WorldWritable { .. })));
    }

    #[test]
    fn group_writable_files_pass_only_when_allowed() {
        assert!(matches!(check_file(&file(0o664), &rules()), Err(Refusal::GroupWritable { .. })));
        let lenient = Rules { allow_group_writable: true, ..rules() };
        assert_eq!(check_file(&file(0o664), &lenient), Ok(()));
    }

    #[test]
    fn files_owned_by_others_are_refused_unless_they_are_the_owner() {
        let theirs = Facts { uid: Uid::from_raw(1000), ..file(0o644) };
        assert_eq!(
            check_file(&theirs, &rules()),
            Err(Refusal::Owner { uid: Uid::from_raw(1000), owners: rules().owners })
        );
        let owned = Rules { owners: Owners { extra: Some(Uid::from_raw(1000)) }, ..rules() };
        assert_eq!(check_file(&theirs, &owned), Ok(()));
        let other = Facts { uid: Uid::from_raw(1001), ..file(0o644) };
        assert!(matches!(check_file(&other, &owned), Err(Refusal::Owner { .. })));
        // Root stays allowed when an owner is configured.
        assert_eq!(check_file(&file(0o644), &owned), Ok(()));
    }

    #[test]
    fn the_size_limit_is_inclusive() {
        let at = Facts { size: MIB, ..file(0o644) };
        assert_eq!(check_file(&at, &rules()), Ok(()));
        let over = Facts { size: MIB + 1, ..file(0o644) };
        assert_eq!(
            check_file(&over, &rules()),
            Err(Refusal::TooLarge { size: MIB + 1, limit: MIB })
        );
    }

    #[test]
    fn the_type_is_reported_before_anything_else() {
        let fifo = Facts { mode: Mode(libc::S_IFIFO | 0o666), uid: Uid::from_raw(7), size: 0 };
        assert!(matches!(check_file(&fifo, &rules()), Err(Refusal::NotRegular { .. })));
    }

    #[test]
    fn links_are_judged_by_their_owner_alone() {
        let link = Facts { mode: Mode(libc::S_IFLNK | 0o777), uid: Uid::from_raw(0), size: 9 };
        assert_eq!(check_link(&link, &rules()), Ok(()));
        let theirs = Facts { uid: Uid::from_raw(1000), ..link };
        assert!(matches!(check_link(&theirs, &rules()), Err(Refusal::LinkOwner { .. })));
    }

    #[test]
    fn directories_writable_by_others_are_refused_unless_sticky() {
        assert_eq!(check_dir(&dir(0o755), &rules()), Ok(()));
        assert!(matches!(check_dir(&dir(0o777), &rules()), Err(DirProblem::WorldWritable { .. })));
        assert_eq!(check_dir(&dir(0o1777), &rules()), Ok(()));
        assert!(matches!(check_dir(&dir(0o775), &rules()), Err(DirProblem::GroupWritable { .. })));
        assert_eq!(check_dir(&dir(0o1775), &rules()), Ok(()));
        let lenient = Rules { allow_group_writable: true, ..rules() };
        assert_eq!(check_dir(&dir(0o775), &lenient), Ok(()));
        assert!(matches!(check_dir(&dir(0o777), &lenient), Err(DirProblem::WorldWritable { .. })));
    }

    #[test]
    fn directories_must_be_directories_owned_by_an_owner() {
        assert!(matches!(check_dir(&file(0o755), &rules()), Err(DirProblem::NotDirectory { .. })));
        let theirs = Facts { uid: Uid::from_raw(1000), ..dir(0o755) };
        assert!(matches!(check_dir(&theirs, &rules()), Err(DirProblem::Owner { .. })));
    }

    #[test]
    fn reasons_read_as_sentences() {
        let owners = Owners { extra: Some(Uid::from_raw(1000)) };
        assert_eq!(
            Refusal::Owner { uid: Uid::from_raw(33), owners }.to_string(),
            "it is owned by uid 33; job files must be owned by root or uid 1000"
        );
        assert_eq!(
            Refusal::WorldWritable { mode: Mode(libc::S_IFREG | 0o666) }.to_string(),
            "it is world-writable (mode 0666)"
        );
        assert_eq!(
            Refusal::NotRegular { kind: FileKind::Fifo }.to_string(),
            "it is a fifo, not a regular file"
        );
        assert_eq!(
            Refusal::UnsafeDirectory {
                dir: PathBuf::from("/jobs/shared"),
                problem: DirProblem::WorldWritable { mode: Mode(libc::S_IFDIR | 0o777) },
            }
            .to_string(),
            "its target is in /jobs/shared, which is world-writable without the sticky bit (mode 0777)"
        );
    }
}
