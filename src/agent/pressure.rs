//! Node-pressure protection, the shell side: reading the node's memory
//! (`MemAvailable` from `/proc/meminfo`, the PSI averages of the agent's
//! parent cgroup) every `check_every`, and keeping what the pure watch
//! ([`crate::scheduler::pressure`]) needs between readings.
//!
//! The supervisor carries the decisions out: a freeze and a requeue are
//! events through the state machine (stored before the kernel is touched);
//! a release puts the run in [`Pressure::released`], which lets the
//! scheduling pass resume it when there is room.
//!
//! Nothing here is stored of its own: the runs frozen for pressure are in
//! the store as `Suspended { by: memory-pressure }`, and a restarted agent
//! keeps them frozen (and new runs held) until the readings have been low
//! for `release_after` again. A release not yet followed by a resume is
//! forgotten by a restart, and simply given again.
//!
//! Reading two small pseudo-files is all the main loop does here: procfs
//! and cgroupfs generate them on read, without I/O.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::cgroup::v2::psi;
use crate::scheduler::pressure::{
    Candidate, CandidateState, Decision, PressureWatch, Reading, Thresholds,
};
use crate::scheduler::{Phase, SuspendedBy};
use crate::vocab::{Bytes, RunId, Timestamp};

use super::runs::RunTable;

/// Where the readings come from. Paths, so that tests hand in files of
/// their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PressureSources {
    /// A PSI file (`memory.pressure` of the agent's parent, or the
    /// system-wide `/proc/pressure/memory`); none when the kernel has
    /// neither.
    pub psi: Option<PathBuf>,
    /// `/proc/meminfo`.
    pub meminfo: PathBuf,
}

impl PressureSources {
    /// The parent cgroup's `memory.pressure` when the v2 tree has one there
    /// (`parent_psi`), else the system-wide file under `proc`.
    pub fn host(parent_psi: Option<PathBuf>, proc: &Path) -> PressureSources {
        let system = proc.join("pressure/memory");
        let psi = parent_psi.or_else(|| system.exists().then_some(system));
        PressureSources { psi, meminfo: proc.join("meminfo") }
    }

    /// One reading; a file that cannot be read or parsed leaves its signals
    /// out (see [`Reading`]).
    pub fn read(&self) -> Reading {
        let (available, total) = std::fs::read_to_string(&self.meminfo)
            .map(|text| parse_meminfo(&text))
            .unwrap_or_default();
        let pressure = self
            .psi
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| psi::parse(&text));
        Reading {
            available,
            total,
            some_avg10: pressure.map(|p| p.some.avg10),
            full_avg10: pressure.and_then(|p| p.full).map(|f| f.avg10),
        }
    }
}

/// `MemAvailable` and `MemTotal` from the text of `/proc/meminfo` (in kB,
/// which the kernel means as KiB).
pub fn parse_meminfo(text: &str) -> (Option<Bytes>, Option<Bytes>) {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
            Some(Bytes::from_kib(kib))
        })
    };
    (field("MemAvailable"), field("MemTotal"))
}

/// The watch, its settings and sources, and the runs it released.
#[derive(Debug)]
pub struct Pressure {
    pub thresholds: Thresholds,
    sources: PressureSources,
    watch: PressureWatch,
    next_check: Timestamp,
    /// Frozen for pressure and released: the scheduling pass may resume them.
    released: BTreeSet<RunId>,
    holding: bool,
}

impl Pressure {
    /// A watch whose first reading is due at `now`.
    pub fn new(thresholds: Thresholds, sources: PressureSources, now: Timestamp) -> Pressure {
        Pressure {
            thresholds,
            sources,
            watch: PressureWatch::default(),
            next_check: now,
            released: BTreeSet::new(),
            holding: false,
        }
    }

    pub fn sources(&self) -> &PressureSources {
        &self.sources
    }

    pub fn next_check(&self) -> Timestamp {
        self.next_check
    }

    /// New runs are held back (not placed) after the last reading.
    pub fn holding(&self) -> bool {
        self.holding
    }

    /// Takes a reading at `now` and decides on it; the next is due
    /// `check_every` later.
    pub(super) fn check(&mut self, now: Timestamp, runs: &RunTable) -> (Reading, Decision) {
        self.next_check = now.plus(self.thresholds.check_every);
        let reading = self.sources.read();
        // Forget releases of runs no longer frozen for pressure (resumed,
        // stopped, over).
        self.released
            .retain(|id| runs.get(id).is_some_and(|r| frozen_for_pressure(&r.state.phase)));
        let candidates = candidates(runs, &self.released);
        let decision = self.watch.step(&self.thresholds, &reading, now, &candidates);
        self.holding = decision.holding;
        (reading, decision)
    }

    /// `run` may resume when there is room.
    pub fn release(&mut self, run: RunId) {
        self.released.insert(run);
    }

    /// The runs frozen for pressure and not released: the scheduling pass
    /// leaves them frozen.
    pub(super) fn held(&self, runs: &RunTable) -> Vec<RunId> {
        runs.iter()
            .filter(|(id, r)| frozen_for_pressure(&r.state.phase) && !self.released.contains(*id))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn frozen_for_pressure(phase: &Phase) -> bool {
    matches!(phase, Phase::Suspended { by: SuspendedBy::Pressure, .. })
}

/// The runs the watch could act on: running runs (not those left to finish
/// after their job was removed) and runs frozen for pressure.
fn candidates(runs: &RunTable, released: &BTreeSet<RunId>) -> Vec<Candidate> {
    runs.iter()
        .filter_map(|(id, r)| {
            let state = match &r.state.phase {
                Phase::Running { .. } if !r.state.finishing => CandidateState::Running,
                p if frozen_for_pressure(p) => {
                    CandidateState::Frozen { since: r.state.since, released: released.contains(id) }
                }
                _ => return None,
            };
            Some(Candidate {
                run: id.clone(),
                priority: r.meta.priority(),
                mode: r.meta.policy.preemption,
                state,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_available_and_total() {
        let text = "MemTotal:       24683896 kB\nMemFree:         3297000 kB\n\
                    MemAvailable:   19467000 kB\nBuffers:            1234 kB\n";
        assert_eq!(
            parse_meminfo(text),
            (Some(Bytes::from_kib(19_467_000)), Some(Bytes::from_kib(24_683_896)))
        );
        assert_eq!(parse_meminfo("MemTotal: 12 kB\n"), (None, Some(Bytes::from_kib(12))));
    }

    #[test]
    fn sources_read_the_files_they_are_given_and_leave_out_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        std::fs::write(proc.join("meminfo"), "MemTotal: 2048 kB\nMemAvailable: 1024 kB\n").unwrap();
        // No PSI anywhere: only the memory figures.
        let sources = PressureSources::host(None, proc);
        assert_eq!(sources.psi, None);
        let r = sources.read();
        assert_eq!((r.available, r.total), (Some(Bytes::MIB), Some(Bytes::from_kib(2048))));
        assert_eq!((r.some_avg10, r.full_avg10), (None, None));
        // The system-wide file when the parent has none.
        std::fs::create_dir(proc.join("pressure")).unwrap();
        std::fs::write(
            proc.join("pressure/memory"),
            "some avg10=12.50 avg60=1.00 avg300=0.10 total=100\n\
             full avg10=3.25 avg60=0.50 avg300=0.00 total=50\n",
        )
        .unwrap();
        let sources = PressureSources::host(None, proc);
        assert_eq!(sources.psi, Some(proc.join("pressure/memory")));
        let r = sources.read();
        assert_eq!((r.some_avg10, r.full_avg10), (Some(12.5), Some(3.25)));
        // The parent's file comes first.
        let parent = proc.join("parent.pressure");
        std::fs::write(&parent, "some avg10=40.00 avg60=0 avg300=0 total=1\n").unwrap();
        let sources = PressureSources::host(Some(parent.clone()), proc);
        assert_eq!(sources.psi, Some(parent));
        assert_eq!(sources.read().some_avg10, Some(40.0));
    }
}
