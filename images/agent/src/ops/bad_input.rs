//! Deliberately bad input. Each kind is one real call the driver is expected to reject; the
//! result reports what the kernel said — an `Ok` here is data for the oracle, not an agent
//! error.

use std::os::fd::AsRawFd;

use ccwrig_proto::{BadInputKind, RegionKind};
use serde_json::json;

use super::device::find_region;
use super::io::prepare_sense_id;
use super::prep::ensure_dma;
use super::{device_fd, OpRes};
use crate::params::BAD_UNMAPPED_IOVA as UNMAPPED_IOVA;
use crate::state::Handle;
use crate::sys;
use crate::vfio::{self, abi::*, dma};

pub fn run(h: &Handle, kind: BadInputKind) -> OpRes {
    let dev = device_fd(h)?;
    let fd = dev.as_raw_fd();
    let call_ok = |what: &str, ret: usize| {
        Ok(json!({"kind": kind, "call": what, "accepted": true, "ret": ret}))
    };
    match kind {
        BadInputKind::IoRegionOffset => {
            let io = find_region(h, RegionKind::Io)?;
            let d = ensure_dma(h)?;
            let r = io_region_start(prepare_sense_id(&d, false), d.iova as u32);
            let n = sys::pwrite(fd, &r, io.offset + 4, "pwrite io region at offset 4")?;
            call_ok("pwrite io region at offset 4", n)
        }
        BadInputKind::IoRegionShort => {
            let io = find_region(h, RegionKind::Io)?;
            let d = ensure_dma(h)?;
            let r = io_region_start(prepare_sense_id(&d, false), d.iova as u32);
            let n = sys::pwrite(
                fd,
                &r[..IO_REGION_SCSW],
                io.offset,
                "pwrite io region short (12 bytes)",
            )?;
            call_ok("pwrite io region short (12 bytes)", n)
        }
        BadInputKind::UnmappedCpa => {
            let io = find_region(h, RegionKind::Io)?;
            let r = io_region_start(ORB1_FORMAT1 | ORB1_PREFETCH, UNMAPPED_IOVA);
            let n = sys::pwrite(fd, &r, io.offset, "pwrite io region (unmapped cpa)")?;
            call_ok("pwrite io region (unmapped cpa)", n)
        }
        BadInputKind::Format0Orb => {
            let io = find_region(h, RegionKind::Io)?;
            let d = ensure_dma(h)?;
            let data = (d.iova + dma::DATA_OFF as u64) as u32;
            d.write(dma::CCW_OFF, &ccw0(CCW_CMD_SENSE_ID, CCW_FLAG_SLI, 8, data));
            let r = io_region_start(ORB1_PREFETCH, (d.iova + dma::CCW_OFF as u64) as u32);
            let n = sys::pwrite(fd, &r, io.offset, "pwrite io region (format-0 ORB)")?;
            call_ok("pwrite io region (format-0 ORB)", n)
        }
        BadInputKind::AsyncBadCommand => {
            let a = find_region(h, RegionKind::Async)?;
            let mut b = [0u8; CMD_REGION_SIZE];
            b[0..4].copy_from_slice(&(1u32 << 7).to_be_bytes());
            let n = sys::pwrite(fd, &b, a.offset, "pwrite async region (command 0x80)")?;
            call_ok("pwrite async region (command 0x80)", n)
        }
        BadInputKind::BadRegionIndex => {
            let info = vfio::device_info(fd)?;
            let r = vfio::region_info(fd, info.num_regions)?;
            Ok(
                json!({"kind": kind, "call": "VFIO_DEVICE_GET_REGION_INFO", "accepted": true, "region": r}),
            )
        }
        BadInputKind::IrqIndexPastLast => {
            let info = vfio::device_info(fd)?;
            vfio::set_irq_trigger_raw(fd, info.num_irqs)?;
            Ok(
                json!({"kind": kind, "call": "VFIO_DEVICE_SET_IRQS past the last index", "accepted": true, "index": info.num_irqs}),
            )
        }
        BadInputKind::ArgszShort => {
            // minsz is offsetofend(num_irqs) = 16; copy_from_user reads those 16 bytes
            // whatever argsz says, so the claim alone must be refused.
            let i = vfio::device_info_argsz(fd, 12)?;
            Ok(
                json!({"kind": kind, "call": "VFIO_DEVICE_GET_INFO argsz 12", "accepted": true, "num_regions": i.num_regions}),
            )
        }
    }
}
