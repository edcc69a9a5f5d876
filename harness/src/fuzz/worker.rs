//! One fuzzing VM: a long-lived [`Session`] that runs program after program.
//!
//! Between programs the runner's own `cleanup` (closes, removes, rebinds) resets the agent's
//! state; here the machine is restored: vCPUs resumed if a program stopped them, and every
//! device a program unplugged re-added (found by devno in `list_subchannels`). The VM is
//! rebooted only when that is not enough: after a crash, a hang, a dead guest, a failed cleanup
//! or a failed restore.

use crate::rundir::{Artifact, RunDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ccwrig_proto::{Op, Outcome};

use super::interest::{self, Hit, Kind};
use super::FuzzError;
use crate::coverage::Coverage;
use crate::machine::MachineSpec;
use crate::run::record::Phase;
use crate::run::{restore, RunOptions, Session, Verdict};
use crate::scenario::Scenario;

/// What one program did, as far as fuzzing cares.
#[derive(Debug, Clone)]
pub struct Ran {
    pub hits: Vec<Hit>,
    pub verdict: Verdict,
    pub wall_ms: u64,
    /// From the first step sent to the last answer: the rest of `wall_ms` is the runner's
    /// fixed cost per program (snapshots, cleanup, liveness, settling).
    pub steps_ms: u64,
    /// The program's own slice of the console (for the corpus).
    pub console: String,
    /// Why the VM was retired after the program, if it was.
    pub retired: Option<String>,
    /// What the program made the kernel do: its FSM points (see [`crate::coverage::fsm`]).
    pub coverage: Coverage,
    /// The FSM map's cells with a handler; `None` when no map knows the kernel.
    pub fsm_reachable: Option<usize>,
}

pub struct Worker {
    pub id: usize,
    opts: RunOptions,
    /// The machine every program runs on.
    machine: MachineSpec,
    dir: PathBuf,
    session: Option<Session>,
    pub boots: u64,
    /// The programs run since the current VM booted, in order, each with the seed it ran
    /// with (the last one included, also when it retired the VM): what a crash that needs the
    /// VM's past is replayed from. At most `HISTORY_MAX`, the oldest dropped first.
    history: Vec<Scenario>,
}

/// Programs of history kept per VM. A VM that never crashes runs thousands; what a crash
/// depends on is, if anything, recent.
pub const HISTORY_MAX: usize = 200;

/// Boot attempts before a worker gives up on its kernel.
const BOOT_TRIES: u32 = 3;

impl Worker {
    /// `opts.run_dir` is the worker's directory; VMs and programs get subdirectories.
    pub fn new(id: usize, opts: RunOptions, machine: &MachineSpec) -> Worker {
        let dir = opts.run_dir.clone();
        Worker {
            id,
            opts,
            machine: machine.clone(),
            dir,
            session: None,
            boots: 0,
            history: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn session(&mut self) -> Result<&mut Session, FuzzError> {
        if self.session.is_none() {
            let mut last = None;
            for _ in 0..BOOT_TRIES {
                self.boots += 1;
                let mut opts = self.opts.clone();
                opts.run_dir = self.dir.join(format!("vm{}", self.boots));
                match Session::boot(&self.machine, &opts).await {
                    Ok(s) => {
                        first_heartbeat(&s).await;
                        self.session = Some(s);
                        self.history.clear();
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                return Err(FuzzError::Boot {
                    worker: self.id,
                    message: e.to_string(),
                });
            }
        }
        self.session.as_mut().ok_or(FuzzError::Boot {
            worker: self.id,
            message: "no session".into(),
        })
    }

    /// The programs run since the VM booted (or, after it was retired, in the VM it was).
    pub fn history(&self) -> &[Scenario] {
        &self.history
    }

    /// Shuts the VM down (kills it if the guest is beyond that); the next program boots anew.
    pub async fn retire(&mut self) {
        if let Some(s) = self.session.take() {
            s.shutdown().await;
        }
    }

    /// Runs `program` with `seed`, leaving its files in `dir`, and puts the machine back.
    pub async fn run(
        &mut self,
        program: &Scenario,
        seed: u64,
        dir: &Path,
    ) -> Result<Ran, FuzzError> {
        let id = self.id;
        self.session().await?;
        if self.history.len() >= HISTORY_MAX {
            self.history.remove(0);
        }
        let mut ran = program.clone();
        ran.race.seed = Some(seed);
        ran.history.clear();
        self.history.push(ran);
        let session = self.session().await?;
        let dir = &RunDir::at(dir);
        let p = session
            .run_program(program, seed, dir)
            .await
            .map_err(|e| FuzzError::Run {
                worker: id,
                message: e.to_string(),
            })?;
        let mut hits = interest::hits(&p.verdict);
        if hits.iter().any(|h| h.kind == Kind::GuestDead) && answers(session).await {
            // The liveness probe missed on a slow host, but the guest answers a fresh request
            // with fresh heartbeats: not dead.
            tracing::warn!("worker {id}: guest reported dead but answers; not counted");
            hits.retain(|h| h.kind != Kind::GuestDead);
        }
        let first = p.records.iter().map(|r| r.sent_ms).min().unwrap_or(0);
        let last = p
            .records
            .iter()
            .map(|r| r.answered_ms.max(r.late_ms.unwrap_or(0)))
            .max()
            .unwrap_or(0);
        let steps_ms = last.saturating_sub(first);
        let console = dir.read(Artifact::Console).unwrap_or_default();
        let cleanup_failed = p.records.iter().any(|r| {
            r.phase == Phase::Check
                && matches!(r.op, Op::Cleanup)
                && !matches!(r.late.as_ref().unwrap_or(&r.outcome), Outcome::Ok)
        });
        let mut retired = if session.tainted {
            Some("tainted".to_string())
        } else if let Some(h) = hits.iter().find(|h| h.kind.taints()) {
            Some(h.kind.name().to_string())
        } else if cleanup_failed {
            Some("cleanup failed".into())
        } else {
            None
        };
        if retired.is_none() {
            if let Err(why) = restore::restore(session, program).await {
                retired = Some(why);
            }
        }
        if retired.is_some() {
            self.retire().await;
        }
        Ok(Ran {
            hits,
            verdict: p.verdict,
            wall_ms: p.wall_ms,
            steps_ms,
            console,
            retired,
            coverage: p.coverage,
            fsm_reachable: p.fsm_reachable,
        })
    }
}

/// The runner's liveness check wants a recent agent heartbeat; a program that ends within
/// the first heartbeat interval after boot would otherwise find the guest "dead".
async fn first_heartbeat(s: &Session) {
    for _ in 0..100 {
        if s.vm.agent.heartbeat_age().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A second, more patient liveness probe: an answer and a heartbeat younger than the wait.
async fn answers(s: &Session) -> bool {
    let answered = matches!(
        s.vm.agent.request("restore", Op::Sleep { ms: 0 }, s.pace.ms(5000)).await,
        Ok((_, r)) if r.outcome == Outcome::Ok
    );
    let wait = s.pace.of(Duration::from_millis(1000));
    tokio::time::sleep(wait).await;
    answered && s.vm.agent.heartbeat_age().is_some_and(|a| a < wait)
}
