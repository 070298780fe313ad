//! A job's dynamic uid as the agent gets it: from the store, or allocated
//! and recorded there before the run that needs it is launched.

use std::time::{Duration, Instant};

use tracing::warn;

use super::allocate::{pick, Order};
use super::error::DynamicUserError;
use super::host::{HostIds, HostRoots};
use crate::spec::UidRange;
use crate::store::DynamicUsers;
use crate::vocab::JobName;
use crate::vocab::Timestamp;

/// How long one reading of the host's accounts and processes serves new
/// allocations. Jobs added together (a jobs directory read at start, a
/// deploy of many files) then cost one procfs scan, not one each: a scan
/// reads every process's `status`, and a thousand new jobs over a thousand
/// live runs would otherwise be millions of reads.
///
/// Reusing a reading is safe because no process can come to hold a uid of
/// the range without something handing it out: this agent's own
/// allocations are checked in the store's transaction, not here, and a uid
/// released since the reading (whose old owner may have left a process)
/// makes the next allocation read afresh.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);

/// The agent's allocator: the host's ids, read when needed, and the store.
#[derive(Debug)]
pub struct Allocator {
    roots: HostRoots,
    snapshot: Option<(HostIds, Instant)>,
}

impl Allocator {
    pub fn new(roots: HostRoots) -> Allocator {
        Allocator { roots, snapshot: None }
    }

    /// `job`'s uid from `range`: the one on record, or the lowest that no
    /// other job holds and no host account or process has, recorded now. A
    /// recorded uid outside `range` (the range was changed) is given up
    /// for a new one.
    pub fn job_uid(
        &mut self,
        store: &mut impl DynamicUsers,
        job: &JobName,
        range: UidRange,
        at: Timestamp,
    ) -> Result<u32, DynamicUserError> {
        match store.job_uid(job)? {
            Some(uid) if range.contains(uid) => return Ok(uid),
            Some(uid) => {
                warn!(
                    job = %job,
                    "uid {uid} is outside dynamic_users range {range}; the job gets a new one \
                     (files it left owned by {uid} stay so)"
                );
                store.release_uid(job)?;
                self.released();
            }
            None => {}
        }
        // Read before the store's write lock is taken: the scan is the
        // slow part.
        let host = self.host()?;
        let mut allocated = 0;
        let mut choose = |taken: &std::collections::BTreeSet<u32>| {
            allocated = taken.len();
            pick(range, Order::Lowest, |uid| taken.contains(&uid) || host.in_use(uid))
        };
        store.allocate_uid(job, at, &mut choose)?.ok_or_else(|| DynamicUserError::Exhausted {
            job: job.to_string(),
            range: range.to_string(),
            allocated,
        })
    }

    /// A uid was released: processes its old owner left must be looked for
    /// before it is handed out again.
    pub fn released(&mut self) {
        self.snapshot = None;
    }

    fn host(&mut self) -> Result<&HostIds, DynamicUserError> {
        let fresh = self.snapshot.as_ref().is_some_and(|(_, at)| at.elapsed() < SNAPSHOT_MAX_AGE);
        if !fresh {
            self.snapshot = Some((HostIds::read(&self.roots)?, Instant::now()));
        }
        Ok(&self.snapshot.as_ref().expect("read above").0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn job(name: &str) -> JobName {
        JobName::parse(name).unwrap()
    }

    fn write_status(roots: &HostRoots, pid: u32, uid: u32) {
        let dir = roots.proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("status"), format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}\n")).unwrap();
    }

    #[test]
    fn stable_across_reopening_distinct_per_job_and_exhaustion_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let roots = HostRoots { etc: dir.path().join("etc"), proc: dir.path().join("proc") };
        write_status(&roots, 9, 70001);
        let db = dir.path().join("corral.db");
        let range = UidRange::parse("70000-70002").unwrap();
        let at = Timestamp::from_millis(1);

        let mut store = SqliteStore::open(&db).unwrap();
        let mut uids = Allocator::new(roots.clone());
        assert_eq!(uids.job_uid(&mut store, &job("a"), range, at).unwrap(), 70000);
        // 70001 belongs to a process (a released job's leftover, say).
        assert_eq!(uids.job_uid(&mut store, &job("b"), range, at).unwrap(), 70002);
        drop(store);

        let mut store = SqliteStore::open(&db).unwrap();
        let mut uids = Allocator::new(roots.clone());
        assert_eq!(uids.job_uid(&mut store, &job("b"), range, at).unwrap(), 70002);
        assert_eq!(uids.job_uid(&mut store, &job("a"), range, at).unwrap(), 70000);
        let err = uids.job_uid(&mut store, &job("c"), range, at).unwrap_err().to_string();
        assert!(err.contains("job c: no free uid in dynamic_users range 70000-70002"), "{err}");
        assert!(err.contains("2 allocated"), "{err}");
        assert!(err.contains("dynamic_users: {range: ...}"), "{err}");

        // The process is gone and a is released: c gets the lowest free.
        std::fs::remove_dir_all(roots.proc.join("9")).unwrap();
        store.release_uid(&job("a")).unwrap();
        uids.released();
        assert_eq!(uids.job_uid(&mut store, &job("c"), range, at).unwrap(), 70000);

        // A narrower range: b's uid is outside and b gets a new one.
        let narrow = UidRange::parse("70000-70001").unwrap();
        assert_eq!(uids.job_uid(&mut store, &job("b"), narrow, at).unwrap(), 70001);
    }

    #[test]
    fn a_release_makes_the_next_allocation_look_at_the_processes_again() {
        let dir = tempfile::tempdir().unwrap();
        let roots = HostRoots { etc: dir.path().join("etc"), proc: dir.path().join("proc") };
        std::fs::create_dir_all(&roots.proc).unwrap();
        let mut store = SqliteStore::open(&dir.path().join("corral.db")).unwrap();
        let range = UidRange::parse("70000-70009").unwrap();
        let at = Timestamp::from_millis(1);
        let mut uids = Allocator::new(roots.clone());
        assert_eq!(uids.job_uid(&mut store, &job("a"), range, at).unwrap(), 70000);
        // a is released but left a process behind, seen only by a new reading.
        store.release_uid(&job("a")).unwrap();
        write_status(&roots, 5, 70000);
        uids.released();
        assert_eq!(uids.job_uid(&mut store, &job("b"), range, at).unwrap(), 70001);
    }
}
