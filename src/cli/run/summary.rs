//! How a foreground run ended, in one line and one exit code.

use std::fmt::{self, Write as _};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::container::JobExit;
use crate::launch::FinalStats;
use crate::vocab::Bytes;

/// Exit code when the job never ran or its end is unknown: corral itself
/// failed (as `docker run` and `podman run` use 125).
pub const EXIT_CORRAL_FAILED: u8 = 125;
/// Exit code when the command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit code when the command is not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// What `corral run` saw happen to one attempt of the job, besides its
/// exit status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunObservations {
    /// Times the attempt reached its hard limit, as the run state machine
    /// recorded them (one per OOM, however many notifications the kernel
    /// sent for it).
    pub oom_events: u64,
    /// Kernel OOM kills the run state machine recorded.
    pub oom_kills: u64,
    /// The job hit its hard limit with no room left to grow, and corral
    /// killed it there: the limit it was stopped at.
    pub killed_at_limit: Option<u64>,
    /// The job ran past its `timeout` and was stopped: the timeout.
    pub timed_out: Option<Duration>,
}

/// How the run ended, as the summary tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    /// SIGKILL, with an OOM kill counted: the kernel's OOM killer did it.
    OomKilled,
    /// Killed by corral at the hard limit (`oom: grow` at `grow_to`, or
    /// `oom: requeue`, which a foreground run does not requeue).
    KilledAtLimit {
        limit: u64,
    },
    /// No status: the run's supervisor died without recording one.
    Unknown,
}

impl Ending {
    pub fn of(exit: Option<JobExit>, observed: &RunObservations, oom_kills: u64) -> Ending {
        match exit {
            None => Ending::Unknown,
            Some(JobExit::Exited { code }) => Ending::Exited { code },
            Some(JobExit::Signaled { signal, .. }) if signal == libc::SIGKILL => {
                match observed.killed_at_limit {
                    Some(limit) => Ending::KilledAtLimit { limit },
                    None if oom_kills > 0 => Ending::OomKilled,
                    None => Ending::Signaled { signal },
                }
            }
            Some(JobExit::Signaled { signal, .. }) => Ending::Signaled { signal },
        }
    }

    /// `corral run`'s exit code: the job's, 128 + the signal that killed
    /// it, or [`EXIT_CORRAL_FAILED`].
    pub fn exit_code(&self) -> u8 {
        match *self {
            Ending::Exited { code } => u8::try_from(code & 0xff).unwrap_or(EXIT_CORRAL_FAILED),
            Ending::Signaled { signal } => u8::try_from(128 + signal).unwrap_or(255),
            Ending::OomKilled | Ending::KilledAtLimit { .. } => 128 + libc::SIGKILL as u8,
            Ending::Unknown => EXIT_CORRAL_FAILED,
        }
    }
}

pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Ending::Exited { code } => write!(f, "exit {code}"),
            Ending::Signaled { signal } => write!(f, "killed by {}", signal_name(signal)),
            Ending::OomKilled => f.write_str("OOM-killed (killed by the kernel OOM killer)"),
            Ending::KilledAtLimit { limit } => write!(
                f,
                "OOM-killed (stopped at its memory limit of {}, then killed as a whole)",
                Bytes(limit).human()
            ),
            Ending::Unknown => f.write_str("ended without a recorded status"),
        }
    }
}

/// The summary line `corral run` prints to stderr when the job has ended.
pub fn summary_line(
    job: &str,
    run: &str,
    exit: Option<JobExit>,
    wall: Duration,
    stats: &FinalStats,
    observed: &RunObservations,
) -> (String, u8) {
    let oom_kills = observed.oom_kills.max(stats.oom_kills.unwrap_or(0));
    let oom_events = observed.oom_events.max(stats.oom_events.unwrap_or(0)).max(oom_kills);
    let ending = Ending::of(exit, observed, oom_kills);
    let mut line = format!("corral: {job} run {run}: ");
    if let Some(timeout) = observed.timed_out {
        let _ = write!(line, "timed out after {}, then ", crate::spec::duration::format(timeout));
    }
    let _ = write!(line, "{ending}");
    if let Ending::Exited { .. } = ending {
        if oom_kills > 0 {
            let _ =
                write!(line, " after the kernel OOM killer killed {oom_kills} of its processes");
        }
    }
    let _ = write!(line, " in {:.2}s wall, ", wall.as_secs_f64());
    match (stats.cpu_user_seconds, stats.cpu_system_seconds) {
        (Some(user), Some(system)) => {
            let _ =
                write!(line, "{:.2}s CPU ({user:.2} user, {system:.2} system), ", user + system);
        }
        _ => line.push_str("CPU time unknown, "),
    }
    match stats.peak_memory_bytes {
        Some(peak) => {
            let _ = write!(line, "peak memory {}, ", Bytes(peak).human());
        }
        None => line.push_str("peak memory unknown, "),
    }
    let _ = write!(line, "{oom_events} OOM event{}", if oom_events == 1 { "" } else { "s" });
    (line, ending.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> FinalStats {
        FinalStats {
            cpu_seconds: Some(0.45),
            cpu_user_seconds: Some(0.4),
            cpu_system_seconds: Some(0.05),
            peak_memory_bytes: Some(12_897_485),
            oom_events: None,
            oom_kills: Some(0),
        }
    }

    fn line(exit: Option<JobExit>, stats: &FinalStats, observed: &RunObservations) -> (String, u8) {
        summary_line("etl", "etl-7", exit, Duration::from_millis(1234), stats, observed)
    }

    #[test]
    fn a_clean_exit() {
        let (text, code) =
            line(Some(JobExit::Exited { code: 0 }), &stats(), &RunObservations::default());
        assert_eq!(
            text,
            "corral: etl run etl-7: exit 0 in 1.23s wall, 0.45s CPU (0.40 user, 0.05 system), \
             peak memory 12.3 MiB, 0 OOM events"
        );
        assert_eq!(code, 0);
        let (text, code) =
            line(Some(JobExit::Exited { code: 42 }), &stats(), &RunObservations::default());
        assert!(text.contains(": exit 42 in"), "{text}");
        assert_eq!(code, 42);
    }

    #[test]
    fn signals_are_named_and_coded_the_shell_way() {
        let exit = JobExit::Signaled { signal: libc::SIGTERM, core_dumped: false };
        let (text, code) = line(Some(exit), &stats(), &RunObservations::default());
        assert!(text.contains(": killed by SIGTERM in"), "{text}");
        assert_eq!(code, 143);
        let exit = JobExit::Signaled { signal: libc::SIGKILL, core_dumped: false };
        let (text, code) = line(Some(exit), &stats(), &RunObservations::default());
        assert!(text.contains(": killed by SIGKILL in"), "{text}");
        assert_eq!(code, 137);
    }

    #[test]
    fn an_oom_kill_is_never_just_signal_9() {
        let exit = JobExit::Signaled { signal: libc::SIGKILL, core_dumped: false };
        // Counted by the kernel (v1 oom_control) ...
        let counted = FinalStats { oom_kills: Some(1), ..stats() };
        let (text, code) = line(Some(exit), &counted, &RunObservations::default());
        assert!(text.contains(": OOM-killed (killed by the kernel OOM killer) in"), "{text}");
        assert!(text.ends_with(", 1 OOM event"), "{text}");
        assert_eq!(code, 137);
        // ... or seen in the event stream only.
        let observed =
            RunObservations { oom_events: 2, oom_kills: 1, ..RunObservations::default() };
        let (text, _) = line(Some(exit), &stats(), &observed);
        assert!(text.contains("OOM-killed") && text.ends_with(", 2 OOM events"), "{text}");
    }

    #[test]
    fn a_process_lost_to_the_oom_killer_is_mentioned_after_a_plain_exit() {
        let counted = FinalStats { oom_kills: Some(1), ..stats() };
        let (text, code) =
            line(Some(JobExit::Exited { code: 137 }), &counted, &RunObservations::default());
        assert!(
            text.contains(": exit 137 after the kernel OOM killer killed 1 of its processes in"),
            "{text}"
        );
        assert_eq!(code, 137);
    }

    #[test]
    fn killed_at_the_limit_and_timed_out() {
        let exit = JobExit::Signaled { signal: libc::SIGKILL, core_dumped: false };
        let observed = RunObservations {
            oom_events: 3,
            killed_at_limit: Some(160 << 20),
            ..RunObservations::default()
        };
        let (text, code) = line(Some(exit), &stats(), &observed);
        assert!(
            text.contains(
                "OOM-killed (stopped at its memory limit of 160 MiB, then killed as a whole)"
            ),
            "{text}"
        );
        assert_eq!(code, 137);
        let observed = RunObservations {
            timed_out: Some(Duration::from_secs(30)),
            ..RunObservations::default()
        };
        let exit = JobExit::Signaled { signal: libc::SIGTERM, core_dumped: false };
        let (text, code) = line(Some(exit), &stats(), &observed);
        assert!(text.contains(": timed out after 30s, then killed by SIGTERM in"), "{text}");
        assert_eq!(code, 143);
    }

    #[test]
    fn unknown_numbers_say_so() {
        let (text, code) = line(None, &FinalStats::default(), &RunObservations::default());
        assert_eq!(
            text,
            "corral: etl run etl-7: ended without a recorded status in 1.23s wall, \
             CPU time unknown, peak memory unknown, 0 OOM events"
        );
        assert_eq!(code, EXIT_CORRAL_FAILED);
    }
}
