//! Running a set of scenario files: what `ccwrig run` and the nextest harness share.

pub mod fresh;
pub mod shared_vm;

use std::path::{Path, PathBuf};

use crate::image::Image;
use crate::kernel::{self, BuildRequest, Profile};
use crate::run::{self, RunOptions, RunResult};
use crate::scenario::Scenario;

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    /// The task running the scenario panicked or was cancelled.
    #[error("the scenario's task ended without a result: {0}")]
    Task(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The repository's `scenarios/` directory.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scenarios")
}

/// Which kernel a scenario runs on: an explicit bzImage, or a build request whose profile is
/// the scenario's own unless the caller forces one.
#[derive(Debug, Clone)]
pub enum KernelChoice {
    Prebuilt(PathBuf),
    Build {
        request: BuildRequest,
        force_profile: bool,
    },
}

impl KernelChoice {
    /// The default: the pinned source, the scenario's profile (fast when it names none).
    pub fn pinned() -> Self {
        KernelChoice::Build {
            request: BuildRequest::new(Profile::Fast),
            force_profile: false,
        }
    }

    pub fn bzimage_for(&self, sc: &Scenario) -> Result<PathBuf, SuiteError> {
        Ok(self.record_for(sc)?.bzimage)
    }

    /// The kernel for `sc` (built if needed) and what is known about it, for `kernel.json`.
    pub fn record_for(&self, sc: &Scenario) -> Result<kernel::KernelRecord, SuiteError> {
        match self {
            KernelChoice::Prebuilt(p) => Ok(kernel::KernelRecord::of_bzimage(p)),
            KernelChoice::Build {
                request,
                force_profile,
            } => {
                let mut req = request.clone();
                if !force_profile {
                    req.profile = sc.machine.profile.unwrap_or(Profile::Fast);
                }
                let k = kernel::build(&req)?;
                Ok(kernel::KernelRecord::of_bzimage(&k.bzimage).with_request(&req))
            }
        }
    }
}

/// Runs one scenario in a fresh VM under `run_dir`.
pub async fn run_one(
    sc: &Scenario,
    kernel: &KernelChoice,
    image: &Image,
    seed: Option<u64>,
    boot: crate::vm::snapshot::BootMode,
    run_dir: PathBuf,
) -> Result<RunResult, SuiteError> {
    let opts = options_for(sc, kernel, image, seed, boot, &run_dir)?;
    Ok(run::run_scenario(sc, &opts).await?)
}

/// The options to run `sc` under `run_dir`, whose `kernel.json` says which kernel it runs on
/// (written before booting, so that a run that dies early still says what it ran).
pub fn options_for(
    sc: &Scenario,
    kernel: &KernelChoice,
    image: &Image,
    seed: Option<u64>,
    boot: crate::vm::snapshot::BootMode,
    run_dir: &Path,
) -> Result<RunOptions, SuiteError> {
    let record = kernel.record_for(sc)?;
    std::fs::create_dir_all(run_dir)
        .and_then(|_| record.write(run_dir))
        .map_err(|source| SuiteError::Io {
            path: run_dir.join(crate::kernel::record::FILE),
            source,
        })?;
    let mut opts = RunOptions::new(
        run::BootKernel::of_record(&record),
        image.initrd.clone(),
        run_dir.to_path_buf(),
    );
    opts.seed = seed;
    opts.boot = boot;
    Ok(opts)
}
