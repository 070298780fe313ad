//! How the world talks to a running agent.
//!
//! Reading, over HTTP (127.0.0.1:9464 by default): Prometheus metrics, health
//! checks, and a read-only JSON view of jobs, runs and the node.
//!
//! - [`http`]: the routes.
//! - [`server`]: the connections: capped, each under a deadline
//!   ([`serve`](server::serve)).
//! - [`source`]: [`ApiSource`], what the agent answers with.
//! - [`fresh`]: [`Freshness`], which keeps an answer from being older than
//!   its request.
//! - [`model`]: the JSON documents.
//! - [`run`]: [`RunFacts`](run::RunFacts), the one read model of a run, and
//!   its projections onto the HTTP document and the control socket's lines.
//!
//! Changing, over the control socket, which the `corral` command line uses:
//!
//! - [`protocol`]: the requests and responses, one JSON document per line.
//! - [`feed`]: transitions and run events pushed to followers of `events`.
//! - [`socket`]: the listener (a Unix socket only root, or the members of a
//!   configured group, can open) and the
//!   client the command line uses.
//!
//! The TCP endpoint only reads: anyone who can reach the port can see job
//! names, states and numbers, nothing more. Actions that change anything
//! (freeze, thaw, kill, requeue, trigger, and reload, which reads the jobs
//! directory again now and applies it) are served only on the socket: its
//! file is mode 0600 and owned by root (0660 and the `socket_group`'s when
//! one is configured), and the agent also checks the peer's credentials on
//! every connection, so exposing the metrics port to a
//! Prometheus server never exposes control of the node.

pub mod error;
pub mod feed;
pub mod fresh;
pub mod http;
pub mod model;
pub mod protocol;
pub mod run;
pub mod server;
pub mod socket;
pub mod source;

pub use error::ApiError;
pub use feed::{EventFeed, FeedTap};
pub use fresh::Freshness;
pub use http::{bind, router, Endpoints};
pub use model::{JobView, NodeView, RunView};
pub use protocol::{Accepted, ControlError, Request, Response};
pub use server::serve;
pub use socket::{Answer, Client, ClientError, Command, ControlSocket, SocketError};
pub use source::ApiSource;

#[cfg(test)]
mod tests;
