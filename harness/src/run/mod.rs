//! Runs one scenario in a fresh VM and leaves a run directory behind:
//! `console.log`, `dmesg.txt`, `trace.txt`, `qmp.log`, `agent.log`, `steps.jsonl`,
//! `scenario.toml` (the copy that ran, with its seed), `fsm.txt` and `result.json`.

pub mod finding;
pub mod host_ops;
mod kmemleak;
mod pace;
mod phases;
pub mod record;
mod session;
mod settle;
mod steps;
pub mod verdict;

use std::path::PathBuf;

use crate::machine::MachineSpec;
use crate::rundir::Artifact;
use crate::scenario::Scenario;
use crate::vm;
pub use finding::{Finding, FindingKind, Subject};
pub use pace::Pace;
pub use record::StepRecord;
pub use session::{Program, Session};
pub use steps::{jitter, LATE_ALLOWANCE};
pub use verdict::{Evidence, FsmReplay, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("boot failed: {0}")]
    Boot(#[from] vm::VmError),
    #[error("scenario {scenario}: {source}")]
    Machine {
        scenario: String,
        source: crate::machine::MachineError,
    },
    #[error("run directory: {0}")]
    Dir(#[from] crate::rundir::RunDirError),
}

/// The kernel a session boots and what the runner must know of it: how slow it runs (its
/// profile) and its FSM map, when its build left the driver sources. The caller knows these
/// from the build; the session does not go back to the cache for them.
#[derive(Debug, Clone)]
pub struct BootKernel {
    pub bzimage: PathBuf,
    pub pace: Pace,
    /// The FSM map read from the kernel's own driver sources (a user's tree or patches may
    /// reorder the enums or change the jump table); None: the built-in map of its version.
    pub fsm_map: Option<crate::oracle::fsm::FsmMap>,
}

impl BootKernel {
    pub fn of_record(record: &crate::kernel::KernelRecord) -> BootKernel {
        BootKernel {
            bzimage: record.bzimage.clone(),
            // A kernel the harness did not build has no recorded profile: fast allowances.
            pace: Pace {
                slowdown: record.profile.map_or(1, crate::kernel::Profile::slowdown),
            },
            fsm_map: record
                .fsm_sources()
                .and_then(|(h, c)| crate::oracle::fsm::map_from_sources(&h, &c).ok()),
        }
    }

    /// A bzImage and whatever its build record (if ccwrig built it) says about it.
    pub fn of_bzimage(bzimage: &std::path::Path) -> BootKernel {
        BootKernel::of_record(&crate::kernel::KernelRecord::of_bzimage(bzimage))
    }
}

/// How to run: which kernel, which seed, where the run directory goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub kernel: BootKernel,
    pub initrd: PathBuf,
    /// Fixes the seed (replay); otherwise the scenario's, otherwise a random one.
    pub seed: Option<u64>,
    pub run_dir: PathBuf,
    /// Extra kernel command line on top of the scenario's.
    pub append: String,
    /// Cold boot, or restore of the machine shape's VM snapshot.
    pub boot: vm::snapshot::BootMode,
}

impl RunOptions {
    /// No fixed seed, no extra command line.
    pub fn new(kernel: BootKernel, initrd: PathBuf, run_dir: PathBuf) -> RunOptions {
        RunOptions {
            kernel,
            initrd,
            seed: None,
            run_dir,
            append: String::new(),
            boot: vm::snapshot::BootMode::default(),
        }
    }
}

/// Everything a run produced, as `result.json` stores it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunResult {
    pub scenario: String,
    pub seed: u64,
    pub kernel_release: String,
    pub boot_to_ready_ms: u64,
    pub wall_ms: u64,
    pub verdict: Verdict,
    pub run_dir: PathBuf,
}

/// Runs `sc` in a fresh VM. Errors are for runs that could not happen at all (the VM never
/// booted); everything that happens in a booted VM is in the verdict.
pub async fn run_scenario(sc: &Scenario, opts: &RunOptions) -> Result<RunResult, RunError> {
    let t0 = std::time::Instant::now();
    // Below 2^63 so the seed stays a valid TOML integer in the recorded scenario.
    let seed = opts
        .seed
        .or(sc.race.seed)
        .unwrap_or_else(|| rand::random::<u64>() >> 1);
    let machine = MachineSpec::of(&sc.machine).map_err(|source| RunError::Machine {
        scenario: sc.name.clone(),
        source,
    })?;
    let mut session = Session::boot(&machine, opts).await?;
    let dir = session.dir.clone();
    let program = session.run_program(sc, seed, &dir).await;
    let (kernel_release, boot) = (session.hello.kernel_release.clone(), session.boot);
    session.shutdown().await;
    let program = program?;
    let mut result = RunResult {
        scenario: sc.name.clone(),
        seed,
        kernel_release,
        boot_to_ready_ms: boot.as_millis() as u64,
        wall_ms: t0.elapsed().as_millis() as u64,
        verdict: program.verdict,
        run_dir: dir.root().to_path_buf(),
    };
    // Written last, so its own loss can only be told here: the caller prints the verdict.
    if !dir.write_json(Artifact::Result, &result) {
        result.verdict.lose_evidence(dir.lost());
    }
    Ok(result)
}
