//! The crate's layering, checked: the pure core (which decides) never names
//! the shell (which touches the kernel, the disk and the network).
//!
//! The core modules are listed here; every other top-level module of
//! `src/lib.rs` is shell, so a new module is shell until it is added to
//! [`CORE`] on purpose. A core file may name other core modules and outside
//! crates, never a shell module: not in a `use`, not in a path inside code.
//! Comments are not code and may point at the shell (a doc comment saying
//! who calls a function, say).
//!
//! ARCHITECTURE.md states the rule this test enforces.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules that decide, and the vocabulary they share: no IO of their
/// own, roots and clocks handed in.
const CORE: &[&str] = &["vocab", "spec", "config", "topology", "placement", "scheduler"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules `src/lib.rs` declares.
fn top_level_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    lib.lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("pub mod").or_else(|| line.strip_prefix("mod")))
        .filter_map(|rest| rest.trim().strip_suffix(';'))
        .map(|name| name.trim().to_owned())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The files of a top-level module: `src/NAME.rs` and everything under
/// `src/NAME/`.
fn module_files(name: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let file = src().join(format!("{name}.rs"));
    if file.is_file() {
        files.push(file);
    }
    let dir = src().join(name);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    files
}

/// `text` with comments, string literals and character literals blanked
/// out, so that only code is searched. Raw strings are rare enough in this
/// crate's core that they are treated as ordinary strings.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&chars[i..]) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A `'` that opens a character literal rather than a lifetime: `'x'`,
/// `'\n'`, `'\u{..}'`.
fn is_char_literal(from: &[char]) -> bool {
    match from.get(1) {
        Some('\\') => true,
        Some(_) => from.get(2) == Some(&'\''),
        None => false,
    }
}

/// Every top-level module `code` names through `crate::`: `crate::a::..`,
/// and each branch of `crate::{a::.., b, c::{..}}`.
fn crate_modules_named(code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        // `crate::` must start a path, not end an identifier (`mycrate::`).
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let trimmed = rest.trim_start();
        if let Some(group) = trimmed.strip_prefix('{') {
            let mut depth = 1;
            let mut branch_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => branch_start = true,
                    c if branch_start && (c.is_alphabetic() || c == '_') => {
                        named.insert(identifier(&group[i..]));
                        branch_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            named.insert(identifier(trimmed));
        }
    }
    named
}

fn identifier(text: &str) -> String {
    text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

#[test]
fn core_modules_never_name_a_shell_module() {
    let modules = top_level_modules();
    for core in CORE {
        assert!(modules.contains(*core), "core module `{core}` is not declared in src/lib.rs");
    }
    let shell: BTreeSet<&str> =
        modules.iter().map(String::as_str).filter(|m| !CORE.contains(m)).collect();
    assert!(shell.contains("agent") && shell.contains("cgroup"), "shell modules: {shell:?}");
    let mut breaches = Vec::new();
    for core in CORE {
        let files = module_files(core);
        assert!(!files.is_empty(), "no source files found for core module `{core}`");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            let code = code_only(&text);
            for named in crate_modules_named(&code) {
                if shell.contains(named.as_str()) {
                    let shown = file.strip_prefix(src()).unwrap_or(&file);
                    breaches.push(format!("src/{} names crate::{named}", shown.display()));
                }
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "the pure core names the shell (see ARCHITECTURE.md, \"Rules\"):\n  {}",
        breaches.join("\n  ")
    );
}

#[test]
fn every_form_of_a_crate_path_is_seen() {
    let code = code_only(
        "use crate::cgroup::Resources;\n\
         use crate::{spec::JobSpec, watch, agent::{self, x}};\n\
         fn f() { crate::store::open(); let s = \"crate::api\"; }\n\
         // crate::metrics in a comment\n\
         /* crate::launch in a block comment */\n\
         fn g<'a>(c: char) -> bool { c == '\"' || mycrate::x() }\n\
         use crate::container;\n",
    );
    let named = crate_modules_named(&code);
    let expected: BTreeSet<String> = ["cgroup", "spec", "watch", "agent", "store", "container"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(named, expected);
}
