//! Run ids: `<job>-<seq>`.
//!
//! A run id names the run's cgroup and its directory, so it must be a valid
//! path component everywhere: job names are DNS labels (`a-z`, `0-9`, `-`)
//! and the sequence number is decimal, so the id is too. The sequence is per
//! job, durable, and advanced in the same transaction that creates the run,
//! so ids are never reused across agent restarts, even after the job's old
//! runs are pruned. The split is unambiguous: the job is everything before
//! the last `-`, and a sequence number never contains one.

use crate::vocab::JobName;
use crate::vocab::RunId;

/// The id of run number `seq` of `job`.
pub fn run_id(job: &JobName, seq: u64) -> RunId {
    RunId::new(format!("{job}-{seq}"))
}

/// The job and sequence number of a run id made by [`run_id`].
pub fn parse_run_id(id: &RunId) -> Option<(JobName, u64)> {
    let (job, seq) = id.as_str().rsplit_once('-')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || seq.starts_with('0') {
        return None;
    }
    Some((JobName::parse(job).ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> JobName {
        JobName::parse(name).unwrap()
    }

    #[test]
    fn ids_round_trip_and_are_path_components() {
        for (name, seq) in [("a", 1), ("a-1", 2), ("nightly-etl", u64::MAX), (&*"x".repeat(63), 7)]
        {
            let id = run_id(&job(name), seq);
            assert!(id
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            assert!(id.as_str().len() <= 255, "a path component");
            assert_eq!(parse_run_id(&id), Some((job(name), seq)));
        }
    }

    #[test]
    fn jobs_with_digit_suffixes_do_not_collide() {
        // Job "a" run 1 is "a-1"; job "a-1" run 1 is "a-1-1": distinct.
        assert_ne!(run_id(&job("a"), 1), run_id(&job("a-1"), 1));
        assert_eq!(parse_run_id(&RunId::new("a-1-1")), Some((job("a-1"), 1)));
    }

    #[test]
    fn rejects_ids_it_did_not_make() {
        for bad in ["a", "a-", "-1", "a-01", "A-1", "a-x"] {
            assert_eq!(parse_run_id(&RunId::new(bad)), None, "{bad}");
        }
    }
}
