//! `ccwrig profile -- <command>`: boots the guest with QEMU's gdbstub, runs the command in the
//! guest through the agent (`--repeat` times), samples every vCPU's PSW address meanwhile,
//! and prints the functions the busy samples fell in. A kernel developer's answer to "why
//! is this slow under TCG" (kmemleak's scan, the css walk on the debug profile): see
//! `kernel/configs/README.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ccwrig::rundir::{Artifact, RunDir};
use ccwrig::symbolize::sampler::{self, Sampler};
use ccwrig::vm;

use super::VmArgs;

#[derive(clap::Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Pause between two samples, in ms. Each sample stops the VM for a round trip through
    /// the gdbstub (guest time stands still meanwhile).
    #[arg(long, default_value_t = 50)]
    pub interval_ms: u64,
    /// Run the command this many times, one after the other, while sampling.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Functions to print, most sampled first.
    #[arg(long, default_value_t = 30)]
    pub top: usize,
    /// The command, run in the guest with its output captured (e.g. `sh -c 'echo scan >
    /// /sys/kernel/debug/kmemleak'`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub async fn run(a: ProfileArgs) -> anyhow::Result<std::process::ExitCode> {
    let (dir, cmd) = a.vm.prepare("profile", "")?;
    let bz = cmd.kernel.clone();
    let vmlinux = ccwrig::kernel::KernelRecord::of_bzimage(&bz)
        .vmlinux
        .with_context(|| format!("no vmlinux next to {}: nothing to count by", bz.display()))?;
    let data = std::fs::read(&vmlinux).with_context(|| format!("reading {}", vmlinux.display()))?;
    let symbols = ccwrig::symbolize::Symbols::parse(&data)
        .with_context(|| format!("symbols of {}", vmlinux.display()))?;
    let port =
        ccwrig::symbolize::gdb::free_port().context("no free loopback port for the gdbstub")?;
    let ready = vm::ready_timeout(a.vm.kernel.request().slowdown());
    let (vm, hello, took) = vm::boot(cmd.gdb(port), &RunDir::at(&dir), ready)
        .await
        .with_context(|| format!("boot failed; artifacts in {}", dir.display()))?;
    eprintln!(
        "ccwrig: kernel {} ready in {} ms; sampling every {} ms",
        hello.kernel_release,
        took.as_millis(),
        a.interval_ms
    );
    let offset = super::shell::kaslr_offset(&vm, &symbols)
        .await
        .context("the guest's _stext (from /proc/kallsyms): without it no address maps")?;

    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_millis(a.interval_ms);
    let sampling = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<u64>, usize)> {
            let mut s = Sampler::attach(port)?;
            let vcpus = s.vcpus();
            let mut pcs = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                pcs.extend(s.sample()?);
                std::thread::sleep(interval);
            }
            s.detach()?;
            Ok((pcs, vcpus))
        })
    };
    let t0 = std::time::Instant::now();
    let mut failed = None;
    for i in 0..a.repeat {
        let op = ccwrig::proto::Op::Exec {
            argv: a.command.clone(),
        };
        // Sampling stops the VM for most of each round trip: a command gets hours.
        if let Err(e) = vm.agent.request("profile", op, 3_600_000).await {
            failed = Some(format!("run {} of {:?}: {e}", i + 1, a.command));
            break;
        }
    }
    let wall = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (pcs, vcpus) = sampling.await.context("the sampling thread")??;
    let _ = vm.shutdown(Duration::from_secs(10)).await;

    // Link-time bounds of the kernel's text: anything else (a lowcore address of a vCPU in a
    // wait state, the amode31 section's few helpers) is not counted by function.
    let text_range = match (
        symbols.lookup("_stext", None),
        symbols.lookup("_etext", None),
    ) {
        (Some((s, _)), Some((e, _))) => s.addr..e.addr,
        _ => anyhow::bail!("no _stext/_etext in {}", vmlinux.display()),
    };
    let hist = sampler::histogram(&pcs, |pc| {
        let link = pc.wrapping_sub(offset);
        text_range
            .contains(&link)
            .then(|| symbols.containing(link).map(|(f, _, _)| f))
            .flatten()
    });
    let busy = hist.busy();
    let mut text = format!(
        "{} samples ({} stops of {vcpus} vCPUs) in {:.1} s of {:?} × {}: {} idle, {} outside \
         the kernel's text, {busy} busy\n",
        pcs.len(),
        pcs.len() / vcpus.max(1),
        wall.as_secs_f64(),
        a.command,
        a.repeat,
        hist.idle,
        hist.outside,
    );
    for (f, n) in hist.functions.iter().take(a.top) {
        text.push_str(&format!(
            "{n:6} {:5.1}%  {f}\n",
            100.0 * *n as f64 / busy.max(1) as f64
        ));
    }
    print!("{text}");
    let rd = RunDir::at(&dir);
    if !rd.write(Artifact::Profile, &text) {
        anyhow::bail!("could not write the profile into {}", dir.display());
    }
    eprintln!(
        "ccwrig: profile in {}",
        dir.join(Artifact::Profile.file_name()).display()
    );
    match failed {
        Some(e) => anyhow::bail!("{e}; the samples up to then are above"),
        None => Ok(std::process::ExitCode::SUCCESS),
    }
}
