//! A job submitted with `corral submit`: one job file's text, with `--set`
//! overrides applied before it is compiled.
//!
//! An override is `KEY=VALUE`. `KEY` is a dotted path of mapping keys from
//! the top of the job (`priority`, `env.FOO`, `resources.memory.hard`,
//! `array.parallel`); the mappings on the way are created when the file has
//! none. `VALUE` is read as a YAML value, exactly as if it were written in
//! the file at that place (`80` is a number, `1Gi` a string,
//! `[/bin/sh, -c, "exit 3"]` a list). The result is compiled by the same
//! compiler as a job file, so every problem is reported as for a file; a
//! problem in a value that an override set is reported against the
//! override (`--set priority=high: priority: expected an integer, …`).
//!
//! The client and the agent both compile: the client to report problems
//! before anything is sent, the agent because it trusts no client. The agent
//! keeps the text and the overrides, not the compiled job, and compiles them
//! again after a restart: the result is the same job.

use std::path::{Path, PathBuf};

use super::error::{Diagnostic, Diagnostics, FieldPath, SpecError};
use super::load::{self, Job};
use super::source;
use super::tree::{Node, Pos, Value};

/// One `--set KEY=VALUE`, checked for shape (not yet for meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub keys: Vec<String>,
    pub value: Node,
    /// As the user wrote it, for messages.
    pub text: String,
}

/// Why an override is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("--set {text:?}: expected KEY=VALUE, such as priority=80 or env.FOO=1")]
    NoEquals { text: String },
    #[error(
        "--set {text:?}: the key has an empty part; write dotted keys like resources.memory.hard"
    )]
    EmptyKey { text: String },
    #[error("--set {text:?}: the value is not one YAML value: {reason}")]
    Value { text: String, reason: String },
    #[error("--set {text:?}: {key:?} is {found} in the file, not a mapping, so it has no fields")]
    NotAMapping { text: String, key: String, found: &'static str },
}

/// Reads `KEY=VALUE`.
pub fn parse_override(text: &str) -> Result<Override, OverrideError> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(OverrideError::NoEquals { text: text.to_owned() });
    };
    let keys: Vec<String> = key.split('.').map(str::to_owned).collect();
    if keys.iter().any(|k| k.trim().is_empty()) {
        return Err(OverrideError::EmptyKey { text: text.to_owned() });
    }
    let (mut documents, errors) = source::documents(value);
    if let Some((_, e)) = errors.first() {
        return Err(OverrideError::Value { text: text.to_owned(), reason: e.to_string() });
    }
    let value = match documents.len() {
        // `KEY=` is an empty value, as `KEY:` with nothing after it in a file.
        0 => Node::new(Value::Null, Pos::UNKNOWN),
        1 => documents.remove(0),
        _ => {
            return Err(OverrideError::Value {
                text: text.to_owned(),
                reason: "it holds several documents".into(),
            })
        }
    };
    Ok(Override { keys, value: unplaced(value), text: text.to_owned() })
}

/// `node` with no position anywhere: its positions are within the
/// override's text, not the file.
fn unplaced(node: Node) -> Node {
    let value = match node.value {
        Value::Seq(items) => Value::Seq(items.into_iter().map(unplaced).collect()),
        Value::Map(entries) => {
            Value::Map(entries.into_iter().map(|(k, v)| (unplaced(k), unplaced(v))).collect())
        }
        other => other,
    };
    Node::new(value, Pos::UNKNOWN)
}

/// Sets `over` in `document`.
fn apply(document: &mut Node, over: &Override) -> Result<(), OverrideError> {
    let mut node = document;
    for (depth, key) in over.keys.iter().enumerate() {
        if node.is_null() {
            node.value = Value::Map(Vec::new());
        }
        let found = node.value.kind();
        let Value::Map(entries) = &mut node.value else {
            return Err(OverrideError::NotAMapping {
                text: over.text.clone(),
                key: over.keys[..depth].join("."),
                found,
            });
        };
        let at = entries.iter().position(|(k, _)| matches!(&k.value, Value::Str(s) if s == key));
        let at = at.unwrap_or_else(|| {
            let key = Node::new(Value::Str(key.clone()), Pos::UNKNOWN);
            entries.push((key, Node::new(Value::Null, Pos::UNKNOWN)));
            entries.len() - 1
        });
        node = &mut entries[at].1;
    }
    *node = over.value.clone();
    Ok(())
}

/// Compiles the one job in `text` (from `file`) with `overrides` applied.
pub fn compile(file: &Path, text: &str, overrides: &[String]) -> Result<Job, Diagnostics> {
    let at_file = |error: SpecError| {
        Diagnostics(vec![Diagnostic::new(file, Pos::UNKNOWN, FieldPath::root(), error)])
    };
    let parsed: Vec<Override> =
        overrides.iter().map(|o| parse_override(o)).collect::<Result<_, _>>().map_err(|e| {
            at_file(SpecError::Invalid {
                what: "override",
                value: String::new(),
                reason: e.to_string(),
            })
        })?;
    let (mut documents, errors) = source::documents(text);
    if let Some((pos, error)) = errors.into_iter().next() {
        return Err(Diagnostics(vec![Diagnostic::new(file, pos, FieldPath::root(), error)]));
    }
    if documents.len() != 1 {
        return Err(at_file(SpecError::Invalid {
            what: "submission",
            value: format!("{} documents", documents.len()),
            reason: "a submitted file holds exactly one job".into(),
        }));
    }
    let mut document = documents.remove(0);
    for over in &parsed {
        apply(&mut document, over).map_err(|e| {
            at_file(SpecError::Invalid {
                what: "override",
                value: over.text.clone(),
                reason: e.to_string(),
            })
        })?;
    }
    load::compile_document(file, &document).map_err(|Diagnostics(found)| {
        Diagnostics(found.into_iter().map(|d| blame(d, &parsed)).collect())
    })
}

/// A problem in a field an override set is the override's, not the file's.
fn blame(mut d: Diagnostic, overrides: &[Override]) -> Diagnostic {
    let field = d.field.to_string();
    // The last override wins when several set the same place.
    let culprit = overrides.iter().rev().find(|o| {
        let key = o.keys.join(".");
        field == key
            || field.starts_with(&format!("{key}."))
            || field.starts_with(&format!("{key}["))
    });
    if let Some(o) = culprit {
        d.file = PathBuf::from(format!("--set {}", o.text));
        d.pos = Pos::UNKNOWN;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "name: sweep\ncommand: [/bin/true]\npriority: 40\n";

    fn job(overrides: &[&str]) -> Result<Job, Diagnostics> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        compile(Path::new("s.yaml"), FILE, &overrides)
    }

    #[test]
    fn overrides_replace_add_and_create_mappings() {
        let j = job(&[
            "priority=80",
            "env.FOO=1",
            "resources.memory.hard=64Mi",
            "command=[/bin/sh, -c, 'exit 3']",
            "array=0-3%2",
            "name=other",
        ])
        .unwrap();
        assert_eq!(j.spec.priority.get(), 80);
        assert_eq!(j.spec.env["FOO"], "1");
        assert_eq!(j.spec.command.args, ["-c", "exit 3"]);
        assert_eq!(j.spec.array.unwrap().parallel, Some(2));
        assert_eq!(j.spec.name.as_str(), "other");
        assert!(j.spec.resources.memory.hard.is_some());
    }

    #[test]
    fn a_bad_value_is_blamed_on_its_override() {
        let err = job(&["priority=high"]).unwrap_err().to_string();
        assert!(err.starts_with("--set priority=high: priority: expected"), "{err}");
        let err = job(&["prority=3"]).unwrap_err().to_string();
        assert!(
            err.contains("--set prority=3") && err.contains("did you mean `priority`"),
            "{err}"
        );
        let err = job(&["name.x=1"]).unwrap_err().to_string();
        assert!(err.contains("\"name\" is a string in the file, not a mapping"), "{err}");
        assert!(job(&["novalue"]).unwrap_err().to_string().contains("expected KEY=VALUE"));
        assert!(job(&["a..b=1"]).unwrap_err().to_string().contains("empty part"));
    }

    #[test]
    fn problems_of_the_file_keep_their_position() {
        let overrides = vec!["priority=50".to_string()];
        let err = compile(Path::new("s.yaml"), "name: s\ncommand: 5\n", &overrides)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:2:10: command:"), "{err}");
        let two = compile(
            Path::new("s.yaml"),
            "name: a\ncommand: [x]\n---\nname: b\ncommand: [x]\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(two.contains("exactly one job"), "{two}");
    }
}
