//! The reset between programs: close every handle, remove every mdev the agent created, give
//! every touched subchannel back to io_subchannel, or every I/O subchannel back to vfio_ccw on
//! a machine at rest there. Each step is reported; a failing step does not stop the others,
//! and the first failure becomes the outcome.

use std::path::Path;
use std::sync::Arc;

use ccwrig_proto::{FdPart, Rest};
use serde_json::{json, Value};

use super::{css, OpError, OpRes};
use crate::paths;
use crate::state::{lock, Agent};
use crate::sys::SysError;

/// What the kernel does to the files of killed processes: every inner QEMU is killed, every
/// stalled request abandoned, every handle closed. Returns the steps and the inner QEMUs that
/// had crashed on their own.
pub fn release_all(agent: &Arc<Agent>) -> (Vec<Value>, Vec<String>) {
    // First: an inner QEMU holds its mdev open, and removing that mdev would block on it.
    let (mut steps, crashed) = super::inner_qemu::kill_all(agent);
    let handles: Vec<_> = lock(&agent.handles).values().cloned().collect();
    // A stalled write keeps the device busy, so its mdev could not be removed: fail the
    // kernel's copy first (closing the userfaultfd) and wait for the write to return.
    for h in &handles {
        if let Some(v) = super::stall::abandon(h) {
            steps.push(json!({"stall": h.name, "abandoned": v}));
        }
    }
    for h in handles {
        let closed = super::open::close_parts(agent, &h, &FdPart::DEFAULT_ORDER);
        steps.push(json!({"close": h.name, "steps": closed}));
    }
    (steps, crashed)
}

pub fn run(agent: &Arc<Agent>, online_wait_ms: u64, rest: Rest) -> OpRes {
    let (mut steps, crashed) = release_all(agent);
    let mut first_err: Option<OpError> = None;
    if !crashed.is_empty() {
        first_err = Some(OpError::failed(format!(
            "inner QEMU crashed: {}",
            crashed.join(", ")
        )));
    }

    let mdevs: Vec<_> = std::mem::take(&mut *lock(&agent.mdevs))
        .into_iter()
        .collect();
    for (name, m) in mdevs {
        let dir = paths::mdev(&m.uuid);
        if !Path::new(&dir).exists() {
            steps.push(json!({"mdev": name, "uuid": m.uuid, "removed": "already gone"}));
            continue;
        }
        match crate::sys::write_attr(&format!("{dir}/remove"), "1") {
            Ok(()) => steps.push(json!({"mdev": name, "uuid": m.uuid, "removed": true})),
            Err(e) => {
                steps.push(json!({"mdev": name, "uuid": m.uuid, "error": e.to_string()}));
                first_err.get_or_insert(OpError::from(e));
            }
        }
    }

    // Paths first: with the path off no ccw device below it could come online.
    steps.extend(super::chp::restore(agent));

    match rest {
        Rest::IoSubchannel => to_io_subchannel(agent, online_wait_ms, &mut steps, &mut first_err),
        Rest::VfioCcw => to_vfio_ccw(agent, online_wait_ms, &mut steps, &mut first_err),
    }
    // The next program starts from a channel subsystem at rest. A settle that does not come
    // is reported and left to the oracles (a stuck evaluation shows as a stuck cio worker).
    steps.push(json!({ "settle": css::settle(online_wait_ms) }));

    let data = json!({ "steps": steps });
    match first_err {
        Some(e) => Err(e.with_data(data)),
        None => Ok(data),
    }
}

/// Every touched subchannel back to io_subchannel, each then waited for until its ccw device
/// is online.
fn to_io_subchannel(
    agent: &Arc<Agent>,
    online_wait_ms: u64,
    steps: &mut Vec<Value>,
    first_err: &mut Option<OpError>,
) {
    let touched: Vec<String> = std::mem::take(&mut *lock(&agent.touched))
        .into_iter()
        .collect();
    let mut still_touched = Vec::new();
    // The unbinds first, then every bind's last write from a thread of its own, then the
    // waits. Each bind to io_subchannel schedules the css walk over all 262 144 subchannel
    // ids (3.5-4 s on the debug profile), and a ccw device is registered only after every
    // walk scheduled before its recognition ended. Binds whose probes all come before the
    // first walk starts share it; a probe during it schedules a second for all of them. One
    // bind after another, or back to back from one thread, always cost a walk each; from
    // threads the probes beat the walk in about a third of the cleanups
    // (kernel/configs/README.md, "Where the debug boot goes").
    let mut prepared = Vec::new();
    for schid in touched {
        if !Path::new(&paths::subchannel(&schid)).exists() {
            steps.push(json!({"schid": schid, "rebind": "subchannel gone"}));
            continue;
        }
        match css::prepare_bind(agent, &schid, ccwrig_proto::DRIVER_IO_SUBCHANNEL) {
            Ok(b) => prepared.push((schid, b)),
            Err(e) => rebind_failed(e, schid, steps, &mut still_touched, first_err),
        }
    }
    let mut rebound = Vec::new();
    for (schid, r) in bind_together(prepared) {
        match r {
            Ok(v) => rebound.push((schid, v)),
            Err(e) => rebind_failed(e, schid, steps, &mut still_touched, first_err),
        }
    }
    for (schid, v) in rebound {
        steps.push(
            json!({"schid": schid, "rebind": v, "ccw": css::await_online(&schid, online_wait_ms)}),
        );
    }
    // bind() marks each subchannel touched again; only the ones not given back stay so.
    let mut t = lock(&agent.touched);
    t.clear();
    t.extend(still_touched);
    drop(t);
}

/// Every I/O subchannel that names a device back to vfio_ccw (touched by the program or not:
/// a re-added device's new subchannel comes up under io_subchannel), but the one carrying the
/// agent's own port. One under io_subchannel is first waited for until its ccw device is
/// online, as `to_io_subchannel` does, and left there if it does not come: that is the lost
/// device the host's device-state check reports. No bind to io_subchannel here, so no css
/// walk: a program pays one only for its own binds.
fn to_vfio_ccw(
    agent: &Arc<Agent>,
    online_wait_ms: u64,
    steps: &mut Vec<Value>,
    first_err: &mut Option<OpError>,
) {
    // Unbinding vfio_ccw takes every mdev of the parent with it; a parent that stays bound
    // keeps the ones the agent no longer names (a name created twice in a repeated race).
    for uuid in crate::sys::dir_names(paths::MDEV_DEVICES) {
        match crate::sys::write_attr(&format!("{}/remove", paths::mdev(&uuid)), "1") {
            Ok(()) => steps.push(json!({"mdev": null, "uuid": uuid, "removed": true})),
            Err(e) => {
                steps.push(json!({"mdev": null, "uuid": uuid, "error": e.to_string()}));
                first_err.get_or_insert(OpError::from(e));
            }
        }
    }
    let Some(own) = crate::port::subchannel_of(ccwrig_proto::AGENT_PORT_NAME) else {
        first_err.get_or_insert(OpError::failed(
            "the agent's own port's subchannel not found: nothing given to vfio_ccw",
        ));
        return;
    };
    let mut schids = crate::sys::dir_names(paths::CSS_DEVICES);
    schids.retain(|s| *s != own);
    schids.sort();
    let mut still_touched = Vec::new();
    for schid in schids {
        let info = css::describe(&schid);
        if info.kind.as_deref() != Some("0") || info.devno.is_none() {
            continue;
        }
        let ccw = match info.driver.as_deref() {
            Some(ccwrig_proto::DRIVER_VFIO_CCW) => continue,
            Some(ccwrig_proto::DRIVER_IO_SUBCHANNEL) => {
                let ccw = css::await_online(&schid, online_wait_ms);
                if ccw.get("online_after_ms").is_none() {
                    steps.push(
                        json!({"schid": schid, "park": "left under io_subchannel", "ccw": ccw}),
                    );
                    continue;
                }
                Some(ccw)
            }
            _ => None,
        };
        match css::bind(agent, &schid, ccwrig_proto::DRIVER_VFIO_CCW) {
            Ok(v) => steps.push(json!({"schid": schid, "park": v, "ccw": ccw})),
            Err(e) => rebind_failed(e, schid, steps, &mut still_touched, first_err),
        }
    }
    let mut t = lock(&agent.touched);
    t.clear();
    t.extend(still_touched);
}

fn rebind_failed(
    e: OpError,
    schid: String,
    steps: &mut Vec<Value>,
    still_touched: &mut Vec<String>,
    first_err: &mut Option<OpError>,
) {
    let (o, d) = e.into_outcome();
    steps.push(json!({"schid": schid, "rebind_error": o.to_string(), "data": d}));
    still_touched.push(schid);
    if let ccwrig_proto::Outcome::Errno { code, call, .. } = o {
        first_err.get_or_insert(OpError::from(SysError::new(call, code)));
    }
}

/// Finishes the binds, each on a thread of its own; one whose thread cannot be made is
/// finished on this one.
fn bind_together(prepared: Vec<(String, css::Bind)>) -> Vec<(String, OpRes)> {
    let slots: Vec<(String, std::sync::Mutex<Option<css::Bind>>)> = prepared
        .into_iter()
        .map(|(schid, b)| (schid, std::sync::Mutex::new(Some(b))))
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = slots
            .iter()
            .map(|(_, slot)| {
                std::thread::Builder::new()
                    .spawn_scoped(s, move || lock(slot).take().map(css::Bind::finish))
            })
            .collect();
        slots
            .iter()
            .zip(handles)
            .map(|((schid, slot), handle)| {
                let r = handle.ok().and_then(|h| h.join().ok().flatten());
                let r = r.or_else(|| lock(slot).take().map(css::Bind::finish));
                let r = r.unwrap_or_else(|| Err(OpError::failed("bind thread died")));
                (schid.clone(), r)
            })
            .collect()
    })
}
