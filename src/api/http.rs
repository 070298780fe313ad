//! The HTTP endpoint: metrics, health, and the read-only JSON API.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /metrics` | the scrape: Prometheus text, or OpenMetrics if `Accept` prefers it |
//! | `GET /healthz` | `200 ok` while the process serves requests |
//! | `GET /readyz` | `200 ready`, or `503` with what the agent still waits for, or why it takes no new work |
//! | `GET /v1/jobs` | `{"jobs": [JobView…]}` |
//! | `GET /v1/jobs/{name}` | a [`JobView`](super::model::JobView), or `404` |
//! | `GET /v1/runs/{id}` | a [`RunView`](super::model::RunView), or `404` |
//! | `GET /v1/node` | a [`NodeView`](super::model::NodeView), or `503` while the agent starts |
//!
//! Connections are served, capped and timed by [`super::server`].
//!
//! Every answer but `/healthz` waits, briefly, until the published state has
//! every decision the agent stored before the request ([`Freshness`]).
//!
//! Errors are `{"error": "..."}` with the status. Everything the agent
//! answers with may block (file reads, the store), so it runs on tokio's
//! blocking threads and a slow scrape never stalls another request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::{TcpListener, TcpSocket};

use super::error::ApiError;
use super::fresh::Freshness;
use super::model::{JobView, NodeView, RunView};
use super::source::ApiSource;
use crate::metrics::{Format, Metrics};
use crate::vocab::JobName;
use crate::vocab::RunId;

const TEXT: &str = "text/plain; charset=utf-8";

/// What the endpoint serves from.
#[derive(Clone)]
pub struct Endpoints {
    pub api: Arc<dyn ApiSource>,
    pub metrics: Arc<Metrics>,
    /// Keeps answers from being older than their requests; `None` serves
    /// whatever was published last.
    pub fresh: Option<Arc<Freshness>>,
}

impl Endpoints {
    /// Before an answer from the published state: until it has every
    /// decision stored so far (see [`Freshness`]).
    async fn settle(&self) {
        if let Some(fresh) = &self.fresh {
            fresh.settle().await;
        }
    }
}

/// Connections the kernel completes and queues while the agent has not yet
/// accepted them. The standard library's 128 overflows when a burst of
/// connections meets an agent busy for a few milliseconds, and each
/// overflow costs the client a one-second SYN retransmit; the accept loop
/// drains the queue fast (past the cap it closes at once), so a deeper
/// queue holds no connection for long. The kernel caps it at
/// `net.core.somaxconn`.
const BACKLOG: u32 = 1024;

/// Binds the configured address; the error names it.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ApiError> {
    let bind = || {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // As the standard library does: a restarted agent can bind its port
        // while connections of the previous one are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    bind().map_err(|source| ApiError::Bind { addr, source })
}

pub fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/jobs", get(jobs))
        .route("/v1/jobs/{name}", get(job))
        .route("/v1/runs/{id}", get(run))
        .route("/v1/node", get(node))
        .fallback(not_found)
        .with_state(endpoints)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::Internal(e.to_string()))
}

async fn metrics(State(e): State<Endpoints>, headers: HeaderMap) -> Result<Response, ApiError> {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    e.settle().await;
    let body = blocking(move || e.metrics.render(format)).await??;
    Ok(([(CONTENT_TYPE, format.content_type())], body).into_response())
}

async fn healthz() -> impl IntoResponse {
    ([(CONTENT_TYPE, TEXT)], "ok\n")
}

async fn readyz(State(e): State<Endpoints>) -> Result<Response, ApiError> {
    e.settle().await;
    Ok(match blocking(move || e.api.ready()).await? {
        Ok(()) => ([(CONTENT_TYPE, TEXT)], "ready\n".to_string()).into_response(),
        Err(waiting) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(CONTENT_TYPE, TEXT)],
            format!("not ready: {waiting}\n"),
        )
            .into_response(),
    })
}

#[derive(serde::Serialize)]
struct Jobs {
    jobs: Vec<JobView>,
}

async fn jobs(State(e): State<Endpoints>) -> Result<Json<Jobs>, ApiError> {
    e.settle().await;
    Ok(Json(Jobs { jobs: blocking(move || e.api.jobs()).await? }))
}

async fn job(
    State(e): State<Endpoints>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    // A name that is not a valid job name names no job.
    let Ok(parsed) = JobName::parse(&name) else { return Err(ApiError::NoSuchJob(name)) };
    e.settle().await;
    blocking(move || e.api.job(&parsed)).await?.map(Json).ok_or(ApiError::NoSuchJob(name))
}

async fn run(
    State(e): State<Endpoints>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let run_id = RunId::new(id.clone());
    e.settle().await;
    blocking(move || e.api.run(&run_id)).await??.map(Json).ok_or(ApiError::NoSuchRun(id))
}

async fn node(State(e): State<Endpoints>) -> Result<Json<NodeView>, ApiError> {
    e.settle().await;
    blocking(move || e.api.node())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotReady("the agent is starting".into()))
}

async fn not_found() -> Response {
    let body = serde_json::json!({ "error": "no such endpoint" });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
