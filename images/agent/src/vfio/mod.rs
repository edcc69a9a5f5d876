//! Device-level vfio calls shared by the operations: info queries, IRQ triggers, reset, and
//! the two ways of opening an mdev. Each function is one kernel interaction with its error
//! attributed to the request that failed.

pub mod abi;
pub mod dma;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use serde::Serialize;

use crate::paths;
use crate::sys::{self, SysError, SysResult};
use abi::*;

#[derive(Debug, Clone, Serialize)]
pub struct Region {
    pub index: u32,
    pub flags: u32,
    pub size: u64,
    pub offset: u64,
    /// From the VFIO_REGION_INFO_CAP_TYPE capability, when present.
    pub cap_type: Option<(u32, u32)>,
    pub cap_offset: u32,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Irq {
    pub index: u32,
    pub flags: u32,
    pub count: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct DevInfo {
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

pub fn device_info(dev: RawFd) -> SysResult<DevInfo> {
    device_info_argsz(dev, std::mem::size_of::<DeviceInfo>() as u32)
}

/// GET_INFO claiming a buffer of `argsz` bytes (the driver's minimum is 16: up to num_irqs).
pub fn device_info_argsz(dev: RawFd, argsz: u32) -> SysResult<DevInfo> {
    let mut i = DeviceInfo {
        argsz,
        ..Default::default()
    };
    sys::ioctl_ptr(dev, VFIO_DEVICE_GET_INFO, &mut i, "VFIO_DEVICE_GET_INFO")?;
    Ok(DevInfo {
        flags: i.flags,
        num_regions: i.num_regions,
        num_irqs: i.num_irqs,
    })
}

/// GET_REGION_INFO with room for the capability chain, which is walked for the CCW type.
pub fn region_info(dev: RawFd, index: u32) -> SysResult<Region> {
    // As QEMU asks (vfio_get_region_info): the bare struct first, which makes the driver say
    // how much room the capability chain needs, then again with that room.
    let ask = |argsz: usize| -> SysResult<RegionInfoWithCaps> {
        let mut b = RegionInfoWithCaps {
            info: RegionInfo {
                argsz: argsz as u32,
                index,
                ..Default::default()
            },
            caps: [0; 224],
        };
        sys::ioctl_ptr(
            dev,
            VFIO_DEVICE_GET_REGION_INFO,
            &mut b,
            "VFIO_DEVICE_GET_REGION_INFO",
        )?;
        Ok(b)
    };
    let mut b = ask(std::mem::size_of::<RegionInfo>())?;
    if b.info.argsz as usize > std::mem::size_of::<RegionInfo>() {
        b = ask(std::mem::size_of::<RegionInfoWithCaps>())?;
    }
    let mut cap_type = None;
    if b.info.flags & VFIO_REGION_INFO_FLAG_CAPS != 0 && b.info.cap_offset != 0 {
        cap_type = walk_caps(&b);
    }
    Ok(Region {
        index,
        flags: b.info.flags,
        size: b.info.size,
        offset: b.info.offset,
        cap_type,
        cap_offset: b.info.cap_offset,
    })
}

/// Capability offsets count from the start of `vfio_region_info`; each header is
/// `{u16 id, u16 version, u32 next}` and a type capability adds `{u32 type, u32 subtype}`.
fn walk_caps(b: &RegionInfoWithCaps) -> Option<(u32, u32)> {
    let base = std::mem::size_of::<RegionInfo>();
    let mut off = b.info.cap_offset as usize;
    for _ in 0..8 {
        let rel = off.checked_sub(base)?;
        let hdr = b.caps.get(rel..rel + 16)?;
        let id = u16::from_ne_bytes([hdr[0], hdr[1]]);
        let next = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        if id == VFIO_REGION_INFO_CAP_TYPE {
            let t = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
            let s = u32::from_ne_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
            return Some((t, s));
        }
        if next == 0 {
            return None;
        }
        off = next;
    }
    None
}

pub fn irq_info(dev: RawFd, index: u32) -> SysResult<Irq> {
    let mut i = IrqInfo {
        argsz: std::mem::size_of::<IrqInfo>() as u32,
        index,
        ..Default::default()
    };
    sys::ioctl_ptr(
        dev,
        VFIO_DEVICE_GET_IRQ_INFO,
        &mut i,
        "VFIO_DEVICE_GET_IRQ_INFO",
    )?;
    Ok(Irq {
        index,
        flags: i.flags,
        count: i.count,
    })
}

/// Points IRQ `index` at an eventfd (`fd = -1` removes the trigger).
pub fn set_irq_eventfd(dev: RawFd, index: u32, fd: RawFd) -> SysResult<()> {
    let name = format!("VFIO_DEVICE_SET_IRQS[{}]", irq_name(index));
    set_irqs(dev, index, VFIO_IRQ_SET_DATA_EVENTFD, fd, &name)
}

/// A trigger on IRQ `index` with no eventfd behind it (-1): for an index the driver refuses
/// before it reads the fd.
pub fn set_irq_trigger_raw(dev: RawFd, index: u32) -> SysResult<()> {
    let name = format!("VFIO_DEVICE_SET_IRQS[index {index}]");
    set_irqs(dev, index, VFIO_IRQ_SET_DATA_EVENTFD, -1, &name)
}

/// `VFIO_IRQ_SET_DATA_NONE` on IRQ `index`: the driver signals its current trigger, if any.
pub fn signal_irq(dev: RawFd, index: u32) -> SysResult<()> {
    let name = format!("VFIO_DEVICE_SET_IRQS[{}, DATA_NONE]", irq_name(index));
    set_irqs(dev, index, VFIO_IRQ_SET_DATA_NONE, -1, &name)
}

/// `VFIO_IRQ_SET_DATA_BOOL` with `true` on IRQ `index`: the signal again, from a data byte.
pub fn signal_irq_bool(dev: RawFd, index: u32) -> SysResult<()> {
    let name = format!("VFIO_DEVICE_SET_IRQS[{}, DATA_BOOL]", irq_name(index));
    // The driver reads one byte at the data's start; the fd field's first byte in memory,
    // whatever the byte order.
    let truth = i32::from_ne_bytes([1, 0, 0, 0]);
    set_irqs(dev, index, VFIO_IRQ_SET_DATA_BOOL, truth, &name)
}

/// `ACTION_MASK` (or `ACTION_UNMASK`) with DATA_NONE on IRQ `index`.
pub fn mask_irq(dev: RawFd, index: u32, unmask: bool) -> SysResult<()> {
    let (action, what) = if unmask {
        (VFIO_IRQ_SET_ACTION_UNMASK, "UNMASK")
    } else {
        (VFIO_IRQ_SET_ACTION_MASK, "MASK")
    };
    let name = format!("VFIO_DEVICE_SET_IRQS[{}, ACTION_{what}]", irq_name(index));
    set_irqs_action(dev, index, VFIO_IRQ_SET_DATA_NONE | action, -1, &name)
}

/// One `ACTION_TRIGGER` for one vector of `index`; `fd` is read only with `DATA_EVENTFD`.
fn set_irqs(dev: RawFd, index: u32, data: u32, fd: RawFd, name: &str) -> SysResult<()> {
    set_irqs_action(dev, index, data | VFIO_IRQ_SET_ACTION_TRIGGER, fd, name)
}

/// One SET_IRQS for one vector of `index` with the data and action bits of `flags`.
fn set_irqs_action(dev: RawFd, index: u32, flags: u32, fd: RawFd, name: &str) -> SysResult<()> {
    let mut s = IrqSetEventfd {
        argsz: std::mem::size_of::<IrqSetEventfd>() as u32,
        flags,
        index,
        start: 0,
        count: 1,
        fd,
    };
    sys::ioctl_ptr(dev, VFIO_DEVICE_SET_IRQS, &mut s, name).map(|_| ())
}

pub fn irq_name(index: u32) -> &'static str {
    match index {
        VFIO_CCW_IO_IRQ_INDEX => "IO",
        VFIO_CCW_CRW_IRQ_INDEX => "CRW",
        VFIO_CCW_REQ_IRQ_INDEX => "REQ",
        _ => "?",
    }
}

pub fn reset(dev: RawFd) -> SysResult<()> {
    // SAFETY: VFIO_DEVICE_RESET takes no argument.
    unsafe { sys::ioctl(dev, VFIO_DEVICE_RESET, 0, "VFIO_DEVICE_RESET") }.map(|_| ())
}

/// The fds of an opened mdev. `container` is the /dev/iommu fd on the iommufd path.
pub struct Opened {
    pub device: OwnedFd,
    pub group: Option<OwnedFd>,
    pub container: OwnedFd,
    pub ioas_id: Option<u32>,
    pub steps: Vec<String>,
}

/// Group/container path, as QEMU's vfio_get_group + vfio_get_device do it.
pub fn open_group(uuid: &str) -> SysResult<Opened> {
    let mut steps = Vec::new();
    let link = format!("{}/iommu_group", paths::mdev(uuid));
    let group_no = sys::link_name(&link)
        .ok_or_else(|| SysError::new(format!("readlink {link}"), libc::ENOENT))?;
    let container = sys::open("/dev/vfio/vfio", libc::O_RDWR)?;
    let c = container.as_raw_fd();
    // SAFETY: integer-argument requests.
    let ver = unsafe { sys::ioctl(c, VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION") }?;
    if ver != VFIO_API_VERSION {
        return Err(SysError::new(
            format!("VFIO_GET_API_VERSION returned {ver}"),
            libc::EPROTO,
        ));
    }
    // SAFETY: integer argument.
    let ext = unsafe {
        sys::ioctl(
            c,
            VFIO_CHECK_EXTENSION,
            VFIO_TYPE1V2_IOMMU,
            "VFIO_CHECK_EXTENSION",
        )
    }?;
    if ext != 1 {
        return Err(SysError::new(
            "VFIO_CHECK_EXTENSION(TYPE1v2) returned 0",
            libc::ENOTSUP,
        ));
    }
    let gpath = format!("/dev/vfio/{group_no}");
    let group = sys::open(&gpath, libc::O_RDWR)?;
    let g = group.as_raw_fd();
    steps.push(format!("group {gpath}"));
    let mut st = GroupStatus { argsz: 8, flags: 0 };
    sys::ioctl_ptr(g, VFIO_GROUP_GET_STATUS, &mut st, "VFIO_GROUP_GET_STATUS")?;
    if st.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
        return Err(SysError::new(
            "VFIO_GROUP_GET_STATUS: group not viable",
            libc::EBUSY,
        ));
    }
    let mut cfd: i32 = c;
    sys::ioctl_ptr(
        g,
        VFIO_GROUP_SET_CONTAINER,
        &mut cfd,
        "VFIO_GROUP_SET_CONTAINER",
    )?;
    // SAFETY: integer argument.
    unsafe { sys::ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1V2_IOMMU, "VFIO_SET_IOMMU") }?;
    let name = sys::cstring(uuid)?;
    // SAFETY: the argument is a NUL-terminated device name, live for the call.
    let dfd = unsafe {
        sys::ioctl(
            g,
            VFIO_GROUP_GET_DEVICE_FD,
            name.as_ptr() as libc::c_ulong,
            "VFIO_GROUP_GET_DEVICE_FD",
        )
    }?;
    // SAFETY: the kernel returned a new fd that nobody else owns.
    let device = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dfd) };
    steps.push("VFIO_GROUP_GET_DEVICE_FD".into());
    Ok(Opened {
        device,
        group: Some(group),
        container,
        ioas_id: None,
        steps,
    })
}

/// iommufd cdev path (docs/DESIGN.md, 'Binding, creating and opening an mdev'): bind,
/// allocate an IOAS, attach.
pub fn open_iommufd(uuid: &str) -> SysResult<Opened> {
    let mut steps = Vec::new();
    let dir = format!("{}/vfio-dev", paths::mdev(uuid));
    let node = sys::dir_names(&dir)
        .into_iter()
        .find(|n| n.starts_with("vfio"))
        .ok_or_else(|| SysError::new(format!("readdir {dir}"), libc::ENOENT))?;
    let dpath = format!("/dev/vfio/devices/{node}");
    let device = sys::open(&dpath, libc::O_RDWR)?;
    steps.push(format!("device {dpath}"));
    let iommufd = sys::open("/dev/iommu", libc::O_RDWR)?;
    let mut bind = BindIommufd {
        argsz: 16,
        flags: 0,
        iommufd: iommufd.as_raw_fd(),
        out_devid: 0,
    };
    sys::ioctl_ptr(
        device.as_raw_fd(),
        VFIO_DEVICE_BIND_IOMMUFD,
        &mut bind,
        "VFIO_DEVICE_BIND_IOMMUFD",
    )?;
    steps.push(format!("bound devid {}", bind.out_devid));
    let ioas = ioas_alloc(iommufd.as_raw_fd())?;
    attach_pt(device.as_raw_fd(), ioas)?;
    steps.push(format!("attached ioas {ioas}"));
    Ok(Opened {
        device,
        group: None,
        container: iommufd,
        ioas_id: Some(ioas),
        steps,
    })
}

/// IOMMU_IOAS_ALLOC on an iommufd: the new IOAS's id.
pub fn ioas_alloc(iommufd: RawFd) -> SysResult<u32> {
    let mut alloc = IoasAlloc {
        size: 12,
        flags: 0,
        out_ioas_id: 0,
    };
    sys::ioctl_ptr(iommufd, IOMMU_IOAS_ALLOC, &mut alloc, "IOMMU_IOAS_ALLOC")?;
    Ok(alloc.out_ioas_id)
}

/// VFIO_DEVICE_ATTACH_IOMMUFD_PT: attaches (or, when attached, moves) the device to `pt_id`.
pub fn attach_pt(dev: RawFd, pt_id: u32) -> SysResult<()> {
    let mut att = AttachIommufdPt {
        argsz: 12,
        flags: 0,
        pt_id,
    };
    sys::ioctl_ptr(
        dev,
        VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        &mut att,
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain the 6.12 driver returns for the async region (seen in the guest): one type
    /// capability right after the 32-byte info, `{id 2, version 1, next 0, type 2, subtype 1}`.
    #[test]
    fn type_capability_is_found() {
        let mut b = RegionInfoWithCaps {
            info: RegionInfo {
                flags: VFIO_REGION_INFO_FLAG_CAPS,
                cap_offset: 32,
                ..Default::default()
            },
            caps: [0; 224],
        };
        b.caps[0..2].copy_from_slice(&VFIO_REGION_INFO_CAP_TYPE.to_ne_bytes());
        b.caps[2..4].copy_from_slice(&1u16.to_ne_bytes());
        b.caps[8..12].copy_from_slice(&VFIO_REGION_TYPE_CCW.to_ne_bytes());
        b.caps[12..16].copy_from_slice(&VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD.to_ne_bytes());
        assert_eq!(walk_caps(&b), Some((2, 1)));
        b.info.cap_offset = 8; // inside the info struct: malformed, must not panic
        assert_eq!(walk_caps(&b), None);
    }
}
