//! The HTTP endpoint's connections: accepted under a cap, each served by
//! hyper under one deadline that moves with what the connection is doing.
//!
//! Whoever can reach the port can open connections, and each open
//! connection holds a descriptor and a task in the agent. So:
//!
//! - At most `http.max_connections` are served at once. Past that a
//!   connection is accepted, answered `503` if its buffer takes it, and
//!   closed at once: it costs a descriptor for a moment, never for long, and
//!   the kernel's listen queue stays empty for the next client.
//! - Each connection has a [`Deadline`]: its request head must be in within
//!   `header_timeout` of the accept (or of the first byte of a later
//!   request), its request must be answered within `request_timeout`, and a
//!   kept-alive connection may wait `idle_timeout` for its next request.
//!   Bytes that trickle in do not push a deadline back, so a peer that sends
//!   one byte a second, or reads its answer one byte a second, is cut off
//!   like one that sends nothing.
//! - When `accept` fails (the agent is out of descriptors, from its runs or
//!   anything else) the loop backs off ([`AcceptBackoff`]) rather than spin
//!   on a listener that stays readable.
//!
//! Why not `axum::serve`: it accepts every connection and sets no timeout
//! (hyper's header timeout needs a timer it does not give). Why not hyper's
//! own `header_read_timeout` alone: it starts whenever hyper waits for a
//! head, so on a kept-alive connection it is the idle timeout too, and it
//! bounds neither a slow body nor a slow reader. The routes stay axum's
//! ([`super::http::router`]); only the connections are served here, with
//! hyper's HTTP/1 connection and hyper-util's tokio adapters, both of which
//! axum itself is built on.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service as _};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::http::{router, Endpoints};
use crate::config::HttpLimits;
use crate::metrics::events::{HttpConnectionRefused, HttpConnectionTimedOut};
use crate::metrics::{AgentMetrics, Event as _, HttpDeadline, RefusedReason};

/// What a connection turned away at the cap is told, if its socket buffer
/// takes it at once (it always does on a fresh connection).
const REFUSED: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
content-length: 26\r\nconnection: close\r\n\r\ntoo many open connections\n";

/// The most a connection buffers: a request head of the read-only API is a
/// few hundred bytes. hyper's default (~400 KiB) would let each of
/// `max_connections` peers make the agent hold that much.
const MAX_BUF: usize = 16 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request's head (request line and headers).
    Head,
    /// A request is being answered, body and response included.
    Request,
    /// Kept alive, waiting for the next request.
    Idle,
}

impl Phase {
    fn label(self) -> HttpDeadline {
        match self {
            Phase::Head => HttpDeadline::Header,
            Phase::Request => HttpDeadline::Request,
            Phase::Idle => HttpDeadline::Idle,
        }
    }
}

/// The phase a connection is in and when it must have left it. Moves only
/// when the phase changes: activity within a phase never pushes it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub phase: Phase,
    pub at: Instant,
}

impl Deadline {
    /// A connection just accepted must send its first head in time.
    pub fn accepted(limits: &HttpLimits, now: Instant) -> Deadline {
        Deadline { phase: Phase::Head, at: now + limits.header_timeout }
    }

    /// Bytes came in. On an idle connection they begin the next request's
    /// head; in any other phase they change nothing.
    pub fn on_bytes(self, limits: &HttpLimits, now: Instant) -> Deadline {
        match self.phase {
            Phase::Idle => Deadline { phase: Phase::Head, at: now + limits.header_timeout },
            Phase::Head | Phase::Request => self,
        }
    }

    /// A request's head is in: it must be answered in time.
    pub fn on_request(self, limits: &HttpLimits, now: Instant) -> Deadline {
        Deadline { phase: Phase::Request, at: now + limits.request_timeout }
    }

    /// The response's body was produced (or dropped): the connection waits
    /// for the next request. Whatever of the response is still to be
    /// written goes out under the idle deadline.
    pub fn on_response_end(self, limits: &HttpLimits, now: Instant) -> Deadline {
        match self.phase {
            Phase::Request => Deadline { phase: Phase::Idle, at: now + limits.idle_timeout },
            Phase::Head | Phase::Idle => self,
        }
    }
}

/// How long the accept loop waits after `accept` failed: doubling from
/// [`AcceptBackoff::FIRST`] to [`AcceptBackoff::MAX`], and back to nothing
/// after an accept succeeds. `EMFILE` leaves the connection in the kernel's
/// queue and the listener readable, so retrying at once would spin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    pub const FIRST: Duration = Duration::from_millis(50);
    pub const MAX: Duration = Duration::from_secs(1);

    /// The wait after one more failure in a row.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next.unwrap_or(Self::FIRST);
        self.next = Some((wait * 2).min(Self::MAX));
        wait
    }

    pub fn succeeded(&mut self) {
        self.next = None;
    }

    /// Whether the last accept failed: the first failure of a run is
    /// logged, the rest only counted.
    pub fn failing(&self) -> bool {
        self.next.is_some()
    }
}

/// Serves `endpoints` on `listener` until `shutdown` completes, then stops
/// accepting and lets the connections open finish their requests (each
/// within its deadline).
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let metrics = endpoints.metrics.clone();
    let app = TowerToHyperService::new(router(endpoints));
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stop, stopping) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut backoff = AcceptBackoff::default();
    let mut full = false;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(error) => {
                HttpConnectionRefused { reason: RefusedReason::AcceptError, detail: &error }
                    .emit(metrics.agent());
                let first = !backoff.failing();
                let wait = backoff.failed();
                if first {
                    warn!("HTTP endpoint: cannot accept connections ({error}); trying again with a growing pause, up to {}s", AcceptBackoff::MAX.as_secs());
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse(&stream);
            drop(stream);
            HttpConnectionRefused { reason: RefusedReason::MaxConnections, detail: &peer }
                .emit(metrics.agent());
            if !full {
                full = true;
                warn!(
                    max_connections = limits.max_connections,
                    "HTTP endpoint: every connection slot is taken; new connections are closed \
                     until one ends (http.max_connections)"
                );
            }
            continue;
        };
        if full {
            full = false;
            info!("HTTP endpoint: connection slots free again");
        }
        let connection = Connection {
            peer,
            limits,
            app: app.clone(),
            metrics: metrics.agent().clone(),
            stopping: stopping.clone(),
        };
        tokio::spawn(async move {
            connection.serve(stream).await;
            drop(slot);
        });
    }
    drop(listener);
    // Tells every connection to finish its request and close.
    drop(stop);
    // Each connection holds a slot until it ends, so all slots back means
    // all ended; the deadlines bound how long that takes.
    let _ = slots.acquire_many(limits.max_connections).await;
}

/// Best effort: a fresh socket's send buffer is empty, so this either goes
/// out whole or not at all, and never waits.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSED);
}

struct Connection {
    peer: SocketAddr,
    limits: HttpLimits,
    app: TowerToHyperService<axum::Router>,
    metrics: AgentMetrics,
    stopping: watch::Receiver<()>,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream) {
        let clock = Arc::new(Timing::new(self.limits));
        let io = TokioIo::new(Watched { inner: stream, clock: clock.clone() });
        let (app, on_request) = (self.app.clone(), clock.clone());
        let service = service_fn(move |request: Request<Incoming>| {
            on_request.update(Deadline::on_request);
            let answered = app.call(request);
            let clock = on_request.clone();
            async move {
                let response: Response<Body> = answered.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked { body, clock: Some(clock) }))
            }
        });
        let mut builder = http1::Builder::new();
        // The connection's own deadline covers the head (see the module
        // documentation); hyper's would need a timer and cut idle
        // connections at the header timeout.
        builder.header_read_timeout(None).max_buf_size(MAX_BUF);
        let mut conn = pin!(builder.serve_connection(io, service));
        let mut draining = false;
        loop {
            let deadline = clock.current();
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        debug!(peer = %self.peer, "HTTP connection ended: {e}");
                    }
                    return;
                }
                () = tokio::time::sleep_until(deadline.at) => {
                    // The deadline may have moved while the timer fired.
                    if clock.current() == deadline {
                        HttpConnectionTimedOut { peer: self.peer, phase: deadline.phase.label() }
                            .emit(&self.metrics);
                        return;
                    }
                }
                () = clock.moved.notified() => {}
                _ = self.stopping.changed(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One connection's deadline, moved by its socket, its service and its
/// response bodies, and watched by the task serving it.
struct Timing {
    limits: HttpLimits,
    deadline: Mutex<Deadline>,
    /// Woken whenever the deadline moves, earlier or later. `notify_one`
    /// keeps a permit when nobody waits, so a move between reading the
    /// deadline and waiting is not lost.
    moved: Notify,
}

impl Timing {
    fn new(limits: HttpLimits) -> Timing {
        let deadline = Deadline::accepted(&limits, Instant::now());
        Timing { limits, deadline: Mutex::new(deadline), moved: Notify::new() }
    }

    fn current(&self) -> Deadline {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, step: fn(Deadline, &HttpLimits, Instant) -> Deadline) {
        let mut deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
        let next = step(*deadline, &self.limits, Instant::now());
        if next != *deadline {
            *deadline = next;
            self.moved.notify_one();
        }
    }
}

/// The socket, telling the clock when bytes arrive.
struct Watched {
    inner: TcpStream,
    clock: Arc<Timing>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.update(Deadline::on_bytes);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that tells the clock when it has been produced, or
/// dropped unfinished.
struct Tracked {
    body: Body,
    clock: Option<Arc<Timing>>,
}

impl Tracked {
    fn ended(&mut self) {
        if let Some(clock) = self.clock.take() {
            clock.update(Deadline::on_response_end);
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            max_connections: 4,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_connection_goes_head_request_idle_head() {
        let limits = limits();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let d = Deadline::accepted(&limits, t0);
        assert_eq!(d, Deadline { phase: Phase::Head, at: t0 + s(5) });
        // Bytes of the head trickling in do not buy time.
        assert_eq!(d.on_bytes(&limits, t0 + s(4)), d);
        let d = d.on_request(&limits, t0 + s(1));
        assert_eq!(d, Deadline { phase: Phase::Request, at: t0 + s(61) });
        // Nor do bytes of a body, or a pipelined next request.
        assert_eq!(d.on_bytes(&limits, t0 + s(50)), d);
        let d = d.on_response_end(&limits, t0 + s(2));
        assert_eq!(d, Deadline { phase: Phase::Idle, at: t0 + s(32) });
        // A second end (the body dropped after it ended) changes nothing.
        assert_eq!(d.on_response_end(&limits, t0 + s(3)), d);
        // The next request's first byte starts its header deadline, which
        // may be earlier than the idle one it replaces.
        let d = d.on_bytes(&limits, t0 + s(10));
        assert_eq!(d, Deadline { phase: Phase::Head, at: t0 + s(15) });
        assert_eq!(d.on_response_end(&limits, t0 + s(11)), d);
    }

    #[test]
    fn accept_backoff_doubles_to_its_ceiling_and_resets() {
        let mut backoff = AcceptBackoff::default();
        assert!(!backoff.failing());
        let waits: Vec<_> = (0..7).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1000, 1000]);
        assert!(backoff.failing());
        backoff.succeeded();
        assert!(!backoff.failing());
        assert_eq!(backoff.failed(), AcceptBackoff::FIRST);
    }

    #[test]
    fn the_refusal_is_a_well_formed_response() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        let length: usize =
            head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
        assert_eq!(length, body.len());
    }
}
