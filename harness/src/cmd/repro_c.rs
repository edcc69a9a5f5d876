//! `ccwrig repro-c SCENARIO -o repro.c`: the scenario as a standalone C reproducer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use ccwrig::repro_c::{self, ExportOptions};

#[derive(clap::Args)]
pub struct ReproCArgs {
    /// A scenario file, e.g. a finding's repro.toml or a run's scenario.toml (which records
    /// the seed).
    pub scenario: PathBuf,
    /// Where the C file goes (default: stdout).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The seed whose jitter the program reproduces [default: the scenario's].
    #[arg(long)]
    pub seed: Option<u64>,
    /// `OP=COMMAND`: run COMMAND for each host step OP (device_del, device_add, stop, cont,
    /// system_reset), e.g. a vmcp or virsh command; without one the program pauses for the
    /// operator. Repeatable; the program's own --host-cmd overrides it at run time.
    #[arg(long = "host-cmd", value_name = "OP=COMMAND")]
    pub host_cmd: Vec<String>,
    /// Also cross-compile it (s390x-linux-gnu-gcc -static) into this binary.
    #[arg(long)]
    pub build: Option<PathBuf>,
}

pub fn run(a: ReproCArgs) -> anyhow::Result<std::process::ExitCode> {
    let sc = ccwrig::scenario::parse_file(&a.scenario)?;
    let mut host_cmds = BTreeMap::new();
    for h in &a.host_cmd {
        let (op, cmd) = h
            .split_once('=')
            .with_context(|| format!("--host-cmd {h:?}: expected OP=COMMAND"))?;
        host_cmds.insert(op.to_string(), cmd.to_string());
    }
    let c = repro_c::export(
        &sc,
        &ExportOptions {
            seed: a.seed,
            host_cmds,
        },
    )?;
    let src = match &a.output {
        Some(p) => {
            std::fs::write(p, &c).with_context(|| format!("writing {}", p.display()))?;
            Some(p.clone())
        }
        None if a.build.is_none() => {
            print!("{c}");
            None
        }
        None => anyhow::bail!("--build needs --output (the C file it compiles)"),
    };
    if let (Some(src), Some(bin)) = (src, &a.build) {
        repro_c::build::compile(repro_c::build::CROSS_CC, &src, bin)?;
        eprintln!("built {}", bin.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}
