//! Unmapping (and remapping) the handle's DMA buffer behind the driver's back: the entry point
//! through which the IOMMU backend calls vfio_ccw_dma_unmap.

use std::os::fd::AsRawFd;

use ccwrig_proto::FdPart;
use serde_json::json;

use super::prep::ensure_dma;
use super::{OpError, OpRes};
use crate::state::Handle;

pub fn unmap(h: &Handle, count: u32, remap: bool) -> OpRes {
    let d = ensure_dma(h)?;
    let c = h.part(FdPart::Container).ok_or_else(|| {
        OpError::failed(format!("handle {:?}: container/iommufd is closed", h.name))
    })?;
    let fd = c.as_raw_fd();
    let mut unmapped = Vec::new();
    for round in 0..count {
        let progress = |n: &Vec<u64>| json!({"rounds_done": round, "unmapped_bytes": n});
        let n = d
            .unmap(fd, h.ioas_id)
            .map_err(|e| OpError::from(e).with_data(progress(&unmapped)))?;
        unmapped.push(n);
        if remap {
            d.map(fd, h.ioas_id)
                .map_err(|e| OpError::from(e).with_data(progress(&unmapped)))?;
        }
    }
    // Only the first round's size says something (later ones repeat it); keep the data small.
    unmapped.dedup();
    Ok(json!({"rounds": count, "remapped": remap, "unmapped_bytes": unmapped}))
}
