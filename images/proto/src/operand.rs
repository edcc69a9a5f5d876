//! The values operations take beside names: signals, request policies, region, IRQ and
//! bad-input kinds, kmemleak actions. Scenario files spell each in snake_case.

use serde::{Deserialize, Serialize};

/// Signals for `inner_signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InnerSignal {
    Term,
    Kill,
    Stop,
    Cont,
}

/// What the consumer does when the kernel signals the device-request eventfd (the driver
/// wants the device back, e.g. after a hot-unplug).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestPolicy {
    /// Close the device fd (a well-behaved user).
    #[default]
    Close,
    /// Issue VFIO_DEVICE_RESET, as QEMU did in the 5.15-rc1 crash.
    Reset,
    /// Do nothing: the kernel's remove stays blocked until the handle is closed.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    Io,
    Async,
    Schib,
    Crw,
}

/// What `kmemleak` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KmemleakAction {
    Scan,
    Clear,
}

/// What `gcov` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GcovAction {
    /// Return every object's counters as they stand.
    Read,
    /// Zero every object's counters.
    Reset,
}

/// The vfio-ccw IRQ indexes (VFIO_CCW_{IO,CRW,REQ}_IRQ_INDEX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrqKind {
    Io,
    Crw,
    Req,
}

/// What `set_irq` does to the index's trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrqAction {
    /// A new eventfd replaces the current one (or is the first).
    #[default]
    Register,
    /// No trigger: `VFIO_IRQ_SET_DATA_EVENTFD` with fd -1.
    Remove,
    /// `VFIO_IRQ_SET_DATA_NONE`: the driver signals its current trigger once.
    Signal,
    /// `VFIO_IRQ_SET_DATA_BOOL` with `true`: the same signal, from a byte the driver reads
    /// with get_user.
    SignalBool,
    /// `VFIO_IRQ_SET_ACTION_MASK` (DATA_NONE): the vfio core lets it through, vfio-ccw masks
    /// nothing and refuses it (EINVAL).
    Mask,
    /// `VFIO_IRQ_SET_ACTION_UNMASK` (DATA_NONE): refused like `mask`.
    Unmask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadInputKind {
    /// pwrite to the I/O region at a non-zero offset (the driver allows only offset 0).
    IoRegionOffset,
    /// pwrite of a short I/O region.
    IoRegionShort,
    /// An ORB whose channel program address is not mapped for DMA.
    UnmappedCpa,
    /// A format-0 ORB (the driver supports format-1 only).
    Format0Orb,
    /// An async region command that does not exist.
    AsyncBadCommand,
    /// A region index past the last region in GET_REGION_INFO.
    BadRegionIndex,
    /// VFIO_DEVICE_GET_INFO with `argsz` below the structure's minimum size.
    ArgszShort,
    /// VFIO_DEVICE_SET_IRQS (an eventfd trigger) on the IRQ index after the last one:
    /// `vfio_set_irqs_validate_and_prepare` refuses it.
    IrqIndexPastLast,
}

/// How `region_access` touches a region through the device fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionAccessKind {
    /// pread.
    Read,
    /// pwrite of what a read of the same range returned (zeros where that read failed): on
    /// the I/O region that is the last ORB again, on the async region the last command.
    Write,
    /// mmap of the range (vfio-ccw has no mmap; the vfio core refuses it).
    Mmap,
}

/// What `chp` does to a channel path (`/sys/devices/css0/chp<cssid>.<chpid>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChpAction {
    /// `status = offline`: the guest varies the path off logically; every subchannel's driver
    /// gets CHP_VARY_OFF (vfio_ccw_chp_event cancels, halts or clears I/O on that path).
    VaryOff,
    /// `status = online`: CHP_VARY_ON, then the css reprobes.
    VaryOn,
    /// `configure = 1`: the SCLP configure-channel-path request.
    Configure,
    /// `configure = 0`: the SCLP deconfigure-channel-path request.
    Deconfigure,
}

/// What `ioas` does to an iommufd handle's attachment (the device cdev's
/// ATTACH/DETACH_IOMMUFD_PT, iommufd's IOAS_ALLOC and DESTROY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoasAction {
    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    Detach,
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` to the handle's own IOAS (again).
    Attach,
    /// A new IOAS, and the device attached to it: the handle's DMA mapping stays in the old one.
    AttachNew,
    /// `IOMMU_DESTROY` of the handle's own IOAS (refused while a device is attached to it).
    Destroy,
}
