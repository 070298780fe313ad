//! Submitted jobs: a job file's text and `--set` overrides through the
//! compiler `corral submit` and the agent use, and array index expressions.
//!
//! Input: `text NUL override NUL override …`. Beyond not panicking: a
//! submission either compiles to one job or is refused with at least one
//! diagnostic, each naming the file or the override it blames; an accepted
//! array has at least one index, each once, ascending, at most
//! `MAX_INDICES`; compiling is deterministic. Each override, read as an
//! array expression, is refused or reads back from its own formatting.

#![no_main]

use std::path::Path;

use corral::spec::array::{parse_array, MAX_INDICES};
use corral::spec::submission::compile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(input) = std::str::from_utf8(bytes) else { return };
    let mut parts = input.split('\0');
    let text = parts.next().unwrap_or("");
    let overrides: Vec<String> = parts.map(str::to_owned).collect();
    let file = Path::new("sub.yaml");
    let compiled = compile(file, text, &overrides);
    match &compiled {
        Ok(job) => {
            if let Some(array) = &job.spec.array {
                assert!(!array.indices.is_empty() && array.indices.len() <= MAX_INDICES);
                assert!(array.indices.windows(2).all(|w| w[0] < w[1]), "{array:?}");
                assert!(array.parallel.is_none_or(|p| p >= 1));
            }
        }
        Err(diagnostics) => {
            assert!(!diagnostics.0.is_empty(), "refused without a reason");
            for d in &diagnostics.0 {
                let shown = d.to_string();
                assert!(shown.starts_with("sub.yaml") || shown.starts_with("--set "), "{shown}");
            }
        }
    }
    assert_eq!(compile(file, text, &overrides), compiled, "not deterministic");
    for o in &overrides {
        if let Ok(array) = parse_array(o) {
            assert_eq!(parse_array(&array.to_string()).as_ref(), Ok(&array), "{o:?}");
        }
    }
});
