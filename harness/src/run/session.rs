//! A booted VM that runs programs one after another, and one program's phases in it:
//! baseline, setup, race, late results, teardown and cleanup, the end-of-run checks, settling
//! the streams, and the verdict.

use std::time::Duration;

use ccwrig_proto::data::Snapshot;
use ccwrig_proto::{Op, Outcome};

use super::pace::Pace;
use super::phases::Phases;
use super::record::{Phase, Recorder, StepRecord};
use super::settle::{
    await_console_quiet, await_mark, heartbeat_fresh, liveness, mark, settle, snapshot,
};
use super::steps::{Ctx, LATE_ALLOWANCE};
use super::verdict::{self, Evidence, FsmReplay, Verdict};
use super::{FindingKind, RunError, RunOptions};
use crate::machine::MachineSpec;
use crate::rundir::{Artifact, RunDir};
use crate::scenario::{OpStep, Scenario};
use crate::vm::{self, Sockets, Vm};

mod coverage;
mod power_off;
use coverage::program_coverage;

/// A booted VM that runs programs one after another (one for `ccwrig run`, many for the
/// fuzzer). Each program is judged only on what the guest said while it ran.
pub struct Session {
    pub vm: Vm,
    pub hello: crate::agent::Hello,
    pub boot: Duration,
    pub dir: RunDir,
    /// Set once a program left the guest unusable (crash, hang, dead agent): reboot.
    pub tainted: bool,
    /// The FSM map read from the booted kernel's own driver sources, when its build left
    /// them (a user's tree or patches may reorder the enums or change the jump table).
    pub fsm_map: Option<crate::oracle::fsm::FsmMap>,
    /// How much slower the booted kernel's profile runs than the fast one: scales every
    /// deadline and wait.
    pub pace: Pace,
    /// The machine QEMU was started with: the devices the device-state oracle expects.
    pub machine: MachineSpec,
    /// The kernel has kmemleak: each program's leaks are read after its cleanup.
    pub kmemleak: bool,
    /// Leave kmemleak's reading to the caller, who reads once for several programs
    /// ([`Session::read_kmemleak_batch`]): each program then returns when its allocations
    /// started (`Program::kmemleak_start`) and its verdict does not judge kmemleak.
    pub kmemleak_batch: bool,
    /// With `kmemleak_batch`: each program also keeps its evidence (`Program::pending_leaks`)
    /// for [`Session::judge_with_leaks`] once the batch is read. A caller that judges leaks
    /// apart from the verdict (the fuzzer) leaves it off and copies nothing.
    pub rejudge_leaks: bool,
    /// Each program keeps its evidence (`Program::rejudge`) to be judged again with the
    /// VM's power-off ([`Session::power_off`], [`Session::judge_with_power_off`]): set by a
    /// caller that powers the VM off right after its last program.
    pub judge_power_off: bool,
    /// The kernel it runs: its vmlinux and `.config` describe where a stuck vCPU is.
    bzimage: std::path::PathBuf,
    /// A cover kernel's bzImage: each program's steps are traced with KCOV and its
    /// `coverage.json` names this kernel.
    pub cover: Option<std::path::PathBuf>,
    /// The union of the coverage of every program this VM ran, kept in the VM's own
    /// `coverage.json` when programs have directories of their own (the fuzzer's, which
    /// reuse one directory for every program).
    cover_total: std::sync::Mutex<Option<crate::coverage::kcov::ProgramCover>>,
    /// What the GCOV counters showed before the first program: the boot (or, restored from a
    /// snapshot, the snapshot's boot). Boot-time init runs nowhere else. `Some` exactly when
    /// the kernel has GCOV counters (a cover kernel): they are then zeroed before each
    /// program's steps and read after its teardown.
    gcov_boot: Option<crate::coverage::gcov::GcovCounts>,
    gcov_boot_taken: bool,
}

/// Where each of the VM's streams stood when a program started.
#[derive(Debug, Clone, Copy)]
pub(super) struct Marks {
    pub(super) console: usize,
    pub(super) kmsg: usize,
    pub(super) trace: usize,
    pub(super) qmp: usize,
}

impl Session {
    /// Boots `machine`; its streams go to `opts.run_dir`.
    pub async fn boot(machine: &MachineSpec, opts: &RunOptions) -> Result<Session, RunError> {
        let dir = RunDir::create(&opts.run_dir).map_err(RunError::Dir)?;
        let cmd = machine.qemu_command(
            &opts.kernel.bzimage,
            &opts.initrd,
            Sockets::in_dir(dir.root()),
            &opts.append,
        );
        let ready = vm::ready_timeout(opts.kernel.pace.slowdown);
        let mode = opts.boot.resolve(opts.kernel.profile);
        let (vm, hello, boot) = vm::snapshot::start(mode, cmd, &dir, ready).await?;
        let kmemleak = match super::kmemleak::start(&vm, opts.kernel.pace).await {
            Ok(start) => start.is_some(),
            Err(e) => {
                tracing::warn!("kmemleak after boot: {e}; leaks are not read in this VM");
                false
            }
        };
        let gcov_boot = match opts.kernel.cover {
            true => super::gcov::after_boot(&vm, opts.kernel.pace).await,
            false => None,
        };
        Ok(Session {
            gcov_boot,
            gcov_boot_taken: false,
            vm,
            hello,
            boot,
            dir,
            tainted: false,
            fsm_map: opts.kernel.fsm_map.clone(),
            pace: opts.kernel.pace,
            machine: machine.clone(),
            kmemleak,
            kmemleak_batch: false,
            rejudge_leaks: false,
            judge_power_off: false,
            bzimage: opts.kernel.bzimage.clone(),
            cover: opts.kernel.cover.then(|| opts.kernel.bzimage.clone()),
            cover_total: Default::default(),
        })
    }

    /// One kmemleak reading for programs run with [`Session::kmemleak_batch`] since the last
    /// one, given the `kmemleak_start` of each in order: the report of each, as
    /// `kmemleak.txt` would have held it.
    pub async fn read_kmemleak_batch(&self, starts: &[u64]) -> Result<Vec<String>, String> {
        super::kmemleak::read_batch(&self.vm, self.pace, starts).await
    }

    /// The boot's GCOV counters, the first time only: for a caller that counts a VM's boot
    /// once, apart from its programs.
    pub fn take_gcov_boot(&mut self) -> Option<crate::coverage::gcov::GcovCounts> {
        if std::mem::replace(&mut self.gcov_boot_taken, true) {
            return None;
        }
        self.gcov_boot.clone()
    }

    fn marks(&self) -> Marks {
        Marks {
            console: self.vm.console.len(),
            kmsg: self.vm.agent.kmsg_lines().len(),
            trace: self.vm.agent.trace_lines().len(),
            qmp: self.vm.qmp.events().len(),
        }
    }

    /// Runs one program (scenario) in this VM and judges it. `dir` receives `steps.jsonl`,
    /// `fsm.txt`, `scenario.toml` and, when it is not the VM's own directory, the program's
    /// slices of the console, kmsg and trace.
    pub async fn run_program(
        &mut self,
        sc: &Scenario,
        seed: u64,
        dir: &RunDir,
    ) -> Result<Program, RunError> {
        let t0 = std::time::Instant::now();
        let dir = &RunDir::create(dir.root()).map_err(RunError::Dir)?;
        let mut ran = sc.clone();
        ran.race.seed = Some(seed);
        dir.write(Artifact::Scenario, ran.to_toml());
        let marks = self.marks();
        let vm = &self.vm;
        let pace = self.pace;
        let late = pace.of(LATE_ALLOWANCE);
        let rec = Recorder::new(dir);
        let ctx = Ctx::new(vm, &rec, marks, pace, self.cover.is_some());

        let mut phases = Phases::default();
        let kmemleak_since = match self.kmemleak {
            true => Some(super::kmemleak::start(vm, pace).await),
            false => None,
        };
        let baseline = snapshot(vm, pace).await;
        let gcov_on = self.gcov_boot.is_some();
        if gcov_on {
            super::gcov::before_program(vm, pace).await;
        }
        phases.end("baseline");
        ctx.sequence(Phase::Setup, crate::scenario::SETUP_ACTOR, &sc.setup)
            .await;
        ctx.race(sc, seed).await;
        phases.end("steps");
        // A request the program still holds in an io_stall keeps io_mutex: whatever waits
        // behind it waits for the program, not for the kernel. Let it go before judging.
        ctx.release_stalls().await;
        ctx.collect_late(late).await;
        phases.end("late");
        if ctx.powered_off() {
            drop(ctx);
            return Ok(self
                .judge_poweroff(sc, marks, baseline, &rec, dir, t0)
                .await);
        }
        // After a crash the guest's state is the crash's: teardown and cleanup would only add
        // fallout (and wait out their deadlines on locks the crashed task holds).
        let crashed = ctx.crashed();
        // A crashed kernel's counters are not read: the request would wait on a dead guest.
        let mut gcov = None;
        if crashed {
            tracing::info!("{}: kernel crashed; teardown and cleanup skipped", sc.name);
        } else {
            ctx.sequence(Phase::Teardown, crate::scenario::SETUP_ACTOR, &sc.teardown)
                .await;
            ctx.collect_late(late).await;
            if gcov_on {
                gcov = super::gcov::after_program(vm, pace).await;
            }
            // Whatever the scenario left open or created is released, so that what remains in
            // the snapshot below is the kernel's, not the scenario's.
            ctx.step(
                Phase::Check,
                "check",
                0,
                0,
                &cleanup_step(sc.machine.rest),
                0,
            )
            .await;
            ctx.collect_late(late).await;
        }
        phases.end("teardown+cleanup");
        // No step is sent after this: the record is complete.
        let records = rec.records();
        let cover = self.write_coverage(&records, gcov, dir);

        // After a crash the snapshot has nothing to be compared with (leaks are not judged),
        // and a guest stuck in its crash would keep both requests waiting out their timeouts:
        // whether the agent still beats is the record.
        let crashed = crashed || ctx.crashed();
        // The settle marker goes out with the snapshot and the liveness probe, reads that make
        // the kernel log nothing: the console's own delay (sclp_vt220 flushes on a 50 ms
        // timer) passes while they run. It serves the settle below only if nothing else was
        // asked of the guest after them (`asked`); else a fresh marker is written there. What
        // the kernel logs on its own meanwhile (a late step's warning) is judged if it has
        // arrived, as with any marker: the boundary moves by the reads' few ms.
        let (after, alive, early_mark) = if crashed {
            (None, heartbeat_fresh(vm, pace), None)
        } else {
            tokio::join!(snapshot(vm, pace), liveness(vm, pace), mark(vm, pace))
        };
        let asked = vm.agent.requests_sent();
        phases.end("snapshot+liveness");
        let cleaned = !crashed
            && records.iter().any(|r| {
                matches!(r.op, Op::Cleanup { .. })
                    && r.late.as_ref().unwrap_or(&r.outcome) == &Outcome::Ok
            });
        let (after, devices) = match after {
            Some(a) if alive && cleaned => self.device_state(a, &records, sc.machine.rest).await,
            other => (other, vec![]),
        };
        phases.end("device-state");
        let mut kmemleak_start = None;
        let leaks_readable = alive && cleaned;
        let kmemleak = match kmemleak_since {
            // Also when this program's own leaks cannot be judged: its start still ends the
            // window of the program before it.
            Some(Ok(Some(Some(j)))) if self.kmemleak_batch => {
                kmemleak_start = Some(j);
                None
            }
            Some(Ok(Some(since))) if alive && cleaned => {
                let r = super::kmemleak::read_since(vm, pace, since).await;
                if let Ok(text) = &r {
                    if !text.is_empty() {
                        dir.write(Artifact::Kmemleak, text);
                    }
                }
                Some(r)
            }
            Some(Err(e)) => Some(Err(e)),
            _ => None,
        };
        phases.end("kmemleak");
        let stuck = match &after {
            Some(first) if alive && !crate::oracle::stuck::d_state(first).is_empty() => {
                tokio::time::sleep(pace.of(STUCK_RECHECK)).await;
                match snapshot(vm, pace).await {
                    Some(second) => crate::oracle::stuck::still_stuck(first, &second),
                    None => vec![],
                }
            }
            _ => vec![],
        };
        phases.end("stuck-check");
        let hung = !stuck.is_empty()
            || records
                .iter()
                .any(|r| matches!(r.outcome, Outcome::Blocked { .. }) && r.late.is_none());
        // A crash explains what it left blocked; the dump is for hangs without one.
        let blocked_dump = if (hung || !alive) && !crashed {
            Some(self.dump_blocked_tasks(alive, dir).await)
        } else {
            None
        };
        phases.end("blocked-dump");
        let late_streams = if crashed {
            await_console_quiet(vm).await;
            // A dead guest's console is all there is, and it has gone quiet.
            if alive {
                settle(vm, marks, alive, pace).await
            } else {
                vec![]
            }
        } else {
            match early_mark.filter(|_| alive && vm.agent.requests_sent() == asked) {
                Some(m) => await_mark(vm, marks, &m, pace).await,
                None => settle(vm, marks, alive, pace).await,
            }
        };
        phases.end("settle");
        tracing::debug!("program {} phases: {}", sc.name, phases.text());
        if !late_streams.is_empty() {
            tracing::warn!("marker did not arrive on {late_streams:?}; judging what did");
        }
        let mut ev = self.evidence(marks, baseline.as_ref(), after.as_ref(), alive);
        ev.blocked_dump = blocked_dump;
        ev.stuck = stuck;
        ev.devices = devices;
        ev.kmemleak = kmemleak;
        let kept = || KeptEvidence {
            sc: sc.clone(),
            records: records.clone(),
            ev: ev.clone(),
            dir: dir.clone(),
            console_from: marks.console,
        };
        let pending_leaks =
            (self.rejudge_leaks && kmemleak_start.is_some() && leaks_readable).then(kept);
        let rejudge = self.judge_power_off.then(kept);
        let (verdict, fsm) = self.verdict(sc, &records, ev, dir);
        // Also when the run passed (an expected crash, a known hang): such a guest would not
        // power off, and the next program would run on a broken kernel.
        if !verdict.crashes.is_empty()
            || !alive
            || verdict.findings.iter().any(|f| f.kind == FindingKind::Hang)
        {
            self.tainted = true;
        }
        Ok(Program {
            kmemleak_start,
            pending_leaks,
            rejudge,
            ..Program::judged(verdict, records, &fsm, cover, t0)
        })
    }

    /// The verdict of a program run with [`Session::kmemleak_batch`], judged again with its
    /// part of the batch's kmemleak reading (`report`, as `kmemleak.txt` holds it; written
    /// there when not empty).
    pub fn judge_with_leaks(
        &self,
        pending: KeptEvidence,
        report: Result<String, String>,
    ) -> Verdict {
        let KeptEvidence {
            sc,
            records,
            mut ev,
            dir,
            ..
        } = pending;
        if let Ok(text) = &report {
            if !text.is_empty() {
                dir.write(Artifact::Kmemleak, text);
            }
        }
        ev.kmemleak = Some(report);
        self.verdict(&sc, &records, ev, &dir).0
    }

    /// The device-state oracle after cleanup: the guest must show the devices QEMU has. The
    /// guest learns of a device_del or device_add through a CRW and the cio work queue, so a
    /// disagreement is looked at again until it goes away or DEVICE_SETTLE (scaled) passes.
    /// Returns the latest snapshot and what still disagrees.
    pub(super) async fn device_state(
        &self,
        mut snapshot_now: Snapshot,
        records: &[StepRecord],
        rest: ccwrig_proto::Rest,
    ) -> (Option<Snapshot>, Vec<crate::oracle::devices::Disagreement>) {
        use crate::oracle::devices::{compare, expected_present, final_once_settled, HostEvent};
        let events: Vec<HostEvent> = records
            .iter()
            .filter(|r| r.outcome == Outcome::Ok)
            .filter_map(|r| match &r.op {
                Op::DeviceDel { device } => self
                    .machine
                    .slot(device)
                    .map(|s| HostEvent::Removed(s.bus_id())),
                Op::DeviceAdd { device } => self
                    .machine
                    .slot(device)
                    .map(|s| HostEvent::Added(s.bus_id())),
                _ => None,
            })
            .collect();
        let present = expected_present(&self.machine.bus_ids(), &events);
        let t0 = tokio::time::Instant::now();
        let until = t0 + self.pace.of(device_settle(self.pace));
        // A subchannel lost (or kept) by cio is final once cio has settled: waiting out the
        // bound for it cost 80 s per such finding on debug. The settle is the agent's cleanup,
        // which has nothing left to undo: this runs only after a cleanup that succeeded.
        let (mut settle_asked, mut settled) = (false, false);
        loop {
            let found = compare(&present, &snapshot_now, rest);
            let final_after_settle = final_once_settled(&found);
            let done = settled && final_after_settle;
            if found.is_empty() || done || tokio::time::Instant::now() >= until {
                if !events.is_empty() {
                    tracing::info!(
                        "device state {} after {} ms",
                        if found.is_empty() {
                            "agrees"
                        } else {
                            "disagrees"
                        },
                        t0.elapsed().as_millis()
                    );
                }
                return (Some(snapshot_now), found);
            }
            if final_after_settle && !settle_asked {
                settle_asked = true;
                match super::restore::cio_settle(self, rest).await {
                    Ok(()) => settled = true,
                    Err(e) => tracing::warn!("device state: {e}; waiting out the bound instead"),
                }
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            match snapshot(&self.vm, self.pace).await {
                Some(s) => snapshot_now = s,
                None => return (Some(snapshot_now), found),
            }
        }
    }

    /// Writes the program's slices of the streams (when it has its own directory) and the FSM
    /// replay, then judges. The replay is returned for the program's coverage.
    fn verdict(
        &self,
        sc: &Scenario,
        records: &[StepRecord],
        mut ev: Evidence,
        dir: &RunDir,
    ) -> (Verdict, FsmReplay) {
        if dir.root() != self.dir.root() {
            dir.write(Artifact::Console, &ev.console);
            dir.write(Artifact::Dmesg, ev.kmsg.join("\n") + "\n");
            dir.write(Artifact::Trace, ev.trace.join("\n") + "\n");
        }
        let fsm = FsmReplay::new(&ev.trace, &self.hello.kernel_release, self.fsm_map.as_ref());
        dir.write(Artifact::Fsm, fsm.text());
        ev.lost_artifacts = self.dir.lost();
        for l in dir.lost() {
            if !ev.lost_artifacts.contains(&l) {
                ev.lost_artifacts.push(l);
            }
        }
        let v = verdict::judge_knowing(sc, records, &ev, &fsm, &self.known_everywhere(sc));
        (v, fsm)
    }

    /// Asks the kernel for its blocked tasks (sysrq `w`, and `t` when the agent is gone) and
    /// returns what the console printed in answer; also written to `blocked-tasks.txt`. With a
    /// dead agent the request goes through the console's own sysrq (Ctrl-O + key, handled by
    /// sclp_vt220 in the kernel).
    async fn dump_blocked_tasks(&self, alive: bool, dir: &RunDir) -> String {
        let from = self.vm.console.len();
        if alive {
            let _ = self
                .vm
                .agent
                .request("check", Op::Sysrq { key: 'w' }, self.pace.ms(5000))
                .await;
        } else {
            let _ = self.vm.console.send(b"\x0fw");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = self.vm.console.send(b"\x0ft");
        }
        tokio::time::sleep(self.pace.of(Duration::from_millis(2000))).await;
        let dump = self.vm.console.text_since(from);
        dir.write(Artifact::BlockedTasks, &dump);
        dump
    }

    fn evidence(
        &self,
        m: Marks,
        baseline: Option<&Snapshot>,
        after: Option<&Snapshot>,
        alive: bool,
    ) -> Evidence {
        let console = self.vm.console.text_since(m.console);
        Evidence {
            console,
            kmsg: self
                .vm
                .agent
                .kmsg_lines()
                .split_off(m.kmsg.min(self.vm.agent.kmsg_lines().len())),
            trace: self
                .vm
                .agent
                .trace_lines()
                .split_off(m.trace.min(self.vm.agent.trace_lines().len())),
            qmp_events: self
                .vm
                .qmp
                .events()
                .split_off(m.qmp.min(self.vm.qmp.events().len())),
            baseline: baseline.map(crate::oracle::leaks::SysSnapshot::of),
            after: after.map(crate::oracle::leaks::SysSnapshot::of),
            alive,
            blocked_dump: None,
            stuck: vec![],
            lost_artifacts: vec![],
            powered_off: None,
            shutdown_hung: None,
            restart: false,
            devices: vec![],
            kmemleak: None,
        }
    }

    /// The known findings that hold for this program: the emulator's, and those of the suite
    /// the scenario file belongs to (the nearest `findings/known.toml` in its directory or the
    /// one above: `scenarios/debug/x.toml` uses `scenarios/`'s; none for generated programs).
    /// A list that does not parse is said, and judged without.
    fn known_everywhere(&self, sc: &Scenario) -> Vec<crate::scenario::KnownFinding> {
        let mut known = crate::scenario::known_emulator().unwrap_or_else(|e| {
            tracing::error!("{e}: judging without the emulator's known findings");
            vec![]
        });
        let Some(dir) = sc.path.as_deref().and_then(std::path::Path::parent) else {
            return known;
        };
        let dir = std::iter::successors(Some(dir), |d| d.parent())
            .take(2)
            .find(|d| d.join(crate::scenario::KNOWN_EVERYWHERE).is_file())
            .unwrap_or(dir);
        known.extend(crate::scenario::known_everywhere(dir).unwrap_or_else(|e| {
            tracing::error!("{e}: judging without the suite's known findings");
            vec![]
        }));
        known
    }

    /// Powers off (or kills, if the guest is beyond that), unjudged: a VM the fuzzer retires
    /// or a shared VM at its end. At most 15 s, less when QEMU itself is stuck.
    pub async fn shutdown(mut self) {
        if !self.tainted {
            self.vm.request_poweroff().await;
            self.wait_powered_off(Duration::from_secs(15)).await;
        }
        self.vm.kill();
    }
}

/// One program's outcome.
pub struct Program {
    pub verdict: Verdict,
    pub records: Vec<StepRecord>,
    /// A cover kernel's KCOV coverage of the program (also in its `coverage.json`).
    pub cover: Option<crate::coverage::kcov::ProgramCover>,
    pub wall_ms: u64,
    /// FSM points of the program's slice of the trace (see [`crate::coverage::fsm`]).
    pub coverage: crate::coverage::Coverage,
    /// The FSM map's cells with a handler; `None` when no map knows the kernel.
    pub fsm_reachable: Option<usize>,
    /// With [`Session::kmemleak_batch`]: the jiffies its allocations started at, for the
    /// caller's reading (whose judgement it is whether this program's own leaks count: not
    /// after a crash, a failed cleanup or a dead guest). `None` when its leaks were read
    /// here or the kernel has no kmemleak.
    pub kmemleak_start: Option<u64>,
    /// With [`Session::kmemleak_batch`], for a program whose leaks count (the guest alive,
    /// its cleanup done): what [`Session::judge_with_leaks`] needs to judge it again once
    /// the batch is read.
    pub pending_leaks: Option<KeptEvidence>,
    /// With [`Session::judge_power_off`]: the program's evidence, for
    /// [`Session::judge_with_power_off`].
    pub rejudge: Option<KeptEvidence>,
}

impl Program {
    /// A judged program with nothing left to read or judge again.
    pub(super) fn judged(
        verdict: Verdict,
        records: Vec<StepRecord>,
        fsm: &FsmReplay,
        cover: Option<crate::coverage::kcov::ProgramCover>,
        t0: std::time::Instant,
    ) -> Program {
        Program {
            verdict,
            records,
            coverage: program_coverage(fsm, cover.as_ref()),
            cover,
            wall_ms: t0.elapsed().as_millis() as u64,
            fsm_reachable: fsm.reachable_cells(),
            kmemleak_start: None,
            pending_leaks: None,
            rejudge: None,
        }
    }
}

/// A program's evidence kept for its verdict to be given again: once a batch's kmemleak
/// reading is in, or once the VM has powered off.
#[derive(Debug, Clone)]
pub struct KeptEvidence {
    sc: Scenario,
    records: Vec<StepRecord>,
    ev: Evidence,
    dir: RunDir,
    /// Where the program's console slice starts: a later verdict reads on from there.
    console_from: usize,
}

/// How long the guest has (fast profile, scaled) to show the devices QEMU has after the
/// program's cleanup: the CRW of a device_del or device_add and the cio work it queues.
/// A hot-unplug whose fd was held unregisters its subchannel only once cleanup closes the fd.
const DEVICE_SETTLE: Duration = Duration::from_secs(3);

/// The same on any kernel slower than the fast profile (sanitizers, KCOV), per unit of its
/// slowdown. Its cio and async work also wait behind KASAN's and kmemleak's own work: on the debug profile on a busy host, a ccw device
/// given back to io_subchannel came online 43 s (guest time) after the rebind, past the fast
/// bound scaled (24 s), and was reported missing: a false alarm of ours. A device that never
/// comes back is still reported, only later.
const DEVICE_SETTLE_SANITIZER: Duration = Duration::from_secs(10);

fn device_settle(pace: Pace) -> Duration {
    if pace.slowdown > 1 {
        DEVICE_SETTLE_SANITIZER
    } else {
        DEVICE_SETTLE
    }
}

/// How long a powered-off guest has (on the fast profile) from the poweroff answer until QEMU
/// exits: device_shutdown, then the SCLP power-off. Seconds under TCG at most.
const POWEROFF_WAIT: Duration = Duration::from_secs(15);

/// How long a D-state thread of the end-of-run snapshot gets to wake before it counts as
/// stuck (scaled by the profile's slowdown).
pub(super) const STUCK_RECHECK: Duration = Duration::from_secs(1);

pub(super) fn cleanup_step(rest: ccwrig_proto::Rest) -> OpStep {
    let mut s = OpStep::new(Op::Cleanup {
        online_wait_ms: ccwrig_proto::default_online_wait_ms(),
        rest,
    });
    s.deadline_ms = Some(10_000);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The debug profile's device-state bound covers the 43 s a device took to come back
    /// under io_subchannel on a busy host (fuzz 2026-12-02); the fast bound stays short.
    #[test]
    fn device_state_waits_for_a_slow_kernel() {
        let debug = Pace {
            slowdown: crate::kernel::Profile::Debug.slowdown(),
        };
        assert!(debug.of(device_settle(debug)) >= Duration::from_secs(43));
        assert_eq!(Pace::FAST.of(device_settle(Pace::FAST)), DEVICE_SETTLE);
    }

    /// A KCOV build of the fast profile is judged with slower bounds than the fast profile
    /// itself: its cleanup's auto-online ran past the fast 3 s in the blind cover campaign.
    #[test]
    fn a_cover_kernel_gets_more_time_than_its_profile() {
        let fast = crate::kernel::Profile::Fast;
        let cover = Pace {
            slowdown: fast.slowdown_with(true),
        };
        assert!(cover.slowdown > fast.slowdown());
        assert!(cover.of(device_settle(cover)) > Pace::FAST.of(device_settle(Pace::FAST)));
        let debug = crate::kernel::Profile::Debug;
        assert!(debug.slowdown_with(true) > debug.slowdown_with(false));
    }
}
