//! Plan, then apply: [`Resources`] become an ordered list of knob writes,
//! checked as a whole before anything is written.
//!
//! [`plan`] is a pure function of the resources and a [`PlanContext`] (what
//! the shell learnt by reading: which controllers the job has, the parent's
//! cpuset, current limits). It either returns every write in a safe order, or
//! every problem it found. [`apply`] then only writes.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use super::error::CgroupError;
use super::fs::write_knob;
use super::layout::Controller;
use super::resources::{OomMode, Resources};
use super::{v1, v2};
use crate::topology::{CpuSet, NodeSet};

/// The tree a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The v1 hierarchy carrying this controller.
    V1(Controller),
    /// The job's cgroup in the v2 tree.
    Unified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// One knob write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWrite {
    pub target: Target,
    pub file: &'static str,
    pub value: String,
}

impl fmt::Display for PlannedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}", self.file, self.value)
    }
}

/// A requested setting the layout cannot express and that is dropped rather
/// than refused, because enforcing less than asked is safe there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub setting: &'static str,
    pub reason: &'static str,
}

/// The writes that realise a [`Resources`] on one job cgroup, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub writes: Vec<PlannedWrite>,
    pub skipped: Vec<Skipped>,
    /// Device rules enforced by a BPF program attached to the job's v2
    /// cgroup (there is no v2 knob for them), after the writes.
    pub device_program: Option<Vec<super::devices::DeviceRule>>,
}

impl Plan {
    /// The value planned for `file`, if any (the last one wins).
    pub fn value_of(&self, file: &str) -> Option<&str> {
        self.writes.iter().rev().find(|w| w.file == file).map(|w| w.value.as_str())
    }
}

/// Whether the cgroup is new, or already configured and maybe running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanMode {
    /// A fresh cgroup: every knob holds the kernel default, so only settings
    /// that are asked for are written (fewer writes, faster launches).
    Create,
    /// A cgroup with earlier settings: every knob is written, `None` as the
    /// kernel default, so the result depends only on the new `Resources`.
    Update,
}

/// What the planner needs to know about the target cgroup; gathered with
/// reads only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanContext {
    pub mode: PlanMode,
    /// Controllers the job has a v1 cgroup for.
    pub v1: BTreeSet<Controller>,
    /// Controllers enabled for the job's v2 cgroup.
    pub v2: BTreeSet<Controller>,
    /// v1 `memory.memsw.*` exist (swap accounting is on).
    pub memsw: bool,
    /// v2 `memory.swap.max` exists.
    pub swap_max: bool,
    /// CPUs the parent may hand down: v1 `cpuset.cpus`, v2
    /// `cpuset.cpus.effective` of the job's parent.
    pub parent_cpus: Option<CpuSet>,
    pub parent_mems: Option<NodeSet>,
    /// The job's current v1 `memory.limit_in_bytes` (Update mode with memsw):
    /// decides the order of the limit and memsw writes.
    pub current_memory_limit: Option<u64>,
    /// The I/O weight files the job's cgroup has (`blkio.weight` only with
    /// CFQ, the `bfq` ones only with BFQ loaded, `io.weight` in every v2
    /// cgroup with `io` enabled).
    pub io_weight_files: Vec<&'static str>,
    /// The job has a v2 cgroup a device program can be attached to.
    pub device_program: bool,
    /// The job's v1 `devices.list` (Update mode): a list that already
    /// holds what is wanted is not written again, since rewriting it
    /// denies everything for a moment under a running job.
    pub current_device_list: Option<String>,
    /// The huge page sizes the job's hugetlb controller has limits for:
    /// in Update mode, those not asked for go back to no limit.
    pub hugetlb_sizes: Vec<u64>,
}

impl PlanContext {
    pub fn version(&self, controller: Controller) -> Option<CgroupVersion> {
        if self.v1.contains(&controller) {
            Some(CgroupVersion::V1)
        } else if self.v2.contains(&controller) {
            Some(CgroupVersion::V2)
        } else {
            None
        }
    }
}

/// One reason a [`Resources`] cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanProblem {
    #[error("{setting}: {value} is outside {range}")]
    OutOfRange { setting: &'static str, value: String, range: &'static str },

    #[error("{setting}: the set is empty")]
    EmptySet { setting: &'static str },

    #[error("{setting}: {requested} is not within the parent's {available}")]
    NotInParent { setting: &'static str, requested: String, available: String },

    #[error("memory soft limit {soft} exceeds the hard limit {hard}")]
    SoftAboveHard { soft: u64, hard: u64 },

    #[error("memory high limit {high} exceeds the hard limit {hard}")]
    HighAboveHard { high: u64, hard: u64 },

    #[error("a swap limit needs a hard memory limit")]
    SwapWithoutHard,

    #[error("{setting} needs the {controller} controller, which this cgroup does not have")]
    ControllerMissing { setting: &'static str, controller: Controller },

    #[error("{setting}: {reason}")]
    Unsupported { setting: &'static str, reason: &'static str },
}

/// Every problem found in a [`Resources`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    pub problems: Vec<PlanProblem>,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid resources: ")?;
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Accumulates writes, skips and problems while the controllers plan.
#[derive(Debug)]
pub(crate) struct Builder<'a> {
    pub ctx: &'a PlanContext,
    writes: Vec<PlannedWrite>,
    skipped: Vec<Skipped>,
    problems: Vec<PlanProblem>,
    device_program: Option<Vec<super::devices::DeviceRule>>,
}

impl<'a> Builder<'a> {
    fn new(ctx: &'a PlanContext) -> Self {
        Builder {
            ctx,
            writes: Vec::new(),
            skipped: Vec::new(),
            problems: Vec::new(),
            device_program: None,
        }
    }

    pub fn write(&mut self, target: Target, file: &'static str, value: impl ToString) {
        self.writes.push(PlannedWrite { target, file, value: value.to_string() });
    }

    pub fn skip(&mut self, setting: &'static str, reason: &'static str) {
        self.skipped.push(Skipped { setting, reason });
    }

    pub fn problem(&mut self, problem: PlanProblem) {
        self.problems.push(problem);
    }

    pub fn updating(&self) -> bool {
        self.ctx.mode == PlanMode::Update
    }

    pub fn device_program(&mut self, rules: Vec<super::devices::DeviceRule>) {
        self.device_program = Some(rules);
    }
}

/// Checks that do not depend on the cgroup version.
fn check_values(res: &Resources, b: &mut Builder<'_>) {
    // CPU weight and quota need no check here: their types only hold values in range.
    if res.cpus.as_ref().is_some_and(|c| c.is_empty()) {
        b.problem(PlanProblem::EmptySet { setting: "cpus" });
    }
    if res.mems.as_ref().is_some_and(|m| m.is_empty()) {
        b.problem(PlanProblem::EmptySet { setting: "mems" });
    }
    if let (Some(want), Some(have)) = (&res.cpus, &b.ctx.parent_cpus) {
        if !want.is_empty() && !want.is_subset(have) {
            b.problem(PlanProblem::NotInParent {
                setting: "cpus",
                requested: want.to_string(),
                available: have.to_string(),
            });
        }
    }
    if let (Some(want), Some(have)) = (&res.mems, &b.ctx.parent_mems) {
        if !want.is_empty() && !want.is_subset(have) {
            b.problem(PlanProblem::NotInParent {
                setting: "mems",
                requested: want.to_string(),
                available: have.to_string(),
            });
        }
    }
    let mem = &res.memory;
    for (setting, value) in [
        ("memory hard limit", mem.hard_bytes),
        ("memory soft limit", mem.soft_bytes),
        ("memory high limit", mem.high_bytes),
    ] {
        // The kernel rounds limits down to pages; below one page nothing runs.
        if value.is_some_and(|v| v < 4096) {
            b.problem(PlanProblem::OutOfRange {
                setting,
                value: value.unwrap_or_default().to_string(),
                range: ">= 4096 bytes",
            });
        }
    }
    if let (Some(soft), Some(hard)) = (mem.soft_bytes, mem.hard_bytes) {
        if soft > hard {
            b.problem(PlanProblem::SoftAboveHard { soft, hard });
        }
    }
    if let (Some(high), Some(hard)) = (mem.high_bytes, mem.hard_bytes) {
        if high > hard {
            b.problem(PlanProblem::HighAboveHard { high, hard });
        }
    }
    if mem.swap_bytes.is_some() && mem.hard_bytes.is_none() {
        b.problem(PlanProblem::SwapWithoutHard);
    }
    if res.pids_max == Some(0) {
        b.problem(PlanProblem::OutOfRange {
            setting: "pids max",
            value: "0".into(),
            range: ">= 1",
        });
    }
}

fn missing(b: &mut Builder<'_>, wanted: bool, setting: &'static str, controller: Controller) {
    if wanted {
        b.problem(PlanProblem::ControllerMissing { setting, controller });
    }
}

/// Turns `res` into the writes for the cgroup described by `ctx`.
pub fn plan(ctx: &PlanContext, res: &Resources) -> Result<Plan, PlanError> {
    let mut b = Builder::new(ctx);
    check_values(res, &mut b);

    // cpuset first: a v1 cpuset must have cpus and mems before a task may join.
    match ctx.version(Controller::Cpuset) {
        Some(CgroupVersion::V1) => v1::cpuset::plan(res, &mut b),
        Some(CgroupVersion::V2) => v2::cpuset::plan(res, &mut b),
        None => {
            missing(&mut b, res.cpus.is_some(), "cpus", Controller::Cpuset);
            missing(&mut b, res.mems.is_some(), "mems", Controller::Cpuset);
        }
    }
    match ctx.version(Controller::Cpu) {
        Some(CgroupVersion::V1) => v1::cpu::plan(res, &mut b),
        Some(CgroupVersion::V2) => v2::cpu::plan(res, &mut b),
        None => {
            missing(&mut b, res.cpu_weight.is_some(), "cpu weight", Controller::Cpu);
            missing(&mut b, res.cpu_quota.is_some(), "cpu quota", Controller::Cpu);
        }
    }
    match ctx.version(Controller::Memory) {
        Some(CgroupVersion::V1) => v1::memory::plan(res, &mut b),
        Some(CgroupVersion::V2) => v2::memory::plan(res, &mut b),
        None => {
            let m = &res.memory;
            let wanted = m.hard_bytes.is_some()
                || m.soft_bytes.is_some()
                || m.high_bytes.is_some()
                || m.swap_bytes.is_some()
                || res.oom == OomMode::PauseAtLimit;
            missing(&mut b, wanted, "memory limits", Controller::Memory);
        }
    }
    match ctx.version(Controller::Pids) {
        Some(CgroupVersion::V1) => v1::pids::plan(res, &mut b),
        Some(CgroupVersion::V2) => v2::pids::plan(res, &mut b),
        None => missing(&mut b, res.pids_max.is_some(), "pids max", Controller::Pids),
    }
    if ctx.v1.contains(&Controller::Blkio) {
        v1::blkio::plan(res, &mut b);
    } else if ctx.v2.contains(&Controller::Io) {
        v2::io::plan(res, &mut b);
    } else {
        missing(&mut b, !res.io.throttles.is_empty(), "I/O limits", Controller::Io);
        if res.io.weight.is_some() {
            b.skip("I/O weight", "the job has no I/O controller");
        }
    }
    if ctx.v1.contains(&Controller::Devices) {
        v1::devices::plan(res, &mut b);
    } else if ctx.device_program {
        v2::devices::plan(res, &mut b);
    } else if res.devices.is_some() {
        b.skip(
            "device allow-list",
            "no v1 devices hierarchy and no v2 cgroup to attach a device program to",
        );
    }
    match ctx.version(Controller::Hugetlb) {
        Some(CgroupVersion::V1) => v1::hugetlb::plan(res, &mut b),
        Some(CgroupVersion::V2) => v2::hugetlb::plan(res, &mut b),
        None => missing(&mut b, !res.hugetlb.is_empty(), "huge page limits", Controller::Hugetlb),
    }

    if b.problems.is_empty() {
        Ok(Plan { writes: b.writes, skipped: b.skipped, device_program: b.device_program })
    } else {
        Err(PlanError { problems: b.problems })
    }
}

/// Writes a plan in order. `dir` maps a target to the job's directory in
/// that tree; the planner only emits targets the job has, so a missing one is
/// reported rather than skipped.
pub fn apply<'p>(plan: &Plan, dir: impl Fn(Target) -> Option<&'p Path>) -> Result<(), CgroupError> {
    for write in &plan.writes {
        let Some(dir) = dir(write.target) else {
            return Err(CgroupError::Unsupported {
                what: write.file,
                reason: format!("the job has no cgroup in the {:?} tree", write.target),
            });
        };
        write_knob(&dir.join(write.file), &write.value)?;
    }
    if let Some(rules) = &plan.device_program {
        let Some(dir) = dir(Target::Unified) else {
            return Err(CgroupError::Unsupported {
                what: "device rules",
                reason: "the job has no cgroup in the v2 tree".into(),
            });
        };
        v2::devices::attach(dir, rules)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cgroup::resources::MemoryLimits;
    use crate::vocab::CpuWeight;

    pub(crate) fn v1_ctx(mode: PlanMode) -> PlanContext {
        PlanContext {
            mode,
            v1: BTreeSet::from([
                Controller::Cpu,
                Controller::Cpuacct,
                Controller::Cpuset,
                Controller::Memory,
                Controller::Pids,
                Controller::Freezer,
            ]),
            v2: BTreeSet::new(),
            memsw: true,
            swap_max: false,
            parent_cpus: Some(CpuSet::parse("0-3").unwrap()),
            parent_mems: Some(NodeSet::parse("0-1").unwrap()),
            current_memory_limit: None,
            io_weight_files: Vec::new(),
            device_program: false,
            current_device_list: None,
            hugetlb_sizes: Vec::new(),
        }
    }

    pub(crate) fn v2_ctx(mode: PlanMode) -> PlanContext {
        PlanContext {
            mode,
            v1: BTreeSet::new(),
            v2: BTreeSet::from([
                Controller::Cpu,
                Controller::Cpuset,
                Controller::Memory,
                Controller::Pids,
                Controller::Io,
            ]),
            memsw: false,
            swap_max: true,
            parent_cpus: Some(CpuSet::parse("0-3").unwrap()),
            parent_mems: Some(NodeSet::parse("0-1").unwrap()),
            current_memory_limit: None,
            io_weight_files: Vec::new(),
            device_program: false,
            current_device_list: None,
            hugetlb_sizes: Vec::new(),
        }
    }

    /// `(file, value)` of every planned write to a file named `prefix*`.
    pub(crate) fn writes_to<'p>(plan: &'p Plan, prefix: &str) -> Vec<(&'p str, &'p str)> {
        plan.writes
            .iter()
            .filter(|w| w.file.starts_with(prefix))
            .map(|w| (w.file, w.value.as_str()))
            .collect()
    }

    fn files(plan: &Plan) -> Vec<(&str, &str)> {
        writes_to(plan, "")
    }

    #[test]
    fn all_problems_are_reported_together() {
        let res = Resources {
            cpus: Some(CpuSet::parse("2-5").unwrap()),
            mems: Some(NodeSet::new()),
            memory: MemoryLimits {
                hard_bytes: Some(1 << 20),
                soft_bytes: Some(2 << 20),
                high_bytes: Some(4 << 20),
                swap_bytes: None,
            },
            pids_max: Some(0),
            oom: OomMode::Kill,
            ..Default::default()
        };
        let err = plan(&v1_ctx(PlanMode::Create), &res).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 5, "{text}");
        assert!(text.contains("cpus: 2-5 is not within the parent's 0-3"), "{text}");
        assert!(text.contains("mems: the set is empty"), "{text}");
        assert!(text.contains("soft limit 2097152 exceeds the hard limit 1048576"), "{text}");
    }

    #[test]
    fn missing_controllers_are_problems_not_silent_drops() {
        let mut ctx = v1_ctx(PlanMode::Create);
        ctx.v1 = BTreeSet::from([Controller::Cpu]);
        let res = Resources {
            cpus: Some(CpuSet::parse("0").unwrap()),
            memory: MemoryLimits { hard_bytes: Some(1 << 30), ..Default::default() },
            pids_max: Some(10),
            ..Default::default()
        };
        let err = plan(&ctx, &res).unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                PlanProblem::ControllerMissing { setting: "cpus", controller: Controller::Cpuset },
                PlanProblem::ControllerMissing {
                    setting: "memory limits",
                    controller: Controller::Memory
                },
                PlanProblem::ControllerMissing {
                    setting: "pids max",
                    controller: Controller::Pids
                },
            ]
        );
    }

    #[test]
    fn swap_needs_hard_everywhere() {
        let res = Resources {
            memory: MemoryLimits { swap_bytes: Some(0), ..Default::default() },
            ..Default::default()
        };
        for ctx in [v1_ctx(PlanMode::Create), v2_ctx(PlanMode::Create)] {
            let err = plan(&ctx, &res).unwrap_err();
            assert_eq!(err.problems, vec![PlanProblem::SwapWithoutHard]);
        }
    }

    #[test]
    fn nothing_asked_on_v2_create_writes_only_the_oom_group() {
        let p = plan(&v2_ctx(PlanMode::Create), &Resources::default()).unwrap();
        assert_eq!(files(&p), vec![("memory.oom.group", "1")]);
    }

    #[test]
    fn nothing_asked_on_v1_create_still_fills_the_cpuset() {
        let p = plan(&v1_ctx(PlanMode::Create), &Resources::default()).unwrap();
        assert_eq!(files(&p), vec![("cpuset.cpus", "0-3"), ("cpuset.mems", "0-1")]);
    }

    #[test]
    fn cpuset_is_written_before_everything_else() {
        let res = Resources {
            cpu_weight: Some(CpuWeight::new(200).unwrap()),
            cpus: Some(CpuSet::parse("1").unwrap()),
            memory: MemoryLimits { hard_bytes: Some(1 << 30), ..Default::default() },
            pids_max: Some(64),
            ..Default::default()
        };
        for ctx in [v1_ctx(PlanMode::Create), v2_ctx(PlanMode::Create)] {
            let p = plan(&ctx, &res).unwrap();
            assert_eq!(p.writes[0].file, "cpuset.cpus");
            assert_eq!(p.writes[0].value, "1");
            assert_eq!(p.writes.last().unwrap().file, "pids.max");
        }
    }

    #[test]
    fn apply_writes_in_order_and_names_file_and_value_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cpu.weight"), "100\n").unwrap();
        let plan = Plan {
            writes: vec![
                PlannedWrite { target: Target::Unified, file: "cpu.weight", value: "7".into() },
                PlannedWrite { target: Target::Unified, file: "cpu.max", value: "max".into() },
            ],
            skipped: vec![],
            device_program: None,
        };
        let err = apply(&plan, |_| Some(dir.path())).unwrap_err();
        assert_eq!(std::fs::read_to_string(dir.path().join("cpu.weight")).unwrap(), "7");
        let text = err.to_string();
        assert!(text.contains("\"max\""), "{text}");
        assert!(text.contains("cpu.max"), "{text}");
        assert!(!dir.path().join("cpu.max").exists(), "a write must never create a file");
    }

    #[test]
    fn apply_refuses_targets_the_job_lacks() {
        let plan = Plan {
            writes: vec![PlannedWrite {
                target: Target::V1(Controller::Pids),
                file: "pids.max",
                value: "1".into(),
            }],
            skipped: vec![],
            device_program: None,
        };
        assert!(matches!(apply(&plan, |_| None), Err(CgroupError::Unsupported { .. })));
    }
}
