//! Connecting to etcd, with TLS and a client certificate when configured.
//!
//! The client spreads its requests over every endpoint it was given and
//! does not stop sending to one that went away: with one member of three
//! down, a share of the requests fail with a connect error although the
//! cluster is healthy. So [`connect`] first asks each endpoint for its
//! status, each through a client of that endpoint alone and with a short
//! timeout ([`probe`]), and builds the client from the members that
//! answered. Every caller that treats a failed request as a reason to
//! connect again (the node task, the scheduler, the publisher) goes
//! through [`connect`], so each reconnect probes again and a member that
//! came back is used again.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use super::error::ClusterError;
use crate::config::ClusterConfig;

/// How long one connection attempt may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take: well below a lease TTL, so that a node
/// sees a stuck etcd before its lease is at stake.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one endpoint may take to answer a probe. A member that takes
/// longer is left out of the client: the others answer in milliseconds.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// What one endpoint said when asked for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    pub endpoint: String,
    pub state: EndpointState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointState {
    /// It answered: its member id, and the leader it knows (0: none).
    Answered { member: u64, leader: u64 },
    /// Its host refused the connection: nothing listens on its port, so
    /// the member is down, and cannot be part of a quorum until it starts
    /// again.
    Down { error: String },
    /// It did not answer in time, or failed otherwise: it may be running,
    /// cut off from this node only.
    Unreachable { error: String },
}

impl EndpointHealth {
    pub fn answered(&self) -> bool {
        matches!(self.state, EndpointState::Answered { .. })
    }
}

/// The connection options of `config`: timeouts, keep-alive, TLS.
fn options(config: &ClusterConfig, connect: Duration) -> Result<ConnectOptions, ClusterError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(connect)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    if let Some(tls) = &config.tls {
        let read = |what: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|source| ClusterError::TlsFile {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let ca = read("the CA certificate", &tls.ca)?;
        let cert = read("the client certificate", &tls.cert)?;
        let key = read("the client key", &tls.key)?;
        options = options.with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(ca))
                .identity(Identity::from_pem(cert, key)),
        );
    }
    Ok(options)
}

/// Asks every endpoint of `config` for its status, all at once, each with
/// [`PROBE_TIMEOUT`]; in the order of the configuration.
pub async fn probe(config: &ClusterConfig) -> Result<Vec<EndpointHealth>, ClusterError> {
    probe_within(config, PROBE_TIMEOUT * 2).await
}

/// [`probe`], done within `budget`: half of it for the status request, the
/// other half for telling a member that is down from one that is cut off.
pub async fn probe_within(
    config: &ClusterConfig,
    budget: Duration,
) -> Result<Vec<EndpointHealth>, ClusterError> {
    let wait = (budget / 2).min(PROBE_TIMEOUT);
    let options = options(config, wait)?;
    let asks: Vec<_> = config
        .endpoints
        .iter()
        .map(|endpoint| tokio::spawn(probe_one(endpoint.clone(), options.clone(), wait)))
        .collect();
    let mut health = Vec::with_capacity(asks.len());
    for (ask, endpoint) in asks.into_iter().zip(&config.endpoints) {
        health.push(ask.await.unwrap_or_else(|e| EndpointHealth {
            endpoint: endpoint.clone(),
            state: EndpointState::Unreachable { error: format!("the probe failed: {e}") },
        }));
    }
    Ok(health)
}

async fn probe_one(endpoint: String, options: ConnectOptions, wait: Duration) -> EndpointHealth {
    let asked = async {
        let mut client = Client::connect([endpoint.as_str()], Some(options)).await?;
        client.status().await
    };
    let state = match tokio::time::timeout(wait, asked).await {
        Ok(Ok(status)) => EndpointState::Answered {
            member: status.header().map_or(0, |h| h.member_id()),
            leader: status.leader(),
        },
        Ok(Err(e)) => classify(&endpoint, e.to_string(), wait).await,
        Err(_) => classify(&endpoint, format!("no answer within {wait:?}"), wait).await,
    };
    EndpointHealth { endpoint, state }
}

/// Why `endpoint` did not answer: a plain TCP connection to it tells a
/// member that is down (refused: its host is there, its port closed) from
/// one this node cannot reach (no route, no answer), which may be running.
async fn classify(endpoint: &str, error: String, wait: Duration) -> EndpointState {
    let address = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    let address = address.trim_end_matches('/');
    let tried = tokio::time::timeout(wait, tokio::net::TcpStream::connect(address)).await;
    match tried {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            EndpointState::Down { error }
        }
        _ => EndpointState::Unreachable { error },
    }
}

/// Connects to the endpoints of `config` that answer a probe; to all of
/// them when none does (the client then keeps trying them, and the error
/// a request meets says why).
pub async fn connect(config: &ClusterConfig) -> Result<Client, ClusterError> {
    let answering: Vec<String> = probe(config)
        .await?
        .into_iter()
        .filter(EndpointHealth::answered)
        .map(|h| h.endpoint)
        .collect();
    let endpoints = if answering.is_empty() { config.endpoints.clone() } else { answering };
    Client::connect(&endpoints, Some(options(config, CONNECT_TIMEOUT)?))
        .await
        .map_err(|source| ClusterError::Etcd { endpoints: endpoints.join(","), source })
}
