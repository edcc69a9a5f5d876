//! `ccwrig ci-report`: KTAP and KCIDB from run directories already on disk, for runs that did
//! not go through `ccwrig run` (the nextest suite leaves one run directory per scenario under
//! `target/tmp/scenario-runs/`), and the writer `ccwrig run --ktap/--kcidb` shares.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ccwrig::report::outcome::ScenarioOutcome;
use ccwrig::report::{kcidb, ktap};

/// The outputs CI systems read, shared by `ccwrig run` and `ccwrig ci-report`.
#[derive(clap::Args)]
pub struct FormatArgs {
    /// Write KTAP (version 1) here: a test per scenario, its oracles as subtests.
    #[arg(long)]
    pub ktap: Option<PathBuf>,
    /// Write KernelCI KCIDB JSON (schema v5.3) here.
    #[arg(long, requires = "origin")]
    pub kcidb: Option<PathBuf>,
    /// The CI system's name in KCIDB ids (lowercase letters, digits, '_').
    #[arg(long)]
    pub origin: Option<String>,
}

impl FormatArgs {
    /// Refuses a bad origin before anything runs.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(o) = &self.origin {
            kcidb::check_origin(o)?;
        }
        Ok(())
    }

    pub fn any(&self) -> bool {
        self.ktap.is_some() || self.kcidb.is_some()
    }

    pub fn write(&self, outcomes: &[ScenarioOutcome]) -> anyhow::Result<()> {
        write(
            outcomes,
            self.ktap.as_deref(),
            self.kcidb.as_deref().zip(self.origin.as_deref()),
        )
    }
}

#[derive(clap::Args)]
pub struct CiReportArgs {
    #[command(flatten)]
    pub formats: FormatArgs,
    /// Run directories, or directories of them (a `ccwrig run` directory, scenario-runs/).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

/// A run directory has the kernel record written before booting, or a result.
fn is_run_dir(d: &Path) -> bool {
    d.join(ccwrig::kernel::record::FILE).is_file() || d.join("result.json").is_file()
}

/// The run directories under `dirs`, in name order within each.
pub fn run_dirs(dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        anyhow::ensure!(d.is_dir(), "{}: not a directory", d.display());
        if is_run_dir(d) {
            out.push(d.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(d)
            .with_context(|| format!("listing {}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && is_run_dir(p))
            .collect();
        anyhow::ensure!(
            !subs.is_empty(),
            "{}: no run directories in it",
            d.display()
        );
        subs.sort();
        out.extend(subs);
    }
    Ok(out)
}

/// Writes the formats asked for.
pub fn write(
    outcomes: &[ScenarioOutcome],
    ktap_path: Option<&Path>,
    kcidb_to: Option<(&Path, &str)>,
) -> anyhow::Result<()> {
    if let Some(k) = ktap_path {
        std::fs::write(k, ktap::render(outcomes))
            .with_context(|| format!("writing {}", k.display()))?;
    }
    if let Some((k, origin)) = kcidb_to {
        let sub = kcidb::Submission {
            origin: origin.to_string(),
            run_id: uuid::Uuid::new_v4().to_string(),
        };
        let json = serde_json::to_string_pretty(&kcidb::render(outcomes, &sub))?;
        std::fs::write(k, json + "\n").with_context(|| format!("writing {}", k.display()))?;
    }
    Ok(())
}

pub fn run(a: CiReportArgs) -> anyhow::Result<std::process::ExitCode> {
    a.formats.check()?;
    anyhow::ensure!(
        a.formats.any(),
        "nothing to write: give --ktap FILE and/or --kcidb FILE --origin NAME"
    );
    let cwd = std::env::current_dir().context("current directory")?;
    let outcomes = run_dirs(&a.dirs)?
        .iter()
        .map(|d| ScenarioOutcome::from_run_dir(d, &cwd).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    a.formats.write(&outcomes)?;
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    println!("{passed} passed, {} failed", outcomes.len() - passed);
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dirs_are_found_directly_or_one_level_down() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let run = data.join("ci/6.12-basic-lifecycle-run");
        assert_eq!(
            run_dirs(std::slice::from_ref(&run)).unwrap(),
            vec![run.clone()]
        );
        assert_eq!(run_dirs(&[data.join("ci")]).unwrap(), vec![run]);
        let e = run_dirs(&[data.join("fsm")]).unwrap_err();
        assert!(e.to_string().contains("no run directories"), "{e}");
    }
}
