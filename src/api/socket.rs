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
use tokio::net::unix::UCred;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::feed::{Announced, FeedTap};
use super::protocol::{ControlError, EventLine, Request, Response};
use crate::spec::GroupRef;

/// Only root may open the socket, unless a group is given access
/// ([`GROUP_MODE`]). The mode is set right after `bind`; the peer check below
/// also covers the moment in between.
const SOCKET_MODE: u32 = 0o600;
/// Root and the members of the socket's group (`socket_group`).
const GROUP_MODE: u32 = 0o660;

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
    #[error("socket_group {group}: no such group on this machine")]
    UnknownGroup { group: String },
    #[error("cannot give group {gid} the control socket {path}")]
    Group {
        path: PathBuf,
        gid: u32,
        #[source]
        source: nix::Error,
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
    pub reply: oneshot::Sender<Answer>,
}

/// The agent's answer to a request: a response, or why there is none.
pub type Answer = Result<Response, ControlError>;

/// The answer as the client gets it: a refusal is an `error` response
/// carrying its text.
pub fn response(answer: Answer) -> Response {
    answer.unwrap_or_else(|refused| Response::Error { message: refused.to_string() })
}

/// The listening socket. The file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Besides root, the members of this group may use it.
    group: Option<u32>,
}

/// The group id `group` names on this machine.
pub fn resolve_group(group: &GroupRef) -> Result<u32, SocketError> {
    let unknown = || SocketError::UnknownGroup { group: group.to_string() };
    match group {
        GroupRef::Id(gid) => Ok(*gid),
        GroupRef::Name(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(found)) => Ok(found.gid.as_raw()),
            _ => Err(unknown()),
        },
    }
}

impl ControlSocket {
    /// Listens on `path`, creating its directory. A socket file left by an
    /// agent that is gone is replaced; one an agent still answers on is not.
    /// With `group`, the file belongs to that group and is mode 0660, and
    /// the group's members may use it as root does; without, it is root's
    /// alone (0600).
    pub fn bind(path: &Path, group: Option<&GroupRef>) -> Result<ControlSocket, SocketError> {
        let group = group.map(resolve_group).transpose()?;
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
        let socket = ControlSocket { listener, path: path.to_owned(), group };
        let mode = match group {
            Some(gid) => {
                nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
                    .map_err(|source| SocketError::Group { path: path.to_owned(), gid, source })?;
                GROUP_MODE
            }
            None => SOCKET_MODE,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|source| SocketError::Mode { path: path.to_owned(), mode, source })?;
        Ok(socket)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until the main loop goes away; each connection
    /// gets a task of its own. Followers of `events` read from `feed`.
    pub async fn serve(&self, commands: mpsc::Sender<Command>, feed: FeedTap) {
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
            tokio::spawn(connection(stream, self.group, commands.clone(), feed.clone()));
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a peer may use the socket: root, the agent's own user (an agent
/// run unprivileged for development), or a member of the socket's `group`,
/// by its primary group or one of its supplementary groups. The file's mode
/// already keeps everyone else out; this check does not depend on it.
fn allowed(peer: &UCred, group: Option<u32>) -> bool {
    let uid = peer.uid();
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    let Some(group) = group else { return false };
    peer.gid() == group
        || peer.pid().is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|status| supplementary_groups(&status).contains(&group))
        })
}

/// The `Groups:` line of a `/proc/PID/status`.
fn supplementary_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|ids| ids.split_whitespace().filter_map(|id| id.parse().ok()).collect())
        .unwrap_or_default()
}

async fn connection(
    stream: UnixStream,
    group: Option<u32>,
    commands: mpsc::Sender<Command>,
    feed: FeedTap,
) {
    let peer = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(e) => {
            debug!("control socket: no peer credentials: {e}");
            return;
        }
    };
    // Decided once per connection, as the peer was when it connected.
    let permitted = allowed(&peer, group);
    let uid = peer.uid();
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read);
    loop {
        let line = match next_line(&mut lines).await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(RequestLineError::Io(e)) => {
                debug!("control socket: reading a request failed: {e}");
                return;
            }
            Err(RequestLineError::TooLong) => {
                let refused = ControlError::LineTooLong { max: MAX_REQUEST_LINE };
                let _ = send(&mut write, &response(Err(refused))).await;
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let answer = if !permitted {
            Err(ControlError::NotPermitted { uid })
        } else {
            match Request::decode(&line) {
                Ok(Request::Events { since, follow: true }) => {
                    // The rest of the connection is the feed.
                    follow(since, &commands, &feed, &mut lines, &mut write).await;
                    return;
                }
                Ok(request) => ask(&commands, request).await,
                Err(e) => Err(ControlError::NotARequest { reason: e.to_string() }),
            }
        };
        if send(&mut write, &response(answer)).await.is_err() || !permitted {
            return;
        }
    }
}

/// The longest request line read: requests are a few hundred bytes (a
/// submitted job file a few kilobytes), and any local user may connect, so a
/// line without an end must not grow the agent.
pub const MAX_REQUEST_LINE: u64 = 64 * 1024;

enum RequestLineError {
    TooLong,
    Io(std::io::Error),
}

type ClientReader = tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>;

/// The next line from the client, without its end; `None` once it hangs up.
async fn next_line(reader: &mut ClientReader) -> Result<Option<String>, RequestLineError> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::new();
    let read = (&mut *reader)
        .take(MAX_REQUEST_LINE + 1)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(RequestLineError::Io)?;
    if read == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if read as u64 > MAX_REQUEST_LINE {
        return Err(RequestLineError::TooLong);
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|e| RequestLineError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut text = serde_json::to_string(response).expect("responses serialize");
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

/// Sends the history after `since`, then every entry of the feed as it
/// comes, until the client hangs up or the agent stops.
async fn follow(
    since: Option<i64>,
    commands: &mpsc::Sender<Command>,
    feed: &FeedTap,
    client: &mut ClientReader,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) {
    // Subscribed before the history is asked for: whatever is recorded in
    // between is in the feed, and `upto` says which of it the history holds.
    let Some(mut entries) = feed.subscribe() else {
        let _ = send(write, &response(Err(ControlError::ShuttingDown))).await;
        return;
    };
    let mut shown = Shown::default();
    let mut since = since;
    loop {
        let (history, upto) = match ask(commands, Request::Events { since, follow: false }).await {
            Ok(Response::Events { events, upto }) => (events, upto.unwrap_or(0)),
            other => {
                let _ = send(write, &response(other)).await;
                return;
            }
        };
        let history = shown.fresh(history);
        if send(write, &Response::Events { events: history, upto: None }).await.is_err() {
            return;
        }
        let lagged = loop {
            let entry = tokio::select! {
                entry = entries.recv() => entry,
                // Anything from the client, or its hanging up, ends the feed.
                _ = next_line(client) => return,
            };
            match entry {
                Ok(Announced { seq, .. }) if seq <= upto => {}
                Ok(Announced { line, .. }) => {
                    shown.note(&line);
                    let events = vec![line];
                    if send(write, &Response::Events { events, upto: None }).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => break missed,
                Err(RecvError::Closed) => return,
            }
        };
        debug!("control socket: a follower fell {lagged} entries behind; reading the store");
        // Back to the store from the last moment shown; what was shown at
        // that very millisecond is not shown again.
        entries = entries.resubscribe();
        since = shown.last_at.map(|at| at - 1);
    }
}

/// What a follower was sent at the latest millisecond, so that reading the
/// store again after a lag does not repeat it.
#[derive(Debug, Default)]
struct Shown {
    last_at: Option<i64>,
    at_last: Vec<EventLine>,
}

impl Shown {
    /// The lines of a history read not shown yet, noted as shown.
    fn fresh(&mut self, lines: Vec<EventLine>) -> Vec<EventLine> {
        let mut fresh = Vec::with_capacity(lines.len());
        for line in lines {
            if Some(line.at_ms) == self.last_at && self.at_last.contains(&line) {
                continue;
            }
            self.note(&line);
            fresh.push(line);
        }
        fresh
    }

    fn note(&mut self, line: &EventLine) {
        if Some(line.at_ms) != self.last_at {
            self.last_at = Some(line.at_ms);
            self.at_last.clear();
        }
        self.at_last.push(line.clone());
    }
}

async fn ask(commands: &mpsc::Sender<Command>, request: Request) -> Answer {
    let (reply, answer) = oneshot::channel();
    if commands.send(Command { request, reply }).await.is_err() {
        return Err(ControlError::ShuttingDown);
    }
    answer.await.unwrap_or(Err(ControlError::ShuttingDown))
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no agent is listening on {path}: is `corral agent` running?")]
    NotRunning { path: PathBuf },
    #[error("permission denied on {path}: the control socket is for root (and the agent's socket_group)")]
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
        self.send(request)?;
        self.receive()?.ok_or_else(|| ClientError::Io {
            path: self.path.clone(),
            source: std::io::ErrorKind::UnexpectedEof.into(),
        })
    }

    pub fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        let mut text = serde_json::to_string(request).expect("requests serialize");
        text.push('\n');
        self.reader
            .get_mut()
            .write_all(text.as_bytes())
            .map_err(|source| ClientError::Io { path: self.path.clone(), source })
    }

    /// The next response; `None` once the agent has closed the connection.
    pub fn receive(&mut self) -> Result<Option<Response>, ClientError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| ClientError::Io { path: self.path.clone(), source })?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line).map(Some).map_err(ClientError::Garbled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::EventFeed;

    #[tokio::test]
    async fn a_request_is_answered_by_the_main_loop_and_the_file_is_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/corral.sock");
        let socket = ControlSocket::bind(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (tx, mut rx) = mpsc::channel::<Command>(1);
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                let _ =
                    cmd.reply.send(Ok(Response::Done { message: format!("{:?}", cmd.request) }));
            }
        });
        let server = tokio::spawn(async move { socket.serve(tx, EventFeed::new().tap()).await });
        let client_path = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut client = Client::connect(&client_path).unwrap();
            client.ask(&Request::Ps).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(answer, Response::Done { message: "Ps".into() });
        // A second agent does not take the socket over.
        assert!(matches!(ControlSocket::bind(&path, None), Err(SocketError::InUse { .. })));
        server.abort();
    }

    /// A line with no end is cut off at the cap and answered, not buffered
    /// for as long as the peer keeps sending.
    #[tokio::test]
    async fn a_request_line_without_an_end_is_refused_at_the_cap() {
        use std::io::{Read as _, Write as _};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.sock");
        let socket = ControlSocket::bind(&path, None).unwrap();
        let (tx, _rx) = mpsc::channel::<Command>(1);
        let server = tokio::spawn(async move { socket.serve(tx, EventFeed::new().tap()).await });
        let client_path = path.clone();
        let (sent, answer) = tokio::task::spawn_blocking(move || {
            let mut stream = std::os::unix::net::UnixStream::connect(&client_path).unwrap();
            stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let chunk = vec![b'x'; 8192];
            let mut sent = 0usize;
            // Far past the cap; the agent stops reading and answers.
            while sent < 64 * MAX_REQUEST_LINE as usize {
                match stream.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            (sent, answer)
        })
        .await
        .unwrap();
        assert!(answer.contains("a request line is at most 65536 bytes"), "{answer:?}");
        assert!(sent < 64 * MAX_REQUEST_LINE as usize, "the agent kept reading: {sent} bytes");
        server.abort();
    }

    fn line(at: i64, detail: &str) -> EventLine {
        let at = crate::vocab::Timestamp::from_millis(at);
        EventLine::run_event(at, "etl", "etl-1", "oom", detail)
    }

    /// The main loop's side of a follower: the history it answers holds an
    /// entry also sent on the feed (recorded between the follower's
    /// subscription and its history read), which must be shown once; later
    /// entries are pushed; the feed's end ends the connection.
    #[tokio::test]
    async fn a_follower_gets_the_history_then_each_entry_once_until_the_feed_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.sock");
        let socket = ControlSocket::bind(&path, None).unwrap();
        let feed = EventFeed::new();
        let (tx, mut rx) = mpsc::channel::<Command>(1);
        let tap = feed.tap();
        let server = tokio::spawn(async move { socket.serve(tx, tap).await });
        let main_loop = tokio::spawn(async move {
            let cmd = rx.recv().await.unwrap();
            assert_eq!(cmd.request, Request::Events { since: None, follow: false });
            feed.announce(line(20, "between"));
            let history = vec![line(10, "old"), line(20, "between")];
            let _ =
                cmd.reply.send(Ok(Response::Events { events: history, upto: Some(feed.last()) }));
            feed.announce(line(30, "new"));
            feed.announce(line(30, "newer"));
            // The agent stops: its feed goes.
            drop(feed);
        });
        let client_path = path.clone();
        let shown = tokio::task::spawn_blocking(move || {
            let mut client = Client::connect(&client_path).unwrap();
            client.send(&Request::Events { since: None, follow: true }).unwrap();
            let mut shown = Vec::new();
            while let Some(response) = client.receive().unwrap() {
                let Response::Events { events, .. } = response else { panic!("{response:?}") };
                shown.extend(events.into_iter().map(|e| e.detail));
            }
            shown
        })
        .await
        .unwrap();
        assert_eq!(shown, ["old", "between", "new", "newer"]);
        main_loop.await.unwrap();
        server.abort();
    }

    #[test]
    fn shown_lines_are_not_repeated_when_the_store_is_read_again() {
        let mut shown = Shown::default();
        assert_eq!(shown.fresh(vec![line(1, "a"), line(2, "b")]).len(), 2);
        shown.note(&line(2, "c"));
        // Read again from just before the last millisecond shown.
        let again = shown.fresh(vec![line(2, "b"), line(2, "c"), line(2, "d"), line(3, "e")]);
        let details: Vec<_> = again.iter().map(|l| l.detail.as_str()).collect();
        assert_eq!(details, ["d", "e"]);
    }

    #[tokio::test]
    async fn a_socket_group_owns_the_file_and_unknown_groups_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.sock");
        let socket = ControlSocket::bind(&path, Some(&GroupRef::Id(65534))).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 65534);
        drop(socket);
        let unknown = GroupRef::Name("no-such-group-corral".into());
        let err = ControlSocket::bind(&path, Some(&unknown)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "socket_group no-such-group-corral: no such group on this machine"
        );
        assert_eq!(resolve_group(&GroupRef::Name("root".into())).unwrap(), 0);
    }

    #[test]
    fn supplementary_groups_come_from_the_status_file() {
        let status = "Name:\tcorral\nUid:\t0\t0\t0\t0\nGroups:\t4 27 65534 \nNgid:\t0\n";
        assert_eq!(supplementary_groups(status), [4, 27, 65534]);
        assert!(supplementary_groups("Groups:\n").is_empty());
        assert!(supplementary_groups("Name:\tx\n").is_empty());
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
        let socket = rt.block_on(async { ControlSocket::bind(&path, None) }).unwrap();
        drop(socket);
        assert!(!path.exists());
    }
}
