//! The tree walker's toolkit: typed reads of [`Node`]s that record a [`Diagnostic`] for
//! every problem and carry on, so one pass over a document finds all of its mistakes.
//!
//! Every read returns `Option<T>`: `None` means "absent" or "wrong, and already reported".
//! Compilers read every field first and only then assemble their result, so a problem in one
//! field never hides a problem in another.
//!
//! A field that is present with a null value (`timeout:` or `timeout: ~`) counts as absent.

use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use super::duration;
use super::error::{Diagnostic, FieldPath, SpecError};
use super::tree::{Node, Pos, Value};
use crate::vocab::Bytes;

/// Collects the diagnostics of one file. `E` is the error type of the module doing the
/// compiling; it only has to be able to hold the shared [`SpecError`]s.
pub struct Checker<'f, E = SpecError> {
    file: &'f Path,
    diagnostics: Vec<Diagnostic<E>>,
}

impl<'f, E: From<SpecError>> Checker<'f, E> {
    pub fn new(file: &'f Path) -> Self {
        Checker { file, diagnostics: Vec::new() }
    }

    pub fn report(&mut self, pos: Pos, field: &FieldPath, error: impl Into<E>) {
        self.diagnostics.push(Diagnostic::new(self.file, pos, field.clone(), error));
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.len()
    }

    /// The diagnostics so far, sorted by position (the walk reports cross-field rules after
    /// the fields themselves; readers want them in file order).
    pub fn into_diagnostics(mut self) -> Vec<Diagnostic<E>> {
        self.diagnostics.sort_by_key(|d| d.pos);
        self.diagnostics
    }

    /// Opens a mapping whose allowed keys are `known`. Unknown keys, duplicate keys and
    /// non-string keys are reported here.
    pub fn map<'n>(
        &mut self,
        node: &'n Node,
        path: &FieldPath,
        known: &'static [&'static str],
    ) -> Option<Fields<'n>> {
        let entries = self.entries(node, path, Some(known))?;
        Some(Fields { pos: node.pos, path: path.clone(), entries })
    }

    /// Opens a mapping with free-form keys (environment variables). Duplicate and
    /// non-string keys are reported; every entry is returned in file order.
    pub fn free_map<'n>(&mut self, node: &'n Node, path: &FieldPath) -> Option<Vec<Entry<'n>>> {
        self.entries(node, path, None)
    }

    /// The entries of a mapping in file order, less the ones reported: keys that are not
    /// strings, repeated, or (if `known` is given) not in `known`.
    fn entries<'n>(
        &mut self,
        node: &'n Node,
        path: &FieldPath,
        known: Option<&'static [&'static str]>,
    ) -> Option<Vec<Entry<'n>>> {
        let Value::Map(entries) = &node.value else {
            self.report(node.pos, path, SpecError::wrong_type("a mapping", &node.value));
            return None;
        };
        let mut out: Vec<Entry<'n>> = Vec::new();
        for (key, value) in entries {
            let Some(text) = self.key(key, path) else { continue };
            if let Some(first) = out.iter().find(|e| e.key == text) {
                let first_line = first.key_pos.line;
                let error = SpecError::DuplicateKey { key: text.clone(), first_line };
                self.report(key.pos, &path.key(&text), error);
            } else if let Some(known) = known.filter(|k| !k.contains(&text.as_str())) {
                let error = SpecError::UnknownField {
                    key: text.clone(),
                    suggestion: closest(&text, known),
                };
                self.report(key.pos, &path.key(&text), error);
            } else {
                out.push(Entry { key: text, key_pos: key.pos, value });
            }
        }
        Some(out)
    }

    fn key(&mut self, key: &Node, path: &FieldPath) -> Option<String> {
        match &key.value {
            Value::Str(s) => Some(s.clone()),
            // `1: x` or `true: x`: YAML typed the key, but it is still a name the user wrote.
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.report(key.pos, path, SpecError::KeyNotString { found: other.kind() });
                None
            }
        }
    }

    pub fn seq<'n>(&mut self, node: &'n Node, path: &FieldPath) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            other => {
                self.report(node.pos, path, SpecError::wrong_type("a list", other));
                None
            }
        }
    }

    /// A string. Plain scalars that YAML reads as numbers or booleans are refused, so that
    /// `name: 0x10` does not silently become `16`; quoting them makes them strings.
    pub fn string(&mut self, node: &Node, path: &FieldPath) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            other => {
                self.report(node.pos, path, SpecError::wrong_type("a string", other));
                None
            }
        }
    }

    /// A string, or an integer or boolean taken as its text: for values such as environment
    /// variables and user ids, where `1` and `"1"` mean the same thing to everyone.
    pub fn text(&mut self, node: &Node, path: &FieldPath) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.report(node.pos, path, SpecError::wrong_type("a string", other));
                None
            }
        }
    }

    pub fn boolean(&mut self, node: &Node, path: &FieldPath) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            other => {
                self.report(node.pos, path, SpecError::wrong_type("true or false", other));
                None
            }
        }
    }

    /// An integer within `range`.
    pub fn int<T>(&mut self, node: &Node, path: &FieldPath, range: RangeInclusive<T>) -> Option<T>
    where
        T: TryFrom<i128> + Into<i128> + Copy,
    {
        let (min, max): (i128, i128) = ((*range.start()).into(), (*range.end()).into());
        let value = match &node.value {
            Value::Int(i) => *i,
            other => {
                self.report(node.pos, path, SpecError::wrong_type("an integer", other));
                return None;
            }
        };
        if value < min || value > max {
            self.report(
                node.pos,
                path,
                SpecError::OutOfRange { value: value.to_string(), min, max },
            );
            return None;
        }
        T::try_from(value).ok()
    }

    /// One of a fixed set of words.
    pub fn choice<C: Choice>(&mut self, node: &Node, path: &FieldPath) -> Option<C> {
        let text = self.text(node, path)?;
        match C::ALL.iter().find(|(word, _)| *word == text) {
            Some((_, value)) => Some(*value),
            None => {
                let allowed = C::ALL.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(", ");
                self.report(node.pos, path, SpecError::NotOneOf { value: text, allowed });
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, path: &FieldPath) -> Option<Duration> {
        let text = self.duration_text(node, path)?;
        match duration::parse(&text) {
            Ok(d) => Some(d),
            Err(reason) => {
                self.report(node.pos, path, SpecError::Duration { value: text, reason });
                None
            }
        }
    }

    /// A duration longer than zero, for waits where zero would mean "immediately, always".
    pub fn positive_duration(&mut self, node: &Node, path: &FieldPath) -> Option<Duration> {
        let d = self.duration(node, path)?;
        if d.is_zero() {
            let reason = "it must be longer than zero".to_owned();
            let value = duration::format(d);
            self.report(node.pos, path, SpecError::Invalid { what: "duration", value, reason });
            return None;
        }
        Some(d)
    }

    /// The text of a duration-like value; a bare YAML integer is passed through as text so
    /// that the duration parser can say "missing unit" instead of "wrong type".
    fn duration_text(&mut self, node: &Node, path: &FieldPath) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            other => {
                self.report(node.pos, path, SpecError::wrong_type("a duration such as 30s", other));
                None
            }
        }
    }

    /// A byte quantity: a YAML integer (bytes) or a string with a unit (`512Mi`).
    pub fn bytes(&mut self, node: &Node, path: &FieldPath) -> Option<Bytes> {
        match &node.value {
            Value::Int(i) => match u64::try_from(*i) {
                Ok(n) => Some(Bytes(n)),
                Err(_) => {
                    let reason = if *i < 0 {
                        crate::vocab::QuantityError::Negative
                    } else {
                        crate::vocab::QuantityError::Overflow
                    };
                    self.report(
                        node.pos,
                        path,
                        SpecError::Quantity { value: i.to_string(), reason },
                    );
                    None
                }
            },
            Value::Str(s) => match Bytes::parse(s) {
                Ok(b) => Some(b),
                Err(reason) => {
                    self.report(node.pos, path, SpecError::Quantity { value: s.clone(), reason });
                    None
                }
            },
            other => {
                self.report(
                    node.pos,
                    path,
                    SpecError::wrong_type("a quantity such as 512Mi", other),
                );
                None
            }
        }
    }

    /// A decimal number checked by `parse`, whose reason is reported as an invalid `what`.
    /// A YAML number is read back through its shortest decimal spelling, so `1.5` is the
    /// text 1.5 and not the binary fraction nearest to it; a string is taken as written
    /// (`500m`).
    pub fn decimal<T>(
        &mut self,
        node: &Node,
        path: &FieldPath,
        expected: &'static str,
        what: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = match &node.value {
            Value::Int(i) => i.to_string(),
            Value::Float(x) if x.is_finite() && *x >= 0.0 => format!("{x}"),
            Value::Str(s) => s.clone(),
            other => {
                self.report(node.pos, path, SpecError::wrong_type(expected, other));
                return None;
            }
        };
        match parse(&text) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.report(node.pos, path, SpecError::Invalid { what, value: text, reason });
                None
            }
        }
    }

    /// A string checked by `parse`, whose error is reported at the node.
    pub fn parsed<T>(
        &mut self,
        node: &Node,
        path: &FieldPath,
        parse: impl FnOnce(&str) -> Result<T, SpecError>,
    ) -> Option<T> {
        let text = self.string(node, path)?;
        parse(&text).map_err(|error| self.report(node.pos, path, error)).ok()
    }

    /// Like [`Checker::parsed`], but accepting integers and booleans as their text.
    pub fn parsed_text<T>(
        &mut self,
        node: &Node,
        path: &FieldPath,
        parse: impl FnOnce(&str) -> Result<T, SpecError>,
    ) -> Option<T> {
        let text = self.text(node, path)?;
        parse(&text).map_err(|error| self.report(node.pos, path, error)).ok()
    }
}

/// Reads an optional field: `Some(None)` when absent, `Some(Some(value))` when present and
/// valid, `None` when present and wrong (already reported).
pub fn optional<T>(
    node: Option<&Node>,
    read: impl FnOnce(&Node) -> Option<T>,
) -> Option<Option<T>> {
    match node {
        None => Some(None),
        Some(node) => read(node).map(Some),
    }
}

/// One entry of a mapping, its key already checked to be a string.
#[derive(Debug, Clone)]
pub struct Entry<'n> {
    pub key: String,
    pub key_pos: Pos,
    pub value: &'n Node,
}

/// The known fields of one mapping.
#[derive(Debug)]
pub struct Fields<'n> {
    pos: Pos,
    path: FieldPath,
    entries: Vec<Entry<'n>>,
}

impl<'n> Fields<'n> {
    /// The value of `key`, unless it is absent or null.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.value).filter(|v| !v.is_null())
    }

    /// Whether `key` is set to something other than null.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Where `key` is written, for rules that concern the field rather than its value;
    /// the mapping's own position when the key is absent.
    pub fn key_pos(&self, key: &str) -> Pos {
        self.entries.iter().find(|e| e.key == key).map(|e| e.key_pos).unwrap_or(self.pos)
    }

    /// The position of the mapping itself.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// The path of the mapping itself.
    pub fn path(&self) -> &FieldPath {
        &self.path
    }

    /// The path of one of its fields.
    pub fn field(&self, key: &str) -> FieldPath {
        self.path.key(key)
    }

    /// The value of a required key; reports it missing (at the mapping) otherwise.
    pub fn require<E: From<SpecError>>(
        &self,
        cx: &mut Checker<'_, E>,
        key: &'static str,
    ) -> Option<&'n Node> {
        let node = self.get(key);
        if node.is_none() {
            cx.report(self.key_pos(key), &self.path, SpecError::Missing { field: key });
        }
        node
    }
}

/// A closed set of words in a job file, each naming one variant.
pub trait Choice: Copy + 'static {
    const ALL: &'static [(&'static str, Self)];

    /// The word for this variant, as written in files and printed in messages.
    fn word(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL.iter().find(|(_, v)| *v == self).map(|(w, _)| *w).unwrap_or("?")
    }
}

/// Implements [`Choice`] and `Display` for a field-less enum: `choice!(Concurrency { "allow" => Allow, ... })`.
macro_rules! choice {
    ($ty:ident { $($word:literal => $variant:ident),+ $(,)? }) => {
        impl $crate::spec::check::Choice for $ty {
            const ALL: &'static [(&'static str, Self)] = &[$(($word, $ty::$variant)),+];
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::spec::check::Choice::word(*self))
            }
        }
    };
}
pub(crate) use choice;

/// The known field closest to a misspelt one, if any is close enough to be a likely typo.
fn closest(word: &str, known: &[&'static str]) -> Option<&'static str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    let typo = known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    // A truncated name (`success` for `successful`) is far in edits but obvious to a reader.
    typo.or_else(|| {
        (word.len() >= 4).then(|| known.iter().find(|k| k.starts_with(word)).copied()).flatten()
    })
}

/// Levenshtein distance; both words are short field names, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev_diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev_diag + usize::from(ca != *cb);
            prev_diag = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(value: Value, line: u32) -> Node {
        Node::new(value, Pos::new(line, 1))
    }

    #[test]
    fn closest_finds_typos_but_not_unrelated_words() {
        let known = &["command", "schedule", "timezone", "cpus"];
        assert_eq!(closest("comand", known), Some("command"));
        assert_eq!(closest("shedule", known), Some("schedule"));
        assert_eq!(closest("time_zone", known), Some("timezone"));
        assert_eq!(closest("cpu", known), Some("cpus"));
        assert_eq!(closest("sched", known), Some("schedule"));
        assert_eq!(closest("banana", known), None);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "abd"), 1);
        assert_eq!(edit_distance("abc", "ab"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn map_reports_unknown_duplicate_and_non_string_keys_and_keeps_going() {
        let map = node(
            Value::Map(vec![
                (node(Value::Str("a".into()), 1), node(Value::Int(1), 1)),
                (node(Value::Str("a".into()), 2), node(Value::Int(2), 2)),
                (node(Value::Str("bb".into()), 3), node(Value::Int(3), 3)),
                (node(Value::Seq(vec![]), 4), node(Value::Int(4), 4)),
                (node(Value::Str("c".into()), 5), node(Value::Null, 5)),
            ]),
            1,
        );
        let mut cx: Checker = Checker::new(Path::new("f"));
        let fields = cx.map(&map, &FieldPath::root(), &["a", "b", "c"]).unwrap();
        assert_eq!(fields.get("a").map(|n| &n.value), Some(&Value::Int(1)));
        assert!(fields.get("c").is_none(), "null counts as absent");
        assert_eq!(fields.key_pos("a"), Pos::new(1, 1));
        let errors: Vec<_> =
            cx.into_diagnostics().into_iter().map(|d| (d.pos.line, d.error)).collect();
        assert_eq!(
            errors,
            vec![
                (2, SpecError::DuplicateKey { key: "a".into(), first_line: 1 }),
                (3, SpecError::UnknownField { key: "bb".into(), suggestion: Some("b") }),
                (4, SpecError::KeyNotString { found: "a list" }),
            ]
        );
    }

    #[test]
    fn int_checks_type_and_range() {
        let mut cx: Checker = Checker::new(Path::new("f"));
        let p = FieldPath::root().key("n");
        assert_eq!(cx.int(&node(Value::Int(5), 1), &p, 1u32..=10), Some(5));
        assert_eq!(cx.int(&node(Value::Int(0), 2), &p, 1u32..=10), None);
        assert_eq!(cx.int(&node(Value::Str("5".into()), 3), &p, 1u32..=10), None);
        assert_eq!(cx.int(&node(Value::Float(1.5), 4), &p, 1u32..=10), None);
        let errors: Vec<_> =
            cx.into_diagnostics().into_iter().map(|d| d.error.to_string()).collect();
        assert_eq!(
            errors,
            vec![
                "0 is out of range; allowed: 1 to 10",
                "expected an integer, found the string \"5\"",
                "expected an integer, found the number 1.5",
            ]
        );
    }

    #[test]
    fn strings_refuse_typed_scalars_but_text_accepts_them() {
        let mut cx: Checker = Checker::new(Path::new("f"));
        let p = FieldPath::root();
        assert_eq!(cx.string(&node(Value::Int(16), 1), &p), None);
        assert_eq!(cx.text(&node(Value::Int(16), 1), &p).as_deref(), Some("16"));
        assert_eq!(cx.text(&node(Value::Bool(true), 1), &p).as_deref(), Some("true"));
        assert_eq!(cx.text(&node(Value::Float(1.5), 1), &p), None);
    }
}
