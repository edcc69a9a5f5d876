//! Coverage feedback: which program runs next (a fresh one, or a mutant of a corpus input),
//! and whether a program that showed new points is kept as an input.
//!
//! Coverage of a racy program is noisy: a point one run shows, the next may not. A program
//! whose run shows points the inputs lack is run once more; only the new points that run
//! shows again ("confirmed") count, and the program is kept only for those. It is then
//! minimised with the shrinker, a candidate passing when its one run covers every confirmed
//! point. Confirmation and minimisation are re-runs, not fuzzing: together they get at most
//! [`GuideConfig::minimise_share`] of the campaign's VM time, and a program whose new points
//! come when that is spent is not kept (the points stay unconfirmed, so a later program that
//! shows them gets its chance).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::gen::Generator;
use super::inputs::{Cover, Inputs, Origin};
use super::mutate;
use super::shrink::{self, Budget};
use super::worker::Worker;
use super::FuzzError;
use crate::coverage::Coverage;
use crate::scenario::Scenario;

#[derive(Debug, Clone, Copy)]
pub struct GuideConfig {
    /// `false` (`--blind`): every program is fresh and nothing is kept, as before feedback;
    /// coverage is still measured, so a blind and a guided campaign compare.
    pub feedback: bool,
    /// Share of programs generated fresh while the corpus has inputs.
    pub fresh_share: f64,
    /// Largest share of the campaign's VM time confirmation and minimisation may take.
    pub minimise_share: f64,
    /// Shrink candidates tested per kept program.
    pub minimise_tests: usize,
    /// Time limit of one program's minimisation.
    pub minimise_time: Duration,
    /// How parents are chosen among the inputs.
    pub parents: super::inputs::Parents,
}

impl Default for GuideConfig {
    fn default() -> Self {
        GuideConfig {
            feedback: true,
            // Measured on the fast kernel, seed 7, 5 minutes, 1 VM: blind 21/30 FSM cells,
            // half fresh 20/30, a quarter fresh 18/30 (ci/FUZZING.md).
            fresh_share: 0.5,
            minimise_share: 0.3,
            minimise_tests: 6,
            minimise_time: Duration::from_secs(60),
            parents: super::inputs::Parents::Uniform,
        }
    }
}

/// Grace before the share applies: the first programs of a campaign are the ones most
/// likely to add points, and 0.3 of nothing is nothing.
const MINIMISE_GRACE: Duration = Duration::from_secs(60);

/// Counters of the feedback loop, for the progress line and the summary.
#[derive(Debug, Default)]
pub struct GuideStats {
    pub fresh: AtomicU64,
    pub mutants: AtomicU64,
    /// Mutants the validator or [`mutate::sound`] refused before they reached a VM.
    pub rejected: AtomicU64,
    /// Parents no admissible mutant came from (a fresh program ran instead).
    pub no_mutant: AtomicU64,
    /// Points programs showed beyond the corpus, and of those, the ones a re-run showed again.
    pub new_points: AtomicU64,
    pub confirmed_points: AtomicU64,
    /// Programs with new points that were not confirmed because the share was spent.
    pub unconfirmed: AtomicU64,
    /// Confirmed programs not kept because they are not [`super::sound`] (a fresh program
    /// that opens a removed mdev on purpose, and minimisation could not cut that open): every
    /// mutant of such an input would be rejected.
    pub unsound: AtomicU64,
    /// Inputs kept, by where the program came from.
    pub kept_fresh: AtomicU64,
    pub kept_mutants: AtomicU64,
    /// VM time of confirmation and minimisation runs.
    pub minimise_ms: AtomicU64,
}

/// The program of number `n` (seed `pseed`): fresh (`gen.generate(pseed)`, the program a
/// blind campaign runs as number `n`) or a mutant of an input.
pub fn next_program(
    pseed: u64,
    gen: &Generator,
    inputs: Option<&std::sync::Mutex<Inputs>>,
    cfg: &GuideConfig,
    stats: &GuideStats,
) -> (Scenario, Origin) {
    let fresh = || gen.generate(pseed).program;
    let mut rng = ChaCha8Rng::seed_from_u64(pseed);
    let picked = inputs.filter(|_| cfg.feedback).and_then(|m| {
        if rng.random_bool(cfg.fresh_share.clamp(0.0, 1.0)) {
            return None;
        }
        let inputs = m.lock().ok()?;
        let parent = inputs.pick(&mut rng, cfg.parents)?;
        // Half the donors are inputs (splicing what worked), half fresh programs.
        let donor = match rng.random_bool(0.5) {
            true => inputs
                .pick(&mut rng, cfg.parents)
                .map(|d| d.program.clone()),
            false => None,
        };
        Some((parent.id.clone(), parent.program.clone(), donor))
    });
    let Some((parent_id, parent, donor)) = picked else {
        stats.fresh.fetch_add(1, Ordering::Relaxed);
        return (fresh(), Origin::Fresh);
    };
    let donor = donor.unwrap_or_else(|| gen.generate(rng.random()).program);
    let (mutant, rejected) = mutate::mutate(&parent, &donor, &mut rng);
    stats
        .rejected
        .fetch_add(u64::from(rejected), Ordering::Relaxed);
    let Some(m) = mutant else {
        stats.no_mutant.fetch_add(1, Ordering::Relaxed);
        stats.fresh.fetch_add(1, Ordering::Relaxed);
        return (fresh(), Origin::Fresh);
    };
    stats.mutants.fetch_add(1, Ordering::Relaxed);
    let mut p = m.program;
    p.name = format!("fuzz-{pseed:016x}");
    p.description = format!(
        "Mutated by ccwrig fuzz ({}) from corpus input {parent_id}, program seed {pseed}.",
        m.mutation.name()
    );
    p.race.seed = Some(pseed >> 1);
    p.history.clear();
    // An input kept before the fuzz machine rested on vfio_ccw (or by a campaign with another
    // rest) runs on this campaign's: its cleanup gives the subchannels back where the next
    // program expects them.
    p.machine.rest = gen.config.machine.rest;
    (
        p,
        Origin::Mutant {
            parent: parent_id,
            mutation: m.mutation,
        },
    )
}

/// Whether confirmation and minimisation may take more VM time now, and how much.
pub fn minimise_allowance(
    cfg: &GuideConfig,
    stats: &GuideStats,
    elapsed: Duration,
    jobs: usize,
) -> Option<Duration> {
    let vm_time = (elapsed + MINIMISE_GRACE).as_millis() as f64 * jobs.max(1) as f64;
    let allowed = (vm_time * cfg.minimise_share) as u64;
    let spent = stats.minimise_ms.load(Ordering::Relaxed);
    allowed
        .checked_sub(spent)
        .filter(|left| *left > 0)
        .map(Duration::from_millis)
}

/// A program that showed `new` points: re-runs it, and when some of `new` show again,
/// minimises it and returns it with the coverage and the wall time (ms) of its last accepted
/// run. `budget` bounds the whole (confirmation included).
pub async fn confirm_and_minimise(
    worker: &mut Worker,
    program: &Scenario,
    new: &Coverage,
    budget: Duration,
    cfg: &GuideConfig,
    stats: &GuideStats,
) -> Result<Option<(Scenario, Coverage, u64)>, FuzzError> {
    let t0 = std::time::Instant::now();
    let dir = worker.dir().join("minimise");
    let seed = program.race.seed.unwrap_or(0);
    let spent = || {
        stats
            .minimise_ms
            .fetch_add(t0.elapsed().as_millis() as u64, Ordering::Relaxed)
    };
    let again = match worker.run_for_coverage(program, seed, &dir).await {
        Ok(r) => r,
        Err(e) => {
            spent();
            return Err(e);
        }
    };
    let confirmed = new.common(&again.coverage);
    stats
        .confirmed_points
        .fetch_add(confirmed.len() as u64, Ordering::Relaxed);
    if confirmed.is_empty() {
        spent();
        return Ok(None);
    }
    let mut test = Covers {
        worker,
        want: &confirmed,
        dir: &dir,
        last: again.coverage.clone(),
        last_ms: again.wall_ms,
        error: None,
    };
    let left = budget.saturating_sub(t0.elapsed());
    let shrunk = shrink::shrink(
        program,
        Budget {
            max_tests: cfg.minimise_tests,
            max_time: left.min(cfg.minimise_time),
        },
        &mut test,
    )
    .await;
    let (last, last_ms, error) = (test.last, test.last_ms, test.error);
    spent();
    if let Some(e) = error {
        // The program itself was confirmed: keep what shrinking had reached.
        tracing::warn!("minimising {}: {e}", program.name);
    }
    // `last` is the coverage of the last accepted candidate, which is the shrunk program (or
    // of the confirming run when none was accepted): it covers every confirmed point.
    Ok(Some((shrunk.program, last, last_ms)))
}

/// Shrink test: one run of the candidate covers every wanted point.
struct Covers<'a> {
    worker: &'a mut Worker,
    want: &'a Coverage,
    dir: &'a Path,
    last: Coverage,
    last_ms: u64,
    error: Option<FuzzError>,
}

impl shrink::Reproduces for Covers<'_> {
    async fn reproduces(&mut self, candidate: &Scenario) -> bool {
        // The shrinker's cuts can drop the close a remove waits for, or the release of a
        // stall: an input is mutated again and again, so it must be sound like a mutant.
        if self.error.is_some() || super::sound::sound(candidate).is_err() {
            return false;
        }
        let seed = candidate.race.seed.unwrap_or(0);
        match self
            .worker
            .run_for_coverage(candidate, seed, self.dir)
            .await
        {
            Ok(ran) if ran.coverage.covers(self.want) => {
                self.last = ran.coverage;
                self.last_ms = ran.wall_ms;
                true
            }
            Ok(_) => false,
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }
}

/// Keeps a confirmed program as an input (unless what it adds is by now covered: another
/// worker may have kept one first, or it is not sound). Returns its id when kept.
pub fn keep(
    inputs: &std::sync::Mutex<Inputs>,
    program: &Scenario,
    cover: Cover,
    stats: &GuideStats,
) -> Result<Option<String>, FuzzError> {
    if super::sound::sound(program).is_err() {
        stats.unsound.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    }
    let Ok(mut inputs) = inputs.lock() else {
        return Ok(None);
    };
    if inputs.covered().covers(&cover.coverage) {
        return Ok(None);
    }
    let counter = match cover.origin {
        Origin::Fresh => &stats.kept_fresh,
        Origin::Mutant { .. } => &stats.kept_mutants,
    };
    let id = inputs.add(program, cover)?;
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::campaign::program_seed;

    #[test]
    fn blind_programs_are_the_generator_s_and_guided_ones_mutate_inputs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mut inputs, _) = Inputs::open(tmp.path()).expect("open");
        let g = Generator::default();
        let parent = g.generate(5).program;
        let cover = Cover {
            coverage: [crate::coverage::Point::Fsm {
                state: 1,
                event: 4,
                next: 2,
            }]
            .into_iter()
            .collect(),
            origin: Origin::Fresh,
            program_seed: 5,
            kernel: None,
            wall_ms: None,
        };
        inputs.add(&parent, cover).expect("add");
        let inputs = std::sync::Mutex::new(inputs);
        let stats = GuideStats::default();
        let blind = GuideConfig {
            feedback: false,
            ..GuideConfig::default()
        };
        for n in 0..20 {
            let s = program_seed(3, n);
            let (p, o) = next_program(s, &g, Some(&inputs), &blind, &stats);
            assert_eq!((p, o), (g.generate(s).program, Origin::Fresh));
        }
        let guided = GuideConfig::default();
        let stats = GuideStats::default();
        let mut mutants = 0;
        for n in 0..200 {
            let s = program_seed(3, n);
            let (p, o) = next_program(s, &g, Some(&inputs), &guided, &stats);
            assert!(p.validate().is_ok(), "{}", p.to_toml());
            if let Origin::Mutant { parent: id, .. } = o {
                assert_eq!(id, inputs.lock().expect("lock").entries()[0].id);
                assert_eq!(p.race.seed, Some(s >> 1));
                mutants += 1;
            }
        }
        let fresh = stats.fresh.load(Ordering::Relaxed) as usize;
        assert_eq!(fresh + mutants, 200);
        // Half fresh by default, give or take the dice and parents without a mutant.
        assert!((70..=140).contains(&fresh), "{fresh} fresh of 200");
    }

    #[test]
    fn the_minimise_share_bounds_confirmation_time() {
        let cfg = GuideConfig::default();
        let stats = GuideStats::default();
        let allow = minimise_allowance(&cfg, &stats, Duration::from_secs(0), 1).expect("grace");
        assert_eq!(allow, Duration::from_secs(18));
        stats.minimise_ms.store(18_000, Ordering::Relaxed);
        assert_eq!(minimise_allowance(&cfg, &stats, Duration::ZERO, 1), None);
        // Ten minutes in with two VMs: 0.3 of 22 VM-minutes.
        let allow = minimise_allowance(&cfg, &stats, Duration::from_secs(600), 2).expect("left");
        assert_eq!(allow, Duration::from_millis(396_000 - 18_000));
    }
}
