//! `ccwrig bench`: speed goals are met here, as printed numbers, not in tests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ccwrig::vm::{self, QemuCommand, Sockets};

use super::KernelArgs;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Boot the guest N times; print boot-to-ready (QEMU start to agent hello) statistics.
    Boot {
        #[command(flatten)]
        kernel: KernelArgs,
        #[arg(long, default_value_t = 10)]
        runs: u32,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(c: BenchCommand) -> anyhow::Result<std::process::ExitCode> {
    match c {
        BenchCommand::Boot { kernel, runs, out } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let bz = kernel.bzimage()?;
            let img = ccwrig::image::build().context("guest image")?;
            let base = super::new_run_dir(out.as_ref(), "bench-boot")?;
            let mut ms = Vec::new();
            for i in 0..runs {
                let dir = base.join(format!("{i:03}"));
                let mut cmd = QemuCommand::new(&bz, &img.initrd, Sockets::in_dir(&dir));
                cmd.devices = vm::default_devices();
                let (vm, _hello, took) = vm::boot(cmd, &dir)
                    .await
                    .with_context(|| format!("boot {i} failed; artifacts in {}", dir.display()))?;
                ms.push(took.as_secs_f64() * 1000.0);
                vm.shutdown(Duration::from_secs(20)).await;
            }
            ms.sort_by(f64::total_cmp);
            let median = if ms.len() % 2 == 1 {
                ms[ms.len() / 2]
            } else {
                (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
            };
            println!(
                "boot_to_ready_ms profile={} runs={} median={:.0} min={:.0} max={:.0}",
                kernel.request().profile.name(),
                runs,
                median,
                ms[0],
                ms[ms.len() - 1]
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
