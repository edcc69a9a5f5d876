//! What happens to a new finding: measure how often its program reproduces it, shrink the
//! program to a small `repro.toml`, and measure that again.
//!
//! Runs use the program's recorded seed, as `ccwrig run repro.toml` will: the rates are the
//! rates a developer replaying the file gets. Races stay probabilistic, so during shrinking a
//! candidate counts when it reproduces about as reliably as the original did: in at least
//! `original rate × shrink_tries` (at least one) of `shrink_tries` runs. One lucky hit is
//! enough for a finding that is rare anyway, but would let a 9/10 race shrink into a 5/10 one.

use std::path::Path;
use std::time::{Duration, Instant};

use super::corpus::{HistoryTriage, Rate, Triage};
use super::replay;
use super::shrink::{self, Budget};
use super::worker::Worker;
use super::FuzzError;
use crate::scenario::Scenario;

#[derive(Debug, Clone, Copy)]
pub struct TriageConfig {
    /// Runs of the original program and of the final repro.
    pub tries: u32,
    /// Runs per shrink candidate (see `hits_needed`).
    pub shrink_tries: u32,
    pub budget: Budget,
    /// Reproduction runs stop here (after at least one): the campaign's time box.
    pub deadline: Option<Instant>,
    /// The most of the campaign's VM time triage may take (its time box's, or, without one,
    /// what it has run so far): finding new bugs comes first, a finding left untriaged can
    /// be triaged later (`ccwrig replay`).
    pub share: f64,
}

/// Triage's default share of a campaign's VM time.
pub const TRIAGE_SHARE: f64 = 0.3;

impl Default for TriageConfig {
    fn default() -> Self {
        TriageConfig {
            tries: 10,
            shrink_tries: 3,
            budget: Budget {
                max_tests: 60,
                max_time: Duration::from_secs(300),
            },
            deadline: None,
            share: TRIAGE_SHARE,
        }
    }
}

/// Runs `program` `tries` times (fewer when `deadline` passes, none once it has) and counts
/// the runs showing `key`.
pub async fn reproduce(
    worker: &mut Worker,
    program: &Scenario,
    key: &str,
    tries: u32,
    deadline: Option<Instant>,
    dir: &Path,
) -> Result<Rate, FuzzError> {
    let seed = program.race.seed.unwrap_or(0);
    let mut rate = Rate { hits: 0, tries: 0 };
    for _ in 0..tries {
        if past(deadline) {
            break;
        }
        let ran = worker.run(program, seed, dir).await?;
        rate.tries += 1;
        if ran.hits.iter().any(|h| h.key == key) {
            rate.hits += 1;
        }
    }
    Ok(rate)
}

/// How many of `tries` runs a shrink candidate must reproduce in, given the original's rate.
pub fn hits_needed(original: Rate, tries: u32) -> u32 {
    if original.tries == 0 {
        return 1;
    }
    ((original.hits * tries) / original.tries).clamp(1, tries.max(1))
}

/// Shrink test on a fuzzing VM: the candidate reproduces if `need` of `tries` runs show `key`.
struct OnVm<'a> {
    worker: &'a mut Worker,
    key: &'a str,
    tries: u32,
    need: u32,
    dir: &'a Path,
    /// The campaign's time box: no run starts after it, and a candidate whose answer it cut
    /// short does not reproduce.
    deadline: Option<Instant>,
    /// A harness error ends shrinking: the first is kept and reported.
    error: Option<FuzzError>,
}

/// Whether `deadline` has passed.
pub(super) fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// `budget` with its time limit cut to what is left before `deadline`, counted from `t0`
/// (a shrink's limit is counted from its own start; the time box is not).
pub(super) fn within(
    mut budget: shrink::Budget,
    deadline: Option<Instant>,
    t0: Instant,
) -> shrink::Budget {
    if let Some(d) = deadline {
        budget.max_time = budget.max_time.min(d.saturating_duration_since(t0));
    }
    budget
}

impl shrink::Reproduces for OnVm<'_> {
    async fn reproduces(&mut self, candidate: &Scenario) -> bool {
        if self.error.is_some() {
            return false;
        }
        let seed = candidate.race.seed.unwrap_or(0);
        let mut hits = 0;
        for run in 0..self.tries {
            // Stop as soon as the answer is known either way.
            if hits >= self.need || hits + (self.tries - run) < self.need {
                break;
            }
            if past(self.deadline) {
                return false;
            }
            match self.worker.run(candidate, seed, self.dir).await {
                Ok(ran) => {
                    if ran.hits.iter().any(|h| h.key == self.key) {
                        hits += 1;
                    }
                }
                Err(e) => {
                    self.error = Some(e);
                    return false;
                }
            }
        }
        hits >= self.need
    }
}

/// The shrunk program, named and described for someone who opens `repro.toml`.
fn as_repro(mut p: Scenario, title: &str, from_seed: u64) -> Scenario {
    p.name = "repro".into();
    p.description = format!(
        "Shrunk by ccwrig fuzz from program seed {from_seed}. On a kernel with the bug, this run \
         fails with: {title}"
    );
    p
}

/// Reproduces, shrinks and re-measures. `program` must carry its seed in `race.seed`.
/// `history` is what the VM ran since boot up to and including `program` (each with its
/// seed); when the program alone does not reproduce, the history is replayed and shrunk
/// instead, and the reproducer is a phased scenario.
pub async fn triage(
    worker: &mut Worker,
    program: &Scenario,
    history: &[Scenario],
    key: &str,
    title: &str,
    cfg: TriageConfig,
) -> Result<(Triage, Option<Scenario>), FuzzError> {
    let dir = worker.dir().join("triage");
    let original = reproduce(worker, program, key, cfg.tries, cfg.deadline, &dir).await?;
    let original_size = shrink::size(program);
    let mut t = Triage {
        original,
        repro: None,
        original_size,
        repro_size: None,
        shrink_tests: 0,
        shrink_ms: 0,
        history: None,
    };
    if original.hits == 0 {
        // Not reproducible as a program on its own: it may need what earlier programs left
        // in the VM. Without a history (the VM's first program), the original stays the
        // evidence, with no repro.
        if history.len() < 2 || cfg.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok((t, None));
        }
        let (h, repro) = triage_history(worker, history, key, title, cfg, &dir).await?;
        t.history = Some(h);
        return Ok((t, repro));
    }
    let t0 = Instant::now();
    let mut test = OnVm {
        worker: &mut *worker,
        key,
        tries: cfg.shrink_tries,
        need: hits_needed(original, cfg.shrink_tries),
        dir: &dir,
        deadline: cfg.deadline,
        error: None,
    };
    let shrunk = shrink::shrink(program, within(cfg.budget, cfg.deadline, t0), &mut test).await;
    let error = test.error;
    if let Some(e) = error {
        return Err(e);
    }
    t.shrink_tests = shrunk.tests;
    t.shrink_ms = t0.elapsed().as_millis() as u64;
    let repro = as_repro(shrunk.program, title, program.race.seed.unwrap_or(0));
    let rate = reproduce(worker, &repro, key, cfg.tries, cfg.deadline, &dir).await?;
    if (rate.hits == 0 && t.shrink_tests > 0) || rate.tries == 0 {
        // Shrinking accepted candidates on single lucky hits and lost the race, or the time
        // box ended before the shrunk program could be measured: the original, which did
        // reproduce, is the better reproducer.
        let original = as_repro(program.clone(), title, program.race.seed.unwrap_or(0));
        t.repro = Some(t.original);
        t.repro_size = Some(original_size);
        return Ok((t, Some(original)));
    }
    t.repro = Some(rate);
    t.repro_size = Some(shrink::size(&repro));
    Ok((t, Some(repro)))
}

/// Replays the history, and if it reproduces, shrinks it and measures the shrunk sequence,
/// within the same budget and time box as a program's triage.
async fn triage_history(
    worker: &mut Worker,
    history: &[Scenario],
    key: &str,
    title: &str,
    cfg: TriageConfig,
    dir: &Path,
) -> Result<(HistoryTriage, Option<Scenario>), FuzzError> {
    let rate = replay::replay_rate(worker, history, key, cfg.tries, cfg.deadline, dir).await?;
    let mut h = HistoryTriage {
        programs: history.len(),
        rate,
        repro_programs: None,
        repro: None,
        repro_size: None,
        shrink_tests: 0,
        shrink_ms: 0,
    };
    if rate.hits == 0 {
        return Ok((h, None));
    }
    let t0 = Instant::now();
    let budget = within(cfg.budget, cfg.deadline, t0);
    let mut test = replay::SeqOnVm {
        worker: &mut *worker,
        key,
        tries: cfg.shrink_tries,
        need: hits_needed(rate, cfg.shrink_tries),
        dir,
        deadline: cfg.deadline,
        error: None,
    };
    let shrunk = replay::shrink_history(history, budget, &mut test).await;
    if let Some(e) = test.error {
        return Err(e);
    }
    h.shrink_tests = shrunk.tests;
    h.shrink_ms = t0.elapsed().as_millis() as u64;
    let mut phases = shrunk.phases;
    let mut repro_rate = if phases.as_slice() == history {
        rate
    } else {
        replay::replay_rate(worker, &phases, key, cfg.tries, cfg.deadline, dir).await?
    };
    if repro_rate.hits == 0 {
        // Shrinking accepted lucky hits and lost the race: the whole history did reproduce.
        phases = history.to_vec();
        repro_rate = rate;
    }
    h.repro_programs = Some(phases.len());
    h.repro = Some(repro_rate);
    h.repro_size = Some(replay::size(&phases));
    let description = format!(
        "Shrunk by ccwrig fuzz from the {} programs its VM ran up to the hit, replayed in one \
         fresh VM in this order. On a kernel with the bug, this run fails with: {title}",
        history.len()
    );
    Ok((h, Scenario::from_phases(phases, "repro", &description)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shrink that starts 3 minutes before the time box ends gets 3 minutes, not its own
    /// limit counted from its start (a 5-minute kasan campaign's triage ran 4 minutes over).
    #[test]
    fn a_shrink_ends_with_the_time_box() {
        let budget = shrink::Budget {
            max_tests: 50,
            max_time: Duration::from_secs(600),
        };
        let t0 = Instant::now();
        let b = within(budget, Some(t0 + Duration::from_secs(180)), t0);
        assert_eq!(b.max_time, Duration::from_secs(180));
        assert_eq!(b.max_tests, 50);
        assert_eq!(within(budget, None, t0).max_time, Duration::from_secs(600));
        assert_eq!(within(budget, Some(t0), t0).max_time, Duration::ZERO);
        assert!(past(Some(t0)));
        assert!(!past(Some(t0 + Duration::from_secs(60))));
        assert!(!past(None));
    }

    #[test]
    fn candidates_must_be_about_as_reliable_as_the_original() {
        let r = |hits, tries| Rate { hits, tries };
        assert_eq!(hits_needed(r(10, 10), 3), 3);
        assert_eq!(hits_needed(r(9, 10), 3), 2);
        assert_eq!(hits_needed(r(5, 10), 3), 1);
        assert_eq!(
            hits_needed(r(1, 10), 3),
            1,
            "a rare finding still shrinks on one hit"
        );
        assert_eq!(hits_needed(r(0, 0), 3), 1);
        assert_eq!(hits_needed(r(4, 4), 0), 1);
    }
}
