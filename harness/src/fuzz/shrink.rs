//! Delta debugging of a program: keep a simplification only if the finding still shows.
//!
//! Passes, repeated until a full round changes nothing or the budget runs out: drop whole
//! actors, drop `mid` barriers, drop chunks of each actor's steps (halves, then quarters, ...,
//! then single steps, as ddmin), drop setup steps, cut `repeat` to 1, drop jitter, and simplify
//! operation arguments (I/O counts, close orders, open paths) and drop injected faults. A candidate that does not
//! validate is skipped without a test. The test (`still`) decides reproduction; for races it
//! should run the candidate several times and accept one hit (see [`super::reproduce`]).

use std::future::Future;
use std::time::{Duration, Instant};

use ccwrig_proto::{FdPart, Op, OpenVia};

use crate::scenario::{Scenario, Step};

/// How much shrinking may cost.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Candidates tested (each may cost several runs).
    pub max_tests: usize,
    pub max_time: Duration,
}

#[derive(Debug, Clone)]
pub struct Shrunk {
    pub program: Scenario,
    /// Candidates tested / accepted.
    pub tests: usize,
    pub accepted: usize,
    /// Whether the budget ran out before a fixpoint.
    pub exhausted: bool,
}

/// How big a program is, for reporting and for the "handful of steps" goal: operations in
/// setup and actors, times `repeat` for the actors' part.
pub fn size(p: &Scenario) -> usize {
    let ops = |steps: &[Step]| steps.iter().filter(|s| matches!(s, Step::Op(_))).count();
    ops(&p.setup) + p.actors.iter().map(|a| ops(&a.steps)).sum::<usize>() * p.race.repeat as usize
}

/// Barriers that fewer than two actors meet are dropped (a lone barrier is invalid, and means
/// nothing), and so are actors left with nothing but barriers.
pub(super) fn normalize(mut p: Scenario) -> Scenario {
    loop {
        let names: Vec<String> = p.barrier_names().into_iter().map(str::to_string).collect();
        let mut changed = false;
        for n in names {
            let meeting = p
                .actors
                .iter()
                .filter(|a| {
                    a.steps
                        .iter()
                        .any(|s| matches!(s, Step::Barrier { name, .. } if *name == n))
                })
                .count();
            if meeting < 2 {
                for a in &mut p.actors {
                    a.steps
                        .retain(|s| !matches!(s, Step::Barrier { name, .. } if *name == n));
                }
                changed = true;
            }
        }
        let before = p.actors.len();
        p.actors
            .retain(|a| a.steps.iter().any(|s| matches!(s, Step::Op(_))));
        changed |= p.actors.len() != before;
        // Per-step jitter is only valid right after a barrier; a removed barrier strands it.
        for a in &mut p.actors {
            for i in 0..a.steps.len() {
                let after_barrier = i > 0 && matches!(a.steps[i - 1], Step::Barrier { .. });
                if let Step::Op(s) = &mut a.steps[i] {
                    if !after_barrier && s.jitter_ms.is_some() {
                        s.jitter_ms = None;
                    }
                }
            }
        }
        if !changed {
            return p;
        }
    }
}

/// Every candidate one pass proposes, from the current program.
pub(super) fn candidates(p: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    // Whole actors first: the biggest cut.
    if p.actors.len() > 1 {
        for i in 0..p.actors.len() {
            let mut c = p.clone();
            c.actors.remove(i);
            out.push(c);
        }
    }
    if p.race.repeat > 1 {
        let mut c = p.clone();
        c.race.repeat = 1;
        out.push(c);
    }
    for n in p.barrier_names() {
        let mut c = p.clone();
        for a in &mut c.actors {
            a.steps
                .retain(|s| !matches!(s, Step::Barrier { name, .. } if name == n));
        }
        out.push(c);
    }
    // ddmin over each actor's steps: chunks from half the list down to single steps.
    for (ai, a) in p.actors.iter().enumerate() {
        let n = a.steps.len();
        let mut chunk = n.div_ceil(2).max(1);
        loop {
            let mut start = 0;
            while start < n {
                let end = (start + chunk).min(n);
                let mut c = p.clone();
                c.actors[ai].steps.drain(start..end);
                out.push(c);
                start = end;
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    for i in 0..p.setup.len() {
        let mut c = p.clone();
        c.setup.remove(i);
        out.push(c);
    }
    if p.race.jitter_ms != (0, 0) {
        let mut c = p.clone();
        c.race.jitter_ms = (0, 0);
        out.push(c);
    }
    // Argument simplification, one step at a time.
    let each_op = |p: &Scenario, f: &dyn Fn(&Op) -> Option<Op>| -> Vec<Scenario> {
        let mut v = Vec::new();
        for i in 0..p.setup.len() {
            if let Step::Op(s) = &p.setup[i] {
                if let Some(op) = f(&s.op) {
                    let mut c = p.clone();
                    if let Step::Op(t) = &mut c.setup[i] {
                        t.op = op;
                    }
                    v.push(c);
                }
            }
        }
        for (ai, a) in p.actors.iter().enumerate() {
            for (i, st) in a.steps.iter().enumerate() {
                if let Step::Op(s) = st {
                    if let Some(op) = f(&s.op) {
                        let mut c = p.clone();
                        if let Step::Op(t) = &mut c.actors[ai].steps[i] {
                            t.op = op;
                        }
                        v.push(c);
                    }
                }
            }
        }
        v
    };
    out.extend(each_op(p, &simpler_op));
    // An injected fault dropped, one step at a time.
    for (ai, a) in p.actors.iter().enumerate() {
        for (i, st) in a.steps.iter().enumerate() {
            if matches!(st, Step::Op(s) if s.fail_nth.is_some()) {
                let mut c = p.clone();
                if let Step::Op(t) = &mut c.actors[ai].steps[i] {
                    t.fail_nth = None;
                }
                out.push(c);
            }
        }
    }
    for (i, st) in p.setup.iter().enumerate() {
        if matches!(st, Step::Op(s) if s.fail_nth.is_some()) {
            let mut c = p.clone();
            if let Step::Op(t) = &mut c.setup[i] {
                t.fail_nth = None;
            }
            out.push(c);
        }
    }
    out.into_iter()
        .map(normalize)
        .filter(|c| c != p && c.validate().is_ok())
        .collect()
}

/// The same operation with plainer arguments, if there are any.
fn simpler_op(op: &Op) -> Option<Op> {
    let default_order = FdPart::DEFAULT_ORDER.to_vec();
    match op {
        Op::Io {
            handle,
            count,
            suspend,
            irq_wait_ms,
            program,
        } if *count > 1 => Some(Op::Io {
            handle: handle.clone(),
            count: 1,
            suspend: *suspend,
            irq_wait_ms: *irq_wait_ms,
            program: program.clone(),
        }),
        Op::Close { handle, order } if *order != default_order => Some(Op::Close {
            handle: handle.clone(),
            order: default_order,
        }),
        Op::Open {
            mdev,
            handle,
            via: OpenVia::Iommufd,
        } => Some(Op::Open {
            mdev: mdev.clone(),
            handle: handle.clone(),
            via: OpenVia::Group,
        }),
        Op::Sleep { ms } if *ms > 0 => Some(Op::Sleep { ms: 0 }),
        _ => None,
    }
}

/// Whether a candidate still shows the finding. The shrinker awaits each answer before it
/// asks the next, so an implementation may hold `&mut` state (a VM) across the await.
pub trait Reproduces {
    fn reproduces(&mut self, candidate: &Scenario) -> impl Future<Output = bool>;
}

/// Plain predicates (tests, synthetic bugs).
impl<F: FnMut(&Scenario) -> bool> Reproduces for F {
    fn reproduces(&mut self, candidate: &Scenario) -> impl Future<Output = bool> {
        std::future::ready(self(candidate))
    }
}

/// Shrinks `program` while `still` reproduces. `program` itself is assumed to reproduce.
pub async fn shrink(program: &Scenario, budget: Budget, still: &mut impl Reproduces) -> Shrunk {
    let t0 = Instant::now();
    let mut cur = normalize(program.clone());
    let (mut tests, mut accepted) = (0usize, 0usize);
    let over = |tests: usize| tests >= budget.max_tests || t0.elapsed() >= budget.max_time;
    'rounds: loop {
        let mut progressed = false;
        let mut cands = candidates(&cur);
        while let Some(c) = (!cands.is_empty()).then(|| cands.remove(0)) {
            if over(tests) {
                break 'rounds;
            }
            // Never trade for something bigger (argument changes keep the size).
            if size(&c) > size(&cur) {
                continue;
            }
            tests += 1;
            if still.reproduces(&c).await {
                accepted += 1;
                cur = c;
                progressed = true;
                // Restart from the smaller program: its candidates are what matters now.
                cands = candidates(&cur);
            }
        }
        if !progressed {
            return Shrunk {
                program: cur,
                tests,
                accepted,
                exhausted: false,
            };
        }
    }
    Shrunk {
        program: cur,
        tests,
        accepted,
        exhausted: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::gen::Generator;
    use ccwrig_proto::Op;

    fn has(p: &Scenario, f: impl Fn(&Op) -> bool) -> bool {
        p.setup
            .iter()
            .chain(p.actors.iter().flat_map(|a| a.steps.iter()))
            .filter_map(Step::op)
            .any(f)
    }

    /// A synthetic bug: "a reset on a handle while the host unplugs", like the planted one.
    fn bug(p: &Scenario) -> bool {
        has(p, |o| matches!(o, Op::Reset { .. })) && has(p, |o| matches!(o, Op::DeviceDel { .. }))
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn shrinks_generated_programs_to_the_essence() {
        let g = Generator::default();
        let mut shrunk_any = 0;
        for seed in 0..400u64 {
            let p = g.generate(seed).program;
            if !bug(&p) {
                continue;
            }
            let budget = Budget {
                max_tests: 400,
                max_time: Duration::from_secs(30),
            };
            let s = block_on(shrink(&p, budget, &mut |c: &Scenario| bug(c)));
            assert!(
                bug(&s.program),
                "seed {seed}: the result must still reproduce"
            );
            assert!(
                s.program.validate().is_ok(),
                "seed {seed}: the result must validate"
            );
            // reset needs an open needs an mdev needs a bind; plus the unplug.
            assert!(
                size(&s.program) <= 5,
                "seed {seed}: size {} left:\n{}",
                size(&s.program),
                s.program.to_toml()
            );
            assert!(!s.exhausted, "seed {seed}");
            shrunk_any += 1;
        }
        assert!(
            shrunk_any >= 5,
            "only {shrunk_any} programs had the synthetic bug"
        );
    }

    #[test]
    fn flaky_predicate_keeps_only_reproducing_candidates() {
        // A predicate that fails every other call: the shrinker must never accept a candidate
        // without the bug, whatever the flakiness does to the rest.
        let g = Generator::default();
        let p = (0..400u64)
            .map(|s| g.generate(s).program)
            .find(bug)
            .expect("some program has the bug");
        let mut n = 0u32;
        let budget = Budget {
            max_tests: 300,
            max_time: Duration::from_secs(30),
        };
        let s = block_on(shrink(&p, budget, &mut |c: &Scenario| {
            n += 1;
            n.is_multiple_of(2) && bug(c)
        }));
        assert!(bug(&s.program));
        assert!(size(&s.program) <= size(&p));
    }

    #[test]
    fn budget_bounds_the_tests() {
        let g = Generator::default();
        let p = g.generate(7).program;
        let budget = Budget {
            max_tests: 3,
            max_time: Duration::from_secs(30),
        };
        let s = block_on(shrink(&p, budget, &mut |_: &Scenario| true));
        assert!(s.tests <= 3);
        assert!(s.exhausted || s.tests < 3);
    }

    #[test]
    fn normalize_drops_lone_barriers_and_empty_actors() {
        let g = Generator::default();
        for seed in 0..200u64 {
            let mut p = g.generate(seed).program;
            if p.actors.len() < 2 {
                continue;
            }
            p.actors.truncate(1);
            let n = normalize(p);
            assert!(n.barrier_names().is_empty(), "seed {seed}");
            assert!(n.validate().is_ok(), "seed {seed}: {:?}", n.validate());
        }
    }
}
