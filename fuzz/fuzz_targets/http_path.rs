//! The HTTP endpoint's path parameters: job names and run ids as they arrive in
//! `/v1/jobs/{name}` and `/v1/runs/{id}`, through the real router; and run ids through
//! the parser the agent uses on them.
//!
//! Input: `segment NUL raw-path`: a path segment as the client means it (sent
//! percent-encoded), and any bytes sent as the request's path.
//!
//! Invariants: no panic on any request path; a percent-encoded segment reaches the
//! agent decoded and unchanged, a job name only when it is a valid one; a run id the
//! parser accepts is exactly the id `run_id` makes of its parts.

#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode, Uri};
use axum::Router;
use corral::api::{router, ApiError, ApiSource, Endpoints, JobView, NodeView, RunView};
use corral::metrics::{Metrics, MetricsConfig, PublishedSnapshot};
use corral::vocab::parse_run_id;
use corral::vocab::run_id;
use corral::vocab::JobName;
use corral::vocab::RunId;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[derive(Debug, Clone, PartialEq)]
enum Asked {
    Job(String),
    Run(String),
}

/// What the agent was asked since the last request began.
static ASKED: Mutex<Vec<Asked>> = Mutex::new(Vec::new());

/// An agent that knows no jobs and no runs, and notes what it was asked.
struct Recorder;

impl ApiSource for Recorder {
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn jobs(&self) -> Vec<JobView> {
        Vec::new()
    }
    fn job(&self, name: &JobName) -> Option<JobView> {
        ASKED.lock().unwrap().push(Asked::Job(name.as_str().to_owned()));
        None
    }
    fn run(&self, id: &RunId) -> Result<Option<RunView>, ApiError> {
        ASKED.lock().unwrap().push(Asked::Run(id.as_str().to_owned()));
        Ok(None)
    }
    fn node(&self) -> Option<NodeView> {
        None
    }
}

struct Server {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let metrics = Arc::new(Metrics::new(
            &MetricsConfig::default(),
            Arc::new(PublishedSnapshot::default()),
        ));
        let router = router(Endpoints { api: Arc::new(Recorder), metrics, fresh: None });
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        Server { runtime, router }
    })
}

/// `GET uri`: the status, and what the agent was asked on the way.
fn get(uri: Uri) -> (StatusCode, Vec<Asked>) {
    let server = server();
    ASKED.lock().unwrap().clear();
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = server
        .runtime
        .block_on(server.router.clone().oneshot(request))
        .expect("the router is infallible");
    let asked = std::mem::take(&mut *ASKED.lock().unwrap());
    (response.status(), asked)
}

/// Every byte but the unreserved ones as `%XX`.
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fuzz_target!(|bytes: &[u8]| {
    let (segment, raw_path) = match bytes.iter().position(|&b| b == 0) {
        Some(nul) => (&bytes[..nul], &bytes[nul + 1..]),
        None => (bytes, &b""[..]),
    };
    let Ok(segment) = std::str::from_utf8(segment) else { return };

    if let Some((job, seq)) = parse_run_id(&RunId::new(segment)) {
        assert_eq!(run_id(&job, seq).as_str(), segment, "{segment:?} is not the id of its parts");
    }

    // `.` and `..` are not segments a client can send: they are resolved away.
    if !segment.is_empty() && segment != "." && segment != ".." {
        let encoded = percent_encode(segment);
        let uri: Uri = format!("/v1/jobs/{encoded}").parse().expect("an encoded path is a URI");
        let (status, asked) = get(uri);
        assert_eq!(status, StatusCode::NOT_FOUND, "{segment:?}");
        let expected: Vec<Asked> = match JobName::parse(segment) {
            Ok(_) => vec![Asked::Job(segment.to_owned())],
            Err(_) => vec![],
        };
        assert_eq!(asked, expected, "{segment:?}");

        let uri: Uri = format!("/v1/runs/{encoded}").parse().expect("an encoded path is a URI");
        let (status, asked) = get(uri);
        assert_eq!(status, StatusCode::NOT_FOUND, "{segment:?}");
        assert_eq!(asked, vec![Asked::Run(segment.to_owned())], "{segment:?}");
    }

    // Whatever path a client sends.
    if let Ok(uri) = Uri::try_from(raw_path) {
        if uri.path().starts_with('/') {
            let (status, asked) = get(uri);
            assert!(asked.len() <= 1, "one request asked the agent {asked:?}");
            assert!(
                [
                    StatusCode::OK,
                    StatusCode::BAD_REQUEST,
                    StatusCode::NOT_FOUND,
                    StatusCode::SERVICE_UNAVAILABLE
                ]
                .contains(&status),
                "{status}"
            );
        }
    }
});
