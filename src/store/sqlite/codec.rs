//! Between Rust values and SQLite columns.
//!
//! SQLite integers are signed 64-bit; the few unsigned values stored (pids,
//! tick counts, byte counts, sequence numbers) fit with room to spare, and a
//! value that does not is an error rather than a silent wrap.

use std::path::PathBuf;

use rusqlite::Row;

use crate::placement::Assignment;
use crate::scheduler::{ExitStatus, RunState};
use crate::store::error::StoreError;
use crate::store::records::{ExitInfo, JobVersion, LaunchInfo, RunRecord};
use crate::vocab::Bytes;
use crate::vocab::JobName;
use crate::vocab::RunId;
use crate::vocab::Timestamp;

pub fn to_i64(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

pub fn sql(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { op, source }
}

pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Only plain data types with derived impls are stored: serializing them
    // to a String cannot fail.
    serde_json::to_string(value).expect("stored types serialize")
}

pub fn from_json<T: serde::de::DeserializeOwned>(
    key: &str,
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Decode {
        key: key.to_owned(),
        what,
        detail: e.to_string(),
    })
}

pub fn decode_err(key: &str, what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Decode { key: key.to_owned(), what, detail: detail.to_string() }
}

fn unsigned(key: &str, what: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| decode_err(key, what, format!("negative value {value}")))
}

pub const RUN_COLUMNS: &str = "id, job, seq, state, created_at, updated_at, finished_at, \
    assignment, shim_pid, init_pid, pid_start_time, run_dir, launched_at, \
    exit_code, exit_signal, exited_at, peak_memory, oom_kills, cpu_seconds, \
    spec_version, spec_meta";

/// A `runs` row as SQLite returns it, before any checking.
pub struct RawRun {
    id: String,
    job: String,
    seq: i64,
    state: String,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    assignment: Option<String>,
    shim_pid: Option<i64>,
    init_pid: Option<i64>,
    pid_start_time: Option<i64>,
    run_dir: Option<String>,
    launched_at: Option<i64>,
    exit_code: Option<i64>,
    exit_signal: Option<i64>,
    exited_at: Option<i64>,
    peak_memory: Option<i64>,
    oom_kills: Option<i64>,
    cpu_seconds: Option<f64>,
    spec_version: Option<String>,
    spec_meta: Option<String>,
}

impl RawRun {
    /// Reads a row selected with [`RUN_COLUMNS`].
    pub fn from_row(r: &Row<'_>) -> rusqlite::Result<RawRun> {
        Ok(RawRun {
            id: r.get(0)?,
            job: r.get(1)?,
            seq: r.get(2)?,
            state: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
            finished_at: r.get(6)?,
            assignment: r.get(7)?,
            shim_pid: r.get(8)?,
            init_pid: r.get(9)?,
            pid_start_time: r.get(10)?,
            run_dir: r.get(11)?,
            launched_at: r.get(12)?,
            exit_code: r.get(13)?,
            exit_signal: r.get(14)?,
            exited_at: r.get(15)?,
            peak_memory: r.get(16)?,
            oom_kills: r.get(17)?,
            cpu_seconds: r.get(18)?,
            spec_version: r.get(19)?,
            spec_meta: r.get(20)?,
        })
    }

    pub fn decode(self) -> Result<RunRecord, StoreError> {
        let key = self.id.as_str();
        let job = JobName::parse(&self.job).map_err(|e| decode_err(key, "job name", e))?;
        let state: RunState = from_json(key, "state", &self.state)?;
        let assignment = match &self.assignment {
            Some(text) => Some(from_json::<Assignment>(key, "assignment", text)?),
            None => None,
        };
        let pid = |what, v: i64| {
            u32::try_from(v).map_err(|_| decode_err(key, what, format!("bad pid {v}")))
        };
        let launch = match (self.shim_pid, self.init_pid, self.pid_start_time, &self.run_dir) {
            (Some(shim), Some(init), Some(start), Some(dir)) => Some(LaunchInfo {
                shim_pid: pid("shim pid", shim)?,
                init_pid: pid("init pid", init)?,
                pid_start_time: unsigned(key, "pid start time", start)?,
                run_dir: PathBuf::from(dir),
                launched_at: Timestamp::from_millis(self.launched_at.unwrap_or_default()),
            }),
            _ => None,
        };
        let status = match (self.exit_code, self.exit_signal) {
            (Some(code), None) => Some(ExitStatus::Code(
                i32::try_from(code).map_err(|_| decode_err(key, "exit code", code))?,
            )),
            (None, Some(sig)) => Some(ExitStatus::Signal(
                i32::try_from(sig).map_err(|_| decode_err(key, "exit signal", sig))?,
            )),
            _ => None,
        };
        let exit = match status {
            Some(status) => Some(ExitInfo {
                status,
                exited_at: Timestamp::from_millis(self.exited_at.unwrap_or_default()),
                peak_memory: match self.peak_memory {
                    Some(b) => Some(Bytes(unsigned(key, "peak memory", b)?)),
                    None => None,
                },
                oom_kills: unsigned(key, "oom kills", self.oom_kills.unwrap_or_default())?,
                cpu_seconds: self.cpu_seconds.unwrap_or_default(),
            }),
            None => None,
        };
        Ok(RunRecord {
            id: RunId::new(self.id.clone()),
            job,
            seq: unsigned(key, "sequence number", self.seq)?,
            state,
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
            finished_at: self.finished_at.map(Timestamp::from_millis),
            assignment,
            launch,
            exit,
            version: match (self.spec_version, self.spec_meta) {
                (Some(fingerprint), Some(meta)) => Some(JobVersion { fingerprint, meta }),
                _ => None,
            },
        })
    }
}
