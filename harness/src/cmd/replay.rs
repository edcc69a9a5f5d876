//! `ccwrig replay FINDING_DIR`: measures whether a fuzz finding needs its VM's past. Runs the
//! program that hit alone (a fresh VM per run), then the history its VM ran up to the hit
//! (`history.toml`, a phased scenario; a fresh VM per replay), then shrinks the history to the
//! shortest sequence that still reproduces and writes it as `history-repro.toml`, with the
//! rates in `replay.json`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use ccwrig::fuzz::corpus::{Meta, Rate};
use ccwrig::fuzz::replay::{self, Replayed, SeqOnVm, SeqReproduces};
use ccwrig::fuzz::shrink::Budget;
use ccwrig::fuzz::triage::hits_needed;
use ccwrig::fuzz::worker::Worker;
use ccwrig::machine::MachineSpec;
use ccwrig::run::RunOptions;
use ccwrig::rundir::finding_dir;
use ccwrig::scenario::Scenario;

use super::KernelArgs;

#[derive(clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Runs of the program alone and replays of the history (each in a fresh VM).
    #[arg(long, default_value_t = 10)]
    pub runs: u32,
    /// Replays per shrink candidate (it counts if it reproduces about as often as the whole
    /// history did).
    #[arg(long, default_value_t = 3)]
    pub shrink_tries: u32,
    /// Time limit for shrinking, e.g. 20m; 0 measures without shrinking.
    #[arg(long, value_parser = super::fuzz::parse_duration, default_value = "20m")]
    pub shrink_time: Duration,
    /// Drop a program from the history when its run ends a replay with another finding
    /// before the finding's own (another bug, hit first); the shrink then starts from what is
    /// left.
    #[arg(long)]
    pub drop_interrupting: bool,
    /// The history to replay [default: FINDING_DIR/history.toml].
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Where VM directories go (default ./runs).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A finding directory of a fuzz corpus (`meta.json`, `history.toml`).
    pub finding: PathBuf,
}

/// What `replay.json` holds.
#[derive(Debug, serde::Serialize)]
struct Report {
    key: String,
    title: String,
    /// The kernel the replays ran on (release, profile, patches, build key).
    kernel: String,
    alone: Rate,
    history_programs: usize,
    history_ops: usize,
    history: Rate,
    /// Programs dropped because their run ended a replay with another finding first.
    dropped_interrupting: usize,
    shrunk_programs: Option<usize>,
    shrunk_ops: Option<usize>,
    shrunk: Option<Rate>,
    shrink_tests: usize,
    shrink_s: u64,
}

pub async fn run(a: ReplayArgs) -> anyhow::Result<std::process::ExitCode> {
    let dir = &a.finding;
    let meta_path = dir.join(finding_dir::META);
    let meta: Meta = serde_json::from_str(
        &std::fs::read_to_string(&meta_path)
            .with_context(|| format!("reading {}", meta_path.display()))?,
    )
    .with_context(|| format!("{}: not a finding's meta.json", meta_path.display()))?;
    let history_path = a
        .history
        .clone()
        .unwrap_or_else(|| dir.join(finding_dir::HISTORY));
    anyhow::ensure!(
        history_path.is_file(),
        "{}: no history recorded (findings kept before ccwrig fuzz recorded histories have \
         none); give one with --history FILE",
        history_path.display()
    );
    let history = replay::phases_of(&ccwrig::scenario::parse_file(&history_path)?);
    // Alone means the history's own last program (the one that hit): `program.toml` is the
    // first hit's, and a later, shorter history may end in another program.
    let Some(alone) = history.last().cloned() else {
        anyhow::bail!("{}: an empty history", history_path.display());
    };
    let program = &alone;

    let bzimage = a.kernel.bzimage()?;
    let image = ccwrig::image::build().context("guest image")?;
    let work = super::new_run_dir(a.out.as_ref(), "replay")?;
    let machine = MachineSpec::of(&program.machine).context("the finding's machine")?;
    let opts = RunOptions::new(
        ccwrig::run::BootKernel::of_bzimage(&bzimage),
        image.initrd.clone(),
        work.join("vm"),
    );
    let mut worker = Worker::new(0, opts, &machine);
    let key = meta.key.as_str();
    println!("replaying {}: {}", dir.display(), meta.title);
    println!(
        "kernel {}; VM directories under {}",
        bzimage.display(),
        work.display()
    );

    let runs = a.runs.max(1);
    let alone_rate = measure(&mut worker, &[alone], key, runs, "program alone", &work).await?;
    let h_ops = replay::size(&history);
    let what = format!("history ({} programs, {h_ops} ops)", history.len());
    let mut history = history;
    let recorded = history.len();
    let (h_rate, interrupting) = if recorded == 1 {
        // A history of one program is the program alone, measured above.
        println!("the history is the program alone: {alone_rate}");
        (alone_rate, 0)
    } else {
        measure_dropping(
            &mut worker,
            &mut history,
            key,
            runs,
            &what,
            &work,
            a.drop_interrupting,
        )
        .await?
    };

    let mut report = Report {
        key: meta.key.clone(),
        title: meta.title.clone(),
        kernel: kernel_name(&bzimage),
        alone: alone_rate,
        history_programs: recorded,
        history_ops: h_ops,
        history: h_rate,
        dropped_interrupting: interrupting,
        shrunk_programs: None,
        shrunk_ops: None,
        shrunk: None,
        shrink_tests: 0,
        shrink_s: 0,
    };
    if h_rate.hits > 0 && !a.shrink_time.is_zero() {
        let t0 = Instant::now();
        let shrink_tries = a.shrink_tries.max(1);
        let mut test = Shown {
            inner: SeqOnVm {
                worker: &mut worker,
                key,
                tries: shrink_tries,
                need: hits_needed(h_rate, shrink_tries),
                dir: &work.join("shrink"),
                deadline: Some(t0 + a.shrink_time),
                error: None,
            },
            n: 0,
        };
        let budget = Budget {
            max_tests: 200,
            max_time: a.shrink_time,
        };
        let shrunk = replay::shrink_history(&history, budget, &mut test).await;
        if let Some(e) = test.inner.error {
            return Err(e).context("shrinking the history");
        }
        report.shrink_tests = shrunk.tests;
        report.shrink_s = t0.elapsed().as_secs();
        let ops = replay::size(&shrunk.phases);
        let what = format!(
            "shrunk history ({} programs, {ops} ops)",
            shrunk.phases.len()
        );
        let rate = measure(&mut worker, &shrunk.phases, key, runs, &what, &work).await?;
        report.shrunk_programs = Some(shrunk.phases.len());
        report.shrunk_ops = Some(ops);
        report.shrunk = Some(rate);
        if rate.hits > 0 {
            let description = format!(
                "Shrunk by ccwrig replay from the {} programs a fuzzing VM ran up to the hit, \
                 replayed in one fresh VM in this order: {} alone, {} as the whole history, {} \
                 shrunk. On a kernel with the bug, this run fails with: {}",
                recorded, alone_rate, h_rate, rate, meta.title
            );
            let repro = Scenario::from_phases(shrunk.phases, "history-repro", &description)
                .context("an empty shrunk history")?;
            write(&dir.join(finding_dir::HISTORY_REPRO), &repro.to_toml())?;
        }
    }
    worker.retire().await;
    let json = serde_json::to_string_pretty(&report).context("replay.json")?;
    write(&dir.join("replay.json"), &(json + "\n"))?;
    println!(
        "{}: alone {}, history of {} programs {}{}",
        meta.title,
        report.alone,
        report.history_programs,
        report.history,
        match (report.shrunk_programs, report.shrunk) {
            (Some(n), Some(r)) => format!(", shrunk to {n} program(s) {r}"),
            _ => String::new(),
        }
    );
    Ok(if report.history.hits > 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// The kernel as a reader of `replay.json` elsewhere knows it: release, profile, patches and
/// cache key, no local path.
fn kernel_name(bzimage: &Path) -> String {
    let r = ccwrig::kernel::KernelRecord::of_bzimage(bzimage);
    let mut s = r
        .release
        .clone()
        .unwrap_or_else(|| "unknown release".into());
    if let Some(p) = r.profile {
        s.push_str(&format!(", {} profile", p.name()));
    }
    if !r.patches.is_empty() {
        s.push_str(&format!(", patches {}", r.patches.join(" ")));
    }
    if let Some(k) = &r.key {
        s.push_str(&format!(", build {k}"));
    }
    s
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `runs` replays of `phases`, each in a fresh VM, with a line per replay.
async fn measure(
    worker: &mut Worker,
    phases: &[Scenario],
    key: &str,
    runs: u32,
    what: &str,
    work: &Path,
) -> anyhow::Result<Rate> {
    let mut phases = phases.to_vec();
    let (rate, _) = measure_dropping(worker, &mut phases, key, runs, what, work, false).await?;
    Ok(rate)
}

/// Like [`measure`]; with `drop_interrupting`, a program that ends a replay with another
/// finding before the key shows (another bug of the same kernel, hit first) is dropped from
/// `phases` for the remaining replays: the history cannot reach the crash through it. The
/// replays it interrupted count as misses. Returns the rate and the programs dropped.
async fn measure_dropping(
    worker: &mut Worker,
    phases: &mut Vec<Scenario>,
    key: &str,
    runs: u32,
    what: &str,
    work: &Path,
    drop_interrupting: bool,
) -> anyhow::Result<(Rate, usize)> {
    let mut rate = Rate { hits: 0, tries: 0 };
    let mut dropped = 0;
    let dir = work.join(what.split(' ').next().unwrap_or("run"));
    for i in 1..=runs {
        let t0 = Instant::now();
        let r = replay::replay_once(worker, phases, key, &dir).await?;
        rate.tries += 1;
        rate.hits += u32::from(r.hit());
        let said = match &r {
            Replayed::Hit => "reproduced".to_string(),
            Replayed::Missed => "no".to_string(),
            Replayed::Interrupted { at, by } => {
                format!(
                    "no: program {} of {} ended it with {by}",
                    at + 1,
                    phases.len()
                )
            }
        };
        println!(
            "  {what}: run {i}/{runs} {said} ({:.0} s)",
            t0.elapsed().as_secs_f64()
        );
        if let Replayed::Interrupted { at, .. } = r {
            if drop_interrupting && at + 1 < phases.len() {
                phases.remove(at);
                dropped += 1;
                println!(
                    "    dropped program {} from the history: {} left",
                    at + 1,
                    phases.len()
                );
            }
        }
    }
    println!("{what}: {rate}");
    Ok((rate, dropped))
}

/// A sequence test that says what it tried.
struct Shown<'a> {
    inner: SeqOnVm<'a>,
    n: usize,
}

impl SeqReproduces for Shown<'_> {
    async fn reproduces(&mut self, phases: &[Scenario]) -> bool {
        self.n += 1;
        let t0 = Instant::now();
        let yes = self.inner.reproduces(phases).await;
        println!(
            "  shrink test {}: {} programs, {} ops: {} ({:.0} s)",
            self.n,
            phases.len(),
            replay::size(phases),
            if yes { "kept" } else { "rejected" },
            t0.elapsed().as_secs_f64()
        );
        yes
    }
}
