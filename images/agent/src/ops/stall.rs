//! `io_stall` / `io_release`: one SENSE ID held inside the kernel (docs/DESIGN.md, 'Why userfaultfd
//! holds a request'). The CCW sits in a DMA-buffer page that is missing behind a userfaultfd, so
//! cp_init's vfio_dma_rw sleeps in the fault with the FSM in CP_PROCESSING and io_mutex held. Other
//! actors race that window for as long as the scenario wants; `io_release` supplies the page and
//! the request goes on.

use std::os::fd::AsRawFd;

use ccwrig_proto::RegionKind;
use serde_json::{json, Value};

use super::device::{find_region, hex};
use super::io::{read_irb, wait_interrupt};
use super::prep::{ensure_dma, ensure_irq};
use super::{device_fd, OpError, OpRes};
use crate::state::handle::Stall;
use crate::state::{lock, Handle};
use crate::sys;
use crate::uffd::{MissingPage, PAGE};
use crate::vfio::abi::*;
use crate::vfio::dma::{self, Dma};

/// How often the wait for the fault checks whether the write ended without one.
const POLL_SLICE_MS: u64 = 20;

/// The stall page's contents: the SENSE ID CCW at its start, its 8 data bytes at DATA_OFF.
fn program_page(d: &Dma) -> [u8; PAGE] {
    let mut p = [0u8; PAGE];
    let data = d.iova + (dma::STALL_OFF + dma::DATA_OFF) as u64;
    p[..8].copy_from_slice(&ccw1(CCW_CMD_SENSE_ID, CCW_FLAG_SLI, 8, data as u32));
    p
}

pub fn start(h: &Handle, wait_ms: u64) -> OpRes {
    if lock(&h.stall).is_some() {
        return Err(OpError::failed(format!(
            "handle {:?} already has a stalled I/O: io_release it first",
            h.name
        )));
    }
    let dev = device_fd(h)?;
    let io = find_region(h, RegionKind::Io)?;
    let d = ensure_dma(h)?;
    let efd = ensure_irq(h, VFIO_CCW_IO_IRQ_INDEX)?;
    let stale = sys::eventfd_take(&*efd);
    d.drop_page(dma::STALL_OFF, PAGE)?;
    let page = MissingPage::register(d.user_addr(dma::STALL_OFF))?;

    let w1 = ORB1_FORMAT1 | ORB1_PREFETCH;
    let region = io_region_start(w1, (d.iova + dma::STALL_OFF as u64) as u32);
    let t0 = sys::monotonic_us();
    let writer = std::thread::Builder::new()
        .name(format!("stall-{}", h.name))
        .spawn(move || {
            sys::pwrite(
                dev.as_raw_fd(),
                &region,
                io.offset,
                "pwrite io region (START, CCW in the stall page)",
            )
        })
        .map_err(|e| OpError::failed(format!("spawn the stalled writer: {e}")))?;

    let end = t0 + wait_ms * 1000;
    loop {
        let left_ms = end.saturating_sub(sys::monotonic_us()).div_ceil(1000);
        if let Some(addr) = page.wait_fault(left_ms.min(POLL_SLICE_MS))? {
            *lock(&h.stall) = Some(Stall { page, writer });
            return Ok(json!({
                "stalled": true,
                "fault_address": format!("{addr:#x}"),
                "waited_us": sys::monotonic_us() - t0,
                "stale_signals": stale,
            }));
        }
        if writer.is_finished() {
            // The kernel answered without fetching the program (the FSM was not IDLE, the
            // subchannel was gone): that answer is this step's outcome.
            let data = json!({"stalled": false, "stale_signals": stale});
            return match join(writer) {
                Ok(_) => Err(OpError::failed(
                    "the write returned without faulting on the stall page",
                )
                .with_data(data)),
                // 6.1 fetches the CCW by pinning its page (GUP without FAULT_FLAG_ALLOW_RETRY),
                // which fails on a missing userfaultfd page instead of waiting.
                Err(OpError::Sys(e, _)) if e.errno == libc::EFAULT => {
                    Err(OpError::failed(format!(
                        "this kernel fails the CCW fetch with EFAULT instead of waiting on the \
                     userfaultfd ({}): io_stall cannot hold this path here",
                        e.call
                    ))
                    .with_data(data))
                }
                Err(e) => Err(e.with_data(data)),
            };
        }
        if left_ms == 0 {
            // Keep the writer: io_release or cleanup ends it.
            *lock(&h.stall) = Some(Stall { page, writer });
            return Err(OpError::failed(format!(
                "no fault on the stall page within {wait_ms} ms and the write has not returned"
            )));
        }
    }
}

pub fn release(h: &Handle, irq_wait_ms: u64) -> OpRes {
    let Some(stall) = lock(&h.stall).take() else {
        return Err(OpError::failed(format!(
            "handle {:?} has no stalled I/O: io_stall first",
            h.name
        )));
    };
    let d = ensure_dma(h)?;
    let t0 = sys::monotonic_us();
    // A failed resolve (the fault went away with its task) still lets the writer finish.
    let resolved = match stall.page.resolve(&program_page(&d)) {
        Ok(()) => Value::Bool(true),
        Err(e) => Value::String(e.to_string()),
    };
    let wrote = join(stall.writer);
    let mut data = json!({"resolved": resolved, "write_returned_us": sys::monotonic_us() - t0});
    if let Err(e) = wrote {
        return Err(e.with_data(data));
    }
    // Closed while the write was held: the write's return dropped the last reference to the
    // file and close_device ended the program, so there is no interrupt to wait for and no
    // region to read it from.
    if h.device().is_none() {
        data["device"] = json!("closed while the request was held");
        return Ok(data);
    }
    let efd = ensure_irq(h, VFIO_CCW_IO_IRQ_INDEX).map_err(|e| e.with_data(data.clone()))?;
    wait_interrupt(&efd, irq_wait_ms).map_err(|e| e.with_data(data.clone()))?;
    let dev = device_fd(h)?;
    let io = find_region(h, RegionKind::Io)?;
    let mut irb = read_irb(dev.as_raw_fd(), io.offset)?;
    irb["sense"] = json!(hex(&d.read(dma::STALL_OFF + dma::DATA_OFF, 8)));
    data["irb"] = irb;
    Ok(data)
}

/// Ends a stall nobody released: closing the userfaultfd fails the kernel's copy, and the
/// write returns. `None` when the handle had no stall.
pub fn abandon(h: &Handle) -> Option<Value> {
    let stall = lock(&h.stall).take()?;
    drop(stall.page);
    Some(match join(stall.writer) {
        Ok(n) => json!({"write": "ok", "bytes": n}),
        Err(e) => json!({"write": e.into_outcome().0.to_string()}),
    })
}

fn join(writer: std::thread::JoinHandle<sys::SysResult<usize>>) -> Result<usize, OpError> {
    match writer.join() {
        Ok(r) => r.map_err(OpError::from),
        Err(_) => Err(OpError::failed("the stalled writer thread panicked")),
    }
}
