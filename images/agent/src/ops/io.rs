//! Channel I/O through the I/O region (SENSE ID: docs/DESIGN.md, 'Channel I/O through the I/O
//! region') and halt/clear through the async command region.

use std::os::fd::AsRawFd;

use ccwrig_proto::chanprog::{self, ChannelProgram};
use ccwrig_proto::RegionKind;
use serde_json::{json, Value};

use super::device::{find_region, hex};
use super::prep::{ensure_dma, ensure_irq};
use super::{device_fd, OpError, OpRes};
use crate::state::handle::Fd;
use crate::state::Handle;
use crate::sys::{self, SysError};
use crate::vfio::abi::{self, *};
use crate::vfio::dma::{self, Dma};

/// Writes the SENSE ID program into the DMA buffer and returns ORB word 1 for it.
pub fn prepare_sense_id(d: &Dma, suspend: bool) -> u32 {
    let flags = CCW_FLAG_SLI | if suspend { CCW_FLAG_SUSPEND } else { 0 };
    d.write(dma::DATA_OFF, &[0u8; 8]);
    d.write(
        dma::CCW_OFF,
        &ccw1(
            CCW_CMD_SENSE_ID,
            flags,
            8,
            (d.iova + dma::DATA_OFF as u64) as u32,
        ),
    );
    ORB1_FORMAT1 | ORB1_PREFETCH | if suspend { ORB1_SUSPEND_CTL } else { 0 }
}

pub fn sense_id(h: &Handle, count: u32, suspend: bool, irq_wait_ms: u64) -> OpRes {
    let dev = device_fd(h)?;
    let io = find_region(h, RegionKind::Io)?;
    let d = ensure_dma(h)?;
    let efd = ensure_irq(h, VFIO_CCW_IO_IRQ_INDEX)?;
    // A stale signal (an earlier halt/clear, an unsolicited interrupt) must not satisfy our wait.
    let stale = sys::eventfd_take(&*efd);
    let loops = if suspend { 1 } else { count.max(1) };
    let t0 = sys::monotonic_us();
    let mut last = Value::Null;
    for i in 0..loops {
        let w1 = prepare_sense_id(&d, suspend);
        let region = io_region_start(w1, (d.iova + dma::CCW_OFF as u64) as u32);
        let partial = json!({"done": i, "stale_signals": stale, "last": last});
        sys::pwrite(
            dev.as_raw_fd(),
            &region,
            io.offset,
            "pwrite io region (START)",
        )
        .map_err(|e| OpError::from(e).with_data(partial.clone()))?;
        if suspend {
            return Ok(json!({"suspended": true, "orb_word1": format!("{w1:#010x}")}));
        }
        wait_interrupt(&efd, irq_wait_ms).map_err(|e| e.with_data(partial))?;
        last = read_irb(dev.as_raw_fd(), io.offset)?;
        last["sense"] = json!(hex(&d.read(dma::DATA_OFF, 8)));
    }
    Ok(
        json!({"count": loops, "total_us": sys::monotonic_us() - t0, "stale_signals": stale, "last": last}),
    )
}

/// Runs a channel program of the scenario's `count` times (once with `suspend`, not waiting
/// for its interrupt). The kernel's refusal of the write (`cp_init`/`cp_prefetch`'s errno) is
/// the outcome; an accepted program's IRB is the data.
pub fn program(
    h: &Handle,
    p: &ChannelProgram,
    count: u32,
    suspend: bool,
    irq_wait_ms: u64,
) -> OpRes {
    if let Some(why) = p.problem() {
        return Err(SysError::new(format!("channel program: {why}"), libc::EINVAL).into());
    }
    let dev = device_fd(h)?;
    let io = find_region(h, RegionKind::Io)?;
    let d = ensure_dma(h)?;
    let efd = ensure_irq(h, VFIO_CCW_IO_IRQ_INDEX)?;
    let stale = sys::eventfd_take(&*efd);
    let e = p.encode(d.iova, d.len as u64);
    // The driver copies the CCWs and IDALs in and the device writes only the data area, so
    // one layout serves every round.
    d.write(chanprog::CCW_OFF as usize, &e.image);
    let region = io_region(e.orb_word1, e.cpa, e.scsw0);
    let loops = if suspend { 1 } else { count.max(1) };
    let t0 = sys::monotonic_us();
    let mut last = Value::Null;
    for i in 0..loops {
        let partial = json!({"done": i, "stale_signals": stale, "last": last});
        sys::pwrite(
            dev.as_raw_fd(),
            &region,
            io.offset,
            "pwrite io region (program)",
        )
        .map_err(|e| OpError::from(e).with_data(partial.clone()))?;
        if suspend {
            return Ok(json!({"started": true, "orb_word1": format!("{:#010x}", e.orb_word1)}));
        }
        wait_interrupt(&efd, irq_wait_ms).map_err(|e| e.with_data(partial))?;
        last = read_irb(dev.as_raw_fd(), io.offset)?;
    }
    Ok(
        json!({"count": loops, "total_us": sys::monotonic_us() - t0, "stale_signals": stale, "last": last}),
    )
}

/// Waits for the I/O eventfd and consumes its signal; ETIMEDOUT when the interrupt does not
/// come (a vanished device never sends it).
pub fn wait_interrupt(efd: &Fd, irq_wait_ms: u64) -> Result<(), OpError> {
    if !sys::poll_in(efd.as_raw_fd(), irq_wait_ms, "poll I/O eventfd")? {
        let e = SysError::new(
            format!("wait for I/O interrupt ({irq_wait_ms} ms)"),
            libc::ETIMEDOUT,
        );
        return Err(e.into());
    }
    sys::eventfd_take(&**efd);
    Ok(())
}

/// Reads the IRB the driver stored at offset 24 of the I/O region and decodes its SCSW.
pub fn read_irb(dev: i32, region_off: u64) -> OpRes {
    let mut r = [0u8; IO_REGION_SIZE];
    sys::pread(dev, &mut r, region_off, "pread io region (IRB)")?;
    let irb = &r[IO_REGION_IRB..IO_REGION_IRB + 96];
    let (w0, w1, w2) = (abi::be32(irb, 0), abi::be32(irb, 4), abi::be32(irb, 8));
    Ok(json!({
        "scsw": [format!("{w0:#010x}"), format!("{w1:#010x}"), format!("{w2:#010x}")],
        "cc": (w0 >> 24) & 3,
        "fctl": (w0 >> 12) & 7,
        "actl": (w0 >> 5) & 0x7f,
        "stctl": w0 & 0x1f,
        "dstat": format!("{:#04x}", w2 >> 24),
        "cstat": format!("{:#04x}", (w2 >> 16) & 0xff),
        "residual": w2 & 0xffff,
        "ret_code": abi::be32(&r, IO_REGION_RET_CODE) as i32,
    }))
}

/// HALT (`clear = false`) or CLEAR SUBCHANNEL through the async region; then waits briefly for
/// the interrupt the function should produce and returns its IRB.
pub fn async_cmd(h: &Handle, clear: bool) -> OpRes {
    let dev = device_fd(h)?;
    let r = find_region(h, RegionKind::Async)?;
    let efd = ensure_irq(h, VFIO_CCW_IO_IRQ_INDEX)?;
    sys::eventfd_take(&*efd);
    let (cmd, name) = if clear {
        (VFIO_CCW_ASYNC_CMD_CSCH, "CSCH")
    } else {
        (VFIO_CCW_ASYNC_CMD_HSCH, "HSCH")
    };
    let mut b = [0u8; CMD_REGION_SIZE];
    b[0..4].copy_from_slice(&cmd.to_be_bytes());
    sys::pwrite(
        dev.as_raw_fd(),
        &b,
        r.offset,
        &format!("pwrite async region ({name})"),
    )?;
    let fired = sys::poll_in(efd.as_raw_fd(), 1000, "poll I/O eventfd")?;
    let mut v = json!({"command": name, "interrupt": fired});
    if fired {
        sys::eventfd_take(&*efd);
        let io = find_region(h, RegionKind::Io)?;
        v["irb"] = read_irb(dev.as_raw_fd(), io.offset)?;
    }
    Ok(v)
}
