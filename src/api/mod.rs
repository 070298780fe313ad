//! The agent's HTTP endpoint: Prometheus metrics, health checks, and a
//! read-only JSON view of jobs, runs and the node.
//!
//! - [`http`]: the routes and [`serve`](http::serve).
//! - [`source`]: [`ApiSource`], what the agent answers with.
//! - [`model`]: the JSON documents.
//!
//! The TCP endpoint (127.0.0.1:9464 by default) only reads: anyone who can
//! reach the port can see job names, states and numbers, nothing more.
//! Actions that change anything (run now, freeze, thaw, kill, requeue,
//! reload) are not offered here at all; they belong on a Unix socket whose
//! file permissions decide who may use them, so that exposing the metrics
//! port to a Prometheus server never exposes control of the node.

pub mod error;
pub mod http;
pub mod model;
pub mod source;

pub use error::ApiError;
pub use http::{bind, router, serve, Endpoints};
pub use model::{JobView, NodeView, RunView};
pub use source::ApiSource;

#[cfg(test)]
mod tests;
