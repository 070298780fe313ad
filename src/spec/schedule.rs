//! When a job runs: a cron schedule and the fields that only make sense with one.
//!
//! A job without `schedule` runs once, when it is loaded. Fields that shape recurring runs
//! (`timezone`, `concurrency`, `catch_up`, …) are an error on such a job rather than
//! silently ignored: a file that says more than it does misleads its next reader.

use std::time::Duration;

use chrono::{Days, NaiveDate, NaiveTime};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use super::check::{choice, Checker, Fields};
use super::error::{FieldPath, SpecError};
use super::tree::Node;

/// A validated cron expression: 5 fields (`min hour day month weekday`), or 6 with seconds
/// first; names (`MON`, `JAN`), `L`, `W`, `#` and the `@hourly`, `@daily`, `@weekly`,
/// `@monthly`, `@yearly` macros. When both day-of-month and day-of-week are restricted, a
/// day matching either runs the job, as in Vixie cron.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    text: String,
    cron: Cron,
    matches_some_day: bool,
}

impl Schedule {
    /// Parses with croner; the error is croner's own explanation.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        if text.trim().eq_ignore_ascii_case("@reboot") {
            return Err(
                "@reboot is not supported; a job without `schedule` runs once when it is loaded"
                    .into(),
            );
        }
        // A seven-field line would be read as having a year field; standard cron has none.
        let parser =
            CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        match parser.parse(text) {
            Ok(cron) => {
                let matches_some_day = matches_some_day(&cron);
                Ok(Schedule { text: text.to_owned(), cron, matches_some_day })
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Whether any day of the calendar matches the day-of-month, month and day-of-week
    /// fields. `0 0 30 2 *` (February 30th) and `0 0 31 4,6 *` parse, but never fire: the job
    /// compiler rejects them, and the scheduler finds no next time for them at once instead
    /// of searching thousands of years.
    pub fn matches_some_day(&self) -> bool {
        self.matches_some_day
    }

    /// Whether the expression has a seconds field (six fields): its firings are a second
    /// apart at the finest, not a minute.
    pub fn has_seconds(&self) -> bool {
        self.text.split_whitespace().count() == 6
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed expression, for computing fire times.
    pub fn cron(&self) -> &Cron {
        &self.cron
    }
}

/// Without a year field a schedule repeats with the calendar. Within 2001–2099 the calendar
/// repeats every 28 years, and 2000–2027 hold every kind of year (each weekday it can start
/// on, leap or not), so a day-of-month/month/day-of-week combination that matches no day of
/// those years matches no day ever. Most schedules match on one of the first days tried;
/// only a schedule that never fires walks all 10,227 days.
fn matches_some_day(cron: &Cron) -> bool {
    let pattern = &cron.pattern;
    let (Some(&hour), Some(&minute), Some(&second)) = (
        pattern.hours.values().first(),
        pattern.minutes.values().first(),
        pattern.seconds.values().first(),
    ) else {
        return false;
    };
    let Some(time) = NaiveTime::from_hms_opt(hour.into(), minute.into(), second.into()) else {
        return false;
    };
    let first = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a valid date");
    let last = NaiveDate::from_ymd_opt(2027, 12, 31).expect("a valid date");
    let mut day = first;
    while day <= last {
        if cron.is_time_matching(&day.and_time(time)).unwrap_or(false) {
            return true;
        }
        day = day + Days::new(1);
    }
    false
}

/// An IANA time zone name (`UTC`, `Europe/Berlin`), as job files, the agent configuration
/// and `corral schedule --timezone` write it.
pub fn parse_timezone(text: &str) -> Result<Tz, SpecError> {
    text.parse::<Tz>().map_err(|_| SpecError::TimeZone { value: text.to_owned() })
}

/// What to do when a run is due while the previous one is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Concurrency {
    /// Start the new run alongside.
    Allow,
    /// Skip the new run.
    Forbid,
    /// Stop the running one, then start the new run.
    Replace,
    /// Start the new run when the current one ends (at most one waits).
    Queue,
}
choice!(Concurrency { "allow" => Allow, "forbid" => Forbid, "replace" => Replace, "queue" => Queue });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CatchUpWord {
    None,
    Latest,
    All,
}
choice!(CatchUpWord { "none" => None, "latest" => Latest, "all" => All });

/// What to do about runs that fell due while the agent was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CatchUp {
    /// Forget them; wait for the next time.
    None,
    /// Run once for the most recent one.
    Latest,
    /// Run each of them, oldest first, but at most the `max` most recent.
    All { max: u32 },
}

/// How many finished runs to keep records (and logs) of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct History {
    pub successful: u32,
    pub failed: u32,
}

impl Default for History {
    fn default() -> Self {
        History { successful: DEFAULT_HISTORY, failed: DEFAULT_HISTORY }
    }
}

pub const DEFAULT_CATCH_UP_MAX: u32 = 10;
pub const DEFAULT_HISTORY: u32 = 3;
const MAX_HISTORY: u32 = 1000;
const MAX_CATCH_UP: u32 = 1000;

/// Everything about a recurring job's timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurrence {
    pub schedule: Schedule,
    /// `None`: the agent's `default_timezone`.
    pub timezone: Option<Tz>,
    pub concurrency: Concurrency,
    pub catch_up: CatchUp,
    /// A run that cannot start within this long of its time (plus its jitter delay) is
    /// skipped.
    pub starting_deadline: Option<Duration>,
    /// Each run starts after a delay of up to this long, fixed per job and machine, so that
    /// many jobs on `0 * * * *` do not all start in the same second
    /// (see `scheduler::cron::jitter`).
    pub jitter: Duration,
    /// The schedule is paused: no new runs start. Runs already going are left alone.
    pub suspend: bool,
    pub history: History,
}

/// Top-level fields that require `schedule`.
pub const SCHEDULE_ONLY: &[&str] = &[
    "timezone",
    "concurrency",
    "catch_up",
    "catch_up_max",
    "starting_deadline",
    "jitter",
    "suspend",
    "history",
];

/// Compiles the scheduling fields of a job mapping: `Some(None)` for a one-shot job,
/// `None` when something was wrong (already reported).
pub(super) fn compile(cx: &mut Checker, job: &Fields) -> Option<Option<Recurrence>> {
    let Some(schedule_node) = job.get("schedule") else {
        for field in SCHEDULE_ONLY.iter().filter(|f| job.has(f)) {
            cx.report(
                job.key_pos(field),
                &job.field(field),
                SpecError::Requires {
                    field,
                    requirement: "`schedule`; a job without one runs once, when it is loaded"
                        .into(),
                },
            );
        }
        return if SCHEDULE_ONLY.iter().any(|f| job.has(f)) { None } else { Some(None) };
    };

    let path = job.field("schedule");
    let schedule = cx.parsed(schedule_node, &path, |text| {
        let schedule = Schedule::parse(text)
            .map_err(|reason| SpecError::Schedule { value: text.to_owned(), reason })?;
        if !schedule.matches_some_day() {
            return Err(SpecError::Schedule {
                value: text.to_owned(),
                reason: "it never fires: no day of the calendar matches its day-of-month, \
                         month and day-of-week fields"
                    .into(),
            });
        }
        Ok(schedule)
    });

    let timezone = match job.get("timezone") {
        None => Some(None),
        Some(node) => cx.parsed(node, &job.field("timezone"), parse_timezone).map(Some),
    };
    let concurrency = match job.get("concurrency") {
        None => Some(Concurrency::Forbid),
        Some(node) => cx.choice(node, &job.field("concurrency")),
    };
    let catch_up_word = match job.get("catch_up") {
        None => Some(CatchUpWord::Latest),
        Some(node) => cx.choice(node, &job.field("catch_up")),
    };
    let catch_up_max = match job.get("catch_up_max") {
        None => Some(DEFAULT_CATCH_UP_MAX),
        Some(node) => cx.int(node, &job.field("catch_up_max"), 1..=MAX_CATCH_UP),
    };
    if job.has("catch_up_max") && catch_up_word.is_some_and(|w| w != CatchUpWord::All) {
        cx.report(
            job.key_pos("catch_up_max"),
            &job.field("catch_up_max"),
            SpecError::Requires { field: "catch_up_max", requirement: "`catch_up: all`".into() },
        );
    }
    let catch_up = match (catch_up_word?, catch_up_max?) {
        (CatchUpWord::None, _) => CatchUp::None,
        (CatchUpWord::Latest, _) => CatchUp::Latest,
        (CatchUpWord::All, max) => CatchUp::All { max },
    };
    let starting_deadline = match job.get("starting_deadline") {
        None => Some(None),
        Some(node) => cx.positive_duration(node, &job.field("starting_deadline")).map(Some),
    };
    let jitter = match job.get("jitter") {
        None => Some(Duration::ZERO),
        Some(node) => cx.duration(node, &job.field("jitter")),
    };
    let suspend = match job.get("suspend") {
        None => Some(false),
        Some(node) => cx.boolean(node, &job.field("suspend")),
    };
    let history = match job.get("history") {
        None => Some(History::default()),
        Some(node) => history(cx, node, &job.field("history")),
    };

    Some(Some(Recurrence {
        schedule: schedule?,
        timezone: timezone?,
        concurrency: concurrency?,
        catch_up,
        starting_deadline: starting_deadline?,
        jitter: jitter?,
        suspend: suspend?,
        history: history?,
    }))
}

fn history(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<History> {
    let fields = cx.map(node, path, &["successful", "failed"])?;
    let mut read = |key: &str| match fields.get(key) {
        None => Some(DEFAULT_HISTORY),
        Some(node) => cx.int(node, &fields.field(key), 0..=MAX_HISTORY),
    };
    let successful = read("successful");
    let failed = read("failed");
    Some(History { successful: successful?, failed: failed? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    #[test]
    fn a_recurring_job_with_every_field() {
        let spec = ok(
            "schedule: '0 2 * * *'\ntimezone: Europe/Berlin\nconcurrency: queue\ncatch_up: all\n\
                       catch_up_max: 5\nstarting_deadline: 10m\njitter: 30s\nsuspend: true\n\
                       history: {successful: 1, failed: 10}\n",
        );
        let r = spec.recurrence.unwrap();
        assert_eq!(r.schedule.as_str(), "0 2 * * *");
        assert_eq!(r.timezone, Some(chrono_tz::Europe::Berlin));
        assert_eq!(r.concurrency, Concurrency::Queue);
        assert_eq!(r.catch_up, CatchUp::All { max: 5 });
        assert_eq!(r.starting_deadline, Some(Duration::from_secs(600)));
        assert_eq!(r.jitter, Duration::from_secs(30));
        assert!(r.suspend);
        assert_eq!(r.history, History { successful: 1, failed: 10 });
    }

    #[test]
    fn recurring_defaults() {
        let r = ok("schedule: '@hourly'\n").recurrence.unwrap();
        assert_eq!(r.timezone, None);
        assert_eq!(r.concurrency, Concurrency::Forbid);
        assert_eq!(r.catch_up, CatchUp::Latest);
        assert_eq!(r.starting_deadline, None);
        assert_eq!(r.jitter, Duration::ZERO);
        assert!(!r.suspend);
        assert_eq!(r.history, History { successful: 3, failed: 3 });
        assert_eq!(
            ok("schedule: '@daily'\ncatch_up: all\n").recurrence.unwrap().catch_up,
            CatchUp::All { max: 10 }
        );
    }

    #[test]
    fn a_bad_schedule_points_at_the_field_and_quotes_croner() {
        let e = error("schedule: '61 * * * *'\n");
        assert!(e.starts_with("3 schedule: invalid cron schedule \"61 * * * *\": "), "{e}");
        let e = error("schedule: '* * * *'\n");
        assert!(e.contains("fields"), "{e}");
        let e = error("schedule: '0 0 1 1 * 2030 x'\n");
        assert!(e.starts_with("3 schedule: invalid cron schedule"), "{e}");
        assert_eq!(error("schedule: 5\n"), "3 schedule: expected a string, found the integer 5");
    }

    #[test]
    fn six_fields_have_seconds() {
        for (text, seconds) in [
            ("*/2 * * * * *", true),
            ("0 30 2 * * MON", true),
            ("*/5 * * * *", false),
            ("@hourly", false),
        ] {
            assert_eq!(Schedule::parse(text).unwrap().has_seconds(), seconds, "{text}");
        }
    }

    #[test]
    fn a_bad_time_zone_is_an_error() {
        assert_eq!(
            error("schedule: '@daily'\ntimezone: Mars/Olympus\n"),
            "4 timezone: unknown time zone \"Mars/Olympus\"; use an IANA name such as UTC or Europe/Berlin"
        );
        assert!(ok("schedule: '@daily'\ntimezone: UTC\n").recurrence.unwrap().timezone.is_some());
    }

    #[test]
    fn scheduling_fields_without_a_schedule_are_errors() {
        let all = errors("timezone: UTC\nconcurrency: allow\ncatch_up: none\ncatch_up_max: 3\n\
                          starting_deadline: 1m\njitter: 1s\nsuspend: false\nhistory: {failed: 1}\n");
        assert_eq!(all.len(), SCHEDULE_ONLY.len(), "{all:#?}");
        for (line, field) in (3..).zip(SCHEDULE_ONLY) {
            let expected = format!(
                "{line} {field}: `{field}` requires `schedule`; a job without one runs once, when it is loaded"
            );
            assert!(all.contains(&expected), "missing {expected:?} in {all:#?}");
        }
    }

    #[test]
    fn catch_up_max_needs_catch_up_all() {
        assert_eq!(
            error("schedule: '@daily'\ncatch_up_max: 3\n"),
            "4 catch_up_max: `catch_up_max` requires `catch_up: all`"
        );
        assert_eq!(
            error("schedule: '@daily'\ncatch_up: all\ncatch_up_max: 0\n"),
            "5 catch_up_max: 0 is out of range; allowed: 1 to 1000"
        );
    }

    #[test]
    fn enumerations_and_history_are_checked() {
        assert_eq!(
            error("schedule: '@daily'\nconcurrency: parallel\n"),
            "4 concurrency: \"parallel\" is not one of: allow, forbid, replace, queue"
        );
        assert_eq!(
            error("schedule: '@daily'\ncatch_up: some\n"),
            "4 catch_up: \"some\" is not one of: none, latest, all"
        );
        assert_eq!(
            error("schedule: '@daily'\nsuspend: yes\n"),
            "4 suspend: expected true or false, found the string \"yes\""
        );
        assert_eq!(
            error("schedule: '@daily'\nhistory: {success: 1}\n"),
            "4 history.success: unknown field `success`; did you mean `successful`?"
        );
        assert_eq!(
            error("schedule: '@daily'\nstarting_deadline: 0s\n"),
            "4 starting_deadline: invalid duration \"0s\": it must be longer than zero"
        );
    }

    #[test]
    fn standard_five_and_six_field_lines() {
        for ok in [
            "0 2 * * *",
            "*/5 * * * *",
            "30 0 2 * * *",
            "0 9 * * MON-FRI",
            "0 0 1 JAN *",
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 * * FRI#2",
            "0 0 * * 5L",
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ] {
            assert!(Schedule::parse(ok).is_ok(), "{ok:?}: {:?}", Schedule::parse(ok).err());
        }
    }

    #[test]
    fn bad_lines_carry_croners_explanation() {
        for bad in
            ["", "* * * *", "0 0 0 1 1 * 2030", "61 * * * *", "* * * * MOO", "every day", "@reboot"]
        {
            let err = Schedule::parse(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad:?}");
        }
        assert!(Schedule::parse("@reboot").unwrap_err().contains("runs once"));
    }

    #[test]
    fn a_schedule_no_day_matches_is_an_error() {
        for never in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 31 2 *"] {
            let schedule = Schedule::parse(never).unwrap();
            assert!(!schedule.matches_some_day(), "{never}");
            let e = error(&format!("schedule: '{never}'\n"));
            assert!(e.contains("it never fires: no day of the calendar matches"), "{e}");
        }
        for rare in ["0 0 29 2 *", "0 0 29 2 mon", "0 0 31 * *", "0 0 L 2 *", "0 0 * 2 sun#5"] {
            assert!(Schedule::parse(rare).unwrap().matches_some_day(), "{rare}");
        }
        // Both day fields restricted: a day matching either runs the job.
        assert!(Schedule::parse("0 0 30 2 mon").unwrap().matches_some_day());
    }

    #[test]
    fn keeps_the_text_as_written() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        assert_eq!(s.as_str(), "0 2 * * *");
        assert_eq!(s, Schedule::parse("0 2 * * *").unwrap());
        assert_ne!(s, Schedule::parse("0 3 * * *").unwrap());
    }
}
