//! The record of a finished run, `<run_dir>/status.json`: the durable truth
//! about how a job ended, written once by the shim.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::procfs::ProcessIdentity;

/// How the job's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobExit {
    /// The job called `exit(code)`.
    Exited { code: i32 },
    /// The job was killed by `signal`.
    Signaled { signal: i32, core_dumped: bool },
}

impl JobExit {
    /// Decodes a `waitpid(2)` status word.
    pub fn from_wait_status(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            JobExit::Signaled {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else {
            JobExit::Exited { code: libc::WEXITSTATUS(status) }
        }
    }

    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(&self) -> i32 {
        match *self {
            JobExit::Exited { code } => code,
            JobExit::Signaled { signal, .. } => 128 + signal,
        }
    }

    pub fn success(&self) -> bool {
        *self == JobExit::Exited { code: 0 }
    }
}

/// What became of one output stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    /// Bytes of job output kept in the log file: the head and the tail.
    pub kept_bytes: u64,
    /// Bytes the job wrote that are not in the log: between the head
    /// (`log_max_bytes`) and the tail (`log_tail_bytes`), or lost to a failed
    /// write.
    pub dropped_bytes: u64,
    /// Of `kept_bytes`, how many are the tail, after the marker line at the
    /// end of the file. 0 in statuses written before logs kept a tail.
    #[serde(default)]
    pub tail_bytes: u64,
    /// Newlines among the dropped bytes between head and tail.
    #[serde(default)]
    pub dropped_lines: u64,
}

/// Who observed the exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitSource {
    /// The container's init reaped the job and reported its exact status.
    Init,
    /// Init itself died before reporting (killed from outside, e.g. SIGKILL
    /// to its pid or an OOM kill); `exit` is init's status, and the kernel
    /// killed the job along with it.
    InitDied,
}

/// The content of `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStatus {
    pub job: String,
    pub run: String,
    pub exit: JobExit,
    pub exit_source: ExitSource,
    /// When the job's `execve` had succeeded, as seen by the shim.
    pub started_at: SystemTime,
    /// When the shim saw the container's init exit.
    pub finished_at: SystemTime,
    /// The container's init, as a host pid.
    pub init: ProcessIdentity,
    pub stdout: LogStats,
    pub stderr: LogStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_statuses() {
        // Layouts from the kernel ABI: exit code in bits 8-15, signal in 0-6,
        // core flag 0x80.
        assert_eq!(JobExit::from_wait_status(42 << 8), JobExit::Exited { code: 42 });
        assert_eq!(
            JobExit::from_wait_status(9),
            JobExit::Signaled { signal: 9, core_dumped: false }
        );
        assert_eq!(
            JobExit::from_wait_status(6 | 0x80),
            JobExit::Signaled { signal: 6, core_dumped: true }
        );
    }

    #[test]
    fn shell_codes() {
        assert_eq!(JobExit::Exited { code: 3 }.code(), 3);
        assert_eq!(JobExit::Signaled { signal: 15, core_dumped: false }.code(), 143);
        assert!(JobExit::Exited { code: 0 }.success());
        assert!(!JobExit::Exited { code: 1 }.success());
    }

    #[test]
    fn json_shape() {
        let exit =
            serde_json::to_string(&JobExit::Signaled { signal: 9, core_dumped: false }).unwrap();
        assert_eq!(exit, r#"{"signaled":{"signal":9,"core_dumped":false}}"#);
    }
}
