//! The program generator: one seed, one program. A program is a [`Scenario`] whose actors race
//! short sequences of lifecycle operations against each other and against the host.
//!
//! Bias: programs are wide, not long. A short setup prefix brings a subchannel to a random
//! point of its lifecycle (bound, mdev created, opened, consumer running, I/O outstanding);
//! then 1–3 guest actors and often the host meet at a barrier and each performs a few
//! transitions at once. The generator keeps a model of what exists so most operations are
//! valid for the actor issuing them, and deliberately picks an invalid one (double close,
//! remove of a removed mdev, I/O on a closed handle, ...) with probability
//! [`GenConfig::invalid_share`].
//!
//! Every step expects `any`: whether a racing step succeeds depends on the interleaving, so
//! the fuzzer judges programs by the oracles only (see [`super::interest`]).

pub(crate) mod chanprog;
mod choice;
mod shape;
#[cfg(test)]
mod tests;
mod world;

use ccwrig_proto::Op;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{
    Actor, DeviceSpec, Expect, Expectations, Machine, OpStep, Race, Scenario, Step, HOST_ACTOR,
};
use world::{Names, World};

/// What the generator may produce.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// The machine every program runs on (one long-lived VM serves them all).
    pub machine: Machine,
    /// Guest actors per program: 1..=max.
    pub max_guest_actors: usize,
    /// Operations per actor between its barriers, before its closing tail: 1..=max.
    pub max_ops_per_phase: usize,
    /// Share of operations chosen to be invalid on purpose.
    pub invalid_share: f64,
    /// Probability that the host actor takes part.
    pub host_share: f64,
    /// Deadline of generated steps: a step still in the kernel after it is answered `blocked`
    /// and its actor moves on (a blocked step is an interleaving, not a failure).
    pub deadline_ms: u64,
    /// A generated step that only waits for other steps (`Op::blocks_only_on_others`) is
    /// answered `blocked` once the guest has been idle this long: a bind waiting for a close
    /// later in its own actor then costs this, not the deadline. 0: the deadline only.
    pub idle_ms: u64,
    /// Share of programs in which the first guest actor powers the guest off somewhere in
    /// its steps (the worker boots a fresh VM after such a program).
    pub poweroff_share: f64,
    /// Share of programs in which one guest step gets a fault (`fail_nth`). 0 unless the
    /// kernel has fault injection (the campaign sets [`FAULT_SHARE`] on a cover kernel): on
    /// another kernel a fault is never injected, and the programs of a seed stay the ones they
    /// were before faults existed.
    pub fault_share: f64,
}

/// The fault share of a campaign on a kernel with fault injection: a few faulted programs a
/// minute, while most programs still run their lifecycle through (a fault usually ends the
/// faulted step, and often what depends on it). Chosen, not tuned: one hour per arm measured
/// it against no faults (ci/FUZZING.md), no other share.
pub const FAULT_SHARE: f64 = 0.2;

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            machine: fuzz_machine(),
            max_guest_actors: 3,
            max_ops_per_phase: 3,
            invalid_share: 0.12,
            host_share: 0.45,
            deadline_ms: 1500,
            idle_ms: 250,
            poweroff_share: 0.06,
            fault_share: 0.0,
        }
    }
}

impl GenConfig {
    /// The same, with the machine's subchannels resting on `rest` between programs.
    pub fn resting_on(mut self, rest: ccwrig_proto::Rest) -> Self {
        self.machine.rest = rest;
        self
    }

    /// The defaults, with faults in a share of programs when the kernel can inject them.
    pub fn for_kernel(fault_injection: bool) -> Self {
        GenConfig {
            fault_share: if fault_injection { FAULT_SHARE } else { 0.0 },
            ..GenConfig::default()
        }
    }
}

/// Two virtio-rng devices: subchannels 0.0.0000 and 0.0.0001.
pub fn fuzz_machine() -> Machine {
    Machine {
        profile: None,
        devices: vec![
            DeviceSpec {
                id: "rng0".into(),
                devno: "fe.0.0002".into(),
            },
            DeviceSpec {
                id: "rng1".into(),
                devno: "fe.0.0003".into(),
            },
        ],
        append: String::new(),
        // Inner QEMU operations need the nested image and are not generated.
        nested: false,
        // Between programs the subchannels stay with vfio_ccw: a program pays the css walk
        // only for its own binds to io_subchannel (kernel/configs/README.md).
        rest: ccwrig_proto::Rest::VfioCcw,
    }
}

/// One step the generator emitted, with whether its model thought it valid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    pub ops: usize,
    pub invalid: usize,
}

/// Generates programs from seeds.
#[derive(Debug, Clone, Default)]
pub struct Generator {
    pub config: GenConfig,
}

/// One generated program and how much of it was deliberately invalid.
#[derive(Debug, Clone)]
pub struct Generated {
    pub program: Scenario,
    pub stats: GenStats,
}

struct Build<'c> {
    rng: ChaCha8Rng,
    cfg: &'c GenConfig,
    names: Names,
    stats: GenStats,
}

/// How long a generated step may wait: its deadline, and its idle time when it has one.
#[derive(Debug, Clone, Copy)]
struct Budget {
    deadline_ms: u64,
    idle_ms: u64,
}

impl Budget {
    /// A program's setup: it must complete, so only the (default) deadline.
    const SETUP: Budget = Budget {
        deadline_ms: crate::scenario::DEFAULT_DEADLINE_MS,
        idle_ms: 0,
    };

    fn of(cfg: &GenConfig) -> Budget {
        Budget {
            deadline_ms: cfg.deadline_ms,
            idle_ms: cfg.idle_ms,
        }
    }
}

fn step(op: Op, b: Budget) -> Step {
    let mut s = OpStep::new(op);
    s.expect = vec![Expect::Any];
    s.deadline_ms = Some(b.deadline_ms);
    s.idle_ms = (b.idle_ms > 0 && s.op.blocks_only_on_others()).then_some(b.idle_ms);
    Step::Op(s)
}

impl Generator {
    pub fn new(config: GenConfig) -> Generator {
        Generator { config }
    }

    /// The program for `seed`: the same seed always gives the same program.
    pub fn generate(&self, seed: u64) -> Generated {
        let mut b = Build {
            rng: ChaCha8Rng::seed_from_u64(seed),
            cfg: &self.config,
            names: Names::default(),
            stats: GenStats::default(),
        };
        let n_dev = self.config.machine.devices.len();
        let mut world = World::new(n_dev);
        let setup = b.setup(&mut world);

        let guests = b.rng.random_range(1..=self.config.max_guest_actors.max(1));
        let host = b.rng.random_bool(self.config.host_share);
        // Barriers need two actors to meet; a lone actor just runs.
        let meet = guests + usize::from(host) >= 2;
        let mid = meet && b.rng.random_bool(0.4);
        let mut actors = Vec::new();
        for g in 0..guests {
            let mut w = world.clone();
            // Only the first actor owns the setup's handles: it closes them in its tail, the
            // others may use (and race to close) them.
            if g > 0 {
                w.handles.iter_mut().for_each(|h| h.mine = false);
            }
            actors.push(Actor {
                name: format!("g{g}"),
                steps: b.guest_actor(&mut w, meet, mid),
            });
        }
        if host {
            actors.push(Actor {
                name: HOST_ACTOR.into(),
                steps: b.host_actor(&world, meet, mid),
            });
        }
        // The kernel's shutdown or restart path with the devices in whatever state the
        // program left them: handles open, I/O stalled, mdevs mid-removal, a device unplugged.
        let poweroff = b.rng.random_bool(self.config.poweroff_share);
        if poweroff {
            if let Some(g0) = actors.first_mut() {
                let from = usize::from(matches!(g0.steps.first(), Some(Step::Barrier { .. })));
                let at = b.rng.random_range(from..=g0.steps.len());
                let end = if b.rng.random_bool(0.5) {
                    Op::Reboot
                } else {
                    Op::Poweroff
                };
                g0.steps.insert(at, step(end, Budget::of(&self.config)));
            }
        }
        let hi = *[0u64, 1, 3, 10, 30].choose(&mut b.rng).unwrap_or(&0);
        let repeat = if !poweroff && b.rng.random_bool(0.15) {
            b.rng.random_range(2..=4)
        } else {
            1
        };
        let mut program = Scenario {
            name: format!("fuzz-{seed:016x}"),
            path: None,
            description: format!("Generated by ccwrig fuzz from program seed {seed}."),
            known_finding: None,
            machine: self.config.machine.clone(),
            setup,
            actors,
            race: Race {
                repeat,
                jitter_ms: (0, hi),
                seed: Some(seed >> 1),
            },
            teardown: vec![],
            expect: Expectations::default(),
            history: vec![],
        };
        // Drawn last and only on a kernel with fault injection, so that every other choice of
        // a seed's program stays what it is without.
        if self.config.fault_share > 0.0 && b.rng.random_bool(self.config.fault_share.min(1.0)) {
            let mut steps = super::fault::faultable_steps(&mut program);
            if !steps.is_empty() {
                let i = b.rng.random_range(0..steps.len());
                steps[i].fail_nth = Some(super::fault::pick_nth(&mut b.rng));
            }
        }
        Generated {
            program,
            stats: b.stats,
        }
    }
}

impl Build<'_> {
    fn d(&self) -> Budget {
        Budget::of(self.cfg)
    }

    fn schid(i: usize) -> String {
        Machine::schid_of(i)
    }
}
