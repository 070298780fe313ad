//! Records the commit the binary is built from, for `corral --version`.
//!
//! `CORRAL_COMMIT` is the short hash of `HEAD`, with `-dirty` when the work
//! tree has changes, or `unknown` when the source is not a git checkout (a
//! release tarball, a vendored copy) or git is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).map_or_else(
        || "unknown".to_owned(),
        |hash| if is_dirty() { format!("{hash}-dirty") } else { hash },
    );
    println!("cargo:rustc-env=CORRAL_COMMIT={commit}");
    // The shim is resident once per run. As a position-independent
    // executable its pointer-holding data (vtables, string tables: the
    // relocated .data.rel.ro and GOT) is rewritten at every start, so every
    // run held private copies of those pages; linked at a fixed address
    // they stay clean pages of the file, shared by all runs. The trade is
    // address-space randomisation of the shim's own code and data (its
    // libraries, heap and stack are still randomised); the shim reads only
    // what the agent wrote and the bytes the job prints.
    println!("cargo:rustc-link-arg-bin=corral-shim=-no-pie");
    for path in rebuild_triggers() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git ARGS` in the source directory, its trimmed output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output =
        Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn is_dirty() -> bool {
    // Untracked files do not change what is built from tracked ones.
    // Without --no-optional-locks, status refreshes the index file, which
    // is a rebuild trigger below: the next cargo run would build again.
    git(&["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]).is_some()
}

/// The files whose change means a new commit: `HEAD` itself (a checkout, a
/// detached head) and the branch it points to (a commit on it). In a
/// worktree `.git` is a file naming the real git directory, so the paths
/// are asked of git rather than built by hand. The index changes when a
/// file is staged, which is when the dirty marker can change.
fn rebuild_triggers() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("build.rs")];
    let mut ask = |path: &str| {
        if let Some(found) = git(&["rev-parse", "--git-path", path]) {
            let found = Path::new(env!("CARGO_MANIFEST_DIR")).join(found);
            if found.exists() {
                paths.push(found);
            }
        }
    };
    ask("HEAD");
    ask("index");
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        ask(&reference);
    }
    paths
}
