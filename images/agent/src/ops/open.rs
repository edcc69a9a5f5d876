//! Opening an mdev (group/container or iommufd) into a named handle, and closing its parts.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use ccwrig_proto::{FdPart, OpenVia};
use serde_json::{json, Value};

use super::{OpError, OpRes};
use crate::state::handle::{Fds, Irqs};
use crate::state::{lock, Agent, Handle};
use crate::vfio;

pub fn open(agent: &Arc<Agent>, mdev: &str, name: &str, via: OpenVia) -> OpRes {
    let m = agent
        .mdev(mdev)
        .ok_or_else(|| OpError::failed(format!("unknown mdev {mdev:?}")))?;
    if agent.handle(name).is_some() {
        return Err(OpError::failed(format!("handle {name:?} is already open")));
    }
    let opened = match via {
        OpenVia::Group => vfio::open_group(&m.uuid)?,
        OpenVia::Iommufd => vfio::open_iommufd(&m.uuid)?,
    };
    let h = Handle {
        name: name.to_string(),
        uuid: m.uuid.clone(),
        via,
        ioas_id: opened.ioas_id,
        fds: Mutex::new(Fds {
            device: Some(Arc::new(opened.device)),
            group: opened.group.map(Arc::new),
            container: Some(Arc::new(opened.container)),
        }),
        irqs: Mutex::new(Irqs::default()),
        regions: Mutex::new(None),
        dma: Mutex::new(None),
        stop: Arc::new(AtomicBool::new(false)),
        consumer_log: Arc::new(Mutex::new(Vec::new())),
        stall: Mutex::new(None),
    };
    lock(&agent.handles).insert(name.to_string(), Arc::new(h));
    Ok(json!({"handle": name, "uuid": m.uuid, "via": via, "steps": opened.steps}))
}

pub fn close(agent: &Arc<Agent>, name: &str, order: &[FdPart]) -> OpRes {
    let h = agent
        .handle(name)
        .ok_or_else(|| OpError::failed(format!("unknown handle {name:?}")))?;
    let steps = close_parts(agent, &h, order);
    Ok(json!({"handle": name, "steps": steps, "still_open": h.open_parts()}))
}

/// Closes the parts in order; a handle with nothing left open is forgotten (its eventfds and
/// DMA buffer go with it) — unless it still holds an `io_stall`. The held write keeps the
/// device file alive in the kernel, and only `io_release` (or cleanup's abandon) ends it; a
/// forgotten handle's stall could be ended by nobody, and whatever waits for the device's
/// io_mutex (a reset, the removal of the mdev) would wait for ever: a hang of the agent's
/// making, not the kernel's.
pub fn close_parts(agent: &Agent, h: &Arc<Handle>, order: &[FdPart]) -> Vec<Value> {
    let steps: Vec<Value> = order.iter().map(|p| h.close_part(*p)).collect();
    if h.all_closed() && lock(&h.stall).is_none() {
        let mut map = lock(&agent.handles);
        if map.get(&h.name).is_some_and(|x| Arc::ptr_eq(x, h)) {
            map.remove(&h.name);
        }
    }
    steps
}
