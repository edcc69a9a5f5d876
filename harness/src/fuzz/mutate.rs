//! Mutation of corpus programs: a program that added coverage is changed a little (a step
//! inserted, removed, replaced or moved to another actor, a barrier moved, jitter or repeat
//! changed, two programs spliced, an allocation made to fail) in the hope that the change
//! reaches further.
//!
//! Steps come from a donor: another corpus program or a freshly generated one, whose handles
//! and mdevs are named as the parent's are (`h0`, `m0`, ...), so most borrowed steps refer to
//! things the parent makes. Removal and argument simplification are the shrinker's own edits
//! ([`super::shrink`]). Every mutant is normalised as the shrinker does, then must pass the
//! scenario validator (any mutant is a valid `ccwrig run` file) and [`super::sound`], which
//! rejects what would make a hang of the program's own rather than the kernel's. Rejected mutants never
//! reach a VM; the caller counts them.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use ccwrig_proto::chanprog::{Ccw, CcwCmd, CcwFlag, ChannelProgram, DataRef, IoFunction, Orb};
use ccwrig_proto::Op;

use super::gen::chanprog;
use super::shrink;
use super::sound::sound;
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
    /// An `io` step's channel program changed in one place (a SENSE ID `io` gets its own
    /// program first): a CCW's count, flag, command or data, a CCW added or dropped, an ORB
    /// option. Steps borrowed from donors only ever bring whole programs.
    Tweak,
    /// A guest step's nth fault point made to fail (`fail_nth`, a kernel with fault
    /// injection), or a step's fault moved to another point or dropped: the error paths behind
    /// the driver's allocations.
    Fault,
}

impl Mutation {
    pub const ALL: [Mutation; 10] = [
        Mutation::Insert,
        Mutation::Remove,
        Mutation::Replace,
        Mutation::MoveToActor,
        Mutation::MoveBarrier,
        Mutation::Jitter,
        Mutation::Repeat,
        Mutation::Splice,
        Mutation::Tweak,
        Mutation::Fault,
    ];

    /// The mutation as the corpus and the summaries spell it.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::Insert => "insert",
            Mutation::Remove => "remove",
            Mutation::Replace => "replace",
            Mutation::MoveToActor => "move_to_actor",
            Mutation::MoveBarrier => "move_barrier",
            Mutation::Jitter => "jitter",
            Mutation::Repeat => "repeat",
            Mutation::Splice => "splice",
            Mutation::Tweak => "tweak",
            Mutation::Fault => "fault",
        }
    }
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
    /// It would make a hang or stop of its own (see [`super::sound`]).
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
        Mutation::Tweak => tweak_io(&mut p, rng)?,
        Mutation::Fault => fault(&mut p, rng)?,
    }
    Some(shrink::normalize(p))
}

/// A guest step (setup or actor) gets a fault at a random point, or its fault moves or goes.
fn fault(p: &mut Scenario, rng: &mut ChaCha8Rng) -> Option<()> {
    let mut steps = super::fault::faultable_steps(p);
    if steps.is_empty() {
        return None;
    }
    let i = rng.random_range(0..steps.len());
    let s = &mut steps[i];
    s.fail_nth = match s.fail_nth {
        Some(_) if rng.random_bool(0.3) => None,
        _ => Some(super::fault::pick_nth(rng)),
    };
    Some(())
}

/// The donor's setup in place of the parent's, or a donor guest actor added, or a donor
/// actor's tail grafted onto a parent actor of the same side.
fn tweak_io(p: &mut Scenario, rng: &mut ChaCha8Rng) -> Option<()> {
    let at: Vec<(usize, usize)> = (0..p.actors.len())
        .flat_map(|a| {
            let steps = &p.actors[a].steps;
            (0..steps.len())
                .filter(|&i| matches!(steps[i].op(), Some(Op::Io { suspend: false, .. })))
                .map(move |i| (a, i))
        })
        .collect();
    let &(a, i) = at.choose(rng)?;
    let Step::Op(s) = &mut p.actors[a].steps[i] else {
        return None;
    };
    let Op::Io { program, .. } = &mut s.op else {
        return None;
    };
    let base = program.clone().unwrap_or_else(sense_id);
    *program = Some(chanprog::tweak(&base, rng)?);
    Some(())
}

/// The `io` step's default program, spelled out so a tweak can change it.
fn sense_id() -> ChannelProgram {
    ChannelProgram {
        orb: Orb::default(),
        function: IoFunction::Start,
        ccws: vec![Ccw {
            cmd: CcwCmd::SenseId,
            flags: vec![CcwFlag::Sli],
            count: 8,
            data: DataRef::Buf(0),
        }],
    }
}

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

    #[test]
    fn mutation_names_are_the_serde_names() {
        for m in Mutation::ALL {
            assert_eq!(
                serde_json::to_value(m).ok(),
                Some(serde_json::json!(m.name()))
            );
        }
    }
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
