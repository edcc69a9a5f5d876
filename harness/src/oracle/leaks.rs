//! Compares two guest snapshots (the agent's `snapshot` op, `images/agent/src/ops/snapshot.rs`)
//! taken before and after a scenario: whatever the scenario created and did not give back.

use ccwrig_proto::data::Snapshot;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The parts of the agent's snapshot JSON that leak checks read. Missing fields are empty:
/// an older agent or a kernel without slabinfo yields fewer checks, not an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SysSnapshot {
    /// Object count per `vfio_ccw*` slab cache.
    pub slabs: BTreeMap<String, u64>,
    /// `mdev_supported_types/vfio_ccw-io/available_instances` per subchannel.
    pub available_instances: BTreeMap<String, u64>,
    /// Bound driver per subchannel (None: unbound).
    pub drivers: BTreeMap<String, Option<String>>,
    pub mdevs: BTreeSet<String>,
    /// `/dev/vfio/*` (groups) and `/dev/vfio/devices/*` (cdevs), as `vfio/N`, `devices/vfioN`.
    pub dev_nodes: BTreeSet<String>,
    /// Device/container handles the agent still holds.
    pub agent_handles: BTreeSet<String>,
}

impl SysSnapshot {
    pub fn of(v: &Snapshot) -> Self {
        let mut s = SysSnapshot::default();
        for sch in &v.css {
            s.drivers.insert(sch.schid.clone(), sch.driver.clone());
            if let Some(n) = sch.available_instances {
                s.available_instances.insert(sch.schid.clone(), n);
            }
        }
        s.mdevs.extend(v.mdevs.iter().map(|m| m.uuid.clone()));
        s.dev_nodes
            .extend(v.dev_vfio.iter().map(|n| format!("vfio/{n}")));
        s.dev_nodes
            .extend(v.dev_vfio_devices.iter().map(|n| format!("devices/{n}")));
        for (name, c) in &v.slabs {
            if let Some(n) = c.objects {
                s.slabs.insert(name.clone(), n);
            }
        }
        s.agent_handles.extend(v.agent.handles.keys().cloned());
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Leak {
    /// More objects in a driver cache than before. With slab merging the cache may be shared,
    /// so this is evidence to look at, not proof.
    Slab {
        cache: String,
        before: u64,
        after: u64,
    },
    /// A parent has fewer free mdev instances than before.
    Instances {
        schid: String,
        before: u64,
        after: u64,
    },
    Mdev {
        uuid: String,
    },
    DevNode {
        node: String,
    },
    AgentHandle {
        name: String,
    },
    /// A subchannel present before is gone: the driver unregistered it (docs/DESIGN.md,
    /// 'Unplug and remove while a user holds the device').
    SubchannelGone {
        schid: String,
    },
    /// kmemleak reported an unreferenced object; `title` is the crash oracle's
    /// (`memory leak in <first frame that is not an allocator>`).
    Kmemleak {
        title: String,
        guilty: String,
    },
}

impl Leak {
    /// What the comparison saw, in words, for the finding's detail.
    pub fn describe(&self) -> String {
        match self {
            Leak::Slab {
                cache,
                before,
                after,
            } => format!(
                "the {cache} slab cache held {before} objects before the program and {after} after its cleanup"
            ),
            Leak::Instances {
                schid,
                before,
                after,
            } => format!(
                "{schid} offered {before} mdev instances (available_instances) before the program and {after} after its cleanup"
            ),
            Leak::Mdev { uuid } => {
                format!("mdev {uuid} was created by the program and still exists after its cleanup")
            }
            Leak::DevNode { node } => {
                format!("/dev/{node} appeared during the program and still exists after its cleanup")
            }
            Leak::AgentHandle { name } => {
                format!("the agent still holds handle {name} after the program's cleanup")
            }
            Leak::SubchannelGone { schid } => format!(
                "subchannel {schid} was in /sys/bus/css/devices before the program and is gone after its cleanup, though the program unplugged no device"
            ),
            Leak::Kmemleak { title, guilty } => {
                format!("kmemleak: {title} (allocated from {guilty})")
            }
        }
    }
}

pub fn compare(baseline: &SysSnapshot, after: &SysSnapshot) -> Vec<Leak> {
    let mut out = Vec::new();
    for (cache, &a) in &after.slabs {
        let b = baseline.slabs.get(cache).copied().unwrap_or(0);
        if a > b {
            out.push(Leak::Slab {
                cache: cache.clone(),
                before: b,
                after: a,
            });
        }
    }
    for (schid, &b) in &baseline.available_instances {
        match after.available_instances.get(schid) {
            Some(&a) if a < b => out.push(Leak::Instances {
                schid: schid.clone(),
                before: b,
                after: a,
            }),
            _ => {}
        }
    }
    out.extend(
        after
            .mdevs
            .difference(&baseline.mdevs)
            .map(|u| Leak::Mdev { uuid: u.clone() }),
    );
    out.extend(
        after
            .dev_nodes
            .difference(&baseline.dev_nodes)
            .map(|n| Leak::DevNode { node: n.clone() }),
    );
    out.extend(
        after
            .agent_handles
            .difference(&baseline.agent_handles)
            .map(|n| Leak::AgentHandle { name: n.clone() }),
    );
    out.extend(
        baseline
            .drivers
            .keys()
            .filter(|s| !after.drivers.contains_key(*s))
            .map(|s| Leak::SubchannelGone { schid: s.clone() }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A finding's detail is a sentence for the report, not the Rust value (it once read
    /// `SubchannelGone { schid: "0.0.0000" }`).
    #[test]
    fn a_leak_is_described_in_words() {
        let d = Leak::SubchannelGone {
            schid: "0.0.0000".into(),
        }
        .describe();
        assert!(
            d.starts_with("subchannel 0.0.0000 was in /sys/bus/css/devices"),
            "{d}"
        );
        let d = Leak::Slab {
            cache: "vfio_ccw_io_region".into(),
            before: 1,
            after: 2,
        }
        .describe();
        assert!(
            !d.contains('{') && d.contains("held 1 objects") && d.contains("2 after"),
            "{d}"
        );
    }

    fn snapshot(v: serde_json::Value) -> Snapshot {
        serde_json::from_value(v).expect("a snapshot as the agent writes it")
    }

    #[test]
    fn finds_what_was_not_given_back_and_tolerates_missing_fields() {
        let before = SysSnapshot::of(&snapshot(json!({
            "css": [{"schid": "0.0.0000", "driver": "vfio_ccw", "available_instances": 1},
                    {"schid": "0.0.0001", "driver": "io_subchannel", "available_instances": null}],
            "mdevs": [], "dev_vfio": ["vfio"], "dev_vfio_devices": [],
            "slabs": {"vfio_ccw_io_region": {"objects": 0, "merged": false}},
            "agent": {"handles": {}}
        })));
        let after = SysSnapshot::of(&snapshot(json!({
            "css": [{"schid": "0.0.0000", "driver": "vfio_ccw", "available_instances": 0}],
            "mdevs": [{"uuid": "u1", "parent": "0.0.0000"}], "dev_vfio": ["vfio", "0"],
            "slabs": {"vfio_ccw_io_region": {"objects": 1}},
        })));
        let leaks = compare(&before, &after);
        assert_eq!(
            leaks,
            vec![
                Leak::Slab {
                    cache: "vfio_ccw_io_region".into(),
                    before: 0,
                    after: 1
                },
                Leak::Instances {
                    schid: "0.0.0000".into(),
                    before: 1,
                    after: 0
                },
                Leak::Mdev { uuid: "u1".into() },
                Leak::DevNode {
                    node: "vfio/0".into()
                },
                Leak::SubchannelGone {
                    schid: "0.0.0001".into()
                },
            ]
        );
        assert_eq!(
            SysSnapshot::of(&Snapshot::default()),
            SysSnapshot::default()
        );
        assert!(compare(&before, &before).is_empty());
    }
}
