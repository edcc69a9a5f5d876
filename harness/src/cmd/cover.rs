//! `ccwrig cover PATH…`: the line coverage of the programs below PATH (run directories, fuzz
//! corpora or campaigns run on a cover kernel) as HTML and a per-function text summary.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ccwrig::coverage::{render, report};

#[derive(clap::Args)]
pub struct CoverArgs {
    /// Run directories, fuzz corpora or campaign directories: every coverage.json below them,
    /// and a corpus's inputs (`inputs/*.cover.json`, the PCs of the driver's files).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Where index.html, summary.txt and src/ go [default: PATH/cover for the first PATH].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Source trees the report covers (tree-relative prefixes) [default: drivers/s390/cio/
    /// and drivers/vfio/].
    #[arg(long = "prefix")]
    pub prefixes: Vec<String>,
}

pub fn run(a: CoverArgs) -> anyhow::Result<std::process::ExitCode> {
    let t = Instant::now();
    let mut programs = report::collect(&a.paths)?;
    // A fuzz corpus's inputs keep their PCs in their own files.
    for p in &a.paths {
        programs.extend(
            ccwrig::fuzz::inputs::Inputs::kcov_of(p)
                .with_context(|| format!("reading the inputs of {}", p.display()))?,
        );
    }
    let prefixes = match a.prefixes.is_empty() {
        true => report::DEFAULT_PREFIXES
            .iter()
            .map(|p| p.to_string())
            .collect(),
        false => a.prefixes.clone(),
    };
    let r = report::build(&programs, &prefixes)?;
    let out = match &a.out {
        Some(o) => o.clone(),
        None => a.paths[0].join("cover"),
    };
    let index = render::write(&r, &out).with_context(|| format!("writing {}", out.display()))?;
    print!("{}", render::summary(&r));
    eprintln!(
        "{} in {:.1} s; summary {}",
        index.display(),
        t.elapsed().as_secs_f64(),
        out.join("summary.txt").display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}
