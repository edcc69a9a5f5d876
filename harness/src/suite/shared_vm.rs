//! Scenarios of one machine shape back to back in one VM (`ccwrig run --vm shared`).
//!
//! What makes a debug suite slow is not its boots (a snapshot restore takes a quarter of a
//! second) but kmemleak: each reading scans all of memory twice and waits out kmemleak's
//! minimum age, about half of a debug scenario's time. In a shared VM one reading serves up to
//! [`LEAK_BATCH`] scenarios, and each object it reports goes to the scenario that allocated
//! it (the fuzzer's batching). Between two scenarios the VM is put back as between a phased
//! scenario's phases (vCPUs resumed, unplugged devices re-added) after the scenario's own
//! cleanup; the next scenario's baseline is taken from there.
//!
//! A VM is shared only while nothing went wrong in it: a scenario with any finding (before its
//! leaks are read), a tainted kernel or a failed restore ends the VM, and the next scenario
//! gets a fresh one. Scenarios that are run alone: phased ones (their phases already share
//! their VM), ones that shut the guest down, and ones with a `known_finding` (the bug they
//! exist for breaks the kernel they run on when it shows). If a VM dies with readings still
//! due, the scenarios waiting for them run again, each in a fresh VM with the same seed: a
//! verdict is never given without its kmemleak reading.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use crate::fuzz::worker::LEAK_BATCH;
use crate::image::Image;
use crate::machine::MachineSpec;
use crate::run::{self, KeptEvidence, RunOptions, RunResult, Session};
use crate::rundir::{Artifact, RunDir};
use crate::scenario::Scenario;

use super::{KernelChoice, SuiteError};

/// Whether scenarios share VMs: `fresh` (the default: one VM per scenario, so each verdict is
/// the scenario's alone) or `shared` (faster on debug, but a scenario runs on a kernel its
/// predecessors may have damaged without any finding: on 2026-12-03 the debug suite shared
/// crashed in `two_parents_parallel` after `rescan_while_unplugged_fd_held` had passed in
/// the same VM, a crash neither gives alone; `docs/DESIGN.md`, 'Shared VMs').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum VmUse {
    #[default]
    Fresh,
    Shared,
}

/// How a suite's scenarios get their VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub vm: VmUse,
    /// How many VMs run at once: fresh ones, or shared ones each going through the queue.
    pub jobs: usize,
}

impl Placement {
    /// One VM at a time, shared or not.
    pub fn one_at_a_time(vm: VmUse) -> Placement {
        Placement { vm, jobs: 1 }
    }
}

/// Whether `sc` may run in a VM another scenario ran in, or leave it for the next.
pub fn may_share(sc: &Scenario) -> bool {
    sc.history.is_empty() && !sc.shuts_down() && sc.known_finding.is_none()
}

/// A scenario's final result: the scenario, its run directory, and what it gave.
pub type Done<'a> = (&'a Scenario, PathBuf, Result<RunResult, SuiteError>);

/// What two scenarios must agree on to share a VM.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    bzimage: PathBuf,
    initrd: PathBuf,
    machine: MachineSpec,
    /// Not QEMU's, but where each scenario leaves the subchannels for the next.
    rest: ccwrig_proto::Rest,
}

/// A scenario run in the shared VM since the last kmemleak reading. Its start bounds the
/// window of the one before it; `pending` is what its own verdict waits for (none when its
/// leaks do not count: a crash, a failed cleanup, a dead guest).
struct Waiting<'a> {
    sc: &'a Scenario,
    dir: PathBuf,
    result: RunResult,
    start: u64,
    pending: Option<KeptEvidence>,
}

struct SharedVm<'a> {
    shape: Shape,
    session: Session,
    waiting: Vec<Waiting<'a>>,
    /// Scenarios run in it so far.
    ran: usize,
}

/// Runs `scenarios` (under `base/<name>`), sharing VMs as `placement.vm` and [`may_share`]
/// allow, and hands each result to `done` once it is final (a shared VM's scenarios after
/// their leaks are read, so not always in order). Shared VMs' directories are `base/vm-<N>`.
/// With `placement.jobs` above one, that many lanes take the next scenario from one queue,
/// each with a shared VM of its own: a debug scenario's time is mostly one guest thread (the
/// kmemleak scans, the css walk), so two VMs on two cores nearly double the throughput, as
/// for fresh VMs.
pub async fn run_all<'a>(
    scenarios: &'a [Scenario],
    kernel: &KernelChoice,
    seed: Option<u64>,
    boot: crate::vm::snapshot::BootMode,
    placement: Placement,
    base: &Path,
    mut done: impl FnMut(Done<'a>),
) {
    if placement.vm == VmUse::Fresh {
        let jobs = placement.jobs;
        return super::fresh::run_all(scenarios, kernel, seed, boot, jobs, base, &mut done).await;
    }
    let queue = RefCell::new(grouped(scenarios).into_iter());
    let vms = Cell::new(0usize);
    // Lanes are futures of this one task: a borrow lasts one call, never across an await.
    let done = RefCell::new(done);
    let lanes = (0..placement.jobs.max(1)).map(|_| {
        let lane = Lane {
            queue: &queue,
            vms: &vms,
            kernel,
            seed,
            boot,
            base,
        };
        lane.run(|d| (done.borrow_mut())(d))
    });
    futures::future::join_all(lanes).await;
}

/// One shared VM after the other, taking scenarios from the suite's queue.
struct Lane<'q, 'a> {
    queue: &'q RefCell<std::vec::IntoIter<&'a Scenario>>,
    /// Shared VMs booted so far by every lane (their directories' numbers).
    vms: &'q Cell<usize>,
    kernel: &'q KernelChoice,
    seed: Option<u64>,
    boot: crate::vm::snapshot::BootMode,
    base: &'q Path,
}

impl<'a> Lane<'_, 'a> {
    async fn run(self, mut done: impl FnMut(Done<'a>)) {
        let Lane {
            queue,
            vms,
            kernel,
            seed,
            boot,
            base,
        } = self;
        let mut vm: Option<SharedVm<'a>> = None;
        loop {
            let Some(sc) = queue.borrow_mut().next() else {
                break;
            };
            let dir = base.join(&sc.name);
            let image = match crate::image::build_for(sc.machine.nested) {
                Ok(i) => i,
                Err(e) => {
                    done((sc, dir, Err(e.into())));
                    continue;
                }
            };
            let (opts, shape) = match prepare(sc, kernel, &image, seed, boot, &dir) {
                Ok(p) => p,
                Err(e) => {
                    done((sc, dir, Err(e)));
                    continue;
                }
            };
            if !may_share(sc) {
                // In a VM of its own; the lane's shared VM waits for the next that shares.
                let r = run::run_scenario(sc, &opts).await.map_err(SuiteError::from);
                done((sc, dir, r));
                continue;
            }
            if vm.as_ref().is_some_and(|v| v.shape != shape) {
                retire(vm.take(), kernel, boot, &mut done).await;
            }
            if vm.is_none() {
                vms.set(vms.get() + 1);
                let mut vopts = opts.clone();
                vopts.run_dir = base.join(format!("vm-{}", vms.get()));
                match Session::boot(&shape.machine, &vopts).await {
                    Ok(mut session) => {
                        session.kmemleak_batch = true;
                        session.rejudge_leaks = true;
                        vm = Some(SharedVm {
                            shape: shape.clone(),
                            session,
                            waiting: vec![],
                            ran: 0,
                        });
                    }
                    Err(e) => {
                        done((sc, dir, Err(e.into())));
                        continue;
                    }
                }
            }
            let Some(v) = vm.as_mut() else { continue };
            let t0 = std::time::Instant::now();
            let seed = run::seed_for(sc, opts.seed);
            let ran = run::with_phase_seeds(sc, seed);
            let rundir = match RunDir::create(&dir) {
                Ok(d) => d,
                Err(e) => {
                    done((sc, dir, Err(run::RunError::Dir(e).into())));
                    continue;
                }
            };
            let program = match v.session.run_program(&ran, seed, &rundir).await {
                Ok(p) => p,
                Err(e) => {
                    done((sc, dir, Err(e.into())));
                    retire(vm.take(), kernel, boot, &mut done).await;
                    continue;
                }
            };
            let result = RunResult {
                scenario: sc.name.clone(),
                seed,
                kernel_release: v.session.hello.kernel_release.clone(),
                // Only the VM's first scenario waited for it to boot.
                boot_to_ready_ms: if v.ran == 0 {
                    v.session.boot.as_millis() as u64
                } else {
                    0
                },
                wall_ms: t0.elapsed().as_millis() as u64,
                verdict: program.verdict,
                run_dir: dir.clone(),
                phase: None,
                vm_dir: Some(v.session.dir.root().to_path_buf()),
            };
            v.ran += 1;
            let clean = result.verdict.findings.is_empty() && !v.session.tainted;
            match program.kmemleak_start {
                Some(start) => v.waiting.push(Waiting {
                    sc,
                    dir,
                    result,
                    start,
                    pending: program.pending_leaks,
                }),
                None => finish(sc, dir, result, &mut done),
            }
            if !clean {
                retire(vm.take(), kernel, boot, &mut done).await;
                continue;
            }
            if v.waiting.len() >= LEAK_BATCH && !read_leaks(v, &mut done).await {
                retire(vm.take(), kernel, boot, &mut done).await;
                continue;
            }
            if let Err(e) = run::restore::restore(&mut v.session, sc).await {
                tracing::warn!(
                    "shared VM {}: {e}; the next scenario gets a fresh VM",
                    v.session.dir.root().display()
                );
                retire(vm.take(), kernel, boot, &mut done).await;
            }
        }
        retire(vm.take(), kernel, boot, &mut done).await;
    }
}

/// `scenarios` with those of one machine shape next to each other (each shape's in their given
/// order), nested shapes first and the others in the order of their first scenario: the nested
/// scenarios are the longest on every profile (21–82 s each on debug, most others 2–25 s), and
/// started last they left one lane running them alone at the end of a debug suite.
pub(super) fn grouped(scenarios: &[Scenario]) -> Vec<&Scenario> {
    let key = |sc: &Scenario| {
        (
            sc.machine.nested,
            MachineSpec::of(&sc.machine).ok(),
            sc.machine.rest,
        )
    };
    let mut keys = Vec::new();
    for sc in scenarios {
        if !keys.contains(&key(sc)) {
            keys.push(key(sc));
        }
    }
    let mut order: Vec<&Scenario> = scenarios.iter().collect();
    order.sort_by_key(|sc| {
        let k = key(sc);
        (!k.0, keys.iter().position(|o| *o == k))
    });
    order
}

/// The options to run `sc` (its `kernel.json` written) and the shape of the VM it needs.
fn prepare(
    sc: &Scenario,
    kernel: &KernelChoice,
    image: &Image,
    seed: Option<u64>,
    boot: crate::vm::snapshot::BootMode,
    dir: &Path,
) -> Result<(RunOptions, Shape), SuiteError> {
    let opts = super::options_for(sc, kernel, image, seed, boot, dir)?;
    let machine = MachineSpec::of(&sc.machine).map_err(|source| run::RunError::Machine {
        scenario: sc.name.clone(),
        source,
    })?;
    let shape = Shape {
        bzimage: opts.kernel.bzimage.clone(),
        initrd: image.initrd.clone(),
        machine,
        rest: sc.machine.rest,
    };
    Ok((opts, shape))
}

/// Reads the leaks of the scenarios waiting in `v` and gives each its final verdict. A
/// reading that fails (the guest stopped answering) leaves them waiting: the VM is then
/// retired and they run again alone, rather than be judged without it.
async fn read_leaks<'a>(v: &mut SharedVm<'a>, done: &mut impl FnMut(Done<'a>)) -> bool {
    let starts: Vec<u64> = v.waiting.iter().map(|w| w.start).collect();
    let reports = match v.session.read_kmemleak_batch(&starts).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                "shared VM {}: kmemleak reading failed: {e}",
                v.session.dir.root().display()
            );
            return false;
        }
    };
    let reports = reports.into_iter().chain(std::iter::repeat(String::new()));
    for (w, report) in std::mem::take(&mut v.waiting).into_iter().zip(reports) {
        let Waiting {
            sc,
            dir,
            mut result,
            pending,
            ..
        } = w;
        if let Some(p) = pending {
            result.verdict = v.session.judge_with_leaks(p, Ok(report));
        }
        finish(sc, dir, result, done);
    }
    true
}

/// Ends a shared VM: its waiting scenarios get their leaks read, or, when the VM can no
/// longer be read (its kernel crashed or hung in a later scenario), run again alone.
async fn retire<'a>(
    vm: Option<SharedVm<'a>>,
    kernel: &KernelChoice,
    boot: crate::vm::snapshot::BootMode,
    done: &mut impl FnMut(Done<'a>),
) {
    let Some(mut v) = vm else { return };
    if v.waiting.iter().any(|w| w.pending.is_some()) && !v.session.tainted {
        read_leaks(&mut v, done).await;
    }
    let unread = std::mem::take(&mut v.waiting);
    let vm_dir = v.session.dir.root().to_path_buf();
    v.session.shutdown().await;
    for w in unread {
        if w.pending.is_none() {
            // Its verdict did not wait for the reading (a crash, a dead guest: leaks are not
            // judged after those).
            finish(w.sc, w.dir, w.result, done);
            continue;
        }
        tracing::warn!(
            "{}: its leaks were not read before its shared VM ({}) was lost; running it again alone",
            w.sc.name,
            vm_dir.display()
        );
        let again = w.dir.with_file_name(format!(
            "{}.alone",
            w.dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("scenario")
        ));
        let r = match crate::image::build_for(w.sc.machine.nested) {
            Ok(image) => {
                super::run_one(
                    w.sc,
                    kernel,
                    &image,
                    Some(w.result.seed),
                    boot,
                    again.clone(),
                )
                .await
            }
            Err(e) => Err(e.into()),
        };
        done((w.sc, again, r));
    }
}

/// Writes the scenario's `result.json` (its verdict is final) and hands it on.
fn finish<'a>(
    sc: &'a Scenario,
    dir: PathBuf,
    mut result: RunResult,
    done: &mut impl FnMut(Done<'a>),
) {
    let rd = RunDir::at(&dir);
    if !rd.write_json(Artifact::Result, &result) {
        result.verdict.lose_evidence(rd.lost());
    }
    done((sc, dir, Ok(result)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_is_the_default() {
        assert_eq!(VmUse::default(), VmUse::Fresh);
    }

    /// The suite's scenarios come out grouped by machine shape, nested ones first, every one of
    /// them once, and in the given order within a shape.
    #[test]
    fn scenarios_of_one_shape_run_next_to_each_other() {
        let all = crate::scenario::load_dir(&super::super::scenarios_dir())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let order = grouped(&all);
        assert_eq!(order.len(), all.len());
        let key = |sc: &Scenario| (sc.machine.nested, MachineSpec::of(&sc.machine).ok());
        let mut seen = Vec::new();
        for w in order.windows(2) {
            if key(w[0]) != key(w[1]) {
                assert!(
                    !seen.contains(&key(w[1])),
                    "{} is apart from its shape",
                    w[1].name
                );
                seen.push(key(w[0]));
            }
        }
        if let Some(last) = order.last() {
            seen.push(key(last));
        }
        assert!(seen.len() >= 2, "the suite has several machine shapes");
        let first_plain = order.iter().position(|s| !s.machine.nested);
        let last_nested = order.iter().rposition(|s| s.machine.nested);
        assert!(
            matches!((last_nested, first_plain), (Some(n), Some(p)) if n < p),
            "nested scenarios come first"
        );
        for shape in &seen {
            let given: Vec<&str> = all
                .iter()
                .filter(|s| key(s) == *shape)
                .map(|s| s.name.as_str())
                .collect();
            let ran: Vec<&str> = order
                .iter()
                .filter(|s| key(s) == *shape)
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(given, ran);
        }
    }

    /// Scenarios of the suite that run alone: the ones with their own known finding, the
    /// shutdowns and the phased ones; the plain ones share.
    #[test]
    fn which_scenarios_share() {
        let dir = super::super::scenarios_dir();
        let load = |name: &str| {
            crate::scenario::parse_file(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(may_share(&load("basic_lifecycle.toml")));
        assert!(!may_share(&load("poweroff_with_open_mdev.toml")));
        let known = load("reset_during_io_loop.toml");
        assert!(known.known_finding.is_some());
        assert!(!may_share(&known));
        let g = crate::fuzz::Generator::default();
        let phases: Vec<Scenario> = (0..2u64).map(|s| g.generate(s).program).collect();
        let phased = Scenario::from_phases(phases, "h", "two programs").expect("phases");
        assert!(!may_share(&phased));
    }
}
