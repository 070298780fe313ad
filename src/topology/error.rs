//! What can go wrong reading the machine's topology.

use std::path::PathBuf;

use super::cpuset::ListParseError;

/// A problem in the text of one sysfs or procfs file. [`TopologyError::Parse`]
/// adds the file's path.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    List(#[from] ListParseError),
    #[error("{value:?} is not a valid {what}")]
    Value { what: &'static str, value: String },
    #[error("line {line}: {text:?} is not a {what}")]
    Line { line: usize, text: String, what: &'static str },
    #[error("no {field} line")]
    Missing { field: &'static str },
    #[error("line {line} belongs to node {found}, not node {expected}")]
    WrongNode { line: usize, found: u32, expected: u32 },
}

/// The cause of `Read` and `Parse` is their `source()`, not part of their
/// message, so that error chains (`{:#}` at the binary's edge) print it once.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
    /// The files parse but contradict each other (a CPU in two nodes, a
    /// distance row of the wrong length). The reason names the files.
    #[error("inconsistent topology: {reason}")]
    Inconsistent { reason: String },
}
