//! From a file on disk to YAML trees, refusing hostile input early and cheaply.
//!
//! Job directories are written by people and by deployment tools, and the agent reads them
//! with privileges, so every file is treated as untrusted: size is checked before reading,
//! binary and non-UTF-8 data is refused before parsing, and the YAML parser runs under a
//! budget (nesting depth, aliases, nodes, documents) so that a "billion laughs" file or a
//! deeply nested one fails in milliseconds instead of exhausting memory or the stack.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use serde_saphyr::{budget::BudgetBreach, MessageFormatter, UserMessageFormatter};

use super::error::SpecError;
use super::tree::{Node, Pos};

/// Files larger than this are refused unread. The biggest sensible job file — a few dozen
/// jobs with comments — is a few tens of kilobytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Deepest nesting of lists and mappings. A job spec needs 4 levels
/// (`isolation.mounts[0].target`); the margin is for the agent config and future fields.
pub const MAX_DEPTH: usize = 32;
/// Most documents (jobs) in one file.
pub const MAX_DOCUMENTS: usize = 256;
/// Most alias uses (`*name`) in one document. Anchors and aliases are legitimately used to
/// share a block between fields; a handful suffices.
pub const MAX_ALIASES: usize = 64;
/// Most YAML events that alias expansion may replay in one document. This, not the alias
/// count, is what stops a "billion laughs" file: each level multiplies the replayed events.
pub const MAX_REPLAYED_EVENTS: usize = 10_000;
/// Most nodes (scalars, lists, mappings) in one document.
pub const MAX_NODES: usize = 100_000;

/// Reads a file as text, refusing it if it is too large, binary or not UTF-8.
/// Errors carry the position of the offending byte when there is one.
pub fn read_file(path: &Path, limit: u64) -> Result<String, (Pos, SpecError)> {
    let at_file = |error| (Pos::UNKNOWN, error);
    let read_error = |e: std::io::Error| at_file(SpecError::Read { reason: e.to_string() });
    // O_NONBLOCK: opening a fifo read-only otherwise waits for a writer,
    // forever if none comes. It is refused below once open.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    if metadata.is_dir() {
        return Err(at_file(SpecError::Read { reason: "it is a directory".into() }));
    }
    if metadata.file_type().is_fifo() || metadata.file_type().is_socket() {
        return Err(at_file(SpecError::Read {
            reason: "it is a fifo or socket, not a file".into(),
        }));
    }
    if metadata.len() > limit {
        return Err(at_file(SpecError::TooLarge { size: metadata.len(), limit }));
    }
    // The size check above does not cover files whose size the kernel does not know
    // (`/dev/zero`, pipes, procfs) or that grow while being read: cap the read as well.
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(at_file(SpecError::TooLarge { size: bytes.len() as u64, limit }));
    }
    decode(&bytes).map(str::to_owned)
}

/// Checks that bytes are text: no NUL (the mark of a binary file, and of a string that
/// could never reach `execve` intact) and valid UTF-8.
pub fn decode(bytes: &[u8]) -> Result<&str, (Pos, SpecError)> {
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err((pos_of(bytes, offset), SpecError::Binary));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        (pos_of(bytes, offset), SpecError::NotUtf8 { byte: bytes[offset] })
    })
}

/// The line and column of a byte offset, counting columns in characters.
fn pos_of(bytes: &[u8], offset: usize) -> Pos {
    let before = &bytes[..offset];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    Pos::new(line as u32, column as u32)
}

/// The documents of a YAML stream, each as a tree; empty documents are skipped.
///
/// A syntax error ends the stream (the parser cannot know where the next document starts),
/// so documents before it are returned along with the error. Anything after it is unread.
pub fn documents(text: &str) -> (Vec<Node>, Vec<(Pos, SpecError)>) {
    let mut nodes = Vec::new();
    let mut errors = Vec::new();
    let mut reader = text.as_bytes();
    for document in serde_saphyr::read_with_options::<_, Node>(&mut reader, options()) {
        match document {
            Ok(node) if nodes.len() == MAX_DOCUMENTS => {
                errors.push((node.pos, SpecError::TooManyDocuments { limit: MAX_DOCUMENTS }));
                break;
            }
            Ok(node) => nodes.push(node),
            Err(error) => errors.push(yaml_error(&error)),
        }
    }
    (nodes, errors)
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ALIASES;
    budget.max_nodes = MAX_NODES;
    budget.max_events = 4 * MAX_NODES;
    budget.max_documents = MAX_DOCUMENTS;
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES as usize + 1);
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;

    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    options.alias_limits.max_replay_stack_depth = MAX_DEPTH;
    // Duplicate keys reach the tree, where the compiler reports them with both lines and
    // keeps checking the rest of the document instead of abandoning it.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    // YAML 1.2 booleans only: `yes`, `no`, `on`, `off` stay strings, so `on: failure`
    // and `NO_PROXY: no` mean what they say.
    options.strict_booleans = true;
    // `0755` or `007` stays text rather than quietly becoming 755 or 7.
    options.leading_zero_numbers_as_strings = true;
    // `.inf` and `.nan` stay text, for the field that gets one to refuse with its own
    // message, instead of the parser abandoning the whole document.
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    options.with_snippet = false;
    options
}

fn yaml_error(error: &serde_saphyr::Error) -> (Pos, SpecError) {
    let mut inner = error.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let pos = error.location().map(Pos::from_location).unwrap_or(Pos::UNKNOWN);
    let message = match inner {
        serde_saphyr::Error::Budget { breach, .. } => budget_message(breach),
        // The message may quote the input; keep control characters out of the terminal.
        other => UserMessageFormatter
            .format_message(other)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    };
    (pos, SpecError::Yaml { message })
}

fn budget_message(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Depth { .. } => format!("nested more than {MAX_DEPTH} levels deep"),
        BudgetBreach::Aliases { .. } | BudgetBreach::AliasAnchorRatio { .. } => {
            format!("more than {MAX_ALIASES} aliases (*name) in one document")
        }
        BudgetBreach::Anchors { .. } => {
            format!("more than {MAX_ALIASES} anchors (&name) in one document")
        }
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => {
            format!("more than {MAX_NODES} values in one document")
        }
        BudgetBreach::Documents { .. } => {
            format!("more than {MAX_DOCUMENTS} documents in one file")
        }
        other => format!("document exceeds a parser limit ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::spec::tree::Value;

    fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    fn yaml_errors(text: &str) -> Vec<(Pos, String)> {
        documents(text).1.into_iter().map(|(p, e)| (p, e.to_string())).collect()
    }

    #[test]
    fn reads_a_small_text_file() {
        let file = write_temp(b"name: a\n");
        assert_eq!(read_file(file.path(), MAX_FILE_BYTES).unwrap(), "name: a\n");
    }

    #[test]
    fn refuses_a_large_file_before_reading_it() {
        let file = tempfile::NamedTempFile::new().unwrap();
        // Sparse: the size is there without the bytes, so only a size check can be fast.
        file.as_file().set_len(1 << 40).unwrap();
        let (pos, error) = read_file(file.path(), MAX_FILE_BYTES).unwrap_err();
        assert_eq!(pos, Pos::UNKNOWN);
        assert_eq!(error, SpecError::TooLarge { size: 1 << 40, limit: MAX_FILE_BYTES });
    }

    #[test]
    fn refuses_endless_special_files() {
        let (_, error) = read_file(Path::new("/dev/zero"), MAX_FILE_BYTES).unwrap_err();
        assert_eq!(error, SpecError::TooLarge { size: MAX_FILE_BYTES + 1, limit: MAX_FILE_BYTES });
    }

    #[test]
    fn refuses_a_fifo_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let (_, error) = read_file(&fifo, MAX_FILE_BYTES).unwrap_err();
        assert!(matches!(&error, SpecError::Read { reason } if reason.contains("fifo")), "{error}");
    }

    #[test]
    fn refuses_directories_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_file(dir.path(), MAX_FILE_BYTES), Err((_, SpecError::Read { .. }))));
        let missing = dir.path().join("nope.yaml");
        assert!(matches!(read_file(&missing, MAX_FILE_BYTES), Err((_, SpecError::Read { .. }))));
    }

    #[test]
    fn refuses_binary_data_with_its_position() {
        let file = write_temp(b"name: a\ncommand: [x\0y]\n");
        let (pos, error) = read_file(file.path(), MAX_FILE_BYTES).unwrap_err();
        assert_eq!((pos, error), (Pos::new(2, 12), SpecError::Binary));
        let elf = decode(b"\x7fELF\x02\x01\x01\0\0\0").unwrap_err();
        assert_eq!(elf, (Pos::new(1, 8), SpecError::Binary));
    }

    #[test]
    fn refuses_non_utf8_with_its_position() {
        let latin1 = decode(b"name: a\ndescription: caf\xe9\n").unwrap_err();
        assert_eq!(latin1, (Pos::new(2, 17), SpecError::NotUtf8 { byte: 0xe9 }));
        let utf16 = decode(b"\xff\xfen\0a\0").unwrap_err();
        assert_eq!(utf16.1, SpecError::Binary);
    }

    #[test]
    fn parses_several_documents_and_skips_empty_ones() {
        let (nodes, errors) = documents("name: a\n---\n---\nname: b\n...\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].pos, Pos::new(4, 1));
    }

    #[test]
    fn keeps_documents_before_a_syntax_error() {
        let (nodes, errors) = documents("name: a\n---\nname: b\n  bad: indent\n---\nname: c\n");
        assert_eq!(nodes.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0.line, 4);
        assert!(errors[0].1.to_string().starts_with("YAML: "), "{}", errors[0].1);
    }

    #[test]
    fn yaml_messages_are_plain_text() {
        let errors = yaml_errors("a: [x\n");
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].1.contains('\\'), "{errors:?}");
    }

    #[test]
    fn yes_no_octal_and_infinite_looking_values_stay_strings() {
        let (nodes, _) = documents("a: yes\nb: no\nc: on\nd: 0755\ne: true\nf: .inf\n");
        let Value::Map(entries) = &nodes[0].value else { panic!() };
        let values: Vec<_> = entries.iter().map(|(_, v)| v.value.clone()).collect();
        assert_eq!(
            values,
            vec![
                Value::Str("yes".into()),
                Value::Str("no".into()),
                Value::Str("on".into()),
                Value::Str("0755".into()),
                Value::Bool(true),
                Value::Str(".inf".into()),
            ]
        );
    }

    #[test]
    fn refuses_deep_nesting() {
        let block: String =
            (0..100).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect::<String>()
                + &"  ".repeat(100)
                + "x\n";
        let errors = yaml_errors(&block);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].1.contains("nested more than 32 levels"), "{errors:?}");

        let flow = "[".repeat(100_000) + &"]".repeat(100_000);
        let errors = yaml_errors(&flow);
        assert_eq!(errors.len(), 1, "{errors:?}");

        let ok = "[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1);
        assert!(yaml_errors(&ok).is_empty());
    }

    #[test]
    fn refuses_alias_bombs() {
        let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let errors = yaml_errors(&bomb);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].1.starts_with("YAML: "), "{errors:?}");

        let many_aliases = "base: &b 1\nlist: [".to_owned() + &vec!["*b"; 1000].join(", ") + "]\n";
        let errors = yaml_errors(&many_aliases);
        assert_eq!(errors.len(), 1, "{errors:?}");

        let fine = "base: &b {a: 1}\none: *b\ntwo: *b\n";
        assert!(yaml_errors(fine).is_empty());
    }

    #[test]
    fn refuses_too_many_documents() {
        let many = "a: 1\n---\n".repeat(MAX_DOCUMENTS + 10);
        let (nodes, errors) = documents(&many);
        assert_eq!(nodes.len(), MAX_DOCUMENTS);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].1, SpecError::TooManyDocuments { limit: MAX_DOCUMENTS });

        // A file full of empty documents is cheap to skip and yields nothing.
        let empty = "---\n".repeat((MAX_FILE_BYTES / 4) as usize);
        let (nodes, _) = documents(&empty);
        assert!(nodes.is_empty());
    }

    #[test]
    fn survives_a_megabyte_of_anything() {
        let long_scalar = "a: ".to_owned() + &"x".repeat(MAX_FILE_BYTES as usize - 10);
        assert!(yaml_errors(&long_scalar).is_empty());
        let brackets = "{".repeat(MAX_FILE_BYTES as usize);
        assert!(!yaml_errors(&brackets).is_empty());
        let keys: String = (0..40_000).map(|i| format!("k{i}: v\n")).collect();
        assert!(yaml_errors(&keys).is_empty());
    }
}
