//! The control socket on the agent's side (listener, one task per
//! connection) and on the command line's (a blocking client).
//!
//! Every request goes to the agent's main loop as a [`Command`] and is
//! answered from there, after the state machine has accepted or refused it:
//! the socket tasks never touch runs themselves.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::protocol::{Request, Response};

/// Only root may open the socket. The mode is set right after `bind`; the
/// peer check below also covers the moment in between.
const SOCKET_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create the directory of the control socket {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another agent answers on the control socket {path}")]
    InUse { path: PathBuf },
    #[error("cannot remove the stale control socket {path}")]
    Stale {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on the control socket {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set mode {mode:o} on the control socket {path}")]
    Mode {
        path: PathBuf,
        mode: u32,
        #[source]
        source: std::io::Error,
    },
}

/// A request on its way to the main loop, with where the answer goes.
#[derive(Debug)]
pub struct Command {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// The listening socket. The file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Listens on `path`, creating its directory. A socket file left by an
    /// agent that is gone is replaced; one an agent still answers on is not.
    pub fn bind(path: &Path) -> Result<ControlSocket, SocketError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|source| SocketError::Dir { path: dir.to_owned(), source })?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse { path: path.to_owned() });
            }
            std::fs::remove_file(path)
                .map_err(|source| SocketError::Stale { path: path.to_owned(), source })?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|source| SocketError::Bind { path: path.to_owned(), source })?;
        let socket = ControlSocket { listener, path: path.to_owned() };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
            |source| SocketError::Mode { path: path.to_owned(), mode: SOCKET_MODE, source },
        )?;
        Ok(socket)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until the main loop goes away; each connection
    /// gets a task of its own.
    pub async fn serve(&self, commands: mpsc::Sender<Command>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!("control socket: cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if commands.is_closed() {
                return;
            }
            tokio::spawn(connection(stream, commands.clone()));
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a peer with `uid` may use the socket: root, or the agent's own
/// user (an agent run unprivileged for development).
fn allowed(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

async fn connection(stream: UnixStream, commands: mpsc::Sender<Command>) {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            debug!("control socket: no peer credentials: {e}");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let response = if !allowed(uid) {
            Response::Error { message: format!("uid {uid} may not use the control socket") }
        } else {
            match serde_json::from_str::<Request>(&line) {
                Ok(request) => ask(&commands, request).await,
                Err(e) => Response::Error { message: format!("not a request: {e}") },
            }
        };
        let mut text = serde_json::to_string(&response).expect("responses serialize");
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() || !allowed(uid) {
            return;
        }
    }
}

async fn ask(commands: &mpsc::Sender<Command>, request: Request) -> Response {
    let (reply, answer) = oneshot::channel();
    if commands.send(Command { request, reply }).await.is_err() {
        return Response::Error { message: "the agent is shutting down".into() };
    }
    answer
        .await
        .unwrap_or_else(|_| Response::Error { message: "the agent is shutting down".into() })
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no agent is listening on {path}: is `corral agent` running?")]
    NotRunning { path: PathBuf },
    #[error("permission denied on {path}: the control socket is for root")]
    Denied { path: PathBuf },
    #[error("cannot talk to the agent on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent answered something that is not a response: {0}")]
    Garbled(serde_json::Error),
}

/// The command line's end of the socket.
pub struct Client {
    path: PathBuf,
    reader: BufReader<std::os::unix::net::UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { path: path.to_owned() }
            }
            std::io::ErrorKind::PermissionDenied => ClientError::Denied { path: path.to_owned() },
            _ => ClientError::Io { path: path.to_owned(), source: e },
        })?;
        Ok(Client { path: path.to_owned(), reader: BufReader::new(stream) })
    }

    pub fn ask(&mut self, request: &Request) -> Result<Response, ClientError> {
        let io = |source| ClientError::Io { path: self.path.clone(), source };
        let mut text = serde_json::to_string(request).expect("requests serialize");
        text.push('\n');
        self.reader.get_mut().write_all(text.as_bytes()).map_err(io)?;
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(io)?;
        if n == 0 {
            return Err(ClientError::Io {
                path: self.path.clone(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        serde_json::from_str(&line).map_err(ClientError::Garbled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_is_answered_by_the_main_loop_and_the_file_is_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/corral.sock");
        let socket = ControlSocket::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (tx, mut rx) = mpsc::channel::<Command>(1);
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                let _ = cmd.reply.send(Response::Done { message: format!("{:?}", cmd.request) });
            }
        });
        let server = tokio::spawn(async move { socket.serve(tx).await });
        let client_path = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut client = Client::connect(&client_path).unwrap();
            client.ask(&Request::Ps).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(answer, Response::Done { message: "Ps".into() });
        // A second agent does not take the socket over.
        assert!(matches!(ControlSocket::bind(&path), Err(SocketError::InUse { .. })));
        server.abort();
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_missing_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.sock");
        assert!(matches!(Client::connect(&path), Err(ClientError::NotRunning { .. })));
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        assert!(matches!(Client::connect(&path), Err(ClientError::NotRunning { .. })));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let socket = rt.block_on(async { ControlSocket::bind(&path) }).unwrap();
        drop(socket);
        assert!(!path.exists());
    }
}
