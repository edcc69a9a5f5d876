//! `ccwrig kernel build`.

use std::time::Instant;

use super::KernelArgs;

#[derive(clap::Subcommand)]
pub enum KernelCommand {
    /// Build a kernel (or find it in the cache) and print its bzImage path.
    Build(KernelArgs),
}

pub fn run(c: KernelCommand) -> anyhow::Result<std::process::ExitCode> {
    match c {
        KernelCommand::Build(a) => {
            anyhow::ensure!(
                a.kernel.is_none(),
                "--kernel names a prebuilt kernel; `kernel build` builds one"
            );
            let t = Instant::now();
            let k = ccwrig::kernel::build(&a.request())?;
            eprintln!(
                "kernel {} ({}) {} in {:.2} s; build log {}",
                k.release,
                k.key.get(..16).unwrap_or(&k.key),
                if k.cache_hit { "cache hit" } else { "built" },
                t.elapsed().as_secs_f64(),
                k.build_log.display()
            );
            println!("{}", k.bzimage.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
