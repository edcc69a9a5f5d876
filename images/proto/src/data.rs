//! The data operations return that the host reads (not just records): one definition for the
//! agent that writes it and the harness oracles that judge it. Fields the agent cannot read
//! from sysfs are `None` / empty rather than an error: a kernel without an attribute yields a
//! smaller picture, not a failed snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `snapshot`: the vfio-ccw world in sysfs/devfs plus what the agent holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// Every subchannel, as `list_subchannels` describes it.
    pub css: Vec<SubchannelInfo>,
    /// Every ccw device on the ccw bus, by bus id.
    pub ccw_bus: Vec<String>,
    pub mdevs: Vec<MdevInfo>,
    /// `/dev/vfio/*` group nodes (without `devices`).
    pub dev_vfio: Vec<String>,
    /// `/dev/vfio/devices/*` cdevs.
    pub dev_vfio_devices: Vec<String>,
    /// The driver's slab caches (`vfio_ccw*`) by name.
    pub slabs: BTreeMap<String, SlabInfo>,
    /// Threads in D state other than the agent's own.
    pub d_state: Vec<BlockedTask>,
    pub agent: AgentHolds,
}

/// One subchannel as sysfs shows it. `devno` is the ccw child's bus id when a ccw device
/// exists; bound to vfio_ccw there is no child, and `dev_busid` still names it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubchannelInfo {
    pub schid: String,
    /// The subchannel type (`0`: I/O).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub modalias: Option<String>,
    pub devno: Option<String>,
    pub ccw_device: Option<CcwDeviceInfo>,
    /// `mdev_supported_types/vfio_ccw-io/available_instances` when bound to vfio_ccw.
    pub available_instances: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CcwDeviceInfo {
    pub busid: String,
    pub cutype: Option<String>,
    pub devtype: Option<String>,
    /// `online` as sysfs prints it (`1` / `0`).
    pub online: Option<String>,
    pub driver: Option<String>,
    /// `availability` as sysfs prints it: `good`, `boxed`, `no path` or `no device` (the
    /// last two for a device cio holds not operational or disconnected).
    pub availability: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MdevInfo {
    pub uuid: String,
    /// The parent subchannel's id.
    pub parent: Option<String>,
    pub iommu_group: Option<String>,
    pub vfio_dev: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlabInfo {
    /// Objects in use (after a shrink, so SLUB's per-CPU slabs do not count).
    pub objects: Option<u64>,
    /// The cache is an alias of a merged one (then its count is not the driver's alone).
    pub merged: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlockedTask {
    pub tid: Option<u64>,
    pub comm: String,
    /// `/proc/<pid>/task/<tid>/wchan`.
    pub wchan: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentHolds {
    /// Open handles by name, each with the agent's summary of it.
    pub handles: BTreeMap<String, serde_json::Value>,
    /// Named mdevs the agent created: name -> (uuid, parent).
    pub mdev_names: BTreeMap<String, NamedMdev>,
    pub touched: Vec<String>,
    pub running: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamedMdev {
    pub uuid: String,
    pub parent: String,
}

/// `list_subchannels`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubchannelList {
    pub subchannels: Vec<SubchannelInfo>,
}

/// `mark`: which streams the marker went out on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MarkWritten {
    pub kmsg: bool,
    pub trace: bool,
}

/// `gcov`: whether the kernel has it, and after a `read` each profiled object's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gcov {
    pub available: bool,
    pub files: Vec<GcdaFile>,
}

/// One `.gcda` under `/sys/kernel/debug/gcov`: its path there (the build's object directory
/// followed by the object's) and its bytes in hex (the kernel writes them in its own byte
/// order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GcdaFile {
    pub path: String,
    pub hex: String,
}

/// `kmemleak`: whether the kernel has it, and after a `scan` the report file as read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Kmemleak {
    pub available: bool,
    /// `/sys/kernel/debug/kmemleak` after the scan: `unreferenced object` reports, or empty.
    pub report: String,
    /// The kernel's `jiffies` when the action was done (from /proc/timer_list; None if it
    /// could not be read): each report names its object's allocation in jiffies.
    pub jiffies: Option<u64>,
}
