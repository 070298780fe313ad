//! `corral freeze|thaw|kill|requeue RUN` and `corral trigger JOB`: changes the
//! agent makes through its run state machine, answered once it accepted or
//! refused them.

use std::process::ExitCode;

use super::client::SocketArgs;
use crate::api::{Request, Response};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The run id (`JOB-N`, as `corral ps` shows it).
    pub run: String,
    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The run id (`JOB-N`, as `corral ps` shows it), or the name of an
    /// array or submitted job: every run of it under way is stopped, and
    /// those still pending never start.
    pub run: String,
    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Debug, clap::Args)]
pub struct JobArgs {
    /// The recurring job's name.
    pub job: String,
    #[command(flatten)]
    pub socket: SocketArgs,
}

pub fn run(socket: &SocketArgs, request: Request) -> anyhow::Result<ExitCode> {
    match socket.ask(&request)? {
        Response::Done { message } => println!("{message}"),
        other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}
