//! `array:` — one job, many runs, each with its own index (Slurm's `--array`).
//!
//! The indices are written as Slurm writes them: a list of single numbers
//! and ranges, a range with an optional step (`0-99`, `0-99:2`, `1,3,5-9`),
//! and, in the one-string form, an optional `%PARALLEL` at the end
//! (`0-99:2%10`). The mapping form spells the cap out:
//! `array: {indices: 0-99, parallel: 10}`.
//!
//! Each index becomes one run of the job with `CORRAL_ARRAY_INDEX`,
//! `CORRAL_ARRAY_COUNT` and `CORRAL_ARRAY_ID` in its environment
//! ([`ArraySpec::spec_for`]); at most `parallel` of them are placed at once.

use std::collections::BTreeSet;
use std::fmt;

use super::check::Checker;
use super::error::{FieldPath, SpecError};
use super::job::JobSpec;
use super::tree::{Node, Value};

/// The most indices one array may have: every index is a run on record, and
/// a node runs hundreds, not millions.
pub const MAX_INDICES: usize = 10_000;
/// The largest index: indices are `u32` in the store and the environment,
/// and Slurm's own maximum is far below this.
pub const MAX_INDEX: u32 = 999_999;

/// The environment variables an index's run sees.
pub const ENV_INDEX: &str = "CORRAL_ARRAY_INDEX";
pub const ENV_COUNT: &str = "CORRAL_ARRAY_COUNT";
pub const ENV_ID: &str = "CORRAL_ARRAY_ID";

/// The indices of an array and how many of its runs may be placed at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArraySpec {
    /// Ascending, each once, never empty.
    pub indices: Vec<u32>,
    /// `None`: no cap of its own (the node's resources are the cap).
    pub parallel: Option<u32>,
}

impl ArraySpec {
    pub fn count(&self) -> usize {
        self.indices.len()
    }

    /// The spec the run of `index` runs: `spec` with the array's variables in
    /// its environment. The variables are the agent's: they replace any of
    /// the same name in the file.
    pub fn spec_for(&self, spec: &JobSpec, index: u32) -> JobSpec {
        let mut one = spec.clone();
        one.env.insert(ENV_INDEX.into(), index.to_string());
        one.env.insert(ENV_COUNT.into(), self.count().to_string());
        one.env.insert(ENV_ID.into(), spec.name.to_string());
        one
    }
}

impl fmt::Display for ArraySpec {
    /// The one-string form (`0-8:2%3`), compressing runs of equal steps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_indices(&self.indices))?;
        if let Some(p) = self.parallel {
            write!(f, "%{p}")?;
        }
        Ok(())
    }
}

/// Why an index expression is wrong; the text follows "invalid array indices".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("it is empty")]
    Empty,
    #[error("{part:?} is not a number, a range `A-B` or a stepped range `A-B:STEP`")]
    Syntax { part: String },
    #[error("{value} is larger than the largest index, {MAX_INDEX}")]
    TooLarge { value: u64 },
    #[error("range {part:?} ends before it starts")]
    Backwards { part: String },
    #[error("step 0 in {part:?}; a step is at least 1")]
    ZeroStep { part: String },
    #[error("it has more than {MAX_INDICES} indices")]
    TooMany,
    #[error("{index} is listed twice")]
    Twice { index: u32 },
    #[error("the parallel cap {value:?} is not a number from 1 up")]
    Parallel { value: String },
}

/// The indices `text` lists (`0-99`, `0-99:2`, `1,3,5-9`), ascending.
pub fn parse_indices(text: &str) -> Result<Vec<u32>, IndexError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(IndexError::Empty);
    }
    let mut seen = BTreeSet::new();
    for part in text.split(',') {
        let part = part.trim();
        let syntax = || IndexError::Syntax { part: part.to_owned() };
        let (range, step) = match part.split_once(':') {
            Some((range, step)) => (range, number(step).ok_or_else(syntax)?),
            None => (part, 1),
        };
        let (start, end) = match range.split_once('-') {
            Some((a, b)) => (number(a).ok_or_else(syntax)?, number(b).ok_or_else(syntax)?),
            None if step == 1 && !part.contains(':') => {
                let n = number(range).ok_or_else(syntax)?;
                (n, n)
            }
            None => return Err(syntax()),
        };
        for value in [start, end] {
            if value > u64::from(MAX_INDEX) {
                return Err(IndexError::TooLarge { value });
            }
        }
        if end < start {
            return Err(IndexError::Backwards { part: part.to_owned() });
        }
        if step == 0 {
            return Err(IndexError::ZeroStep { part: part.to_owned() });
        }
        // Checked before the loop: `0-999999` must not build a million-entry set.
        if (end - start) / step + 1 + seen.len() as u64 > MAX_INDICES as u64 {
            return Err(IndexError::TooMany);
        }
        let mut i = start;
        while i <= end {
            let index = i as u32;
            if !seen.insert(index) {
                return Err(IndexError::Twice { index });
            }
            i += step;
        }
    }
    Ok(seen.into_iter().collect())
}

/// The one-string form: indices with an optional `%PARALLEL`.
pub fn parse_array(text: &str) -> Result<ArraySpec, IndexError> {
    let (indices, parallel) = match text.rsplit_once('%') {
        Some((indices, cap)) => {
            let bad = || IndexError::Parallel { value: cap.to_owned() };
            let cap = number(cap).filter(|&n| n >= 1).ok_or_else(bad)?;
            (indices, Some(u32::try_from(cap).map_err(|_| bad())?))
        }
        None => (text, None),
    };
    Ok(ArraySpec { indices: parse_indices(indices)?, parallel })
}

/// A decimal number of at most 18 digits (so that sums never overflow).
fn number(text: &str) -> Option<u64> {
    let text = text.trim();
    (!text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Ascending indices written back as the shortest list of stepped ranges
/// the greedy reading finds; [`parse_indices`] reads it back to the same list.
pub fn format_indices(indices: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        if i + 2 < indices.len() {
            let step = indices[i + 1] - start;
            let mut j = i + 1;
            while j + 1 < indices.len() && indices[j + 1] - indices[j] == step {
                j += 1;
            }
            if j >= i + 2 {
                let end = indices[j];
                parts.push(if step == 1 {
                    format!("{start}-{end}")
                } else {
                    format!("{start}-{end}:{step}")
                });
                i = j + 1;
                continue;
            }
        }
        parts.push(start.to_string());
        i += 1;
    }
    parts.join(",")
}

/// The fields of the mapping form.
const FIELDS: &[&str] = &["indices", "parallel"];

/// Compiles `array:` (absent: `Some(None)`).
pub fn compile(
    cx: &mut Checker,
    node: Option<&Node>,
    path: &FieldPath,
) -> Option<Option<ArraySpec>> {
    let Some(node) = node else { return Some(None) };
    let invalid = |value: &str, e: IndexError| SpecError::Invalid {
        what: "array",
        value: value.to_owned(),
        reason: e.to_string(),
    };
    match &node.value {
        Value::Str(text) => match parse_array(text) {
            Ok(array) => Some(Some(array)),
            Err(e) => {
                cx.report(node.pos, path, invalid(text, e));
                None
            }
        },
        Value::Int(_) => {
            let n = cx.int(node, path, 0..=MAX_INDEX)?;
            Some(Some(ArraySpec { indices: vec![n], parallel: None }))
        }
        Value::Map(_) => {
            let fields = cx.map(node, path, FIELDS)?;
            let indices_path = fields.field("indices");
            let indices = fields.require(cx, "indices").and_then(|n| match &n.value {
                Value::Int(_) => cx.int(n, &indices_path, 0..=MAX_INDEX).map(|i| vec![i]),
                _ => cx.parsed_text(n, &indices_path, |text| {
                    if text.contains('%') {
                        return Err(SpecError::Invalid {
                            what: "array indices",
                            value: text.to_owned(),
                            reason: "write the cap as `parallel:` in the mapping form".into(),
                        });
                    }
                    parse_indices(text).map_err(|e| SpecError::Invalid {
                        what: "array indices",
                        value: text.to_owned(),
                        reason: e.to_string(),
                    })
                }),
            });
            let parallel = match fields.get("parallel") {
                None => Some(None),
                Some(n) => cx.int(n, &fields.field("parallel"), 1..=u32::MAX).map(Some),
            };
            Some(Some(ArraySpec { indices: indices?, parallel: parallel? }))
        }
        other => {
            cx.report(
                node.pos,
                path,
                SpecError::wrong_type("indices such as \"0-9%2\" or a mapping", other),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ranges_steps_and_lists() {
        assert_eq!(parse_indices("0-3").unwrap(), [0, 1, 2, 3]);
        assert_eq!(parse_indices("0-9:3").unwrap(), [0, 3, 6, 9]);
        assert_eq!(parse_indices("1,3,5-7").unwrap(), [1, 3, 5, 6, 7]);
        assert_eq!(parse_indices(" 4 ").unwrap(), [4]);
        assert_eq!(parse_indices("7,2").unwrap(), [2, 7]);
        let a = parse_array("0-99:2%10").unwrap();
        assert_eq!(a.count(), 50);
        assert_eq!(a.parallel, Some(10));
        assert_eq!(a.to_string(), "0-98:2%10");
    }

    #[test]
    fn each_mistake_has_its_reason() {
        let cases: &[(&str, IndexError)] = &[
            ("", IndexError::Empty),
            ("a-3", IndexError::Syntax { part: "a-3".into() }),
            ("5:2", IndexError::Syntax { part: "5:2".into() }),
            ("3-1", IndexError::Backwards { part: "3-1".into() }),
            ("0-4:0", IndexError::ZeroStep { part: "0-4:0".into() }),
            ("1,1", IndexError::Twice { index: 1 }),
            ("0-10,5", IndexError::Twice { index: 5 }),
            ("0-10000", IndexError::TooMany),
            ("1000000", IndexError::TooLarge { value: 1_000_000 }),
            ("-1", IndexError::Syntax { part: "-1".into() }),
        ];
        for (text, expected) in cases {
            assert_eq!(&parse_indices(text).unwrap_err(), expected, "{text}");
        }
        assert_eq!(parse_array("0-3%0").unwrap_err(), IndexError::Parallel { value: "0".into() });
        assert_eq!(
            parse_indices("3-1").unwrap_err().to_string(),
            "range \"3-1\" ends before it starts"
        );
    }

    #[test]
    fn an_array_neither_fires_on_a_schedule_nor_waits_for_other_jobs() {
        let base = "name: s\ncommand: [/bin/true]\narray: 0-3\n";
        for (extra, other) in [("schedule: '@hourly'\n", "schedule"), ("after: [x]\n", "after")] {
            let problems = crate::spec::testutil::compile(&format!("{base}{extra}")).unwrap_err();
            assert!(
                problems.iter().any(|p| p.starts_with("3 array: ") && p.contains(other)),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn the_index_variables_are_the_agents() {
        let spec = crate::spec::compile_str(
            std::path::Path::new("t.yaml"),
            "name: s\ncommand: [/bin/true]\nenv: {CORRAL_ARRAY_INDEX: mine, KEEP: x}\narray: 0-3:2\n",
        )
        .unwrap()
        .remove(0)
        .spec;
        let array = spec.array.clone().unwrap();
        let one = array.spec_for(&spec, 2);
        assert_eq!(one.env["CORRAL_ARRAY_INDEX"], "2");
        assert_eq!(one.env["CORRAL_ARRAY_COUNT"], "2");
        assert_eq!(one.env["CORRAL_ARRAY_ID"], "s");
        assert_eq!(one.env["KEEP"], "x");
    }

    proptest! {
        /// Whatever list of stepped ranges is written, the indices are the
        /// union of what each part names, ascending, each once.
        #[test]
        fn parsing_is_the_union_of_the_parts(
            parts in prop::collection::vec((0u32..500, 0u32..60, 1u32..7), 1..6)
        ) {
            let text = parts
                .iter()
                .map(|&(start, len, step)| format!("{start}-{}:{step}", start + len))
                .collect::<Vec<_>>()
                .join(",");
            let mut expected: Vec<u32> = Vec::new();
            let mut twice = false;
            for &(start, len, step) in &parts {
                for i in (start..=start + len).step_by(step as usize) {
                    if expected.contains(&i) { twice = true; }
                    expected.push(i);
                }
            }
            expected.sort_unstable();
            match parse_indices(&text) {
                Ok(got) => { prop_assert!(!twice); prop_assert_eq!(got, expected); }
                Err(IndexError::Twice { .. }) => prop_assert!(twice),
                Err(e) => prop_assert!(false, "{text}: {e}"),
            }
        }

        /// The one-string form reads back to the same array.
        #[test]
        fn formatting_round_trips(
            set in prop::collection::btree_set(0u32..2000, 1..200),
            parallel in prop::option::of(1u32..50),
        ) {
            let array = ArraySpec { indices: set.into_iter().collect(), parallel };
            prop_assert_eq!(parse_array(&array.to_string()).unwrap(), array);
        }

        /// Nothing typed makes the parser panic or hand out more than the cap.
        #[test]
        fn any_text_is_parsed_or_refused(text in "[0-9,:%\\- ]{0,24}") {
            if let Ok(array) = parse_array(&text) {
                prop_assert!(!array.indices.is_empty() && array.indices.len() <= MAX_INDICES);
                prop_assert!(array.indices.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
