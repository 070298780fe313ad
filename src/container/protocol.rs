//! Messages between the three processes of a run, one JSON object per line
//! over a pipe:
//!
//! - init → shim ([`InitMessage`]): setup finished or failed, and later the
//!   job's exact wait status;
//! - shim → launcher ([`ShimReport`]): the container is running, or why not.

use std::io::{self, BufRead, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::SetupError;
use super::procfs::ProcessIdentity;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitMessage {
    /// Only with a user namespace: the first container process has unshared
    /// it and waits for the shim to write its uid and gid maps.
    NeedIdMaps,
    /// Only with a user namespace: the host pid of the container's init.
    InitPid { pid: i32 },
    /// The job's `execve` succeeded.
    Started,
    /// Setup failed; init exits after sending this.
    Failed(SetupError),
    /// The job ended with this `waitpid` status word.
    JobExited { wait_status: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShimReport {
    Started { shim: ProcessIdentity, init: ProcessIdentity },
    Failed(SetupError),
}

/// Writes one message as a single `write(2)`: pipe writes up to PIPE_BUF
/// are atomic, and a single write means a reader never sees half a line
/// from a writer that died in between.
pub fn send<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)
}

/// Reads the next message; `None` at end of stream.
pub fn receive<T: DeserializeOwned>(input: &mut impl BufRead) -> io::Result<Option<T>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_line_by_line() {
        let mut wire = Vec::new();
        send(&mut wire, &InitMessage::Started).unwrap();
        send(&mut wire, &InitMessage::JobExited { wait_status: 3 << 8 }).unwrap();
        let mut input = io::BufReader::new(&wire[..]);
        assert_eq!(receive::<InitMessage>(&mut input).unwrap(), Some(InitMessage::Started));
        assert_eq!(
            receive::<InitMessage>(&mut input).unwrap(),
            Some(InitMessage::JobExited { wait_status: 768 })
        );
        assert_eq!(receive::<InitMessage>(&mut input).unwrap(), None);
    }
}
