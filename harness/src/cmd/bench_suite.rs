//! `ccwrig bench suite`: the scenario library run several ways — with a VM per scenario and
//! with shared VMs (`--compare vm`), one VM at a time and several at once (`--compare
//! jobs`), or on several kernel profiles (`--compare profiles`) —
//! one pass after the other and in rotating order round by round (so that the host's drift
//! does not favour one). Prints each pass's wall time and, per scenario, the verdict each way:
//! a speed-up is only worth having with the verdicts it keeps or loses in view.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ccwrig::kernel::Profile;
use ccwrig::suite::shared_vm::{run_all, Placement, VmUse};
use ccwrig::suite::KernelChoice;

use super::KernelArgs;

/// What the passes of a round differ in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compare {
    /// `--vm fresh` against `--vm shared`, on the kernel given, each with `--jobs` VMs at once.
    #[default]
    Vm,
    /// One pass per profile of `--profiles`, each with `--vm`.
    Profiles,
    /// One VM at a time against `--jobs` of them at once (default: one per CPU), each `--vm`.
    Jobs,
}

#[derive(clap::Args)]
pub struct SuiteBenchArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[arg(long, value_enum, default_value_t)]
    pub compare: Compare,
    /// With `--compare profiles`: the profiles, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "debug,kasan,lockdep"
    )]
    pub profiles: Vec<Profile>,
    /// With `--compare profiles` and `--compare jobs`: how the scenarios of each pass get
    /// their VMs.
    #[arg(long, value_enum, default_value_t)]
    pub vm: VmUse,
    #[command(flatten)]
    pub jobs: super::JobsArgs,
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

/// One way of running the suite.
struct Arm {
    label: String,
    kernel: KernelChoice,
    vm: VmUse,
    jobs: usize,
}

fn vm_name(m: VmUse) -> &'static str {
    match m {
        VmUse::Fresh => "fresh",
        VmUse::Shared => "shared",
    }
}

/// The arms of `a`; kernels that need building are built here, so that no pass's wall time
/// includes a build.
fn arms(a: &SuiteBenchArgs) -> anyhow::Result<Vec<Arm>> {
    match a.compare {
        Compare::Vm => [VmUse::Fresh, VmUse::Shared]
            .into_iter()
            .map(|vm| {
                Ok(Arm {
                    label: vm_name(vm).to_string(),
                    kernel: a.kernel.choice(),
                    vm,
                    jobs: a.jobs.resolve()?,
                })
            })
            .collect(),
        Compare::Jobs => {
            let many = a.jobs.resolve()?;
            anyhow::ensure!(many > 1, "--compare jobs needs --jobs of 2 or more");
            Ok([1, many]
                .into_iter()
                .map(|jobs| Arm {
                    label: format!("jobs {jobs}"),
                    kernel: a.kernel.choice(),
                    vm: a.vm,
                    jobs,
                })
                .collect())
        }
        Compare::Profiles => {
            anyhow::ensure!(
                a.kernel.kernel.is_none() && a.kernel.profile.is_none(),
                "--compare profiles builds each of --profiles; --kernel and --profile do not apply"
            );
            anyhow::ensure!(!a.profiles.is_empty(), "--profiles names no profile");
            let mut out = Vec::new();
            for &p in &a.profiles {
                let k = KernelArgs {
                    profile: Some(p),
                    ..a.kernel.clone()
                };
                ccwrig::kernel::build(&k.request())
                    .with_context(|| format!("building the {} kernel", p.name()))?;
                out.push(Arm {
                    label: p.name().to_string(),
                    kernel: k.choice(),
                    vm: a.vm,
                    jobs: a.jobs.resolve()?,
                });
            }
            Ok(out)
        }
    }
}

/// A verdict as the table shows it: the run's own verdict line (its first word is the kind the
/// ways are compared on), or the error.
fn verdict_word(r: &Result<ccwrig::run::RunResult, ccwrig::suite::SuiteError>) -> String {
    match r {
        Ok(r) => r.verdict.line(),
        Err(e) => format!("ERROR ({e})"),
    }
}

/// The distinct verdict kinds (first words) of `lines`, sorted.
fn kinds(lines: &[String]) -> Vec<&str> {
    let mut k: Vec<&str> = lines
        .iter()
        .map(|s| s.split([' ', ':']).next().unwrap_or(""))
        .collect();
    k.sort();
    k.dedup();
    k
}

pub async fn run(a: SuiteBenchArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(a.rounds > 0, "--rounds must be at least 1");
    let scenarios = super::run::load(&a.scenarios)?;
    let arms = arms(&a)?;
    let base = super::new_run_dir(a.out.as_ref(), "bench-suite")?;
    let mut walls: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    // scenario -> arm -> verdicts over the rounds
    let mut verdicts: BTreeMap<String, BTreeMap<usize, Vec<String>>> = BTreeMap::new();
    for round in 1..=a.rounds {
        // Each round starts one arm later than the last.
        let first = (round as usize - 1) % arms.len();
        for i in (0..arms.len()).map(|k| (first + k) % arms.len()) {
            let arm = &arms[i];
            let dir = base.join(format!("{round:03}-{}", arm.label));
            let t0 = Instant::now();
            run_all(
                &scenarios,
                &arm.kernel,
                None,
                a.boot.boot,
                Placement {
                    vm: arm.vm,
                    jobs: arm.jobs,
                },
                &dir,
                |(sc, _, r)| {
                    verdicts
                        .entry(sc.name.clone())
                        .or_default()
                        .entry(i)
                        .or_default()
                        .push(verdict_word(&r));
                },
            )
            .await;
            let s = t0.elapsed().as_secs_f64();
            let how = match arm.label == vm_name(arm.vm) {
                true => arm.label.clone(),
                false => format!("{} ({} VMs)", arm.label, vm_name(arm.vm)),
            };
            println!(
                "round {round} {how}: {} scenarios in {s:.0} s ({})",
                scenarios.len(),
                dir.display()
            );
            walls.entry(i).or_default().push(s);
        }
    }
    let labels: Vec<&str> = arms.iter().map(|a| a.label.as_str()).collect();
    println!(
        "\n| scenario | {} |\n|---{}|",
        labels.join(" | "),
        "|---".repeat(labels.len())
    );
    let mut differ = 0;
    for (sc, by_arm) in &verdicts {
        let all_kinds: Vec<Vec<&str>> = (0..arms.len())
            .map(|i| by_arm.get(&i).map(|v| kinds(v)).unwrap_or_default())
            .collect();
        if all_kinds.windows(2).any(|w| w[0] != w[1]) {
            differ += 1;
        }
        let cells: Vec<String> = (0..arms.len())
            .map(|i| by_arm.get(&i).map(|v| v.join(", ")).unwrap_or_default())
            .collect();
        println!("| {sc} | {} |", cells.join(" | "));
    }
    println!();
    for (i, w) in &walls {
        let mut sorted = w.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "suite_wall_s {} median={:.0} min={:.0} max={:.0} rounds={}",
            arms[*i].label,
            sorted[sorted.len() / 2],
            sorted[0],
            sorted[sorted.len() - 1],
            sorted.len()
        );
    }
    println!(
        "scenarios whose verdict kinds differ between the ways: {differ} of {}",
        verdicts.len()
    );
    println!("run directory {}", base.display());
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::kinds;

    #[test]
    fn kinds_are_the_first_words_once_each() {
        let v = vec![
            "PASS".to_string(),
            "FAIL: memory leak in vfio_ccw_mdev_init_dev (+1 more)".to_string(),
            "PASS".to_string(),
            "KNOWN FINDING: lost_update".to_string(),
        ];
        assert_eq!(kinds(&v), vec!["FAIL", "KNOWN", "PASS"]);
    }
}
