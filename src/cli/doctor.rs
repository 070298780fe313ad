//! `corral doctor`: is this host's cgroup setup good enough for corral?
//!
//! Exits 0 when everything corral needs is there, 1 when something is
//! missing, and prints what was found either way.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::cgroup::delegation::{self, Mode, RootRequest};
use crate::cgroup::inspect::{inspect, InspectOptions, Inspection, Severity};
use crate::cgroup::{detect, Anchor, CgroupPath, FreezerKind, HostPaths, KillKind, LayoutKind};
use crate::config::CgroupRoot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnchorArg {
    /// The parent sits at the root of every hierarchy.
    Root,
    /// The parent sits under the agent's own cgroup.
    Own,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Mount table to read.
    #[arg(long, default_value = "/proc/self/mountinfo")]
    pub mountinfo: PathBuf,
    /// The process's cgroup membership to read.
    #[arg(long, default_value = "/proc/self/cgroup")]
    pub self_cgroup: PathBuf,
    /// Prefix for every mount point of the mount table (inspect a copied tree).
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,
    /// Kernel release file, for features no existing cgroup shows.
    #[arg(long, default_value = "/proc/sys/kernel/osrelease")]
    pub osrelease: PathBuf,
    /// Parent cgroup of all jobs.
    #[arg(long, default_value = "corral")]
    pub parent: String,
    /// Where the parent is rooted when no delegated cgroup is used (see
    /// --agent-cgroup-root).
    #[arg(long, value_enum, default_value_t = AnchorArg::Root)]
    pub anchor: AnchorArg,
    /// The agent's `cgroup_root` setting: `auto` (a cgroup delegated to the
    /// agent on a pure v2 host, else the hierarchy roots) or a cgroup path.
    #[arg(long, value_name = "auto|PATH", default_value = "auto")]
    pub agent_cgroup_root: String,
    /// Judge the cgroup root from this running agent's cgroup (e.g.
    /// `systemctl show -p MainPID --value corral`) instead of doctor's own.
    #[arg(long, value_name = "PID")]
    pub agent_pid: Option<u32>,
    /// On a hybrid host, do not use the v2 tree.
    #[arg(long)]
    pub no_unified: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also check the agent's state directory: free space for its database,
    /// and a database lost while run directories show an earlier agent.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Also check the cluster of this agent configuration's `cluster:`
    /// section: its members, quorum, and this node's lease.
    #[arg(long, value_name = "CONFIG")]
    pub cluster: Option<PathBuf>,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let (self_cgroup, uid) = match args.agent_pid {
        Some(pid) => {
            let proc_dir = PathBuf::from(format!("/proc/{pid}"));
            let owner = std::fs::metadata(&proc_dir)
                .with_context(|| format!("no process {pid} (--agent-pid)"))?
                .uid();
            (proc_dir.join("cgroup"), owner)
        }
        None => (args.self_cgroup.clone(), nix::unistd::geteuid().as_raw()),
    };
    let paths = HostPaths {
        mountinfo: args.mountinfo.clone(),
        self_cgroup,
        cgroup_root: args.cgroup_root.clone(),
    };
    let layout = detect(&paths).context("cannot detect the cgroup layout")?;
    let request = match CgroupRoot::parse(&args.agent_cgroup_root)
        .map_err(|reason| anyhow::anyhow!("--agent-cgroup-root: {reason}"))?
    {
        CgroupRoot::Auto => RootRequest::Auto,
        CgroupRoot::Delegated(cgroup) => RootRequest::Cgroup(cgroup),
    };
    let root = RootCheck::of(&layout, &request, uid);
    let options = InspectOptions {
        parent: CgroupPath::new(&args.parent).context("invalid --parent")?,
        anchor: match (&root, args.anchor) {
            (RootCheck::Mode(Mode::Delegated(d)), _) => Anchor::Delegated(d.cgroup.clone()),
            (_, AnchorArg::Root) => Anchor::HierarchyRoot,
            (_, AnchorArg::Own) => Anchor::OwnCgroup,
        },
        use_unified: !args.no_unified,
        kernel_release: std::fs::read_to_string(&args.osrelease).ok(),
        cap_sys_resource: cap_sys_resource(),
    };
    let report = inspect(&layout, &options);
    let state = args.state_dir.as_deref().map(StateDirCheck::of);
    let cluster = match &args.cluster {
        Some(path) => {
            let config = super::cluster::cluster_config(path)?;
            Some(super::cluster::block_on(super::doctor_cluster::ClusterCheck::of(&config))??)
        }
        None => None,
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["cgroup_root"] = serde_json::to_value(&root)?;
        if let Some(state) = &state {
            value["state_dir"] = serde_json::to_value(state)?;
        }
        if let Some(cluster) = &cluster {
            value["cluster"] = serde_json::to_value(cluster)?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", root.render());
        if args.agent_pid.is_none() {
            println!(
                "  (judged from doctor's own cgroup; --agent-pid PID judges a running agent's)"
            );
        }
        print!("{}", render(&report));
        if let Some(state) = &state {
            print!("{}", state.render());
        }
        if let Some(cluster) = &cluster {
            print!("{}", cluster.render());
        }
    }
    let state_ok = state.as_ref().is_none_or(StateDirCheck::usable);
    let root_ok = matches!(root, RootCheck::Mode(_));
    let cluster_ok = cluster.as_ref().is_none_or(super::doctor_cluster::ClusterCheck::usable);
    Ok(if report.usable() && state_ok && root_ok && cluster_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Where the agent's cgroup tree goes, and why; or why the configured
/// cgroup cannot hold it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootCheck {
    Mode(Mode),
    Refused(String),
}

impl RootCheck {
    pub fn of(layout: &crate::cgroup::Layout, request: &RootRequest, uid: u32) -> RootCheck {
        match delegation::decide(layout, request, uid) {
            Ok(mode) => RootCheck::Mode(mode),
            Err(e) => RootCheck::Refused(e.to_string()),
        }
    }

    pub fn render(&self) -> String {
        match self {
            RootCheck::Mode(Mode::Delegated(d)) => format!(
                "cgroup root: delegated at {}\n  because {}\n  agent in {}/{}, shims in {}/{}, \
                 jobs below {}\n",
                d.cgroup,
                d.signal,
                d.cgroup,
                delegation::AGENT_LEAF,
                d.cgroup,
                delegation::SHIMS_LEAF,
                d.cgroup,
            ),
            RootCheck::Mode(Mode::Root(why)) => {
                format!("cgroup root: the root of every hierarchy\n  because {why}\n")
            }
            RootCheck::Refused(reason) => format!("cgroup root: error: {reason}\n"),
        }
    }
}

/// Below this much free space the agent's next writes may fail.
const LOW_SPACE: u64 = 64 << 20;
/// Below this, it is as good as full: the store's own threshold.
const NO_SPACE: u64 = crate::store::SqliteStore::NO_SPACE;

/// What `--state-dir` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StateDirCheck {
    pub path: PathBuf,
    /// Bytes and inodes an unprivileged writer may still use; `None` when
    /// the filesystem could not be asked.
    pub free_bytes: Option<u64>,
    pub free_inodes: Option<u64>,
    /// `corral.db` is missing or has zero bytes.
    pub database_blank: bool,
    /// Run directories that were used for a start.
    pub run_dirs: usize,
    pub findings: Vec<StateFinding>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StateFinding {
    pub severity: Severity,
    pub message: String,
}

impl StateDirCheck {
    pub fn of(dir: &std::path::Path) -> StateDirCheck {
        use crate::agent::recovery::{store_is_blank, used_run_dirs};
        let fs = nix::sys::statvfs::statvfs(dir).ok();
        let free_bytes =
            fs.as_ref().map(|s| s.blocks_available().saturating_mul(s.fragment_size()));
        let free_inodes = fs.as_ref().map(|s| s.files_available());
        let database_blank = store_is_blank(&dir.join(crate::store::SqliteStore::FILE_NAME));
        let run_dirs = used_run_dirs(&dir.join(crate::launch::plan::RUNS_DIR)).len();
        let findings = judge_state_dir(dir, free_bytes, free_inodes, database_blank, run_dirs);
        StateDirCheck {
            path: dir.to_owned(),
            free_bytes,
            free_inodes,
            database_blank,
            run_dirs,
            findings,
        }
    }

    pub fn usable(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Error)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "state directory {}:", self.path.display());
        let free = match (self.free_bytes, self.free_inodes) {
            (Some(b), Some(i)) => format!("{} and {i} inodes free", approx_bytes(b)),
            _ => "unknown".to_owned(),
        };
        let _ = writeln!(out, "  space           {free}");
        let db = if self.database_blank { "missing or empty" } else { "present" };
        let _ = writeln!(out, "  database        {db}");
        let _ = writeln!(out, "  run directories {}", self.run_dirs);
        for f in &self.findings {
            let tag = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            let _ = writeln!(out, "  {tag}: {}", f.message);
        }
        out
    }
}

/// `b` bytes for a reader, to one decimal in the largest binary unit that
/// fits (free space is never a round number).
fn approx_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The state directory's problems, from what was measured.
fn judge_state_dir(
    dir: &std::path::Path,
    free_bytes: Option<u64>,
    free_inodes: Option<u64>,
    database_blank: bool,
    run_dirs: usize,
) -> Vec<StateFinding> {
    let finding = |severity, message: String| StateFinding { severity, message };
    let mut findings = Vec::new();
    let dir = dir.display();
    match free_bytes {
        Some(b) if b < NO_SPACE || free_inodes == Some(0) => findings.push(finding(
            Severity::Error,
            format!(
                "the filesystem of {dir} is full ({} free): the agent cannot record \
                 anything and takes no new work; free space there",
                approx_bytes(b)
            ),
        )),
        Some(b) if b < LOW_SPACE => findings.push(finding(
            Severity::Warning,
            format!(
                "the filesystem of {dir} has {} free: the state database and run logs may \
                 soon fill it",
                approx_bytes(b)
            ),
        )),
        Some(_) => {}
        None => findings.push(finding(
            Severity::Warning,
            format!("cannot tell how much space is free on the filesystem of {dir}"),
        )),
    }
    if database_blank && run_dirs > 0 {
        findings.push(finding(
            Severity::Error,
            format!(
                "the state database is missing or empty but {run_dirs} run directories show \
                 an earlier agent: the agent will not start; see \"Lost state database\" \
                 in docs/agent.md"
            ),
        ));
    }
    findings
}

/// Whether this process has `CAP_SYS_RESOURCE` in its effective set.
fn cap_sys_resource() -> Option<bool> {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << CAP_SYS_RESOURCE) != 0)
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The human-readable report.
pub fn render(report: &Inspection) -> String {
    let mut out = String::new();
    let layout = &report.layout;
    let kind = match layout.kind {
        LayoutKind::V1 => "v1 (one hierarchy per controller)",
        LayoutKind::V2 => "v2 (unified)",
        LayoutKind::Hybrid => "hybrid (v1 controllers + v2 tree)",
    };
    let _ = writeln!(out, "layout: {kind}");
    let _ = writeln!(out, "hierarchies:");
    for h in &layout.v1 {
        let own = h.own_cgroup.as_deref().unwrap_or("?");
        let _ =
            writeln!(out, "  v1 {:<16} {}  (own cgroup {own})", h.label(), h.mount_point.display());
    }
    if let Some(u) = &layout.unified {
        let controllers: Vec<&str> = u.controllers.iter().map(|c| c.name()).collect();
        let controllers = if controllers.is_empty() {
            "no controllers".to_owned()
        } else {
            controllers.join(" ")
        };
        let own = u.own_cgroup.as_deref().unwrap_or("?");
        let _ = writeln!(
            out,
            "  v2 {:<16} {}  (own cgroup {own})",
            format!("[{controllers}]"),
            u.mount_point.display()
        );
    }
    let _ = writeln!(out, "controllers for jobs under {}:", report.parent);
    for c in &report.controllers {
        let state = match (c.via, &c.mount_point) {
            (Some(via), Some(mount)) => format!("ok  {via} {}", mount.display()),
            (Some(via), None) => format!("ok  {via}"),
            _ if c.required => "MISSING".to_owned(),
            _ => "missing".to_owned(),
        };
        let _ = writeln!(out, "  {:<8} {state}", c.controller.name());
    }
    let m = &report.mechanisms;
    let _ = writeln!(out, "mechanisms:");
    let freeze = match m.freezer {
        FreezerKind::V2 => "cgroup.freeze (v2), completion notified by the kernel",
        FreezerKind::V1 => "freezer.state (v1), completion re-read",
        FreezerKind::None => "none",
    };
    let kill = match m.kill {
        KillKind::CgroupKill => "cgroup.kill",
        KillKind::FreezeAndSignal => "freeze, SIGKILL every process, thaw (v1)",
        KillKind::Signal => "SIGKILL every process until empty",
    };
    let _ = writeln!(out, "  freeze          {freeze}");
    let _ = writeln!(out, "  kill            {kill}");
    let _ = writeln!(out, "  empty events    {}", yes(m.populated_events));
    let _ = writeln!(out, "  pressure (PSI)  {}", yes(m.pressure));
    let _ = writeln!(out, "  pause at limit  {}", yes(m.pause_at_limit));
    let swap = match m.swap_limits {
        Some(b) => yes(b),
        None => "unknown",
    };
    let _ = writeln!(out, "  swap limits     {swap}");
    let _ = writeln!(out, "findings:");
    if report.findings.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for f in &report.findings {
        let tag = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let _ = writeln!(out, "  {tag}: {}", f.message);
    }
    let _ = writeln!(
        out,
        "{}",
        if report.usable() { "corral can run here" } else { "corral cannot run here" }
    );
    out
}

#[cfg(test)]
mod state_dir_tests {
    use super::*;
    use std::path::Path;

    fn severities(findings: &[StateFinding]) -> Vec<Severity> {
        findings.iter().map(|f| f.severity).collect()
    }

    #[test]
    fn judges_space_and_a_lost_database() {
        let dir = Path::new("/var/lib/corral");
        let plenty = Some(1 << 30);
        assert!(judge_state_dir(dir, plenty, Some(1000), false, 3).is_empty());
        assert!(judge_state_dir(dir, plenty, Some(1000), true, 0).is_empty(), "a new machine");
        let full = judge_state_dir(dir, Some(4096), Some(1000), false, 0);
        assert_eq!(severities(&full), [Severity::Error]);
        let expected = "/var/lib/corral is full (4.0 KiB free)";
        assert!(full[0].message.contains(expected), "{full:?}");
        assert_eq!(approx_bytes(1023), "1023 B");
        assert_eq!(approx_bytes(3 << 30), "3.0 GiB");
        let no_inodes = judge_state_dir(dir, plenty, Some(0), false, 0);
        assert_eq!(severities(&no_inodes), [Severity::Error]);
        assert_eq!(
            severities(&judge_state_dir(dir, Some(10 << 20), Some(9), false, 0)),
            [Severity::Warning]
        );
        let lost = judge_state_dir(dir, plenty, Some(9), true, 2);
        assert_eq!(severities(&lost), [Severity::Error]);
        assert!(lost[0].message.contains("2 run directories"), "{lost:?}");
    }

    #[test]
    fn checks_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("runs/etl-1/1700000000000");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("config.json"), "{}").unwrap();
        let check = StateDirCheck::of(dir.path());
        assert!(check.database_blank);
        assert_eq!(check.run_dirs, 1);
        assert!(check.free_bytes.is_some());
        assert!(!check.usable());
        assert!(check.render().contains("database        missing or empty"), "{}", check.render());
    }
}
