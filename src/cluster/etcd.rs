//! Connecting to etcd, with TLS and a client certificate when configured.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use super::error::ClusterError;
use crate::config::ClusterConfig;

/// How long one connection attempt may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take: well below a lease TTL, so that a node
/// sees a stuck etcd before its lease is at stake.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to the endpoints of `config` (any of them that answers).
pub async fn connect(config: &ClusterConfig) -> Result<Client, ClusterError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
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
    Client::connect(&config.endpoints, Some(options))
        .await
        .map_err(|source| ClusterError::Etcd { endpoints: config.endpoints.join(","), source })
}
