//! Restarting a run that ended.

use std::fmt;
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
    /// Out-of-memory endings only (once the `oom` policy has nothing left to
    /// try); every other failure ends the run.
    Oom,
}
choice!(RestartOn { "never" => Never, "failure" => Failure, "always" => Always, "oom" => Oom });

/// A set of exit codes (0 to 255), for `on_exit_codes` and
/// `never_on_exit_codes`. A bit set, so that the policy stays `Copy`; stored
/// as a list of codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ExitCodes([u64; 4]);

impl ExitCodes {
    pub fn of(codes: impl IntoIterator<Item = u8>) -> ExitCodes {
        let mut set = ExitCodes::default();
        for code in codes {
            set.insert(code);
        }
        set
    }

    pub fn insert(&mut self, code: u8) {
        self.0[usize::from(code / 64)] |= 1 << (code % 64);
    }

    /// Whether `code` (an exit code as `waitpid` reports it) is in the set.
    pub fn contains(&self, code: i32) -> bool {
        u8::try_from(code).is_ok_and(|c| self.0[usize::from(c / 64)] & (1 << (c % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX).filter(|c| self.contains(i32::from(*c)))
    }
}

impl fmt::Display for ExitCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<String> = self.iter().map(|c| c.to_string()).collect();
        write!(f, "[{}]", codes.join(", "))
    }
}

impl serde::Serialize for ExitCodes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for ExitCodes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(ExitCodes::of(Vec::<u8>::deserialize(deserializer)?))
    }
}

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
    /// If not empty: a failure restarts only if it is an exit with one of these codes.
    pub on_exit_codes: ExitCodes,
    /// An exit with one of these codes never restarts, whatever `on` says.
    pub never_on_exit_codes: ExitCodes,
}

pub const DEFAULT_ATTEMPTS: u32 = 3;
const MAX_ATTEMPTS: u32 = 1000;

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            on: RestartOn::Never,
            attempts: DEFAULT_ATTEMPTS,
            backoff: Backoff::default(),
            on_exit_codes: ExitCodes::default(),
            never_on_exit_codes: ExitCodes::default(),
        }
    }
}

pub(super) fn compile(
    cx: &mut Checker,
    node: Option<&Node>,
    path: &FieldPath,
) -> Option<RestartPolicy> {
    let Some(node) = node else { return Some(RestartPolicy::default()) };
    let fields =
        cx.map(node, path, &["on", "attempts", "backoff", "on_exit_codes", "never_on_exit_codes"])?;
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
    let mut codes = |field: &str| match fields.get(field) {
        None => Some(ExitCodes::default()),
        Some(n) => exit_codes(cx, n, &fields.field(field)),
    };
    let on_exit_codes = codes("on_exit_codes");
    let never_on_exit_codes = codes("never_on_exit_codes");
    let mut ok = true;
    let mut requires = |field: &'static str, requirement: &str| {
        ok = false;
        cx.report(
            fields.key_pos(field),
            &fields.field(field),
            SpecError::Requires { field, requirement: requirement.into() },
        );
    };
    if on == Some(RestartOn::Never) {
        for field in ["attempts", "backoff", "on_exit_codes", "never_on_exit_codes"] {
            if fields.has(field) {
                requires(field, "`on: failure`, `on: always` or `on: oom`");
            }
        }
    }
    // `on: oom` restarts no exit: a list of exit codes would say nothing.
    if on == Some(RestartOn::Oom) {
        for field in ["on_exit_codes", "never_on_exit_codes"] {
            if fields.has(field) {
                requires(field, "`on: failure` or `on: always` (`on: oom` restarts no exit)");
            }
        }
    }
    if let (Some(on_codes), Some(never)) = (on_exit_codes, never_on_exit_codes) {
        if let Some(both) = on_codes.iter().find(|c| never.contains(i32::from(*c))) {
            ok = false;
            cx.report(
                fields.key_pos("never_on_exit_codes"),
                &fields.field("never_on_exit_codes"),
                SpecError::Invalid {
                    what: "exit code list",
                    value: never.to_string(),
                    reason: format!("{both} is also in on_exit_codes; a code belongs in one list"),
                },
            );
        }
    }
    ok.then_some(())?;
    Some(RestartPolicy {
        on: on?,
        attempts: attempts?,
        backoff: backoff?,
        on_exit_codes: on_exit_codes?,
        never_on_exit_codes: never_on_exit_codes?,
    })
}

/// A list of exit codes, 1 to 255, each once. 0 is success, which only
/// `on: always` restarts, so it has no place in either list.
fn exit_codes(cx: &mut Checker, node: &Node, path: &FieldPath) -> Option<ExitCodes> {
    let items = cx.seq(node, path)?;
    let mut set = ExitCodes::default();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let Some(code) = cx.int::<u8>(item, &path.index(i), 1..=255) else {
            ok = false;
            continue;
        };
        if set.contains(i32::from(code)) {
            ok = false;
            cx.report(
                item.pos,
                &path.index(i),
                SpecError::DuplicateItem { value: code.to_string() },
            );
        }
        set.insert(code);
    }
    if ok && set.is_empty() {
        cx.report(
            node.pos,
            path,
            SpecError::Invalid {
                what: "exit code list",
                value: "[]".into(),
                reason: "it is empty; leave the field out instead".into(),
            },
        );
        return None;
    }
    ok.then_some(set)
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
    fn exit_code_lists() {
        let r = ok("restart: {on: failure, on_exit_codes: [1, 75], never_on_exit_codes: [2]}\n")
            .restart;
        assert_eq!(r.on_exit_codes, ExitCodes::of([1, 75]));
        assert_eq!(r.never_on_exit_codes, ExitCodes::of([2]));
        assert!(r.on_exit_codes.contains(75) && !r.on_exit_codes.contains(2));
        assert!(!r.on_exit_codes.contains(-1) && !r.on_exit_codes.contains(256));
        assert_eq!(r.on_exit_codes.to_string(), "[1, 75]");
        assert_eq!(ok("restart: {on: oom}\n").restart.on, RestartOn::Oom);
        let all = ExitCodes::of(0..=255);
        assert_eq!(all.iter().count(), 256);
        let text = serde_json::to_string(&ExitCodes::of([255, 3])).unwrap();
        assert_eq!(text, "[3,255]");
        assert_eq!(serde_json::from_str::<ExitCodes>(&text).unwrap(), ExitCodes::of([3, 255]));
    }

    #[test]
    fn exit_code_mistakes() {
        assert_eq!(
            errors(
                "restart: {on: failure, on_exit_codes: [0, 256, 3, 3], never_on_exit_codes: x}\n"
            ),
            [
                "3 restart.on_exit_codes[0]: 0 is out of range; allowed: 1 to 255",
                "3 restart.on_exit_codes[1]: 256 is out of range; allowed: 1 to 255",
                "3 restart.on_exit_codes[3]: \"3\" is listed twice",
                "3 restart.never_on_exit_codes: expected a list, found the string \"x\"",
            ]
        );
        assert_eq!(
            error("restart: {on: failure, on_exit_codes: [1, 2], never_on_exit_codes: [2]}\n"),
            "3 restart.never_on_exit_codes: invalid exit code list \"[2]\": 2 is also in \
             on_exit_codes; a code belongs in one list"
        );
        assert_eq!(
            error("restart: {on: failure, on_exit_codes: []}\n"),
            "3 restart.on_exit_codes: invalid exit code list \"[]\": it is empty; leave the field out instead"
        );
        assert_eq!(
            error("restart: {on: oom, never_on_exit_codes: [2]}\n"),
            "3 restart.never_on_exit_codes: `never_on_exit_codes` requires `on: failure` or \
             `on: always` (`on: oom` restarts no exit)"
        );
        assert_eq!(
            error("restart:\n  never_on_exit_codes: [2]\n"),
            "4 restart.never_on_exit_codes: `never_on_exit_codes` requires `on: failure`, \
             `on: always` or `on: oom`"
        );
    }

    #[test]
    fn restart_mistakes() {
        assert_eq!(
            errors("restart: {attempts: 3, backoff: 10s}\n"),
            [
                "3 restart.attempts: `attempts` requires `on: failure`, `on: always` or `on: oom`",
                "3 restart.backoff: `backoff` requires `on: failure`, `on: always` or `on: oom`",
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
            "3 restart.on: \"error\" is not one of: never, failure, always, oom"
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
