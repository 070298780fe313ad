//! Deciding what runs when: pure functions of the jobs, their state and the time, which the
//! agent calls and whose answers it carries out.
//!
//! - [`cron`]: recurring jobs: when a schedule fires (daylight saving time included), what
//!   to catch up after downtime, what a firing does while the previous run is still going,
//!   and the per-job state and journal that make all of it survive a restart.

pub mod cron;
