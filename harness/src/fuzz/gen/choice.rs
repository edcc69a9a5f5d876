//! Which operation an actor issues next: a valid one drawn by weight among those its model
//! allows, or on purpose one the model says is wrong now.

use ccwrig_proto::{
    BadInputKind, FdPart, IoasAction, IrqAction, IrqKind, Op, OpenVia, RegionAccessKind,
    RegionKind, RequestPolicy,
};
use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::world::{HandleModel, MdevModel, World};
use super::Build;

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
    SetIrq,
    DmaUnmap,
    Io,
    IoProgram,
    IoSuspend,
    IoStall,
    IoRelease,
    Halt,
    Clear,
    Consumer,
    ReadRegion,
    BadInput,
    RegionAccess,
    Ioas,
    Online,
    GetInfo,
    Available,
    List,
    Sleep,
}

/// How often each kind is chosen, relative to the others: lifecycle transitions dominate;
/// observation and odd inputs season them.
const WEIGHTS: &[(u32, Pick)] = &[
    (10, Pick::Open),
    (10, Pick::Close),
    (7, Pick::Create),
    (7, Pick::Remove),
    (4, Pick::Bind),
    (3, Pick::Unbind),
    (2, Pick::Rescan),
    (6, Pick::Reset),
    (3, Pick::SetIrq),
    (3, Pick::DmaUnmap),
    (4, Pick::Io),
    (5, Pick::IoProgram),
    (4, Pick::IoSuspend),
    (3, Pick::IoStall),
    (4, Pick::IoRelease),
    (3, Pick::Halt),
    (3, Pick::Clear),
    (4, Pick::Consumer),
    (2, Pick::ReadRegion),
    (2, Pick::BadInput),
    (3, Pick::RegionAccess),
    (2, Pick::Ioas),
    (1, Pick::Online),
    (1, Pick::GetInfo),
    (1, Pick::Available),
    (1, Pick::List),
    (2, Pick::Sleep),
];

/// The kinds of invalid operation: each is wrong for what the actor's model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrong {
    /// Close a handle already closed.
    CloseClosed,
    /// I/O on a closed handle.
    IoOnClosed,
    /// Reset a closed handle.
    ResetClosed,
    /// Remove an mdev already removed.
    RemoveRemoved,
    /// Open a removed mdev.
    OpenRemoved,
    /// Create an mdev on a subchannel not bound to vfio_ccw.
    CreateOnUnbound,
}

impl Pick {
    /// One kind, drawn by [`WEIGHTS`].
    fn roll(rng: &mut ChaCha8Rng) -> Pick {
        let total: u32 = WEIGHTS.iter().map(|(w, _)| w).sum();
        let mut roll = rng.random_range(0..total);
        for (wt, p) in WEIGHTS {
            if roll < *wt {
                return *p;
            }
            roll -= wt;
        }
        Pick::List
    }
}

pub(super) const POLICIES: [RequestPolicy; 3] = [
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
const BAD: [BadInputKind; 8] = [
    BadInputKind::IoRegionOffset,
    BadInputKind::IoRegionShort,
    BadInputKind::UnmappedCpa,
    BadInputKind::Format0Orb,
    BadInputKind::AsyncBadCommand,
    BadInputKind::BadRegionIndex,
    BadInputKind::ArgszShort,
    BadInputKind::IrqIndexPastLast,
];

/// Close orders a user can produce: every full permutation and the partial ones QEMU-like
/// crashes leave behind.
/// Offsets and sizes for `region_access`: the edges of the driver's checks (the regions are
/// 8 to 124 bytes; the next region starts 0x400 further on) without knowing each size here.
const ACCESS_OFFSETS: [u64; 12] = [0, 0, 0, 1, 3, 4, 7, 8, 52, 123, 124, 0x3ff];
const ACCESS_SIZES: [Option<u64>; 10] = [
    None,
    None,
    None,
    Some(1),
    Some(4),
    Some(8),
    Some(12),
    Some(124),
    Some(125),
    Some(4096),
];

pub(super) fn close_orders() -> Vec<Vec<FdPart>> {
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
    /// One guest operation, valid for this actor's model unless the dice say otherwise.
    pub(super) fn guest_op(&mut self, w: &mut World) -> Op {
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
        let pick = Pick::roll(&mut self.rng);
        let open: Vec<String> = w.open_handles().iter().map(|h| h.name.clone()).collect();
        let any_open = |rng: &mut ChaCha8Rng| open.choose(rng).cloned();
        // A request this actor holds in an io_stall keeps the driver's io_mutex: reset, close,
        // region reads and DMA unmaps wait for it, and only this actor's own io_release would end the
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
                let via = if self.rng.random_bool(0.25) {
                    OpenVia::Iommufd
                } else {
                    OpenVia::Group
                };
                w.handles.push(HandleModel {
                    name: h.clone(),
                    open: true,
                    mine: true,
                    iommufd: via == OpenVia::Iommufd,
                });
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
                // A bound subchannel goes to io_subchannel half the time (the other half is a
                // bind that finds it bound): every program starts bound, and each such bind
                // costs a css walk on lockdep kernels (~6 s). At 0.8, as when programs started
                // unbound, 24 % of 3000 programs bound io_subchannel (13 % had then); at 0.5, 16 %.
                let to_vfio = !w.bound[i] || self.rng.random_bool(0.5);
                if to_vfio {
                    w.bound[i] = true;
                } else {
                    w.unbound(i);
                }
                let driver = if to_vfio {
                    ccwrig_proto::DRIVER_VFIO_CCW
                } else {
                    ccwrig_proto::DRIVER_IO_SUBCHANNEL
                };
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
            // The driver swaps its eventfd pointers without a lock against its own interrupt
            // and CRW work: bursts of replacement and removal race whatever I/O is running.
            Pick::SetIrq => Op::SetIrq {
                handle: any_open(&mut self.rng)?,
                irq: *[IrqKind::Io, IrqKind::Crw, IrqKind::Req].choose(&mut self.rng)?,
                action: match self.rng.random_range(0..24) {
                    0..14 => IrqAction::Register,
                    14..19 => IrqAction::Remove,
                    19..21 => IrqAction::Signal,
                    21 => IrqAction::SignalBool,
                    22 => IrqAction::Mask,
                    _ => IrqAction::Unmask,
                },
                count: self.rng.random_range(1..=30),
            },
            // Mostly map/unmap bursts (container ioctls racing the lifecycle); sometimes the
            // buffer stays unmapped and later channel programs point into nothing. A held
            // io_stall sleeps in its fault with the type1 IOMMU's lock held (vfio_dma_rw), so
            // an unmap on that container would wait for this actor's own release.
            Pick::DmaUnmap => Op::DmaUnmap {
                handle: waits_ok(&mut self.rng)?,
                count: self.rng.random_range(1..=50),
                remap: self.rng.random_bool(0.8),
            },
            Pick::Io => Op::Io {
                handle: any_open(&mut self.rng)?,
                count: self.rng.random_range(1..=20),
                suspend: false,
                irq_wait_ms: 500,
                program: None,
            },
            Pick::IoProgram => {
                let handle = any_open(&mut self.rng)?;
                let (program, suspends) = super::chanprog::program(&mut self.rng);
                Op::Io {
                    handle,
                    count: if suspends {
                        1
                    } else {
                        self.rng.random_range(1..=3)
                    },
                    suspend: suspends,
                    irq_wait_ms: 500,
                    program: Some(program),
                }
            }
            Pick::IoSuspend => Op::Io {
                handle: any_open(&mut self.rng)?,
                count: 1,
                suspend: true,
                irq_wait_ms: 500,
                program: None,
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
            // The I/O and async region writes only try io_mutex (EAGAIN while it is held), but
            // a read or write of the I/O region may start a program on a stalled handle.
            Pick::RegionAccess => Op::RegionAccess {
                handle: waits_ok(&mut self.rng)?,
                region: *REGIONS.choose(&mut self.rng)?,
                access: match self.rng.random_range(0..20) {
                    0..9 => RegionAccessKind::Read,
                    9..17 => RegionAccessKind::Write,
                    _ => RegionAccessKind::Mmap,
                },
                offset: *ACCESS_OFFSETS.choose(&mut self.rng)?,
                size: *ACCESS_SIZES.choose(&mut self.rng)?,
                threads: self.rng.random_range(1..=4),
                count: self.rng.random_range(1..=10),
            },
            Pick::Ioas => {
                let ioas: Vec<String> = w
                    .open_handles()
                    .iter()
                    .filter(|h| h.iommufd && !w.stalled.contains(&h.name))
                    .map(|h| h.name.clone())
                    .collect();
                Op::Ioas {
                    handle: ioas.choose(&mut self.rng)?.clone(),
                    action: *[
                        IoasAction::Detach,
                        IoasAction::Detach,
                        IoasAction::Attach,
                        IoasAction::AttachNew,
                        IoasAction::Destroy,
                    ]
                    .choose(&mut self.rng)?,
                }
            }
            Pick::Online => Op::Online {
                schid: Self::schid(self.rng.random_range(0..n)),
                online: self.rng.random_bool(0.5),
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
        let mut kinds: Vec<Wrong> = Vec::new();
        if !closed.is_empty() {
            kinds.extend([Wrong::CloseClosed, Wrong::IoOnClosed, Wrong::ResetClosed]);
        }
        if !dead.is_empty() {
            kinds.extend([Wrong::RemoveRemoved, Wrong::OpenRemoved]);
        }
        if !unbound.is_empty() {
            kinds.push(Wrong::CreateOnUnbound);
        }
        let kind = *kinds.choose(&mut self.rng)?;
        let h = closed.choose(&mut self.rng).cloned().unwrap_or_default();
        let m = dead.choose(&mut self.rng).cloned().unwrap_or_default();
        Some(match kind {
            Wrong::CloseClosed => Op::Close {
                handle: h,
                order: close_orders()[0].clone(),
            },
            Wrong::IoOnClosed => Op::Io {
                handle: h,
                count: 1,
                suspend: false,
                irq_wait_ms: 200,
                program: None,
            },
            Wrong::ResetClosed => Op::Reset { handle: h },
            Wrong::RemoveRemoved => Op::MdevRemove { mdev: m },
            // Opening a removed mdev fails; the model records no handle for it.
            Wrong::OpenRemoved => Op::Open {
                mdev: m,
                handle: self.names.handle(),
                via: OpenVia::Group,
            },
            Wrong::CreateOnUnbound => {
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
