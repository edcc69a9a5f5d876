//! `ccwrig compare --kernel-version 6.1 --kernel-version 6.12`: the same scenarios on several
//! pinned stable lines (one fresh VM per scenario and kernel), then a scenario × kernel table.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ccwrig::kernel::{BuildRequest, Profile};
use ccwrig::suite::{self, KernelChoice};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Pinned stable lines to compare (repeat, or comma-separated) [default: all pinned].
    #[arg(long = "kernel-version", value_delimiter = ',')]
    pub versions: Vec<String>,
    /// Kernel profile for every scenario [default: what each scenario asks for].
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// The same seed on every kernel (default: each scenario's own, else one random seed per
    /// scenario shared by all kernels).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where run directories go (default ./runs).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub boot: super::BootArgs,
    /// Scenario files or directories (default: the repository's scenarios/).
    pub scenarios: Vec<PathBuf>,
}

struct Cell {
    verdict: String,
    passed: bool,
}

pub async fn run(a: CompareArgs) -> anyhow::Result<std::process::ExitCode> {
    let versions = if a.versions.is_empty() {
        ccwrig::kernel::pinned_versions()?
    } else {
        a.versions.clone()
    };
    let scenarios = super::run::load(&a.scenarios)?;
    let base = super::new_run_dir(a.out.as_ref(), "compare")?;
    let t0 = Instant::now();
    // Build every kernel first: a build failure should stop the comparison before any VM runs.
    let mut kernels = Vec::new();
    for v in &versions {
        let mut request = BuildRequest::new(a.profile.unwrap_or(Profile::Fast));
        request.version = Some(v.clone());
        request.progress = true;
        ccwrig::kernel::build(&request)
            .with_context(|| format!("building the pinned {v} kernel"))?;
        kernels.push(KernelChoice::Build {
            request,
            force_profile: a.profile.is_some(),
        });
    }
    let mut rows: Vec<(String, Vec<Cell>)> = Vec::new();
    for sc in &scenarios {
        let seed = a
            .seed
            .or(sc.race.seed)
            .unwrap_or_else(|| rand::random::<u64>() >> 1);
        let image = ccwrig::image::build_for(sc.machine.nested).context("guest image")?;
        let mut cells = Vec::new();
        for (v, k) in versions.iter().zip(&kernels) {
            let dir = base.join(v).join(&sc.name);
            let cell =
                match suite::run_one(sc, k, &image, Some(seed), a.boot.boot, dir.clone()).await {
                    Ok(r) => Cell {
                        verdict: r.verdict.line(),
                        passed: r.verdict.passed,
                    },
                    Err(e) => Cell {
                        verdict: format!("ERROR: {e}"),
                        passed: false,
                    },
                };
            println!("{:<36} {:<6} {}", sc.name, v, cell.verdict);
            cells.push(cell);
        }
        rows.push((sc.name.clone(), cells));
    }
    let table = render(&versions, &rows);
    println!("\n{table}");
    let md = base.join("compare.md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    println!(
        "run directory {} (table in compare.md); {:.1} s",
        base.display(),
        t0.elapsed().as_secs_f64()
    );
    let all_passed = rows.iter().all(|(_, c)| c.iter().all(|c| c.passed));
    Ok(if all_passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// A Markdown table; cells that differ between kernels are marked, since that is what a
/// comparison is read for.
fn render(versions: &[String], rows: &[(String, Vec<Cell>)]) -> String {
    let mut o = format!(
        "| scenario | {} | differs |\n|---|{}---|\n",
        versions.join(" | "),
        "---|".repeat(versions.len())
    );
    for (name, cells) in rows {
        let short: Vec<String> = cells.iter().map(|c| shorten(&c.verdict, 70)).collect();
        let differs = cells.windows(2).any(|w| w[0].passed != w[1].passed);
        o.push_str(&format!(
            "| {name} | {} | {} |\n",
            short.join(" | "),
            if differs { "yes" } else { "" }
        ));
    }
    o
}

fn shorten(s: &str, max: usize) -> String {
    let s = s.replace('|', "/");
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_marks_scenarios_whose_verdict_differs() {
        let v = vec!["6.1".to_string(), "6.12".to_string()];
        let cell = |s: &str, p| Cell {
            verdict: s.into(),
            passed: p,
        };
        let rows = vec![
            (
                "open_close".to_string(),
                vec![cell("PASS", true), cell("PASS", true)],
            ),
            (
                "iommufd_open".to_string(),
                vec![
                    cell("FAIL: open by user (line 3): ENOENT not in [ok]", false),
                    cell("PASS", true),
                ],
            ),
        ];
        let t = render(&v, &rows);
        assert_eq!(
            t,
            "| scenario | 6.1 | 6.12 | differs |\n|---|---|---|---|\n| open_close | PASS | PASS |  |\n| iommufd_open | FAIL: open by user (line 3): ENOENT not in [ok] | PASS | yes |\n"
        );
    }
}
