//! Firings of recurring cluster jobs, decided once for the whole cluster.
//!
//! The node's own cron logic decides (`crate::scheduler::cron`): which
//! firings are due since the job's cursor, what is caught up after a gap
//! (`catch_up`, `catch_up_max`, the agent's `catch_up_limit`,
//! `starting_deadline`), time zones and daylight saving time, and what the
//! `concurrency` policy does with a firing while a run is live. What is
//! cluster-specific is only the bookkeeping: the cursor `{prefix}/cron/{job}`
//! plays the journal's `last_considered`, and it is written in the same
//! fenced transaction that creates the firings' runs, each conditioned on
//! its key's absence. A new leader starts from the cursor, so a firing is
//! created once whoever decides it.
//!
//! Differences from a node's cron, because runs here wait for a node rather
//! than start at once:
//! - `replace` marks the live runs removed (their nodes stop them) and
//!   creates the new run, which is bound once the older runs have ended.
//! - `queue` creates the run at once; it is bound once the older runs have
//!   ended. A second firing while one waits is skipped (`queue_full`).
//! - The jitter offset is keyed by the cluster's prefix, not a host name, so
//!   that every scheduler computes the same due times.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::decide::{earlier_firing, new_run, Guard, Kind, Settings, Versioned, Write};
use crate::cluster::records::{encode, ClusterRun, ClusterRunState, CronCursor};
use crate::scheduler::cron::{on_fire, plan_catch_up, CronJob, OverlapDecision, RunSummary};
use crate::spec::{JobSpec, Recurrence};
use crate::vocab::{RunId, Timestamp};

/// One recurring job as the pass sees it.
pub struct Input<'a> {
    pub job: &'a str,
    pub job_revision: i64,
    pub spec: &'a JobSpec,
    pub recurrence: &'a Recurrence,
    pub cursor: Option<&'a Versioned<CronCursor>>,
    /// Its runs not ended and not removed.
    pub live: &'a [&'a ClusterRun],
    pub runs: &'a BTreeMap<String, Versioned<ClusterRun>>,
    pub bad: &'a BTreeMap<String, String>,
}

/// A recurring job's firing run id: `{job}-{unix seconds}`.
pub fn firing_run(job: &str, scheduled: DateTime<Utc>) -> String {
    format!("{job}-{}", scheduled.timestamp())
}

/// The write that records this tick's decisions for the job (runs created,
/// live runs removed by `replace`, the cursor moved), or `None` when
/// nothing fell due.
pub fn fire(
    input: &Input<'_>,
    settings: &Settings<'_>,
    touched: &mut BTreeSet<String>,
) -> Option<Write> {
    let keys = settings.keys;
    let now = settings.now.to_datetime()?;
    let job =
        CronJob::new(&input.spec.name, input.recurrence, settings.default_timezone, keys.prefix());
    let last = input.cursor.and_then(|c| c.value.last_fired.to_datetime());
    let plan = plan_catch_up(&job, last, now, settings.catch_up_limit);
    let moved = input.cursor.is_none() || !plan.to_start.is_empty() || plan.missed.is_some();
    if !moved {
        return None;
    }
    let cursor_key = keys.cron(input.job);
    let mut guards = vec![match input.cursor {
        None => Guard::Absent(cursor_key.clone()),
        Some(c) => Guard::Revision(cursor_key.clone(), c.mod_revision),
    }];
    let mut puts = Vec::new();
    let mut fired = Vec::new();

    let mut active: Vec<RunSummary> = input
        .live
        .iter()
        .map(|r| RunSummary {
            run: RunId::new(&r.run),
            scheduled: r.scheduled_for.and_then(Timestamp::to_datetime).unwrap_or(now),
            stopping: false,
        })
        .collect();
    // A run created but not yet bound while older ones are live waits in
    // the queue slot (`queue`, `replace`).
    let mut queued = input.live.iter().any(|r| {
        matches!(r.state, ClusterRunState::Pending { .. })
            && input.live.iter().any(|o| earlier_firing(o, r))
    });
    for scheduled in plan.to_start {
        let run = firing_run(input.job, scheduled);
        let key = keys.run(&run);
        if input.runs.contains_key(&run) || input.bad.contains_key(&key) || touched.contains(&run) {
            continue;
        }
        match on_fire(input.recurrence.concurrency, &active, queued) {
            OverlapDecision::Skip { reason } => {
                tracing::info!(job = input.job, %scheduled, "cluster firing skipped: {reason}");
                continue;
            }
            OverlapDecision::Start => {}
            OverlapDecision::Queue => queued = true,
            OverlapDecision::ReplaceThenStart { stop } => {
                for id in stop {
                    let Some(old) = input.runs.get(id.as_str()) else { continue };
                    if touched.contains(id.as_str()) {
                        continue;
                    }
                    let mut next = old.value.clone();
                    next.removed = true;
                    let old_key = keys.run(id.as_str());
                    guards.push(Guard::Revision(old_key.clone(), old.mod_revision));
                    puts.push((old_key, encode(&next)));
                    // Its binding is deleted below: that is what stops it.
                    touched.insert(id.as_str().to_owned());
                }
                for a in &mut active {
                    a.stopping = true;
                }
                queued = true;
            }
        }
        let record = new_run(
            run.clone(),
            input.job,
            input.job_revision,
            Some(Timestamp::from(scheduled)),
            settings.now,
        );
        guards.push(Guard::Absent(key.clone()));
        puts.push((key, encode(&record)));
        active.push(RunSummary { run: RunId::new(&run), scheduled, stopping: false });
        touched.insert(run.clone());
        fired.push(run);
    }
    let cursor = CronCursor {
        job: input.job.to_owned(),
        job_revision: input.job_revision,
        last_fired: Timestamp::from(plan.last_considered),
    };
    puts.push((cursor_key, encode(&cursor)));
    let deletes = stopped_bindings(input, settings, touched, &fired);
    Some(Write { kind: Kind::Cron { job: input.job.to_owned(), fired }, guards, puts, deletes })
}

/// The bindings of the runs `replace` removed this tick.
fn stopped_bindings(
    input: &Input<'_>,
    settings: &Settings<'_>,
    touched: &BTreeSet<String>,
    fired: &[String],
) -> Vec<String> {
    input
        .live
        .iter()
        .filter(|r| touched.contains(&r.run) && !fired.contains(&r.run))
        .filter_map(|r| match &r.state {
            ClusterRunState::Bound { node, .. } | ClusterRunState::Lost { node, .. } => {
                Some(settings.keys.binding(node, &r.run))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::cluster::records::decode;
    use crate::cluster::scheduler::decide::tests::job;
    use crate::cluster::scheduler::decide::{decide, Guard, Specs, View};
    use crate::cluster::Keys;

    fn utc(text: &str) -> Timestamp {
        Timestamp::from(text.parse::<DateTime<Utc>>().unwrap())
    }

    /// A pass at `now`; the writes' runs and cursor put into the view.
    fn tick(view: &mut View, now: Timestamp, rev: &mut i64) -> Vec<String> {
        let keys = Keys::new("/c");
        let mut specs = Specs::new();
        for (name, j) in &view.jobs {
            let jobs = crate::spec::compile_str(Path::new(&j.value.file), &j.value.source).unwrap();
            specs.insert(
                (name.clone(), j.mod_revision),
                Arc::new(jobs.into_iter().next().unwrap().spec),
            );
        }
        let settings = Settings {
            keys: &keys,
            node: "s",
            default_timezone: chrono_tz::UTC,
            catch_up_limit: 10,
            now,
            quiet: &BTreeSet::new(),
            node_loss_grace: std::time::Duration::from_secs(10),
        };
        let mut fired = Vec::new();
        for w in decide(view, &specs, &settings) {
            if let Kind::Cron { fired: f, .. } = &w.kind {
                fired.extend(f.iter().cloned());
            }
            *rev += 1;
            for (key, value) in &w.puts {
                if let Some(run) = key.strip_prefix("/c/runs/") {
                    view.runs.insert(
                        run.into(),
                        Versioned { value: decode(key, value).unwrap(), mod_revision: *rev },
                    );
                } else if let Some(j) = key.strip_prefix("/c/cron/") {
                    view.cursors.insert(
                        j.into(),
                        Versioned { value: decode(key, value).unwrap(), mod_revision: *rev },
                    );
                }
            }
        }
        fired
    }

    #[test]
    fn a_new_job_waits_for_its_next_firing_then_fires_once_per_schedule() {
        let mut view = View::default();
        view.jobs.insert(
            "c".into(),
            Versioned {
                value: job("c", "schedule: '*/10 * * * * *'\nconcurrency: allow\n"),
                mod_revision: 3,
            },
        );
        let mut rev = 10;
        assert_eq!(tick(&mut view, utc("2026-12-07T10:00:05Z"), &mut rev), Vec::<String>::new());
        assert!(view.cursors.contains_key("c"), "the first tick writes the cursor");
        assert_eq!(tick(&mut view, utc("2026-12-07T10:00:09Z"), &mut rev), Vec::<String>::new());
        let t = utc("2026-12-07T10:00:10Z").to_datetime().unwrap();
        assert_eq!(
            tick(&mut view, utc("2026-12-07T10:00:10.200Z"), &mut rev),
            vec![firing_run("c", t)]
        );
        // The same instant again decides nothing new.
        assert_eq!(
            tick(&mut view, utc("2026-12-07T10:00:10.900Z"), &mut rev),
            Vec::<String>::new()
        );
        assert_eq!(view.runs.len(), 1);
        assert_eq!(view.runs[&firing_run("c", t)].value.scheduled_for, Some(Timestamp::from(t)));
    }

    #[test]
    fn forbid_skips_a_firing_while_a_run_is_live_and_catch_up_latest_starts_one() {
        let mut view = View::default();
        view.jobs.insert(
            "c".into(),
            Versioned {
                value: job("c", "schedule: '0 * * * *'\nconcurrency: forbid\ncatch_up: latest\n"),
                mod_revision: 3,
            },
        );
        let mut rev = 10;
        tick(&mut view, utc("2026-12-07T10:30:00Z"), &mut rev);
        // Down for three hours: one run, for the latest firing.
        let fired = tick(&mut view, utc("2026-12-07T13:30:00Z"), &mut rev);
        assert_eq!(fired, vec!["c-1796648400".to_owned()]);
        // Still live at the next firing: skipped, and the cursor moves on.
        assert_eq!(tick(&mut view, utc("2026-12-07T14:00:01Z"), &mut rev), Vec::<String>::new());
        assert_eq!(view.cursors["c"].value.last_fired, utc("2026-12-07T14:00:01Z"),);
    }

    #[test]
    fn replace_stops_the_live_run_and_its_successor_waits_for_it_to_end() {
        let mut view = View::default();
        view.nodes
            .insert("n1".into(), crate::cluster::scheduler::decide::tests::node("n1", 1 << 32, 0));
        view.jobs.insert(
            "c".into(),
            Versioned {
                value: job("c", "schedule: '0 * * * *'\nconcurrency: replace\n"),
                mod_revision: 3,
            },
        );
        let mut rev = 10;
        tick(&mut view, utc("2026-12-07T10:30:00Z"), &mut rev);
        let first = tick(&mut view, utc("2026-12-07T11:00:00.100Z"), &mut rev);
        assert_eq!(first.len(), 1);
        // Bind it as the pass after would.
        let mut run = view.runs[&first[0]].value.clone();
        run.state = ClusterRunState::Bound { node: "n1".into(), at: utc("2026-12-07T11:00:01Z") };
        view.runs.insert(first[0].clone(), Versioned { value: run, mod_revision: 50 });

        let keys = Keys::new("/c");
        let mut specs = Specs::new();
        let j = &view.jobs["c"];
        let compiled = crate::spec::compile_str(Path::new(&j.value.file), &j.value.source).unwrap();
        specs.insert(("c".into(), 3), Arc::new(compiled.into_iter().next().unwrap().spec));
        let quiet = BTreeSet::new();
        let settings = Settings {
            keys: &keys,
            node: "s",
            default_timezone: chrono_tz::UTC,
            catch_up_limit: 10,
            now: utc("2026-12-07T12:00:00.100Z"),
            quiet: &quiet,
            node_loss_grace: std::time::Duration::from_secs(10),
        };
        let writes = decide(&view, &specs, &settings);
        let cron = writes.iter().find(|w| matches!(w.kind, Kind::Cron { .. })).unwrap();
        let second = firing_run("c", utc("2026-12-07T12:00:00Z").to_datetime().unwrap());
        assert_eq!(cron.kind, Kind::Cron { job: "c".into(), fired: vec![second.clone()] });
        assert_eq!(
            cron.deletes,
            vec![keys.binding("n1", &first[0])],
            "stopping = deleting its binding"
        );
        let stopped: ClusterRun = cron
            .puts
            .iter()
            .find(|(k, _)| *k == keys.run(&first[0]))
            .map(|(k, v)| decode(k, v).unwrap())
            .unwrap();
        assert!(stopped.removed);
        // One transaction, guarded on the old run's revision too.
        assert!(cron.guards.contains(&Guard::Revision(keys.run(&first[0]), 50)));

        // Applied: the new run waits while the old one is still bound.
        for (key, value) in &cron.puts {
            if let Some(run) = key.strip_prefix("/c/runs/") {
                view.runs.insert(
                    run.into(),
                    Versioned { value: decode(key, value).unwrap(), mod_revision: 60 },
                );
            }
        }
        let settings = Settings { now: utc("2026-12-07T12:00:01Z"), ..settings };
        let writes = decide(&view, &specs, &settings);
        assert!(
            writes.iter().any(|w| w.kind
                == Kind::Pending {
                    run: second.clone(),
                    reason: "waiting for the previous run of the job to end".into()
                }),
            "{writes:?}"
        );
        assert!(!writes.iter().any(|w| matches!(w.kind, Kind::Bind { .. })), "{writes:?}");
    }
}
