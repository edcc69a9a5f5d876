//! Every operation ccwrig can perform, guest-side (run by the agent) and host-side (QMP).
//!
//! Scenario files spell an operation as a TOML table with `op = "<snake_case name>"` and the
//! fields below; unknown fields are rejected. Objects are referred to by names the scenario
//! chooses: an mdev by `mdev = "m1"` (the agent maps it to a UUID), an open device by
//! `handle = "d1"`.

use serde::{Deserialize, Serialize};

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
    Bind { schid: SchId, driver: String },
    /// Unbind a subchannel from whatever driver holds it.
    Unbind { schid: SchId },
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
    MdevRemove { mdev: String },
    /// Read `available_instances` of the parent's `vfio_ccw-io` type.
    AvailableInstances { parent: SchId },

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
    GetInfo { handle: String },
    /// Behave like QEMU's hw/vfio/ccw.c at realize: device and region infos, eventfds for the
    /// I/O, CRW and device-request IRQs, a DMA mapping; then a thread watches the request
    /// eventfd and applies `on_request`.
    Consumer {
        handle: String,
        #[serde(default)]
        on_request: RequestPolicy,
    },
    /// `VFIO_DEVICE_RESET`.
    Reset { handle: String },

    // ---- channel I/O -------------------------------------------------------------------
    /// Run `count` SENSE ID channel programs through the I/O region, each waiting for its
    /// interrupt. With `suspend`, the single program is started with a suspend flag and left
    /// pending (no interrupt is waited for): it holds the "I/O outstanding" window open.
    Io {
        handle: String,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        suspend: bool,
        /// How long to wait for each interrupt.
        #[serde(default = "default_irq_wait_ms")]
        irq_wait_ms: u64,
    },
    /// HALT SUBCHANNEL through the async region.
    Halt { handle: String },
    /// CLEAR SUBCHANNEL through the async region.
    Clear { handle: String },
    /// Read a region (`io`, `async`, `schib`, `crw`) and return its bytes as hex.
    ReadRegion { handle: String, region: RegionKind },
    /// Deliberately bad input the driver must reject.
    BadInput { handle: String, kind: BadInputKind },

    // ---- observation and misc ----------------------------------------------------------
    /// Sysfs snapshot: drivers, mdevs, available_instances, /dev/vfio nodes, region slabs.
    Snapshot,
    /// Guest-side sleep (used by the runner for jitter that must not include a round trip).
    Sleep { ms: u64 },
    /// Write a key to /proc/sysrq-trigger (`w`: blocked tasks, `t`: all tasks).
    Sysrq { key: char },
    /// Run a program in the guest (busybox applets). For debugging and setup only: scenarios
    /// should use the typed operations.
    Exec { argv: Vec<String> },
    /// Close everything the agent holds, remove every mdev it created and rebind every
    /// subchannel it touched to io_subchannel: the reset between programs.
    Cleanup,
    /// Power the guest off.
    Poweroff,

    // ---- host side (QMP) ---------------------------------------------------------------
    /// `device_del` of the virtio-ccw device behind a subchannel; waits for DEVICE_DELETED.
    DeviceDel { device: String },
    /// `device_add` of a device from the machine definition again, with the same devno.
    DeviceAdd { device: String },
    /// Pause / resume all vCPUs.
    Stop,
    Cont,
    SystemReset,
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
            Op::Reset { .. } => "reset",
            Op::Io { .. } => "io",
            Op::Halt { .. } => "halt",
            Op::Clear { .. } => "clear",
            Op::ReadRegion { .. } => "read_region",
            Op::BadInput { .. } => "bad_input",
            Op::Snapshot => "snapshot",
            Op::Sleep { .. } => "sleep",
            Op::Sysrq { .. } => "sysrq",
            Op::Exec { .. } => "exec",
            Op::Cleanup => "cleanup",
            Op::Poweroff => "poweroff",
            Op::DeviceDel { .. } => "device_del",
            Op::DeviceAdd { .. } => "device_add",
            Op::Stop => "stop",
            Op::Cont => "cont",
            Op::SystemReset => "system_reset",
        }
    }

    /// Who performs the operation: the guest agent or the host (QMP).
    pub fn side(&self) -> Side {
        match self {
            Op::DeviceDel { .. } | Op::DeviceAdd { .. } | Op::Stop | Op::Cont | Op::SystemReset => {
                Side::Host
            }
            _ => Side::Guest,
        }
    }

    /// The open-device handle the operation uses, if any.
    pub fn handle(&self) -> Option<&str> {
        match self {
            Op::Open { handle, .. }
            | Op::Close { handle, .. }
            | Op::GetInfo { handle }
            | Op::Consumer { handle, .. }
            | Op::Reset { handle }
            | Op::Io { handle, .. }
            | Op::Halt { handle }
            | Op::Clear { handle }
            | Op::ReadRegion { handle, .. }
            | Op::BadInput { handle, .. } => Some(handle),
            _ => None,
        }
    }

    /// The mdev name the operation uses, if any.
    pub fn mdev(&self) -> Option<&str> {
        match self {
            Op::MdevCreate { mdev, .. } | Op::MdevRemove { mdev } | Op::Open { mdev, .. } => {
                Some(mdev)
            }
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

fn default_close_order() -> Vec<FdPart> {
    vec![FdPart::Device, FdPart::Group, FdPart::Container]
}

fn one() -> u32 {
    1
}

fn default_irq_wait_ms() -> u64 {
    2000
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_defaults_to_device_group_container() {
        let op: Op = serde_json::from_str(r#"{"op":"close","handle":"d"}"#).unwrap();
        assert_eq!(
            op,
            Op::Close { handle: "d".into(), order: vec![FdPart::Device, FdPart::Group, FdPart::Container] }
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<Op, _> = serde_json::from_str(r#"{"op":"reset","handle":"d","bogus":1}"#);
        assert!(r.is_err());
    }

    #[test]
    fn name_matches_serde_tag() {
        let ops = [
            Op::Rescan,
            Op::Open { mdev: "m".into(), handle: "h".into(), via: OpenVia::Iommufd },
            Op::Io { handle: "h".into(), count: 3, suspend: true, irq_wait_ms: 10 },
            Op::DeviceDel { device: "rng0".into() },
            Op::Sysrq { key: 'w' },
        ];
        for op in ops {
            let v = serde_json::to_value(&op).unwrap();
            assert_eq!(v["op"], op.name());
            let back: Op = serde_json::from_value(v).unwrap();
            assert_eq!(back, op);
        }
    }

    #[test]
    fn host_ops_are_host_side() {
        assert_eq!(Op::SystemReset.side(), Side::Host);
        assert_eq!(Op::Rescan.side(), Side::Guest);
    }
}
