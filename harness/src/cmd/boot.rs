//! `ccwrig boot`: the smallest end-to-end check that kernel, image, QEMU and agent work.

use std::time::Duration;

use anyhow::Context;
use ccwrig::vm;

use super::VmArgs;

#[derive(clap::Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub vm: VmArgs,
}

pub async fn run(a: BootArgs) -> anyhow::Result<std::process::ExitCode> {
    let (dir, cmd) = a.vm.prepare("boot", "")?;
    let run_dir = ccwrig::rundir::RunDir::at(&dir);
    let booted = tokio::select! {
        r = vm::boot(cmd, &run_dir, vm::ready_timeout(a.vm.kernel.request().slowdown())) => r,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the half-launched VM kills QEMU's process group.
            eprintln!("interrupted; QEMU stopped; artifacts in {}", dir.display());
            return Ok(std::process::ExitCode::from(130));
        }
    };
    let (vm, hello, took) =
        booted.with_context(|| format!("boot failed; artifacts in {}", dir.display()))?;
    println!(
        "kernel {} agent {}",
        hello.kernel_release, hello.agent_version
    );
    println!("boot_to_ready_ms {}", took.as_millis());
    let clean = vm.shutdown(Duration::from_secs(20)).await;
    if clean {
        println!("shutdown clean; run directory {}", dir.display());
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!(
            "QEMU did not exit cleanly after poweroff; it was killed. Artifacts in {}",
            dir.display()
        );
        Ok(std::process::ExitCode::from(1))
    }
}
