//! Restarting a run that ended.

use std::time::Duration;

use super::check::{choice, Checker};
use super::duration;
use super::error::{FieldPath, SpecError};
use super::tree::Node;

/// Which endings lead to a restart; the run state machine decides by it as it is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RestartOn {
    #[default]
    Never,
    /// A non-zero exit, a signal, a timeout, a failed OOM policy, a failed launch or a
    /// lost process.
    Failure,
    /// Any ending, success included, until the attempts run out.
    Always,
}
choice!(RestartOn { "never" => Never, "failure" => Failure, "always" => Always });

/// The wait before each restart: `min` first, doubling each time, never more than `max`
/// (see [`crate::scheduler::backoff_delay`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Parses `10s..5m`, or a single duration for a constant wait.
    pub fn parse(text: &str) -> Result<Backoff, SpecError> {
        let parse_one = |part: &str| {
            duration::parse(part)
                .map_err(|reason| SpecError::Duration { value: part.to_owned(), reason })
        };
        let (min, max) = match text.split_once("..") {
            Some((min, max)) => (parse_one(min)?, parse_one(max)?),
            None => {
                let d = parse_one(text)?;
                (d, d)
            }
        };
        let invalid = |reason: &str| SpecError::Invalid {
            what: "backoff",
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        if min.is_zero() {
            return Err(invalid(
                "the first wait must be longer than zero, or a failing job restarts in a busy loop",
            ));
        }
        if min > max {
            return Err(invalid("the first wait is longer than the longest (write min..max)"));
        }
        Ok(Backoff { min, max })
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { min: Duration::from_secs(10), max: Duration::from_secs(300) }
    }
}

/// The restart policy of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RestartPolicy {
    pub on: RestartOn,
    /// Most restarts of one run.
    pub attempts: u32,
    pub backoff: Backoff,
}

pub const DEFAULT_ATTEMPTS: u32 = 3;
const MAX_ATTEMPTS: u32 = 1000;

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            on: RestartOn::Never,
            attempts: DEFAULT_ATTEMPTS,
            backoff: Backoff::default(),
        }
    }
}

pub(super) fn compile(
    cx: &mut Checker,
    node: Option<&Node>,
    path: &FieldPath,
) -> Option<RestartPolicy> {
    let Some(node) = node else { return Some(RestartPolicy::default()) };
    let fields = cx.map(node, path, &["on", "attempts", "backoff"])?;
    let on = match fields.get("on") {
        None => Some(RestartOn::Never),
        Some(n) => cx.choice(n, &fields.field("on")),
    };
    let attempts = match fields.get("attempts") {
        None => Some(DEFAULT_ATTEMPTS),
        Some(n) => cx.int(n, &fields.field("attempts"), 1..=MAX_ATTEMPTS),
    };
    let backoff = match fields.get("backoff") {
        None => Some(Backoff::default()),
        Some(n) => cx.parsed(n, &fields.field("backoff"), Backoff::parse),
    };
    let mut ok = true;
    if on == Some(RestartOn::Never) {
        for field in ["attempts", "backoff"].into_iter().filter(|f| fields.has(f)) {
            ok = false;
            cx.report(
                fields.key_pos(field),
                &fields.field(field),
                SpecError::Requires { field, requirement: "`on: failure` or `on: always`".into() },
            );
        }
    }
    ok.then_some(())?;
    Some(RestartPolicy { on: on?, attempts: attempts?, backoff: backoff? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    #[test]
    fn restart_section() {
        let r = ok("restart: {on: failure, attempts: 5, backoff: 1s..1m}\n").restart;
        assert_eq!(r.on, RestartOn::Failure);
        assert_eq!(r.attempts, 5);
        assert_eq!(r.backoff, Backoff { min: secs(1), max: secs(60) });
        let r = ok("restart: {on: always}\n").restart;
        assert_eq!((r.on, r.attempts, r.backoff), (RestartOn::Always, 3, Backoff::default()));
        assert_eq!(ok("").restart.on, RestartOn::Never);
    }

    #[test]
    fn restart_mistakes() {
        assert_eq!(
            errors("restart: {attempts: 3, backoff: 10s}\n"),
            [
                "3 restart.attempts: `attempts` requires `on: failure` or `on: always`",
                "3 restart.backoff: `backoff` requires `on: failure` or `on: always`",
            ]
        );
        assert_eq!(
            error("restart: {on: failure, backoff: 5m..10s}\n"),
            "3 restart.backoff: invalid backoff \"5m..10s\": the first wait is longer than the longest (write min..max)"
        );
        assert_eq!(
            error("restart: {on: failure, backoff: 10..5m}\n"),
            "3 restart.backoff: invalid duration \"10\": a number has no unit; add one of d, h, m, s, ms (for example 30s)"
        );
        assert_eq!(
            error("restart: {on: failure, attempts: 0}\n"),
            "3 restart.attempts: 0 is out of range; allowed: 1 to 1000"
        );
        assert_eq!(
            error("restart: {on: error}\n"),
            "3 restart.on: \"error\" is not one of: never, failure, always"
        );
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_ranges_and_constants() {
        assert_eq!(Backoff::parse("10s..5m"), Ok(Backoff { min: secs(10), max: secs(300) }));
        assert_eq!(Backoff::parse("30s"), Ok(Backoff { min: secs(30), max: secs(30) }));
        assert_eq!(Backoff::parse("1m..1m"), Ok(Backoff { min: secs(60), max: secs(60) }));
    }

    #[test]
    fn backoff_mistakes() {
        assert!(matches!(Backoff::parse("5m..10s"), Err(SpecError::Invalid { .. })));
        assert!(matches!(Backoff::parse("0s..1m"), Err(SpecError::Invalid { .. })));
        assert!(matches!(Backoff::parse("10s.."), Err(SpecError::Duration { .. })));
        assert!(matches!(Backoff::parse("..5m"), Err(SpecError::Duration { .. })));
        assert!(matches!(Backoff::parse("10s...5m"), Err(SpecError::Duration { .. })));
        assert!(matches!(Backoff::parse("10s-5m"), Err(SpecError::Duration { .. })));
        assert!(matches!(Backoff::parse(""), Err(SpecError::Duration { .. })));
    }
}
