//! Errors of the API server, and how each reaches a client.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::metrics::MetricsError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("no job named {0:?}")]
    NoSuchJob(String),
    #[error("no run {0:?}")]
    NoSuchRun(String),
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A handler's blocking task panicked or was cancelled.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NoSuchJob(_) | ApiError::NoSuchRun(_) => StatusCode::NOT_FOUND,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// `{"error": "..."}` with the matching status.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}
