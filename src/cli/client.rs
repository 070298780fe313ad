//! Finding and asking the agent's control socket, for the commands that
//! talk to a running agent.

use std::path::PathBuf;

use crate::api::{Client, ClientError, Request, Response};
use crate::config::{self, AgentConfig};

/// Where the agent listens. The environment stands in for the flags, so a
/// shell that exports `CORRAL_CONFIG` once (say, to a checkout's
/// `config/agent.yaml`) reaches that agent with every command.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// The control socket; by default the one the configuration file names.
    #[arg(long, value_name = "PATH", env = "CORRAL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The agent configuration file the socket is taken from.
    #[arg(long, value_name = "FILE", env = "CORRAL_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

/// Where the socket path came from, to say so when nobody answers there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketOrigin {
    /// `--socket` or `CORRAL_SOCKET`.
    Named,
    /// The `socket` of this configuration file.
    Config(PathBuf),
    /// The built-in default, because this configuration file does not exist.
    Default { missing_config: PathBuf },
}

impl SocketArgs {
    /// `--socket`, else the configuration file's `socket`, else the default.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        Ok(self.locate()?.0)
    }

    /// The socket path and where it came from.
    pub fn locate(&self) -> anyhow::Result<(PathBuf, SocketOrigin)> {
        if let Some(socket) = &self.socket {
            return Ok((socket.clone(), SocketOrigin::Named));
        }
        if !self.config.exists() {
            let missing_config = self.config.clone();
            return Ok((AgentConfig::default().socket, SocketOrigin::Default { missing_config }));
        }
        let socket = super::load_config(&self.config)?.socket;
        Ok((socket, SocketOrigin::Config(self.config.clone())))
    }

    /// A connection to the agent. When nobody listens, the error says where
    /// the path came from and how to name another agent's.
    pub fn connect(&self) -> anyhow::Result<Client> {
        let (path, origin) = self.locate()?;
        match Client::connect(&path) {
            Ok(client) => Ok(client),
            Err(e @ ClientError::NotRunning { .. }) => {
                Err(anyhow::anyhow!("{e}\n{}", how_to_point_elsewhere(&origin)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Asks one question; a refusal becomes an error carrying the agent's
    /// reason.
    pub fn ask(&self, request: &Request) -> anyhow::Result<Response> {
        match self.connect()?.ask(request)? {
            Response::Error { message } => Err(anyhow::anyhow!("{message}")),
            response => Ok(response),
        }
    }
}

/// The lines after "no agent is listening": where the socket path was
/// taken from, and the flags and variables that name another.
pub fn how_to_point_elsewhere(origin: &SocketOrigin) -> String {
    let from = match origin {
        SocketOrigin::Named => "the socket was named by --socket or CORRAL_SOCKET".to_owned(),
        SocketOrigin::Config(file) => {
            format!("the socket is the one {} names", file.display())
        }
        SocketOrigin::Default { missing_config } => format!(
            "the socket is the built-in default, as {} does not exist",
            missing_config.display()
        ),
    };
    format!(
        "  {from}; for an agent started with another configuration, pass its --config FILE \
         (or --socket PATH), or set CORRAL_CONFIG=FILE (or CORRAL_SOCKET=PATH) for every command"
    )
}

/// A duration as people read it in a table: `42s`, `5m`, `3h`, `2d`.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Bytes as people read them: `512Mi`, `2Gi`.
pub fn bytes(b: Option<u64>) -> String {
    match b {
        Some(b) => crate::vocab::Bytes(b).to_string(),
        None => "-".into(),
    }
}

/// Prints `rows` as left-aligned columns under `header`.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(3 * 86400), "3d");
    }
}
