//! Signals a job file names: `stop_signal` (what a stop sends first) and
//! `timeout_signal` (a warning ahead of the timeout, for a checkpoint).

use std::fmt;
use std::time::Duration;

use super::check::Checker;
use super::duration;
use super::error::{FieldPath, SpecError};
use super::tree::Node;

/// A signal a job can be sent and act on.
///
/// Only the signals the container's init passes on to the job are allowed:
/// init is PID 1 of the job's pid namespace, and the kernel delivers a
/// signal sent to it from outside only if it handles that signal, so any
/// other signal would never reach the job. SIGKILL and SIGSTOP cannot be
/// caught, so they could not start a graceful stop or a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobSignal(i32);

/// The signals a job can be sent, by name and number (Linux numbering).
/// The container's init forwards exactly these (`container::init::FORWARDED`;
/// a test in `agent::ops` keeps the two lists equal).
pub const JOB_SIGNALS: [(&str, i32); 5] = [
    ("SIGTERM", libc::SIGTERM),
    ("SIGINT", libc::SIGINT),
    ("SIGHUP", libc::SIGHUP),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
];

impl JobSignal {
    pub const SIGTERM: JobSignal = JobSignal(libc::SIGTERM);

    /// Reads `SIGUSR1` or `USR1` (either case).
    pub fn parse(text: &str) -> Result<JobSignal, SpecError> {
        let upper = text.trim().to_ascii_uppercase();
        let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
        if let Some((_, number)) = JOB_SIGNALS.iter().find(|(n, _)| *n == name) {
            return Ok(JobSignal(*number));
        }
        let allowed = JOB_SIGNALS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        let reason = if name == "SIGKILL" || name == "SIGSTOP" {
            format!("{name} cannot be caught, so the job could not act on it; use one of {allowed}")
        } else {
            format!(
                "a job can be sent one of {allowed} (the signals its container's init passes on)"
            )
        };
        Err(SpecError::Invalid { what: "signal", value: text.to_owned(), reason })
    }

    /// The signal number.
    pub fn number(self) -> i32 {
        self.0
    }

    pub fn name(self) -> &'static str {
        JOB_SIGNALS.iter().find(|(_, n)| *n == self.0).map_or("SIG?", |(name, _)| name)
    }
}

impl Default for JobSignal {
    fn default() -> Self {
        JobSignal::SIGTERM
    }
}

impl fmt::Display for JobSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Stored by name, so that a record reads the same on any architecture.
impl serde::Serialize for JobSignal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for JobSignal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        JobSignal::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `timeout_signal`: `signal` is sent once, `before` ahead of the timeout
/// (counted in running time, like the timeout itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TimeoutSignal {
    pub signal: JobSignal,
    pub before: Duration,
}

impl TimeoutSignal {
    /// Running time of an attempt at which the signal is due under `timeout`.
    pub fn due_after(&self, timeout: Duration) -> Duration {
        timeout.saturating_sub(self.before)
    }
}

pub(super) fn compile_stop_signal(
    cx: &mut Checker,
    node: &Node,
    path: &FieldPath,
) -> Option<JobSignal> {
    cx.parsed(node, path, JobSignal::parse)
}

/// `timeout_signal: {signal: SIGUSR1, before: 1m}`. `timeout` is the job's
/// (`None` if it has none; the caller passes nothing when the timeout itself
/// was wrong, so that only that mistake is reported).
pub(super) fn compile_timeout_signal(
    cx: &mut Checker,
    node: &Node,
    path: &FieldPath,
    timeout: Option<Option<Duration>>,
) -> Option<TimeoutSignal> {
    let fields = cx.map(node, path, &["signal", "before"])?;
    let signal = fields
        .require(cx, "signal")
        .and_then(|n| cx.parsed(n, &fields.field("signal"), JobSignal::parse));
    let before =
        fields.require(cx, "before").and_then(|n| cx.positive_duration(n, &fields.field("before")));
    match timeout {
        Some(None) => {
            cx.report(
                fields.pos(),
                path,
                SpecError::Requires {
                    field: "timeout_signal",
                    requirement: "`timeout`: the signal is sent ahead of it".into(),
                },
            );
            return None;
        }
        Some(Some(timeout)) => {
            if let Some(b) = before.filter(|b| *b >= timeout) {
                let reason = format!(
                    "it must be shorter than the job's timeout ({}), or the signal would come \
                     with the stop or never",
                    duration::format(timeout)
                );
                cx.report(
                    fields.get("before").map_or(fields.pos(), |n| n.pos),
                    &fields.field("before"),
                    SpecError::Invalid { what: "duration", value: duration::format(b), reason },
                );
                return None;
            }
        }
        None => return None,
    }
    Some(TimeoutSignal { signal: signal?, before: before? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{error, errors, ok};

    #[test]
    fn names_with_and_without_sig() {
        assert_eq!(JobSignal::parse("SIGUSR1").unwrap().number(), libc::SIGUSR1);
        assert_eq!(JobSignal::parse("USR1").unwrap().number(), libc::SIGUSR1);
        assert_eq!(JobSignal::parse("sigint").unwrap().number(), libc::SIGINT);
        assert_eq!(JobSignal::parse("HUP").unwrap().to_string(), "SIGHUP");
        assert_eq!(JobSignal::default().number(), libc::SIGTERM);
        for (name, number) in JOB_SIGNALS {
            assert_eq!(JobSignal::parse(name).unwrap().number(), number);
            assert_eq!(JobSignal::parse(name).unwrap().name(), name);
        }
    }

    #[test]
    fn stored_by_name() {
        let text = serde_json::to_string(&JobSignal::parse("USR2").unwrap()).unwrap();
        assert_eq!(text, "\"SIGUSR2\"");
        assert_eq!(serde_json::from_str::<JobSignal>(&text).unwrap().number(), libc::SIGUSR2);
        assert!(serde_json::from_str::<JobSignal>("\"SIGKILL\"").is_err());
    }

    #[test]
    fn stop_signal_field() {
        assert_eq!(ok("").stop_signal, None);
        assert_eq!(ok("stop_signal: SIGINT\n").stop_signal.unwrap().number(), libc::SIGINT);
        assert_eq!(
            error("stop_signal: SIGKILL\n"),
            "3 stop_signal: invalid signal \"SIGKILL\": SIGKILL cannot be caught, so the job could \
             not act on it; use one of SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2"
        );
        assert_eq!(
            error("stop_signal: QUIT\n"),
            "3 stop_signal: invalid signal \"QUIT\": a job can be sent one of SIGTERM, SIGINT, \
             SIGHUP, SIGUSR1, SIGUSR2 (the signals its container's init passes on)"
        );
        assert_eq!(
            error("stop_signal: 15\n"),
            "3 stop_signal: expected a string, found the integer 15"
        );
    }

    #[test]
    fn timeout_signal_field() {
        let spec = ok("timeout: 1h\ntimeout_signal: {signal: USR1, before: 5m}\n");
        let t = spec.timeout_signal.unwrap();
        assert_eq!((t.signal.number(), t.before), (libc::SIGUSR1, Duration::from_secs(300)));
        assert_eq!(t.due_after(spec.timeout.unwrap()), Duration::from_secs(3300));
        assert_eq!(ok("timeout: 1h\n").timeout_signal, None);
    }

    #[test]
    fn timeout_signal_mistakes() {
        assert_eq!(
            error("timeout_signal: {signal: USR1, before: 5m}\n"),
            "3 timeout_signal: `timeout_signal` requires `timeout`: the signal is sent ahead of it"
        );
        assert_eq!(
            error("timeout: 1m\ntimeout_signal: {signal: USR1, before: 1m}\n"),
            "4 timeout_signal.before: invalid duration \"1m\": it must be shorter than the job's \
             timeout (1m), or the signal would come with the stop or never"
        );
        assert_eq!(
            errors("timeout: 1m\ntimeout_signal: {signal: KILL, before: 0s, when: x}\n"),
            [
                "4 timeout_signal.signal: invalid signal \"KILL\": SIGKILL cannot be caught, so \
                 the job could not act on it; use one of SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2",
                "4 timeout_signal.before: invalid duration \"0s\": it must be longer than zero",
                "4 timeout_signal.when: unknown field `when`",
            ]
        );
        assert_eq!(
            error("timeout: 1m\ntimeout_signal: {before: 10s}\n"),
            "4 timeout_signal: required field `signal` is missing"
        );
        // A wrong timeout is reported once, not again through timeout_signal.
        assert_eq!(
            error("timeout: soon\ntimeout_signal: {signal: USR1, before: 10s}\n"),
            "3 timeout: invalid duration \"soon\": a unit has no number in front of it"
        );
    }
}
