//! Steps on their way to the guest and back: jitter, barriers, deadlines, late results, and
//! the crash watch that stops sending steps to a crashed kernel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ccwrig_proto::{Op, Outcome, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Barrier;

use super::host_ops;
use super::pace::Pace;
use super::record::{Phase, Recorder, StepRecord};
use super::session::Marks;
use crate::agent::Ask;
use crate::scenario::{Expect, OpStep, Scenario, Step};
use crate::vm::Vm;

/// A blocked step waiting for its late result.
struct Pending {
    record: usize,
    request_id: u64,
    step: OpStep,
    /// Whether the step allowed `blocked` at its deadline.
    matched_at_deadline: bool,
}

pub(super) struct Ctx<'a> {
    vm: &'a Vm,
    rec: &'a Recorder,
    pending: std::sync::Mutex<Vec<Pending>>,
    /// Where the program's slice of the console and of the QMP events starts.
    marks: Marks,
    /// Set once a crash was seen: later steps are not sent.
    crash_seen: std::sync::atomic::AtomicBool,
    /// Scales every deadline and wait, written for the fast profile, to the booted kernel.
    pace: Pace,
    /// Ask the agent for each step's KCOV coverage (a cover kernel).
    cover: bool,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        vm: &'a Vm,
        rec: &'a Recorder,
        marks: Marks,
        pace: Pace,
        cover: bool,
    ) -> Ctx<'a> {
        Ctx {
            vm,
            rec,
            pending: Default::default(),
            marks,
            crash_seen: Default::default(),
            pace,
            cover,
        }
    }
}

/// The delay before an actor's step after a barrier, from the run's seed (also written into
/// C reproducers, so they replay the same delays).
/// The outcome message of a step the runner stopped waiting for because the kernel crashed
/// (or the guest powered off) while it ran: the step did not fail, the machine under it did.
pub const ABANDONED: &str = "abandoned: the kernel crashed or the guest powered off while it ran";

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
    /// The race: every actor's steps at once, `repeat` times; steps after a barrier wait
    /// their jitter (from `seed`, so a seed replays the same delays).
    pub(super) async fn race(&self, sc: &Scenario, seed: u64) {
        let ctx = self;
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
    }

    pub(super) async fn step(
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
            cover: None,
            fault: None,
        };
        let abandoned = || failed(ABANDONED.into());
        let (request_id, result) = match on_host {
            true => match self
                .until_crash(host_ops::execute(self.vm, &paced(&s.op, self.pace)))
                .await
            {
                Some(r) => (None, r),
                None => (None, abandoned()),
            },
            false => match self
                .until_crash(self.vm.agent.request_with(
                    actor,
                    paced(&s.op, self.pace),
                    Ask {
                        deadline_ms,
                        idle_ms: s.idle_ms.map(|m| self.pace.ms(m)),
                        cover: self.cover,
                        fail_nth: s.fail_nth,
                    },
                ))
                .await
            {
                Some(Ok((id, r))) => (Some(id), r),
                Some(Err(e)) => (None, failed(e.to_string())),
                // The agent writes its answer and then powers off; QEMU may exit before it has
                // passed the answer on. A machine that went down by itself, without a crash, did
                // what the step asked.
                None if matches!(s.op, Op::Poweroff | Op::Reboot)
                    && self.guest_shut_down().await =>
                {
                    let r = ccwrig_proto::OpResult {
                        outcome: Outcome::Ok,
                        start_us: 0,
                        duration_us: 0,
                        data: serde_json::json!({"answer": "lost with the machine; QEMU reported SHUTDOWN"}),
                        cover: None,
                        fault: None,
                    };
                    (None, r)
                }
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
            cover: result.cover.clone(),
            fail_nth: s.fail_nth,
            fault: result.fault,
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

    pub(super) async fn sequence(&self, phase: Phase, actor: &str, steps: &[Step]) {
        for (i, st) in steps.iter().enumerate() {
            if let Step::Op(s) = st {
                self.step(phase, actor, 0, i, s, 0).await;
            }
        }
    }

    /// Releases every `io_stall` the program took and did not release (its actors' tails do,
    /// unless a crash or a blocked step stopped them).
    pub(super) async fn release_stalls(&self) {
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
    pub(super) async fn collect_late(&self, allowance: Duration) {
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
                    let ok = late_matches(&p.step, p.matched_at_deadline, &res.outcome);
                    self.rec
                        .set_late(p.record, res.outcome, res.cover, self.vm.agent.now_ms(), ok);
                    break;
                }
                if self.crashed() {
                    return;
                }
            }
        }
    }

    /// Runs `fut` unless the kernel crashes or QEMU exits first (then None): a step the crash
    /// or a power-off interrupted is given up instead of waited out to its deadline.
    async fn until_crash<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return Some(r),
                _ = tokio::time::sleep(CRASH_POLL) => {
                    if self.crashed() || self.vm.console.is_closed() {
                        return None;
                    }
                }
            }
        }
    }

    /// Whether the program powered the guest off: a `poweroff` or `reboot` step the agent
    /// answered (QEMU runs with -no-reboot), a `system_powerdown` QEMU took (the guest goes
    /// down tens of ms later, maybe after the program's last step), or QEMU's SHUTDOWN event
    /// of a guest-initiated power-off.
    pub(super) fn powered_off(&self) -> bool {
        let asked = self.rec.records().iter().any(|r| {
            matches!(r.op, Op::Poweroff | Op::Reboot | Op::SystemPowerdown)
                && r.outcome == Outcome::Ok
        });
        let qmp = self.vm.qmp.events();
        asked
            || qmp
                .get(self.marks.qmp.min(qmp.len())..)
                .is_some_and(|ev| ev.iter().any(|e| e.name == "SHUTDOWN"))
    }

    /// Whether QEMU reported that the guest shut itself down (SHUTDOWN from the guest) since
    /// the program started, with no crash. The event may be read after the console closed,
    /// so it gets a moment.
    async fn guest_shut_down(&self) -> bool {
        let by_guest = |e: &crate::vm::qmp::QmpEvent| {
            e.data.get("guest").and_then(|g| g.as_bool()) == Some(true)
        };
        !self.crashed()
            && self
                .vm
                .qmp
                .wait_event("SHUTDOWN", self.marks.qmp, SHUTDOWN_EVENT_WAIT, by_guest)
                .await
                .is_ok()
    }

    /// Whether the kernel crashed since the program started: a crash report on its slice of
    /// the console, or QEMU's GUEST_PANICKED. Once seen, remembered.
    pub(super) fn crashed(&self) -> bool {
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
            Op::IoStall { handle, .. } if r.outcome == Outcome::Ok && !held.contains(handle) => {
                held.push(handle.clone());
            }
            Op::IoRelease { handle, .. } => held.retain(|h| h != handle),
            _ => {}
        }
    }
    held
}

/// How long a power-off step whose answer went down with the machine waits for QEMU's SHUTDOWN.
const SHUTDOWN_EVENT_WAIT: Duration = Duration::from_secs(2);

/// How often a step or a wait for late results looks for a crash.
const CRASH_POLL: Duration = Duration::from_millis(250);

/// A blocked operation that finishes must finish well: `ok`, or an errno the step allowed.
fn late_accepted(expect: &[Expect], late: &Outcome) -> bool {
    matches!(late, Outcome::Ok)
        || expect
            .iter()
            .any(|e| !matches!(e, Expect::Blocked) && e.matches(late))
}

/// Whether a step that was still blocked at its deadline did what the scenario asked, now
/// that it finished with `late`. It must finish well (see [`late_accepted`]); and unless the
/// step allowed `blocked`, finishing after a deadline the scenario stated is a failure, while
/// finishing after the default deadline is not: "ok" means "ok eventually".
fn late_matches(step: &OpStep, matched_at_deadline: bool, late: &Outcome) -> bool {
    late_accepted(&step.expect, late) && (matched_at_deadline || step.deadline_ms.is_none())
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

/// `op` as the booted kernel runs it: every wait a step names (a `sleep`, an interrupt wait,
/// the inner QEMU's QMP wait...) is written for the fast kernel, like its deadline, and scales
/// with it. A holder that sleeps 800 ms so that another actor's 300 ms deadline passes while it
/// holds must still outlast that deadline where it is 2400 ms (the debug soak's
/// `remove_while_open`: the remove answered ok at 932 ms, "ok, expected blocked", a failure of
/// ours); an inner QEMU that needs 17 s to answer QMP on a busy debug guest is not broken
/// because the fast kernel's 15 s ran out (`nested_start_quit_cycles`).
fn paced(op: &Op, pace: Pace) -> Op {
    let mut op = op.clone();
    match &mut op {
        Op::Sleep { ms } => *ms = pace.ms(*ms),
        Op::Io { irq_wait_ms, .. } | Op::IoRelease { irq_wait_ms, .. } => {
            *irq_wait_ms = pace.ms(*irq_wait_ms)
        }
        Op::IoStall { wait_ms, .. }
        | Op::InnerDeviceDel { wait_ms, .. }
        | Op::AwaitRequest { wait_ms, .. } => *wait_ms = pace.ms(*wait_ms),
        Op::InnerStart { qmp_wait_ms, .. } => *qmp_wait_ms = pace.ms(*qmp_wait_ms),
        Op::InnerWait { timeout_ms, .. } => *timeout_ms = pace.ms(*timeout_ms),
        Op::Cleanup { online_wait_ms, .. } => *online_wait_ms = pace.ms(*online_wait_ms),
        _ => {}
    }
    op
}

/// How long after the race blocked operations may take to finish before they count as hung,
/// on the fast profile; slower kernels get it times their `Profile::slowdown` (a rescan on
/// the debug kernel, busy with KASAN and lockdep, is not a hang at 15 s).
pub const LATE_ALLOWANCE: Duration = Duration::from_secs(15);
/// A barrier nobody else reaches (an actor failed to get there) must not hang the run.
const BARRIER_WAIT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use ccwrig_proto::{Op, Outcome};

    fn rec(op: Op, outcome: Outcome) -> StepRecord {
        StepRecord {
            actor: "g0".into(),
            ..StepRecord::for_test(op, outcome)
        }
    }

    /// The debug-profile flake: `snapshot` (expect ok, default deadline) blocked past its
    /// deadline on the slow kernel and answered ok 10-15 s later. That is a pass; a stated
    /// deadline is a timing requirement; a step that allowed `blocked` may finish any time.
    #[test]
    fn a_slow_step_on_a_slow_kernel_is_not_a_failure() {
        let blocked = Outcome::Blocked { after_ms: 40_000 };
        let ebusy = Outcome::Errno {
            name: "EBUSY".into(),
            code: 16,
            call: "x".into(),
        };
        let plain = OpStep::new(Op::Snapshot);
        let mut timed = OpStep::new(Op::Snapshot);
        timed.deadline_ms = Some(5000);
        let mut may_block = OpStep::new(Op::Reset { handle: "d".into() });
        may_block.deadline_ms = Some(300);
        may_block.expect = vec![Expect::Blocked];
        let table: Vec<(&OpStep, &Outcome, bool)> = vec![
            (&plain, &Outcome::Ok, true),
            (&plain, &ebusy, false),
            (&timed, &Outcome::Ok, false),
            (&may_block, &Outcome::Ok, true),
            (&may_block, &ebusy, false),
        ];
        for (step, late, want) in table {
            let at_deadline = step.accepts(&blocked);
            assert_eq!(
                late_matches(step, at_deadline, late),
                want,
                "{:?} deadline {:?}, late {late}",
                step.expect,
                step.deadline_ms
            );
        }
        // Deadlines are written for the fast kernel and scale with the booted one.
        let debug = Pace {
            slowdown: crate::kernel::Profile::Debug.slowdown(),
        };
        assert_eq!(Pace::FAST.ms(plain.deadline_ms()), 5000);
        assert_eq!(
            debug.ms(plain.deadline_ms()),
            5000 * u64::from(debug.slowdown)
        );
        assert!(debug.of(LATE_ALLOWANCE) > LATE_ALLOWANCE);
        // So do sleeps, so that a hold still outlasts the deadline it is written against.
        let hold = Op::Sleep { ms: 800 };
        assert_eq!(paced(&hold, Pace::FAST), hold);
        match paced(&hold, debug) {
            Op::Sleep { ms } => assert!(ms > debug.ms(300), "{ms}"),
            other => panic!("{other:?}"),
        }
        let close = Op::Close {
            handle: "d".into(),
            order: vec![],
        };
        assert_eq!(paced(&close, debug), close);
        let io = Op::Io {
            handle: "d".into(),
            count: 1,
            suspend: false,
            irq_wait_ms: 2000,
            program: None,
        };
        match paced(&io, debug) {
            Op::Io { irq_wait_ms, .. } => assert_eq!(irq_wait_ms, debug.ms(2000)),
            other => panic!("{other:?}"),
        }
        // The auto-online cleanup waits for takes seconds on debug (2037 ms was not enough on
        // debug+cover): the next program must not start inside it.
        let cleanup = Op::Cleanup {
            online_wait_ms: 2000,
            rest: ccwrig_proto::Rest::VfioCcw,
        };
        match paced(&cleanup, debug) {
            Op::Cleanup {
                online_wait_ms,
                rest,
            } => {
                assert_eq!(online_wait_ms, debug.ms(2000));
                assert_eq!(rest, ccwrig_proto::Rest::VfioCcw);
            }
            other => panic!("{other:?}"),
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
