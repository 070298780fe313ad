//! What can be wrong with a job file, and where.

use std::fmt;
use std::path::{Path, PathBuf};

use super::duration::DurationError;
use super::tree::Pos;
use crate::vocab::NameError;
use crate::vocab::QuantityError;

/// One problem found in a job file. Messages never repeat the field or the position:
/// [`Diagnostic`] prints those in front of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read: {reason}")]
    Read { reason: String },
    #[error("file is {size} bytes; files are limited to {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("not UTF-8 text: invalid byte 0x{byte:02x}")]
    NotUtf8 { byte: u8 },
    #[error("binary data: NUL byte; a job file must be YAML text")]
    Binary,
    #[error("YAML: {message}")]
    Yaml { message: String },
    #[error("more than {limit} documents in one file")]
    TooManyDocuments { limit: usize },
    #[error("required field `{field}` is missing")]
    Missing { field: &'static str },
    #[error("unknown field `{key}`{}", suggestion.map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownField { key: String, suggestion: Option<&'static str> },
    #[error("`{key}` is set twice; the first is on line {first_line}")]
    DuplicateKey { key: String, first_line: u32 },
    #[error("mapping keys must be strings, found {found}")]
    KeyNotString { found: &'static str },
    #[error("expected {expected}, found {found}")]
    WrongType { expected: &'static str, found: String },
    #[error("{value:?} is not one of: {allowed}")]
    NotOneOf { value: String, allowed: String },
    #[error("{value} is out of range; allowed: {min} to {max}")]
    OutOfRange { value: String, min: i128, max: i128 },
    #[error("invalid name {value:?}: {reason}")]
    Name { value: String, reason: NameError },
    #[error("invalid quantity {value:?}: {reason}")]
    Quantity { value: String, reason: QuantityError },
    #[error("invalid duration {value:?}: {reason}")]
    Duration { value: String, reason: DurationError },
    #[error("invalid cron schedule {value:?}: {reason}")]
    Schedule { value: String, reason: String },
    #[error("unknown time zone {value:?}; use an IANA name such as UTC or Europe/Berlin")]
    TimeZone { value: String },
    /// A value with its own syntax (path, user name, environment name, …) that is wrong.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid { what: &'static str, value: String, reason: String },
    #[error("`{first}` and `{second}` cannot both be set: {why}")]
    MutuallyExclusive { first: &'static str, second: &'static str, why: &'static str },
    #[error("`{field}` requires {requirement}")]
    Requires { field: &'static str, requirement: String },
    #[error("`{lower}` ({lower_value}) must not be larger than `{upper}` ({upper_value})")]
    NotInOrder {
        lower: &'static str,
        lower_value: String,
        upper: &'static str,
        upper_value: String,
    },
    #[error("{value:?} is listed twice")]
    DuplicateItem { value: String },
    #[error("job {name:?} is also defined at {other}")]
    DuplicateJob { name: String, other: String },
    /// Jobs that wait for each other: none of them could ever start.
    #[error("dependency cycle: {jobs}, which waits for {first}; none of them could ever start")]
    DependencyCycle { jobs: String, first: String },
    /// The watcher's file rules (type, symlinks, owner, mode) refused it unread; the
    /// reason is the rule's own message.
    #[error("refused: {reason}")]
    Refused { reason: String },
    #[error(
        "it would run as root{}, which this agent does not allow (allow_root_jobs is false)",
        if *from_default { " (the agent's default_user)" } else { "" }
    )]
    RootUser { from_default: bool },
    #[error(
        "group {group:?} is privileged (gid 0 or in the agent's privileged_groups), which this \
         agent does not allow (allow_root_jobs is false)"
    )]
    PrivilegedGroup { group: String },
    #[error(
        "without a pid namespace, this job runs as the agent's default_user {user:?} in sight of \
         every other job that does: they could read its environment and signal it, and it theirs; \
         add `pid` to `namespaces`, give the job a `user` of its own, or set \
         `allow_shared_uid_without_pid_namespace: true` in the agent configuration"
    )]
    SharedUidWithoutPid { user: String },
    #[error(
        "{what} {id} is in the agent's dynamic_users range {range}, whose uids (and the gids \
         of the same numbers) belong to the jobs the agent gives them; leave out `user` to get \
         a uid of its own, or pick one outside"
    )]
    DynamicUid { what: &'static str, id: u32, range: String },
}

impl SpecError {
    /// A type mismatch, naming what was found (and its text, for scalars).
    pub fn wrong_type(expected: &'static str, found: &super::tree::Value) -> SpecError {
        use super::tree::Value;
        let found = match found {
            Value::Str(s) => format!("the string {s:?}"),
            Value::Int(i) => format!("the integer {i}"),
            Value::Float(x) => format!("the number {x}"),
            Value::Bool(b) => format!("the boolean {b}"),
            other => other.kind().to_owned(),
        };
        SpecError::WrongType { expected, found }
    }
}

impl SpecError {
    /// The message without any value taken from the file: what the HTTP API
    /// shows of a job file that only root may read, where a mistyped value can
    /// be a password. Field names, limits and allowed values are corral's own
    /// and stay; the full message is in the agent log and in `corral reload`.
    pub fn redacted(&self) -> String {
        use SpecError as E;
        match self {
            // Nothing of the file's content in these.
            E::Read { .. }
            | E::TooLarge { .. }
            | E::Binary
            | E::TooManyDocuments { .. }
            | E::Missing { .. }
            | E::KeyNotString { .. }
            | E::MutuallyExclusive { .. }
            | E::Requires { .. }
            | E::Refused { .. }
            | E::RootUser { .. } => self.to_string(),
            E::NotUtf8 { .. } => "not UTF-8 text".into(),
            // The parser's message quotes the text around the mistake.
            E::Yaml { .. } => "YAML syntax error".into(),
            E::UnknownField { suggestion, .. } => match suggestion {
                Some(s) => format!("unknown field; did you mean `{s}`?"),
                None => "unknown field".into(),
            },
            E::DuplicateKey { first_line, .. } => {
                format!("set twice; the first is on line {first_line}")
            }
            E::WrongType { expected, .. } => format!("expected {expected}"),
            E::NotOneOf { allowed, .. } => format!("not one of: {allowed}"),
            E::OutOfRange { min, max, .. } => format!("out of range; allowed: {min} to {max}"),
            E::Name { .. } => "invalid name".into(),
            E::Quantity { .. } => "invalid quantity".into(),
            E::Duration { .. } => "invalid duration".into(),
            E::Schedule { .. } => "invalid cron schedule".into(),
            E::TimeZone { .. } => "unknown time zone".into(),
            E::Invalid { what, .. } => format!("invalid {what}"),
            E::NotInOrder { lower, upper, .. } => {
                format!("`{lower}` must not be larger than `{upper}`")
            }
            E::DuplicateItem { .. } => "listed twice".into(),
            E::DuplicateJob { other, .. } => format!("the job is also defined at {other}"),
            // Job names and positions, as the duplicate above tells them.
            E::DependencyCycle { .. } => self.to_string(),
            E::PrivilegedGroup { .. } => "the group is privileged (gid 0 or in the agent's \
                                          privileged_groups) and allow_root_jobs is false"
                .into(),
            E::SharedUidWithoutPid { .. } => "without a pid namespace, the job would share the \
                                              agent's default_user with other jobs; add `pid`, \
                                              set a `user`, or allow it in the agent configuration"
                .into(),
            E::DynamicUid { .. } => "the uid is in the agent's dynamic_users range".into(),
        }
    }
}

/// A dotted path to a field inside a document: `resources.memory.hard`, `command[0]`,
/// `isolation.mounts[1].target`. Empty for problems with the document or file as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> FieldPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    pub fn index(&self, index: usize) -> FieldPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path without its last segment (the root stays the root).
    pub fn parent(&self) -> FieldPath {
        let mut path = self.clone();
        path.0.pop();
        path
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A problem, the file and position it was found at, and the field it concerns.
///
/// Prints as `FILE:LINE:COL: FIELD: message`, the shape editors and CI annotators
/// understand. Problems with the file as a whole (unreadable, too large) have no
/// position and print as `FILE: message`; problems with a whole document have no field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic<E = SpecError> {
    pub file: PathBuf,
    pub pos: Pos,
    pub field: FieldPath,
    pub error: E,
}

impl<E> Diagnostic<E> {
    pub fn new(file: &Path, pos: Pos, field: FieldPath, error: impl Into<E>) -> Self {
        Diagnostic { file: file.to_owned(), pos, field, error: error.into() }
    }
}

impl Diagnostic<SpecError> {
    /// The same problem at the same place, its message
    /// [redacted](SpecError::redacted).
    pub fn redacted(&self) -> Diagnostic<String> {
        // A key the schema does not know is the file's text, not a field name:
        // a misplaced line (`hunter2: x`) is reported at its parent.
        let field = match self.error {
            SpecError::UnknownField { .. } | SpecError::DuplicateKey { .. } => self.field.parent(),
            _ => self.field.clone(),
        };
        Diagnostic { file: self.file.clone(), pos: self.pos, field, error: self.error.redacted() }
    }
}

impl<E: fmt::Display> fmt::Display for Diagnostic<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file.display())?;
        if self.pos.is_known() {
            write!(f, "{}:{}:", self.pos.line, self.pos.column)?;
        }
        if !self.field.is_root() {
            write!(f, " {}:", self.field)?;
        }
        write!(f, " {}", self.error)
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Diagnostic<E> {}

/// Every problem found in one or more files, in file and position order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics<E = SpecError>(pub Vec<Diagnostic<E>>);

impl<E> Diagnostics<E> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic<E>> {
        self.0.iter()
    }
}

impl<E> IntoIterator for Diagnostics<E> {
    type Item = Diagnostic<E>;
    type IntoIter = std::vec::IntoIter<Diagnostic<E>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<E: fmt::Display> fmt::Display for Diagnostics<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for Diagnostics<E> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_print_dotted_with_indices() {
        let path = FieldPath::root().key("isolation").key("mounts").index(1).key("target");
        assert_eq!(path.to_string(), "isolation.mounts[1].target");
        assert_eq!(FieldPath::root().key("command").index(0).to_string(), "command[0]");
        assert_eq!(FieldPath::root().to_string(), "");
    }

    #[test]
    fn diagnostics_print_file_line_column_field_message() {
        let d: Diagnostic = Diagnostic::new(
            Path::new("jobs/a.yaml"),
            Pos::new(3, 9),
            FieldPath::root().key("resources").key("cpus"),
            SpecError::Missing { field: "x" },
        );
        assert_eq!(d.to_string(), "jobs/a.yaml:3:9: resources.cpus: required field `x` is missing");

        let whole_file: Diagnostic = Diagnostic::new(
            Path::new("a.yaml"),
            Pos::UNKNOWN,
            FieldPath::root(),
            SpecError::TooLarge { size: 5, limit: 4 },
        );
        assert_eq!(whole_file.to_string(), "a.yaml: file is 5 bytes; files are limited to 4 bytes");
    }

    #[test]
    fn redacted_messages_keep_the_place_and_drop_the_value() {
        let secret = "hunter2-s3cr3t";
        let errors = [
            SpecError::Yaml { message: format!("did not find expected key near {secret}") },
            SpecError::WrongType { expected: "a list", found: format!("the string {secret:?}") },
            SpecError::NotOneOf { value: secret.into(), allowed: "a, b".into() },
            SpecError::OutOfRange { value: secret.into(), min: 0, max: 9 },
            SpecError::Invalid { what: "path", value: secret.into(), reason: secret.into() },
            SpecError::UnknownField { key: secret.into(), suggestion: Some("command") },
            SpecError::Duration { value: secret.into(), reason: DurationError::Empty },
            SpecError::TimeZone { value: secret.into() },
            SpecError::DuplicateItem { value: secret.into() },
            SpecError::PrivilegedGroup { group: secret.into() },
            SpecError::SharedUidWithoutPid { user: secret.into() },
            SpecError::NotInOrder {
                lower: "soft",
                lower_value: secret.into(),
                upper: "hard",
                upper_value: secret.into(),
            },
        ];
        for error in errors {
            assert!(error.to_string().contains(secret), "the full message quotes it: {error}");
            let d: Diagnostic = Diagnostic::new(
                Path::new("/j/a.yaml"),
                Pos::new(4, 9),
                FieldPath::root().key("env").key("TOKEN"),
                error,
            );
            let redacted = d.redacted().to_string();
            // An unknown key is reported at its parent; see the test below.
            assert!(redacted.starts_with("/j/a.yaml:4:9: env"), "{redacted}");
            assert!(!redacted.contains(secret), "{redacted}");
            assert!(!redacted.contains("s3cr3t"), "{redacted}");
        }
    }

    #[test]
    fn a_key_the_schema_does_not_know_is_left_out_of_the_redacted_path() {
        let d: Diagnostic = Diagnostic::new(
            Path::new("a.yaml"),
            Pos::new(5, 3),
            FieldPath::root().key("resources").key("hunter2"),
            SpecError::UnknownField { key: "hunter2".into(), suggestion: None },
        );
        assert_eq!(d.redacted().to_string(), "a.yaml:5:3: resources: unknown field");
        let top: Diagnostic = Diagnostic::new(
            Path::new("a.yaml"),
            Pos::new(1, 1),
            FieldPath::root().key("hunter2"),
            SpecError::DuplicateKey { key: "hunter2".into(), first_line: 1 },
        );
        assert_eq!(top.redacted().to_string(), "a.yaml:1:1: set twice; the first is on line 1");
    }

    #[test]
    fn unknown_field_suggests_a_close_name() {
        let e = SpecError::UnknownField { key: "comand".into(), suggestion: Some("command") };
        assert_eq!(e.to_string(), "unknown field `comand`; did you mean `command`?");
        let e = SpecError::UnknownField { key: "zzz".into(), suggestion: None };
        assert_eq!(e.to_string(), "unknown field `zzz`");
    }
}
