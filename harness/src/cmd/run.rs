//! `ccwrig run`: the main job. Runs scenario files (default: the whole `scenarios/` library),
//! one fresh VM each or VMs shared by scenarios of one shape (`--vm`), prints one verdict
//! line per scenario and a summary.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ccwrig::report::outcome::{Ending, KernelFacts, ScenarioOutcome};
use ccwrig::suite;

use super::KernelArgs;

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Replay with this seed (every run records the one it used in result.json).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where run directories go (default ./runs).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write a JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    #[command(flatten)]
    pub formats: super::ci_report::FormatArgs,
    #[command(flatten)]
    pub boot: super::BootArgs,
    /// `fresh` (the default): a VM per scenario; `shared`: scenarios of one machine shape run
    /// back to back in one VM (`--jobs` such VMs at once), with one kmemleak reading for up to
    /// 8 of them (about twice as fast on debug), a scenario with any finding ending its VM
    /// (phased ones, shutdowns and ones with a known finding run alone). A shared VM carries what earlier scenarios left in
    /// the kernel: a failure there may need them (rerun it with `--vm fresh`).
    #[arg(long, value_enum, default_value_t)]
    pub vm: suite::shared_vm::VmUse,
    #[command(flatten)]
    pub jobs: super::JobsArgs,
    /// Scenario files or directories of them (default: the repository's scenarios/).
    pub scenarios: Vec<PathBuf>,
}

pub fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<ccwrig::scenario::Scenario>> {
    let paths = if paths.is_empty() {
        vec![suite::scenarios_dir()]
    } else {
        paths.to_vec()
    };
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for p in &paths {
        if p.is_dir() {
            match ccwrig::scenario::load_dir(p) {
                Ok(v) => all.extend(v),
                Err(es) => errors.extend(es.into_iter().map(|e| e.to_string())),
            }
        } else {
            match ccwrig::scenario::parse_file(p) {
                Ok(s) => all.push(s),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{e}");
        }
        anyhow::bail!("{} scenario file error(s); nothing was run", errors.len());
    }
    anyhow::ensure!(
        !all.is_empty(),
        "no scenarios found in {}",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(all)
}

pub async fn run(a: RunArgs) -> anyhow::Result<std::process::ExitCode> {
    a.formats.check()?;
    let jobs = a.jobs.resolve()?;
    let scenarios = load(&a.scenarios)?;
    let kernel = a.kernel.choice();
    let base = super::new_run_dir(a.out.as_ref(), "run")?;
    let t0 = Instant::now();
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut results = Vec::new();
    let mut outcomes = Vec::new();
    let want_outcomes = a.formats.any();
    let mut report_error = None;
    let report = |(sc, dir, res): suite::shared_vm::Done<'_>| {
        if want_outcomes && report_error.is_none() {
            // A shared VM's scenario is reported after its VM's kmemleak reading: its start
            // is its end less its own time.
            let started = match &res {
                Ok(r) => started_ago(r.wall_ms),
                Err(_) => now_rfc3339(),
            };
            match outcome(sc, &dir, started, &res)
                .with_context(|| format!("reporting scenario {}", sc.name))
            {
                Ok(o) => outcomes.push(o),
                Err(e) => report_error = Some(e),
            }
        }
        match &res {
            Ok(r) => {
                let ok = r.verdict.passed;
                if ok {
                    passed += 1
                } else {
                    failed += 1
                }
                println!(
                    "{:<36} {:<60} {:>6} ms  seed {}",
                    sc.name,
                    r.verdict.line(),
                    r.wall_ms,
                    r.seed
                );
                if let Some(p) = r.phase {
                    println!(
                        "    in phase {p} of {}; later phases did not run; its files: {}",
                        sc.history.len() + 1,
                        dir.join(format!("phase{p}")).display()
                    );
                }
                if !ok {
                    for f in &r.verdict.findings {
                        println!("    - {}", f.title);
                    }
                    println!("    artifacts: {}", dir.display());
                    if let Some(vm) = &r.vm_dir {
                        println!(
                            "    its VM:    {} (shared with other scenarios)",
                            vm.display()
                        );
                    }
                    println!(
                        "    rerun:     ccwrig run --vm fresh --seed {} {}",
                        r.seed,
                        sc.path
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| sc.name.clone())
                    );
                }
            }
            Err(e) => {
                failed += 1;
                println!("{:<36} ERROR: {e}", sc.name);
                println!("    artifacts: {}", dir.display());
            }
        }
        results.push((sc.name.clone(), res.map_err(|e| e.to_string())));
    };
    suite::shared_vm::run_all(
        &scenarios,
        &kernel,
        a.seed,
        a.boot.boot,
        suite::shared_vm::Placement { vm: a.vm, jobs },
        &base,
        report,
    )
    .await;
    if let Some(e) = report_error {
        return Err(e);
    }
    if let Some(j) = &a.junit {
        ccwrig::report::junit::write(j, &results, t0.elapsed())
            .with_context(|| format!("writing {}", j.display()))?;
    }
    a.formats.write(&outcomes)?;
    println!(
        "run directory {}; {:.1} s",
        base.display(),
        t0.elapsed().as_secs_f64()
    );
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// The time `ms` milliseconds ago, as RFC 3339.
fn started_ago(ms: u64) -> Option<String> {
    (time::OffsetDateTime::now_utc() - time::Duration::milliseconds(ms as i64))
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn now_rfc3339() -> Option<String> {
    started_ago(0)
}

/// What the CI formats say about one scenario's run.
fn outcome(
    sc: &ccwrig::scenario::Scenario,
    dir: &std::path::Path,
    started: Option<String>,
    res: &Result<ccwrig::run::RunResult, suite::SuiteError>,
) -> anyhow::Result<ScenarioOutcome> {
    let cwd = std::env::current_dir().context("current directory")?;
    // Written before booting: present whenever a kernel was found or built.
    let kernel = ccwrig::kernel::record::KernelRecord::read(dir)
        .map(|r| KernelFacts::from_record(&r, &cwd))
        .transpose()?;
    let (ending, wall_ms) = match res {
        Ok(r) => (
            Ending::judged(
                &serde_json::to_value(&r.verdict).context("verdict as JSON")?,
                r.seed,
                r.boot_to_ready_ms,
            )
            .context("verdict as JSON")?,
            r.wall_ms,
        ),
        Err(e @ suite::SuiteError::Run(_)) => (
            Ending::HarnessError {
                error: e.to_string(),
            },
            0,
        ),
        Err(e) => (
            Ending::NotRun {
                error: e.to_string(),
                build_failed: matches!(e, suite::SuiteError::Kernel(_)),
            },
            0,
        ),
    };
    Ok(ScenarioOutcome {
        name: sc.name.clone(),
        file: sc.path.as_ref().map(|p| p.display().to_string()),
        run_dir: Some(dir.display().to_string()),
        started,
        wall_ms,
        kernel,
        ending,
    })
}
