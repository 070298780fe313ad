//! The mount table (`/proc/self/mountinfo`) and `/proc/self/cgroup` parsers, and the
//! layout built from what they return.
//!
//! Input: `mountinfo NUL self-cgroup NUL cgroup.controllers NUL cgroup`, any part
//! possibly missing.
//!
//! Beyond not panicking on any text: every mount parsed, written back the way the kernel
//! writes the mount table, parses to the same mount point and root; every
//! `/proc/self/cgroup` entry, written back, parses to itself; in a layout each
//! controller is in one v1 hierarchy at most; and a cgroup's directory is always under
//! its hierarchy's mount point.

#![no_main]

use std::path::Path;

use corral::cgroup::layout::{parse_mountinfo, parse_self_cgroup, Layout, MountKind};
use corral::cgroup::LayoutKind;
use libfuzzer_sys::fuzz_target;

/// How the kernel writes a path into the mount table (`show_mountinfo`, `mangle`):
/// space, tab, newline and backslash as three octal digits, everything else as is.
fn escape(path: &str) -> String {
    let mut out = String::new();
    for ch in path.chars() {
        match ch {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", ch as u32)),
            _ => out.push(ch),
        }
    }
    out
}

fn check_layout(layout: &Layout) {
    let kind = match (layout.v1.is_empty(), layout.unified.is_some()) {
        (true, true) => LayoutKind::V2,
        (false, false) => LayoutKind::V1,
        (false, true) => LayoutKind::Hybrid,
        (true, false) => panic!("a layout with no hierarchy: {layout:?}"),
    };
    assert_eq!(layout.kind, kind);
    for (i, a) in layout.v1.iter().enumerate() {
        assert!(!a.controllers.is_empty(), "a v1 hierarchy without controllers");
        for b in &layout.v1[i + 1..] {
            assert!(
                !a.controllers.iter().any(|c| b.controllers.contains(c)),
                "a controller in two hierarchies: {layout:?}"
            );
        }
    }
}

fn check_dir(mount_point: &Path, dir: &Path) {
    assert!(dir.starts_with(mount_point), "{dir:?} is not under {mount_point:?}");
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let mut parts = text.split('\0');
    let mountinfo = parts.next().unwrap_or_default();
    let self_cgroup = parts.next().unwrap_or_default();
    let unified_controllers = parts.next().unwrap_or_default();
    let cgroup = parts.next().unwrap_or("/");

    let own = parse_self_cgroup(self_cgroup);
    // The kernel writes cgroup paths unescaped, one per line: only a path with a line
    // break could not come back.
    let mut written = String::new();
    for (list, path) in &own.v1 {
        written.push_str(&format!("1:{}:{path}\n", list.join(",")));
    }
    if let Some(path) = &own.unified {
        written.push_str(&format!("0::{path}\n"));
    }
    assert_eq!(parse_self_cgroup(&written), own, "{written:?}");

    let Ok(mounts) = parse_mountinfo(mountinfo) else { return };
    for mount in &mounts {
        let (fstype, options) = match &mount.kind {
            MountKind::V2 => ("cgroup2", "rw".to_owned()),
            MountKind::V1 { controllers, name } => {
                let mut options = vec!["rw".to_owned()];
                options.extend(controllers.iter().map(|c| c.name().to_owned()));
                options.extend(name.iter().map(|n| format!("name={n}")));
                ("cgroup", options.join(","))
            }
        };
        let mount_point = mount.mount_point.to_str().expect("parsed from text");
        let line = format!(
            "36 25 0:31 {} {} rw,nosuid shared:9 - {fstype} cgroup {options}\n",
            escape(&mount.root),
            escape(mount_point)
        );
        let again = parse_mountinfo(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(again.len(), 1, "{line:?}");
        assert_eq!(again[0].mount_point, mount.mount_point, "{line:?}");
        assert_eq!(again[0].root, mount.root, "{line:?}");
    }

    if let Some(layout) = Layout::from_parts(&mounts, &own, unified_controllers) {
        check_layout(&layout);
        for h in &layout.v1 {
            if let Ok(dir) = h.dir_of(cgroup) {
                check_dir(&h.mount_point, &dir);
            }
        }
        if let Some(u) = &layout.unified {
            if let Ok(dir) = u.dir_of(cgroup) {
                check_dir(&u.mount_point, &dir);
            }
        }
    }
});
