//! A campaign's result: the numbers (programs, programs/min, restarts), every finding in the
//! corpus with hit counts and reproduction rates, as terminal text and as markdown.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::corpus::Triage;
use super::inputs::Loaded;
use super::interest::Kind;
use crate::coverage::Coverage;

/// What the campaign covered and what the feedback loop did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CoverageSummary {
    /// `false`: a blind campaign (`--blind`).
    pub feedback: bool,
    /// FSM jump-table cells (state, event) this campaign's programs showed, of the map's
    /// cells with a handler (`None`: no map knew the kernel).
    pub fsm_cells: u64,
    pub fsm_reachable: Option<u64>,
    /// FSM points: cells with their outcome, and untraced moves.
    pub fsm_points: u64,
    /// KCOV PCs (a `cover` kernel), and the source lines they reach.
    pub pcs: u64,
    pub pc_lines: Option<SourceLines>,
    /// Inputs in the corpus at the end, what loading found, and what they cover together.
    pub inputs: u64,
    pub loaded: Loaded,
    pub corpus_points: usize,
    pub corpus_cells: usize,
    pub fresh: u64,
    pub mutants: u64,
    /// Mutants refused before a VM (invalid or unsound), and parents that gave none.
    pub rejected_mutants: u64,
    pub no_mutant: u64,
    /// Points beyond the corpus that programs showed, and of those, a re-run showed again.
    pub new_points: u64,
    pub confirmed_points: u64,
    /// Programs with new points left unconfirmed (the minimisation share was spent), and
    /// confirmed ones not kept because they were not sound.
    pub unconfirmed: u64,
    pub unsound: u64,
    pub kept_fresh: u64,
    pub kept_mutants: u64,
    pub minimise_ms: u64,
    /// Every point the campaign's programs showed (`points.json` beside `summary.json`:
    /// with KCOV it is large, and the summary stays readable).
    #[serde(skip)]
    pub seen: Coverage,
}

impl CoverageSummary {
    /// `fsm cells 17/30, 25 points` (and PCs when there are any): the progress line's and
    /// the summary's coverage.
    pub fn line(&self) -> String {
        line(
            self.fsm_cells,
            self.fsm_reachable,
            self.fsm_points,
            self.pcs,
            self.pc_lines,
        )
    }
}

/// Instrumented source lines the campaign's KCOV PCs reached: of vfio-ccw's own files
/// (`drivers/s390/cio/vfio_ccw_*.c`) and of the whole of `drivers/s390/cio/`. A total is
/// `None` when only the covered lines are known (the kernel's PC scope could not be read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SourceLines {
    pub vfio_ccw: u64,
    pub vfio_ccw_total: Option<u64>,
    pub cio: Option<(u64, u64)>,
    /// Lines of `drivers/s390/cio/vfio_ccw_*.c` GCOV saw executed (boot and programs, any
    /// context) of those with code, as `gcov` counts both: on a kernel with GCOV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcov: Option<(u64, u64)>,
}

/// The coverage part of a progress or summary line.
pub fn line(
    cells: u64,
    reachable: Option<u64>,
    points: u64,
    pcs: u64,
    pc_lines: Option<SourceLines>,
) -> String {
    let of = reachable.map(|r| format!("/{r}")).unwrap_or_default();
    let mut s = format!("fsm cells {cells}{of}, {points} fsm points");
    if pcs > 0 {
        s += &format!(", {pcs} kcov pcs");
        if let Some(l) = pc_lines {
            let total = l
                .vfio_ccw_total
                .map(|t| format!("/{t}"))
                .unwrap_or_default();
            s += &format!(" ({}{total} lines of vfio_ccw_*.c", l.vfio_ccw);
            if let Some((c, t)) = l.cio {
                s += &format!(", {c}/{t} of cio");
            }
            s += ")";
            if let Some((e, t)) = l.gcov {
                s += &format!(", gcov {e}/{t} lines of vfio_ccw_*.c");
            }
        }
    }
    s
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingSummary {
    pub key: String,
    pub title: String,
    pub kind: Kind,
    /// Over the corpus's lifetime (earlier runs included).
    pub hits: u64,
    /// Not in the corpus when this run started.
    pub new: bool,
    /// Time from the campaign's start to its first hit, when this run found it.
    pub found_after: Option<Duration>,
    pub triage: Option<Triage>,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub jobs: usize,
    pub elapsed: Duration,
    pub programs: u64,
    /// Sum of the programs' own wall times.
    pub program_ms: u64,
    /// Of which steps ran (from the first step sent to the last answer).
    pub steps_ms: u64,
    /// Worker time spent reproducing and shrinking instead of fuzzing.
    pub triage_ms: u64,
    pub restarts: u64,
    /// Counted hits in this run (all keys).
    pub hits: u64,
    pub errors: Vec<String>,
    pub findings: Vec<FindingSummary>,
    pub corpus: PathBuf,
    pub coverage: CoverageSummary,
}

impl Summary {
    pub fn programs_per_min(&self) -> f64 {
        let m = self.elapsed.as_secs_f64() / 60.0;
        if m > 0.0 {
            self.programs as f64 / m
        } else {
            0.0
        }
    }

    /// Programs per minute per VM over the time the VMs were fuzzing (triage excluded).
    pub fn fuzzing_rate_per_vm(&self) -> f64 {
        let vm_ms = self.elapsed.as_millis() as f64 * self.jobs as f64 - self.triage_ms as f64;
        if vm_ms > 0.0 {
            self.programs as f64 / (vm_ms / 60_000.0)
        } else {
            0.0
        }
    }

    pub fn mean_program_ms(&self) -> u64 {
        self.program_ms.checked_div(self.programs).unwrap_or(0)
    }

    pub fn new_findings(&self) -> impl Iterator<Item = &FindingSummary> {
        self.findings.iter().filter(|f| f.new)
    }

    fn rates(f: &FindingSummary) -> String {
        match &f.triage {
            None => "not triaged".into(),
            Some(t) => match (t.repro, t.repro_size, &t.history) {
                (_, _, Some(h)) => match (h.repro_programs, h.repro) {
                    (Some(n), Some(r)) => format!(
                        "original {} alone; its VM's history of {} programs {}; shrunk to {} \
                         program(s), reproduced {}",
                        t.original, h.programs, h.rate, n, r
                    ),
                    _ => format!(
                        "original {} alone; its VM's history of {} programs {}; no repro",
                        t.original, h.programs, h.rate
                    ),
                },
                (Some(r), Some(n), None) => format!(
                    "original {} ({} ops); repro {} ops, reproduced {}",
                    t.original, t.original_size, n, r
                ),
                _ => format!(
                    "original reproduced {} ({} ops); no repro",
                    t.original, t.original_size
                ),
            },
        }
    }

    /// Plain text for the terminal.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} programs in {:.0} s with {} VM(s): {:.1} programs/min ({:.1} per VM), mean program {} ms (steps {} ms), {} VM restarts, {} harness errors",
            self.programs,
            self.elapsed.as_secs_f64(),
            self.jobs,
            self.programs_per_min(),
            self.programs_per_min() / self.jobs as f64,
            self.mean_program_ms(),
            self.steps_ms.checked_div(self.programs).unwrap_or(0),
            self.restarts,
            self.errors.len()
        );
        let _ = writeln!(
            s,
            "fuzzing (triage excluded): {:.1} programs/min per VM; triage took {:.0} s of VM time",
            self.fuzzing_rate_per_vm(),
            self.triage_ms as f64 / 1000.0
        );
        let c = &self.coverage;
        let _ = writeln!(s, "coverage: {}", c.line());
        match c.feedback {
            true => {
                let _ = writeln!(
                    s,
                    "feedback: {} fresh programs, {} mutants ({} mutants rejected before a VM); {} new points, {} confirmed by a re-run; kept {} inputs ({} fresh, {} mutants), {} left unconfirmed, {} unsound not kept; minimising took {:.0} s",
                    c.fresh,
                    c.mutants,
                    c.rejected_mutants,
                    c.new_points,
                    c.confirmed_points,
                    c.kept_fresh + c.kept_mutants,
                    c.kept_fresh,
                    c.kept_mutants,
                    c.unconfirmed,
                    c.unsound,
                    c.minimise_ms as f64 / 1000.0
                );
                let _ = writeln!(
                    s,
                    "inputs: {} in {}/inputs ({} loaded, {} redundant dropped, {} unreadable), covering {} fsm cells, {} points",
                    c.inputs,
                    self.corpus.display(),
                    c.loaded.read,
                    c.loaded.redundant,
                    c.loaded.unreadable,
                    c.corpus_cells,
                    c.corpus_points
                );
            }
            false => {
                let _ = writeln!(s, "feedback: off (--blind), every program generated fresh");
            }
        }
        let _ = writeln!(
            s,
            "{} distinct findings ({} new) in {}",
            self.findings.len(),
            self.new_findings().count(),
            self.corpus.display()
        );
        for f in &self.findings {
            let found = f
                .found_after
                .map(|d| format!(", found after {:.0} s", d.as_secs_f64()))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} {}  [{} hits{}]",
                if f.new { "NEW" } else { "   " },
                f.title,
                f.hits,
                found
            );
            let _ = writeln!(s, "      {}", Self::rates(f));
            let _ = writeln!(s, "      {}", f.dir.display());
        }
        for e in self.errors.iter().take(5) {
            let _ = writeln!(s, "  harness error: {e}");
        }
        s
    }

    /// The nightly job's report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# ccwrig nightly fuzz\n");
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| campaign seed | {} |", self.seed);
        let _ = writeln!(s, "| duration | {:.0} s |", self.elapsed.as_secs_f64());
        let _ = writeln!(s, "| VMs | {} |", self.jobs);
        let _ = writeln!(s, "| programs | {} |", self.programs);
        let _ = writeln!(
            s,
            "| programs/min | {:.1} ({:.1} per VM) |",
            self.programs_per_min(),
            self.programs_per_min() / self.jobs as f64
        );
        let _ = writeln!(
            s,
            "| programs/min per VM, triage excluded | {:.1} |",
            self.fuzzing_rate_per_vm()
        );
        let _ = writeln!(
            s,
            "| triage (VM time) | {:.0} s |",
            self.triage_ms as f64 / 1000.0
        );
        let _ = writeln!(s, "| mean program | {} ms |", self.mean_program_ms());
        let _ = writeln!(s, "| VM restarts | {} |", self.restarts);
        let _ = writeln!(s, "| harness errors | {} |", self.errors.len());
        let _ = writeln!(s, "| coverage | {} |", self.coverage.line());
        let _ = writeln!(
            s,
            "| feedback | {} |",
            match self.coverage.feedback {
                true => format!(
                    "{} inputs ({} kept this run), {} mutants, {} fresh",
                    self.coverage.inputs,
                    self.coverage.kept_fresh + self.coverage.kept_mutants,
                    self.coverage.mutants,
                    self.coverage.fresh
                ),
                false => "off (blind)".to_string(),
            }
        );
        let _ = writeln!(
            s,
            "| findings | {} ({} new) |\n",
            self.findings.len(),
            self.new_findings().count()
        );
        if !self.findings.is_empty() {
            let _ = writeln!(s, "| | title | kind | hits | found after | reproduction | directory |\n|---|---|---|---|---|---|---|");
            for f in &self.findings {
                let _ = writeln!(
                    s,
                    "| {} | `{}` | {} | {} | {} | {} | `{}` |",
                    if f.new { "**NEW**" } else { "" },
                    f.title.replace('|', "\\|"),
                    f.kind.name(),
                    f.hits,
                    f.found_after
                        .map(|d| format!("{:.0} s", d.as_secs_f64()))
                        .unwrap_or_else(|| "-".into()),
                    Self::rates(f),
                    f.dir.display()
                );
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "\n## Harness errors\n");
            for e in &self.errors {
                let _ = writeln!(s, "- {e}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::corpus::Rate;

    #[test]
    fn coverage_line_names_kcov_lines_only_when_known() {
        let known = SourceLines {
            vfio_ccw: 260,
            vfio_ccw_total: None,
            cio: None,
            gcov: None,
        };
        let with = line(12, Some(30), 14, 9000, Some(known));
        assert_eq!(
            with,
            "fsm cells 12/30, 14 fsm points, 9000 kcov pcs (260 lines of vfio_ccw_*.c)"
        );
        let live = SourceLines {
            vfio_ccw: 260,
            vfio_ccw_total: Some(399),
            cio: Some((1200, 4000)),
            gcov: None,
        };
        assert_eq!(
            line(12, Some(30), 14, 900, Some(live)),
            "fsm cells 12/30, 14 fsm points, 900 kcov pcs (260/399 lines of vfio_ccw_*.c, 1200/4000 of cio)"
        );
        let gcov = SourceLines {
            gcov: Some((500, 600)),
            ..live
        };
        assert!(line(12, Some(30), 14, 900, Some(gcov))
            .ends_with("of cio), gcov 500/600 lines of vfio_ccw_*.c"));
        assert_eq!(line(12, None, 14, 0, None), "fsm cells 12, 14 fsm points");
        assert!(!line(1, Some(30), 1, 5, None).contains("lines"));
    }

    #[test]
    fn markdown_lists_new_findings_with_rates() {
        let s = Summary {
            seed: 20261123,
            jobs: 2,
            elapsed: Duration::from_secs(120),
            programs: 80,
            program_ms: 80 * 1500,
            steps_ms: 80 * 700,
            triage_ms: 120_000,
            restarts: 3,
            hits: 7,
            errors: vec![],
            findings: vec![FindingSummary {
                key: "crash: x".into(),
                title: "Oops | in f".into(),
                kind: Kind::Crash,
                hits: 7,
                new: true,
                found_after: Some(Duration::from_secs(42)),
                triage: Some(Triage {
                    original: Rate {
                        hits: 10,
                        tries: 10,
                    },
                    repro: Some(Rate { hits: 9, tries: 10 }),
                    original_size: 14,
                    repro_size: Some(4),
                    history: None,
                    shrink_tests: 30,
                    shrink_ms: 60000,
                }),
                dir: "c/crashes/crash-x".into(),
            }],
            corpus: "c".into(),
            coverage: CoverageSummary {
                feedback: true,
                fsm_cells: 17,
                fsm_reachable: Some(30),
                fsm_points: 25,
                inputs: 4,
                ..CoverageSummary::default()
            },
        };
        let md = s.markdown();
        for want in [
            "| programs/min | 40.0 (20.0 per VM) |",
            "**NEW**",
            "Oops \\| in f",
            "reproduced 9/10",
            "42 s",
            "| findings | 1 (1 new) |",
            "| programs/min per VM, triage excluded | 40.0 |",
            "| coverage | fsm cells 17/30, 25 fsm points |",
        ] {
            assert!(md.contains(want), "{want} missing in\n{md}");
        }
        assert_eq!(s.mean_program_ms(), 1500);
    }
}
