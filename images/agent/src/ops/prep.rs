//! What channel I/O needs and what the consumer sets up: the DMA buffer and the IRQ eventfds.
//! Created on first use so `io` works without a prior `consumer`.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use ccwrig_proto::{FdPart, OpenVia};

use super::OpError;
use crate::state::handle::Fd;
use crate::state::{lock, Handle};
use crate::sys;
use crate::vfio::{self, dma::Dma};

pub fn ensure_dma(h: &Handle) -> Result<Arc<Dma>, OpError> {
    if let Some(d) = lock(&h.dma).clone() {
        return Ok(d);
    }
    let c = h.part(FdPart::Container).ok_or_else(|| {
        OpError::failed(format!("handle {:?}: container/iommufd is closed", h.name))
    })?;
    let d = match (h.via, h.ioas_id) {
        (OpenVia::Iommufd, Some(ioas)) => Dma::map_ioas(c.as_raw_fd(), ioas)?,
        _ => Dma::map_container(c.as_raw_fd())?,
    };
    let d = Arc::new(d);
    let mut slot = lock(&h.dma);
    // Two racing first users: keep the first mapping (the second one failed in the kernel
    // with EEXIST anyway, or maps the same IOVA range in another container).
    Ok(slot.get_or_insert(d).clone())
}

/// The eventfd on IRQ `index`, registering a new one with VFIO_DEVICE_SET_IRQS if needed.
pub fn ensure_irq(h: &Handle, index: u32) -> Result<Fd, OpError> {
    if let Some(e) = lock(&h.irqs).slot(index).clone() {
        return Ok(e);
    }
    let dev = super::device_fd(h)?;
    let efd = Arc::new(sys::eventfd()?);
    vfio::set_irq_eventfd(dev.as_raw_fd(), index, efd.as_raw_fd())?;
    *lock(&h.irqs).slot(index) = Some(efd.clone());
    Ok(efd)
}
