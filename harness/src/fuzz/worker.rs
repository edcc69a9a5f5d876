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
    /// A kernel with GCOV: the program's counters, plus the boot's when its VM was started
    /// for it (the campaign's line count includes boot-time init; the guide's points do not).
    pub gcov: crate::coverage::gcov::GcovCounts,
}

/// When a program's kmemleak reading comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaks {
    /// After its cleanup (and after any batch still pending).
    Now,
    /// With the batch: the campaign's own programs (`pseed`: the campaign's program seed).
    Batch { pseed: u64 },
    /// Never: it only ends the window of the program before it in the batch.
    Unjudged,
}

/// A program run with its kmemleak reading left for later.
#[derive(Debug, Clone)]
struct Pending {
    /// Jiffies when its allocations started.
    start: u64,
    /// As it ran (with its seed).
    program: Scenario,
    /// The campaign's program seed.
    pseed: u64,
    console: String,
    /// Whether its leaks can be judged (its cleanup worked, the guest is sound): otherwise
    /// its window only bounds the one before.
    judged: bool,
}

/// The leaks a batch reading found in an earlier program.
#[derive(Debug, Clone)]
pub struct Deferred {
    pub program: Scenario,
    pub pseed: u64,
    pub console: String,
    pub hits: Vec<Hit>,
    /// The part of the reading that is this program's (`kmemleak.txt`).
    pub report: String,
    /// The VM's programs up to and including this one.
    pub history: Vec<Scenario>,
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
    /// Programs run by [`Worker::run_in_batch`] whose kmemleak reading is still to come.
    pending: Vec<Pending>,
    /// What readings found, until the campaign takes it.
    ready: Vec<Deferred>,
    /// Programs whose kmemleak reading never came: their VM crashed or hung first.
    pub leaks_unread: u64,
    /// The KCOV PCs that count as a program's coverage; `None`: all.
    pub pc_scope: Option<std::sync::Arc<crate::coverage::scope::PcScope>>,
}

/// Programs per kmemleak reading in [`Worker::run_in_batch`]: a reading scans all of memory
/// twice and waits out kmemleak's minimum age (11 s of a 35 s debug program, measured on
/// 2026-12-03: `kernel/configs/README.md`).
/// A reading also comes after any program with a finding (triage runs other programs in the
/// VM) and before the VM is retired.
pub const LEAK_BATCH: usize = 8;

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
            pending: Vec::new(),
            ready: Vec::new(),
            leaks_unread: 0,
            pc_scope: None,
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
        // Without its VM a batch can no longer be read (and another VM's jiffies are not
        // this one's).
        let lost = std::mem::take(&mut self.pending);
        self.leaks_unread += lost.iter().filter(|p| p.judged).count() as u64;
        if let Some(s) = self.session.take() {
            s.shutdown().await;
        }
    }

    /// Runs `program` with `seed`, leaving its files in `dir`, and puts the machine back. Its
    /// leaks are judged with it (kmemleak read after its cleanup).
    pub async fn run(
        &mut self,
        program: &Scenario,
        seed: u64,
        dir: &Path,
    ) -> Result<Ran, FuzzError> {
        self.run_inner(program, seed, dir, Leaks::Now).await
    }

    /// [`Worker::run`] for a program run for its coverage only (confirmation and minimisation
    /// of an input): its leaks are not judged, and it joins the current kmemleak batch only
    /// to close the window of the program before it, so the batch goes on.
    pub async fn run_for_coverage(
        &mut self,
        program: &Scenario,
        seed: u64,
        dir: &Path,
    ) -> Result<Ran, FuzzError> {
        self.run_inner(program, seed, dir, Leaks::Unjudged).await
    }

    /// [`Worker::run`] for the campaign's own programs (`pseed`: the campaign's program seed):
    /// on a kernel with kmemleak, one reading serves up to [`LEAK_BATCH`] programs, and each
    /// object it reports goes to the program that allocated it. What it finds waits for
    /// [`Worker::take_deferred`]. A [`Worker::run`] reads the batch first.
    pub async fn run_in_batch(
        &mut self,
        program: &Scenario,
        seed: u64,
        pseed: u64,
        dir: &Path,
    ) -> Result<Ran, FuzzError> {
        self.run_inner(program, seed, dir, Leaks::Batch { pseed })
            .await
    }

    async fn run_inner(
        &mut self,
        program: &Scenario,
        seed: u64,
        dir: &Path,
        leaks: Leaks,
    ) -> Result<Ran, FuzzError> {
        let id = self.id;
        // A program that shuts the guest down ends its VM, and with it the chance to read
        // the batch.
        if leaks == Leaks::Now || program.shuts_down() {
            self.flush_leaks().await;
        }
        self.session().await?.kmemleak_batch = leaks != Leaks::Now;
        if self.history.len() >= HISTORY_MAX {
            self.history.remove(0);
        }
        let mut ran = program.clone();
        ran.race.seed = Some(seed);
        ran.history.clear();
        self.history.push(ran);
        let session = self.session().await?;
        // The boot's counters go with the VM's first program only.
        let mut gcov = session.take_gcov_boot().unwrap_or_default();
        let dir = &RunDir::at(dir);
        let p = session
            .run_program(program, seed, dir)
            .await
            .map_err(|e| FuzzError::Run {
                worker: id,
                message: e.to_string(),
            })?;
        if let Some(c) = &p.cover {
            gcov.merge(&c.gcov);
        }
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
                && matches!(r.op, Op::Cleanup { .. })
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
        let sound = !session.tainted && !cleanup_failed;
        if let Some(start) = p.kmemleak_start {
            let mut ran = program.clone();
            ran.race.seed = Some(seed);
            let (pseed, judged) = match leaks {
                Leaks::Batch { pseed } => (pseed, sound),
                Leaks::Now | Leaks::Unjudged => (0, false),
            };
            self.pending.push(Pending {
                start,
                program: ran,
                pseed,
                console: console.clone(),
                judged,
            });
        }
        // A finding's triage runs other programs in the VM: the batch is read before.
        let triage_next = matches!(leaks, Leaks::Batch { .. }) && !hits.is_empty();
        if !self.pending.is_empty()
            && (self.pending.len() >= LEAK_BATCH || triage_next || retired.is_some())
        {
            self.flush_leaks().await;
        }
        let Some(session) = self.session.as_mut() else {
            return Err(FuzzError::Boot {
                worker: id,
                message: "no session".into(),
            });
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
            coverage: match &self.pc_scope {
                Some(scope) => scope.filter(&p.coverage),
                None => p.coverage,
            },
            fsm_reachable: p.fsm_reachable,
            gcov,
        })
    }

    /// The leaks batch readings found since the last call, each with its program.
    pub fn take_deferred(&mut self) -> Vec<Deferred> {
        std::mem::take(&mut self.ready)
    }

    /// Reads kmemleak for the programs [`Worker::run_in_batch`] left pending; what it finds
    /// waits for [`Worker::take_deferred`]. Without a sound VM (a crash, a hang) nothing can
    /// be read: they are counted in `leaks_unread`.
    pub async fn flush_leaks(&mut self) {
        let found = self.read_pending().await;
        self.ready.extend(found);
    }

    async fn read_pending(&mut self) -> Vec<Deferred> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return vec![];
        }
        let judged = pending.iter().filter(|p| p.judged).count() as u64;
        let Some(session) = self.session.as_ref().filter(|s| !s.tainted) else {
            self.leaks_unread += judged;
            return vec![];
        };
        let starts: Vec<u64> = pending.iter().map(|p| p.start).collect();
        let reports = match session.read_kmemleak_batch(&starts).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("worker {}: kmemleak reading failed: {e}", self.id);
                self.leaks_unread += judged;
                return vec![];
            }
        };
        // The pending programs are the last ones of the VM's history, in order.
        let base = self.history.len().saturating_sub(pending.len());
        let mut out = Vec::new();
        for (i, (p, report)) in pending.into_iter().zip(reports).enumerate() {
            if !p.judged || report.is_empty() {
                continue;
            }
            let findings = crate::run::verdict::kmemleak_report_findings(&report);
            let hits = interest::hits_of(&findings);
            if hits.is_empty() {
                continue;
            }
            out.push(Deferred {
                history: self.history[..(base + i + 1).min(self.history.len())].to_vec(),
                program: p.program,
                pseed: p.pseed,
                console: p.console,
                hits,
                report,
            });
        }
        out
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
