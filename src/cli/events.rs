//! `corral events [-f]`: run transitions, preemptions and OOMs.

use std::io::Write as _;
use std::process::ExitCode;

use super::client::SocketArgs;
use crate::api::protocol::EventLine;
use crate::api::{Request, Response};

/// Print recent transitions and run events (OOM, preemption, resume),
/// oldest first.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Keep printing new ones as the agent records them (pushed, not polled).
    #[arg(short, long)]
    pub follow: bool,
    /// Print one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.socket.connect()?;
    client.send(&Request::Events { since: None, follow: args.follow })?;
    // Without `--follow` one answer comes; with it, one per new entry, pushed
    // by the agent as it records them, until the agent stops.
    loop {
        match client.receive()? {
            Some(Response::Events { events, .. }) => {
                for e in &events {
                    print(e, args.json)?;
                }
                std::io::stdout().flush()?;
                if !args.follow {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Some(Response::Error { message }) => anyhow::bail!("{message}"),
            Some(other) => anyhow::bail!("unexpected answer from the agent: {other:?}"),
            None => anyhow::bail!("the agent stopped"),
        }
    }
}

fn print(e: &EventLine, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
    } else {
        println!("{}  {:<24} {:<14} {}", e.at, e.run, e.kind, e.detail);
    }
    Ok(())
}
