//! `ccwrig bench suite`: the scenario library run with a VM per scenario and with shared VMs,
//! one pass after the other and in alternating order round by round (so that the host's drift
//! does not favour one), with the same boot mode. Prints each pass's wall time and, per
//! scenario, the verdict each way: the speed-up is only worth having with the same verdicts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use ccwrig::suite::shared_vm::{run_all, VmUse};

use super::KernelArgs;

#[derive(clap::Args)]
pub struct SuiteBenchArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Rounds; each runs the suite once each way.
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub boot: super::BootArgs,
    /// Scenario files or directories of them (default: the repository's scenarios/).
    pub scenarios: Vec<PathBuf>,
}

/// A verdict as the table shows it: the run's own verdict line (its first word is the kind the
/// two ways are compared on), or the error.
fn verdict_word(r: &Result<ccwrig::run::RunResult, ccwrig::suite::SuiteError>) -> String {
    match r {
        Ok(r) => r.verdict.line(),
        Err(e) => format!("ERROR ({e})"),
    }
}

pub async fn run(a: SuiteBenchArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(a.rounds > 0, "--rounds must be at least 1");
    let scenarios = super::run::load(&a.scenarios)?;
    let kernel = a.kernel.choice();
    let base = super::new_run_dir(a.out.as_ref(), "bench-suite")?;
    let modes = [VmUse::Fresh, VmUse::Shared];
    let mut walls: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // scenario -> mode -> verdicts over the rounds
    let mut verdicts: BTreeMap<String, BTreeMap<&str, Vec<String>>> = BTreeMap::new();
    let name = |m: VmUse| match m {
        VmUse::Fresh => "fresh",
        VmUse::Shared => "shared",
    };
    for round in 1..=a.rounds {
        let order: Vec<VmUse> = if round % 2 == 1 {
            modes.to_vec()
        } else {
            modes.iter().rev().copied().collect()
        };
        for mode in order {
            let dir = base.join(format!("{round:03}-{}", name(mode)));
            let t0 = Instant::now();
            run_all(
                &scenarios,
                &kernel,
                None,
                a.boot.boot,
                mode,
                &dir,
                |(sc, _, r)| {
                    verdicts
                        .entry(sc.name.clone())
                        .or_default()
                        .entry(name(mode))
                        .or_default()
                        .push(verdict_word(&r));
                },
            )
            .await;
            let s = t0.elapsed().as_secs_f64();
            println!(
                "round {round} {}: {} scenarios in {s:.0} s ({})",
                name(mode),
                scenarios.len(),
                dir.display()
            );
            walls.entry(name(mode)).or_default().push(s);
        }
    }
    println!("\n| scenario | fresh | shared |\n|---|---|---|");
    let mut differ = 0;
    for (sc, by_mode) in &verdicts {
        let cell = |m: &str| by_mode.get(m).map(|v| v.join(", ")).unwrap_or_default();
        let kinds = |m: &str| {
            by_mode.get(m).map(|v| {
                let mut k: Vec<&str> = v
                    .iter()
                    .map(|s| s.split([' ', ':']).next().unwrap_or(""))
                    .collect();
                k.sort();
                k.dedup();
                k
            })
        };
        if kinds("fresh") != kinds("shared") {
            differ += 1;
        }
        println!("| {sc} | {} | {} |", cell("fresh"), cell("shared"));
    }
    println!();
    for (mode, w) in &walls {
        let mut sorted = w.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "suite_wall_s {mode} median={:.0} min={:.0} max={:.0} rounds={}",
            sorted[sorted.len() / 2],
            sorted[0],
            sorted[sorted.len() - 1],
            sorted.len()
        );
    }
    println!(
        "scenarios whose verdict kinds differ between the two ways: {differ} of {}",
        verdicts.len()
    );
    println!("run directory {}", base.display());
    Ok(std::process::ExitCode::SUCCESS)
}
