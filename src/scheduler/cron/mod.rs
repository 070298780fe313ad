//! Recurring jobs: when they fire, what is caught up after downtime, what a firing does
//! while the previous run is going, and the state that carries all of it over a restart.
//!
//! Everything here is a function of its arguments. The current time is passed in; nothing
//! reads the clock, sleeps, or touches the disk. The agent asks [`CronState::tick`] what to
//! do when a job's next firing is due, persists the answer, then carries it out.
//!
//! # Files
//!
//! - [`next_fire()`], [`prev_fire`], [`firings_between`]: the firings of a [`Schedule`] in
//!   a time zone. [`dst`] places wall-clock times on the time line; [`count`] counts
//!   firings in a range without visiting each.
//! - [`plan_catch_up`]: which of the firings due since the last tick to start.
//! - [`on_fire`], [`on_run_finished`]: the `concurrency` policies.
//! - [`jitter`]: the per-job start delay.
//! - [`CronState`], [`FiringRecord`]: the persisted state and the journal.
//! - [`CronJob`]: a job's recurrence with its time zone and jitter offset settled.
//!
//! # Daylight saving time
//!
//! A schedule names wall-clock times in its zone. When the clock is set forward some of
//! those times do not happen; when it is set back some happen twice. What a job does then
//! depends on its hour field (see [`HourField`]):
//!
//! | | hours named (`30 2 * * *`, `0 1,13 * * *`, `0 9-17 * * *`) | `*` or a step (`*/15 * * * *`, `0 * * * *`, `0 */2 * * *`) |
//! |---|---|---|
//! | time skipped (Berlin, last Sunday of March, 02:00–02:59) | runs **once**, at the first instant after the gap (03:00 local), however many of its times fell in the gap | does **not** run for the skipped times |
//! | time repeated (Berlin, last Sunday of October, 02:00–02:59) | runs **once**, the first time | runs **both** times: `*/15` keeps firing every 15 real minutes |
//!
//! So a job at a time of day keeps its daily run on the day the clock changes, and a job
//! that runs "every so often" keeps its rhythm in real time, as in Vixie cron. A schedule
//! whose skipped time coincides with a run after the gap (`0,30 2,3 * * *` at 03:00) runs
//! once then. Only the hour field decides: `* 2 * * *` (every minute of 2 am) runs once at
//! 03:00 on the day 2 am is skipped, and 60 times, not 120, on the day it repeats.
//!
//! croner's own DST handling is not used. It is asked about wall-clock times only (as
//! `NaiveDateTime`s, which have no clock changes), and [`dst`] maps its answers to instants.
//! croner tells fixed-time from interval schedules by the second, minute *and* hour fields
//! together: `0,30 2 * * *` is an interval schedule there, so it would not run at all on the
//! spring day and would run four times on the autumn day.
//!
//! # Catch-up
//!
//! A firing is *due* at its scheduled time plus the job's jitter offset, and *on time* if
//! the agent decides it within a minute of that (within a second for a schedule with a
//! seconds field: a `*/2 * * * * *` firing decided 30 s late was missed). Firings the agent did not decide in time
//! (it was down, the machine was suspended, the clock jumped) were missed, and `catch_up`
//! says what to do about them when the agent gets to them:
//!
//! - `none`: start nothing for them; only an on-time firing starts.
//! - `latest`: start one run, for the most recent firing.
//! - `all`: start a run for each, oldest first, but at most the `catch_up_max` most recent.
//!
//! In each case a firing due longer ago than `starting_deadline` never starts, the agent
//! caps the runs one tick starts, and the rest are recorded as missed: one journal record
//! with their number and the first and last of them. Missed firings are counted by
//! arithmetic over days, not listed, so a year of downtime of a `* * * * *` job costs
//! milliseconds. A job the agent has never seen starts with its next firing. A suspended
//! job uses its firings up: resuming it starts nothing for the time it was suspended.
//!
//! # Concurrency
//!
//! When a firing comes while a run of the job is still going:
//!
//! - `allow`: start another run.
//! - `forbid`: skip the firing (journal: skipped, `overlap`).
//! - `replace`: stop the running one gracefully, and start when it has ended. A newer
//!   firing arriving meanwhile takes the waiting one's place (`superseded`).
//! - `queue`: start when the running one ends. One firing waits at most; another arriving
//!   meanwhile is skipped (`queue_full`).
//!
//! A waiting firing is dropped (`deadline_exceeded`) once its `starting_deadline` passes.
//!
//! # Restarts
//!
//! [`CronState`] holds the last firing decided, the waiting firing and the job's running
//! runs. The agent writes it, with the journal records, before it starts or stops anything:
//! a crash in between can lose a start, never repeat one, and a restarted agent still
//! knows which run a `forbid` firing must not overlap and which firing waits its turn.

pub mod catch_up;
pub mod concurrency;
pub mod count;
pub mod dst;
pub mod jitter;
pub mod job;
pub mod journal;
pub mod next_fire;
pub mod state;
#[cfg(test)]
mod testutil;

pub use catch_up::{plan_catch_up, CatchUpPlan, Missed};
pub use concurrency::{
    on_fire, on_run_finished, AfterRun, OverlapDecision, RunSummary, SkipReason,
};
pub use count::count_firings;
pub use dst::HourField;
pub use job::{CronJob, Due};
pub use journal::{late_after, FiringOutcome, FiringRecord, LATE_AFTER, LATE_AFTER_SECONDS};
pub use next_fire::{firings_between, next_fire, prev_fire, Firings};
pub use state::{CronAction, CronState, Decisions};

#[doc(no_inline)]
pub use crate::spec::Schedule;
