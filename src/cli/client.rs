//! Finding and asking the agent's control socket, for the commands that
//! talk to a running agent.

use std::path::PathBuf;

use crate::api::{Client, Request, Response};
use crate::config::{self, AgentConfig};

/// Where the agent listens.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// The control socket; by default the one the configuration file names.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The agent configuration file the socket is taken from.
    #[arg(long, value_name = "FILE", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

impl SocketArgs {
    /// `--socket`, else the configuration file's `socket`, else the default.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        if !self.config.exists() {
            return Ok(AgentConfig::default().socket);
        }
        Ok(super::load_config(&self.config)?.socket)
    }

    pub fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.path()?)?)
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
