//! Device queries and plain device ioctls: GET_INFO/REGION/IRQ info, RESET, region reads.

use std::os::fd::AsRawFd;

use ccwrig_proto::RegionKind;
use serde_json::{json, Value};

use super::{device_fd, OpError, OpRes};
use crate::state::{lock, Handle};
use crate::sys;
use crate::vfio::{self, abi, Region};

/// Device info, every region (with its CCW capability type) and every IRQ.
pub fn get_info(h: &Handle) -> OpRes {
    let dev = device_fd(h)?;
    let fd = dev.as_raw_fd();
    let info = vfio::device_info(fd)?;
    let mut regions = Vec::new();
    for i in 0..info.num_regions {
        let r = vfio::region_info(fd, i)
            .map_err(|e| OpError::from(e).with_data(json!({"info": info})))?;
        regions.push(r);
    }
    let mut irqs = Vec::new();
    for i in 0..info.num_irqs {
        irqs.push(
            vfio::irq_info(fd, i).map_err(|e| OpError::from(e).with_data(json!({"info": info})))?,
        );
    }
    *lock(&h.regions) = Some(regions.clone());
    Ok(json!({
        "flags": info.flags, "num_regions": info.num_regions, "num_irqs": info.num_irqs,
        "regions": regions.iter().map(region_json).collect::<Vec<_>>(),
        "irqs": irqs,
    }))
}

fn region_json(r: &Region) -> Value {
    json!({
        "index": r.index, "flags": r.flags, "size": r.size, "offset": format!("{:#x}", r.offset),
        "kind": r.cap_type.map(|(t, s)| kind_name(t, s)).unwrap_or(if r.index == 0 { "io" } else { "?" }),
        "cap_type": r.cap_type, "cap_offset": r.cap_offset
    })
}

fn kind_name(t: u32, s: u32) -> &'static str {
    match (t, s) {
        (abi::VFIO_REGION_TYPE_CCW, abi::VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD) => "async",
        (abi::VFIO_REGION_TYPE_CCW, abi::VFIO_REGION_SUBTYPE_CCW_SCHIB) => "schib",
        (abi::VFIO_REGION_TYPE_CCW, abi::VFIO_REGION_SUBTYPE_CCW_CRW) => "crw",
        _ => "?",
    }
}

/// The regions of a handle, querying the kernel the first time.
pub fn regions(h: &Handle) -> Result<Vec<Region>, OpError> {
    if let Some(r) = lock(&h.regions).clone() {
        return Ok(r);
    }
    let dev = device_fd(h)?;
    let fd = dev.as_raw_fd();
    let info = vfio::device_info(fd)?;
    let mut v = Vec::new();
    for i in 0..info.num_regions {
        v.push(vfio::region_info(fd, i)?);
    }
    *lock(&h.regions) = Some(v.clone());
    Ok(v)
}

/// Finds a region by kind: the I/O region is index 0, the others by capability subtype.
pub fn find_region(h: &Handle, kind: RegionKind) -> Result<Region, OpError> {
    let regs = regions(h)?;
    let sub = match kind {
        RegionKind::Io => {
            return regs
                .into_iter()
                .find(|r| r.index == abi::VFIO_CCW_CONFIG_REGION_INDEX)
                .ok_or_else(|| OpError::failed("device has no I/O region"))
        }
        RegionKind::Async => abi::VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD,
        RegionKind::Schib => abi::VFIO_REGION_SUBTYPE_CCW_SCHIB,
        RegionKind::Crw => abi::VFIO_REGION_SUBTYPE_CCW_CRW,
    };
    regs.into_iter()
        .find(|r| r.cap_type == Some((abi::VFIO_REGION_TYPE_CCW, sub)))
        .ok_or_else(|| OpError::failed(format!("device has no {kind:?} region")))
}

pub fn reset(h: &Handle) -> OpRes {
    let dev = device_fd(h)?;
    vfio::reset(dev.as_raw_fd())?;
    Ok(Value::Null)
}

pub fn read_region(h: &Handle, kind: RegionKind) -> OpRes {
    let r = find_region(h, kind)?;
    let dev = device_fd(h)?;
    let mut buf = vec![0u8; r.size.min(4096) as usize];
    let name = format!("pread {kind:?} region").to_lowercase();
    let n = sys::pread(dev.as_raw_fd(), &mut buf, r.offset, &name)?;
    buf.truncate(n);
    Ok(
        json!({"region": kind, "offset": format!("{:#x}", r.offset), "size": r.size, "bytes": hex(&buf),
              "words": buf.chunks_exact(4).map(|c| format!("{:08x}", abi::be32(c, 0))).collect::<Vec<_>>()}),
    )
}

pub fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
