//! `corral generate-docs --out DIR`: man pages and shell completions made
//! from the command line definition itself, so they cannot drift from it.
//!
//! A hidden subcommand rather than a separate binary: the package build runs
//! the release binary it has just built, with no second program to compile,
//! and the pages describe exactly the binary that ships.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

/// Write `man1/corral.1`, a `man1/corral-COMMAND.1` for every subcommand an
/// operator uses, and `completions/` for bash, zsh and fish.
#[derive(Debug, clap::Args)]
pub struct GenerateDocsArgs {
    /// The directory to write into; created when missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The shells completions are made for, with the file name each one's
/// loader looks for (the Debian paths are in `Cargo.toml`'s package
/// metadata).
pub const SHELLS: [(Shell, &str); 3] =
    [(Shell::Bash, "corral.bash"), (Shell::Zsh, "_corral"), (Shell::Fish, "corral.fish")];

pub fn run(args: GenerateDocsArgs) -> anyhow::Result<ExitCode> {
    for path in generate(&args.out)? {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes every page and completion file under `out`; returns their paths.
pub fn generate(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let man = out.join("man1");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Hidden subcommands (the shim, this one) get no page: clap_mangen
    // skips them, as the completions do.
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("cannot write the man pages in {}", man.display()))?;
    let mut offered = without_hidden_subcommands(Cli::command());
    for (shell, file) in SHELLS {
        let written = clap_complete::generate_to(shell, &mut offered, "corral", &completions)
            .with_context(|| format!("cannot write the {shell} completions"))?;
        anyhow::ensure!(
            written.file_name() == Some(std::ffi::OsStr::new(file)),
            "the {shell} completions went to {}, not {file}",
            written.display()
        );
    }
    let mut written = Vec::new();
    for dir in [&man, &completions] {
        for entry in std::fs::read_dir(dir)? {
            written.push(entry?.path());
        }
    }
    written.sort();
    Ok(written)
}

/// `cli` with only the subcommands an operator uses. clap_complete offers
/// hidden subcommands too, and clap cannot remove one from a command, so
/// the root is made again around the visible ones.
fn without_hidden_subcommands(cli: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> =
        cli.get_subcommands().filter(|sub| !sub.is_hide_set()).cloned().collect();
    let mut root = clap::Command::new("corral")
        .version(super::VERSION)
        .subcommands(visible)
        .propagate_version(true);
    if let Some(about) = cli.get_about() {
        root = root.about(about.clone());
    }
    root
}
