//! Subchannels on the css bus: listing, driver binding (docs/DESIGN.md, 'Binding, creating
//! and opening an mdev'), rescan.

use std::sync::Arc;

use ccwrig_proto::data::{CcwDeviceInfo, SubchannelInfo, SubchannelList};
use serde_json::{json, Value};

use super::{OpError, OpRes};
use crate::paths;
use crate::state::Agent;
use crate::sys;

const CSS: &str = paths::CSS_DEVICES;

pub fn list() -> OpRes {
    Ok(json!(SubchannelList { subchannels: all() }))
}

/// Every subchannel, described.
pub fn all() -> Vec<SubchannelInfo> {
    sys::dir_names(CSS).iter().map(|s| describe(s)).collect()
}

/// What sysfs says about one subchannel. The devno is the ccw child's bus id when a ccw
/// device exists; bound to vfio_ccw there is no child, and `dev_busid` still names it.
pub fn describe(schid: &str) -> SubchannelInfo {
    let d = format!("{CSS}/{schid}");
    let child = sys::dir_names(&d).into_iter().find(|n| is_busid(n));
    let busid = sys::read_attr(format!("{d}/dev_busid")).filter(|s| s != "none");
    SubchannelInfo {
        schid: schid.to_string(),
        kind: sys::read_attr(format!("{d}/type")),
        driver: sys::link_name(format!("{d}/driver")),
        driver_override: sys::read_attr(format!("{d}/driver_override")).filter(|s| s != "(null)"),
        modalias: sys::read_attr(format!("{d}/modalias")),
        devno: child.clone().or(busid),
        ccw_device: child.map(|c| CcwDeviceInfo {
            cutype: sys::read_attr(format!("{d}/{c}/cutype")),
            devtype: sys::read_attr(format!("{d}/{c}/devtype")),
            online: sys::read_attr(format!("{d}/{c}/online")),
            driver: sys::link_name(format!("{d}/{c}/driver")),
            availability: sys::read_attr(format!("{d}/{c}/availability")),
            busid: c,
        }),
        available_instances: sys::read_attr(format!(
            "{d}/mdev_supported_types/vfio_ccw-io/available_instances"
        ))
        .and_then(|a| a.parse().ok()),
    }
}

fn is_busid(n: &str) -> bool {
    let p: Vec<&str> = n.split('.').collect();
    p.len() == 3 && p[2].len() == 4 && p.iter().all(|x| x.chars().all(|c| c.is_ascii_hexdigit()))
}

fn check_schid(schid: &str) -> Result<String, OpError> {
    if !is_busid(schid) {
        return Err(OpError::failed(format!("not a subchannel id: {schid:?}")));
    }
    let d = format!("{CSS}/{schid}");
    if !std::path::Path::new(&d).exists() {
        return Err(OpError::failed(format!("no subchannel {schid}")));
    }
    Ok(d)
}

/// Binds `schid` to `driver`: driver_override first (so no other driver grabs it between the
/// unbind and the bind), then unbind from the current driver, then bind. Binding back to
/// io_subchannel clears the override instead.
pub fn bind(agent: &Arc<Agent>, schid: &str, driver: &str) -> OpRes {
    prepare_bind(agent, schid, driver)?.finish()
}

/// A bind made up to its last write: the override set and the subchannel unbound from the
/// driver it had; [`Bind::finish`] binds it.
pub struct Bind {
    dir: String,
    schid: String,
    driver: String,
    current: Option<String>,
    steps: Vec<String>,
    /// Bound to the driver before (nothing left to write).
    already_bound: bool,
}

impl Bind {
    fn data(&self) -> Value {
        json!({"schid": self.schid, "from": self.current, "steps": self.steps})
    }

    pub fn finish(mut self) -> OpRes {
        if self.already_bound {
            return Ok(self.data());
        }
        // Unbinding can trigger a reprobe that already bound the target driver.
        if sys::link_name(format!("{}/driver", self.dir)).as_deref() != Some(&self.driver) {
            sys::write_attr(
                &format!("/sys/bus/css/drivers/{}/bind", self.driver),
                &self.schid,
            )
            .map_err(|e| OpError::from(e).with_data(self.data()))?;
            self.steps.push(format!("bound to {}", self.driver));
        }
        let mut v = self.data();
        v["driver"] = json!(sys::link_name(format!("{}/driver", self.dir)));
        Ok(v)
    }
}

/// Everything of a bind of `schid` to `driver` but the bind itself.
pub fn prepare_bind(agent: &Arc<Agent>, schid: &str, driver: &str) -> Result<Bind, OpError> {
    let d = check_schid(schid)?;
    if driver.is_empty() || driver.contains('/') {
        return Err(OpError::failed(format!("bad driver name {driver:?}")));
    }
    agent.touch(schid);
    let mut b = Bind {
        current: sys::link_name(format!("{d}/driver")),
        dir: d,
        schid: schid.to_string(),
        driver: driver.to_string(),
        steps: Vec::new(),
        already_bound: false,
    };
    let ovr = if driver == ccwrig_proto::DRIVER_IO_SUBCHANNEL {
        "\n"
    } else {
        driver
    };
    sys::write_attr(&format!("{}/driver_override", b.dir), ovr)
        .map_err(|e| OpError::from(e).with_data(b.data()))?;
    b.steps.push(format!("driver_override={}", ovr.trim()));
    if b.current.as_deref() == Some(driver) {
        b.steps.push("already bound".into());
        b.already_bound = true;
        return Ok(b);
    }
    if let Some(cur) = b.current.clone() {
        sys::write_attr(&format!("/sys/bus/css/drivers/{cur}/unbind"), schid)
            .map_err(|e| OpError::from(e).with_data(b.data()))?;
        b.steps.push(format!("unbound from {cur}"));
    }
    Ok(b)
}

/// Waits (up to `wait_ms`) until the channel subsystem has settled: the channel reports
/// pending handled, the subchannel evaluation finished, cio's work queue drained. A bind to
/// io_subchannel schedules an evaluation that walks every subchannel id, and its ccw device
/// comes online before the walk ends (6 s of walk on a lockdep kernel); a program started
/// inside the walk has its own unregistrations queued behind it. In a shared VM that made
/// `unplug_while_open_idle` miss the removal it waits for. The write blocks in the kernel, so
/// it runs on a thread of its own that a timeout leaves behind.
pub fn settle(wait_ms: u64) -> Value {
    let t0 = sys::monotonic_us();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("cio-settle".into())
        .spawn(move || {
            // The receiver may be gone after a timeout: nothing is waiting any more.
            let _ = tx.send(sys::write_attr(paths::CIO_SETTLE, "1"));
        });
    if let Err(e) = spawned {
        return json!({"error": format!("spawn: {e}")});
    }
    let waited_ms = |t0| (sys::monotonic_us() - t0) / 1000;
    match rx.recv_timeout(std::time::Duration::from_millis(wait_ms)) {
        Ok(Ok(())) => json!({"settled_after_ms": waited_ms(t0)}),
        Ok(Err(e)) => json!({"error": e.to_string()}),
        Err(_) => json!({"not_settled_after_ms": waited_ms(t0)}),
    }
}

/// Waits until the ccw device below `schid` is online: binding io_subchannel only schedules
/// virtio_ccw's auto-online on the async work queue, and unbinding again while that work
/// runs crashes or hangs the kernel (scenarios/findings/unbind-vs-ccw-auto-online.md).
/// Cleanup waits here so that the next program does not start inside that window.
pub fn await_online(schid: &str, wait_ms: u64) -> Value {
    let d = paths::subchannel(schid);
    let t0 = sys::monotonic_us();
    // Backing off bounds the number of polls (about 45 in any wait): on a cover kernel every
    // poll's readdir and read land in the cleanup step's KCOV buffer, and 5 ms polls through
    // a slow auto-online filled it.
    let max_pause_ms = (wait_ms / 40).max(50);
    let mut pause_ms = 5;
    loop {
        let online = sys::dir_names(&d)
            .into_iter()
            .filter(|n| n.starts_with("0."))
            .find_map(|n| sys::read_attr(format!("{d}/{n}/online")));
        let waited_ms = (sys::monotonic_us() - t0) / 1000;
        match online.as_deref() {
            Some("1") => return json!({"online_after_ms": waited_ms}),
            _ if waited_ms >= wait_ms => {
                return json!({"online": online, "not_online_after_ms": waited_ms})
            }
            _ => {
                std::thread::sleep(std::time::Duration::from_millis(pause_ms));
                pause_ms = (pause_ms * 2).min(max_pause_ms);
            }
        }
    }
}

pub fn unbind(agent: &Arc<Agent>, schid: &str) -> OpRes {
    let d = check_schid(schid)?;
    agent.touch(schid);
    match sys::link_name(format!("{d}/driver")) {
        Some(cur) => {
            sys::write_attr(&format!("/sys/bus/css/drivers/{cur}/unbind"), schid)?;
            Ok(json!({"schid": schid, "unbound_from": cur}))
        }
        None => Ok(json!({"schid": schid, "unbound_from": null})),
    }
}

pub fn rescan() -> OpRes {
    sys::write_attr("/sys/devices/css0/rescan", "1")?;
    Ok(Value::Null)
}
