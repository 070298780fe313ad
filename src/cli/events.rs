//! `corral events [-f]`: run transitions, preemptions and OOMs.

use std::process::ExitCode;
use std::time::Duration;

use super::client::SocketArgs;
use crate::api::protocol::EventLine;
use crate::api::{Request, Response};

/// Print recent transitions and run events (OOM, preemption, resume),
/// oldest first.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Keep printing new ones as they happen.
    #[arg(short, long)]
    pub follow: bool,
    /// Print one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

const POLL: Duration = Duration::from_millis(500);

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.socket.connect()?;
    let mut since = None;
    loop {
        let events = match client.ask(&Request::Events { since })? {
            Response::Events { events } => events,
            Response::Error { message } => anyhow::bail!("{message}"),
            other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
        };
        for e in &events {
            print(e, args.json)?;
        }
        if let Some(last) = events.last() {
            since = Some(last.at_ms);
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(POLL);
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
