//! A job's dynamic uid as the agent gets it: from the store, or allocated
//! and recorded there before the run that needs it is launched.

use tracing::warn;

use super::allocate::{pick, Order};
use super::error::DynamicUserError;
use super::host::{HostIds, HostRoots};
use crate::scheduler::{JobName, Timestamp};
use crate::spec::UidRange;
use crate::store::DynamicUsers;

/// `job`'s uid from `range`: the one on record, or the lowest that no other
/// job holds and no host account or process has, recorded now. A recorded
/// uid outside `range` (the range was changed) is given up for a new one.
pub fn job_uid(
    store: &mut impl DynamicUsers,
    job: &JobName,
    range: UidRange,
    roots: &HostRoots,
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
        }
        None => {}
    }
    // Read before the store's write lock is taken: a procfs scan is the
    // slow part, and a process that appears in between with a uid from the
    // range can only be another job's, which the store's allocations cover.
    let host = HostIds::read(roots)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn job(name: &str) -> JobName {
        JobName::parse(name).unwrap()
    }

    #[test]
    fn stable_across_reopening_distinct_per_job_and_exhaustion_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let roots = HostRoots { etc: dir.path().join("etc"), proc: dir.path().join("proc") };
        std::fs::create_dir_all(roots.proc.join("9")).unwrap();
        std::fs::write(roots.proc.join("9/status"), "Uid:\t70001\t70001\t70001\t70001\n").unwrap();
        let db = dir.path().join("corral.db");
        let range = UidRange::parse("70000-70002").unwrap();
        let at = Timestamp::from_millis(1);

        let mut store = SqliteStore::open(&db).unwrap();
        assert_eq!(job_uid(&mut store, &job("a"), range, &roots, at).unwrap(), 70000);
        // 70001 belongs to a process (a released job's leftover, say).
        assert_eq!(job_uid(&mut store, &job("b"), range, &roots, at).unwrap(), 70002);
        drop(store);

        let mut store = SqliteStore::open(&db).unwrap();
        assert_eq!(job_uid(&mut store, &job("b"), range, &roots, at).unwrap(), 70002);
        assert_eq!(job_uid(&mut store, &job("a"), range, &roots, at).unwrap(), 70000);
        let err = job_uid(&mut store, &job("c"), range, &roots, at).unwrap_err().to_string();
        assert!(err.contains("job c: no free uid in dynamic_users range 70000-70002"), "{err}");
        assert!(err.contains("2 allocated"), "{err}");
        assert!(err.contains("dynamic_users: {range: ...}"), "{err}");

        // The process is gone and a is released: c gets the lowest free.
        std::fs::remove_dir_all(roots.proc.join("9")).unwrap();
        store.release_uid(&job("a")).unwrap();
        assert_eq!(job_uid(&mut store, &job("c"), range, &roots, at).unwrap(), 70000);

        // A narrower range: b's uid is outside and b gets a new one.
        let narrow = UidRange::parse("70000-70001").unwrap();
        assert_eq!(job_uid(&mut store, &job("b"), narrow, &roots, at).unwrap(), 70001);
    }
}
