//! A picture of the vfio-ccw world in sysfs/devfs plus what the agent holds: used to check
//! that teardown left nothing behind.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use super::OpRes;
use crate::paths;
use crate::state::{lock, Agent};
use crate::sys;

pub fn take(agent: &Arc<Agent>) -> OpRes {
    let subchannels: Vec<Value> = sys::dir_names(paths::CSS_DEVICES)
        .iter()
        .map(|s| {
            let d = paths::subchannel(&s);
            json!({
                "schid": s,
                "driver": sys::link_name(format!("{d}/driver")),
                "available_instances": sys::read_attr(format!("{d}/mdev_supported_types/vfio_ccw-io/available_instances"))
                    .and_then(|a| a.parse::<u64>().ok()),
            })
        })
        .collect();
    let mdevs: Vec<Value> = sys::dir_names(paths::MDEV_DEVICES)
        .iter()
        .map(|u| {
            let d = paths::mdev(&u);
            let parent = std::fs::canonicalize(&d)
                .ok()
                .and_then(|p| p.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()));
            json!({"uuid": u, "parent": parent, "iommu_group": sys::link_name(format!("{d}/iommu_group")),
                   "vfio_dev": sys::dir_names(format!("{d}/vfio-dev"))})
        })
        .collect();
    let handles: serde_json::Map<String, Value> = lock(&agent.handles)
        .iter()
        .map(|(k, h)| (k.clone(), h.summary()))
        .collect();
    let named: serde_json::Map<String, Value> = lock(&agent.mdevs)
        .iter()
        .map(|(k, m)| (k.clone(), json!({"uuid": m.uuid, "parent": m.parent})))
        .collect();
    Ok(json!({
        "subchannels": subchannels,
        // What the device-state oracle compares with the devices QEMU has: every subchannel
        // as `list_subchannels` describes it, and every ccw device on the ccw bus.
        "css": sys::dir_names(paths::CSS_DEVICES).iter().map(|s| super::css::describe(s)).collect::<Vec<_>>(),
        "ccw_bus": sys::dir_names(paths::CCW_DEVICES),
        "mdevs": mdevs,
        "dev_vfio": sys::dir_names("/dev/vfio").into_iter().filter(|n| n != "devices").collect::<Vec<_>>(),
        "dev_vfio_devices": sys::dir_names("/dev/vfio/devices"),
        "slabs": slabs(),
        "d_state": d_state_tasks(),
        "agent": {
            "handles": handles,
            "mdev_names": named,
            "touched": *lock(&agent.touched),
            "running": agent.running.load(Ordering::SeqCst),
        },
    }))
}

/// Threads in uninterruptible sleep (state D) other than the agent's own (a blocked step is
/// reported as such): a kernel worker or process left waiting for something that will not
/// come is a hang without a step to show it, and it keeps the guest from powering off.
fn d_state_tasks() -> Vec<Value> {
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
                out.push(json!({
                    "tid": tid.parse::<u64>().ok(),
                    "comm": comm,
                    "wchan": sys::read_attr(format!("{base}/wchan")),
                }));
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
fn slabs() -> Value {
    let mut m = serde_json::Map::new();
    for n in sys::dir_names("/sys/kernel/slab")
        .into_iter()
        .filter(|n| n.starts_with("vfio_ccw"))
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
        m.insert(n, json!({"objects": objs, "merged": merged}));
    }
    Value::Object(m)
}
