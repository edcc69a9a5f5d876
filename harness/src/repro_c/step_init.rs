//! Each operation as the C initializer of its `struct step` (runtime.c's fields), and the
//! operations that have no C form.

use ccwrig_proto::{
    BadInputKind, ChpAction, FdPart, GcovAction, IoasAction, IrqAction, IrqKind, KmemleakAction,
    Op, OpenVia, RegionAccessKind, RegionKind, RequestPolicy,
};

use super::{c_str, op_text};
use crate::scenario::{OpStep, Scenario};

/// What the operator (or the `--host-cmd` command) does for a host step, in words.
fn host_text(op: &Op, sc: &Scenario) -> String {
    let devno = |id: &str| {
        sc.machine
            .devices
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.devno.clone())
            .unwrap_or_default()
    };
    match op {
        Op::DeviceDel { device } => format!(
            "hot-unplug the ccw device {device} (devno {}) from this guest and wait until the \
             guest has let it go (QEMU: device_del id={device}, then DEVICE_DELETED)",
            devno(device)
        ),
        Op::DeviceAdd { device } => format!(
            "plug the ccw device {device} back into this guest with devno {} (QEMU: device_add \
             with the same id and devno)",
            devno(device)
        ),
        Op::Stop => "pause all vCPUs of this guest (QEMU: stop). This program is frozen until \
                     they run again, so the command must resume them itself (the next host step \
                     is then a no-op)"
            .into(),
        Op::Cont => "resume the vCPUs of this guest (QEMU: cont)".into(),
        Op::SystemReset => {
            "reset the whole guest (QEMU: system_reset); this program ends with it".into()
        }
        Op::SystemPowerdown => "ask the guest to shut down (QEMU: system_powerdown, the SCLP \
                                quiesce signal); this program ends with it"
            .into(),
        _ => String::new(),
    }
}

/// Why an op has no C form; None when it has one.
pub(super) fn unsupported(op: &Op) -> Option<&'static str> {
    Some(match op {
        Op::Poweroff => "it would power off the machine running the reproducer",
        Op::Reboot => "it would restart the machine running the reproducer",
        Op::InnerStart { .. }
        | Op::InnerQmp { .. }
        | Op::InnerQuit { .. }
        | Op::InnerSignal { .. }
        | Op::InnerDeviceDel { .. }
        | Op::InnerDeviceAdd { .. }
        | Op::InnerSystemReset { .. }
        | Op::InnerWait { .. } => {
            "inner QEMU steps need the nested image's qemu-system-s390x and a QMP client"
        }
        _ => return None,
    })
}

fn region_init(region: RegionKind) -> String {
    format!(
        ".region = {}",
        match region {
            RegionKind::Io => "REGION_IO",
            RegionKind::Async => "REGION_ASYNC",
            RegionKind::Schib => "REGION_SCHIB",
            RegionKind::Crw => "REGION_CRW",
        }
    )
}

/// The C initializer of one op step.
pub(super) fn step_init(s: &OpStep, sc: &Scenario, argv_name: Option<&str>) -> String {
    let mut f: Vec<String> = Vec::new();
    let kind = |k: &str| format!(".op = OP_{}", k);
    let q = |k: &str, v: &str| format!(".{k} = {}", c_str(v));
    match &s.op {
        Op::ListSubchannels => f.push(kind("LIST_SUBCHANNELS")),
        Op::Bind { schid, driver } => {
            f.extend([kind("BIND"), q("schid", schid), q("driver", driver)])
        }
        Op::Unbind { schid } => f.extend([kind("UNBIND"), q("schid", schid)]),
        Op::Rescan => f.push(kind("RESCAN")),
        Op::MdevCreate { parent, mdev, uuid } => {
            f.extend([kind("MDEV_CREATE"), q("schid", parent), q("mdev", mdev)]);
            if let Some(u) = uuid {
                f.push(q("uuid", u));
            }
        }
        Op::MdevRemove { mdev } => f.extend([kind("MDEV_REMOVE"), q("mdev", mdev)]),
        Op::AvailableInstances { parent } => {
            f.extend([kind("AVAILABLE_INSTANCES"), q("schid", parent)])
        }
        Op::Open { mdev, handle, via } => f.extend([
            kind("OPEN"),
            q("mdev", mdev),
            q("handle", handle),
            format!(
                ".via = {}",
                match via {
                    OpenVia::Group => "VIA_GROUP",
                    OpenVia::Iommufd => "VIA_IOMMUFD",
                }
            ),
        ]),
        Op::Close { handle, order } => {
            let parts: Vec<&str> = order
                .iter()
                .map(|p| match p {
                    FdPart::Device => "PART_DEVICE",
                    FdPart::Group => "PART_GROUP",
                    FdPart::Container => "PART_CONTAINER",
                })
                .collect();
            f.extend([
                kind("CLOSE"),
                q("handle", handle),
                format!(".order = {{ {} }}", parts.join(", ")),
                format!(".norder = {}", parts.len()),
            ]);
        }
        Op::GetInfo { handle } => f.extend([kind("GET_INFO"), q("handle", handle)]),
        Op::AwaitRequest {
            handle,
            count,
            wait_ms,
        } => f.extend([
            kind("AWAIT_REQUEST"),
            q("handle", handle),
            format!(".count = {count}"),
            format!(".ms = {wait_ms}"),
        ]),
        Op::Consumer { handle, on_request } => f.extend([
            kind("CONSUMER"),
            q("handle", handle),
            format!(
                ".on_request = {}",
                match on_request {
                    RequestPolicy::Close => "ON_REQUEST_CLOSE",
                    RequestPolicy::Reset => "ON_REQUEST_RESET",
                    RequestPolicy::Ignore => "ON_REQUEST_IGNORE",
                }
            ),
        ]),
        Op::Reset { handle } => f.extend([kind("RESET"), q("handle", handle)]),
        Op::SetIrq {
            handle,
            irq,
            action,
            count,
        } => f.extend([
            kind("SET_IRQ"),
            q("handle", handle),
            format!(
                ".irq = {}",
                match irq {
                    IrqKind::Io => "VFIO_CCW_IO_IRQ_INDEX",
                    IrqKind::Crw => "VFIO_CCW_CRW_IRQ_INDEX",
                    IrqKind::Req => "VFIO_CCW_REQ_IRQ_INDEX",
                }
            ),
            format!(
                ".irq_action = {}",
                match action {
                    IrqAction::Register => "IRQ_REGISTER",
                    IrqAction::Remove => "IRQ_REMOVE",
                    IrqAction::Signal => "IRQ_SIGNAL",
                    IrqAction::SignalBool => "IRQ_SIGNAL_BOOL",
                    IrqAction::Mask => "IRQ_MASK",
                    IrqAction::Unmask => "IRQ_UNMASK",
                }
            ),
            format!(".count = {count}"),
        ]),
        Op::DmaUnmap {
            handle,
            count,
            remap,
        } => f.extend([
            kind("DMA_UNMAP"),
            q("handle", handle),
            format!(".count = {count}"),
            format!(".remap = {}", u8::from(*remap)),
        ]),
        Op::Io {
            handle,
            count,
            suspend,
            irq_wait_ms,
            program,
        } => {
            f.extend([
                kind("IO"),
                q("handle", handle),
                format!(".count = {count}"),
                format!(".suspend = {}", u8::from(*suspend)),
                format!(".ms = {irq_wait_ms}"),
            ]);
            if let Some(p) = program {
                // The bytes the agent would write (one encoder for both), as a C string.
                let e = p.encode(super::abi::DMA_IOVA, super::abi::DMA_LEN);
                let bytes: String = e.image.iter().map(|b| format!("\\x{b:02x}")).collect();
                f.extend([
                    format!(".prog = (const unsigned char *)\"{bytes}\""),
                    format!(".prog_len = {}", e.image.len()),
                    format!(".prog_w1 = {:#010x}", e.orb_word1),
                    format!(".prog_cpa = {:#010x}", e.cpa),
                    format!(".prog_scsw = {:#010x}", e.scsw0),
                ]);
            }
        }
        Op::IoStall { handle, wait_ms } => f.extend([
            kind("IO_STALL"),
            q("handle", handle),
            format!(".ms = {wait_ms}"),
        ]),
        Op::IoRelease {
            handle,
            irq_wait_ms,
        } => f.extend([
            kind("IO_RELEASE"),
            q("handle", handle),
            format!(".ms = {irq_wait_ms}"),
        ]),
        Op::Halt { handle } => f.extend([kind("HALT"), q("handle", handle)]),
        Op::Clear { handle } => f.extend([kind("CLEAR"), q("handle", handle)]),
        Op::ReadRegion { handle, region } => f.extend([
            kind("READ_REGION"),
            q("handle", handle),
            region_init(*region),
        ]),
        Op::RegionAccess {
            handle,
            region,
            access,
            offset,
            size,
            threads,
            count,
        } => f.extend([
            kind("REGION_ACCESS"),
            q("handle", handle),
            region_init(*region),
            format!(
                ".access = {}",
                match access {
                    RegionAccessKind::Read => "ACCESS_READ",
                    RegionAccessKind::Write => "ACCESS_WRITE",
                    RegionAccessKind::Mmap => "ACCESS_MMAP",
                }
            ),
            format!(".offset = {offset}"),
            format!(".size = {}", size.unwrap_or(0)),
            format!(".threads = {threads}"),
            format!(".count = {count}"),
        ]),
        Op::Ioas { handle, action } => f.extend([
            kind("IOAS"),
            q("handle", handle),
            format!(
                ".ioas = {}",
                match action {
                    IoasAction::Detach => "IOAS_DETACH",
                    IoasAction::Attach => "IOAS_ATTACH",
                    IoasAction::AttachNew => "IOAS_ATTACH_NEW",
                    IoasAction::Destroy => "IOAS_DESTROY",
                }
            ),
        ]),
        Op::Chp {
            chpid,
            action,
            hold_ms,
        } => f.extend([
            kind("CHP"),
            q("chpid", chpid),
            format!(
                ".chp = {}",
                match action {
                    ChpAction::VaryOff => "CHP_VARY_OFF",
                    ChpAction::VaryOn => "CHP_VARY_ON",
                    ChpAction::Configure => "CHP_CONFIGURE",
                    ChpAction::Deconfigure => "CHP_DECONFIGURE",
                }
            ),
            format!(".hold_ms = {}", hold_ms.unwrap_or(0)),
        ]),
        Op::Online { schid, online } => f.extend([
            kind("ONLINE"),
            q("schid", schid),
            format!(".online = {}", u8::from(*online)),
        ]),
        Op::BadInput { handle, kind: k } => f.extend([
            kind("BAD_INPUT"),
            q("handle", handle),
            format!(
                ".bad = {}",
                match k {
                    BadInputKind::IoRegionOffset => "BAD_IO_REGION_OFFSET",
                    BadInputKind::IoRegionShort => "BAD_IO_REGION_SHORT",
                    BadInputKind::UnmappedCpa => "BAD_UNMAPPED_CPA",
                    BadInputKind::Format0Orb => "BAD_FORMAT0_ORB",
                    BadInputKind::AsyncBadCommand => "BAD_ASYNC_BAD_COMMAND",
                    BadInputKind::BadRegionIndex => "BAD_REGION_INDEX",
                    BadInputKind::ArgszShort => "BAD_ARGSZ_SHORT",
                    BadInputKind::IrqIndexPastLast => "BAD_IRQ_INDEX_PAST_LAST",
                }
            ),
        ]),
        Op::Sleep { ms } => f.extend([kind("SLEEP"), format!(".ms = {ms}")]),
        Op::Snapshot => f.push(kind("SNAPSHOT")),
        Op::Mark { text } => f.extend([kind("MARK"), q("text", text)]),
        Op::Kmemleak { action } => f.extend([
            kind("KMEMLEAK"),
            format!(
                ".kmemleak_clear = {}",
                u8::from(*action == KmemleakAction::Clear)
            ),
        ]),
        Op::Gcov { action } => f.extend([
            kind("GCOV"),
            format!(".gcov_reset = {}", u8::from(*action == GcovAction::Reset)),
        ]),
        Op::Sysrq { key } => f.extend([
            kind("SYSRQ"),
            format!(".key = {}", c_str(&key.to_string()).replace('"', "'")),
        ]),
        Op::Exec { .. } => f.extend([
            kind("EXEC"),
            format!(".argv = {}", argv_name.unwrap_or("NULL")),
        ]),
        Op::Cleanup {
            online_wait_ms,
            rest,
        } => f.extend([
            kind("CLEANUP"),
            format!(".ms = {online_wait_ms}"),
            q("driver", rest.driver()),
        ]),
        Op::DeviceDel { device } | Op::DeviceAdd { device } => f.extend([
            kind("HOST"),
            q("host_op", s.op.name()),
            q("device", device),
            q("text", &host_text(&s.op, sc)),
        ]),
        Op::Stop | Op::Cont | Op::SystemReset | Op::SystemPowerdown => f.extend([
            kind("HOST"),
            q("host_op", s.op.name()),
            q("text", &host_text(&s.op, sc)),
        ]),
        // Refused before any initializer is written (see `unsupported`). Listed, not a
        // wildcard: a new op must be given a C form or be refused here.
        Op::Poweroff
        | Op::Reboot
        | Op::InnerStart { .. }
        | Op::InnerQmp { .. }
        | Op::InnerQuit { .. }
        | Op::InnerSignal { .. }
        | Op::InnerDeviceDel { .. }
        | Op::InnerDeviceAdd { .. }
        | Op::InnerSystemReset { .. }
        | Op::InnerWait { .. } => f.push(kind("BARRIER")),
    }
    let expect: Vec<&str> = s.expect.iter().map(|e| e.as_str()).collect();
    let mut head = vec![
        format!(".what = {}", c_str(&op_text(&s.op))),
        format!(".line = {}", s.line),
    ];
    if let Some(l) = &s.label {
        head.push(format!(".label = {}", c_str(l)));
    }
    head.push(format!(".expect = {}", c_str(&expect.join(" "))));
    head.push(format!(".deadline_ms = {}", s.deadline_ms()));
    if let Some(n) = s.fail_nth {
        head.push(format!(".fail_nth = {n}"));
    }
    f.splice(1..1, head);
    format!("\t{{ {} }},\n", f.join(", "))
}
