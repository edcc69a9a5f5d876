//! Every operation ccwrig can perform, guest-side (run by the agent) and host-side (QMP).
//!
//! Scenario files spell an operation as a TOML table with `op = "<snake_case name>"` and the
//! fields below; unknown fields are rejected. Objects are referred to by names the scenario
//! chooses: an mdev by `mdev = "m1"` (the agent maps it to a UUID), an open device by
//! `handle = "d1"`.

use serde::{Deserialize, Serialize};

use crate::chanprog::ChannelProgram;
use crate::operand::*;

/// A subchannel id as sysfs spells it: `0.0.0000`.
pub type SchId = String;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    // ---- subchannels -------------------------------------------------------------------
    /// List css subchannels with devno, driver and type.
    ListSubchannels,
    /// Bind a subchannel to `driver` (`vfio_ccw` or `io_subchannel`) through driver_override,
    /// unbinding it from its current driver first.
    Bind {
        schid: SchId,
        driver: String,
    },
    /// Unbind a subchannel from whatever driver holds it.
    Unbind {
        schid: SchId,
    },
    /// `echo 1 > /sys/devices/css0/rescan` (blocks while the cio work queue is busy).
    Rescan,

    // ---- mediated devices --------------------------------------------------------------
    /// Create an mdev of type `vfio_ccw-io` on `parent`, known as `mdev` from then on.
    MdevCreate {
        parent: SchId,
        mdev: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uuid: Option<String>,
    },
    /// Write `remove` of the mdev (blocks while a user holds it open).
    MdevRemove {
        mdev: String,
    },
    /// Read `available_instances` of the parent's `vfio_ccw-io` type.
    AvailableInstances {
        parent: SchId,
    },

    // ---- user access -------------------------------------------------------------------
    /// Open the mdev as `handle`, through the group/container (type1v2) or the iommufd cdev.
    Open {
        mdev: String,
        handle: String,
        #[serde(default)]
        via: OpenVia,
    },
    /// Close the handle's file descriptors in the given order (default: device, group,
    /// container). Parts not listed stay open.
    Close {
        handle: String,
        #[serde(default = "default_close_order")]
        order: Vec<FdPart>,
    },
    /// `VFIO_DEVICE_GET_INFO` and every `VFIO_DEVICE_GET_REGION_INFO` / `GET_IRQ_INFO`.
    GetInfo {
        handle: String,
    },
    /// Behave like QEMU's hw/vfio/ccw.c at realize: device and region infos, eventfds for the
    /// I/O, CRW and device-request IRQs, a DMA mapping; then a thread watches the request
    /// eventfd and applies `on_request`.
    Consumer {
        handle: String,
        #[serde(default)]
        on_request: RequestPolicy,
    },
    /// Wait until the handle's consumer has answered `count` device requests in all (by its
    /// policy): a step ordered after the kernel's request rather than after a guessed sleep,
    /// which a loaded host outruns. ETIMEDOUT when that does not happen within `wait_ms`.
    AwaitRequest {
        handle: String,
        #[serde(default = "one")]
        count: u32,
        #[serde(default = "default_await_request_ms")]
        wait_ms: u64,
    },
    /// `VFIO_DEVICE_RESET`.
    Reset {
        handle: String,
    },
    /// `VFIO_DEVICE_SET_IRQS` on one IRQ index, `count` times. `register` hands the driver a
    /// fresh eventfd and closes the handle's previous one for it, so the driver holds the
    /// last reference to the old eventfd until it drops it in this very call; `remove` takes
    /// the trigger away (fd -1); `signal` fires it from user space (`DATA_NONE`). The driver
    /// swaps its trigger while its interrupt and CRW work signals it.
    SetIrq {
        handle: String,
        irq: IrqKind,
        #[serde(default)]
        action: IrqAction,
        #[serde(default = "one")]
        count: u32,
    },
    /// Unmap the handle's DMA buffer (`VFIO_IOMMU_UNMAP_DMA` on the type1 container,
    /// `IOMMU_IOAS_UNMAP` on iommufd), mapping it first if no operation has yet. The kernel
    /// tells the driver (vfio_ccw_dma_unmap), which resets the device when a channel program
    /// uses those pages. With `remap`, each round maps the buffer again, so `count` rounds keep
    /// the container busy with map/unmap ioctls (what QEMU's memory listener does when guest
    /// memory changes). Stops at the first call the kernel refuses.
    DmaUnmap {
        handle: String,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        remap: bool,
    },

    // ---- channel I/O -------------------------------------------------------------------
    /// Run `count` SENSE ID channel programs through the I/O region, each waiting for its
    /// interrupt. With `suspend`, the single program is started with a suspend flag and left
    /// pending (no interrupt is waited for): it holds the "I/O outstanding" window open.
    /// With `program`, that channel program runs instead of SENSE ID (`suspend` then only
    /// means: start it once and do not wait for an interrupt).
    Io {
        handle: String,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        suspend: bool,
        /// How long to wait for each interrupt.
        #[serde(default = "default_irq_wait_ms")]
        irq_wait_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<ChannelProgram>,
    },
    /// Start one SENSE ID whose CCW sits in a page of the DMA buffer that is missing behind a
    /// userfaultfd (docs/DESIGN.md, 'Why userfaultfd holds a request'): the kernel's fetch of the
    /// channel program (cp_init's vfio_dma_rw) sleeps in the fault inside fsm_io_request, with the
    /// FSM in CP_PROCESSING and the device's io_mutex held. Returns once the fault has arrived (the
    /// window is open), or with the write's own result if the kernel refused the request before
    /// fetching. The write stays in flight until `io_release`.
    IoStall {
        handle: String,
        /// How long to wait for the kernel to fault.
        #[serde(default = "default_irq_wait_ms")]
        wait_ms: u64,
    },
    /// Resolve the fault of the handle's `io_stall` with the channel program, let the held
    /// write finish and, if it was accepted, wait for its interrupt. The outcome is the
    /// write's (an errno from fsm_io_request) or the wait's.
    IoRelease {
        handle: String,
        #[serde(default = "default_irq_wait_ms")]
        irq_wait_ms: u64,
    },
    /// HALT SUBCHANNEL through the async region.
    Halt {
        handle: String,
    },
    /// CLEAR SUBCHANNEL through the async region.
    Clear {
        handle: String,
    },
    /// Read a region (`io`, `async`, `schib`, `crw`) and return its bytes as hex.
    ReadRegion {
        handle: String,
        region: RegionKind,
    },
    /// Deliberately bad input the driver must reject.
    BadInput {
        handle: String,
        kind: BadInputKind,
    },
    /// Any access to a region, at any offset and size: `threads` threads each make `count`
    /// accesses of `size` bytes (default: from `offset` to the region's end) at `offset`
    /// (relative to the region's start; past its end is allowed). The data counts each
    /// result; the outcome is `ok` when no access failed, else the errno most accesses got.
    RegionAccess {
        handle: String,
        region: RegionKind,
        access: RegionAccessKind,
        #[serde(default)]
        offset: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default = "one")]
        threads: u32,
        #[serde(default = "one")]
        count: u32,
    },
    /// Attach, detach or replace an iommufd handle's IOAS (`open` with `via = "iommufd"`).
    Ioas {
        handle: String,
        action: IoasAction,
    },

    // ---- channel paths and ccw devices --------------------------------------------------
    /// Vary or (de)configure a channel path. Every device of the guest, the agent's own
    /// virtio-serial port included, sits on QEMU's one virtual channel path `0.00`: while it is
    /// varied off the agent cannot answer (its port comes back after `vary_on`), so a vary_off
    /// names `hold_ms`, after which the same step varies the path on again.
    Chp {
        #[serde(default = "default_chpid")]
        chpid: String,
        action: ChpAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold_ms: Option<u64>,
    },
    /// Write `online` (1 or 0) of the ccw device under a subchannel (io_subchannel must hold it).
    Online {
        schid: SchId,
        online: bool,
    },

    // ---- observation and misc ----------------------------------------------------------
    /// Sysfs snapshot: drivers, mdevs, available_instances, /dev/vfio nodes, region slabs.
    Snapshot,
    /// kmemleak (a kernel built with it, debugfs mounted): `scan` runs a scan and returns the
    /// report file (`data::Kmemleak`); `clear` marks what was reported as known, so the next
    /// read shows only newer leaks. Without kmemleak both answer `available = false`.
    Kmemleak {
        action: KmemleakAction,
    },
    /// GCOV counters (a cover kernel; debugfs mounted): `read` returns every profiled
    /// object's `.gcda` as the kernel renders it (`data::Gcov`), `reset` zeroes them all.
    /// The counters are global: a read shows what ran in any context since the last reset,
    /// interrupts and kworkers included. Without GCOV both answer `available = false`.
    Gcov {
        action: GcovAction,
    },
    /// Guest-side sleep (used by the runner for jitter that must not include a round trip).
    Sleep {
        ms: u64,
    },
    /// Write `ccwrig-mark: <text>` to /dev/kmsg (level 5, so the console shows it too) and to
    /// the trace buffer (trace_marker). The runner waits for the marker on every stream before
    /// judging, so the kernel's lines from before it are known to have arrived.
    Mark {
        text: String,
    },
    /// Write a key to /proc/sysrq-trigger (`w`: blocked tasks, `t`: all tasks).
    Sysrq {
        key: char,
    },
    /// Run a program in the guest (busybox applets). For debugging and setup only: scenarios
    /// should use the typed operations.
    Exec {
        argv: Vec<String>,
    },
    /// Close everything the agent holds, remove every mdev it created and rebind every
    /// subchannel it touched to io_subchannel: the reset between programs. Then waits up to
    /// `online_wait_ms` for each given-back subchannel's ccw device to be online: binding
    /// io_subchannel only schedules the auto-online, and the next program must not start
    /// inside it. With `rest = vfio_ccw` every I/O subchannel is given back to vfio_ccw
    /// instead; one the program left under io_subchannel first gets the same wait for its ccw
    /// device, and stays there if it does not come online.
    Cleanup {
        #[serde(default = "default_online_wait_ms")]
        online_wait_ms: u64,
        #[serde(default, skip_serializing_if = "crate::Rest::is_default")]
        rest: crate::Rest,
    },
    /// Power the guest off as an init would: kill the inner QEMUs, close every handle, sync,
    /// then `reboot(RB_POWER_OFF)` (the kernel's shutdown path: every driver's shutdown).
    Poweroff,
    /// As `poweroff`, but `reboot(RB_AUTOBOOT)`: the kernel's restart path, which also runs
    /// every driver's shutdown. QEMU runs with `-no-reboot`, so the reset ends it.
    Reboot,

    // ---- inner QEMU (nested image: `[machine] nested = true`) ---------------------------
    /// Start Debian's qemu-system-s390x inside the guest with the mdev as its vfio-ccw device
    /// (`-device vfio-ccw,sysfsdev=...,devno=<devno>,id=hostdev0`), known as `name`; the agent
    /// speaks QMP to it and answers once QMP is up (`qmp_wait_ms` at most).
    InnerStart {
        name: String,
        mdev: String,
        #[serde(default = "default_inner_devno")]
        devno: String,
        /// `-S`: no firmware runs, so nothing in the inner machine binds the device (an L2
        /// Linux driving a passed-through virtio device crashes QEMU 10.0: docs/DESIGN.md,
        /// 'Nested QEMU').
        #[serde(default = "yes")]
        paused: bool,
        #[serde(default = "default_inner_memory_mib")]
        memory_mib: u32,
        /// Appended to the command line.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        #[serde(default = "default_qmp_wait_ms")]
        qmp_wait_ms: u64,
    },
    /// Any QMP command to the inner QEMU; a QMP error is `failed` with its class and text.
    InnerQmp {
        name: String,
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<serde_json::Value>,
    },
    /// QMP `quit`, then wait for the process to exit.
    InnerQuit {
        name: String,
    },
    /// Send a signal to the inner QEMU; `term`/`kill` wait for its exit, `stop`/`cont` for the
    /// process state to change.
    InnerSignal {
        name: String,
        signal: InnerSignal,
    },
    /// QMP `device_del` of its vfio-ccw device; waits for `DEVICE_DELETED`.
    InnerDeviceDel {
        name: String,
        #[serde(default = "default_inner_wait_ms")]
        wait_ms: u64,
    },
    /// QMP `device_add` of its vfio-ccw device again (same mdev, devno and id).
    InnerDeviceAdd {
        name: String,
    },
    /// QMP `system_reset`, `count` times (each resets the vfio-ccw device: CLOSE/OPEN pairs).
    InnerSystemReset {
        name: String,
        #[serde(default = "one")]
        count: u32,
    },
    /// Wait for the inner QEMU to exit; `failed` if it is still running after `timeout_ms`.
    InnerWait {
        name: String,
        #[serde(default = "default_inner_wait_ms")]
        timeout_ms: u64,
    },

    // ---- host side (QMP) ---------------------------------------------------------------
    /// `device_del` of the virtio-ccw device behind a subchannel; waits for DEVICE_DELETED.
    DeviceDel {
        device: String,
    },
    /// `device_add` of a device from the machine definition again, with the same devno.
    DeviceAdd {
        device: String,
    },
    /// Pause / resume all vCPUs.
    Stop,
    Cont,
    SystemReset,
    /// QMP `system_powerdown`: the SCLP quiesce signal. The guest kernel (sclp_quiesce) answers
    /// it with ctrl_alt_del: C-A-D is left enabled, so the kernel restarts at once, running
    /// device_shutdown with every user's files still open (no init closes them), then loads a
    /// disabled wait that QEMU takes as the end of the machine.
    SystemPowerdown,
}

impl Op {
    /// The name scenario files use (`op = "..."`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::ListSubchannels => "list_subchannels",
            Op::Bind { .. } => "bind",
            Op::Unbind { .. } => "unbind",
            Op::Rescan => "rescan",
            Op::MdevCreate { .. } => "mdev_create",
            Op::MdevRemove { .. } => "mdev_remove",
            Op::AvailableInstances { .. } => "available_instances",
            Op::Open { .. } => "open",
            Op::Close { .. } => "close",
            Op::GetInfo { .. } => "get_info",
            Op::Consumer { .. } => "consumer",
            Op::AwaitRequest { .. } => "await_request",
            Op::Reset { .. } => "reset",
            Op::DmaUnmap { .. } => "dma_unmap",
            Op::SetIrq { .. } => "set_irq",
            Op::Io { .. } => "io",
            Op::IoStall { .. } => "io_stall",
            Op::IoRelease { .. } => "io_release",
            Op::Halt { .. } => "halt",
            Op::Clear { .. } => "clear",
            Op::ReadRegion { .. } => "read_region",
            Op::BadInput { .. } => "bad_input",
            Op::RegionAccess { .. } => "region_access",
            Op::Ioas { .. } => "ioas",
            Op::Chp { .. } => "chp",
            Op::Online { .. } => "online",
            Op::Snapshot => "snapshot",
            Op::Kmemleak { .. } => "kmemleak",
            Op::Gcov { .. } => "gcov",
            Op::Sleep { .. } => "sleep",
            Op::Mark { .. } => "mark",
            Op::Sysrq { .. } => "sysrq",
            Op::Exec { .. } => "exec",
            Op::Cleanup { .. } => "cleanup",
            Op::Poweroff => "poweroff",
            Op::Reboot => "reboot",
            Op::DeviceDel { .. } => "device_del",
            Op::DeviceAdd { .. } => "device_add",
            Op::Stop => "stop",
            Op::Cont => "cont",
            Op::SystemReset => "system_reset",
            Op::SystemPowerdown => "system_powerdown",
            Op::InnerStart { .. } => "inner_start",
            Op::InnerQmp { .. } => "inner_qmp",
            Op::InnerQuit { .. } => "inner_quit",
            Op::InnerSignal { .. } => "inner_signal",
            Op::InnerDeviceDel { .. } => "inner_device_del",
            Op::InnerDeviceAdd { .. } => "inner_device_add",
            Op::InnerSystemReset { .. } => "inner_system_reset",
            Op::InnerWait { .. } => "inner_wait",
        }
    }

    /// Whether the operation has no wait of its own: it only ever sleeps for other kernel
    /// state (a lock, a device's users, a completion). Such an operation asleep with every
    /// CPU idle waits for another step, and a request's `idle_ms` may answer it `Blocked`.
    /// The others wait by design, each with its own bound (a sleep, an interrupt, a fault, a
    /// device coming online, a process's exit, a scan) or end the machine.
    pub fn blocks_only_on_others(&self) -> bool {
        matches!(
            self,
            Op::Bind { .. }
                | Op::Unbind { .. }
                | Op::Rescan
                | Op::MdevCreate { .. }
                | Op::MdevRemove { .. }
                | Op::AvailableInstances { .. }
                | Op::Open { .. }
                | Op::Close { .. }
                | Op::GetInfo { .. }
                | Op::Reset { .. }
                | Op::DmaUnmap { .. }
                | Op::SetIrq { .. }
                | Op::ReadRegion { .. }
                | Op::BadInput { .. }
                | Op::RegionAccess { .. }
                | Op::Ioas { .. }
        )
    }

    /// Who performs the operation: the guest agent or the host (QMP).
    pub fn side(&self) -> Side {
        match self {
            Op::DeviceDel { .. }
            | Op::DeviceAdd { .. }
            | Op::Stop
            | Op::Cont
            | Op::SystemReset
            | Op::SystemPowerdown => Side::Host,
            _ => Side::Guest,
        }
    }

    /// The name of every operation: for tables and checks that must cover them all (a test
    /// holds it to the enum).
    pub const NAMES: &'static [&'static str] = &[
        "list_subchannels",
        "bind",
        "unbind",
        "rescan",
        "mdev_create",
        "mdev_remove",
        "available_instances",
        "open",
        "close",
        "get_info",
        "consumer",
        "await_request",
        "reset",
        "set_irq",
        "dma_unmap",
        "io",
        "io_stall",
        "io_release",
        "halt",
        "clear",
        "read_region",
        "bad_input",
        "region_access",
        "ioas",
        "chp",
        "online",
        "snapshot",
        "kmemleak",
        "gcov",
        "sleep",
        "mark",
        "sysrq",
        "exec",
        "cleanup",
        "poweroff",
        "reboot",
        "inner_start",
        "inner_qmp",
        "inner_quit",
        "inner_signal",
        "inner_device_del",
        "inner_device_add",
        "inner_system_reset",
        "inner_wait",
        "device_del",
        "device_add",
        "stop",
        "cont",
        "system_reset",
        "system_powerdown",
    ];

    /// The names of the host-side operations (see [`Op::side`]), for messages and docs.
    pub const HOST_OPS: [&'static str; 6] = [
        "device_del",
        "device_add",
        "stop",
        "cont",
        "system_reset",
        "system_powerdown",
    ];

    /// The open-device handle the operation uses, if any.
    pub fn handle(&self) -> Option<&str> {
        match self {
            Op::Open { handle, .. }
            | Op::Close { handle, .. }
            | Op::GetInfo { handle }
            | Op::Consumer { handle, .. }
            | Op::AwaitRequest { handle, .. }
            | Op::Reset { handle }
            | Op::DmaUnmap { handle, .. }
            | Op::SetIrq { handle, .. }
            | Op::Io { handle, .. }
            | Op::IoStall { handle, .. }
            | Op::IoRelease { handle, .. }
            | Op::Halt { handle }
            | Op::Clear { handle }
            | Op::ReadRegion { handle, .. }
            | Op::BadInput { handle, .. }
            | Op::RegionAccess { handle, .. }
            | Op::Ioas { handle, .. } => Some(handle),
            _ => None,
        }
    }

    /// The inner QEMU (nested image) the operation drives, if any.
    pub fn inner(&self) -> Option<&str> {
        match self {
            Op::InnerStart { name, .. }
            | Op::InnerQmp { name, .. }
            | Op::InnerQuit { name }
            | Op::InnerSignal { name, .. }
            | Op::InnerDeviceDel { name, .. }
            | Op::InnerDeviceAdd { name }
            | Op::InnerSystemReset { name, .. }
            | Op::InnerWait { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The mdev name the operation uses, if any.
    pub fn mdev(&self) -> Option<&str> {
        match self {
            Op::MdevCreate { mdev, .. }
            | Op::MdevRemove { mdev }
            | Op::Open { mdev, .. }
            | Op::InnerStart { mdev, .. } => Some(mdev),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Guest,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenVia {
    /// /dev/vfio/vfio container + /dev/vfio/N group, VFIO_TYPE1v2_IOMMU.
    #[default]
    Group,
    /// /dev/vfio/devices/vfioX + /dev/iommu (VFIO_DEVICE_BIND_IOMMUFD).
    Iommufd,
}

/// One of the file descriptors an open handle holds. With `via = "iommufd"`, `container`
/// means the /dev/iommu fd and `group` does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FdPart {
    Device,
    Group,
    Container,
}

impl FdPart {
    /// The order QEMU closes a vfio device in: device fd, then group, then container.
    pub const DEFAULT_ORDER: [FdPart; 3] = [FdPart::Device, FdPart::Group, FdPart::Container];
}

fn default_close_order() -> Vec<FdPart> {
    FdPart::DEFAULT_ORDER.to_vec()
}

fn one() -> u32 {
    1
}

fn default_irq_wait_ms() -> u64 {
    2000
}

fn default_await_request_ms() -> u64 {
    10_000
}

fn yes() -> bool {
    true
}

/// The devno the mdev gets inside the inner machine (docs/DESIGN.md, 'Nested QEMU').
fn default_inner_devno() -> String {
    "fe.0.1234".into()
}

/// Enough for an inner QEMU started with `-S` (25 MB peak RSS measured: docs/DESIGN.md,
/// 'Nested QEMU').
fn default_inner_memory_mib() -> u32 {
    128
}

/// QMP answers 0.4-0.9 s after start on an idle TCG guest; leave room for a loaded host.
fn default_qmp_wait_ms() -> u64 {
    15_000
}

/// QEMU puts every emulated ccw device on virtual channel path 0x00 of css 0.
pub const DEFAULT_CHPID: &str = "0.00";

fn default_chpid() -> String {
    DEFAULT_CHPID.into()
}

fn default_inner_wait_ms() -> u64 {
    10_000
}

/// The auto-online takes 0.2-0.6 s on the fast kernel under TCG.
pub fn default_online_wait_ms() -> u64 {
    2000
}

#[cfg(test)]
#[path = "op_tests.rs"]
mod tests;
