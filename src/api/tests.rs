//! The endpoint served for real on loopback, answering from a fake agent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::cgroup::{LayoutKind, Stats};
use crate::metrics::{Metrics, MetricsConfig, PublishedSnapshot};
use crate::placement::{Ledger, PlacementConfig, Request, RunId};
use crate::scheduler::{ExitStatus, JobName, Phase, PreemptionMode, RunEvent, RunState, Timestamp};
use crate::store::{EventRecord, ExitInfo, RunDetail, RunRecord, TransitionRecord};
use crate::topology::testing::fixture;
use crate::topology::{Bytes, Topology};

use super::model::{FileStatus, RunSummary};

struct FakeAgent {
    ready: bool,
    topology: Topology,
    ledger: Ledger,
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
        runs: vec![RunSummary::new(
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
    let topology = topology();
    let mut ledger = Ledger::new(&topology, PlacementConfig::default()).unwrap();
    ledger
        .admit(&topology, &Request::exclusive(RunId::new("etl-1"), 1).with_memory(Bytes::GIB))
        .unwrap();
    let api = Arc::new(FakeAgent { ready, topology, ledger });
    let metrics =
        Arc::new(Metrics::new(&MetricsConfig::default(), Arc::new(PublishedSnapshot::default())));
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, Endpoints { api, metrics }, std::future::pending()));
    addr
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
