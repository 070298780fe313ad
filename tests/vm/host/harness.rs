//! What both qemu suites (the VM suite and the systemd guest) share on the
//! host: libtest's command line, finding programs, and why a suite cannot
//! run here.

use std::path::{Path, PathBuf};

use super::qemu::Accel;

/// Command-line options, libtest's where they make sense.
#[derive(Debug, Default)]
pub struct Options {
    pub filters: Vec<String>,
    pub skips: Vec<String>,
    pub exact: bool,
    pub list: bool,
    /// `--ignored`: only ignored tests, of which this suite has none.
    pub ignored_only: bool,
    pub accel: Option<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = || inline.clone().or_else(|| it.next().cloned());
            match flag {
                "--list" => o.list = true,
                "--exact" => o.exact = true,
                "--ignored" => o.ignored_only = true,
                "--accel" => o.accel = Some(value().ok_or("--accel needs tcg or kvm")?),
                "--skip" => o.skips.push(value().ok_or("--skip needs a value")?),
                // libtest options that take a value and mean nothing here.
                "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                    let _ = value();
                }
                f if f.starts_with('-') => {} // --nocapture, --quiet, --include-ignored, ...
                _ => o.filters.push(arg.clone()),
            }
        }
        Ok(o)
    }

    /// The accelerator asked for (`--accel`, else `CORRAL_VM_ACCEL`, else
    /// tcg), refused when the host cannot give it.
    pub fn accelerator(&self) -> Result<Accel, Missing> {
        let name = self
            .accel
            .clone()
            .or_else(|| std::env::var("CORRAL_VM_ACCEL").ok())
            .unwrap_or_else(|| "tcg".to_owned());
        let accel = Accel::parse(&name).ok_or_else(|| {
            Missing::Misconfigured(format!("accelerator {name:?}: use tcg or kvm"))
        })?;
        if accel == Accel::Kvm && !Path::new("/dev/kvm").exists() {
            return Err(Missing::Misconfigured("kvm asked for, but there is no /dev/kvm".into()));
        }
        Ok(accel)
    }

    pub fn selects(&self, name: &str) -> bool {
        if self.ignored_only {
            return false;
        }
        let matches = |f: &String| if self.exact { name == f } else { name.contains(f.as_str()) };
        (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skips.iter().any(matches)
    }
}

pub fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Why the suite cannot run here, split into what a developer may lack
/// (skippable outside CI) and what is simply wrong.
pub enum Missing {
    Prerequisite(String),
    Misconfigured(String),
}
