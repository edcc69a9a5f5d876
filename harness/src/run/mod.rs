//! Runs one scenario in a fresh VM and leaves a run directory behind:
//! `console.log`, `dmesg.txt`, `trace.txt`, `qmp.log`, `agent.log`, `steps.jsonl`,
//! `scenario.toml` (the copy that ran, with its seed), `fsm.txt` and `result.json`.

mod check_op;
pub mod finding;
mod gcov;
pub mod host_ops;
mod kmemleak;
mod pace;
mod phases;
pub mod record;
pub mod restore;
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
pub use session::{KeptEvidence, Program, Session};
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
    #[error("after phase {phase}, the VM could not be put back for the next: {message}")]
    Restore { phase: usize, message: String },
}

/// The kernel a session boots and what the runner must know of it: how slow it runs (its
/// profile) and its FSM map, when its build left the driver sources. The caller knows these
/// from the build; the session does not go back to the cache for them.
#[derive(Debug, Clone)]
pub struct BootKernel {
    pub bzimage: PathBuf,
    /// The profile it was built with (`None`: a kernel ccwrig did not build).
    pub profile: Option<crate::kernel::Profile>,
    pub pace: Pace,
    /// The FSM map read from the kernel's own driver sources (a user's tree or patches may
    /// reorder the enums or change the jump table); None: the built-in map of its version.
    pub fsm_map: Option<crate::oracle::fsm::FsmMap>,
    /// Built with KCOV: every step asks for its coverage and each program writes
    /// `coverage.json`.
    pub cover: bool,
}

impl BootKernel {
    pub fn of_record(record: &crate::kernel::KernelRecord) -> BootKernel {
        BootKernel {
            bzimage: record.bzimage.clone(),
            profile: record.profile,
            // A kernel the harness did not build has no recorded profile: fast allowances.
            pace: Pace {
                slowdown: record.profile.map_or(1, |p| p.slowdown_with(record.cover)),
            },
            fsm_map: record
                .fsm_sources()
                .and_then(|(h, c)| crate::oracle::fsm::map_from_sources(&h, &c).ok()),
            cover: record.cover,
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
    /// A phased scenario that failed before its last phase: the phase (1-based) whose verdict
    /// this is (its files are in `phase<N>/` of the run directory); later phases did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<usize>,
    /// When the scenario shared a VM with others (`ccwrig run --vm shared`): that VM's
    /// directory, with its whole console, kernel log, trace, QMP log and QEMU command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_dir: Option<PathBuf>,
}

/// Runs `sc` in a fresh VM. Errors are for runs that could not happen at all (the VM never
/// booted); everything that happens in a booted VM is in the verdict.
///
/// A phased scenario runs its history phases first, in the same VM, each in `phase<N>/` of the
/// run directory, the VM put back between them as the fuzzer does between programs. The first
/// phase that fails ends the run with its verdict; the last phase runs in the run directory
/// itself, like an ordinary scenario.
pub async fn run_scenario(sc: &Scenario, opts: &RunOptions) -> Result<RunResult, RunError> {
    let t0 = std::time::Instant::now();
    let seed = seed_for(sc, opts.seed);
    let ran = with_phase_seeds(sc, seed);
    let machine = MachineSpec::of(&sc.machine).map_err(|source| RunError::Machine {
        scenario: sc.name.clone(),
        source,
    })?;
    let mut session = Session::boot(&machine, opts).await?;
    session.judge_power_off = true;
    let dir = session.dir.clone();
    let history = run_history(&mut session, &ran, &dir).await;
    let program = match history {
        Ok(None) => match session.run_program(&ran, seed, &dir).await {
            // The VM's power-off is the program's last act: what the kernel does in its
            // shutdown path is judged with the rest.
            Ok(p) => {
                let again = match (session.power_off(&dir).await, p.rejudge) {
                    (Some(off), Some(kept)) => session.judge_with_power_off(kept, off),
                    _ => None,
                };
                Ok((None, again.unwrap_or(p.verdict)))
            }
            Err(e) => Err(e),
        },
        Ok(Some((phase, verdict))) => {
            // The last phase never ran: the run directory still gets the file that ran.
            dir.write(Artifact::Scenario, ran.to_toml());
            Ok((Some(phase), verdict))
        }
        Err(e) => Err(e),
    };
    let (kernel_release, boot) = (session.hello.kernel_release.clone(), session.boot);
    session.shutdown().await;
    let (phase, verdict) = program?;
    let mut result = RunResult {
        scenario: sc.name.clone(),
        seed,
        kernel_release,
        boot_to_ready_ms: boot.as_millis() as u64,
        wall_ms: t0.elapsed().as_millis() as u64,
        verdict,
        run_dir: dir.root().to_path_buf(),
        phase,
        vm_dir: None,
    };
    // Written last, so its own loss can only be told here: the caller prints the verdict.
    if !dir.write_json(Artifact::Result, &result) {
        result.verdict.lose_evidence(dir.lost());
    }
    Ok(result)
}

/// The seed a run of `sc` uses: `fixed` (a replay), else the scenario's own, else a random one
/// (below 2^63, so that it stays a valid TOML integer in the recorded scenario).
pub fn seed_for(sc: &Scenario, fixed: Option<u64>) -> u64 {
    fixed
        .or(sc.race.seed)
        .unwrap_or_else(|| rand::random::<u64>() >> 1)
}

/// `sc` with `seed` for its last phase and a seed for every history phase that has none
/// (derived from `seed`, so that `--seed` replays the whole sequence).
pub fn with_phase_seeds(sc: &Scenario, seed: u64) -> Scenario {
    let mut ran = sc.clone();
    ran.race.seed = Some(seed);
    for (i, p) in ran.history.iter_mut().enumerate() {
        if p.race.seed.is_none() {
            p.race.seed = Some(crate::fuzz::campaign::program_seed(seed, i as u64) >> 1);
        }
    }
    ran
}

/// Runs the history phases of `sc` in `session`; `Some((phase, verdict))` when one failed
/// (the sequence's known finding counts in every phase).
async fn run_history(
    session: &mut Session,
    sc: &Scenario,
    dir: &crate::rundir::RunDir,
) -> Result<Option<(usize, Verdict)>, RunError> {
    for (i, p) in sc.history.iter().enumerate() {
        let phase = i + 1;
        let mut p = p.clone();
        if p.known_finding.is_none() {
            p.known_finding = sc.known_finding.clone();
        }
        let pdir = crate::rundir::RunDir::at(dir.root().join(format!("phase{phase}")));
        let seed = p.race.seed.unwrap_or(0);
        let program = session.run_program(&p, seed, &pdir).await?;
        if !program.verdict.passed || program.verdict.known_finding.is_some() || session.tainted {
            return Ok(Some((phase, program.verdict)));
        }
        restore::restore(session, &p)
            .await
            .map_err(|message| RunError::Restore { phase, message })?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phased_run_seeds_every_phase_and_keeps_recorded_seeds() {
        let g = crate::fuzz::Generator::default();
        let mut phases: Vec<Scenario> = (0..3u64).map(|s| g.generate(s).program).collect();
        phases[0].race.seed = Some(41);
        phases[1].race.seed = None;
        let sc = Scenario::from_phases(phases, "h", "three programs").expect("phases");
        let ran = with_phase_seeds(&sc, 1000);
        assert_eq!(
            ran.race.seed,
            Some(1000),
            "the run's seed is the last phase's"
        );
        assert_eq!(
            ran.history[0].race.seed,
            Some(41),
            "a recorded seed is replayed"
        );
        let derived = ran.history[1]
            .race
            .seed
            .expect("a seed for the unseeded phase");
        assert_eq!(
            with_phase_seeds(&sc, 1000).history[1].race.seed,
            Some(derived)
        );
        assert_ne!(
            with_phase_seeds(&sc, 1001).history[1].race.seed,
            Some(derived)
        );
        // Written out, the run's file replays the same seeds.
        let back = crate::scenario::parse_str(&ran.to_toml(), "h", None).expect("parses");
        assert_eq!(back, ran);
    }
}
