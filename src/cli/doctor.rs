//! `corral doctor`: is this host's cgroup setup good enough for corral?
//!
//! Exits 0 when everything corral needs is there, 1 when something is
//! missing, and prints what was found either way.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::cgroup::inspect::{inspect, InspectOptions, Inspection, Severity};
use crate::cgroup::{detect, Anchor, CgroupPath, FreezerKind, HostPaths, KillKind, LayoutKind};

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
    /// Where the parent is rooted.
    #[arg(long, value_enum, default_value_t = AnchorArg::Root)]
    pub anchor: AnchorArg,
    /// On a hybrid host, do not use the v2 tree.
    #[arg(long)]
    pub no_unified: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let paths = HostPaths {
        mountinfo: args.mountinfo.clone(),
        self_cgroup: args.self_cgroup.clone(),
        cgroup_root: args.cgroup_root.clone(),
    };
    let layout = detect(&paths).context("cannot detect the cgroup layout")?;
    let options = InspectOptions {
        parent: CgroupPath::new(&args.parent).context("invalid --parent")?,
        anchor: match args.anchor {
            AnchorArg::Root => Anchor::HierarchyRoot,
            AnchorArg::Own => Anchor::OwnCgroup,
        },
        use_unified: !args.no_unified,
        kernel_release: std::fs::read_to_string(&args.osrelease).ok(),
        cap_sys_resource: cap_sys_resource(),
    };
    let report = inspect(&layout, &options);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.usable() { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
