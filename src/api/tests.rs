//! The endpoint served for real on loopback, answering from a fake agent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::cgroup::{LayoutKind, Stats};
use crate::config::HttpLimits;
use crate::metrics::{HttpDeadline, RefusedReason};
use crate::metrics::{Metrics, MetricsConfig, PublishedSnapshot};
use crate::placement::{Ledger, PlacementConfig, Request};
use crate::scheduler::{ExitStatus, Phase, PreemptionMode, RunEvent, RunState};
use crate::store::{EventRecord, ExitInfo, RunDetail, RunRecord, TransitionRecord};
use crate::topology::testing::fixture;
use crate::topology::Topology;
use crate::vocab::Bytes;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

use super::model::{FileStatus, RunListing};

struct FakeAgent {
    ready: bool,
    topology: Topology,
    ledger: Ledger,
    /// How long `/readyz` takes to answer: a slow handler.
    slow_ready: Duration,
}

fn topology() -> Topology {
    fixture("vm-2cpu")
}

fn etl() -> JobView {
    JobView {
        name: JobName::parse("etl").unwrap(),
        file: Some("/etc/corral/jobs/etl.yaml".into()),
        file_status: FileStatus::Valid,
        problems: vec![],
        priority: 50,
        preemption: PreemptionMode::Suspend,
        schedule: Some("0 2 * * *".into()),
        next_fire: chrono::DateTime::from_timestamp(1_800_000_000, 0),
        user: "etl".into(),
        dynamic_uid: None,
        runs: vec![RunListing::new(
            RunId::new("etl-1"),
            &Phase::Running { since: Timestamp::from_millis(1_000) },
            Timestamp::from_millis(1_000),
        )],
    }
}

fn broken() -> JobView {
    JobView {
        name: JobName::parse("broken").unwrap(),
        file: Some("/etc/corral/jobs/broken.yaml".into()),
        file_status: FileStatus::Invalid,
        problems: vec!["broken.yaml:3: resources.cpus: expected a number".into()],
        priority: 50,
        preemption: PreemptionMode::Never,
        schedule: None,
        next_fire: None,
        user: "dynamic".into(),
        dynamic_uid: Some(61184),
        runs: vec![],
    }
}

fn detail() -> RunDetail {
    let mut state = RunState::new(Some(Bytes::GIB), Timestamp::from_millis(0));
    state.phase = Phase::Succeeded;
    RunDetail {
        record: RunRecord {
            id: RunId::new("etl-1"),
            job: JobName::parse("etl").unwrap(),
            seq: 1,
            state,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(5_000),
            finished_at: Some(Timestamp::from_millis(5_000)),
            assignment: None,
            launch: None,
            version: None,
            exit: Some(ExitInfo {
                status: ExitStatus::Signal(9),
                exited_at: Timestamp::from_millis(5_000),
                peak_memory: Some(Bytes::MIB),
                oom_kills: 1,
                cpu_seconds: 0.25,
            }),
        },
        transitions: vec![TransitionRecord {
            n: 1,
            at: Timestamp::from_millis(0),
            from: None,
            to: "pending".into(),
            reason: "created".into(),
        }],
        events: vec![EventRecord {
            n: 1,
            at: Timestamp::from_millis(4_000),
            event: RunEvent::OomKilled,
            reason: "memory.oom_control oom_kill 1".into(),
        }],
    }
}

impl ApiSource for FakeAgent {
    fn ready(&self) -> Result<(), String> {
        std::thread::sleep(self.slow_ready);
        if self.ready {
            Ok(())
        } else {
            Err("taking over the runs of the previous agent".into())
        }
    }

    fn jobs(&self) -> Vec<JobView> {
        vec![broken(), etl()]
    }

    fn job(&self, name: &JobName) -> Option<JobView> {
        self.jobs().into_iter().find(|j| &j.name == name)
    }

    fn run(&self, id: &RunId) -> Result<Option<RunView>, ApiError> {
        let mut stats = Stats::default();
        stats.memory.usage_bytes = Some(4096);
        Ok((id.as_str() == "etl-1").then(|| RunView::new(detail(), Some(stats))))
    }

    fn node(&self) -> Option<NodeView> {
        self.ready.then(|| NodeView::new(&self.topology, &self.ledger, Some(LayoutKind::Hybrid), 2))
    }
}

/// Serves a fake agent on a free loopback port; returns the address.
async fn start(ready: bool) -> std::net::SocketAddr {
    start_limited(ready, HttpLimits::default(), Duration::ZERO).await.0
}

/// As [`start`], under `limits`, with a `/readyz` that takes `slow_ready`;
/// also returns the metrics, to read the endpoint's counters.
async fn start_limited(
    ready: bool,
    limits: HttpLimits,
    slow_ready: Duration,
) -> (std::net::SocketAddr, Arc<Metrics>) {
    let topology = topology();
    let mut ledger = Ledger::new(&topology, PlacementConfig::default()).unwrap();
    ledger
        .admit(&topology, &Request::exclusive(RunId::new("etl-1"), 1).with_memory(Bytes::GIB))
        .unwrap();
    let api = Arc::new(FakeAgent { ready, topology, ledger, slow_ready });
    let metrics =
        Arc::new(Metrics::new(&MetricsConfig::default(), Arc::new(PublishedSnapshot::default())));
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let endpoints = Endpoints { api, metrics: metrics.clone(), fresh: None };
    tokio::spawn(serve(listener, endpoints, limits, std::future::pending()));
    (addr, metrics)
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        assert!(self.content_type.starts_with("application/json"), "{}", self.content_type);
        serde_json::from_str(&self.body).unwrap()
    }
}

/// One HTTP/1.1 request, read to the end (the server closes after it).
async fn get(addr: std::net::SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: corral\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type =
        head.lines().find_map(|l| l.strip_prefix("content-type: ")).unwrap_or_default().to_string();
    Reply { status, content_type, body: body.to_string() }
}

#[tokio::test]
async fn health_and_readiness() {
    let addr = start(false).await;
    let health = get(addr, "/healthz", None).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert!(health.content_type.starts_with("text/plain"));
    let ready = get(addr, "/readyz", None).await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("taking over the runs"), "{}", ready.body);

    let addr = start(true).await;
    let ready = get(addr, "/readyz", None).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
}

#[tokio::test]
async fn metrics_in_either_format() {
    let addr = start(true).await;
    let text = get(addr, "/metrics", None).await;
    assert_eq!(text.status, 200);
    assert_eq!(text.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(text.body.contains("# TYPE corral_preemptions_total counter\n"));
    let open = get(addr, "/metrics", Some("application/openmetrics-text;version=1.0.0")).await;
    assert_eq!(open.status, 200);
    assert!(open.content_type.starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(open.body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn jobs_list_and_detail() {
    let addr = start(true).await;
    let list = get(addr, "/v1/jobs", None).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["name"], "broken");
    assert_eq!(jobs[0]["file_status"], "invalid");
    assert_eq!(jobs[0]["problems"][0], "broken.yaml:3: resources.cpus: expected a number");
    assert_eq!((&jobs[0]["user"], &jobs[0]["dynamic_uid"]), (&"dynamic".into(), &61184.into()));
    assert!(jobs[1]["dynamic_uid"].is_null());

    let one = get(addr, "/v1/jobs/etl", None).await.json();
    assert_eq!(one["name"], "etl");
    assert_eq!(one["file_status"], "valid");
    assert_eq!(one["preemption"], "suspend");
    assert_eq!(one["schedule"], "0 2 * * *");
    assert_eq!(one["next_fire"], "2027-01-15T08:00:00Z");
    assert_eq!(one["runs"][0]["id"], "etl-1");
    assert_eq!(one["runs"][0]["state"], "running");
    assert_eq!(one["runs"][0]["since"], "1970-01-01T00:00:01Z");
}

#[tokio::test]
async fn unknown_jobs_runs_and_paths_are_404_with_a_json_error() {
    let addr = start(true).await;
    for path in ["/v1/jobs/nope", "/v1/jobs/Not%20A%20Name", "/v1/runs/etl-99", "/v1/nothing"] {
        let reply = get(addr, path, None).await;
        assert_eq!(reply.status, 404, "{path}");
        let error = reply.json();
        assert!(error["error"].as_str().unwrap().starts_with("no "), "{path}: {error}");
    }
    assert_eq!(get(addr, "/v1/jobs/nope", None).await.json()["error"], "no job named \"nope\"");
    assert_eq!(get(addr, "/v1/runs/etl-99", None).await.json()["error"], "no run \"etl-99\"");
}

#[tokio::test]
async fn run_detail() {
    let addr = start(true).await;
    let reply = get(addr, "/v1/runs/etl-1", None).await;
    assert_eq!(reply.status, 200);
    let run = reply.json();
    assert_eq!(run["id"], "etl-1");
    assert_eq!(run["job"], "etl");
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["phase"]["phase"], "succeeded");
    assert_eq!(run["memory_limit_bytes"], 1u64 << 30);
    assert_eq!(run["finished_at"], "1970-01-01T00:00:05Z");
    assert_eq!(run["exit"]["code"], 137);
    assert_eq!(run["exit"]["signal"], 9);
    assert_eq!(run["exit"]["oom_kills"], 1);
    assert_eq!(run["exit"]["peak_memory_bytes"], 1u64 << 20);
    assert_eq!(run["transitions"][0]["to"], "pending");
    assert_eq!(run["transitions"][0]["from"], Value::Null);
    assert_eq!(run["events"][0]["event"]["kind"], "oom-killed");
    assert_eq!(run["stats"]["memory"]["usage_bytes"], 4096);
    assert_eq!(run["placement"], Value::Null);
}

#[tokio::test]
async fn node_view() {
    let addr = start(true).await;
    let node = get(addr, "/v1/node", None).await.json();
    assert_eq!(node["layout"], "hybrid");
    assert_eq!(node["queue_length"], 2);
    assert_eq!(node["allocatable_cpus"], "0-1");
    assert_eq!(node["assignments"][0]["owner"], "etl-1");
    let numa = &node["numa_nodes"][0];
    assert_eq!(numa["node"], 0);
    assert_eq!(numa["allocatable_cpus"], 2);
    assert_eq!(numa["allocated_cpus"], 1);
    assert_eq!(numa["allocated_memory_bytes"], 1u64 << 30);
    assert!(node["topology"].is_object());
}

#[tokio::test]
async fn node_view_while_starting_is_503() {
    let addr = start(false).await;
    let reply = get(addr, "/v1/node", None).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"], "not ready: the agent is starting");
}

#[tokio::test]
async fn only_get_is_served() {
    let addr = start(true).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /v1/jobs HTTP/1.1\r\nHost: corral\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
}

#[tokio::test]
async fn binding_a_taken_port_names_the_address() {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let err = bind(addr).await.unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads until the server closes the connection (EOF or a reset), for at
/// most `within`; returns what was read and how long it took, or panics if
/// the connection is still open then.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = tokio::time::Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(started + within, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after {within:?}; read so far: {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    (String::from_utf8_lossy(&raw).into_owned(), started.elapsed())
}

/// Whether the server leaves the connection open for `for_at_least`.
async fn stays_open(stream: &mut TcpStream, for_at_least: Duration) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(for_at_least, stream.read(&mut buf)).await.is_err()
}

const HEALTHZ_KEEP_ALIVE: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: corral\r\n\r\n";

#[tokio::test]
async fn a_peer_that_sends_nothing_or_half_a_head_is_closed_at_the_header_timeout() {
    let limits = HttpLimits { header_timeout: millis(300), ..HttpLimits::default() };
    let (addr, metrics) = start_limited(true, limits, Duration::ZERO).await;
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /heal").await.unwrap();
    // One byte every 100 ms: activity does not buy time.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let dripping = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: corral\r\n" {
            if trickle.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(millis(100)).await;
        }
        trickle
    });
    for stream in [&mut silent, &mut half] {
        let (text, _) = until_closed(stream, Duration::from_secs(3)).await;
        let took = started.elapsed();
        assert!(took >= millis(250), "closed after {took:?}");
        assert!(!text.contains("200 OK"), "{text}");
    }
    let mut trickle = dripping.await.unwrap();
    let (text, _) = until_closed(&mut trickle, Duration::from_secs(3)).await;
    assert!(!text.contains("200 OK"), "{text}");
    // Cut at its header timeout, long before its 38 bytes were all sent.
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(metrics.agent().http_timed_out.get(HttpDeadline::Header), 3);
    assert_eq!(get(addr, "/healthz", None).await.status, 200);
}

#[tokio::test]
async fn a_kept_alive_connection_waits_its_idle_timeout_not_the_header_timeout() {
    let limits = HttpLimits {
        header_timeout: millis(200),
        idle_timeout: millis(1500),
        ..HttpLimits::default()
    };
    let (addr, metrics) = start_limited(true, limits, Duration::ZERO).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        stream.write_all(HEALTHZ_KEEP_ALIVE).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("ok\n"), "{head}");
        // Well past the header timeout, still open for the next request.
        assert!(stays_open(&mut stream, millis(600)).await);
    }
    let (_, took) = until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(metrics.agent().http_timed_out.get(HttpDeadline::Idle), 1);
    assert_eq!(metrics.agent().http_timed_out.get(HttpDeadline::Header), 0);
}

#[tokio::test]
async fn a_request_answered_too_slowly_is_cut_at_the_request_timeout() {
    let limits = HttpLimits { request_timeout: millis(300), ..HttpLimits::default() };
    let (addr, metrics) = start_limited(true, limits, Duration::from_secs(2)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: corral\r\n\r\n").await.unwrap();
    let (text, took) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(text.is_empty(), "{text}");
    assert!(took >= millis(250) && took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(metrics.agent().http_timed_out.get(HttpDeadline::Request), 1);
}

#[tokio::test]
async fn past_max_connections_a_connection_is_told_503_and_closed_at_once() {
    let limits =
        HttpLimits { max_connections: 2, header_timeout: millis(500), ..HttpLimits::default() };
    let (addr, metrics) = start_limited(true, limits, Duration::ZERO).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The two are accepted in order; give the loop a moment to take them.
    tokio::time::sleep(millis(50)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (text, took) = until_closed(&mut third, Duration::from_secs(1)).await;
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.ends_with("too many open connections\n"), "{text}");
    assert!(took < millis(400), "{took:?}");
    assert_eq!(metrics.agent().http_refused.get(RefusedReason::MaxConnections), 1);
    // The held ones time out, and their slots serve again.
    for stream in &mut held {
        until_closed(stream, Duration::from_secs(3)).await;
    }
    assert_eq!(get(addr, "/healthz", None).await.status, 200);
    assert_eq!(metrics.agent().http_refused.get(RefusedReason::MaxConnections), 1);
    assert_eq!(metrics.agent().http_timed_out.get(HttpDeadline::Header), 2);
}

#[tokio::test]
async fn shutdown_waits_for_the_request_under_way_and_closes_idle_ones() {
    let (addr, _metrics) = {
        let topology = topology();
        let ledger = Ledger::new(&topology, PlacementConfig::default()).unwrap();
        let api = Arc::new(FakeAgent { ready: true, topology, ledger, slow_ready: millis(400) });
        let metrics = Arc::new(Metrics::new(
            &MetricsConfig::default(),
            Arc::new(PublishedSnapshot::default()),
        ));
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let endpoints = Endpoints { api, metrics: metrics.clone(), fresh: None };
        let server = tokio::spawn(serve(listener, endpoints, HttpLimits::default(), async {
            let _ = stopped.await;
        }));
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /readyz HTTP/1.1\r\nHost: corral\r\n\r\n").await.unwrap();
        tokio::time::sleep(millis(100)).await;
        stop.send(()).unwrap();
        let (answer, _) = until_closed(&mut busy, Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        // Without a request it never began, the idle one is closed well
        // before its 5 s header timeout.
        let (_, took) = until_closed(&mut idle, Duration::from_secs(2)).await;
        assert!(took < Duration::from_secs(2));
        tokio::time::timeout(Duration::from_secs(3), server).await.unwrap().unwrap();
        (addr, metrics)
    };
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
}
