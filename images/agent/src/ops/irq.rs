//! `VFIO_DEVICE_SET_IRQS` as a user can call it at any time: a new trigger, none, a
//! user-space signal (DATA_NONE or DATA_BOOL), or the MASK/UNMASK actions vfio-ccw refuses, on
//! any of the driver's three IRQ indexes.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use ccwrig_proto::{IrqAction, IrqKind};
use serde_json::json;

use super::{device_fd, OpError, OpRes};
use crate::state::{lock, Handle};
use crate::sys;
use crate::vfio::{self, abi};

pub fn index(k: IrqKind) -> u32 {
    match k {
        IrqKind::Io => abi::VFIO_CCW_IO_IRQ_INDEX,
        IrqKind::Crw => abi::VFIO_CCW_CRW_IRQ_INDEX,
        IrqKind::Req => abi::VFIO_CCW_REQ_IRQ_INDEX,
    }
}

pub fn set(h: &Handle, irq: IrqKind, action: IrqAction, count: u32) -> OpRes {
    let dev = device_fd(h)?;
    let fd = dev.as_raw_fd();
    let index = index(irq);
    for round in 0..count {
        let done = json!({"rounds_done": round});
        let r = match action {
            IrqAction::Register => sys::eventfd().and_then(|e| {
                let e = Arc::new(e);
                vfio::set_irq_eventfd(fd, index, e.as_raw_fd())?;
                // Dropping the old eventfd closes its fd (unless an operation still waits on
                // it). The driver put its reference inside the call above, so this frees it,
                // while the driver's interrupt work may still hold the pointer it read.
                *lock(&h.irqs).slot(index) = Some(e);
                Ok(())
            }),
            IrqAction::Remove => vfio::set_irq_eventfd(fd, index, -1).map(|()| {
                *lock(&h.irqs).slot(index) = None;
            }),
            IrqAction::Signal => vfio::signal_irq(fd, index),
            IrqAction::SignalBool => vfio::signal_irq_bool(fd, index),
            IrqAction::Mask => vfio::mask_irq(fd, index, false),
            IrqAction::Unmask => vfio::mask_irq(fd, index, true),
        };
        r.map_err(|e| OpError::from(e).with_data(done))?;
    }
    Ok(json!({"irq": vfio::irq_name(index), "action": action, "rounds": count}))
}
