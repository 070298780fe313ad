//! What a node reports of a cluster run: its `status/{run}` record, made
//! from the local run's record and history as the store holds them, so a
//! status written after a restart says exactly what one written before it
//! would have. Pure.

use crate::cluster::records::{HandBack, RunEnd, RunStatus, StatusEvent, STATUS_EVENTS};
use crate::scheduler::{ExitStatus, Phase};
use crate::store::{ClusterMapping, RunDetail};
use crate::vocab::Timestamp;

/// The phase name of a status whose attempt the node will not run.
pub const HANDED_BACK: &str = "handed-back";

/// The status of the local run `detail`, which runs `mapping` on `node`.
pub fn of_run(
    node: &str,
    mapping: &ClusterMapping,
    detail: &RunDetail,
    now: Timestamp,
) -> RunStatus {
    let record = &detail.record;
    let phase = &record.state.phase;
    let mut events: Vec<StatusEvent> =
        detail
            .transitions
            .iter()
            .map(|t| StatusEvent {
                at: t.at,
                what: match &t.from {
                    Some(from) => format!("{from} -> {}: {}", t.to, t.reason),
                    None => format!("{}: {}", t.to, t.reason),
                },
            })
            .chain(detail.events.iter().map(|e| StatusEvent {
                at: e.at,
                what: format!("{}: {}", e.event.kind(), e.reason),
            }))
            .collect();
    // Stable: a transition and an event at the same moment keep their order.
    events.sort_by_key(|e| e.at);
    let keep_from = events.len().saturating_sub(STATUS_EVENTS);
    events.drain(..keep_from);
    let detail_line = detail.transitions.last().map(|t| t.reason.clone());
    let ended = phase.is_terminal().then(|| {
        let exit = record.exit.as_ref();
        RunEnd {
            outcome: outcome(phase).to_owned(),
            exit_code: exit.and_then(|e| match e.status {
                ExitStatus::Code(code) => Some(code),
                ExitStatus::Signal(_) => None,
            }),
            reason: match phase {
                Phase::Failed { reason } => Some(reason.to_string()),
                Phase::Killed { reason } => Some(reason.to_string()),
                _ => None,
            },
            oom_kills: exit.map_or(0, |e| u32::try_from(e.oom_kills).unwrap_or(u32::MAX)),
            at: record.finished_at.unwrap_or(now),
        }
    });
    RunStatus {
        run: mapping.cluster_run.clone(),
        node: node.to_owned(),
        attempt: mapping.attempt,
        node_run: Some(record.id.to_string()),
        phase: phase.name().to_owned(),
        detail: detail_line,
        ended,
        handed_back: None,
        events,
        updated_at: now,
    }
}

/// The status that hands attempt `attempt` of `run` back to the scheduler,
/// with why; `node_run` is the local run it had become, if any (ended with
/// it), and `needs_memory` the grown limit of an OOM requeue.
pub fn handed_back(
    node: &str,
    run: &str,
    attempt: u32,
    node_run: Option<String>,
    reason: String,
    needs_memory: Option<u64>,
    now: Timestamp,
) -> RunStatus {
    RunStatus {
        run: run.to_owned(),
        node: node.to_owned(),
        attempt,
        node_run,
        phase: HANDED_BACK.to_owned(),
        detail: Some(reason.clone()),
        ended: None,
        handed_back: Some(HandBack { reason: reason.clone(), needs_memory, at: now }),
        events: vec![StatusEvent { at: now, what: format!("handed back: {reason}") }],
        updated_at: now,
    }
}

fn outcome(phase: &Phase) -> &'static str {
    match phase {
        Phase::Succeeded => "succeeded",
        Phase::Killed { .. } => "killed",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::RunState;
    use crate::store::{ExitInfo, RunRecord, TransitionRecord};
    use crate::vocab::{JobName, RunId};

    fn mapping() -> ClusterMapping {
        ClusterMapping {
            cluster_run: "etl-7".into(),
            attempt: 2,
            node_run: RunId::new("etl-3"),
            job: JobName::parse("etl").unwrap(),
            file: "etl.yaml".into(),
            source: String::new(),
            memory_hard: None,
            bound_at: Timestamp::EPOCH,
            handed_back: None,
        }
    }

    fn detail(phase: Phase, transitions: u32) -> RunDetail {
        let mut state = RunState::new(None, Timestamp::EPOCH);
        state.phase = phase;
        let terminal = state.phase.is_terminal();
        RunDetail {
            record: RunRecord {
                id: RunId::new("etl-3"),
                job: JobName::parse("etl").unwrap(),
                seq: 3,
                state,
                created_at: Timestamp::EPOCH,
                updated_at: Timestamp::EPOCH,
                finished_at: terminal.then(|| Timestamp::from_millis(90)),
                assignment: None,
                launch: None,
                exit: terminal.then(|| ExitInfo {
                    status: ExitStatus::Code(0),
                    exited_at: Timestamp::from_millis(90),
                    peak_memory: None,
                    oom_kills: 0,
                    cpu_seconds: 0.0,
                }),
                version: None,
            },
            transitions: (1..=transitions)
                .map(|n| TransitionRecord {
                    n,
                    at: Timestamp::from_millis(i64::from(n)),
                    from: (n > 1).then(|| "pending".to_owned()),
                    to: "running".into(),
                    reason: format!("step {n}"),
                })
                .collect(),
            events: Vec::new(),
        }
    }

    #[test]
    fn a_live_run_reports_its_phase_and_the_latest_events_only() {
        let s = of_run("n1", &mapping(), &detail(Phase::Pending, 40), Timestamp::from_millis(50));
        assert_eq!((s.run.as_str(), s.attempt, s.phase.as_str()), ("etl-7", 2, "pending"));
        assert_eq!(s.node_run.as_deref(), Some("etl-3"));
        assert_eq!(s.events.len(), STATUS_EVENTS);
        assert_eq!(s.events.last().unwrap().what, "pending -> running: step 40");
        assert_eq!(s.events[0].what, "pending -> running: step 9", "the oldest go first");
        assert_eq!(s.detail.as_deref(), Some("step 40"));
        assert!(s.ended.is_none() && s.handed_back.is_none());
    }

    #[test]
    fn an_ended_run_reports_its_outcome_and_exit() {
        let s = of_run("n1", &mapping(), &detail(Phase::Succeeded, 3), Timestamp::from_millis(99));
        let end = s.ended.unwrap();
        assert_eq!((end.outcome.as_str(), end.exit_code, end.oom_kills), ("succeeded", Some(0), 0));
        assert_eq!(end.at, Timestamp::from_millis(90));
    }

    #[test]
    fn a_hand_back_names_its_reason_and_the_memory_it_needs() {
        let s = handed_back("n1", "etl-7", 2, None, "too big".into(), Some(5), Timestamp::EPOCH);
        assert_eq!(s.phase, HANDED_BACK);
        let back = s.handed_back.unwrap();
        assert_eq!((back.reason.as_str(), back.needs_memory), ("too big", Some(5)));
    }
}
