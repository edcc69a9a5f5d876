//! `ccwrig report RUN_DIR`: the plain-text bug report of a run (or of each failed scenario of
//! a `ccwrig run` directory), with every call-trace frame decoded to file:line.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ccwrig::report::bundle;
use ccwrig::report::text::{self, Extra, LoadedRun};
use ccwrig::rundir::{Artifact, RunDir};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A scenario's run directory, a `ccwrig run` directory (reports its failed scenarios),
    /// or a console log file.
    pub path: PathBuf,
    /// Decode with this vmlinux instead of the one kernel.json records.
    #[arg(long)]
    pub vmlinux: Option<PathBuf>,
    /// The source tree the kernel was built from (cut off file names).
    #[arg(long)]
    pub src: Option<PathBuf>,
    /// Print the decoded traces as JSON instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Write the report here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Write a bundle for a maintainer into this directory instead: report.txt, config,
    /// repro.toml, repro.c, console.log, with no path of this machine in any of them (one
    /// sub-directory per scenario when PATH holds several failed runs).
    #[arg(long, conflicts_with_all = ["json", "output"])]
    pub bundle: Option<PathBuf>,
}

pub fn run(a: ReportArgs) -> anyhow::Result<std::process::ExitCode> {
    let dirs = targets(&a.path)?;
    let mut out = String::new();
    for dir in &dirs {
        let run = if dir.is_file() {
            let console = std::fs::read_to_string(dir)
                .with_context(|| format!("reading {}", dir.display()))?;
            LoadedRun {
                dir: dir.parent().unwrap_or(Path::new(".")).to_path_buf(),
                console: Some(console),
                ..Default::default()
            }
        } else {
            LoadedRun::load(dir)?
        };
        let k = run.kernel.as_ref();
        let vmlinux = a
            .vmlinux
            .clone()
            .or_else(|| k.and_then(|k| k.vmlinux.clone()));
        let src = a.src.clone().or_else(|| k.and_then(|k| k.src.clone()));
        let decoded = text::decode_all(&run.crashes(), vmlinux.as_deref(), src.as_deref());
        if let Some(b) = &a.bundle {
            let out = if dirs.len() > 1 {
                b.join(dir.file_name().unwrap_or_default())
            } else {
                b.clone()
            };
            let w = bundle::write(&run, &decoded, &out)?;
            eprintln!("bundle {}: {}", out.display(), w.files.join(", "));
            for (f, why) in &w.left_out {
                eprintln!("  {f} not included: {why}");
            }
            continue;
        }
        if a.json {
            let v = match &decoded {
                Ok(t) => serde_json::to_value(t)?,
                Err(e) => serde_json::json!({ "error": e }),
            };
            out.push_str(&serde_json::to_string_pretty(&v)?);
            out.push('\n');
        } else {
            if dirs.len() > 1 {
                out.push_str(&format!("\n######## {} ########\n\n", dir.display()));
            }
            out.push_str(&text::render(&run, &decoded, &Extra::default()));
        }
    }
    match &a.output {
        _ if a.bundle.is_some() => {}
        Some(p) => std::fs::write(p, &out).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{out}"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The run directories a path stands for: itself, or its failed scenario sub-directories.
fn targets(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        path.exists(),
        "{}: no such file or directory",
        path.display()
    );
    let dir = RunDir::at(path);
    if path.is_file() || dir.has(Artifact::Result) || dir.has(Artifact::Console) {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| RunDir::at(p).has(Artifact::Result))
        .collect();
    subs.sort();
    let failed: Vec<PathBuf> = subs
        .iter()
        .filter(|d| {
            RunDir::at(d)
                .read_json::<ccwrig::run::RunResult>(Artifact::Result)
                .is_ok_and(|r| !r.verdict.passed)
        })
        .cloned()
        .collect();
    anyhow::ensure!(
        !subs.is_empty(),
        "{}: no run directories in it (no result.json)",
        path.display()
    );
    Ok(if failed.is_empty() { subs } else { failed })
}
