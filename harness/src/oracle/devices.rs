//! The device-state model: what the guest must show, given the devices QEMU has, against what
//! it does show. The harness started every device and did every `device_add`/`device_del`
//! itself, so it knows which devnos exist; after the program's cleanup (every mdev removed,
//! every touched subchannel given back to the driver the machine's subchannels rest on) the
//! guest must show exactly those: a subchannel for each, with its ccw device online under
//! io_subchannel or (a machine at rest on vfio_ccw) bound to vfio_ccw, nothing that names a
//! device QEMU no longer has, no ccw device without a subchannel and no mdev without its
//! parent.
//!
//! An I/O subchannel that names no device at all is not a disagreement: when a device bound
//! to io_subchannel is unplugged, QEMU's subchannel stays valid without a device, cio takes
//! the "unregister the ccw device, keep the subchannel" path (IO_SCH_UNREG_ATTACH), and the
//! guest keeps an empty subchannel (recorded on the clean 6.12.117 kernel:
//! tests/data/devices/6.12-unplug-idle-empty-subchannel.list.json).

use std::collections::BTreeSet;

use ccwrig_proto::data::{Snapshot, SubchannelInfo};
use ccwrig_proto::Rest;
use serde::{Deserialize, Serialize};

/// What the harness did to QEMU's devices, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// `device_del` of the device with this guest bus id (`0.0.0002`) succeeded.
    Removed(String),
    /// `device_add` of it succeeded.
    Added(String),
}

/// The bus ids QEMU has at the end: the machine's devices, then each event in order.
pub fn expected_present(machine: &[String], events: &[HostEvent]) -> BTreeSet<String> {
    let mut present: BTreeSet<String> = machine.iter().cloned().collect();
    for e in events {
        match e {
            HostEvent::Removed(b) => {
                present.remove(b);
            }
            HostEvent::Added(b) => {
                present.insert(b.clone());
            }
        }
    }
    present
}

/// I/O subchannels (type 0); the others (CHSC, message) have no device behind them.
fn io_subchannels(view: &Snapshot) -> impl Iterator<Item = &SubchannelInfo> {
    view.css
        .iter()
        .filter(|s| s.kind.as_deref().is_none_or(|t| t == "0"))
}

/// One way the guest disagrees with the devices QEMU has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Disagreement {
    /// QEMU has the device; the guest shows no subchannel for it.
    Missing { devno: String },
    /// An I/O subchannel that still names a device QEMU does not have.
    Lingering { schid: String, devno: String },
    /// A ccw device on the bus for a device QEMU does not have.
    GoneCcw { busid: String },
    /// The device's subchannel is not back under io_subchannel with its ccw device online
    /// (machines at rest on io_subchannel), or it is under io_subchannel without its ccw
    /// device online (machines at rest on vfio_ccw: the cleanup waits for the device before
    /// it gives the subchannel back, and leaves it where it is when the device does not come).
    NotRestored {
        devno: String,
        schid: String,
        driver: Option<String>,
        online: Option<String>,
        /// The ccw device's `availability`; none (and no `online`) when the subchannel has no
        /// ccw device.
        availability: Option<String>,
    },
    /// On a machine at rest on vfio_ccw, the device's subchannel is with neither vfio_ccw nor
    /// io_subchannel (where the cleanup leaves one whose ccw device it waited for in vain).
    NotParked {
        devno: String,
        schid: String,
        driver: Option<String>,
    },
    /// A ccw device on the bus that no subchannel shows as its child.
    OrphanCcw { busid: String },
    /// An mdev whose parent subchannel is gone.
    OrphanMdev {
        uuid: String,
        parent: Option<String>,
    },
}

impl Disagreement {
    pub fn title(&self) -> String {
        match self {
            Disagreement::Missing { devno } => {
                format!("device {devno} missing in the guest though QEMU has it")
            }
            Disagreement::Lingering { schid, devno } => {
                format!("subchannel {schid} still shows device {devno}, which QEMU does not have")
            }
            Disagreement::GoneCcw { busid } => {
                format!("ccw device {busid} still registered, QEMU does not have it")
            }
            Disagreement::NotRestored {
                devno,
                schid,
                driver,
                online,
                ..
            } => format!(
                "device {devno} on {schid} not back online under io_subchannel (driver {}, online {})",
                driver.as_deref().unwrap_or("none"),
                online.as_deref().unwrap_or("-")
            ),
            Disagreement::NotParked {
                devno,
                schid,
                driver,
            } => format!(
                "device {devno} on {schid} not back with vfio_ccw (driver {})",
                driver.as_deref().unwrap_or("none")
            ),
            Disagreement::OrphanCcw { busid } => {
                format!("ccw device {busid} without a subchannel")
            }
            Disagreement::OrphanMdev { uuid, parent } => format!(
                "mdev {uuid} outlives its parent subchannel {}",
                parent.as_deref().unwrap_or("?")
            ),
        }
    }

    /// The dedup key: the kind of disagreement, not which device.
    pub fn key(&self) -> &'static str {
        match self {
            Disagreement::Missing { .. } => "device missing",
            Disagreement::Lingering { .. } => "subchannel names a device QEMU does not have",
            Disagreement::GoneCcw { .. } => "ccw device QEMU does not have",
            Disagreement::NotRestored { .. } => "device not restored",
            Disagreement::NotParked { .. } => "device not back with vfio_ccw",
            Disagreement::OrphanCcw { .. } => "ccw device without subchannel",
            Disagreement::OrphanMdev { .. } => "mdev without parent",
        }
    }
}

/// Whether `found` can no longer change once the guest's channel subsystem has settled: every
/// disagreement is a subchannel the guest shows for no device, no subchannel for a device QEMU
/// has, one the cleanup (done) did not give back to vfio_ccw, or an offline ccw device cio
/// holds not operational. Those change only by cio's evaluation of subchannels and channel
/// reports, which `/proc/cio_settle` waits for. An offline ccw device cio finds fine may still
/// wait for its auto-online on the async work queue, which the settle does not wait for; one
/// that is not operational (its online failed so, `no device` or `no path`) is set online by
/// nothing but a new evaluation: cio's recovery timer retries only disconnected devices, and
/// those stay online. Nor does a subchannel under io_subchannel whose ccw device cio removed.
pub fn final_once_settled(found: &[Disagreement]) -> bool {
    !found.is_empty()
        && found.iter().all(|d| match d {
            Disagreement::Missing { .. }
            | Disagreement::Lingering { .. }
            | Disagreement::NotParked { .. } => true,
            Disagreement::NotRestored {
                driver,
                online,
                availability,
                ..
            } => match (online.as_deref(), availability.as_deref()) {
                (Some("0"), Some("no device" | "no path")) => true,
                // Bound to io_subchannel with no ccw device: cio unregistered the one it
                // found not operational, and only an evaluation of the subchannel attaches a
                // new one.
                (None, None) => driver.as_deref() == Some(ccwrig_proto::DRIVER_IO_SUBCHANNEL),
                _ => false,
            },
            _ => false,
        })
}

/// Compares the devices QEMU has (`present`, bus ids) with the guest's view after cleanup
/// (the agent's snapshot), for a machine whose subchannels rest on `rest`.
pub fn compare(present: &BTreeSet<String>, view: &Snapshot, rest: Rest) -> Vec<Disagreement> {
    let mut out = Vec::new();
    for devno in present {
        match io_subchannels(view).find(|s| s.devno.as_deref() == Some(devno.as_str())) {
            None => out.push(Disagreement::Missing {
                devno: devno.clone(),
            }),
            Some(s) => {
                // The agent's own port rests where the guest booted it, whatever the machine.
                let rest = if *devno == crate::vm::qemu_args::AGENT_SERIAL_DEVNO.as_listed() {
                    Rest::IoSubchannel
                } else {
                    rest
                };
                let online = s.ccw_device.as_ref().and_then(|c| c.online.clone());
                let io = s.driver.as_deref() == Some(ccwrig_proto::DRIVER_IO_SUBCHANNEL);
                let up = online.as_deref() == Some("1");
                let restored = || Disagreement::NotRestored {
                    devno: devno.clone(),
                    schid: s.schid.clone(),
                    driver: s.driver.clone(),
                    online: online.clone(),
                    availability: s.ccw_device.as_ref().and_then(|c| c.availability.clone()),
                };
                // At rest on vfio_ccw, a device under io_subchannel online is no disagreement:
                // the cleanup stopped waiting for it (and left it there) before it came.
                match rest {
                    Rest::IoSubchannel if !(io && up) => out.push(restored()),
                    Rest::VfioCcw if io && !up => out.push(restored()),
                    Rest::VfioCcw if !io && s.driver.as_deref() != Some(rest.driver()) => {
                        out.push(Disagreement::NotParked {
                            devno: devno.clone(),
                            schid: s.schid.clone(),
                            driver: s.driver.clone(),
                        })
                    }
                    _ => {}
                }
            }
        }
    }
    for s in io_subchannels(view) {
        if let Some(d) = s.devno.as_ref().filter(|d| !present.contains(*d)) {
            out.push(Disagreement::Lingering {
                schid: s.schid.clone(),
                devno: d.clone(),
            });
        }
    }
    for b in view.ccw_bus.iter().filter(|b| !present.contains(*b)) {
        out.push(Disagreement::GoneCcw { busid: b.clone() });
    }
    let children: BTreeSet<&str> = view
        .css
        .iter()
        .filter_map(|s| s.ccw_device.as_ref().map(|c| c.busid.as_str()))
        .collect();
    for b in &view.ccw_bus {
        if !children.contains(b.as_str()) {
            out.push(Disagreement::OrphanCcw { busid: b.clone() });
        }
    }
    let schids: BTreeSet<&str> = view.css.iter().map(|s| s.schid.as_str()).collect();
    for m in &view.mdevs {
        if !m.parent.as_deref().is_some_and(|p| schids.contains(p)) {
            out.push(Disagreement::OrphanMdev {
                uuid: m.uuid.clone(),
                parent: m.parent.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(json: &str) -> Snapshot {
        serde_json::from_str(json).expect("a snapshot as the agent writes it")
    }

    /// Recorded from a real guest (see tests/data/devices/README.md).
    const REPLUGGED: &str = include_str!("../../tests/data/devices/6.12-replugged-fd-closed.json");
    const EMPTY_AFTER_UNPLUG: &str =
        include_str!("../../tests/data/devices/6.12-unplug-idle-empty-subchannel.list.json");

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_expected_devices_follow_the_host_events() {
        let machine = vec!["0.0.0002".to_string(), "0.0.0003".to_string()];
        let ev = [
            HostEvent::Removed("0.0.0002".into()),
            HostEvent::Added("0.0.0002".into()),
            HostEvent::Removed("0.0.0003".into()),
        ];
        assert_eq!(expected_present(&machine, &ev), set(&["0.0.0002"]));
        assert_eq!(
            expected_present(&machine, &[]),
            set(&["0.0.0002", "0.0.0003"])
        );
    }

    #[test]
    fn a_replug_that_went_through_agrees() {
        let v = view(REPLUGGED);
        let machine = vec!["0.0.0002".into(), "0.0.0003".into(), "0.0.a6e0".into()];
        let ev = [
            HostEvent::Removed("0.0.0002".into()),
            HostEvent::Added("0.0.0002".into()),
        ];
        let present = expected_present(&machine, &ev);
        assert!(compare(&present, &v, Rest::IoSubchannel).is_empty());
        // Had QEMU not re-added it, the guest's subchannel for it would be lingering.
        let ev = [HostEvent::Removed("0.0.0002".into())];
        let got = compare(&expected_present(&machine, &ev), &v, Rest::IoSubchannel);
        assert_eq!(
            got,
            vec![
                Disagreement::Lingering {
                    schid: "0.0.0000".into(),
                    devno: "0.0.0002".into(),
                },
                Disagreement::GoneCcw {
                    busid: "0.0.0002".into()
                }
            ]
        );
    }

    /// An io_subchannel device unplugged on the clean kernel: the guest keeps an empty
    /// subchannel (QEMU's subchannel stays valid without a device). That agrees.
    #[test]
    fn an_empty_subchannel_after_an_unplug_agrees() {
        let list: ccwrig_proto::data::SubchannelList = serde_json::from_str(EMPTY_AFTER_UNPLUG)
            .expect("a subchannel list as the agent writes it");
        let v = Snapshot {
            css: list.subchannels,
            ccw_bus: vec!["0.0.0002".into(), "0.0.a6e0".into()],
            ..Default::default()
        };
        let machine = vec!["0.0.0002".into(), "0.0.0003".into(), "0.0.a6e0".into()];
        let present = expected_present(&machine, &[HostEvent::Removed("0.0.0003".into())]);
        assert!(
            compare(&present, &v, Rest::IoSubchannel).is_empty(),
            "{:?}",
            compare(&present, &v, Rest::IoSubchannel)
        );
        // A ccw device of the unplugged one still on the bus is not.
        let mut kept = v.clone();
        kept.ccw_bus.push("0.0.0003".into());
        assert_eq!(
            compare(&present, &kept, Rest::IoSubchannel),
            vec![
                Disagreement::GoneCcw {
                    busid: "0.0.0003".into()
                },
                Disagreement::OrphanCcw {
                    busid: "0.0.0003".into()
                }
            ]
        );
    }

    /// Only what cio's evaluation alone decides is final once cio has settled: a lost or a kept
    /// subchannel. A device not back online may still wait for its auto-online; a lingering
    /// subchannel's ccw device (a second disagreement) keeps the wait too.
    #[test]
    fn only_subchannels_lost_or_kept_by_cio_are_final_once_it_settled() {
        let missing = Disagreement::Missing {
            devno: "0.0.0002".into(),
        };
        let lingering = Disagreement::Lingering {
            schid: "0.0.0000".into(),
            devno: "0.0.0002".into(),
        };
        let not_online = Disagreement::NotRestored {
            devno: "0.0.0002".into(),
            schid: "0.0.0000".into(),
            driver: Some("io_subchannel".into()),
            online: Some("0".into()),
            availability: Some("good".into()),
        };
        let gone_ccw = Disagreement::GoneCcw {
            busid: "0.0.0002".into(),
        };
        assert!(final_once_settled(std::slice::from_ref(&missing)));
        assert!(final_once_settled(&[missing.clone(), lingering.clone()]));
        assert!(!final_once_settled(&[]));
        assert!(!final_once_settled(&[missing, not_online]));
        assert!(!final_once_settled(&[lingering, gone_ccw]));
    }

    /// A device whose online failed because cio holds it not operational (QEMU's sticky
    /// deferred cc 3), or whose ccw device cio then removed from its io_subchannel (the lost
    /// device of `unbind_during_ccw_auto_online`), is final once cio has settled; one cio finds
    /// fine, an online one, or a subchannel with another driver or none, is not.
    #[test]
    fn an_offline_device_cio_holds_not_operational_is_final_once_it_settled() {
        let not_restored =
            |driver: Option<&str>, online: Option<&str>, availability: Option<&str>| {
                Disagreement::NotRestored {
                    devno: "0.0.0002".into(),
                    schid: "0.0.0000".into(),
                    driver: driver.map(Into::into),
                    online: online.map(Into::into),
                    availability: availability.map(Into::into),
                }
            };
        let io = Some("io_subchannel");
        let missing = Disagreement::Missing {
            devno: "0.0.0003".into(),
        };
        assert!(final_once_settled(&[not_restored(
            io,
            Some("0"),
            Some("no device")
        )]));
        assert!(final_once_settled(&[
            not_restored(io, Some("0"), Some("no path")),
            missing
        ]));
        // No ccw device under the subchannel.
        assert!(final_once_settled(&[not_restored(io, None, None)]));
        assert!(!final_once_settled(&[not_restored(
            Some("vfio_ccw"),
            None,
            None
        )]));
        assert!(!final_once_settled(&[not_restored(None, None, None)]));
        assert!(!final_once_settled(&[not_restored(
            io,
            Some("0"),
            Some("good")
        )]));
        assert!(!final_once_settled(&[not_restored(
            io,
            Some("0"),
            Some("boxed")
        )]));
        assert!(!final_once_settled(&[not_restored(io, Some("0"), None)]));
        assert!(!final_once_settled(&[not_restored(
            io,
            Some("1"),
            Some("no device")
        )]));
    }

    /// At rest on vfio_ccw: a subchannel given back to vfio_ccw agrees (it has no ccw
    /// device); one left under io_subchannel with its device not online is the lost device
    /// with the title it has on any machine; one whose device came online after the cleanup
    /// stopped waiting agrees too (a slow device is no finding on either machine); an unbound
    /// one was not given back. The agent's own port stays under io_subchannel everywhere.
    #[test]
    fn a_machine_at_rest_on_vfio_ccw_expects_its_subchannels_there() {
        let v = view(
            r#"{
          "css": [
            {"schid": "0.0.0000", "type": "0", "driver": "vfio_ccw", "devno": "0.0.0002", "ccw_device": null},
            {"schid": "0.0.0001", "type": "0", "driver": "io_subchannel", "devno": "0.0.0003",
             "ccw_device": {"busid": "0.0.0003", "online": "0"}},
            {"schid": "0.0.0002", "type": "0", "driver": "io_subchannel", "devno": "0.0.0004",
             "ccw_device": {"busid": "0.0.0004", "online": "1"}},
            {"schid": "0.0.0003", "type": "0", "driver": null, "devno": "0.0.0005", "ccw_device": null},
            {"schid": "0.0.0004", "type": "0", "driver": "io_subchannel", "devno": "0.0.a6e0",
             "ccw_device": {"busid": "0.0.a6e0", "online": "1"}}
          ],
          "ccw_bus": ["0.0.0003", "0.0.0004", "0.0.a6e0"],
          "mdevs": []
        }"#,
        );
        let present = set(&["0.0.0002", "0.0.0003", "0.0.0004", "0.0.0005", "0.0.a6e0"]);
        let titles: Vec<String> = compare(&present, &v, Rest::VfioCcw)
            .iter()
            .map(Disagreement::title)
            .collect();
        assert_eq!(
            titles,
            vec![
                "device 0.0.0003 on 0.0.0001 not back online under io_subchannel (driver io_subchannel, online 0)",
                "device 0.0.0005 on 0.0.0003 not back with vfio_ccw (driver none)",
            ]
        );
        // The same guest judged at rest on io_subchannel: everything but 0.0.0004 is off.
        let keys: Vec<&str> = compare(&present, &v, Rest::IoSubchannel)
            .iter()
            .map(Disagreement::key)
            .collect();
        assert_eq!(keys, vec!["device not restored"; 3]);
    }

    #[test]
    fn every_disagreement_is_named() {
        let v = view(
            r#"{
          "css": [
            {"schid": "0.0.0000", "type": "0", "driver": "vfio_ccw", "devno": "0.0.0002", "ccw_device": null},
            {"schid": "0.0.0001", "type": "0", "driver": "io_subchannel", "devno": "0.0.0003",
             "ccw_device": {"busid": "0.0.0003", "online": "0"}}
          ],
          "ccw_bus": ["0.0.0003", "0.0.0009"],
          "mdevs": [{"uuid": "u1", "parent": "0.0.0005"}]
        }"#,
        );
        let present = set(&["0.0.0003", "0.0.0004"]);
        let got = compare(&present, &v, Rest::IoSubchannel);
        let keys: Vec<&str> = got.iter().map(Disagreement::key).collect();
        assert_eq!(
            keys,
            vec![
                "device not restored",
                "device missing",
                "subchannel names a device QEMU does not have",
                "ccw device QEMU does not have",
                "ccw device without subchannel",
                "mdev without parent",
            ],
            "{got:?}"
        );
        assert_eq!(
            got[2].title(),
            "subchannel 0.0.0000 still shows device 0.0.0002, which QEMU does not have"
        );
    }
}
