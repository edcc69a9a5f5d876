//! `ccwrig bench`: speed goals are met here, as printed numbers, not in tests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ccwrig::kernel::Profile;
use ccwrig::rundir::RunDir;
use ccwrig::vm::snapshot::Snapshot;
use ccwrig::vm::{self, QemuCommand, Sockets};

use super::KernelArgs;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Boot the guest N times cold and restore it N times from its VM snapshot; print both
    /// ready times (QEMU start to the agent's answer) side by side. Without --profile,
    /// --kernel or --tree: each of --profiles, in one run.
    Boot {
        #[command(flatten)]
        kernel: KernelArgs,
        /// The profiles measured when no one kernel is named, comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "fast,debug")]
        profiles: Vec<Profile>,
        #[arg(long, default_value_t = 10)]
        runs: u32,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Blind generation against coverage feedback: for each seed both campaigns side by side
    /// (one VM each), their coverage read at each checkpoint and the time each took to find
    /// each finding; a table per arm and the mean of each mode.
    Fuzz(super::bench_fuzz::FuzzBenchArgs),
    /// The scenario library with a VM per scenario and with shared VMs (`run --vm`), in
    /// alternating order round by round: each pass's wall time and each scenario's verdicts
    /// both ways.
    Suite(super::bench_suite::SuiteBenchArgs),
}

/// One kernel's figures.
struct Figures {
    name: String,
    cold_ms: Vec<f64>,
    restore_ms: Vec<f64>,
    take_ms: f64,
}

pub async fn run(c: BenchCommand) -> anyhow::Result<std::process::ExitCode> {
    match c {
        BenchCommand::Fuzz(a) => super::bench_fuzz::run(a).await,
        BenchCommand::Suite(a) => super::bench_suite::run(a).await,
        BenchCommand::Boot {
            kernel,
            profiles,
            runs,
            out,
        } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let img = ccwrig::image::build().context("guest image")?;
            let base = super::new_run_dir(out.as_ref(), "bench-boot")?;
            let kernels: Vec<KernelArgs> =
                if kernel.profile.is_some() || kernel.kernel.is_some() || kernel.tree.is_some() {
                    vec![kernel]
                } else {
                    profiles
                        .into_iter()
                        .map(|p| KernelArgs {
                            profile: Some(p),
                            ..kernel.clone()
                        })
                        .collect()
                };
            let mut all = Vec::new();
            for k in &kernels {
                let req = k.request();
                let name = match (&k.kernel, req.cover) {
                    // A bzImage given: what its cache entry says it is, and which build.
                    (Some(bz), _) => prebuilt_name(bz),
                    (None, true) => format!("{}+cover", req.profile.name()),
                    (None, false) => req.profile.name().to_string(),
                };
                let dir = base.join(&name);
                all.push(bench_kernel(k, &name, &img.initrd, runs, &dir).await?);
            }
            println!("ready_ms side by side (median [min-max] of {runs} runs each):");
            println!(
                "{:<11} {:>22} {:>22} {:>8} {:>14}",
                "profile", "cold boot", "snapshot restore", "speedup", "snapshot take"
            );
            for f in &mut all {
                let (c, r) = (stats(&mut f.cold_ms), stats(&mut f.restore_ms));
                println!(
                    "{:<11} {:>22} {:>22} {:>7.1}x {:>11.0} ms",
                    f.name,
                    c.text(),
                    r.text(),
                    c.median / r.median,
                    f.take_ms
                );
            }
            println!("runs in {}", base.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// `debug@f0ac754b` for a bzImage from ccwrig's kernel cache, its file name for any other.
fn prebuilt_name(bz: &std::path::Path) -> String {
    let r = ccwrig::kernel::KernelRecord::of_bzimage(bz);
    match (r.profile, r.key) {
        (Some(p), Some(key)) => format!("{}@{}", p.name(), &key[..key.len().min(8)]),
        _ => bz
            .file_name()
            .map_or_else(|| "bzImage".into(), |n| n.to_string_lossy().into_owned()),
    }
}

/// `runs` cold boots of `kernel`, its snapshot (found or taken), `runs` restores.
async fn bench_kernel(
    kernel: &KernelArgs,
    name: &str,
    initrd: &std::path::Path,
    runs: u32,
    base: &std::path::Path,
) -> anyhow::Result<Figures> {
    let bz = kernel.bzimage()?;
    let ready = vm::ready_timeout(kernel.request().slowdown());
    let command = |dir: &std::path::Path| {
        let mut cmd = QemuCommand::new(&bz, initrd, Sockets::in_dir(dir));
        cmd.devices = vm::default_devices();
        cmd
    };
    let mut ms = Vec::new();
    // Where each boot's time went: host (QEMU start until the guest clock runs, plus
    // delivery of the hello), kernel (to `Run /init`), agent (/init to hello).
    let (mut host, mut kern, mut agent) = (Vec::new(), Vec::new(), Vec::new());
    let mut blocks = Vec::new();
    for i in 0..runs {
        let dir = base.join(format!("cold-{i:03}"));
        let (vm, hello, took) = vm::boot(command(&dir), &RunDir::at(&dir), ready)
            .await
            .with_context(|| format!("boot {i} failed; artifacts in {}", dir.display()))?;
        ms.push(took.as_secs_f64() * 1000.0);
        if let Some(n) = translated_blocks(&vm).await {
            blocks.push(n as f64);
        }
        host.push(took.as_secs_f64() * 1000.0 - hello.uptime_ms as f64);
        if let Some(init) = run_init_ms(&vm.console.text()) {
            kern.push(init);
            agent.push(hello.uptime_ms as f64 - init);
        }
        vm.shutdown(Duration::from_secs(20)).await;
    }
    let cold_ms = ms.clone();
    // Sorts `ms`, so its ends are min and max below.
    let mid = median(&mut ms);
    println!(
        "boot_to_ready_ms profile={name} runs={runs} median={mid:.0} min={:.0} max={:.0}",
        ms[0],
        ms[ms.len() - 1]
    );
    println!(
        "boot_breakdown_ms median host={:.0} kernel_to_init={:.0} agent={:.0}",
        median(&mut host),
        median(&mut kern),
        median(&mut agent)
    );
    // TCG translates each block of guest code once; most of a boot is that work, and
    // unlike the milliseconds above the count does not move with the host's load.
    println!(
        "boot_translated_blocks median={:.0} (guest code blocks QEMU translated by the hello)",
        median(&mut blocks)
    );

    let t0 = std::time::Instant::now();
    let snap = Snapshot::find_or_take(&command(base), ready)
        .await
        .context("VM snapshot")?;
    let take_ms = t0.elapsed().as_secs_f64() * 1000.0;
    println!(
        "snapshot {} ({} bytes; found or taken in {take_ms:.0} ms)",
        snap.dir.display(),
        snap.meta.vmstate_bytes
    );
    let mut restore_ms = Vec::new();
    let mut rblocks = Vec::new();
    for i in 0..runs {
        let dir = base.join(format!("restore-{i:03}"));
        let (vm, _hello, took) = snap
            .restore(command(&dir), &RunDir::at(&dir), ready)
            .await
            .with_context(|| format!("restore {i} failed; artifacts in {}", dir.display()))?;
        restore_ms.push(took.as_secs_f64() * 1000.0);
        if let Some(n) = translated_blocks(&vm).await {
            rblocks.push(n as f64);
        }
        vm.shutdown(Duration::from_secs(20)).await;
    }
    let r = stats(&mut restore_ms.clone());
    println!(
        "restore_to_ready_ms profile={name} runs={runs} median={:.0} min={:.0} max={:.0}",
        r.median, r.min, r.max
    );
    println!(
        "restore_translated_blocks median={:.0} (translated again after a restore, by the handshake)",
        median(&mut rblocks)
    );
    Ok(Figures {
        name: name.to_string(),
        cold_ms,
        restore_ms,
        take_ms,
    })
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn text(&self) -> String {
        format!("{:.0} [{:.0}-{:.0}]", self.median, self.min, self.max)
    }
}

fn stats(v: &mut [f64]) -> Stats {
    let median = median(v);
    Stats {
        median,
        min: v.first().copied().unwrap_or(f64::NAN),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

/// QEMU's count of translated blocks (`info jit`: "TB count"), asked right after the hello.
async fn translated_blocks(vm: &vm::Vm) -> Option<u64> {
    let cmd = qapi::qmp::human_monitor_command {
        command_line: "info jit".into(),
        cpu_index: None,
    };
    tb_count(&vm.qmp.execute(&cmd).await.ok()?)
}

fn tb_count(info_jit: &str) -> Option<u64> {
    info_jit.lines().find_map(|l| {
        l.trim()
            .strip_prefix("TB count")
            .and_then(|n| n.trim().parse().ok())
    })
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The guest-clock time of `Run /init as init process` in a console log, in ms.
fn run_init_ms(console: &str) -> Option<f64> {
    console.lines().find_map(|l| {
        let (ts, rest) = l.strip_prefix('[')?.split_once(']')?;
        rest.trim_start()
            .starts_with("Run /init")
            .then(|| ts.trim().parse::<f64>().ok().map(|s| s * 1000.0))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bzimage_outside_the_cache_is_named_by_its_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let bz = d.path().join("bzImage-mine");
        std::fs::write(&bz, b"not a kernel").expect("write");
        assert_eq!(prebuilt_name(&bz), "bzImage-mine");
    }

    #[test]
    fn finds_the_init_timestamp() {
        let log = "[    0.651086] Freeing unused kernel image (initmem) memory: 552K\n\
                   [    0.653625] Run /init as init process\n[    0.653700]   with arguments:\n";
        assert_eq!(run_init_ms(log), Some(653.625));
        assert_eq!(run_init_ms("no init here\n"), None);
    }

    #[test]
    fn reads_the_tb_count_of_info_jit() {
        // QEMU 10.0.2 `info jit` on the fast guest, first lines.
        let out = "Accelerator settings:\n\
                   one-insn-per-tb: off\n\
                   \n\
                   Translation buffer state:\n\
                   gen code size       23950099/1073659904\n\
                   TB count            37255\n\
                   TB avg target size  21 max=644 bytes\n";
        assert_eq!(tb_count(out), Some(37255));
        assert_eq!(tb_count("info jit is not available\n"), None);
    }

    #[test]
    fn stats_are_median_and_ends() {
        let s = stats(&mut [5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        assert_eq!(s.text(), "3 [1-5]");
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
