//! `ccwrig fuzz`: generated programs in long-lived VMs until a time box or a program count,
//! findings deduplicated, reproduced and shrunk into a corpus directory.
//!
//! Exit status: 0 no new finding, 1 new finding(s) (the nightly job fails on it), 2 harness
//! error.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use ccwrig::fuzz::{
    guide::GuideConfig, shrink::Budget, summary, triage::TriageConfig, Campaign, CampaignConfig,
    GenConfig, Stop,
};
use ccwrig::run::RunOptions;

use super::KernelArgs;

#[derive(clap::Args)]
pub struct FuzzArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Campaign seed: program n of seed S is always the same program [default: random].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Time box, e.g. 10m, 90s, 1h.
    #[arg(long, value_parser = parse_duration, conflicts_with = "programs")]
    pub duration: Option<Duration>,
    /// Stop after this many programs.
    #[arg(long)]
    pub programs: Option<u64>,
    /// VMs in parallel.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Corpus directory, kept across runs: findings in `crashes/` (only keys not in it count
    /// as new) and the programs that added coverage in `inputs/` (mutated by later runs).
    #[arg(long, default_value = "fuzz-corpus")]
    pub corpus: PathBuf,
    /// No coverage feedback: every program generated fresh from the seed and no inputs read
    /// or kept (coverage is still measured, to compare with a guided run of the same seed).
    #[arg(long)]
    pub blind: bool,
    /// Share of programs generated fresh while the corpus has inputs (the rest are mutants).
    #[arg(long, default_value_t = GuideConfig::default().fresh_share)]
    pub fresh_share: f64,
    /// How mutation parents are chosen among the inputs: `uniform`, or `cost` (in inverse
    /// proportion to their run time, preferring fast inputs as AFL does).
    #[arg(long, value_enum, default_value_t)]
    pub parents: ccwrig::fuzz::inputs::Parents,
    /// Where worker directories go (default ./runs).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Extra kernel command line.
    #[arg(long, default_value = "")]
    pub append: String,
    /// The driver the subchannels rest on between programs: `vfio_ccw` (a program pays the
    /// css walk only for its own binds to io_subchannel) or `io_subchannel` (every cleanup
    /// gives them back there, as scenarios do).
    #[arg(long, value_parser = parse_rest, default_value = "vfio_ccw")]
    pub rest: ccwrig_proto::Rest,
    /// Record findings without reproducing or shrinking them.
    #[arg(long)]
    pub no_triage: bool,
    /// Runs of the original program and of the repro to measure reproduction.
    #[arg(long, default_value_t = 10)]
    pub repro_tries: u32,
    /// Runs per shrink candidate (it counts if it reproduces about as often as the original).
    #[arg(long, default_value_t = 3)]
    pub shrink_tries: u32,
    /// The most of the campaign's VM time triage (reproducing and shrinking) may take; a
    /// finding past it is recorded, not triaged.
    #[arg(long, default_value_t = ccwrig::fuzz::triage::TRIAGE_SHARE)]
    pub triage_share: f64,
    /// Time limit for shrinking one finding, e.g. 5m.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub shrink_time: Duration,
    /// End at the first new finding whose title contains this (e.g. a planted bug's title):
    /// the summary then gives its time to find.
    #[arg(long)]
    pub until_found: Option<String>,
    /// Also write the summary as markdown here.
    #[arg(long)]
    pub summary_md: Option<PathBuf>,
    #[command(flatten)]
    pub boot: super::BootArgs,
}

/// `10m`, `90s`, `1h`, `1h30m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let (mut total, mut num) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("bad duration {s:?}: use e.g. 10m, 90s, 1h30m")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("bad duration {s:?}: a number must precede {c:?}"))?;
        total += n * unit;
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!("bad duration {s:?}: unit missing after {num}"));
    }
    Ok(Duration::from_secs(total))
}

pub async fn run(a: FuzzArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(a.jobs >= 1, "--jobs must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.fresh_share),
        "--fresh-share is a share: between 0 and 1"
    );
    let stop = match (a.duration, a.programs) {
        (_, Some(n)) => Stop::Programs(n),
        (Some(d), None) => Stop::After(d),
        (None, None) => Stop::After(Duration::from_secs(600)),
    };
    let bzimage = a.kernel.bzimage()?;
    let kernel = ccwrig::run::BootKernel::of_bzimage(&bzimage);
    let image = ccwrig::image::build().context("guest image")?;
    let work_dir = super::new_run_dir(a.out.as_ref(), "fuzz")?;
    let seed = a.seed.unwrap_or_else(|| rand::random::<u64>() >> 1);
    let triage = (!a.no_triage).then(|| TriageConfig {
        tries: a.repro_tries.max(1),
        shrink_tries: a.shrink_tries.max(1),
        budget: Budget {
            max_tests: 200,
            max_time: a.shrink_time,
        },
        deadline: None,
        share: a.triage_share.clamp(0.0, 1.0),
    });
    let cfg = CampaignConfig {
        seed,
        stop,
        jobs: a.jobs,
        corpus: a.corpus.clone(),
        work_dir: work_dir.clone(),
        run: RunOptions {
            append: a.append.clone(),
            boot: a.boot.boot,
            ..RunOptions::new(kernel.clone(), image.initrd.clone(), work_dir.clone())
        },
        gen: GenConfig::for_kernel(kernel.cover).resting_on(a.rest),
        triage,
        guide: GuideConfig {
            feedback: !a.blind,
            fresh_share: a.fresh_share,
            parents: a.parents,
            ..GuideConfig::default()
        },
        until_found: a.until_found.clone(),
    };
    println!(
        "fuzzing: campaign seed {seed}, {} VM(s), corpus {}, work {}, {}",
        a.jobs,
        a.corpus.display(),
        work_dir.display(),
        match a.blind {
            true => "blind".to_string(),
            false => format!("coverage feedback ({:.0}% fresh)", a.fresh_share * 100.0),
        }
    );
    let campaign = Campaign::new(cfg);
    let (stats, stop_flag) = (campaign.stats.clone(), campaign.stop.clone());
    // Shared with the ticker task; a plain line every interval when stderr is not a terminal.
    let bar = std::sync::Arc::new(std::sync::Mutex::new(ccwrig::progress::Progress::start(
        "fuzz",
    )));
    let t0 = Instant::now();
    let ticker = {
        let bar = bar.clone();
        let stats = stats.clone();
        let jobs = a.jobs as u64;
        tokio::spawn(async move {
            loop {
                let n = stats.programs.load(Ordering::Relaxed);
                let min = t0.elapsed().as_secs_f64() / 60.0;
                let rate = if min > 0.0 { n as f64 / min } else { 0.0 };
                let triaging = stats.triaging.load(Ordering::Relaxed);
                let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                let reachable = Some(load(&stats.fsm_reachable)).filter(|r| *r > 0);
                let cov = summary::line(
                    load(&stats.fsm_cells),
                    reachable,
                    load(&stats.fsm_points),
                    load(&stats.pcs),
                    stats.lines.lock().ok().and_then(|l| *l),
                );
                let msg = format!(
                    "{n} programs, {rate:.1}/min, {cov}, {} inputs, {} distinct findings ({} hits), {} VM restarts, {} errors{}",
                    load(&stats.inputs),
                    stats.distinct.load(Ordering::Relaxed),
                    stats.hits.load(Ordering::Relaxed),
                    stats.boots.load(Ordering::Relaxed).saturating_sub(jobs),
                    stats.errors.load(Ordering::Relaxed),
                    if triaging > 0 { format!(", {triaging} triaging") } else { String::new() }
                );
                if let Ok(b) = bar.lock() {
                    b.set_message(&msg);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let run = campaign.run();
    tokio::pin!(run);
    let summary = tokio::select! {
        s = &mut run => s,
        _ = tokio::signal::ctrl_c() => {
            if let Ok(b) = bar.lock() {
                b.println("interrupted: finishing the current programs");
            }
            stop_flag.store(true, Ordering::Relaxed);
            run.await
        }
    };
    ticker.abort();
    if let Ok(mut b) = bar.lock() {
        b.finish(None);
    }
    let summary = summary.context("fuzzing")?;
    print!("{}", summary.text());
    if let Some(p) = &a.summary_md {
        std::fs::write(p, summary.markdown())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let json = work_dir.join("summary.json");
    let j = serde_json::to_string_pretty(&summary).context("summary.json")?;
    std::fs::write(&json, j + "\n").with_context(|| format!("writing {}", json.display()))?;
    // Not `coverage.json`: that name is a program's KCOV record, which `ccwrig cover` reads
    // from every directory below the campaign's.
    let cov = work_dir.join("points.json");
    let c = serde_json::to_string(&summary.coverage.seen).context("points.json")?;
    std::fs::write(&cov, c + "\n").with_context(|| format!("writing {}", cov.display()))?;
    Ok(if summary.new_findings().next().is_some() {
        std::process::ExitCode::from(1)
    } else if summary.programs == 0 && !summary.errors.is_empty() {
        std::process::ExitCode::from(2)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// A rest driver by its name (`--rest`).
pub fn parse_rest(s: &str) -> Result<ccwrig_proto::Rest, String> {
    ccwrig_proto::Rest::from_driver(s).ok_or_else(|| {
        format!(
            "unknown driver {s:?}: expected {} or {}",
            ccwrig_proto::DRIVER_VFIO_CCW,
            ccwrig_proto::DRIVER_IO_SUBCHANNEL
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("10m", 600),
            ("90s", 90),
            ("1h30m", 5400),
            ("45", 45),
            ("1h", 3600),
        ];
        for (s, secs) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_secs(secs)), "{s}");
        }
        for bad in ["", "m", "10x", "5m3"] {
            assert!(parse_duration(bad).is_err() || bad.is_empty(), "{bad}");
        }
    }

    #[test]
    fn rest_drivers_by_name_and_a_wrong_one_named() {
        assert_eq!(parse_rest("vfio_ccw"), Ok(ccwrig_proto::Rest::VfioCcw));
        assert_eq!(
            parse_rest("io_subchannel"),
            Ok(ccwrig_proto::Rest::IoSubchannel)
        );
        let e = parse_rest("vfio").unwrap_err();
        assert!(e.contains("\"vfio\"") && e.contains("io_subchannel"), "{e}");
    }
}
