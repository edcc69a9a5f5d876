//! Runs one scenario in a fresh VM and leaves a run directory behind:
//! `console.log`, `dmesg.txt`, `trace.txt`, `qmp.log`, `agent.log`, `steps.jsonl`,
//! `scenario.toml` (the copy that ran, with its seed), `fsm.txt` and `result.json`.

pub mod host_ops;
pub mod record;
pub mod verdict;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ccwrig_proto::{Op, Outcome, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Barrier;

use crate::scenario::{Expect, OpStep, Scenario, Step};
use crate::vm::{self, CcwDevice, QemuCommand, Sockets, Vm};
pub use record::StepRecord;
use record::{Phase, Recorder};
pub use verdict::{Evidence, Finding, FindingKind, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("boot failed: {0}")]
    Boot(#[from] vm::VmError),
    #[error("scenario {scenario}: device {id}: {source}")]
    Devno {
        scenario: String,
        id: String,
        source: vm::qemu_args::DevnoError,
    },
    #[error("run directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to run: which kernel, which seed, where the run directory goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub bzimage: PathBuf,
    pub initrd: PathBuf,
    /// Fixes the seed (replay); otherwise the scenario's, otherwise a random one.
    pub seed: Option<u64>,
    pub run_dir: PathBuf,
    /// Extra kernel command line on top of the scenario's.
    pub append: String,
}

/// Everything a run produced, as `result.json` stores it.
#[derive(Debug, Clone, serde::Serialize)]
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
}

struct Ctx<'a> {
    vm: &'a Vm,
    rec: &'a Recorder,
    pending: std::sync::Mutex<Vec<Pending>>,
    /// Where the program's slice of the console and of the QMP events starts.
    marks: Marks,
    /// Set once a crash was seen: later steps are not sent.
    crash_seen: std::sync::atomic::AtomicBool,
}

/// The delay before an actor's first step after a barrier (also written into C reproducers).
pub fn jitter(seed: u64, rep: u32, actor: &str, index: usize, range: (u64, u64)) -> u64 {
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
                .until_crash(self.vm.agent.request(actor, s.op.clone(), s.deadline_ms))
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
        };
        tracing::info!("{}", r.summary());
        let idx = self.rec.push(r);
        if let (true, Some(request_id)) = (blocked, request_id) {
            if let Ok(mut p) = self.pending.lock() {
                p.push(Pending {
                    record: idx,
                    request_id,
                    step: s.clone(),
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
                    let ok = late_accepted(&p.step.expect, &res.outcome);
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
pub const LATE_ALLOWANCE: Duration = Duration::from_secs(15);
/// A barrier nobody else reaches (an actor failed to get there) must not hang the run.
const BARRIER_WAIT: Duration = Duration::from_secs(60);

pub fn qemu_command(sc: &Scenario, opts: &RunOptions) -> Result<QemuCommand, RunError> {
    let mut cmd = QemuCommand::new(&opts.bzimage, &opts.initrd, Sockets::in_dir(&opts.run_dir))
        .append(&sc.machine.append)
        .append(&opts.append);
    if sc.machine.nested {
        cmd = cmd.memory_mib(crate::vm::NESTED_MEMORY_MIB);
    }
    for d in &sc.machine.devices {
        let devno = d.devno.parse().map_err(|source| RunError::Devno {
            scenario: sc.name.clone(),
            id: d.id.clone(),
            source,
        })?;
        cmd = cmd.device(CcwDevice::virtio_rng(&d.id, devno));
    }
    Ok(cmd)
}

/// A booted VM that runs programs one after another (one for `ccwrig run`, many for the
/// fuzzer). Each program is judged only on what the guest said while it ran.
pub struct Session {
    pub vm: Vm,
    pub hello: crate::agent::Hello,
    pub boot: Duration,
    pub dir: PathBuf,
    /// Set once a program left the guest unusable (crash, hang, dead agent): reboot.
    pub tainted: bool,
    /// The FSM map read from the booted kernel's own driver sources, when its build left
    /// them (a user's tree or patches may reorder the enums or change the jump table).
    pub fsm_map: Option<crate::oracle::fsm::FsmMap>,
    /// How much slower the booted kernel's profile runs than the fast one: scales the
    /// allowances (LATE_ALLOWANCE, STUCK_RECHECK).
    pub slowdown: u32,
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
    /// Boots a VM for `sc`'s machine; its streams go to `dir`.
    pub async fn boot(sc: &Scenario, opts: &RunOptions) -> Result<Session, RunError> {
        let dir = opts.run_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| RunError::Io {
            path: dir.clone(),
            source,
        })?;
        let cmd = qemu_command(sc, opts)?;
        let (vm, hello, boot) = vm::boot(cmd, &dir).await?;
        let record = crate::kernel::KernelRecord::of_bzimage(&opts.bzimage);
        let fsm_map = record
            .fsm_sources()
            .and_then(|(h, c)| crate::oracle::fsm::map_from_sources(&h, &c).ok());
        // A kernel the harness did not build has no recorded profile: fast allowances.
        let slowdown = record.profile.map_or(1, crate::kernel::Profile::slowdown);
        Ok(Session {
            vm,
            hello,
            boot,
            dir,
            tainted: false,
            fsm_map,
            slowdown,
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
        dir: &Path,
    ) -> Result<Program, RunError> {
        let t0 = std::time::Instant::now();
        std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut ran = sc.clone();
        ran.race.seed = Some(seed);
        let toml_path = dir.join("scenario.toml");
        std::fs::write(&toml_path, ran.to_toml()).map_err(|source| RunError::Io {
            path: toml_path,
            source,
        })?;
        let marks = self.marks();
        let vm = &self.vm;
        let late = LATE_ALLOWANCE * self.slowdown;
        let rec = Recorder::new(dir);
        let ctx = Ctx {
            vm,
            rec: &rec,
            pending: Default::default(),
            marks,
            crash_seen: Default::default(),
        };

        let mut phases = Phases::default();
        let baseline = snapshot(vm).await;
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
            (None, heartbeat_fresh(vm))
        } else {
            (snapshot(vm).await, liveness(vm).await)
        };
        phases.end("snapshot+liveness");
        let stuck = match &after {
            Some(first) if alive && !crate::oracle::stuck::d_state(first).is_empty() => {
                tokio::time::sleep(STUCK_RECHECK * self.slowdown).await;
                match snapshot(vm).await {
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
                settle(vm, marks, alive).await
            } else {
                vec![]
            }
        } else {
            settle(vm, marks, alive).await
        };
        phases.end("settle");
        tracing::debug!("program {} phases: {}", sc.name, phases.text());
        if !late_streams.is_empty() {
            tracing::warn!("marker did not arrive on {late_streams:?}; judging what did");
        }
        let mut ev = self.evidence(marks, baseline, after, alive, dir);
        ev.blocked_dump = blocked_dump;
        ev.stuck = stuck;
        if dir != self.dir {
            let _ = std::fs::write(dir.join("console.log"), &ev.console);
            let _ = std::fs::write(dir.join("dmesg.txt"), ev.kmsg.join("\n") + "\n");
            let _ = std::fs::write(dir.join("trace.txt"), ev.trace.join("\n") + "\n");
        }
        let records = rec.records();
        let verdict = verdict::judge_with_map(
            sc,
            &records,
            &ev,
            &self.hello.kernel_release,
            self.fsm_map.as_ref(),
        );
        // Also when the run passed (an expected crash, a known hang): such a guest would not
        // power off, and the next program would run on a broken kernel.
        if !verdict.crashes.is_empty()
            || !alive
            || verdict
                .findings
                .iter()
                .any(|f| f.kind == verdict::FindingKind::Hang)
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
    async fn dump_blocked_tasks(&self, alive: bool, dir: &Path) -> String {
        let from = self.vm.console.len();
        if alive {
            let _ = self
                .vm
                .agent
                .request("check", Op::Sysrq { key: 'w' }, 5000)
                .await;
        } else {
            let _ = self.vm.console.send(b"\x0fw");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = self.vm.console.send(b"\x0ft");
        }
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let dump = self.vm.console.text_since(from);
        let _ = std::fs::write(dir.join("blocked-tasks.txt"), &dump);
        dump
    }

    fn evidence(
        &self,
        m: Marks,
        baseline: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
        alive: bool,
        dir: &Path,
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
            baseline,
            after,
            alive,
            dir: dir.to_path_buf(),
            blocked_dump: None,
            stuck: vec![],
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
    let mut session = Session::boot(sc, opts).await?;
    let dir = opts.run_dir.clone();
    let program = session.run_program(sc, seed, &dir).await;
    let (kernel_release, boot) = (session.hello.kernel_release.clone(), session.boot);
    session.shutdown().await;
    let program = program?;
    let result = RunResult {
        scenario: sc.name.clone(),
        seed,
        kernel_release,
        boot_to_ready_ms: boot.as_millis() as u64,
        wall_ms: t0.elapsed().as_millis() as u64,
        verdict: program.verdict,
        run_dir: dir.clone(),
    };
    if let Ok(j) = serde_json::to_string_pretty(&result) {
        let _ = std::fs::write(dir.join("result.json"), j + "\n");
    }
    Ok(result)
}

fn cleanup_step() -> OpStep {
    let mut s = OpStep::new(Op::Cleanup);
    s.deadline_ms = 10_000;
    s
}

async fn snapshot(vm: &Vm) -> Option<serde_json::Value> {
    match vm.agent.request("check", Op::Snapshot, 5000).await {
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
async fn settle(vm: &Vm, m: Marks, alive: bool) -> Vec<&'static str> {
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
        .request("check", Op::Mark { text: text.clone() }, 2000);
    let written = match tokio::time::timeout(SETTLE_WAIT, mark).await {
        Ok(Ok((_, r))) if r.outcome == Outcome::Ok => r.data,
        _ => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return vec!["mark"];
        }
    };
    let needle = format!("ccwrig-mark: {text}");
    let until = tokio::time::Instant::now() + SETTLE_WAIT;
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
fn heartbeat_fresh(vm: &Vm) -> bool {
    vm.agent
        .heartbeat_age()
        .is_some_and(|a| a < Duration::from_secs(2))
}

/// The guest still answers: a fresh request gets an answer and heartbeats are recent.
async fn liveness(vm: &Vm) -> bool {
    let answered = matches!(
        vm.agent.request("check", Op::Sleep { ms: 0 }, 2000).await,
        Ok((_, r)) if r.outcome == Outcome::Ok
    );
    // Before the agent's first heartbeat (a program that ends right after boot) the answer
    // alone is the evidence.
    answered
        && vm
            .agent
            .heartbeat_age()
            .is_none_or(|a| a < Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command_for(machine: &str) -> QemuCommand {
        let text = format!(
            "description = \"t\"\n{machine}\n[actors.a]\nsteps = [{{ op = \"list_subchannels\" }}]\n"
        );
        let sc = crate::scenario::parse_str(&text, "t", None).expect("valid scenario");
        let opts = RunOptions {
            bzimage: "/k/bzImage".into(),
            initrd: "/i/initrd".into(),
            seed: None,
            run_dir: "/r".into(),
            append: String::new(),
        };
        qemu_command(&sc, &opts).expect("command")
    }

    #[test]
    fn nested_machines_get_room_for_the_inner_guest() {
        let base = command_for("[machine]\ndevices = [{ id = \"rng0\", devno = \"fe.0.0002\" }]");
        assert_eq!(base.memory_mib, crate::vm::BASE_MEMORY_MIB);
        let nested = command_for(
            "[machine]\nnested = true\ndevices = [{ id = \"rng0\", devno = \"fe.0.0002\" }]",
        );
        assert_eq!(nested.memory_mib, crate::vm::NESTED_MEMORY_MIB);
        assert!(crate::vm::NESTED_MEMORY_MIB > crate::vm::BASE_MEMORY_MIB);
    }
}
