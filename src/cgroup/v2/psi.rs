//! Pressure stall information: `cpu.pressure`, `memory.pressure`,
//! `io.pressure`, and PSI triggers.
//!
//! A trigger is written to an open pressure file (`some 150000 1000000`: wake
//! me when tasks stalled for 150 ms within any 1 s window) and the file then
//! polls `POLLPRI` each time the threshold is crossed, at most once per
//! window. The kernel accepts windows of 500 ms to 10 s from openers with
//! `CAP_SYS_RESOURCE`; others may only use windows that are a multiple of
//! 2 s. PSI works in every v2 cgroup, with or without controllers.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub const CPU: &str = "cpu.pressure";
pub const MEMORY: &str = "memory.pressure";
pub const IO: &str = "io.pressure";

/// One line of a pressure file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PsiLine {
    /// Percent of time stalled, averaged over 10 s, 60 s and 300 s.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time in microseconds.
    pub total_us: u64,
}

/// A pressure file: `some` tasks stalled, and (not for CPU at the system
/// level) `full`: all non-idle tasks stalled at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pressure {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

pub fn parse(text: &str) -> Option<Pressure> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let kind = fields.next();
        let mut out = PsiLine::default();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else { continue };
            match key {
                "avg10" => out.avg10 = value.parse().ok()?,
                "avg60" => out.avg60 = value.parse().ok()?,
                "avg300" => out.avg300 = value.parse().ok()?,
                "total" => out.total_us = value.parse().ok()?,
                _ => {}
            }
        }
        match kind {
            Some("some") => some = Some(out),
            Some("full") => full = Some(out),
            _ => {}
        }
    }
    Some(Pressure { some: some?, full })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StallKind {
    /// At least one task stalled.
    Some,
    /// All non-idle tasks stalled at once.
    Full,
}

/// A PSI trigger: fire when tasks stall for `stall` within a `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PsiTrigger {
    pub kind: StallKind,
    pub stall: Duration,
    pub window: Duration,
}

impl PsiTrigger {
    /// Some task stalled on memory for 150 ms in a 1 s window.
    pub const DEFAULT_MEMORY: PsiTrigger = PsiTrigger {
        kind: StallKind::Some,
        stall: Duration::from_millis(150),
        window: Duration::from_secs(1),
    };

    /// The same stall ratio over the shortest window an opener without
    /// `CAP_SYS_RESOURCE` may use (a multiple of 2 s), or `None` if this
    /// trigger already is one.
    pub fn unprivileged_equivalent(self) -> Option<PsiTrigger> {
        const STEP: u128 = 2_000_000;
        let window = self.window.as_micros();
        if window.is_multiple_of(STEP) {
            return None;
        }
        let rounded = window.div_ceil(STEP) * STEP;
        let stall = self.stall.as_micros() * rounded / window.max(1);
        Some(PsiTrigger {
            kind: self.kind,
            stall: Duration::from_micros(u64::try_from(stall).ok()?),
            window: Duration::from_micros(u64::try_from(rounded).ok()?),
        })
    }
}

impl fmt::Display for PsiTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            StallKind::Some => "some",
            StallKind::Full => "full",
        };
        write!(f, "{kind} {} {}", self.stall.as_micros(), self.window.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pressure_files() {
        let p = parse(include_str!("../../../tests/fixtures/cgroup/v2/memory.pressure")).unwrap();
        assert_eq!(p.some.avg10, 0.22);
        assert_eq!(p.some.avg300, 1.11);
        assert_eq!(p.some.total_us, 58_761_459);
        assert_eq!(p.full.unwrap().total_us, 35_713_012);
        let cpu = parse("some avg10=5.04 avg60=4.80 avg300=3.04 total=21737968\n").unwrap();
        assert_eq!(cpu.full, None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("some avg10=x avg60=0 avg300=0 total=0\n"), None);
    }

    #[test]
    fn trigger_text_and_unprivileged_rounding() {
        assert_eq!(PsiTrigger::DEFAULT_MEMORY.to_string(), "some 150000 1000000");
        let rounded = PsiTrigger::DEFAULT_MEMORY.unprivileged_equivalent().unwrap();
        assert_eq!(rounded.to_string(), "some 300000 2000000");
        assert_eq!(rounded.unprivileged_equivalent(), None);
        let odd = PsiTrigger {
            kind: StallKind::Full,
            stall: Duration::from_millis(500),
            window: Duration::from_millis(2500),
        };
        assert_eq!(odd.unprivileged_equivalent().unwrap().to_string(), "full 800000 4000000");
    }
}
