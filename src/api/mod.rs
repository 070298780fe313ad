//! The control socket: how the `corral` command line talks to a running
//! agent.
//!
//! - [`protocol`]: the requests and responses, one JSON document per line.
//! - [`socket`]: the listener (a Unix socket only root can open) and the
//!   client the command line uses.
//!
//! The socket is the only way to change what the agent does from outside
//! (freeze, thaw, kill, trigger). Such requests are never served on the TCP
//! port: anyone on the machine (or the network) can reach a TCP port, while
//! the socket file is mode 0600 and owned by root, and the agent also checks
//! the peer's credentials on every connection.

pub mod protocol;
pub mod socket;

pub use protocol::{Request, Response};
pub use socket::{Client, ClientError, Command, ControlSocket, SocketError};
