//! `ccwrig run`: the main job. Runs scenario files (default: the whole `scenarios/` library),
//! one fresh VM each, prints one verdict line per scenario and a summary.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
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
    let scenarios = load(&a.scenarios)?;
    let kernel = a.kernel.choice();
    let base = super::new_run_dir(a.out.as_ref(), "run")?;
    let t0 = Instant::now();
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut results = Vec::new();
    for sc in &scenarios {
        let dir = base.join(&sc.name);
        // The nested image is built only when a scenario asks for it (it unpacks Debian's
        // s390x QEMU once); later calls are cache hits.
        let image = ccwrig::image::build_for(sc.machine.nested).context("guest image")?;
        let res = suite::run_one(sc, &kernel, &image, a.seed, dir.clone()).await;
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
                if !ok {
                    for f in &r.verdict.findings {
                        println!("    - {}", f.title);
                    }
                    println!("    artifacts: {}", dir.display());
                    println!(
                        "    rerun:     ccwrig run --seed {} {}",
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
    }
    if let Some(j) = &a.junit {
        ccwrig::report::junit::write(j, &results, t0.elapsed())
            .with_context(|| format!("writing {}", j.display()))?;
    }
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
