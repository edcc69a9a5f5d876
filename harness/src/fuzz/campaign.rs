//! A fuzzing campaign: `jobs` workers (one VM each, tokio tasks) take program numbers from one
//! counter until the time box or the program count is reached. In a blind campaign program `n`
//! of campaign seed `S` is always the same program, whichever worker runs it, so a campaign is
//! a seed range; with feedback ([`super::guide`]) program `n` is that program or a mutant of
//! whatever inputs the corpus holds by then, and the program files are the record.

use crate::machine::MachineSpec;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::corpus::Corpus;
use super::gen::{GenConfig, Generator};
use super::guide::{self, GuideConfig, GuideStats};
use super::inputs::{Inputs, Loaded};
use super::keep;
use super::summary::{CoverageSummary, FindingSummary, SourceLines, Summary};
use super::triage::TriageConfig;
use super::worker::Worker;
use super::FuzzError;
use crate::coverage::Coverage;
use crate::run::RunOptions;

#[derive(Debug, Clone, Copy)]
pub enum Stop {
    After(Duration),
    Programs(u64),
}

#[derive(Debug, Clone)]
pub struct CampaignConfig {
    pub seed: u64,
    pub stop: Stop,
    pub jobs: usize,
    pub corpus: PathBuf,
    /// Worker directories (VM streams, the last program, triage runs) go here.
    pub work_dir: PathBuf,
    /// Kernel, initrd and extra command line; `run_dir` and `seed` are set per worker.
    pub run: RunOptions,
    pub gen: GenConfig,
    /// `None`: record findings only, no reproduction or shrinking.
    pub triage: Option<TriageConfig>,
    /// Coverage feedback: mutation of the corpus's inputs, or blind generation.
    pub guide: GuideConfig,
    /// Ends the campaign at the first new finding whose title contains this (time-to-find
    /// of a known or planted bug).
    pub until_found: Option<String>,
}

/// Live counters, for the progress line.
#[derive(Debug, Default)]
pub struct Stats {
    pub programs: AtomicU64,
    /// Sum of the programs' own wall times (ms): where the time goes.
    pub program_ms: AtomicU64,
    /// Of which the steps themselves (the rest is the runner's fixed cost per program).
    pub steps_ms: AtomicU64,
    /// VM boots of all workers (restarts = boots beyond one per worker).
    pub boots: AtomicU64,
    pub distinct: AtomicU64,
    pub hits: AtomicU64,
    pub errors: AtomicU64,
    /// Workers busy reproducing or shrinking right now.
    pub triaging: AtomicU64,
    /// Worker time spent on triage (not fuzzing), ms.
    pub triage_ms: AtomicU64,
    /// The budgets of the triages running now, ms: counted against triage's share until they
    /// end, so that two starting at once cannot both be granted all of it.
    pub triage_reserved_ms: AtomicU64,
    /// This campaign's coverage so far: FSM cells (state, event) seen, FSM points (cells
    /// with their outcomes, untraced moves), KCOV PCs.
    pub fsm_cells: AtomicU64,
    pub fsm_points: AtomicU64,
    pub pcs: AtomicU64,
    /// The source lines the PCs reach (a cover kernel whose PC scope was read).
    pub lines: Mutex<Option<SourceLines>>,
    /// The FSM map's cells with a handler (0 until a program ran on a kernel with a map).
    pub fsm_reachable: AtomicU64,
    /// Inputs in the corpus.
    pub inputs: AtomicU64,
    pub guide: GuideStats,
}

/// The seed of program `n`: splitmix64 of the campaign seed and `n`, so neighbouring
/// campaign seeds do not share programs.
pub fn program_seed(campaign: u64, n: u64) -> u64 {
    let mut z = campaign.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub struct Campaign {
    pub config: CampaignConfig,
    pub stats: Arc<Stats>,
    /// Set to end the campaign early (Ctrl-C): workers finish their current program.
    pub stop: Arc<AtomicBool>,
}

pub(super) struct Shared {
    pub(super) cfg: CampaignConfig,
    pub(super) stats: Arc<Stats>,
    pub(super) corpus: Mutex<Corpus>,
    next: AtomicU64,
    pub(super) t0: Instant,
    stop: Arc<AtomicBool>,
    pub(super) found: Mutex<Vec<(String, Duration)>>,
    errors: Mutex<Vec<String>>,
    /// `None` in a blind campaign.
    inputs: Option<Mutex<Inputs>>,
    loaded: Loaded,
    /// Every point this campaign's programs showed.
    seen: Mutex<Coverage>,
    /// GCOV counters of every program and VM boot so far (a kernel with GCOV).
    gcov: Mutex<crate::coverage::gcov::GcovCounts>,
    /// On a cover kernel: the PCs that count (the driver's files); `None`: all of them.
    pc_scope: Option<Arc<crate::coverage::scope::PcScope>>,
}

/// The driver's PCs of the campaign's cover kernel, or `None` (every PC counts) when its
/// vmlinux cannot be read, which is said.
fn pc_scope(cfg: &CampaignConfig) -> Option<Arc<crate::coverage::scope::PcScope>> {
    use crate::coverage::scope::{PcScope, FUZZ_PREFIXES};
    let t0 = Instant::now();
    match PcScope::of_kernel(&cfg.run.kernel.bzimage, FUZZ_PREFIXES) {
        Ok(scope) => {
            tracing::info!(
                "{} KCOV call sites under {} ({} ms)",
                scope.len(),
                FUZZ_PREFIXES.join(", "),
                t0.elapsed().as_millis()
            );
            Some(Arc::new(scope))
        }
        Err(e) => {
            eprintln!(
                "ccwrig: every KCOV PC counts as coverage: the driver's cannot be told apart: {e}"
            );
            None
        }
    }
}

/// Less time than this left in the box is not worth starting a triage (reproduction runs
/// alone take tens of seconds on the debug profile).
const MIN_TRIAGE_TIME: Duration = Duration::from_secs(20);

impl Shared {
    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || match self.cfg.stop {
                Stop::After(d) => self.t0.elapsed() >= d,
                Stop::Programs(_) => false,
            }
    }

    /// The time box covers triage too (a nightly job must end when it said it would): the
    /// triage of a finding gets what is left of it and of triage's share of the campaign's VM
    /// time, or is skipped when too little is — or when every other VM is triaging already
    /// (finding new bugs comes first: with two VMs or more, one always fuzzes). The claim
    /// returned holds the triage's place and budget until [`Shared::triage_done`].
    pub(super) fn triage_in_time_box(
        &self,
        mut tc: TriageConfig,
    ) -> Option<(TriageConfig, TriageClaim)> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let spent = Duration::from_millis(
            self.stats.triage_ms.load(Ordering::Relaxed)
                + self.stats.triage_reserved_ms.load(Ordering::Relaxed),
        );
        let allowed = triage_allowance(
            tc.share,
            self.cfg.stop,
            self.t0.elapsed(),
            self.cfg.jobs,
            spent,
        );
        if allowed < MIN_TRIAGE_TIME {
            return None;
        }
        tc.budget.max_time = tc.budget.max_time.min(allowed);
        if let Stop::After(d) = self.cfg.stop {
            let left = d.checked_sub(self.t0.elapsed())?;
            if left < MIN_TRIAGE_TIME {
                return None;
            }
            tc.budget.max_time = tc.budget.max_time.min(left);
            tc.deadline = Some(Instant::now() + left);
        }
        let most = max_triaging(self.cfg.jobs);
        self.stats
            .triaging
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()?;
        let reserved_ms = tc.budget.max_time.as_millis() as u64;
        self.stats
            .triage_reserved_ms
            .fetch_add(reserved_ms, Ordering::Relaxed);
        Some((tc, TriageClaim { reserved_ms }))
    }

    /// Ends a triage that [`Shared::triage_in_time_box`] let start, which took `took`.
    pub(super) fn triage_done(&self, claim: TriageClaim, took: Duration) {
        self.stats
            .triage_ms
            .fetch_add(took.as_millis() as u64, Ordering::Relaxed);
        self.stats
            .triage_reserved_ms
            .fetch_sub(claim.reserved_ms, Ordering::Relaxed);
        self.stats.triaging.fetch_sub(1, Ordering::Relaxed);
    }

    /// Workers finish their current program and stop.
    pub(super) fn end(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(super) fn error(&self, e: &FuzzError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("{e}");
        if let Ok(mut v) = self.errors.lock() {
            v.push(e.to_string());
        }
    }
}

/// Consecutive harness errors after which a worker stops (its VM cannot be used).
const MAX_CONSECUTIVE_ERRORS: u32 = 3;

impl Campaign {
    pub fn new(config: CampaignConfig) -> Campaign {
        Campaign {
            config,
            stats: Arc::new(Stats::default()),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs to the end and writes the summary into the corpus directory.
    pub async fn run(self) -> Result<Summary, FuzzError> {
        let corpus = Corpus::open(&self.config.corpus)?;
        let (inputs, loaded) = match self.config.guide.feedback {
            true => {
                let (i, l) = Inputs::open(&self.config.corpus)?;
                self.stats.inputs.store(i.len() as u64, Ordering::Relaxed);
                (Some(Mutex::new(i)), l)
            }
            false => (None, Loaded::default()),
        };
        let pc_scope = self
            .config
            .run
            .kernel
            .cover
            .then(|| pc_scope(&self.config))
            .flatten();
        let shared = Arc::new(Shared {
            pc_scope,
            cfg: self.config.clone(),
            stats: self.stats.clone(),
            corpus: Mutex::new(corpus),
            next: AtomicU64::new(0),
            t0: Instant::now(),
            stop: self.stop.clone(),
            found: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            inputs,
            loaded,
            seen: Mutex::new(Coverage::new()),
            gcov: Mutex::new(Default::default()),
        });
        let mut tasks = Vec::new();
        for id in 0..self.config.jobs.max(1) {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move { work(id, shared).await }));
        }
        for t in tasks {
            if let Err(e) = t.await {
                shared.error(&FuzzError::Run {
                    worker: usize::MAX,
                    message: format!("worker task: {e}"),
                });
            }
        }
        Ok(summarize(&shared))
    }
}

fn summarize(s: &Shared) -> Summary {
    let elapsed = s.t0.elapsed();
    let found = s.found.lock().map(|f| f.clone()).unwrap_or_default();
    let corpus = s.corpus.lock();
    let findings = match &corpus {
        Ok(c) => c
            .entries()
            .map(|m| FindingSummary {
                key: m.key.clone(),
                title: m.title.clone(),
                kind: m.kind,
                hits: m.hits,
                new: c.is_new(&m.key),
                found_after: found.iter().find(|(k, _)| *k == m.key).map(|(_, d)| *d),
                triage: m.triage.clone(),
                dir: c.dir_of(&m.key),
            })
            .collect(),
        Err(_) => vec![],
    };
    let st = &s.stats;
    Summary {
        seed: s.cfg.seed,
        jobs: s.cfg.jobs.max(1),
        elapsed,
        programs: st.programs.load(Ordering::Relaxed),
        program_ms: st.program_ms.load(Ordering::Relaxed),
        steps_ms: st.steps_ms.load(Ordering::Relaxed),
        triage_ms: st.triage_ms.load(Ordering::Relaxed),
        restarts: st
            .boots
            .load(Ordering::Relaxed)
            .saturating_sub(s.cfg.jobs.max(1) as u64),
        hits: st.hits.load(Ordering::Relaxed),
        errors: s.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        findings,
        corpus: s.cfg.corpus.clone(),
        coverage: coverage_summary(s),
    }
}

fn coverage_summary(s: &Shared) -> CoverageSummary {
    let (st, g) = (&s.stats, &s.stats.guide);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let seen = s.seen.lock().map(|c| c.clone()).unwrap_or_default();
    let (corpus_points, corpus_cells) = s
        .inputs
        .as_ref()
        .and_then(|i| i.lock().ok())
        .map(|i| (i.covered().len(), i.covered().fsm_cells()))
        .unwrap_or_default();
    CoverageSummary {
        feedback: s.cfg.guide.feedback,
        fsm_cells: load(&st.fsm_cells),
        fsm_reachable: Some(load(&st.fsm_reachable)).filter(|r| *r > 0),
        fsm_points: load(&st.fsm_points),
        pcs: load(&st.pcs),
        pc_lines: match &s.pc_scope {
            Some(scope) => Some(SourceLines {
                gcov: s
                    .gcov
                    .lock()
                    .ok()
                    .filter(|g| !g.is_empty())
                    .and_then(|g| gcov_lines(s, &g)),
                ..source_lines(scope, &seen)
            }),
            None => kcov_lines(s, &seen).map(|n| SourceLines {
                vfio_ccw: n,
                ..SourceLines::default()
            }),
        },
        inputs: load(&st.inputs),
        loaded: s.loaded,
        corpus_points,
        corpus_cells,
        fresh: load(&g.fresh),
        mutants: load(&g.mutants),
        rejected_mutants: load(&g.rejected),
        no_mutant: load(&g.no_mutant),
        new_points: load(&g.new_points),
        confirmed_points: load(&g.confirmed_points),
        unconfirmed: load(&g.unconfirmed),
        unsound: load(&g.unsound),
        kept_fresh: load(&g.kept_fresh),
        kept_mutants: load(&g.kept_mutants),
        minimise_ms: load(&g.minimise_ms),
        seen,
    }
}

/// Lines of vfio-ccw's own sources (`drivers/s390/cio/vfio_ccw_*.c`) the campaign's KCOV PCs
/// reached, symbolized against the kernel's vmlinux once at the end (a few seconds); `None`
/// without PCs or when the kernel cannot be symbolized (the count is then unknown, not zero).
fn kcov_lines(s: &Shared, seen: &Coverage) -> Option<u64> {
    let pcs: Vec<u64> = seen
        .iter()
        .filter_map(|p| match p {
            crate::coverage::Point::Pc { pc } => Some(*pc),
            _ => None,
        })
        .collect();
    if pcs.is_empty() {
        return None;
    }
    let cover = crate::coverage::kcov::ProgramCover::of_pcs(s.cfg.run.kernel.bzimage.clone(), pcs);
    let prefixes = [crate::coverage::report::VFIO_CCW_PREFIX.to_string()];
    match crate::coverage::report::build(&[(s.cfg.run.run_dir.clone(), cover)], &prefixes) {
        Ok(r) => Some(r.files.values().map(|f| f.counts().0 as u64).sum()),
        Err(e) => {
            tracing::warn!("kcov lines: {e}");
            None
        }
    }
}

/// The lines of vfio-ccw's files and of cio that `seen` reaches, by the campaign's PC scope.
fn source_lines(scope: &crate::coverage::scope::PcScope, seen: &Coverage) -> SourceLines {
    // The .c files only, as `ccwrig cover` counts them (vfio_ccw_private.h's inline helpers
    // are instrumented too).
    let v = scope.lines_reached(seen, |f| {
        f.starts_with(crate::coverage::report::VFIO_CCW_PREFIX) && f.ends_with(".c")
    });
    let c = scope.lines_reached(seen, |f| f.starts_with(CIO_PREFIX));
    SourceLines {
        vfio_ccw: v.covered as u64,
        vfio_ccw_total: Some(v.total as u64),
        cio: Some((c.covered as u64, c.total as u64)),
        gcov: None,
    }
}

/// GCOV's executed and executable lines of vfio-ccw's files, with the notes of the campaign's
/// kernel.
fn gcov_lines(s: &Shared, counts: &crate::coverage::gcov::GcovCounts) -> Option<(u64, u64)> {
    crate::coverage::gcov::executed_of_total(s.cfg.run.kernel.bzimage.parent()?, counts)
}

/// The channel subsystem's sources, vfio-ccw's included.
const CIO_PREFIX: &str = "drivers/s390/cio/";

/// Counts a program's points into the campaign's coverage and the progress counters.
fn see(s: &Shared, ran: &super::worker::Ran) {
    if let Some(r) = ran.fsm_reachable {
        s.stats.fsm_reachable.store(r as u64, Ordering::Relaxed);
    }
    // `gcov` runs only when the program moved a counter none before it had: most add nothing.
    let gcov = (!ran.gcov.is_empty())
        .then(|| s.gcov.lock().ok())
        .flatten()
        .and_then(|mut g| g.merge(&ran.gcov).then(|| gcov_lines(s, &g)));
    let Ok(mut seen) = s.seen.lock() else { return };
    seen.extend(&ran.coverage);
    let (pcs, fsm) = seen.counts();
    s.stats.pcs.store(pcs as u64, Ordering::Relaxed);
    if let Some(scope) = &s.pc_scope {
        if let Ok(mut l) = s.stats.lines.lock() {
            let before = l.and_then(|l| l.gcov);
            *l = Some(SourceLines {
                gcov: gcov.flatten().or(before),
                ..source_lines(scope, &seen)
            });
        }
    }
    s.stats.fsm_points.store(fsm as u64, Ordering::Relaxed);
    s.stats
        .fsm_cells
        .store(seen.fsm_cells() as u64, Ordering::Relaxed);
}

/// What `ran` adds to the inputs, when feedback is on.
fn beyond_inputs(s: &Shared, ran: &super::worker::Ran) -> Coverage {
    match s.inputs.as_ref().and_then(|i| i.lock().ok()) {
        Some(i) => ran.coverage.beyond(i.covered()),
        None => Coverage::new(),
    }
}

/// A program whose run showed points the inputs lack: confirmed, minimised and kept, within
/// the feedback loop's share of the VM time and the campaign's time box.
async fn admit(
    s: &Shared,
    worker: &mut Worker,
    program: &crate::scenario::Scenario,
    origin: super::inputs::Origin,
    pseed: u64,
    new: &Coverage,
) {
    let (Some(inputs), g) = (s.inputs.as_ref(), &s.stats.guide) else {
        return;
    };
    g.new_points.fetch_add(new.len() as u64, Ordering::Relaxed);
    let jobs = s.cfg.jobs.max(1);
    let mut budget = guide::minimise_allowance(&s.cfg.guide, g, s.t0.elapsed(), jobs);
    if let (Some(b), Stop::After(d)) = (budget, s.cfg.stop) {
        budget = d.checked_sub(s.t0.elapsed()).map(|left| left.min(b));
    }
    let Some(budget) = budget.filter(|b| !b.is_zero()) else {
        g.unconfirmed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let kept = guide::confirm_and_minimise(worker, program, new, budget, &s.cfg.guide, g).await;
    match kept {
        Ok(Some((p, coverage, wall_ms))) => {
            let cover = super::inputs::Cover {
                coverage,
                origin,
                program_seed: pseed,
                kernel: s
                    .cfg
                    .run
                    .kernel
                    .cover
                    .then(|| s.cfg.run.kernel.bzimage.clone()),
                wall_ms: Some(wall_ms),
            };
            match guide::keep(inputs, &p, cover, g) {
                Ok(_) => {}
                Err(e) => s.error(&e),
            }
            if let Ok(i) = inputs.lock() {
                s.stats.inputs.store(i.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(None) => {}
        Err(e) => {
            s.error(&e);
            worker.retire().await;
        }
    }
}

async fn work(id: usize, s: Arc<Shared>) {
    let mut opts = s.cfg.run.clone();
    opts.run_dir = s.cfg.work_dir.join(format!("worker{id}"));
    let machine = match MachineSpec::of(&s.cfg.gen.machine) {
        Ok(m) => m,
        Err(e) => {
            s.error(&FuzzError::Boot {
                worker: id,
                message: format!("the fuzz machine: {e}"),
            });
            return;
        }
    };
    let mut worker = Worker::new(id, opts, &machine);
    worker.pc_scope = s.pc_scope.clone();
    let gen = Generator::new(s.cfg.gen.clone());
    let mut consecutive = 0;
    let mut boots_seen = 0;
    let sync_boots = |w: &Worker, seen: &mut u64| {
        s.stats.boots.fetch_add(w.boots - *seen, Ordering::Relaxed);
        *seen = w.boots;
    };
    while !s.done() {
        let n = s.next.fetch_add(1, Ordering::Relaxed);
        if let Stop::Programs(max) = s.cfg.stop {
            if n >= max {
                break;
            }
        }
        let pseed = program_seed(s.cfg.seed, n);
        let (program, origin) =
            guide::next_program(pseed, &gen, s.inputs.as_ref(), &s.cfg.guide, &s.stats.guide);
        let seed = program.race.seed.unwrap_or(pseed >> 1);
        let dir = worker.dir().join("last");
        let ran = worker.run_in_batch(&program, seed, pseed, &dir).await;
        sync_boots(&worker, &mut boots_seen);
        let ran = match ran {
            Ok(r) => {
                consecutive = 0;
                r
            }
            Err(e) => {
                s.error(&e);
                worker.retire().await;
                consecutive += 1;
                if consecutive >= MAX_CONSECUTIVE_ERRORS {
                    break;
                }
                continue;
            }
        };
        s.stats.programs.fetch_add(1, Ordering::Relaxed);
        s.stats.program_ms.fetch_add(ran.wall_ms, Ordering::Relaxed);
        s.stats.steps_ms.fetch_add(ran.steps_ms, Ordering::Relaxed);
        see(&s, &ran);
        // Taken now: the findings' triage below runs other programs in this VM.
        let new = beyond_inputs(&s, &ran);
        let found = keep::Found {
            program: &program,
            pseed,
            console: &ran.console,
            run_dir: Some(&dir),
            history: None,
        };
        keep::record_hits(&s, &mut worker, &found, &ran.hits, &mut boots_seen).await;
        // The worker read the batch before this program's triage could run other programs in
        // the VM (it reads whenever a program has findings); admission's runs join the batch.
        let deferred = worker.take_deferred();
        keep::record_deferred(&s, &mut worker, &deferred, &mut boots_seen).await;
        sync_boots(&worker, &mut boots_seen);
        // A program with a finding is a finding, not an input: its mutants mostly hit it
        // again. Not only crashes (reboots): a lost device costs the device-state oracle's
        // whole wait and a fresh VM. Measured, seed 1, 30 min on fast+cover, when only
        // crashes were kept out: 40 % of the guided programs hit a device-state finding
        // (4.6 % of the blind ones), a guided program took 10.5 s against 3.8 s, and the
        // guided campaign ran 141 programs to the blind one's 457 and reached fewer lines.
        if !new.is_empty() && ran.hits.is_empty() && !s.done() {
            admit(&s, &mut worker, &program, origin, pseed, &new).await;
            sync_boots(&worker, &mut boots_seen);
            let deferred = worker.take_deferred();
            keep::record_deferred(&s, &mut worker, &deferred, &mut boots_seen).await;
        }
    }
    // The last batch's reading, unless the VM is gone.
    worker.flush_leaks().await;
    let deferred = worker.take_deferred();
    keep::record_deferred(&s, &mut worker, &deferred, &mut boots_seen).await;
    if worker.leaks_unread > 0 {
        tracing::warn!(
            "worker {id}: {} programs' leaks were never read (their VM crashed or hung before the batch's kmemleak reading)",
            worker.leaks_unread
        );
    }
    worker.retire().await;
}

/// A running triage's place among the workers and its reserved budget.
#[must_use = "a claim is given back with Shared::triage_done"]
pub(super) struct TriageClaim {
    reserved_ms: u64,
}

/// How many workers may triage at once: all but one, so that a campaign with two VMs or more
/// never stops fuzzing for triage; a single VM has to take turns.
fn max_triaging(jobs: usize) -> u64 {
    jobs.saturating_sub(1).max(1) as u64
}

/// The VM time triage may still take: `share` of the campaign's VM time (all of its time box
/// when it has one, else what it has run so far) less what triage has taken.
fn triage_allowance(
    share: f64,
    stop: Stop,
    elapsed: Duration,
    jobs: usize,
    spent: Duration,
) -> Duration {
    let span = match stop {
        Stop::After(d) => d,
        Stop::Programs(_) => elapsed,
    };
    span.mul_f64(share.clamp(0.0, 1.0) * jobs.max(1) as f64)
        .saturating_sub(spent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A nightly hour on two VMs lets triage take 36 of its 120 VM-minutes, early or late;
    /// once spent, findings are only recorded. Without a time box the share is of what ran.
    #[test]
    fn one_vm_keeps_fuzzing_while_the_others_triage() {
        assert_eq!(max_triaging(1), 1);
        assert_eq!(max_triaging(2), 1);
        assert_eq!(max_triaging(4), 3);
    }

    #[test]
    fn triage_takes_at_most_its_share_of_the_campaign() {
        let min = Duration::from_secs(60);
        let hour = Stop::After(60 * min);
        assert_eq!(
            triage_allowance(0.3, hour, min, 2, Duration::ZERO),
            36 * min
        );
        assert_eq!(triage_allowance(0.3, hour, 50 * min, 2, 30 * min), 6 * min);
        assert_eq!(
            triage_allowance(0.3, hour, 50 * min, 2, 40 * min),
            Duration::ZERO
        );
        let count = Stop::Programs(100);
        assert_eq!(triage_allowance(0.5, count, 10 * min, 1, 2 * min), 3 * min);
        assert_eq!(
            triage_allowance(0.0, hour, min, 1, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn program_seeds_are_distinct_across_campaigns_and_indices() {
        let mut seen = std::collections::HashSet::new();
        for c in 0..50u64 {
            for n in 0..200u64 {
                assert!(
                    seen.insert(program_seed(c, n)),
                    "collision at campaign {c} program {n}"
                );
            }
        }
        assert_eq!(program_seed(7, 3), program_seed(7, 3));
    }
}
