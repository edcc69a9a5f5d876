//! History replay: some crashes need what earlier programs left behind in the same VM (a
//! subchannel unregistered once, a replugged devno, a kobject freed too early) and do not
//! reproduce from their own program in a fresh VM. As syzkaller does with its execution log,
//! the worker keeps the programs its VM ran since boot; this module replays such a history in
//! a fresh VM and shrinks it: whole programs dropped first (ddmin over the sequence), then
//! each survivor shrunk with the program shrinker while the others stay as they are.
//!
//! A sequence is a phased scenario (`Scenario::history` plus the last program), so the result
//! is a file `ccwrig run` replays.

use std::future::Future;
use std::path::Path;
use std::time::Instant;

use super::corpus::Rate;
use super::shrink::{self, Budget};
use super::worker::Worker;
use super::FuzzError;
use crate::scenario::Scenario;

/// The history of a VM up to a hit (the hit's program last) as one phased scenario; `None`
/// for an empty history.
pub fn history_scenario(history: &[Scenario], title: &str) -> Option<Scenario> {
    let n = history.len();
    let description = format!(
        "The {n} program(s) a ccwrig fuzz VM ran since it booted, in order; the last one hit: \
         {title}. Replay: `ccwrig run` on this file runs them in one VM; `ccwrig replay` on the \
         finding directory measures and shrinks the sequence."
    );
    Scenario::from_phases(history.to_vec(), "history", &description)
}

/// The sequence as programs in run order, each with its own seed (a phase without one gets
/// 0, as the triage runs of single programs do).
pub fn phases_of(sc: &Scenario) -> Vec<Scenario> {
    sc.clone().into_phases()
}

/// Whether a sequence of programs, run in order in one fresh VM, reproduces the finding.
pub trait SeqReproduces {
    fn reproduces(&mut self, phases: &[Scenario]) -> impl Future<Output = bool>;
}

/// Plain predicates (tests, synthetic bugs).
impl<F: FnMut(&[Scenario]) -> bool> SeqReproduces for F {
    fn reproduces(&mut self, phases: &[Scenario]) -> impl Future<Output = bool> {
        std::future::ready(self(phases))
    }
}

#[derive(Debug, Clone)]
pub struct ShrunkHistory {
    pub phases: Vec<Scenario>,
    /// Sequences tested (each may cost several runs).
    pub tests: usize,
    /// Whole programs dropped from the sequence.
    pub dropped: usize,
    /// Whether the budget ran out before a fixpoint.
    pub exhausted: bool,
}

/// Operations in all phases: the size of a sequence.
pub fn size(phases: &[Scenario]) -> usize {
    phases.iter().map(shrink::size).sum()
}

/// Shrinks `phases` (assumed to reproduce) while `still` reproduces: first whole programs are
/// dropped, chunks from half the sequence down to single programs, restarting after each
/// accepted cut; then each surviving program, last first, is shrunk by [`shrink::shrink`]
/// inside the sequence. At least one program stays.
pub async fn shrink_history(
    phases: &[Scenario],
    budget: Budget,
    still: &mut impl SeqReproduces,
) -> ShrunkHistory {
    let t0 = Instant::now();
    let mut cur = phases.to_vec();
    let mut tests = 0usize;
    let over = |tests: usize| tests >= budget.max_tests || t0.elapsed() >= budget.max_time;
    let mut exhausted = false;
    'drop: loop {
        for c in drops(&cur) {
            if over(tests) {
                exhausted = true;
                break 'drop;
            }
            tests += 1;
            if still.reproduces(&c).await {
                cur = c;
                continue 'drop;
            }
        }
        break;
    }
    let dropped = phases.len() - cur.len();
    for i in (0..cur.len()).rev() {
        if exhausted || over(tests) {
            exhausted = true;
            break;
        }
        let left = Budget {
            max_tests: budget.max_tests - tests,
            max_time: budget.max_time.saturating_sub(t0.elapsed()),
        };
        let mut inside = Inside {
            phases: &cur,
            at: i,
            still: &mut *still,
        };
        let program = cur[i].clone();
        let s = shrink::shrink(&program, left, &mut inside).await;
        tests += s.tests;
        exhausted |= s.exhausted;
        cur[i] = s.program;
    }
    ShrunkHistory {
        phases: cur,
        tests,
        dropped,
        exhausted,
    }
}

/// The candidates of one round of dropping whole programs: chunks of half the sequence, then
/// quarters, ..., then single programs (the first program first at each size).
fn drops(cur: &[Scenario]) -> Vec<Vec<Scenario>> {
    let n = cur.len();
    let mut out = Vec::new();
    if n < 2 {
        return out;
    }
    let mut chunk = n.div_ceil(2);
    loop {
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            if end - start < n {
                let mut c = cur.to_vec();
                c.drain(start..end);
                out.push(c);
            }
            start = end;
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    out
}

/// A program shrink test that puts the candidate back into its place in the sequence.
struct Inside<'a, R> {
    phases: &'a [Scenario],
    at: usize,
    still: &'a mut R,
}

impl<R: SeqReproduces> shrink::Reproduces for Inside<'_, R> {
    async fn reproduces(&mut self, candidate: &Scenario) -> bool {
        let mut seq = self.phases.to_vec();
        seq[self.at] = candidate.clone();
        self.still.reproduces(&seq).await
    }
}

/// How one replay of a sequence ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// A program's run showed the key.
    Hit,
    /// Every program ran; none showed the key.
    Missed,
    /// Program `at` (0-based) retired the VM with another finding (`by`: its title or why)
    /// before the key showed: the rest of the history did not run in that VM.
    Interrupted { at: usize, by: String },
}

impl Replayed {
    pub fn hit(&self) -> bool {
        *self == Replayed::Hit
    }
}

/// Runs `phases` in order in a fresh VM of `worker`. The replay ends at the first program that
/// shows `key`, or that retires the VM (another crash, a hang): what follows would run in a
/// different VM, without the history.
pub async fn replay_once(
    worker: &mut Worker,
    phases: &[Scenario],
    key: &str,
    dir: &Path,
) -> Result<Replayed, FuzzError> {
    worker.retire().await;
    for (at, p) in phases.iter().enumerate() {
        let seed = p.race.seed.unwrap_or(0);
        let ran = worker.run(p, seed, dir).await?;
        if ran.hits.iter().any(|h| h.key == key) {
            return Ok(Replayed::Hit);
        }
        if let Some(why) = ran.retired {
            let by = ran.hits.first().map_or(why, |h| h.title.clone());
            return Ok(Replayed::Interrupted { at, by });
        }
    }
    Ok(Replayed::Missed)
}

/// Replays `phases` `tries` times (fewer when `deadline` passes, none once it has).
pub async fn replay_rate(
    worker: &mut Worker,
    phases: &[Scenario],
    key: &str,
    tries: u32,
    deadline: Option<Instant>,
    dir: &Path,
) -> Result<Rate, FuzzError> {
    let mut rate = Rate { hits: 0, tries: 0 };
    for _ in 0..tries {
        if super::triage::past(deadline) {
            break;
        }
        rate.tries += 1;
        if replay_once(worker, phases, key, dir).await?.hit() {
            rate.hits += 1;
        }
    }
    Ok(rate)
}

/// Sequence test on a fuzzing VM: reproduces if `need` of `tries` replays show `key`.
pub struct SeqOnVm<'a> {
    pub worker: &'a mut Worker,
    pub key: &'a str,
    pub tries: u32,
    pub need: u32,
    pub dir: &'a Path,
    /// The campaign's time box: no run starts after it, and a candidate whose answer it cut
    /// short does not reproduce.
    pub deadline: Option<std::time::Instant>,
    /// A harness error ends shrinking: the first is kept and reported.
    pub error: Option<FuzzError>,
}

impl SeqReproduces for SeqOnVm<'_> {
    async fn reproduces(&mut self, phases: &[Scenario]) -> bool {
        if self.error.is_some() {
            return false;
        }
        let mut hits = 0;
        for run in 0..self.tries {
            if hits >= self.need || hits + (self.tries - run) < self.need {
                break;
            }
            if super::triage::past(self.deadline) {
                return false;
            }
            match replay_once(self.worker, phases, self.key, self.dir).await {
                Ok(r) => hits += u32::from(r.hit()),
                Err(e) => {
                    self.error = Some(e);
                    return false;
                }
            }
        }
        hits >= self.need
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::gen::Generator;
    use ccwrig_proto::Op;
    use std::time::Duration;

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    fn has(p: &Scenario, f: &impl Fn(&Op) -> bool) -> bool {
        p.ops().any(f)
    }

    /// A synthetic history bug: an unbind in some program, and a later program that removes
    /// an mdev: like the teardown corruptions that need an earlier unregistration.
    fn bug(phases: &[Scenario]) -> bool {
        let unbind = |o: &Op| matches!(o, Op::Unbind { .. });
        let remove = |o: &Op| matches!(o, Op::MdevRemove { .. });
        phases
            .iter()
            .enumerate()
            .any(|(i, p)| has(p, &unbind) && phases[i + 1..].iter().any(|q| has(q, &remove)))
    }

    fn budget() -> Budget {
        Budget {
            max_tests: 2000,
            max_time: Duration::from_secs(60),
        }
    }

    #[test]
    fn drops_whole_programs_down_to_the_two_that_matter_then_shrinks_them() {
        let g = Generator::default();
        let mut checked = 0;
        for start in (0..400u64).step_by(20) {
            let phases: Vec<Scenario> =
                (start..start + 20).map(|s| g.generate(s).program).collect();
            if !bug(&phases) {
                continue;
            }
            let s = block_on(shrink_history(&phases, budget(), &mut bug));
            assert!(bug(&s.phases), "the shrunk history still has the bug");
            assert_eq!(s.phases.len(), 2, "an unbind program and a remove program");
            assert_eq!(s.dropped, 18);
            assert!(!s.exhausted);
            assert!(has(&s.phases[0], &|o| matches!(o, Op::Unbind { .. })));
            assert!(has(&s.phases[1], &|o| matches!(o, Op::MdevRemove { .. })));
            assert!(
                size(&s.phases) < size(&phases) / 4,
                "{} of {} operations left",
                size(&s.phases),
                size(&phases)
            );
            let seq = Scenario::from_phases(s.phases.clone(), "h", "shrunk").expect("phases");
            seq.validate()
                .expect("a shrunk sequence is a valid phased scenario");
            checked += 1;
        }
        assert!(
            checked >= 5,
            "only {checked} generated histories had the bug"
        );
    }

    #[test]
    fn a_bug_that_needs_nothing_but_its_own_program_keeps_one_program() {
        let g = Generator::default();
        let phases: Vec<Scenario> = (0..12u64).map(|s| g.generate(s).program).collect();
        let mut last_only = |p: &[Scenario]| p.last() == phases.last();
        let s = block_on(shrink_history(&phases, budget(), &mut last_only));
        assert_eq!(s.phases.len(), 1);
        assert_eq!(s.dropped, 11);
    }

    #[test]
    fn the_budget_stops_it() {
        let g = Generator::default();
        let phases: Vec<Scenario> = (0..12u64).map(|s| g.generate(s).program).collect();
        let tight = Budget {
            max_tests: 3,
            max_time: Duration::from_secs(60),
        };
        let mut count = 0;
        let mut never = |_: &[Scenario]| {
            count += 1;
            false
        };
        let s = block_on(shrink_history(&phases, tight, &mut never));
        assert_eq!(count, 3);
        assert!(s.exhausted);
        assert_eq!(s.phases, phases, "nothing accepted, nothing changed");
    }

    #[test]
    fn a_history_is_a_phased_scenario_that_reads_back_the_same() {
        let g = Generator::default();
        let mut phases: Vec<Scenario> = (0..4u64).map(|s| g.generate(s).program).collect();
        for (i, p) in phases.iter_mut().enumerate() {
            p.race.seed = Some(100 + i as u64);
        }
        let h =
            history_scenario(&phases, "BUG: corrupted list in kobj_kset_leave").expect("history");
        let text = h.to_toml();
        let back = crate::scenario::parse_str(&text, "history", None).expect("parses");
        assert_eq!(back, h);
        let seeds: Vec<_> = phases_of(&back).iter().map(|p| p.race.seed).collect();
        assert_eq!(seeds, vec![Some(100), Some(101), Some(102), Some(103)]);
        assert!(history_scenario(&[], "t").is_none());
    }
}
