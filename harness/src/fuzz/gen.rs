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

use ccwrig_proto::{BadInputKind, FdPart, Op, OpenVia, RegionKind, RequestPolicy};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{
    Actor, DeviceSpec, Expect, Expectations, Machine, OpStep, Race, Scenario, Step, HOST_ACTOR,
};

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
    /// Share of programs in which the first guest actor powers the guest off somewhere in
    /// its steps (the worker boots a fresh VM after such a program).
    pub poweroff_share: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            machine: fuzz_machine(),
            max_guest_actors: 3,
            max_ops_per_phase: 3,
            invalid_share: 0.12,
            host_share: 0.45,
            deadline_ms: 1500,
            poweroff_share: 0.06,
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
    }
}

/// One step the generator emitted, with whether its model thought it valid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    pub ops: usize,
    pub invalid: usize,
}

/// What the issuing actor believes about one mdev.
#[derive(Debug, Clone)]
struct MdevModel {
    name: String,
    parent: usize,
    alive: bool,
}

/// The kinds of valid operation the generator chooses among.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    Open,
    Close,
    Create,
    Remove,
    Bind,
    Unbind,
    Rescan,
    Reset,
    Io,
    IoSuspend,
    IoStall,
    IoRelease,
    Halt,
    Clear,
    Consumer,
    ReadRegion,
    BadInput,
    GetInfo,
    Available,
    List,
    Sleep,
}

/// How often each kind is chosen, relative to the others.
const WEIGHTS: &[(u32, Pick)] = &[
    (10, Pick::Open),
    (10, Pick::Close),
    (7, Pick::Create),
    (7, Pick::Remove),
    (4, Pick::Bind),
    (3, Pick::Unbind),
    (2, Pick::Rescan),
    (6, Pick::Reset),
    (6, Pick::Io),
    (4, Pick::IoSuspend),
    (3, Pick::IoStall),
    (4, Pick::IoRelease),
    (3, Pick::Halt),
    (3, Pick::Clear),
    (4, Pick::Consumer),
    (2, Pick::ReadRegion),
    (2, Pick::BadInput),
    (1, Pick::GetInfo),
    (1, Pick::Available),
    (1, Pick::List),
    (2, Pick::Sleep),
];

#[derive(Debug, Clone)]
struct HandleModel {
    name: String,
    open: bool,
    /// Whether this actor opened it (and so must close it in its tail).
    mine: bool,
}

/// The generator's view of the guest, per actor. Other actors' effects are not modelled:
/// they race, and a race's outcome is not known in advance.
#[derive(Debug, Clone)]
struct World {
    /// Subchannel index -> bound to vfio_ccw.
    bound: Vec<bool>,
    mdevs: Vec<MdevModel>,
    handles: Vec<HandleModel>,
    /// Handles this actor holds an `io_stall` on: released before its tail closes them, so a
    /// held request never outlives the program and leaves a remove blocked behind it.
    stalled: Vec<String>,
}

impl World {
    fn new(n: usize) -> World {
        World {
            bound: vec![false; n],
            mdevs: vec![],
            handles: vec![],
            stalled: vec![],
        }
    }

    fn live_mdevs(&self) -> Vec<&MdevModel> {
        self.mdevs.iter().filter(|m| m.alive).collect()
    }

    fn open_handles(&self) -> Vec<&HandleModel> {
        self.handles.iter().filter(|h| h.open).collect()
    }

    /// A subchannel leaves vfio_ccw: its mdevs go with it (once their users close).
    fn unbound(&mut self, i: usize) {
        self.bound[i] = false;
        self.mdevs
            .iter_mut()
            .filter(|m| m.parent == i)
            .for_each(|m| m.alive = false);
    }

    fn set_handle(&mut self, name: &str, open: bool) {
        if let Some(h) = self.handles.iter_mut().find(|h| h.name == name) {
            h.open = open;
        }
    }
}

/// Fresh names for mdevs and handles, unique within one program.
#[derive(Debug, Default)]
struct Names {
    mdevs: usize,
    handles: usize,
}

impl Names {
    fn mdev(&mut self) -> String {
        self.mdevs += 1;
        format!("m{}", self.mdevs - 1)
    }
    fn handle(&mut self) -> String {
        self.handles += 1;
        format!("h{}", self.handles - 1)
    }
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

fn step(op: Op, deadline_ms: u64) -> Step {
    let mut s = OpStep::new(op);
    s.expect = vec![Expect::Any];
    s.deadline_ms = Some(deadline_ms);
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
        // The kernel's shutdown path with the devices in whatever state the program left
        // them: handles open, I/O stalled, mdevs mid-removal, a device unplugged.
        let poweroff = b.rng.random_bool(self.config.poweroff_share);
        if poweroff {
            if let Some(g0) = actors.first_mut() {
                let from = usize::from(matches!(g0.steps.first(), Some(Step::Barrier { .. })));
                let at = b.rng.random_range(from..=g0.steps.len());
                g0.steps
                    .insert(at, step(Op::Poweroff, self.config.deadline_ms));
            }
        }
        let hi = *[0u64, 1, 3, 10, 30].choose(&mut b.rng).unwrap_or(&0);
        let repeat = if !poweroff && b.rng.random_bool(0.15) {
            b.rng.random_range(2..=4)
        } else {
            1
        };
        let program = Scenario {
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
        };
        Generated {
            program,
            stats: b.stats,
        }
    }
}

const POLICIES: [RequestPolicy; 3] = [
    RequestPolicy::Close,
    RequestPolicy::Reset,
    RequestPolicy::Ignore,
];
const REGIONS: [RegionKind; 4] = [
    RegionKind::Io,
    RegionKind::Async,
    RegionKind::Schib,
    RegionKind::Crw,
];
const BAD: [BadInputKind; 6] = [
    BadInputKind::IoRegionOffset,
    BadInputKind::IoRegionShort,
    BadInputKind::UnmappedCpa,
    BadInputKind::Format0Orb,
    BadInputKind::AsyncBadCommand,
    BadInputKind::BadRegionIndex,
];

/// Close orders a user can produce: every full permutation and the partial ones QEMU-like
/// crashes leave behind.
fn close_orders() -> Vec<Vec<FdPart>> {
    use FdPart::*;
    vec![
        FdPart::DEFAULT_ORDER.to_vec(),
        vec![Device, Container, Group],
        vec![Group, Device, Container],
        vec![Group, Container, Device],
        vec![Container, Device, Group],
        vec![Container, Group, Device],
        vec![Group, Container],
        vec![Container],
    ]
}

impl Build<'_> {
    fn d(&self) -> u64 {
        self.cfg.deadline_ms
    }

    fn schid(i: usize) -> String {
        Machine::schid_of(i)
    }

    /// A random prefix of the lifecycle for one or both subchannels, run before the race.
    fn setup(&mut self, w: &mut World) -> Vec<Step> {
        let mut out = Vec::new();
        let n = w.bound.len();
        let both = n > 1 && self.rng.random_bool(0.25);
        let first = self.rng.random_range(0..n);
        let picks: Vec<usize> = if both { (0..n).collect() } else { vec![first] };
        for i in picks {
            // 0 nothing, 1 bound, 2 mdev, 3 open, 4 open + consumer, 5 open + I/O outstanding
            let level = *[0u8, 1, 2, 2, 3, 3, 3, 4, 4, 5]
                .choose(&mut self.rng)
                .unwrap_or(&2);
            if level == 0 {
                continue;
            }
            out.push(step(
                Op::Bind {
                    schid: Self::schid(i),
                    driver: "vfio_ccw".into(),
                },
                5000,
            ));
            w.bound[i] = true;
            if level == 1 {
                continue;
            }
            let m = self.names.mdev();
            out.push(step(
                Op::MdevCreate {
                    parent: Self::schid(i),
                    mdev: m.clone(),
                    uuid: None,
                },
                5000,
            ));
            w.mdevs.push(MdevModel {
                name: m.clone(),
                parent: i,
                alive: true,
            });
            if level == 2 {
                continue;
            }
            let h = self.names.handle();
            let via = if self.rng.random_bool(0.25) {
                OpenVia::Iommufd
            } else {
                OpenVia::Group
            };
            out.push(step(
                Op::Open {
                    mdev: m.clone(),
                    handle: h.clone(),
                    via,
                },
                5000,
            ));
            w.handles.push(HandleModel {
                name: h.clone(),
                open: true,
                mine: true,
            });
            match level {
                4 => {
                    let p = *POLICIES
                        .choose(&mut self.rng)
                        .unwrap_or(&RequestPolicy::Close);
                    out.push(step(
                        Op::Consumer {
                            handle: h,
                            on_request: p,
                        },
                        5000,
                    ));
                }
                5 => out.push(step(
                    Op::Io {
                        handle: h,
                        count: 1,
                        suspend: true,
                        irq_wait_ms: 500,
                    },
                    5000,
                )),
                _ => {}
            }
        }
        out
    }

    /// `[go] ops [mid ops] tail`: the tail closes what this actor opened and still believes
    /// open, so a program never leaves an mdev remove blocked on a handle nobody will close.
    fn guest_actor(&mut self, w: &mut World, meet: bool, mid: bool) -> Vec<Step> {
        let mut out = Vec::new();
        if meet {
            out.push(Step::Barrier {
                name: "go".into(),
                line: 0,
            });
        }
        let phases = if mid { 2 } else { 1 };
        for p in 0..phases {
            if p == 1 {
                out.push(Step::Barrier {
                    name: "mid".into(),
                    line: 0,
                });
            }
            let k = self.rng.random_range(1..=self.cfg.max_ops_per_phase.max(1));
            for _ in 0..k {
                let op = self.guest_op(w);
                out.push(step(op, self.d()));
            }
        }
        let tail: Vec<String> = w
            .handles
            .iter()
            .filter(|h| h.mine && h.open)
            .map(|h| h.name.clone())
            .collect();
        for h in std::mem::take(&mut w.stalled) {
            out.push(step(
                Op::IoRelease {
                    handle: h,
                    irq_wait_ms: 500,
                },
                5000,
            ));
        }
        for h in tail {
            out.push(step(
                Op::Close {
                    handle: h.clone(),
                    order: close_orders()[0].clone(),
                },
                5000,
            ));
            w.set_handle(&h, false);
        }
        out
    }

    /// The host: hot-unplug (sometimes replug) a device, or pause the vCPUs for a moment.
    fn host_actor(&mut self, w: &World, meet: bool, mid: bool) -> Vec<Step> {
        let devs = &self.cfg.machine.devices;
        // Prefer the device whose subchannel the setup prepared: that is where the lifecycle is.
        let busy: Vec<usize> = (0..devs.len()).filter(|i| w.bound[*i]).collect();
        let i = busy
            .choose(&mut self.rng)
            .copied()
            .unwrap_or_else(|| self.rng.random_range(0..devs.len()));
        let dev = devs[i].id.clone();
        let mut out = Vec::new();
        if meet {
            out.push(Step::Barrier {
                name: "go".into(),
                line: 0,
            });
        }
        let plan = self.rng.random_range(0..10);
        self.stats.ops += 1;
        match plan {
            0..=3 => out.push(step(
                Op::DeviceDel {
                    device: dev.clone(),
                },
                self.d(),
            )),
            4..=6 => {
                out.push(step(
                    Op::DeviceDel {
                        device: dev.clone(),
                    },
                    self.d(),
                ));
                out.push(step(
                    Op::Sleep {
                        ms: self.rng.random_range(0..50),
                    },
                    self.d(),
                ));
                out.push(step(
                    Op::DeviceAdd {
                        device: dev.clone(),
                    },
                    self.d(),
                ));
            }
            7..=8 => {
                out.push(step(Op::Stop, self.d()));
                out.push(step(
                    Op::Sleep {
                        ms: self.rng.random_range(1..30),
                    },
                    self.d(),
                ));
                out.push(step(Op::Cont, self.d()));
            }
            _ => out.push(step(
                Op::Sleep {
                    ms: self.rng.random_range(0..20),
                },
                self.d(),
            )),
        }
        if mid {
            out.push(Step::Barrier {
                name: "mid".into(),
                line: 0,
            });
            if plan <= 3 && self.rng.random_bool(0.5) {
                out.push(step(Op::DeviceAdd { device: dev }, self.d()));
            } else {
                out.push(step(
                    Op::Sleep {
                        ms: self.rng.random_range(0..10),
                    },
                    self.d(),
                ));
            }
        }
        out
    }

    /// One guest operation, valid for this actor's model unless the dice say otherwise.
    fn guest_op(&mut self, w: &mut World) -> Op {
        self.stats.ops += 1;
        if self.rng.random_bool(self.cfg.invalid_share) {
            if let Some(op) = self.invalid_op(w) {
                self.stats.invalid += 1;
                return op;
            }
        }
        // A few tries: the pick may not be possible in this state (no open handle yet).
        for _ in 0..8 {
            if let Some(op) = self.valid_op(w) {
                return op;
            }
        }
        Op::ListSubchannels
    }

    fn valid_op(&mut self, w: &mut World) -> Option<Op> {
        let n = w.bound.len();
        // Weights: lifecycle transitions dominate; observation and odd inputs season them.
        let total: u32 = WEIGHTS.iter().map(|(w, _)| w).sum();
        let mut roll = self.rng.random_range(0..total);
        let mut pick = Pick::List;
        for (wt, p) in WEIGHTS {
            if roll < *wt {
                pick = *p;
                break;
            }
            roll -= wt;
        }
        let open: Vec<String> = w.open_handles().iter().map(|h| h.name.clone()).collect();
        let any_open = |rng: &mut ChaCha8Rng| open.choose(rng).cloned();
        // A request this actor holds in an io_stall keeps the driver's io_mutex: reset, close
        // and region reads wait for it, and only this actor's own io_release would end the
        // wait — a hang the program made, not the kernel. Other actors may race it.
        let unstalled: Vec<String> = open
            .iter()
            .filter(|h| !w.stalled.contains(h))
            .cloned()
            .collect();
        let waits_ok = |rng: &mut ChaCha8Rng| unstalled.choose(rng).cloned();
        Some(match pick {
            Pick::Open => {
                let m = w
                    .live_mdevs()
                    .choose(&mut self.rng)
                    .map(|m| m.name.clone())?;
                let h = self.names.handle();
                w.handles.push(HandleModel {
                    name: h.clone(),
                    open: true,
                    mine: true,
                });
                let via = if self.rng.random_bool(0.25) {
                    OpenVia::Iommufd
                } else {
                    OpenVia::Group
                };
                Op::Open {
                    mdev: m,
                    handle: h,
                    via,
                }
            }
            Pick::Close => {
                let h = waits_ok(&mut self.rng)?;
                let order = close_orders()
                    .choose(&mut self.rng)
                    .cloned()
                    .unwrap_or_default();
                // A partial close leaves parts open: the tail closes the rest.
                if order.len() == 3 {
                    w.set_handle(&h, false);
                }
                Op::Close { handle: h, order }
            }
            Pick::Create => {
                let bound: Vec<usize> = (0..n).filter(|i| w.bound[*i]).collect();
                let parent = *bound.choose(&mut self.rng)?;
                let m = self.names.mdev();
                w.mdevs.push(MdevModel {
                    name: m.clone(),
                    parent,
                    alive: true,
                });
                Op::MdevCreate {
                    parent: Self::schid(parent),
                    mdev: m,
                    uuid: None,
                }
            }
            Pick::Remove => {
                let m = w
                    .live_mdevs()
                    .choose(&mut self.rng)
                    .map(|m| m.name.clone())?;
                w.mdevs
                    .iter_mut()
                    .filter(|x| x.name == m)
                    .for_each(|x| x.alive = false);
                Op::MdevRemove { mdev: m }
            }
            Pick::Bind => {
                let i = self.rng.random_range(0..n);
                let to_vfio = !w.bound[i] || self.rng.random_bool(0.2);
                if to_vfio {
                    w.bound[i] = true;
                } else {
                    w.unbound(i);
                }
                let driver = if to_vfio { "vfio_ccw" } else { "io_subchannel" };
                Op::Bind {
                    schid: Self::schid(i),
                    driver: driver.into(),
                }
            }
            Pick::Unbind => {
                let i = self.rng.random_range(0..n);
                w.unbound(i);
                Op::Unbind {
                    schid: Self::schid(i),
                }
            }
            Pick::Rescan => Op::Rescan,
            Pick::Reset => Op::Reset {
                handle: waits_ok(&mut self.rng)?,
            },
            Pick::Io => Op::Io {
                handle: any_open(&mut self.rng)?,
                count: self.rng.random_range(1..=20),
                suspend: false,
                irq_wait_ms: 500,
            },
            Pick::IoSuspend => Op::Io {
                handle: any_open(&mut self.rng)?,
                count: 1,
                suspend: true,
                irq_wait_ms: 500,
            },
            Pick::IoStall => {
                let free: Vec<&String> = open.iter().filter(|h| !w.stalled.contains(h)).collect();
                let h = (*free.choose(&mut self.rng)?).clone();
                w.stalled.push(h.clone());
                Op::IoStall {
                    handle: h,
                    wait_ms: 500,
                }
            }
            Pick::IoRelease => {
                if w.stalled.is_empty() {
                    return None;
                }
                let i = self.rng.random_range(0..w.stalled.len());
                Op::IoRelease {
                    handle: w.stalled.remove(i),
                    irq_wait_ms: 500,
                }
            }
            Pick::Halt => Op::Halt {
                handle: any_open(&mut self.rng)?,
            },
            Pick::Clear => Op::Clear {
                handle: any_open(&mut self.rng)?,
            },
            Pick::Consumer => {
                let p = *POLICIES.choose(&mut self.rng)?;
                Op::Consumer {
                    handle: any_open(&mut self.rng)?,
                    on_request: p,
                }
            }
            Pick::ReadRegion => Op::ReadRegion {
                handle: waits_ok(&mut self.rng)?,
                region: *REGIONS.choose(&mut self.rng)?,
            },
            Pick::BadInput => Op::BadInput {
                handle: waits_ok(&mut self.rng)?,
                kind: *BAD.choose(&mut self.rng)?,
            },
            Pick::GetInfo => Op::GetInfo {
                handle: any_open(&mut self.rng)?,
            },
            Pick::Available => Op::AvailableInstances {
                parent: Self::schid(self.rng.random_range(0..n)),
            },
            Pick::Sleep => Op::Sleep {
                ms: self.rng.random_range(0..15),
            },
            Pick::List => Op::ListSubchannels,
        })
    }

    /// Something the model says is wrong now: the driver must refuse it cleanly.
    fn invalid_op(&mut self, w: &mut World) -> Option<Op> {
        let closed: Vec<String> = w
            .handles
            .iter()
            .filter(|h| !h.open)
            .map(|h| h.name.clone())
            .collect();
        let dead: Vec<String> = w
            .mdevs
            .iter()
            .filter(|m| !m.alive)
            .map(|m| m.name.clone())
            .collect();
        let unbound: Vec<usize> = (0..w.bound.len()).filter(|i| !w.bound[*i]).collect();
        // Kinds of wrongness possible in this state; pick one, then build it.
        let mut kinds: Vec<u8> = Vec::new();
        if !closed.is_empty() {
            kinds.extend([0, 1, 2]);
        }
        if !dead.is_empty() {
            kinds.extend([3, 4]);
        }
        if !unbound.is_empty() {
            kinds.push(5);
        }
        let kind = *kinds.choose(&mut self.rng)?;
        let h = closed.choose(&mut self.rng).cloned().unwrap_or_default();
        let m = dead.choose(&mut self.rng).cloned().unwrap_or_default();
        Some(match kind {
            0 => Op::Close {
                handle: h,
                order: close_orders()[0].clone(),
            },
            1 => Op::Io {
                handle: h,
                count: 1,
                suspend: false,
                irq_wait_ms: 200,
            },
            2 => Op::Reset { handle: h },
            3 => Op::MdevRemove { mdev: m },
            // Opening a removed mdev fails; the model records no handle for it.
            4 => Op::Open {
                mdev: m,
                handle: self.names.handle(),
                via: OpenVia::Group,
            },
            _ => {
                let i = *unbound.choose(&mut self.rng)?;
                let m = self.names.mdev();
                // The create fails (no mdev type without vfio_ccw); the name stays dead.
                w.mdevs.push(MdevModel {
                    name: m.clone(),
                    parent: i,
                    alive: false,
                });
                Op::MdevCreate {
                    parent: Self::schid(i),
                    mdev: m,
                    uuid: None,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_program() {
        let g = Generator::default();
        for seed in [0u64, 1, 42, u64::MAX] {
            assert_eq!(g.generate(seed).program, g.generate(seed).program);
        }
        assert_ne!(g.generate(1).program, g.generate(2).program);
    }

    #[test]
    fn every_program_validates_and_round_trips() {
        let g = Generator::default();
        for seed in 0..500u64 {
            let p = g.generate(seed).program;
            if let Err(e) = p.validate() {
                panic!("seed {seed}: {e}\n{}", p.to_toml());
            }
            let back = crate::scenario::parse_str(&p.to_toml(), &p.name, None)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", p.to_toml()));
            assert_eq!(back, p, "seed {seed}");
        }
    }

    #[test]
    fn some_programs_end_in_a_poweroff_that_runs_once() {
        let g = Generator::default();
        let mut with = 0;
        for seed in 0..500u64 {
            let p = g.generate(seed).program;
            let offs = p.ops().filter(|o| matches!(o, Op::Poweroff)).count();
            assert!(offs <= 1, "seed {seed}: {offs} poweroffs");
            if offs == 1 {
                with += 1;
                assert_eq!(
                    p.race.repeat, 1,
                    "seed {seed}: a powered-off guest runs no round 2"
                );
                assert!(
                    p.actors[0]
                        .steps
                        .iter()
                        .any(|s| matches!(s.op(), Some(Op::Poweroff))),
                    "seed {seed}: the first guest actor powers off"
                );
            }
        }
        assert!((10..80).contains(&with), "{with}/500 programs power off");
    }

    #[test]
    fn invalid_share_is_a_minority_but_present() {
        let g = Generator::default();
        let (mut ops, mut bad) = (0, 0);
        for seed in 0..500u64 {
            let s = g.generate(seed).stats;
            ops += s.ops;
            bad += s.invalid;
        }
        let ratio = bad as f64 / ops as f64;
        assert!((0.03..0.2).contains(&ratio), "invalid ratio {ratio}");
    }

    #[test]
    fn programs_overlap_transitions() {
        let g = Generator::default();
        let mut multi = 0;
        let mut host = 0;
        for seed in 0..300u64 {
            let p = g.generate(seed).program;
            if p.actors.len() > 1 {
                multi += 1;
            }
            if p.host_actor().is_some() {
                host += 1;
            }
            for a in &p.actors {
                let racing = p.actors.len() > 1;
                assert_eq!(
                    matches!(a.steps[0], Step::Barrier { .. }),
                    racing,
                    "racing actors start at the go barrier"
                );
                assert!(
                    a.steps.len() <= 2 + 2 * g.config.max_ops_per_phase + 6,
                    "actors stay short"
                );
            }
        }
        assert!(multi > 150, "{multi}/300 programs race two or more actors");
        assert!(host > 60, "{host}/300 programs involve the host");
    }

    /// A held request blocks removes and closes behind it: every actor releases what it
    /// stalled before its program ends.
    #[test]
    fn every_stall_is_released_by_its_actor() {
        let g = Generator::default();
        let mut stalls = 0;
        for seed in 0..300u64 {
            let p = g.generate(seed).program;
            for a in &p.actors {
                let mut held: Vec<&str> = Vec::new();
                for st in &a.steps {
                    match st {
                        Step::Op(s) => match &s.op {
                            Op::IoStall { handle, .. } => {
                                assert!(
                                    !held.contains(&handle.as_str()),
                                    "seed {seed}: stalled twice"
                                );
                                held.push(handle);
                                stalls += 1;
                            }
                            Op::IoRelease { handle, .. } => {
                                assert!(
                                    held.contains(&handle.as_str()),
                                    "seed {seed}: release of {handle} without a stall"
                                );
                                held.retain(|h| h != handle);
                            }
                            // The fuzzer's own hang of the first 10-minute clean run: an actor
                            // stalls a request, then resets the handle before releasing it.
                            Op::Reset { handle }
                            | Op::Close { handle, .. }
                            | Op::ReadRegion { handle, .. }
                            | Op::BadInput { handle, .. } => assert!(
                                !held.contains(&handle.as_str()),
                                "seed {seed}: actor {} waits on {handle}, which it holds stalled:\n{}",
                                a.name,
                                p.to_toml()
                            ),
                            _ => {}
                        },
                        Step::Barrier { .. } => {}
                    }
                }
                assert!(
                    held.is_empty(),
                    "seed {seed}: actor {} leaves {held:?} stalled",
                    a.name
                );
            }
        }
        assert!(stalls > 30, "{stalls} stalls in 300 programs");
    }

    #[test]
    fn all_generated_steps_expect_any() {
        let g = Generator::default();
        for seed in 0..100u64 {
            let p = g.generate(seed).program;
            for st in p
                .setup
                .iter()
                .chain(p.actors.iter().flat_map(|a| a.steps.iter()))
            {
                if let Step::Op(s) = st {
                    assert_eq!(s.expect, vec![Expect::Any]);
                }
            }
        }
    }
}
