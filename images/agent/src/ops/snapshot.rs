//! A picture of the vfio-ccw world in sysfs/devfs plus what the agent holds: used to check
//! that teardown left nothing behind.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::collections::BTreeMap;

use ccwrig_proto::data::{AgentHolds, BlockedTask, MdevInfo, NamedMdev, SlabInfo, Snapshot};
use serde_json::json;

use super::OpRes;
use crate::paths;
use crate::state::{lock, Agent};
use crate::sys;

pub fn take(agent: &Arc<Agent>) -> OpRes {
    let mdevs = sys::dir_names(paths::MDEV_DEVICES)
        .iter()
        .map(|u| {
            let d = paths::mdev(u);
            let parent = std::fs::canonicalize(&d).ok().and_then(|p| {
                p.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            });
            MdevInfo {
                uuid: u.clone(),
                parent,
                iommu_group: sys::link_name(format!("{d}/iommu_group")),
                vfio_dev: sys::dir_names(format!("{d}/vfio-dev")),
            }
        })
        .collect();
    let holds = AgentHolds {
        handles: lock(&agent.handles)
            .iter()
            .map(|(k, h)| (k.clone(), h.summary()))
            .collect(),
        mdev_names: lock(&agent.mdevs)
            .iter()
            .map(|(k, m)| {
                let named = NamedMdev {
                    uuid: m.uuid.clone(),
                    parent: m.parent.clone(),
                };
                (k.clone(), named)
            })
            .collect(),
        touched: lock(&agent.touched).iter().cloned().collect(),
        running: u64::from(agent.running.load(Ordering::SeqCst)),
    };
    let snapshot = Snapshot {
        css: super::css::all(),
        ccw_bus: sys::dir_names(paths::CCW_DEVICES),
        mdevs,
        dev_vfio: sys::dir_names("/dev/vfio")
            .into_iter()
            .filter(|n| n != "devices")
            .collect(),
        dev_vfio_devices: sys::dir_names("/dev/vfio/devices"),
        slabs: slabs(),
        d_state: d_state_tasks(),
        agent: holds,
    };
    Ok(json!(snapshot))
}

/// Threads in uninterruptible sleep (state D) other than the agent's own (a blocked step is
/// reported as such): a kernel worker or process left waiting for something that will not
/// come is a hang without a step to show it, and it keeps the guest from powering off.
fn d_state_tasks() -> Vec<BlockedTask> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for pid in sys::dir_names("/proc")
        .into_iter()
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()) && *p != me)
    {
        for tid in sys::dir_names(format!("/proc/{pid}/task")) {
            let base = format!("/proc/{pid}/task/{tid}");
            let Some(stat) = sys::read_attr(format!("{base}/stat")) else {
                continue;
            };
            // `tid (comm) S ...`: comm may hold spaces and parentheses, the state follows
            // the last ')'.
            let Some((head, tail)) = stat.rsplit_once(')') else {
                continue;
            };
            if tail.trim_start().starts_with('D') {
                let comm = head.split_once('(').map(|(_, c)| c).unwrap_or(head);
                out.push(BlockedTask {
                    tid: tid.parse::<u64>().ok(),
                    comm: comm.to_string(),
                    wchan: sys::read_attr(format!("{base}/wchan")),
                });
            }
        }
    }
    out
}

/// Objects in use in the driver's region caches (`vfio_ccw_io_region`, `..._cmd_region`, ...).
///
/// SLUB's `objects` attribute counts every object of a CPU's active slab as in use, so each
/// cache is shrunk first (which flushes the CPU slabs and frees empty ones): then the count is
/// exact. Needs `slab_nomerge` on the command line (the harness passes it); otherwise the
/// names are aliases of merged caches and count other users' objects too.
fn slabs() -> BTreeMap<String, SlabInfo> {
    let mut m = BTreeMap::new();
    for n in sys::dir_names("/sys/kernel/slab")
        .into_iter()
        .filter(|n| n.starts_with(ccwrig_proto::DRIVER_VFIO_CCW))
    {
        let _ = sys::write_attr(&format!("/sys/kernel/slab/{n}/shrink"), "1");
        let objs = sys::read_attr(format!("/sys/kernel/slab/{n}/objects")).and_then(|o| {
            o.split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
        });
        let merged = std::fs::symlink_metadata(format!("/sys/kernel/slab/{n}"))
            .map(|md| md.file_type().is_symlink())
            .unwrap_or(false);
        m.insert(
            n,
            SlabInfo {
                objects: objs,
                merged,
            },
        );
    }
    m
}
