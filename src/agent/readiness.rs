//! Telling a service manager how the agent stands (`Type=notify`).
//!
//! The protocol is systemd's `sd_notify`: one datagram of `KEY=value` lines
//! to the unix socket named by `$NOTIFY_SOCKET`, a path, or an abstract name
//! when it starts with `@`. It is a few lines over a [`UnixDatagram`], so no
//! library is needed for it. Without `$NOTIFY_SOCKET` (started by hand, or
//! by a manager that does not ask) every message is dropped.
//!
//! The agent is ready once the store is open, the runs of an earlier agent
//! are taken over, and the HTTP endpoint and the control socket listen: a
//! unit ordered after it can use `corral` commands at once.

use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::warn;

/// The environment variable that names the service manager's socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where readiness goes; nowhere when the agent was not asked for it.
#[derive(Debug)]
pub struct Readiness {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Readiness {
    /// From `$NOTIFY_SOCKET`; a value that names no usable socket is
    /// reported and ignored (the agent runs the same without it).
    pub fn from_env() -> Readiness {
        let Some(name) = std::env::var_os(NOTIFY_SOCKET) else {
            return Readiness { target: None };
        };
        match target(name.as_encoded_bytes()) {
            Ok(target) => Readiness { target: Some(target) },
            Err(e) => {
                warn!(
                    "{NOTIFY_SOCKET}={}: {e}; the service manager is not told when the agent \
                     is ready",
                    name.to_string_lossy()
                );
                Readiness { target: None }
            }
        }
    }

    /// `READY=1`, with a line for `systemctl status`.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STOPPING=1`: the agent is shutting down.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    fn send(&self, message: &str) {
        let Some((socket, address)) = &self.target else { return };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), address) {
            warn!("cannot notify the service manager ({message:?}): {e}");
        }
    }
}

/// A status is one line of the message.
fn one_line(status: &str) -> String {
    status.replace('\n', " ")
}

fn target(name: &[u8]) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    use std::os::unix::ffi::OsStrExt;
    let address = match name.strip_prefix(b"@") {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name)?
        }
        None if name.starts_with(b"/") => {
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name))?
        }
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract name (@...)",
            ))
        }
    };
    Ok((UnixDatagram::unbound()?, address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn received(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let len = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..len]).into_owned()
    }

    #[test]
    fn messages_reach_a_socket_named_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let readiness =
            Readiness { target: Some(target(path.as_os_str().as_encoded_bytes()).unwrap()) };
        readiness.ready("3 runs\ntaken over");
        assert_eq!(received(&listener), "READY=1\nSTATUS=3 runs taken over");
        readiness.stopping("stopping");
        assert_eq!(received(&listener), "STOPPING=1\nSTATUS=stopping");
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("corral-readiness-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let readiness = Readiness { target: Some(target(format!("@{name}").as_bytes()).unwrap()) };
        readiness.ready("up");
        assert_eq!(received(&listener), "READY=1\nSTATUS=up");
    }

    #[test]
    fn a_relative_name_is_refused_and_nothing_is_sent_without_a_target() {
        assert!(target(b"notify").is_err());
        Readiness { target: None }.ready("ignored");
    }
}
