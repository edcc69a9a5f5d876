//! The power-off that ends a VM of its own (one scenario, `ccwrig run`): the agent does what
//! an init does, and the program's verdict is given again with what came of it. A guest that
//! does not get off cannot say why (its console is off from `device_shutdown` on), so QEMU is
//! asked where its vCPUs are.

use ccwrig_proto::data::Snapshot;
use ccwrig_proto::{Op, Outcome};

use super::{KeptEvidence, Marks, Program, Session, POWEROFF_WAIT};
use crate::run::record::Recorder;
use crate::run::verdict::{ShutdownHang, Verdict};
use crate::rundir::{Artifact, RunDir};
use crate::scenario::Scenario;
use crate::vm::host_threads;

/// When a power-off that has not ended is first checked for a QEMU deadlock (a power-off
/// takes 25–186 ms when it works), and how long after a first sign the second look comes.
const FIRST_LOOK: std::time::Duration = std::time::Duration::from_secs(2);
const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// What became of the power-off after a VM's last program.
#[derive(Debug, Clone)]
pub struct PowerOff {
    /// QEMU exited within POWEROFF_WAIT (scaled).
    pub exited: bool,
    /// Where the vCPUs were and the console's answer to sysrq `w` and `t`, when it did not.
    pub hang: Option<ShutdownHang>,
}

impl Session {
    /// Where a guest that did not get off is. QEMU exits once every vCPU has stopped: where
    /// the others are (`info registers`, in `cpu-state.txt`) is the one fact a guest with its
    /// console off can still give; the console's blocked-task dump is asked for too.
    async fn stuck_in_shutdown(&self, dir: &RunDir) -> ShutdownHang {
        let (cpus, described) = match crate::vm::cpu_state::capture(&self.vm, &self.bzimage).await {
            Some((state, raw)) => {
                let described = state.describe();
                dir.write(Artifact::CpuState, format!("{described}\n{raw}"));
                // Without vmlinux (a foreign bzImage) no function is known: the title then
                // says nothing of the vCPUs rather than a row of question marks.
                let cpus = match state.functions.iter().any(Option::is_some) {
                    true => state
                        .functions
                        .into_iter()
                        .map(|f| f.unwrap_or_else(|| "?".into()))
                        .collect(),
                    false => vec![],
                };
                (cpus, described)
            }
            None => (vec![], "(QEMU did not answer info registers)\n".into()),
        };
        // A vCPU that never stops is the machine's doing: QEMU's own stacks say where.
        let threads = match host_threads::capture(self.vm.pid()).await {
            Ok(host_threads::Captured { text, threads }) => {
                dir.write(Artifact::QemuThreads, &text);
                let deadlock = match host_threads::vcpus_wait_for_each_other(&threads) {
                    true => "; every vCPU thread waits for another: QEMU, not the guest, is stuck",
                    false => "",
                };
                format!(
                    "QEMU's vCPU threads (qemu-threads.txt){deadlock}:\n{}",
                    host_threads::vcpu_summary(&threads, 6)
                )
            }
            Err(e) => format!("(QEMU's threads not read: {e})\n"),
        };
        ShutdownHang {
            cpus,
            dump: format!(
                "{described}{threads}{}",
                self.dump_blocked_tasks(false, dir).await
            ),
        }
    }

    /// Waits for QEMU to exit after a power-off, at most `limit`. A QEMU whose vCPU threads
    /// wait for each other in two looks a second apart will never exit, and is not waited for
    /// any longer.
    pub(super) async fn wait_powered_off(&self, limit: std::time::Duration) -> bool {
        let t0 = std::time::Instant::now();
        let mut stuck_before = false;
        loop {
            let left = limit.saturating_sub(t0.elapsed());
            let next = match stuck_before {
                true => LOOK_AGAIN,
                false => FIRST_LOOK,
            };
            if self.vm.console.wait_closed(left.min(next)).await {
                return true;
            }
            if t0.elapsed() >= limit {
                return false;
            }
            let stuck = match host_threads::capture(self.vm.pid()).await {
                Ok(c) => host_threads::vcpus_wait_for_each_other(&c.threads),
                Err(_) => false,
            };
            if stuck && stuck_before {
                tracing::debug!(
                    "power-off: QEMU's vCPU threads wait for each other after {} ms",
                    t0.elapsed().as_millis()
                );
                return false;
            }
            stuck_before = stuck;
        }
    }

    /// A program that powered the guest off (a `poweroff` step): the kernel's shutdown path
    /// runs every driver's shutdown callback, and what it prints until QEMU exits is part of
    /// the verdict. No teardown, cleanup or snapshot: there is no guest left to ask.
    pub(super) async fn judge_poweroff(
        &mut self,
        sc: &Scenario,
        marks: Marks,
        baseline: Option<Snapshot>,
        rec: &Recorder,
        dir: &RunDir,
        t0: std::time::Instant,
    ) -> Program {
        self.tainted = true;
        let exited = self.wait_powered_off(self.pace.of(POWEROFF_WAIT)).await;
        let mut ev = self.evidence(marks, baseline.as_ref(), None, false);
        ev.powered_off = Some(exited);
        ev.restart = rec
            .records()
            .iter()
            .any(|r| matches!(r.op, Op::Reboot) && r.outcome == Outcome::Ok);
        if !exited {
            // Still printing or stuck in a driver's shutdown callback: what is it waiting for?
            ev.shutdown_hung = Some(self.stuck_in_shutdown(dir).await);
            ev.console = self.vm.console.text_since(marks.console);
        }
        let records = rec.records();
        let cover = self.write_coverage(&records, None, dir);
        let (verdict, fsm) = self.verdict(sc, &records, ev, dir);
        // The guest is gone: nothing to read.
        Program::judged(verdict, records, &fsm, cover, t0)
    }

    /// Powers the guest off as an init does after its last program (every process killed,
    /// files closed, `reboot(RB_POWER_OFF)`: the agent's `poweroff`) and waits for QEMU to
    /// exit; for a guest still there after POWEROFF_WAIT (scaled), QEMU is asked where its
    /// vCPUs are and the console for its blocked tasks, then it is killed. `None` when the VM was killed at once: a tainted
    /// kernel (a crash, a hang, a guest that powered itself off) has nothing more to show.
    pub async fn power_off(&mut self, dir: &RunDir) -> Option<PowerOff> {
        if self.tainted {
            self.vm.kill();
            return None;
        }
        let t0 = std::time::Instant::now();
        self.vm.request_poweroff().await;
        let exited = self.wait_powered_off(self.pace.of(POWEROFF_WAIT)).await;
        tracing::debug!(
            "power-off after the last program: {} in {} ms",
            if exited { "exited" } else { "still running" },
            t0.elapsed().as_millis()
        );
        let hang = match exited {
            true => None,
            false => Some(self.stuck_in_shutdown(dir).await),
        };
        self.vm.kill();
        self.tainted = true;
        Some(PowerOff { exited, hang })
    }

    /// A program's verdict given again with the power-off that followed it: what the kernel
    /// printed while the agent killed every process and closed its files (release paths the
    /// program's own cleanup did not take) is judged with the rest of the console, and a guest
    /// that did not get off is hung in its shutdown path. What `device_shutdown` prints never
    /// reaches the console (docs/DESIGN.md, 'What the console does not show'). `None` when
    /// the guest got off without a word more: the first verdict stands, and is not computed
    /// (nor `fsm.txt` written) twice.
    pub fn judge_with_power_off(&self, kept: KeptEvidence, off: PowerOff) -> Option<Verdict> {
        let KeptEvidence {
            sc,
            records,
            mut ev,
            dir,
            console_from,
        } = kept;
        let console = self.vm.console.text_since(console_from);
        if off.exited && console.len() == ev.console.len() {
            return None;
        }
        ev.console = console;
        if !off.exited {
            ev.shutdown_hung = Some(off.hang.unwrap_or_default());
        }
        Some(self.verdict(&sc, &records, ev, &dir).0)
    }
}
