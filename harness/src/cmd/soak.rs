//! `ccwrig soak`: the flake hunt. Runs the scenario library (or the given scenarios) N rounds,
//! each run with a fresh random seed, and prints per scenario how often it passed, ran into
//! its known finding, or failed — every failure with its titles, seed and run directory. A red
//! soak is never "flaky, retry": each failure is a kernel bug (make it a known finding with
//! evidence) or a harness defect (fix it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use ccwrig::suite;

use super::KernelArgs;

#[derive(clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// How many times to run each scenario.
    #[arg(long, default_value_t = 20)]
    pub rounds: u32,
    /// Where run directories go (default ./runs).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub boot: super::BootArgs,
    /// VM sharing, as for `ccwrig run` (default `fresh`).
    #[arg(long, value_enum, default_value_t)]
    pub vm: suite::shared_vm::VmUse,
    /// Scenario files or directories of them (default: the repository's scenarios/).
    pub scenarios: Vec<PathBuf>,
}

/// One scenario's record over the rounds.
#[derive(Debug, Default)]
struct Tally {
    passed: u32,
    known: u32,
    /// (round, seed or error, titles, run directory)
    failures: Vec<Failure>,
}

#[derive(Debug)]
struct Failure {
    round: u32,
    seed: Option<u64>,
    titles: Vec<String>,
    dir: PathBuf,
}

pub async fn run(a: SoakArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(a.rounds > 0, "--rounds must be at least 1");
    let scenarios = super::run::load(&a.scenarios)?;
    let kernel = a.kernel.choice();
    let base = super::new_run_dir(a.out.as_ref(), "soak")?;
    let t0 = Instant::now();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for round in 1..=a.rounds {
        let tally = |(sc, dir, res): suite::shared_vm::Done<'_>| {
            let t = tallies.entry(sc.name.clone()).or_default();
            match res {
                Ok(r) if r.verdict.passed && r.verdict.known_finding.is_some() => t.known += 1,
                Ok(r) if r.verdict.passed => t.passed += 1,
                Ok(r) => {
                    println!(
                        "round {round} {}: {} (seed {}) {}",
                        sc.name,
                        r.verdict.line(),
                        r.seed,
                        dir.display()
                    );
                    t.failures.push(Failure {
                        round,
                        seed: Some(r.seed),
                        titles: r.verdict.primary().map(|f| f.title.clone()).collect(),
                        dir,
                    });
                }
                Err(e) => {
                    println!("round {round} {}: ERROR: {e} {}", sc.name, dir.display());
                    t.failures.push(Failure {
                        round,
                        seed: None,
                        titles: vec![format!("ERROR: {e}")],
                        dir,
                    });
                }
            }
        };
        let rdir = base.join(format!("{round:03}"));
        suite::shared_vm::run_all(
            &scenarios,
            &kernel,
            None,
            a.boot.boot,
            suite::shared_vm::Placement::one_at_a_time(a.vm),
            &rdir,
            tally,
        )
        .await;
        println!(
            "round {round}/{} done, {:.0} s",
            a.rounds,
            t0.elapsed().as_secs_f64()
        );
    }
    print!("{}", table(&tallies, a.rounds));
    let failed: usize = tallies.values().map(|t| t.failures.len()).sum();
    println!(
        "soak: {} scenarios x {} rounds in {:.0} s; run directory {}",
        tallies.len(),
        a.rounds,
        t0.elapsed().as_secs_f64(),
        base.display()
    );
    let runs = tallies.len() * a.rounds as usize;
    println!("{} passed, {failed} failed", runs - failed);
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// Per scenario: passes, known findings and failures out of `rounds`, then every failure.
fn table(tallies: &BTreeMap<String, Tally>, rounds: u32) -> String {
    let mut o = format!(
        "\n{:<40} {:>6} {:>6} {:>6}\n",
        "scenario", "pass", "known", "fail"
    );
    for (name, t) in tallies {
        o.push_str(&format!(
            "{:<40} {:>3}/{rounds:<2} {:>6} {:>6}\n",
            name,
            t.passed,
            t.known,
            t.failures.len()
        ));
        for f in &t.failures {
            let seed = f.seed.map_or_else(|| "-".into(), |s| s.to_string());
            o.push_str(&format!(
                "    round {} seed {seed}: {}\n      {}\n",
                f.round,
                f.titles.join("; "),
                f.dir.display()
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_failure_with_its_directory() {
        let mut t = BTreeMap::new();
        t.insert(
            "unplug_replug_fd_held".to_string(),
            Tally {
                passed: 2,
                known: 0,
                failures: vec![Failure {
                    round: 3,
                    seed: Some(42),
                    titles: vec!["snapshot by user (line 33): blocked past its 5000 ms deadline, then ok; expected ok".into()],
                    dir: PathBuf::from("runs/x/003/unplug_replug_fd_held"),
                }],
            },
        );
        t.insert(
            "basic_lifecycle".to_string(),
            Tally {
                passed: 3,
                ..Default::default()
            },
        );
        let text = table(&t, 3);
        assert!(text.contains("basic_lifecycle"), "{text}");
        assert!(text.contains("  3/3 "), "{text}");
        assert!(text.contains("round 3 seed 42: snapshot by user"), "{text}");
        assert!(text.contains("runs/x/003/unplug_replug_fd_held"), "{text}");
    }
}
