//! `ccwrig bench fuzz`: two ways of fuzzing with the same campaign seed side by side (one VM
//! each, at the same time, so that the host's drift hits both), seed after seed — blind
//! generation against coverage feedback, or two ways of choosing mutation parents. Prints
//! what each had covered at every checkpoint and when each first found every finding.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ccwrig::fuzz::campaign::Stats;
use ccwrig::fuzz::summary::{SourceLines, Summary};
use ccwrig::fuzz::{guide::GuideConfig, Campaign, CampaignConfig, GenConfig, Stop};
use ccwrig::run::RunOptions;
use serde::Serialize;

use super::KernelArgs;
use ccwrig::fuzz::inputs::Parents;
use ccwrig_proto::Rest;

/// The two campaigns each seed runs side by side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compare {
    /// Blind generation against coverage feedback (with `--parents`).
    #[default]
    Feedback,
    /// Coverage feedback with parents chosen uniformly against by their cost.
    Parents,
    /// Coverage feedback with the subchannels resting on io_subchannel between programs
    /// against resting on vfio_ccw (the default).
    Rest,
}

/// How one campaign of the bench fuzzes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mode {
    feedback: bool,
    parents: Parents,
    rest: Rest,
}

impl Mode {
    fn label(self) -> &'static str {
        match (self.feedback, self.parents, self.rest) {
            (_, _, Rest::IoSubchannel) => "rest-io",
            (false, _, _) => "blind",
            (true, Parents::Uniform, _) => "guided",
            (true, Parents::Cost, _) => "g-cost",
        }
    }
}

impl Compare {
    fn modes(self, parents: Parents) -> [Mode; 2] {
        let guided = |parents| Mode {
            feedback: true,
            parents,
            rest: Rest::VfioCcw,
        };
        match self {
            Compare::Feedback => [
                Mode {
                    feedback: false,
                    ..guided(parents)
                },
                guided(parents),
            ],
            Compare::Parents => [guided(Parents::Uniform), guided(Parents::Cost)],
            Compare::Rest => [
                Mode {
                    rest: Rest::IoSubchannel,
                    ..guided(parents)
                },
                guided(parents),
            ],
        }
    }
}

#[derive(clap::Args, Clone)]
pub struct FuzzBenchArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Campaign seeds; each runs blind and guided side by side.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// Each campaign's time box.
    #[arg(long, value_parser = super::fuzz::parse_duration, default_value = "30m")]
    pub duration: Duration,
    /// When to read both campaigns' coverage (the time box is always one).
    #[arg(long, value_delimiter = ',', value_parser = super::fuzz::parse_duration, default_value = "10m")]
    pub at: Vec<Duration>,
    /// End a campaign at its first finding whose title contains this (time to find a
    /// planted bug: build with --patches).
    #[arg(long)]
    pub until_found: Option<String>,
    /// Share of the guided campaign's programs generated fresh.
    #[arg(long, default_value_t = GuideConfig::default().fresh_share)]
    pub fresh_share: f64,
    /// How mutation parents are chosen among the inputs: `uniform`, or `cost` (in inverse
    /// proportion to their run time, preferring fast inputs as AFL does).
    #[arg(long, value_enum, default_value_t)]
    pub parents: Parents,
    /// What the two campaigns of a seed differ in: `feedback` (blind against guided with
    /// `--parents`), `parents` (guided, uniform against cost) or `rest` (guided, subchannels
    /// resting on io_subchannel between programs against vfio_ccw).
    #[arg(long, value_enum, default_value_t)]
    pub compare: Compare,
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub boot: super::BootArgs,
}

/// What a campaign had covered when a checkpoint came.
#[derive(Debug, Clone, Serialize)]
struct Reading {
    at_s: u64,
    programs: u64,
    fsm_cells: u64,
    fsm_reachable: u64,
    fsm_points: u64,
    pcs: u64,
    lines: Option<SourceLines>,
    inputs: u64,
}

impl Reading {
    fn of(stats: &Stats, at: Duration) -> Reading {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Reading {
            at_s: at.as_secs(),
            programs: load(&stats.programs),
            fsm_cells: load(&stats.fsm_cells),
            fsm_reachable: load(&stats.fsm_reachable),
            fsm_points: load(&stats.fsm_points),
            pcs: load(&stats.pcs),
            lines: stats.lines.lock().ok().and_then(|l| *l),
            inputs: load(&stats.inputs),
        }
    }
}

/// One campaign of the bench: its readings and, at the end, its summary.
#[derive(Debug, Serialize)]
struct Arm {
    seed: u64,
    mode: &'static str,
    readings: Vec<Reading>,
    /// Title and seconds to the first hit, earliest first.
    found: Vec<(String, f64)>,
    programs_per_min: f64,
    errors: usize,
    dir: PathBuf,
}

pub async fn run(a: FuzzBenchArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(!a.seeds.is_empty(), "--seeds: at least one seed");
    let bzimage = a.kernel.bzimage()?;
    let kernel = ccwrig::run::BootKernel::of_bzimage(&bzimage);
    let image = ccwrig::image::build().context("guest image")?;
    let base = super::new_run_dir(a.out.as_ref(), "bench-fuzz")?;
    let mut at: Vec<Duration> = a.at.iter().copied().filter(|t| *t < a.duration).collect();
    at.push(a.duration);
    at.sort();
    at.dedup();
    let modes = a.compare.modes(a.parents);
    println!(
        "bench fuzz: seeds {:?}, {:?} each, {} and {} side by side, readings at {}; in {}",
        a.seeds,
        a.duration,
        modes[0].label(),
        modes[1].label(),
        at.iter()
            .map(|t| format!("{}s", t.as_secs()))
            .collect::<Vec<_>>()
            .join(", "),
        base.display()
    );
    let mut arms = Vec::new();
    for &seed in &a.seeds {
        let config = |mode: Mode| {
            let dir = base.join(format!("seed-{seed}")).join(mode.label());
            CampaignConfig {
                seed,
                stop: Stop::After(a.duration),
                jobs: 1,
                corpus: dir.join("corpus"),
                work_dir: dir.clone(),
                run: RunOptions {
                    boot: a.boot.boot,
                    ..RunOptions::new(kernel.clone(), image.initrd.clone(), dir)
                },
                gen: GenConfig::for_kernel(kernel.cover).resting_on(mode.rest),
                // Triage would take VM time from one arm and not the other.
                triage: None,
                guide: GuideConfig {
                    feedback: mode.feedback,
                    fresh_share: a.fresh_share,
                    parents: mode.parents,
                    ..GuideConfig::default()
                },
                until_found: a.until_found.clone(),
            }
        };
        let (one, two) = tokio::join!(
            arm(config(modes[0]), modes[0].label(), &at),
            arm(config(modes[1]), modes[1].label(), &at)
        );
        for r in [one?, two?] {
            println!("{}", arm_line(&r));
            arms.push(r);
        }
    }
    print!("{}", table(&arms, &at, &modes.map(Mode::label)));
    let json = base.join("bench-fuzz.json");
    let text = serde_json::to_string_pretty(&arms).context("bench-fuzz.json")?;
    std::fs::write(&json, text + "\n").with_context(|| format!("writing {}", json.display()))?;
    println!("campaigns and bench-fuzz.json in {}", base.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs one campaign, reading its counters at each of `at` (the last reading is its end).
async fn arm(cfg: CampaignConfig, mode: &'static str, at: &[Duration]) -> anyhow::Result<Arm> {
    let (seed, dir) = (cfg.seed, cfg.work_dir.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let campaign = Campaign::new(cfg);
    let stats = campaign.stats.clone();
    let t0 = Instant::now();
    // Filled by the sampler; a campaign that ends early (--until-found) has fewer readings.
    let readings = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let (stats, readings, at) = (stats.clone(), readings.clone(), at.to_vec());
        tokio::spawn(async move {
            // The time box itself is read after the campaign.
            for t in &at[..at.len().saturating_sub(1)] {
                tokio::time::sleep(t.saturating_sub(t0.elapsed())).await;
                if let Ok(mut r) = readings.lock() {
                    r.push(Reading::of(&stats, *t));
                }
            }
        })
    };
    let summary = campaign.run().await.context("campaign")?;
    sampler.abort();
    let mut readings = readings.lock().map(|r| r.clone()).unwrap_or_default();
    readings.push(Reading::of(&stats, t0.elapsed()));
    write_summary(&summary, &dir)?;
    let mut found: Vec<(String, f64)> = summary
        .findings
        .iter()
        .filter_map(|f| Some((f.title.clone(), f.found_after?.as_secs_f64())))
        .collect();
    found.sort_by(|a, b| a.1.total_cmp(&b.1));
    Ok(Arm {
        seed,
        mode,
        readings,
        found,
        programs_per_min: summary.programs_per_min(),
        errors: summary.errors.len(),
        dir,
    })
}

fn write_summary(summary: &Summary, dir: &Path) -> anyhow::Result<()> {
    let p = dir.join("summary.txt");
    std::fs::write(&p, summary.text()).with_context(|| format!("writing {}", p.display()))
}

fn arm_line(r: &Arm) -> String {
    const SHOWN: usize = 3;
    let mut found: Vec<String> = r
        .found
        .iter()
        .take(SHOWN)
        .map(|(t, s)| format!("{t} after {s:.0} s"))
        .collect();
    if r.found.len() > SHOWN {
        found.push(format!("{} more", r.found.len() - SHOWN));
    }
    format!(
        "seed {} {}: {:.1} programs/min, {} errors, found: {}",
        r.seed,
        r.mode,
        r.programs_per_min,
        r.errors,
        match found.is_empty() {
            true => "nothing".to_string(),
            false => found.join("; "),
        }
    )
}

/// One row per arm and reading, then the mean of each of `modes` at each reading.
fn table(arms: &[Arm], at: &[Duration], modes: &[&str]) -> String {
    let mut out = format!(
        "{:>6} {:<7} {:>6} {:>8} {:>7} {:>6} {:>6} {:>11} {:>11} {:>11} {:>6}\n",
        "seed",
        "mode",
        "at s",
        "programs",
        "cells",
        "points",
        "pcs",
        "vfio_ccw",
        "cio",
        "gcov",
        "inputs"
    );
    for r in arms {
        for x in &r.readings {
            out += &format!(
                "{:>6} {:<7} {:>6} {:>8} {:>7} {:>6} {:>6} {:>11} {:>11} {:>11} {:>6}\n",
                r.seed,
                r.mode,
                x.at_s,
                x.programs,
                format!("{}/{}", x.fsm_cells, x.fsm_reachable),
                x.fsm_points,
                x.pcs,
                x.lines.map_or("-".into(), |l| format!(
                    "{}/{}",
                    l.vfio_ccw,
                    l.vfio_ccw_total.unwrap_or(0)
                )),
                x.lines
                    .and_then(|l| l.cio)
                    .map_or("-".into(), |(c, t)| format!("{c}/{t}")),
                x.lines
                    .and_then(|l| l.gcov)
                    .map_or("-".into(), |(e, t)| format!("{e}/{t}")),
                x.inputs,
            );
        }
    }
    for (i, t) in at.iter().enumerate() {
        for &mode in modes {
            // Arms that ran the whole time box only: an early end has no later readings.
            let rs: Vec<&Reading> = arms
                .iter()
                .filter(|r| r.mode == mode && r.readings.len() == at.len())
                .map(|r| &r.readings[i])
                .collect();
            if rs.is_empty() {
                continue;
            }
            let mean = |f: &dyn Fn(&Reading) -> f64| {
                rs.iter().map(|r| f(r)).sum::<f64>() / rs.len() as f64
            };
            out += &format!(
                "mean of {} {:<7} at {:>5} s: {:.0} programs, {:.1} cells, {:.1} points, {:.0} pcs, {:.1} vfio_ccw lines, {:.1} cio lines\n",
                rs.len(),
                mode,
                t.as_secs(),
                mean(&|r| r.programs as f64),
                mean(&|r| r.fsm_cells as f64),
                mean(&|r| r.fsm_points as f64),
                mean(&|r| r.pcs as f64),
                mean(&|r| r.lines.map_or(0.0, |l| l.vfio_ccw as f64)),
                mean(&|r| r.lines.and_then(|l| l.cio).map_or(0.0, |(c, _)| c as f64)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at_s: u64, programs: u64, cells: u64, vfio_ccw: u64) -> Reading {
        Reading {
            at_s,
            programs,
            fsm_cells: cells,
            fsm_reachable: 30,
            fsm_points: cells + 1,
            pcs: 10 * vfio_ccw,
            lines: Some(SourceLines {
                vfio_ccw,
                vfio_ccw_total: Some(400),
                cio: Some((2 * vfio_ccw, 2600)),
                gcov: None,
            }),
            inputs: 0,
        }
    }

    fn arm(seed: u64, feedback: bool, readings: Vec<Reading>) -> Arm {
        Arm {
            seed,
            mode: if feedback { "guided" } else { "blind" },
            readings,
            found: vec![],
            programs_per_min: 1.0,
            errors: 0,
            dir: PathBuf::from("x"),
        }
    }

    #[test]
    fn an_arm_line_names_what_it_found_and_when() {
        let mut a = arm(3, true, vec![]);
        assert!(arm_line(&a).ends_with("found: nothing"), "{}", arm_line(&a));
        a.found = ["A", "B", "C", "D", "E"]
            .iter()
            .zip(1..)
            .map(|(t, s)| (t.to_string(), f64::from(s)))
            .collect();
        assert!(
            arm_line(&a).ends_with("found: A after 1 s; B after 2 s; C after 3 s; 2 more"),
            "{}",
            arm_line(&a)
        );
    }

    #[test]
    fn the_means_are_per_mode_and_checkpoint_and_leave_out_an_arm_that_ended_early() {
        let at = [Duration::from_secs(600), Duration::from_secs(1800)];
        let arms = [
            arm(
                1,
                false,
                vec![reading(600, 10, 10, 100), reading(1800, 30, 12, 200)],
            ),
            arm(
                2,
                false,
                vec![reading(600, 20, 14, 110), reading(1800, 50, 16, 220)],
            ),
            arm(
                1,
                true,
                vec![reading(600, 9, 20, 300), reading(1800, 28, 22, 320)],
            ),
            // Ended at 400 s (--until-found): in the rows, not in the means.
            arm(2, true, vec![reading(400, 5, 3, 3)]),
        ];
        let t = table(&arms, &at, &["blind", "guided"]);
        assert!(
            t.contains("mean of 2 blind   at   600 s: 15 programs, 12.0 cells, 13.0 points, 1050 pcs, 105.0 vfio_ccw lines, 210.0 cio lines"),
            "{t}"
        );
        assert!(
            t.contains("mean of 1 guided  at  1800 s: 28 programs, 22.0 cells"),
            "{t}"
        );
        assert!(t.contains("     2 guided     400        5    3/30"), "{t}");
        assert!(t.contains("300/400"), "{t}");
    }

    #[test]
    fn compare_parents_runs_both_parent_choices_with_feedback() {
        let m = Compare::Parents.modes(Parents::Uniform);
        assert!(m.iter().all(|m| m.feedback));
        assert_eq!(m.map(Mode::label), ["guided", "g-cost"]);
        let m = Compare::Feedback.modes(Parents::Cost);
        assert_eq!(m.map(Mode::label), ["blind", "g-cost"]);
    }

    #[test]
    fn compare_rest_runs_both_rests_guided() {
        let m = Compare::Rest.modes(Parents::Uniform);
        assert!(m.iter().all(|m| m.feedback));
        assert_eq!(m.map(|m| m.rest), [Rest::IoSubchannel, Rest::VfioCcw]);
        assert_eq!(m.map(Mode::label), ["rest-io", "guided"]);
    }
}
