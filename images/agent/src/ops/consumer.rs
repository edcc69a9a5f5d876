//! A QEMU-like user of the device (hw/vfio/ccw.c at realize): device, region and IRQ infos,
//! eventfds on the I/O, CRW and device-request IRQs, a DMA mapping, and a watcher thread that
//! answers the kernel's device requests according to the policy.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use ccwrig_proto::{FdPart, RegionKind, RequestPolicy};
use serde_json::{json, Value};

use super::device::{find_region, get_info, hex};
use super::prep::{ensure_dma, ensure_irq};
use super::{OpError, OpRes};
use crate::out::Outbox;
use crate::params::WATCH_TICK_MS;
use crate::state::handle::Fd;
use crate::state::{lock, Agent, Handle};
use crate::sys;
use crate::vfio::{self, abi::*};

pub fn start(agent: &Arc<Agent>, h: &Arc<Handle>, policy: RequestPolicy, actor: &str) -> OpRes {
    let info = get_info(h)?;
    let mut irqs = serde_json::Map::new();
    for idx in [
        VFIO_CCW_IO_IRQ_INDEX,
        VFIO_CCW_CRW_IRQ_INDEX,
        VFIO_CCW_REQ_IRQ_INDEX,
    ] {
        ensure_irq(h, idx).map_err(|e| e.with_data(json!({"info": info, "irqs": irqs})))?;
        irqs.insert(vfio::irq_name(idx).into(), json!("eventfd"));
    }
    let dma = ensure_dma(h).map_err(|e| e.with_data(json!({"info": info, "irqs": irqs})))?;
    let req = ensure_irq(h, VFIO_CCW_REQ_IRQ_INDEX)?;
    let crw = ensure_irq(h, VFIO_CCW_CRW_IRQ_INDEX)?;
    let w = Watcher {
        agent: Arc::downgrade(agent),
        handle: Arc::downgrade(h),
        name: h.name.clone(),
        policy,
        out: agent.out.clone(),
        req,
        crw,
    };
    let spawned = std::thread::Builder::new()
        .name(format!("watch-{}", h.name))
        .spawn(move || w.run());
    if let Err(e) = spawned {
        return Err(OpError::failed(format!("spawn watcher: {e}")));
    }
    Ok(
        json!({"info": info, "irqs": irqs, "dma_iova": format!("{:#x}", dma.iova), "dma_len": dma.len,
              "on_request": policy, "actor": actor}),
    )
}

/// Waits until the handle's watcher has answered `count` device requests in all.
pub fn await_requests(h: &Handle, count: u32, wait_ms: u64) -> OpRes {
    let answered = || {
        lock(&h.consumer_log)
            .iter()
            .filter(|e| e["event"] == "request")
            .count()
    };
    let t0 = sys::monotonic_us();
    loop {
        let n = answered();
        let waited_ms = (sys::monotonic_us() - t0) / 1000;
        if n >= count as usize {
            return Ok(json!({"requests": n, "waited_ms": waited_ms}));
        }
        if waited_ms >= wait_ms {
            let e = sys::SysError::new(
                format!("wait for device request #{count} ({wait_ms} ms; {n} answered)"),
                libc::ETIMEDOUT,
            );
            return Err(OpError::from(e).with_data(json!({"requests": n})));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

struct Watcher {
    agent: Weak<Agent>,
    handle: Weak<Handle>,
    name: String,
    policy: RequestPolicy,
    out: Outbox,
    req: Fd,
    crw: Fd,
}

impl Watcher {
    fn run(self) {
        let source = format!("consumer:{}", self.name);
        let mut requests = 0u64;
        loop {
            let Some(h) = self.handle.upgrade() else {
                return;
            };
            if h.stop.load(Ordering::SeqCst) {
                return;
            }
            drop(h);
            let mut p = [
                libc::pollfd {
                    fd: self.req.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.crw.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfds.
            let r = unsafe { libc::poll(p.as_mut_ptr(), 2, WATCH_TICK_MS as i32) };
            if r <= 0 {
                continue;
            }
            if p[1].revents != 0 {
                let n = sys::eventfd_take(&*self.crw);
                self.record(
                    &source,
                    json!({"event": "crw", "signals": n, "crw": self.read_crw()}),
                );
            }
            if p[0].revents != 0 {
                let n = sys::eventfd_take(&*self.req);
                requests += 1;
                let action = self.apply(requests);
                self.record(
                    &source,
                    json!({"event": "request", "signals": n, "request_no": requests,
                                            "policy": self.policy, "action": action}),
                );
            }
        }
    }

    /// Applies the policy to one device request and returns what happened.
    fn apply(&self, n: u64) -> Value {
        let Some(h) = self.handle.upgrade() else {
            return json!({"result": "handle gone"});
        };
        match self.policy {
            RequestPolicy::Ignore => json!({"did": "nothing"}),
            RequestPolicy::Reset => match h.device() {
                None => json!({"did": "reset", "result": "device fd already closed"}),
                Some(dev) => {
                    let t0 = sys::monotonic_us();
                    let r = vfio::reset(dev.as_raw_fd());
                    json!({"did": "VFIO_DEVICE_RESET", "request_no": n, "result": outcome(r),
                           "us": sys::monotonic_us() - t0})
                }
            },
            RequestPolicy::Close => {
                // As QEMU's unrealize: tear the IRQ triggers down, then put the device, group
                // and container.
                let mut steps = Vec::new();
                if let Some(dev) = h.device() {
                    for idx in [
                        VFIO_CCW_REQ_IRQ_INDEX,
                        VFIO_CCW_CRW_IRQ_INDEX,
                        VFIO_CCW_IO_IRQ_INDEX,
                    ] {
                        let r = vfio::set_irq_eventfd(dev.as_raw_fd(), idx, -1);
                        steps.push(json!({"unset_irq": vfio::irq_name(idx), "result": outcome(r)}));
                    }
                }
                let closed = match self.agent.upgrade() {
                    Some(a) => super::open::close_parts(&a, &h, &FdPart::DEFAULT_ORDER),
                    None => Vec::new(),
                };
                json!({"did": "close", "steps": steps, "closed": closed})
            }
        }
    }

    fn read_crw(&self) -> Value {
        let Some(h) = self.handle.upgrade() else {
            return Value::Null;
        };
        let (Ok(r), Some(dev)) = (find_region(&h, RegionKind::Crw), h.device()) else {
            return Value::Null;
        };
        let mut b = [0u8; 8];
        match sys::pread(dev.as_raw_fd(), &mut b, r.offset, "pread crw region") {
            Ok(_) => json!(hex(&b)),
            Err(e) => json!(e.to_string()),
        }
    }

    fn record(&self, source: &str, v: Value) {
        if let Some(h) = self.handle.upgrade() {
            lock(&h.consumer_log).push(v.clone());
        }
        self.out.note(source, v.to_string());
    }
}

fn outcome(r: sys::SysResult<()>) -> Value {
    match r {
        Ok(()) => json!("ok"),
        Err(e) => {
            json!({"errno": ccwrig_proto::errno_name(e.errno), "code": e.errno, "call": e.call})
        }
    }
}
