//! The one table the node benchmark prints: each row is one measure of
//! corral, beside a peer's or the floor's figure from the same run, the
//! ratio of the two, and the goal it is held to.

use std::fmt;

/// A measured value and its unit ("MiB", "ms", "s", "jobs/s", ...).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub value: f64,
    pub unit: &'static str,
}

impl Figure {
    pub fn new(value: f64, unit: &'static str) -> Figure {
        Figure { value, unit }
    }
    pub fn mib(bytes: f64) -> Figure {
        Figure::new(bytes / (1024.0 * 1024.0), "MiB")
    }
    pub fn ms(duration: std::time::Duration) -> Figure {
        Figure::new(duration.as_secs_f64() * 1e3, "ms")
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        let digits = if v == 0.0 || v.abs() >= 100.0 {
            0
        } else if v.abs() >= 10.0 {
            1
        } else if v.abs() >= 0.1 {
            2
        } else {
            3
        };
        if self.unit.is_empty() {
            write!(f, "{v:.digits$}")
        } else {
            write!(f, "{v:.digits$} {}", self.unit)
        }
    }
}

/// What corral's figure is compared with.
#[derive(Debug, Clone)]
pub enum Reference {
    /// A peer or the floor, measured in the same run: `name` says which
    /// ("crun run", "conmon", "write+poll floor").
    Measured { name: String, figure: Figure },
    /// The peer could not be measured here, and why (not installed, failed
    /// to start, ...).
    Missing { name: String, why: String },
    /// The row stands alone (an absolute goal).
    None,
}

/// The goal a row is held to.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    AtMost(Figure),
    AtLeast(Figure),
    /// corral's figure divided by the reference's.
    RatioAtMost(f64),
    /// Shown for context; no goal.
    Info,
}

#[derive(Debug, Clone)]
pub struct Row {
    /// "footprint", "launch", "throughput", ...
    pub section: &'static str,
    pub what: String,
    /// The figure, or why corral's side could not be measured.
    pub corral: Result<Figure, String>,
    pub reference: Reference,
    pub goal: Goal,
    /// When the goal is missed: what dominates the cost and what would fix
    /// it. Printed under the table.
    pub when_missed: Option<String>,
}

impl Row {
    pub fn new(
        section: &'static str,
        what: impl Into<String>,
        corral: Result<Figure, String>,
    ) -> Row {
        Row {
            section,
            what: what.into(),
            corral,
            reference: Reference::None,
            goal: Goal::Info,
            when_missed: None,
        }
    }
    pub fn against(mut self, name: impl Into<String>, figure: Result<Figure, String>) -> Row {
        let name = name.into();
        self.reference = match figure {
            Ok(figure) => Reference::Measured { name, figure },
            Err(why) => Reference::Missing { name, why },
        };
        self
    }
    pub fn goal(mut self, goal: Goal) -> Row {
        self.goal = goal;
        self
    }
    pub fn when_missed(mut self, why: impl Into<String>) -> Row {
        self.when_missed = Some(why.into());
        self
    }

    /// corral's figure over the reference's, when both were measured.
    pub fn ratio(&self) -> Option<f64> {
        match (&self.corral, &self.reference) {
            (Ok(corral), Reference::Measured { figure, .. }) if figure.value != 0.0 => {
                Some(corral.value / figure.value)
            }
            _ => None,
        }
    }

    /// `Some(true)` met, `Some(false)` missed, `None` no goal or nothing to
    /// judge by.
    pub fn met(&self) -> Option<bool> {
        let corral = self.corral.as_ref().ok()?;
        match self.goal {
            Goal::AtMost(limit) => Some(corral.value <= limit.value),
            Goal::AtLeast(floor) => Some(corral.value >= floor.value),
            Goal::RatioAtMost(limit) => self.ratio().map(|r| r <= limit),
            Goal::Info => None,
        }
    }
}

fn goal_text(goal: Goal) -> String {
    match goal {
        Goal::AtMost(f) => format!("≤ {f}"),
        Goal::AtLeast(f) => format!("≥ {f}"),
        Goal::RatioAtMost(r) => format!("≤ {r}×"),
        Goal::Info => String::new(),
    }
}

/// The table as Markdown with aligned columns: readable in a terminal and
/// ready for the README.
pub fn render(rows: &[Row]) -> String {
    let header = ["", "Measure", "corral", "Compared with", "Ratio", "Goal", "Met"];
    let mut cells: Vec<[String; 7]> = Vec::new();
    for row in rows {
        let corral = match &row.corral {
            Ok(f) => f.to_string(),
            Err(why) => format!("not measured: {why}"),
        };
        let reference = match &row.reference {
            Reference::Measured { name, figure } => format!("{name}: {figure}"),
            Reference::Missing { name, why } => format!("{name}: missing ({why})"),
            Reference::None => String::new(),
        };
        let ratio = row.ratio().map(|r| format!("{r:.2}×")).unwrap_or_default();
        let met = match row.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        cells.push([
            row.section.to_owned(),
            row.what.clone(),
            corral,
            reference,
            ratio,
            goal_text(row.goal),
            met.to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cols: &[String]| {
        let padded: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&header.map(str::to_owned));
    out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for row in &cells {
        out += &line(row);
    }
    let missed: Vec<&Row> = rows.iter().filter(|r| r.met() == Some(false)).collect();
    if !missed.is_empty() {
        out += "\nGoals missed, and what dominates the cost:\n";
        let mut told: Vec<&str> = Vec::new();
        for row in missed {
            let why = row.when_missed.as_deref().unwrap_or("(not analysed)");
            // Rows of one measure against several peers share their reason.
            if told.contains(&why) {
                continue;
            }
            told.push(why);
            out += &format!("- {}: {why}\n", row.what);
        }
    }
    out
}
