//! `ioas`: the iommufd attachment of an open device in any order — detach, attach again,
//! attach to a second IOAS, destroy the IOAS a device is attached to.

use std::os::fd::AsRawFd;

use ccwrig_proto::{FdPart, IoasAction, OpenVia};
use serde_json::json;

use super::{device_fd, OpError, OpRes};
use crate::state::Handle;
use crate::sys;
use crate::vfio::{self, abi::*};

pub fn run(h: &Handle, action: IoasAction) -> OpRes {
    let (OpenVia::Iommufd, Some(ioas)) = (h.via, h.ioas_id) else {
        return Err(OpError::failed(format!(
            "handle {:?} was not opened through iommufd",
            h.name
        )));
    };
    let dev = device_fd(h)?;
    let iommufd = h
        .part(FdPart::Container)
        .ok_or_else(|| OpError::failed(format!("handle {:?}: /dev/iommu is closed", h.name)))?;
    match action {
        IoasAction::Detach => {
            let mut d = DetachIommufdPt { argsz: 8, flags: 0 };
            sys::ioctl_ptr(
                dev.as_raw_fd(),
                VFIO_DEVICE_DETACH_IOMMUFD_PT,
                &mut d,
                "VFIO_DEVICE_DETACH_IOMMUFD_PT",
            )?;
            Ok(json!({"detached": true}))
        }
        IoasAction::Attach => {
            vfio::attach_pt(dev.as_raw_fd(), ioas)?;
            Ok(json!({"attached": ioas}))
        }
        IoasAction::AttachNew => {
            let new = vfio::ioas_alloc(iommufd.as_raw_fd())?;
            vfio::attach_pt(dev.as_raw_fd(), new)
                .map_err(|e| OpError::from(e).with_data(json!({"new_ioas": new})))?;
            Ok(json!({"attached": new, "mapping_stays_in": ioas}))
        }
        IoasAction::Destroy => {
            let mut d = IommuDestroy { size: 8, id: ioas };
            sys::ioctl_ptr(iommufd.as_raw_fd(), IOMMU_DESTROY, &mut d, "IOMMU_DESTROY")?;
            Ok(json!({"destroyed": ioas}))
        }
    }
}
