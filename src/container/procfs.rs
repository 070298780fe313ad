//! Process identity from `/proc`: a pid plus the process's start time, so a
//! pid file that outlived its process cannot be mistaken for a new process
//! that happens to get the same pid.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A process as recorded in a pid file: its pid and its start time in clock
/// ticks since boot (`/proc/PID/stat` field 22), which together name one
/// process for as long as the machine is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: i32,
    pub start_time: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcfsError {
    #[error("failed to read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("malformed {path}: {reason}")]
    Malformed { path: String, reason: &'static str },
}

/// Extracts the start time from the text of a `/proc/PID/stat` file.
///
/// Field 2 (the command name) is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the *last* `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts at field 3 (state); field 22 is 19 further on.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Reads the start time of `pid` from the procfs mounted at `proc_root`.
pub fn start_time(proc_root: &Path, pid: i32) -> Result<u64, ProcfsError> {
    let path = proc_root.join(pid.to_string()).join("stat");
    let text = std::fs::read_to_string(&path)
        .map_err(|source| ProcfsError::Read { path: path.display().to_string(), source })?;
    parse_start_time(&text).ok_or(ProcfsError::Malformed {
        path: path.display().to_string(),
        reason: "no start time in field 22",
    })
}

impl ProcessIdentity {
    /// The identity of a live process.
    pub fn of(proc_root: &Path, pid: i32) -> Result<Self, ProcfsError> {
        Ok(ProcessIdentity { pid, start_time: start_time(proc_root, pid)? })
    }

    /// Whether this exact process still exists (zombies count: they have not
    /// been reaped, so their pid is not reused yet).
    pub fn is_alive(&self, proc_root: &Path) -> bool {
        start_time(proc_root, self.pid).is_ok_and(|t| t == self.start_time)
    }
}

/// The pid file format: `PID START_TIME\n`, readable from a shell.
impl fmt::Display for ProcessIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.pid, self.start_time)
    }
}

impl FromStr for ProcessIdentity {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut fields = s.split_whitespace();
        let pid = fields.next().and_then(|p| p.parse().ok()).ok_or("missing pid")?;
        let start_time = fields.next().and_then(|t| t.parse().ok()).ok_or("missing start time")?;
        if fields.next().is_some() || pid <= 0 {
            return Err("expected `PID START_TIME`");
        }
        Ok(ProcessIdentity { pid, start_time })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_hostile_command_names() {
        let stat = "4242 (a) b (c) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 200 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("1 (init) S 0"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn reads_own_start_time() {
        let me = ProcessIdentity::of(Path::new("/proc"), std::process::id() as i32).unwrap();
        assert!(me.start_time > 0);
        assert!(me.is_alive(Path::new("/proc")));
        let reused = ProcessIdentity { start_time: me.start_time + 1, ..me };
        assert!(!reused.is_alive(Path::new("/proc")));
    }

    #[test]
    fn pid_file_round_trip() {
        let id = ProcessIdentity { pid: 17, start_time: 99 };
        assert_eq!(id.to_string(), "17 99\n");
        assert_eq!("17 99\n".parse(), Ok(id));
        assert!("17".parse::<ProcessIdentity>().is_err());
        assert!("17 99 3".parse::<ProcessIdentity>().is_err());
        assert!("-1 99".parse::<ProcessIdentity>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn start_time_parser_never_panics(text in "\\PC*") {
            parse_start_time(&text);
        }

        #[test]
        fn start_time_is_found_whatever_the_command_name(
            comm in "[ -~]{0,16}",
            start in proptest::prelude::any::<u64>(),
        ) {
            let stat = format!(
                "42 ({comm}) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {start} 1000 200"
            );
            proptest::prop_assert_eq!(parse_start_time(&stat), Some(start));
        }
    }
}
