//! Mutation of corpus programs: a program that added coverage is changed a little (a step
//! inserted, removed, replaced or moved to another actor, a barrier moved, jitter or repeat
//! changed, two programs spliced) in the hope that the change reaches further.
//!
//! Steps come from a donor: another corpus program or a freshly generated one, whose handles
//! and mdevs are named as the parent's are (`h0`, `m0`, ...), so most borrowed steps refer to
//! things the parent makes. Removal and argument simplification are the shrinker's own edits
//! ([`super::shrink`]). Every mutant is normalised as the shrinker does, then must pass the
//! scenario validator (any mutant is a valid `ccwrig run` file) and [`sound`], which rejects
//! what would make a hang of the program's own rather than the kernel's. Rejected mutants never
//! reach a VM; the caller counts them.

use ccwrig_proto::{FdPart, Op};
use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::shrink;
use crate::scenario::{Actor, Scenario, Step, HOST_ACTOR};

/// One way of changing a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    /// A donor's step inserted into an actor of the same side.
    Insert,
    /// One of the shrinker's candidates: an actor, a barrier, a chunk of steps or a setup
    /// step dropped, repeat cut, jitter dropped, or an argument simplified.
    Remove,
    /// A step replaced by a donor's step of the same side.
    Replace,
    /// A guest step moved to another guest actor.
    MoveToActor,
    /// A barrier moved within one actor's steps.
    MoveBarrier,
    /// The race's jitter, or a step's own after a barrier, changed.
    Jitter,
    /// `repeat` changed.
    Repeat,
    /// A donor's actor added, or its tail grafted onto one of the parent's actors, or the
    /// donor's setup in place of the parent's.
    Splice,
}

impl Mutation {
    pub const ALL: [Mutation; 8] = [
        Mutation::Insert,
        Mutation::Remove,
        Mutation::Replace,
        Mutation::MoveToActor,
        Mutation::MoveBarrier,
        Mutation::Jitter,
        Mutation::Repeat,
        Mutation::Splice,
    ];
}

/// Largest program ([`shrink::size`]: operations, actors' part times `repeat`) a mutation may
/// make: mutants grow by insertion and splicing, and a long program is a slow one.
pub const MAX_SIZE: usize = 40;

/// Guest actors a splice may bring a program to (the generator's own maximum).
const MAX_GUEST_ACTORS: usize = 3;

/// Mutations tried before giving up on a parent.
const TRIES: u32 = 16;

/// Why a mutant may not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// The scenario validator refused it (the message is the validator's).
    Invalid(String),
    /// It would make a hang or stop of its own (see [`sound`]).
    Unsound(&'static str),
    TooBig(usize),
    /// The mutation changed nothing (after normalisation).
    Unchanged,
}

/// A mutant that may run.
#[derive(Debug, Clone)]
pub struct Mutant {
    pub program: Scenario,
    pub mutation: Mutation,
}

/// Mutates `parent` until a mutant passes [`admissible`], at most [`TRIES`] times. Returns
/// the mutant (if any) and the number of mutants rejected on the way.
pub fn mutate(parent: &Scenario, donor: &Scenario, rng: &mut ChaCha8Rng) -> (Option<Mutant>, u32) {
    let mut rejected = 0;
    for _ in 0..TRIES {
        let m = *Mutation::ALL.choose(rng).unwrap_or(&Mutation::Insert);
        let Some(p) = apply(m, parent, donor, rng) else {
            // Not applicable to this parent (no barrier to move, one guest actor): no mutant.
            continue;
        };
        match admissible(&p, parent) {
            Ok(()) => {
                return (
                    Some(Mutant {
                        program: p,
                        mutation: m,
                    }),
                    rejected,
                )
            }
            Err(_) => rejected += 1,
        }
    }
    (None, rejected)
}

/// Whether a mutant may reach a VM.
pub fn admissible(p: &Scenario, parent: &Scenario) -> Result<(), Rejected> {
    if p == parent {
        return Err(Rejected::Unchanged);
    }
    p.validate().map_err(|e| Rejected::Invalid(e.to_string()))?;
    sound(p).map_err(Rejected::Unsound)?;
    let size = shrink::size(p);
    if size > MAX_SIZE {
        return Err(Rejected::TooBig(size));
    }
    Ok(())
}

/// The rules the generator keeps by construction and a mutation may break. Each breach would
/// be a hang or a dead guest the program made, reported as if the kernel had:
/// - an `io_stall` holds the driver's io_mutex until its actor's own `io_release`: every stall
///   must be released later by the same actor (setup included), and that actor must not wait
///   for the mutex on that handle in between (reset, close, region reads and accesses, DMA
///   unmaps, bad input, ioas);
/// - a handle opened must be closed (all its parts) by a later step, its own actor's or, for
///   a handle the setup opened, any actor's: an mdev remove or an unbind waits for the last
///   close, and would wait past the program;
/// - a `stop` must be followed by a `cont` of the same actor;
/// - at most one `poweroff` or `reboot`, by a guest actor, and then `repeat = 1`.
pub fn sound(p: &Scenario) -> Result<(), &'static str> {
    handles_closed(p)?;
    stalls_released(&p.setup)?;
    for a in &p.actors {
        stalls_released(&a.steps)?;
        let mut stopped = false;
        for op in a.steps.iter().filter_map(Step::op) {
            match op {
                Op::Stop => stopped = true,
                Op::Cont => stopped = false,
                _ => {}
            }
        }
        if stopped {
            return Err("a stop without a later cont");
        }
    }
    let ends = |steps: &[Step]| {
        steps
            .iter()
            .filter_map(Step::op)
            .filter(|o| matches!(o, Op::Poweroff | Op::Reboot))
            .count()
    };
    if ends(&p.setup) + ends(&p.teardown) > 0 {
        return Err("poweroff or reboot outside the actors");
    }
    let in_actors: usize = p.actors.iter().map(|a| ends(&a.steps)).sum();
    if in_actors > 1 {
        return Err("more than one poweroff or reboot");
    }
    if in_actors == 1 && p.race.repeat > 1 {
        return Err("poweroff or reboot in a repeated race");
    }
    Ok(())
}

/// Whether `op` closes every part of `handle`.
fn closes(op: &Op, handle: &str) -> bool {
    matches!(op, Op::Close { handle: h, order } if h == handle && order.len() == FdPart::DEFAULT_ORDER.len())
}

fn handles_closed(p: &Scenario) -> Result<(), &'static str> {
    let ops = |steps: &[Step]| {
        steps
            .iter()
            .filter_map(Step::op)
            .cloned()
            .collect::<Vec<Op>>()
    };
    for (i, op) in p.setup.iter().filter_map(Step::op).enumerate() {
        if let Op::Open { handle, .. } = op {
            let later = p.setup.iter().skip(i + 1).filter_map(Step::op);
            let actors = p
                .actors
                .iter()
                .flat_map(|a| a.steps.iter())
                .filter_map(Step::op);
            if !later.chain(actors).any(|o| closes(o, handle)) {
                return Err("a handle the setup opens is never closed");
            }
        }
    }
    for a in &p.actors {
        let own = ops(&a.steps);
        for (i, op) in own.iter().enumerate() {
            if let Op::Open { handle, .. } = op {
                if !own[i + 1..].iter().any(|o| closes(o, handle)) {
                    return Err("a handle an actor opens is not closed later by that actor");
                }
            }
        }
    }
    Ok(())
}

/// Operations that wait for the driver's io_mutex of their handle.
fn waits_for_io_mutex(op: &Op) -> bool {
    matches!(
        op,
        Op::Reset { .. }
            | Op::Close { .. }
            | Op::ReadRegion { .. }
            | Op::DmaUnmap { .. }
            | Op::BadInput { .. }
            | Op::RegionAccess { .. }
            | Op::Ioas { .. }
    )
}

fn stalls_released(steps: &[Step]) -> Result<(), &'static str> {
    let mut held: Vec<&str> = Vec::new();
    for op in steps.iter().filter_map(Step::op) {
        match op {
            Op::IoStall { handle, .. } => {
                if held.contains(&handle.as_str()) {
                    return Err("an io_stall on a handle already stalled");
                }
                held.push(handle);
            }
            Op::IoRelease { handle, .. } => held.retain(|h| h != handle),
            o if waits_for_io_mutex(o) && o.handle().is_some_and(|h| held.contains(&h)) => {
                return Err("a step waits for the io_mutex its own actor's io_stall holds");
            }
            _ => {}
        }
    }
    if held.is_empty() {
        Ok(())
    } else {
        Err("an io_stall never released")
    }
}

fn is_guest(a: &Actor) -> bool {
    !a.is_host()
}

/// A step that may go into an actor: no line, no per-step jitter (only valid after a barrier;
/// [`Mutation::Jitter`] sets that).
fn transplant(s: &Step) -> Step {
    let mut s = s.clone();
    if let Step::Op(o) = &mut s {
        o.line = 0;
        o.jitter_ms = None;
    }
    s
}

/// The donor's operation steps of one side: the host actor's, or the guests' and the setup's.
fn donor_steps(donor: &Scenario, host: bool) -> Vec<&Step> {
    let actors = donor
        .actors
        .iter()
        .filter(|a| a.is_host() == host)
        .flat_map(|a| a.steps.iter());
    let setup = donor.setup.iter().filter(|_| !host);
    actors
        .chain(setup)
        .filter(|s| matches!(s, Step::Op(_)))
        .collect()
}

fn op_positions(a: &Actor) -> Vec<usize> {
    (0..a.steps.len())
        .filter(|i| matches!(a.steps[*i], Step::Op(_)))
        .collect()
}

/// `m` applied to `parent`, normalised; `None` when `m` does not apply to it.
fn apply(
    m: Mutation,
    parent: &Scenario,
    donor: &Scenario,
    rng: &mut ChaCha8Rng,
) -> Option<Scenario> {
    let mut p = parent.clone();
    match m {
        Mutation::Insert => {
            let host = rng.random_bool(0.2);
            let step = transplant(donor_steps(donor, host).choose(rng)?);
            match p.actors.iter().position(|a| a.is_host() == host) {
                Some(_) if !host => {
                    let guests: Vec<usize> = (0..p.actors.len())
                        .filter(|i| is_guest(&p.actors[*i]))
                        .collect();
                    let a = *guests.choose(rng)?;
                    let at = rng.random_range(0..=p.actors[a].steps.len());
                    p.actors[a].steps.insert(at, step);
                }
                Some(a) => {
                    let at = rng.random_range(0..=p.actors[a].steps.len());
                    p.actors[a].steps.insert(at, step);
                }
                // A host joins the race: its one step runs as soon as the race starts.
                None if host => p.actors.push(Actor {
                    name: HOST_ACTOR.into(),
                    steps: vec![step],
                }),
                None => return None,
            }
        }
        Mutation::Remove => {
            p = shrink::candidates(parent).choose(rng)?.clone();
        }
        Mutation::Replace => {
            let a = rng.random_range(0..p.actors.len().max(1));
            let actor = p.actors.get_mut(a)?;
            let at = *op_positions(actor).choose(rng)?;
            let step = transplant(donor_steps(donor, actor.is_host()).choose(rng)?);
            actor.steps[at] = step;
        }
        Mutation::MoveToActor => {
            let guests: Vec<usize> = (0..p.actors.len())
                .filter(|i| is_guest(&p.actors[*i]))
                .collect();
            let pair: Vec<usize> = guests.choose_multiple(rng, 2).copied().collect();
            let [from, to] = pair[..] else { return None };
            let at = *op_positions(&p.actors[from]).choose(rng)?;
            let step = transplant(&p.actors[from].steps.remove(at));
            let to_at = rng.random_range(0..=p.actors[to].steps.len());
            p.actors[to].steps.insert(to_at, step);
        }
        Mutation::MoveBarrier => {
            let with: Vec<(usize, usize)> = p
                .actors
                .iter()
                .enumerate()
                .flat_map(|(a, actor)| {
                    actor
                        .steps
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| matches!(s, Step::Barrier { .. }))
                        .map(move |(i, _)| (a, i))
                })
                .collect();
            let (a, i) = *with.choose(rng)?;
            let steps = &mut p.actors[a].steps;
            let b = steps.remove(i);
            let to = rng.random_range(0..=steps.len());
            steps.insert(to, b);
        }
        Mutation::Jitter => {
            const HI: [u64; 6] = [0, 1, 3, 10, 30, 100];
            let hi = *HI.choose(rng)?;
            let after_barrier: Vec<(usize, usize)> = p
                .actors
                .iter()
                .enumerate()
                .flat_map(|(a, actor)| {
                    (1..actor.steps.len())
                        .filter(move |i| {
                            matches!(actor.steps[i - 1], Step::Barrier { .. })
                                && matches!(actor.steps[*i], Step::Op(_))
                        })
                        .map(move |i| (a, i))
                })
                .collect();
            match after_barrier.choose(rng) {
                Some(&(a, i)) if rng.random_bool(0.5) => {
                    if let Step::Op(o) = &mut p.actors[a].steps[i] {
                        o.jitter_ms = Some((0, hi));
                    }
                }
                _ => p.race.jitter_ms = (0, hi),
            }
        }
        Mutation::Repeat => {
            p.race.repeat = rng.random_range(1..=4);
        }
        Mutation::Splice => splice(&mut p, donor, rng)?,
    }
    Some(shrink::normalize(p))
}

/// The donor's setup in place of the parent's, or a donor guest actor added, or a donor
/// actor's tail grafted onto a parent actor of the same side.
fn splice(p: &mut Scenario, donor: &Scenario, rng: &mut ChaCha8Rng) -> Option<()> {
    match rng.random_range(0..3) {
        0 => p.setup = donor.setup.iter().map(transplant).collect(),
        1 => {
            let guests = p.actors.iter().filter(|a| is_guest(a)).count();
            if guests >= MAX_GUEST_ACTORS {
                return None;
            }
            let from = donor
                .actors
                .iter()
                .filter(|a| is_guest(a))
                .collect::<Vec<_>>();
            let from = from.choose(rng)?;
            let name = (0..)
                .map(|i| format!("g{i}"))
                .find(|n| !p.actors.iter().any(|a| &a.name == n))?;
            // Before the host, where the generator puts guests.
            let at = p
                .actors
                .iter()
                .position(Actor::is_host)
                .unwrap_or(p.actors.len());
            p.actors.insert(
                at,
                Actor {
                    name,
                    steps: from.steps.iter().map(transplant).collect(),
                },
            );
        }
        _ => {
            let a = rng.random_range(0..p.actors.len().max(1));
            let host = p.actors.get(a)?.is_host();
            let from: Vec<&Actor> = donor
                .actors
                .iter()
                .filter(|d| d.is_host() == host)
                .collect();
            let from = from.choose(rng)?;
            let cut = rng.random_range(0..=p.actors[a].steps.len());
            let graft = rng.random_range(0..from.steps.len().max(1));
            p.actors[a].steps.truncate(cut);
            p.actors[a]
                .steps
                .extend(from.steps.iter().skip(graft).map(transplant));
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::campaign::program_seed;
    use crate::fuzz::gen::Generator;
    use rand::SeedableRng;
    use std::collections::BTreeMap;

    /// Thousands of mutants, each of a mutant (mutation chains, as a campaign makes them):
    /// every one that passes is a valid scenario file the loader reads back equal, and sound.
    #[test]
    fn mutants_are_valid_scenario_files() {
        let g = Generator::default();
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        let mut by_kind: BTreeMap<Mutation, usize> = BTreeMap::new();
        let (mut made, mut rejected) = (0usize, 0u32);
        let mut parents: Vec<Scenario> = (0..20)
            .map(|n| g.generate(program_seed(42, n)).program)
            .collect();
        for n in 0..3000u64 {
            let parent = parents.choose(&mut rng).expect("parents").clone();
            let donor = match n % 2 {
                0 => g.generate(program_seed(43, n)).program,
                _ => parents.choose(&mut rng).expect("parents").clone(),
            };
            let (m, r) = mutate(&parent, &donor, &mut rng);
            rejected += r;
            let Some(m) = m else { continue };
            made += 1;
            *by_kind.entry(m.mutation).or_default() += 1;
            let text = m.program.to_toml();
            let back = crate::scenario::parse_str(&text, &m.program.name, None)
                .unwrap_or_else(|e| panic!("mutant {n} ({:?}): {e}\n{text}", m.mutation));
            assert_eq!(back, m.program, "mutant {n} reads back as written");
            assert_eq!(sound(&back), Ok(()), "mutant {n}");
            assert!(shrink::size(&back) <= MAX_SIZE);
            assert_ne!(back, parent);
            if parents.len() < 200 {
                parents.push(m.program);
            }
        }
        assert!(made >= 2500, "only {made} of 3000 parents gave a mutant");
        for k in Mutation::ALL {
            assert!(
                by_kind.get(&k).copied().unwrap_or(0) >= 50,
                "{k:?} made {:?} mutants: {by_kind:?}",
                by_kind.get(&k)
            );
        }
        // Rejection is part of the design (it is counted), but most tries must succeed.
        assert!(
            (rejected as usize) < made * 2,
            "{rejected} rejected for {made} made"
        );
    }

    /// What the generator makes is sound, except programs that open a removed mdev on
    /// purpose (the open fails, and no close follows).
    #[test]
    fn generated_programs_are_mostly_sound() {
        let g = Generator::default();
        let unsound: Vec<u64> = (0..2000u64)
            .filter(|s| sound(&g.generate(*s).program).is_err())
            .collect();
        assert!(
            unsound.len() < 100,
            "{} of 2000 unsound, e.g. seed {:?}",
            unsound.len(),
            unsound.first()
        );
    }

    #[test]
    fn unsound_programs_are_rejected() {
        let g = Generator::default();
        let p = (0..2000u64)
            .map(|s| g.generate(s).program)
            .find(|p| {
                p.actors.iter().any(|a| {
                    a.steps
                        .iter()
                        .any(|s| matches!(s.op(), Some(Op::IoRelease { .. })))
                })
            })
            .expect("some program releases a stall");
        assert_eq!(sound(&p), Ok(()));
        // Drop the release: the stall would hold the io_mutex past the program.
        let mut q = p.clone();
        for a in &mut q.actors {
            a.steps
                .retain(|s| !matches!(s.op(), Some(Op::IoRelease { .. })));
        }
        assert!(sound(&q).is_err(), "{}", q.to_toml());
        assert!(matches!(admissible(&q, &p), Err(Rejected::Unsound(_))));
        assert_eq!(admissible(&p, &p), Err(Rejected::Unchanged));
    }
}
