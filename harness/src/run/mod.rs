//! Runs one scenario in a fresh VM and leaves a run directory behind:
//! `console.log`, `dmesg.txt`, `trace.txt`, `qmp.log`, `agent.log`, `steps.jsonl`,
//! `scenario.toml` (the copy that ran, with its seed), `fsm.txt` and `result.json`.

pub mod finding;
pub mod host_ops;
pub mod record;
pub mod verdict;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ccwrig_proto::{Op, Outcome, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Barrier;

use crate::machine::MachineSpec;
use crate::rundir::{Artifact, RunDir};
use crate::scenario::{Expect, OpStep, Scenario, Step};
use crate::vm::{self, Sockets, Vm};
pub use finding::{Finding, FindingKind, Subject};
pub use record::StepRecord;
use record::{Phase, Recorder};
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

/// A blocked step waiting for its late result.
struct Pending {
    record: usize,
    request_id: u64,
    step: OpStep,
    /// Whether the step allowed `blocked` at its deadline.
    matched_at_deadline: bool,
}

struct Ctx<'a> {
    vm: &'a Vm,
    rec: &'a Recorder,
    pending: std::sync::Mutex<Vec<Pending>>,
    /// Where the program's slice of the console and of the QMP events starts.
    marks: Marks,
    /// Set once a crash was seen: later steps are not sent.
    crash_seen: std::sync::atomic::AtomicBool,
    /// Scales every deadline and wait, written for the fast profile, to the booted kernel.
    pace: Pace,
}

/// How much slower than the fast profile the booted kernel runs (its profile's slowdown):
/// every deadline a scenario states and every wait the runner makes is written for the fast
/// kernel and scaled by this, so a slow sanitizer kernel is not mistaken for a hung one.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub slowdown: u32,
}

impl Pace {
    pub const FAST: Pace = Pace { slowdown: 1 };

    pub fn ms(self, fast_ms: u64) -> u64 {
        fast_ms.saturating_mul(u64::from(self.slowdown.max(1)))
    }

    pub fn of(self, fast: Duration) -> Duration {
        fast.saturating_mul(self.slowdown.max(1))
    }
}

fn jitter(seed: u64, rep: u32, actor: &str, index: usize, range: (u64, u64)) -> u64 {
    if range.1 == 0 {
        return 0;
    }
    // One stream per (rep, actor, step): the same seed replays the same delays whatever the
    // interleaving of the actors.
    let mut h: u64 =
        seed ^ ((rep as u64) << 32) ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in actor.bytes() {
        h = h.rotate_left(5) ^ b as u64;
    }
    ChaCha8Rng::seed_from_u64(h).random_range(range.0..=range.1)
}

impl Ctx<'_> {
    async fn step(
        &self,
        phase: Phase,
        actor: &str,
        rep: u32,
        index: usize,
        s: &OpStep,
        jitter_ms: u64,
    ) {
        if jitter_ms > 0 {
            tokio::time::sleep(Duration::from_millis(jitter_ms)).await;
        }
        // The first crash is the finding (as in syzkaller): what later steps would do to a
        // crashed kernel is fallout, and each could wait out its deadline.
        if self.crash_seen.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!(
                "{actor} step {index} ({}) not sent: the kernel crashed",
                s.op.name()
            );
            return;
        }
        let sent_ms = self.vm.agent.now_ms();
        let deadline_ms = self.pace.ms(s.deadline_ms());
        // The host actor's sleeps run on the host: with the vCPUs stopped a guest sleep would
        // never answer.
        let on_host = s.op.side() == Side::Host
            || (actor == crate::scenario::HOST_ACTOR && matches!(s.op, Op::Sleep { .. }));
        let failed = |message: String| ccwrig_proto::OpResult {
            outcome: Outcome::Failed { message },
            start_us: 0,
            duration_us: 0,
            data: serde_json::Value::Null,
        };
        let abandoned = || failed("abandoned: the kernel crashed while it ran".into());
        let (request_id, result) = match on_host {
            true => match self.until_crash(host_ops::execute(self.vm, &s.op)).await {
                Some(r) => (None, r),
                None => (None, abandoned()),
            },
            false => match self
                .until_crash(self.vm.agent.request(actor, s.op.clone(), deadline_ms))
                .await
            {
                Some(Ok((id, r))) => (Some(id), r),
                Some(Err(e)) => (None, failed(e.to_string())),
                None => (None, abandoned()),
            },
        };
        let (outcome, guest_start_us, guest_duration_us, data) = StepRecord::from_result(&result);
        let blocked = matches!(outcome, Outcome::Blocked { .. });
        let r = StepRecord {
            phase,
            actor: actor.to_string(),
            rep,
            index,
            line: s.line,
            label: s.label.clone(),
            op: s.op.clone(),
            sent_ms,
            answered_ms: self.vm.agent.now_ms(),
            jitter_ms,
            matched: s.accepts(&outcome),
            outcome,
            late: None,
            late_ms: None,
            guest_start_us,
            guest_duration_us,
            data,
            expected: s.expect.iter().map(|e| e.to_string()).collect(),
            request_id,
            deadline_ms,
        };
        tracing::info!("{}", r.summary());
        let idx = self.rec.push(r);
        if let (true, Some(request_id)) = (blocked, request_id) {
            if let Ok(mut p) = self.pending.lock() {
                p.push(Pending {
                    record: idx,
                    request_id,
                    step: s.clone(),
                    matched_at_deadline: s.accepts(&Outcome::Blocked {
                        after_ms: deadline_ms,
                    }),
                });
            }
        }
    }

    async fn sequence(&self, phase: Phase, actor: &str, steps: &[Step]) {
        for (i, st) in steps.iter().enumerate() {
            if let Step::Op(s) = st {
                self.step(phase, actor, 0, i, s, 0).await;
            }
        }
    }

    /// Releases every `io_stall` the program took and did not release (its actors' tails do,
    /// unless a crash or a blocked step stopped them).
    async fn release_stalls(&self) {
        for handle in outstanding_stalls(&self.rec.records()) {
            let mut s = OpStep::new(Op::IoRelease {
                handle,
                irq_wait_ms: 500,
            });
            s.expect = vec![Expect::Any];
            self.step(Phase::Check, "check", 0, 0, &s, 0).await;
        }
    }

    /// Waits (up to `allowance`) for every blocked step to finish and records how it did.
    /// Stops waiting once the kernel has crashed: what a crash left blocked stays blocked, and
    /// the crash, not the wait, is the finding.
    async fn collect_late(&self, allowance: Duration) {
        let pending: Vec<Pending> = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        let until = tokio::time::Instant::now() + allowance;
        for p in pending {
            loop {
                let left = until.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Some(res) = self
                    .vm
                    .agent
                    .wait_late(p.request_id, left.min(CRASH_POLL))
                    .await
                {
                    // "ok" means "ok eventually" unless the step stated its deadline.
                    let ok = late_accepted(&p.step.expect, &res.outcome)
                        && (p.matched_at_deadline || p.step.deadline_ms.is_none());
                    self.rec
                        .set_late(p.record, res.outcome, self.vm.agent.now_ms(), ok);
                    break;
                }
                if self.crashed() {
                    return;
                }
            }
        }
    }

    /// Runs `fut` unless the kernel crashes first (then None): a step the crash interrupted
    /// is given up instead of waited out to its deadline.
    async fn until_crash<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return Some(r),
                _ = tokio::time::sleep(CRASH_POLL) => {
                    if self.crashed() {
                        return None;
                    }
                }
            }
        }
    }

    /// Whether the kernel crashed since the program started: a crash report on its slice of
    /// the console, or QEMU's GUEST_PANICKED. Once seen, remembered.
    fn crashed(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.crash_seen.load(Relaxed) {
            return true;
        }
        let seen = self.crash_in_streams();
        if seen {
            self.crash_seen.store(true, Relaxed);
        }
        seen
    }

    fn crash_in_streams(&self) -> bool {
        let qmp = self.vm.qmp.events();
        if qmp
            .get(self.marks.qmp.min(qmp.len())..)
            .is_some_and(|ev| ev.iter().any(|e| e.name == "GUEST_PANICKED"))
        {
            return true;
        }
        let slice = self.vm.console.text_since(self.marks.console);
        !crate::oracle::crash::detect(&slice).is_empty()
    }
}

/// The handles whose `io_stall` succeeded and that no later step released.
fn outstanding_stalls(records: &[StepRecord]) -> Vec<String> {
    let mut held: Vec<String> = Vec::new();
    for r in records {
        match &r.op {
            Op::IoStall { handle, .. } if r.outcome == Outcome::Ok => {
                if !held.contains(handle) {
                    held.push(handle.clone());
                }
            }
            Op::IoRelease { handle, .. } => held.retain(|h| h != handle),
            _ => {}
        }
    }
    held
}

/// How often a step or a wait for late results looks for a crash.
const CRASH_POLL: Duration = Duration::from_millis(250);

/// A blocked operation that finishes must finish well: `ok`, or an errno the step allowed.
fn late_accepted(expect: &[Expect], late: &Outcome) -> bool {
    matches!(late, Outcome::Ok)
        || expect
            .iter()
            .any(|e| !matches!(e, Expect::Blocked) && e.matches(late))
}

/// Names every barrier and how many actors meet there.
fn barriers(sc: &Scenario) -> HashMap<String, Arc<Barrier>> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for a in &sc.actors {
        let mut seen = std::collections::HashSet::new();
        for s in &a.steps {
            if let Step::Barrier { name, .. } = s {
                if seen.insert(name.clone()) {
                    *count.entry(name.clone()).or_default() += 1;
                }
            }
        }
    }
    count
        .into_iter()
        .map(|(n, c)| (n, Arc::new(Barrier::new(c))))
        .collect()
}

/// How long after the race blocked operations may take to finish before they count as hung,
/// on the fast profile; slower kernels get it times their `Profile::slowdown` (a rescan on
/// the debug kernel, busy with KASAN and lockdep, is not a hang at 15 s).
const LATE_ALLOWANCE: Duration = Duration::from_secs(15);
/// A barrier nobody else reaches (an actor failed to get there) must not hang the run.
const BARRIER_WAIT: Duration = Duration::from_secs(60);

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
}

/// Where each of the VM's streams stood when a program started.
#[derive(Debug, Clone, Copy)]
struct Marks {
    console: usize,
    kmsg: usize,
    trace: usize,
    qmp: usize,
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
        let (vm, hello, boot) = vm::boot(cmd, &dir).await?;
        Ok(Session {
            vm,
            hello,
            boot,
            dir,
            tainted: false,
            fsm_map: opts.kernel.fsm_map.clone(),
            pace: opts.kernel.pace,
        })
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
        let ctx = Ctx {
            vm,
            rec: &rec,
            pending: Default::default(),
            marks,
            crash_seen: Default::default(),
            pace,
        };

        let mut phases = Phases::default();
        let baseline = snapshot(vm, pace).await;
        phases.end("baseline");
        ctx.sequence(Phase::Setup, crate::scenario::SETUP_ACTOR, &sc.setup)
            .await;
        for rep in 0..sc.race.repeat.max(1) {
            let bars = barriers(sc);
            let actors = sc.actors.iter().map(|a| {
                let ctx = &ctx;
                let bars = &bars;
                async move {
                    let mut after_barrier = false;
                    for (i, st) in a.steps.iter().enumerate() {
                        match st {
                            Step::Barrier { name, .. } => {
                                if let Some(b) = bars.get(name) {
                                    let _ = tokio::time::timeout(BARRIER_WAIT, b.wait()).await;
                                }
                                after_barrier = true;
                            }
                            Step::Op(s) => {
                                let j = if after_barrier {
                                    jitter(
                                        seed,
                                        rep,
                                        &a.name,
                                        i,
                                        s.jitter_ms.unwrap_or(sc.race.jitter_ms),
                                    )
                                } else {
                                    0
                                };
                                ctx.step(Phase::Race, &a.name, rep, i, s, j).await;
                                after_barrier = false;
                            }
                        }
                    }
                }
            });
            futures::future::join_all(actors).await;
        }
        phases.end("steps");
        // A request the program still holds in an io_stall keeps io_mutex: whatever waits
        // behind it waits for the program, not for the kernel. Let it go before judging.
        ctx.release_stalls().await;
        ctx.collect_late(late).await;
        phases.end("late");
        // After a crash the guest's state is the crash's: teardown and cleanup would only add
        // fallout (and wait out their deadlines on locks the crashed task holds).
        let crashed = ctx.crashed();
        if crashed {
            tracing::info!("{}: kernel crashed; teardown and cleanup skipped", sc.name);
        } else {
            ctx.sequence(Phase::Teardown, crate::scenario::SETUP_ACTOR, &sc.teardown)
                .await;
            ctx.collect_late(late).await;
            // Whatever the scenario left open or created is released, so that what remains in
            // the snapshot below is the kernel's, not the scenario's.
            ctx.step(Phase::Check, "check", 0, 0, &cleanup_step(), 0)
                .await;
            ctx.collect_late(late).await;
        }
        phases.end("teardown+cleanup");

        // After a crash the snapshot has nothing to be compared with (leaks are not judged),
        // and a guest stuck in its crash would keep both requests waiting out their timeouts:
        // whether the agent still beats is the record.
        let crashed = crashed || ctx.crashed();
        let (after, alive) = if crashed {
            (None, heartbeat_fresh(vm, pace))
        } else {
            (snapshot(vm, pace).await, liveness(vm, pace).await)
        };
        phases.end("snapshot+liveness");
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
            || rec
                .records()
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
            settle(vm, marks, alive, pace).await
        };
        phases.end("settle");
        tracing::debug!("program {} phases: {}", sc.name, phases.text());
        if !late_streams.is_empty() {
            tracing::warn!("marker did not arrive on {late_streams:?}; judging what did");
        }
        let mut ev = self.evidence(marks, baseline.as_ref(), after.as_ref(), alive);
        ev.blocked_dump = blocked_dump;
        ev.stuck = stuck;
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
        let records = rec.records();
        let verdict = verdict::judge(sc, &records, &ev, &fsm);
        // Also when the run passed (an expected crash, a known hang): such a guest would not
        // power off, and the next program would run on a broken kernel.
        if !verdict.crashes.is_empty()
            || !alive
            || verdict.findings.iter().any(|f| f.kind == FindingKind::Hang)
        {
            self.tainted = true;
        }
        Ok(Program {
            verdict,
            records,
            wall_ms: t0.elapsed().as_millis() as u64,
        })
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
        baseline: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
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
            baseline: baseline.map(crate::oracle::leaks::SysSnapshot::from_json),
            after: after.map(crate::oracle::leaks::SysSnapshot::from_json),
            alive,
            blocked_dump: None,
            stuck: vec![],
            lost_artifacts: vec![],
        }
    }

    /// Powers off (or kills, if the guest is beyond that).
    pub async fn shutdown(self) {
        let mut vm = self.vm;
        if self.tainted {
            vm.kill();
        } else {
            vm.shutdown(Duration::from_secs(15)).await;
        }
    }
}

/// One program's outcome.
pub struct Program {
    pub verdict: Verdict,
    pub records: Vec<StepRecord>,
    pub wall_ms: u64,
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

fn cleanup_step() -> OpStep {
    let mut s = OpStep::new(Op::Cleanup);
    s.deadline_ms = Some(10_000);
    s
}

async fn snapshot(vm: &Vm, pace: Pace) -> Option<serde_json::Value> {
    match vm.agent.request("check", Op::Snapshot, pace.ms(5000)).await {
        Ok((_, r)) if r.outcome == Outcome::Ok => Some(r.data),
        _ => None,
    }
}

/// Where a program's wall time went, for `CCWRIG_LOG=ccwrig::run=debug`.
struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            last: std::time::Instant::now(),
            done: vec![],
        }
    }
}

impl Phases {
    fn end(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    fn text(&self) -> String {
        self.done
            .iter()
            .map(|(n, d)| format!("{n} {} ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How long a D-state thread of the end-of-run snapshot gets to wake before it counts as
/// stuck (scaled by the profile's slowdown).
const STUCK_RECHECK: Duration = Duration::from_secs(1);

/// How long the kernel's streams get to deliver the settle marker.
const SETTLE_WAIT: Duration = Duration::from_secs(3);
/// A crashing kernel has finished its report when the console has been this quiet. Under
/// TCG an oops prints a line every few ms, with gaps of ~10 ms (register dumps, code).
const CRASH_QUIET: Duration = Duration::from_millis(500);
/// ... or after this long (a kernel that keeps printing: stalls, repeated warnings).
const CRASH_PRINT_MAX: Duration = Duration::from_secs(10);

/// After a crash: waits until the kernel has finished printing. A crash is noticed on its
/// first lines, and the settle marker cannot vouch for the rest: written while the oops is
/// still printing, it lands in the middle of it. Judged too early, a report is cut after
/// its header and titled without its function (`illegal operation` instead of `illegal
/// operation in vfio_ccw_mdev_ioctl`), which splits one bug into several findings.
async fn await_console_quiet(vm: &Vm) {
    let start = tokio::time::Instant::now();
    let mut len = vm.console.len();
    let mut changed = start;
    while start.elapsed() < CRASH_PRINT_MAX {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = vm.console.len();
        if now != len {
            len = now;
            changed = tokio::time::Instant::now();
        } else if changed.elapsed() >= CRASH_QUIET {
            return;
        }
    }
}

/// Waits until what the kernel logged and traced before now has reached the host: the agent
/// writes a marker to /dev/kmsg and the trace buffer, and its arrival on kmsg, trace and the
/// console (which lags both) proves the lines before it are in. A fixed sleep would either
/// waste time on every program or cut off a slow console mid-oops. Returns the streams that
/// did not show the marker in time; with no agent the console gets a fixed grace period.
async fn settle(vm: &Vm, m: Marks, alive: bool, pace: Pace) -> Vec<&'static str> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if !alive {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return vec![];
    }
    let text = format!(
        "settle {}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mark = vm
        .agent
        .request("check", Op::Mark { text: text.clone() }, pace.ms(2000));
    let written = match tokio::time::timeout(pace.of(SETTLE_WAIT), mark).await {
        Ok(Ok((_, r))) if r.outcome == Outcome::Ok => r.data,
        _ => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return vec!["mark"];
        }
    };
    let needle = format!("ccwrig-mark: {text}");
    let until = tokio::time::Instant::now() + pace.of(SETTLE_WAIT);
    loop {
        let mut missing = vec![];
        if written["kmsg"] == true {
            if !vm.agent.kmsg_has(m.kmsg, &needle) {
                missing.push("kmsg");
            }
            if !vm.console.has(m.console, &needle) {
                missing.push("console");
            }
        }
        if written["trace"] == true && !vm.agent.trace_has(m.trace, &needle) {
            missing.push("trace");
        }
        if missing.is_empty() || tokio::time::Instant::now() >= until {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The agent's heartbeat is recent (no request: for a guest that may be stuck in a crash).
fn heartbeat_fresh(vm: &Vm, pace: Pace) -> bool {
    vm.agent
        .heartbeat_age()
        .is_some_and(|a| a < pace.of(Duration::from_secs(2)))
}

/// The guest still answers: a fresh request gets an answer and heartbeats are recent.
async fn liveness(vm: &Vm, pace: Pace) -> bool {
    let answered = matches!(
        vm.agent.request("check", Op::Sleep { ms: 0 }, pace.ms(2000)).await,
        Ok((_, r)) if r.outcome == Outcome::Ok
    );
    // Before the agent's first heartbeat (a program that ends right after boot) the answer
    // alone is the evidence.
    answered
        && vm
            .agent
            .heartbeat_age()
            .is_none_or(|a| a < pace.of(Duration::from_secs(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: Op, outcome: Outcome) -> StepRecord {
        StepRecord {
            phase: Phase::Race,
            actor: "g0".into(),
            rep: 0,
            index: 0,
            line: 0,
            label: None,
            op,
            sent_ms: 0,
            answered_ms: 0,
            jitter_ms: 0,
            outcome,
            late: None,
            late_ms: None,
            guest_start_us: 0,
            guest_duration_us: 0,
            data: serde_json::Value::Null,
            expected: vec![],
            matched: true,
            request_id: None,
            deadline_ms: 1500,
        }
    }

    #[test]
    fn stalls_the_program_kept_are_the_ones_to_release() {
        let stall = |h: &str, o| {
            rec(
                Op::IoStall {
                    handle: h.into(),
                    wait_ms: 500,
                },
                o,
            )
        };
        let release = |h: &str| {
            rec(
                Op::IoRelease {
                    handle: h.into(),
                    irq_wait_ms: 500,
                },
                Outcome::Ok,
            )
        };
        // The shape of the fuzzer's self-made hang: g0 stalls h0, resets h0 (blocked behind
        // its own stall), and never reaches its tail's release.
        let records = vec![
            stall("h0", Outcome::Ok),
            rec(
                Op::Reset {
                    handle: "h0".into(),
                },
                Outcome::Blocked { after_ms: 1500 },
            ),
            stall("h1", Outcome::Ok),
            release("h1"),
            stall(
                "h2",
                Outcome::Failed {
                    message: "no fault".into(),
                },
            ),
        ];
        assert_eq!(outstanding_stalls(&records), vec!["h0".to_string()]);
        assert!(outstanding_stalls(&records[2..]).is_empty());
    }
}
