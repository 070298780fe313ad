//! One read model for a run, and every form it takes on the wire.
//!
//! [`RunFacts`] is a run as the store keeps it (record, transitions, events) together
//! with what only the running agent knows of it ([`LiveFacts`]). Each document that
//! describes a run is a projection of it, made in this file: the HTTP API's
//! `GET /v1/runs/{id}` ([`RunView`]), a `corral ps` line ([`RunRow`]), a `corral show`
//! entry ([`ShownRun`]) and a run's history as event lines ([`RunFacts::history`]). The
//! forms differ only where their wire contracts already did (field names, time formats);
//! what they say about a run is decided once, here.

use chrono::{DateTime, Utc};

use crate::cgroup::Stats;
use crate::placement::{Assignment, CpuGrant};
use crate::scheduler::{ExitStatus, Phase, RunState};
use crate::store::{EventRecord, ExitInfo, LaunchInfo, RunDetail, RunRecord, TransitionRecord};
use crate::vocab::{RunId, Timestamp};

use super::model::{EventView, ExitView, LaunchView, RunView, TransitionView};
use super::protocol::{EventLine, ExitLine, RunRow, ShownRun, TransitionLine};

/// What the agent knows of a run beyond its stored record. The default is a run read
/// from the store alone.
#[derive(Debug, Clone, Default)]
pub struct LiveFacts<'a> {
    /// Its state in memory, which may be ahead of the record.
    pub state: Option<&'a RunState>,
    pub assignment: Option<&'a Assignment>,
    pub launch: Option<&'a LaunchInfo>,
    pub priority: Option<u16>,
    /// Frozen by hand, and held until thawed by hand.
    pub held: bool,
    /// CPU used since launch, as a percentage of one CPU.
    pub cpu_percent: Option<f64>,
    /// Its cgroup's memory usage now.
    pub memory_bytes: Option<u64>,
    /// Its job's next firing, for recurring jobs.
    pub next_fire: Option<DateTime<Utc>>,
    /// Its job's uid from the `dynamic_users` range.
    pub dynamic_uid: Option<u32>,
    /// Its cgroup's statistics, read for this request.
    pub stats: Option<Stats>,
    /// A waiting run held back for the reservation of this run, the head of
    /// the queue.
    pub reserved_for: Option<&'a RunId>,
}

/// A run: its record, its history when it was read, and what the agent adds.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    pub record: &'a RunRecord,
    /// Transitions and events; empty when only the record was read.
    pub detail: Option<&'a RunDetail>,
    pub live: LiveFacts<'a>,
}

impl<'a> RunFacts<'a> {
    /// A run with its history, as the store has it.
    pub fn stored(detail: &'a RunDetail) -> RunFacts<'a> {
        RunFacts { record: &detail.record, detail: Some(detail), live: LiveFacts::default() }
    }

    /// A run of which only the record was read (a listing).
    pub fn record(record: &'a RunRecord) -> RunFacts<'a> {
        RunFacts { record, detail: None, live: LiveFacts::default() }
    }

    pub fn with_live(self, live: LiveFacts<'a>) -> RunFacts<'a> {
        RunFacts { live, ..self }
    }

    /// The agent's state for it where it has one, else the stored one.
    pub fn state(&self) -> &'a RunState {
        self.live.state.unwrap_or(&self.record.state)
    }

    pub fn assignment(&self) -> Option<&'a Assignment> {
        self.live.assignment.or(self.record.assignment.as_ref())
    }

    pub fn launch(&self) -> Option<&'a LaunchInfo> {
        self.live.launch.or(self.record.launch.as_ref())
    }

    /// The `GET /v1/runs/{id}` document.
    pub fn http(self) -> RunView {
        let state = self.state();
        let record = self.record;
        RunView {
            id: record.id.clone(),
            job: record.job.clone(),
            seq: record.seq,
            state: state.phase.name(),
            phase: state.phase.clone(),
            attempt: state.attempt,
            restarts: state.restarts,
            oom_requeues: state.oom_requeues,
            memory_limit_bytes: state.memory_limit.map(|b| b.get()),
            created_at: record.created_at.to_datetime(),
            updated_at: record.updated_at.to_datetime(),
            finished_at: record.finished_at.and_then(Timestamp::to_datetime),
            placement: self.assignment().cloned(),
            // The store's, not the record's: the API adds it.
            cluster_run: None,
            reserved_for: self.live.reserved_for.cloned(),
            launch: self.launch().map(|l| LaunchView {
                shim_pid: l.shim_pid,
                init_pid: l.init_pid,
                run_dir: l.run_dir.display().to_string(),
                launched_at: l.launched_at.to_datetime(),
            }),
            exit: record.exit.as_ref().map(|e| ExitView {
                code: e.status.shell_code(),
                signal: signal(e.status),
                exited_at: e.exited_at.to_datetime(),
                peak_memory_bytes: peak_memory_bytes(e),
                oom_kills: e.oom_kills,
                cpu_seconds: e.cpu_seconds,
            }),
            transitions: self
                .transitions()
                .iter()
                .map(|t| TransitionView {
                    at: t.at.to_datetime(),
                    from: t.from.clone(),
                    to: t.to.clone(),
                    reason: t.reason.clone(),
                })
                .collect(),
            events: self
                .events()
                .iter()
                .map(|e| EventView {
                    at: e.at.to_datetime(),
                    event: e.event.clone(),
                    reason: e.reason.clone(),
                })
                .collect(),
            stats: self.live.stats,
        }
    }

    /// Its `corral ps` line at `now`.
    pub fn row(&self, now: Timestamp) -> RunRow {
        let record = self.record;
        let assignment = self.assignment();
        let mut state = self.state().phase.name().to_owned();
        if let Phase::Blocked { after } = &self.state().phase {
            state = format!("{state} (after {after})");
        }
        if self.live.held {
            state.push_str(" (by operator)");
        }
        if let Phase::Suspended { by: crate::scheduler::SuspendedBy::Fence, .. } =
            &self.state().phase
        {
            state.push_str(" (fenced: cluster unreachable)");
        }
        if let Some(head) = self.live.reserved_for {
            state.push_str(&format!(" (reserved for {head})"));
        }
        let next_fire = self.live.next_fire;
        RunRow {
            job: record.job.to_string(),
            run: record.id.to_string(),
            state,
            priority: self.live.priority,
            cpus: match assignment.map(|a| &a.cpus) {
                Some(CpuGrant::Exclusive(set)) => set.to_string(),
                Some(CpuGrant::Shared) => "shared".into(),
                None => String::new(),
            },
            numa: assignment.map(|a| a.mems.to_string()).unwrap_or_default(),
            memory_limit_bytes: self.state().memory_limit.map(|b| b.get()),
            cpu_percent: self.live.cpu_percent,
            memory_bytes: self.live.memory_bytes,
            next_fire: next_fire.map(|t| t.to_rfc3339()),
            next_fire_in_seconds: next_fire.map(|t| {
                let ms = t.timestamp_millis().saturating_sub(now.as_millis()).max(0);
                u64::try_from(ms / 1000).unwrap_or(0)
            }),
            age_seconds: now.since(record.created_at).as_secs(),
            created_at: record.created_at.as_millis(),
            // The array's facts are the store's, not the record's: the
            // control socket adds them (`agent/arrays.rs`).
            array: None,
            array_index: None,
            waiting_for: None,
            cluster_run: None,
        }
    }

    /// Its `corral show` entry at `now`.
    pub fn shown(&self, now: Timestamp) -> ShownRun {
        let record = self.record;
        let launch = self.launch();
        ShownRun {
            row: self.row(now),
            // The attempt the stored record is at, like `exit`, which is that attempt's.
            attempt: record.state.attempt,
            run_dir: launch.map(|l| l.run_dir.display().to_string()),
            pid: launch.map(|l| l.init_pid),
            dynamic_uid: self.live.dynamic_uid,
            exit: record.exit.as_ref().map(|e| ExitLine {
                status: e.status.to_string(),
                exit_code: match e.status {
                    ExitStatus::Code(c) => Some(c),
                    ExitStatus::Signal(_) => None,
                },
                signal: signal(e.status),
                at: e.exited_at.to_string(),
                peak_memory_bytes: peak_memory_bytes(e),
                oom_kills: e.oom_kills,
                cpu_seconds: e.cpu_seconds,
            }),
            transitions: self
                .transitions()
                .iter()
                .map(|t| TransitionLine {
                    at: t.at.to_string(),
                    from: t.from.clone(),
                    to: t.to.clone(),
                    reason: t.reason.clone(),
                })
                .collect(),
            events: self.history().into_iter().filter(|e| e.kind != "transition").collect(),
        }
    }

    /// Its stored transitions; none for a run of which only the record was read.
    fn transitions(&self) -> &'a [TransitionRecord] {
        self.detail.map_or(&[], |d| &d.transitions)
    }

    /// Its stored run events; none for a run of which only the record was read.
    fn events(&self) -> &'a [EventRecord] {
        self.detail.map_or(&[], |d| &d.events)
    }

    /// Its transitions and events as event lines, oldest first.
    pub fn history(&self) -> Vec<EventLine> {
        let (job, run) = (self.record.job.as_str(), self.record.id.as_str());
        let mut lines: Vec<EventLine> = self
            .transitions()
            .iter()
            .map(|t| EventLine::transition(t.at, job, run, t.from.as_deref(), &t.to, &t.reason))
            .collect();
        lines.extend(
            self.events()
                .iter()
                .map(|e| EventLine::run_event(e.at, job, run, e.event.kind(), &e.reason)),
        );
        lines.sort_by_key(|l| l.at_ms);
        lines
    }
}

fn signal(status: ExitStatus) -> Option<i32> {
    match status {
        ExitStatus::Signal(s) => Some(s),
        ExitStatus::Code(_) => None,
    }
}

fn peak_memory_bytes(exit: &ExitInfo) -> Option<u64> {
    exit.peak_memory.map(|b| b.get())
}
