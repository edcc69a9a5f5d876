//! Subcommands. Shared here: how a command picks its kernel, and where its run goes.

pub mod bench;
pub mod bench_fuzz;
pub mod bench_suite;
pub mod boot;
pub mod ci_report;
pub mod compare;
pub mod cover;
pub mod fuzz;
pub mod kernel;
pub mod profile;
pub mod replay;
pub mod report;
pub mod repro_c;
pub mod run;
pub mod shell;
pub mod soak;
pub mod triage;

use std::path::PathBuf;

use anyhow::Context;
use ccwrig::kernel::{BuildRequest, Profile};

/// Which kernel to boot: a prebuilt bzImage, or one built (or found in the cache) from the
/// pinned source or the user's tree.
#[derive(clap::Args, Clone, Debug)]
pub struct KernelArgs {
    /// Kernel profile to build or look up [default: fast, or what a scenario asks for].
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// Boot this bzImage instead of building one.
    #[arg(long, conflicts_with_all = ["tree", "patches"])]
    pub kernel: Option<PathBuf>,
    /// Which pinned stable line to build (kernel/pin.toml: 6.12, 6.1) [default: the first].
    #[arg(long, conflicts_with_all = ["kernel", "tree"])]
    pub kernel_version: Option<String>,
    /// Build your own kernel tree (out of tree; the tree is not modified).
    #[arg(long)]
    pub tree: Option<PathBuf>,
    /// Apply this patch series (directory of *.patch in order, or an mbox) before building.
    #[arg(long)]
    pub patches: Option<PathBuf>,
    /// Start from this .config instead of allnoconfig (ccwrig's fragment is merged onto it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Build with KCOV (kernel/configs/cover.config): runs and fuzzing then record the kernel
    /// PCs each operation covered (`coverage.json`, read by `ccwrig cover`).
    #[arg(long, conflicts_with = "kernel")]
    pub cover: bool,
}

impl KernelArgs {
    pub fn request(&self) -> BuildRequest {
        BuildRequest {
            profile: self.profile.unwrap_or(Profile::Fast),
            version: self.kernel_version.clone(),
            tree: self.tree.clone(),
            patches: self.patches.clone(),
            config: self.config.clone(),
            cover: self.cover,
            jobs: None,
            progress: true,
        }
    }

    /// The kernel every scenario of a suite runs on.
    pub fn choice(&self) -> ccwrig::suite::KernelChoice {
        match &self.kernel {
            Some(k) => ccwrig::suite::KernelChoice::Prebuilt(k.clone()),
            None => ccwrig::suite::KernelChoice::Build {
                request: self.request(),
                force_profile: self.profile_given(),
            },
        }
    }

    /// Whether `--profile` was given (it then overrides scenarios' own profiles).
    pub fn profile_given(&self) -> bool {
        self.profile.is_some()
    }

    /// The bzImage to boot.
    pub fn bzimage(&self) -> anyhow::Result<PathBuf> {
        if let Some(k) = &self.kernel {
            anyhow::ensure!(k.exists(), "--kernel {}: no such file", k.display());
            return Ok(k.clone());
        }
        let k = ccwrig::kernel::build(&self.request()).context("kernel build")?;
        Ok(k.bzimage)
    }
}

/// How each VM of a command starts.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct BootArgs {
    /// `snapshot`: restore the machine shape's VM snapshot (taken by one cold boot the first
    /// time, kept in the cache); `cold`: boot every VM from the kernel's first instruction;
    /// `auto` (the default): `snapshot` for kernels ccwrig built (any profile), `cold` for a
    /// bzImage it did not.
    #[arg(long, value_enum, default_value_t)]
    pub boot: ccwrig::vm::snapshot::BootMode,
}

/// How many scenarios run at once (`run`, `bench suite`).
#[derive(clap::Args)]
pub struct JobsArgs {
    /// How many VMs run at once (default: one per CPU, as nextest runs them): fresh ones, a
    /// scenario each, or shared ones, each taking the next scenario from one queue. `--jobs 1`
    /// runs one VM at a time, for a result that depends on timing.
    #[arg(long)]
    pub jobs: Option<usize>,
}

impl JobsArgs {
    /// The number of VMs at once.
    pub fn resolve(&self) -> anyhow::Result<usize> {
        match self.jobs {
            Some(0) => anyhow::bail!("--jobs must be at least 1"),
            Some(n) => Ok(n),
            None => Ok(ccwrig::suite::fresh::default_jobs()),
        }
    }
}

/// One interactive VM on the default machine (`boot`, `shell`).
#[derive(clap::Args)]
pub struct VmArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Extra kernel command line.
    #[arg(long, default_value = "")]
    pub append: String,
    /// Where run directories go (default ./runs).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl VmArgs {
    /// The kernel and image built (or found), a fresh run directory named after `what`, and
    /// the QEMU command line of the default machine with `extra` and `--append`.
    pub fn prepare(
        &self,
        what: &str,
        extra: &str,
    ) -> anyhow::Result<(PathBuf, ccwrig::vm::QemuCommand)> {
        let bz = self.kernel.bzimage()?;
        let img = ccwrig::image::build().context("guest image")?;
        let dir = new_run_dir(self.out.as_ref(), what)?;
        let mut cmd =
            ccwrig::vm::QemuCommand::new(&bz, &img.initrd, ccwrig::vm::Sockets::in_dir(&dir))
                .append(extra)
                .append(&self.append);
        cmd.devices = ccwrig::vm::default_devices();
        Ok((dir, cmd))
    }
}

/// `runs/<utc time>-<name>` under `--out` (default: ./runs), created.
pub fn new_run_dir(out: Option<&PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let base = out.cloned().unwrap_or_else(|| PathBuf::from("runs"));
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_default();
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    // create_dir, not a check for existence first: two ccwrig processes started in the same
    // second (side-by-side benchmarks) must not share a directory.
    for n in 1u32.. {
        let dir = match n {
            1 => base.join(format!("{stamp}-{name}")),
            n => base.join(format!("{stamp}-{name}-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create run directory {}", dir.display()))
            }
        }
    }
    anyhow::bail!("no free run directory name under {}", base.display())
}

pub fn image(nested: bool) -> anyhow::Result<std::process::ExitCode> {
    let img = ccwrig::image::build_for(nested)?;
    println!("{}", img.initrd.display());
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::JobsArgs;

    /// Processes started in the same second each get a directory of their own.
    #[test]
    fn run_directories_made_at_once_are_all_distinct() {
        let out = tempfile::tempdir().expect("tempdir");
        let base = out.path().to_path_buf();
        let dirs: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| super::new_run_dir(Some(&base), "fuzz").expect("made")))
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let distinct: std::collections::BTreeSet<_> = dirs.iter().collect();
        assert_eq!(distinct.len(), 8, "{dirs:?}");
        assert!(dirs.iter().all(|d| d.is_dir()));
    }

    #[test]
    fn jobs_default_to_one_per_cpu() {
        assert_eq!(
            JobsArgs { jobs: None }.resolve().expect("unset"),
            ccwrig::suite::fresh::default_jobs()
        );
        assert_eq!(JobsArgs { jobs: Some(3) }.resolve().expect("3"), 3);
    }

    #[test]
    fn zero_jobs_are_refused_with_the_flag_named() {
        let e = JobsArgs { jobs: Some(0) }.resolve().unwrap_err();
        assert!(e.to_string().contains("--jobs"), "{e}");
    }
}
