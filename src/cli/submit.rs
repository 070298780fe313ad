//! `corral submit FILE [--set KEY=VALUE ...] [--array INDICES[%PARALLEL]]`:
//! runs a job that need not be in the jobs directory.
//!
//! The file is read and compiled here first, with its overrides, so that
//! every problem is reported before anything is sent; the agent compiles the
//! same text again and admits it by its own rules.

use std::path::PathBuf;
use std::process::ExitCode;

use super::client::SocketArgs;
use crate::api::socket::MAX_REQUEST_LINE;
use crate::api::{Request, Response};
use crate::spec::{self, source};

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The job file: one job, written as in the jobs directory.
    pub file: PathBuf,
    /// Change a field before the job is compiled: KEY is a dotted path
    /// (`priority`, `env.FOO`, `resources.memory.hard`), VALUE a YAML value
    /// (`80`, `1Gi`, `[/bin/sh, -c, "exit 3"]`). Repeatable; later ones win.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run one copy per index (`0-99`, `0-99:2`, `1,3,5-9`), at most
    /// PARALLEL at once with `%PARALLEL` (`0-99%10`). Replaces the file's
    /// `array:`.
    #[arg(long, value_name = "INDICES[%PARALLEL]")]
    pub array: Option<String>,
    #[command(flatten)]
    pub socket: SocketArgs,
}

/// The overrides `args` ask for, `--array` last.
pub fn overrides(args: &SubmitArgs) -> Vec<String> {
    let mut overrides = args.set.clone();
    if let Some(array) = &args.array {
        // As a quoted YAML string: `5` must stay the index list "5", and a
        // list with commas must not become a flow sequence.
        overrides.push(format!("array={}", serde_json::Value::String(array.clone())));
    }
    overrides
}

pub fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let text = source::read_file(&args.file, source::MAX_FILE_BYTES)
        .map_err(|(pos, error)| spec::load::at_file(&args.file, pos, error))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let overrides = overrides(&args);
    if let Err(problems) = spec::submission::compile(&args.file, &text, &overrides) {
        eprintln!("{problems}");
        eprintln!("corral: not submitted: {} problem(s)", problems.0.len());
        return Ok(ExitCode::FAILURE);
    }
    let request =
        Request::Submit { file: args.file.display().to_string(), source: text, overrides };
    // The agent reads one line per request, up to a bound: say so here
    // rather than have the connection cut.
    let line = serde_json::to_string(&request)?.len() as u64 + 1;
    if line > MAX_REQUEST_LINE {
        anyhow::bail!(
            "{} is too large to submit: the request would be {line} bytes, and the control \
             socket takes at most {MAX_REQUEST_LINE}; put the job in the jobs directory instead",
            args.file.display()
        );
    }
    match args.socket.ask(&request)? {
        Response::Done { message } => println!("{message}"),
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SubmitArgs,
    }

    #[test]
    fn the_array_option_is_an_override_of_the_array_field() {
        let cli =
            Cli::parse_from(["x", "job.yaml", "--set", "priority=80", "--array", "1,3,5-9%2"]);
        assert_eq!(overrides(&cli.args), ["priority=80", "array=\"1,3,5-9%2\""]);
        let job = spec::submission::compile(
            std::path::Path::new("job.yaml"),
            "name: a\ncommand: [/bin/true]\narray: 0-1\n",
            &overrides(&cli.args),
        )
        .unwrap();
        let array = job.spec.array.unwrap();
        assert_eq!(array.indices, [1, 3, 5, 6, 7, 8, 9]);
        assert_eq!(array.parallel, Some(2));
    }
}
