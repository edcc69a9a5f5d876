//! The shape of a program: a setup prefix that brings subchannels to a point of their
//! lifecycle, guest actors that meet at barriers and close what they opened, and the host.

use ccwrig_proto::{Op, OpenVia, RequestPolicy};
use rand::seq::IndexedRandom;
use rand::Rng;

use super::choice::{close_orders, POLICIES};
use super::world::{HandleModel, MdevModel, World};
use super::{step, Budget, Build};
use crate::scenario::Step;

impl Build<'_> {
    /// A random prefix of the lifecycle for one or both subchannels, run before the race. On a
    /// machine at rest on vfio_ccw it starts by binding every subchannel there: nothing on a
    /// VM where the last cleanup left them so, and the same start in a fresh VM (replay,
    /// triage, a kept program run alone).
    pub(super) fn setup(&mut self, w: &mut World) -> Vec<Step> {
        let mut out = Vec::new();
        let n = w.bound.len();
        if self.cfg.machine.rest == ccwrig_proto::Rest::VfioCcw {
            for i in 0..n {
                Self::setup_bind(w, i, &mut out);
            }
        }
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
            Self::setup_bind(w, i, &mut out);
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
                Budget::SETUP,
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
                Budget::SETUP,
            ));
            w.handles.push(HandleModel {
                name: h.clone(),
                open: true,
                mine: true,
                iommufd: via == OpenVia::Iommufd,
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
                        Budget::SETUP,
                    ));
                }
                5 => out.push(step(
                    Op::Io {
                        handle: h,
                        count: 1,
                        suspend: true,
                        irq_wait_ms: 500,
                        program: None,
                    },
                    Budget::SETUP,
                )),
                _ => {}
            }
        }
        out
    }

    /// A setup step binding subchannel `i` to vfio_ccw, unless the model has it there already.
    fn setup_bind(w: &mut World, i: usize, out: &mut Vec<Step>) {
        if w.bound[i] {
            return;
        }
        out.push(step(
            Op::Bind {
                schid: Self::schid(i),
                driver: ccwrig_proto::DRIVER_VFIO_CCW.into(),
            },
            Budget::SETUP,
        ));
        w.bound[i] = true;
    }

    /// `[go] ops [mid ops] tail`: the tail closes what this actor opened and still believes
    /// open, so a program never leaves an mdev remove blocked on a handle nobody will close.
    pub(super) fn guest_actor(&mut self, w: &mut World, meet: bool, mid: bool) -> Vec<Step> {
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
                Budget::SETUP,
            ));
        }
        for h in tail {
            out.push(step(
                Op::Close {
                    handle: h.clone(),
                    order: close_orders()[0].clone(),
                },
                Budget::SETUP,
            ));
            w.set_handle(&h, false);
        }
        out
    }

    /// The host: hot-unplug (sometimes replug) a device, or pause the vCPUs for a moment.
    pub(super) fn host_actor(&mut self, w: &World, meet: bool, mid: bool) -> Vec<Step> {
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
}
