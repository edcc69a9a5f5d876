//! Channel paths and ccw devices as a guest's administrator moves them: `chp` (vary a path
//! off and on, or ask SCLP to (de)configure it) and `online` (a ccw device's `online`).

use std::sync::Arc;
use std::time::Duration;

use ccwrig_proto::ChpAction;
use serde_json::{json, Value};

use super::{OpError, OpRes};
use crate::paths;
use crate::state::{lock, Agent};
use crate::sys;

fn check_chpid(chpid: &str) -> Result<String, OpError> {
    let ok = chpid
        .split_once('.')
        .is_some_and(|(c, p)| c.len() == 1 && p.len() == 2)
        && chpid.chars().all(|c| c == '.' || c.is_ascii_hexdigit());
    if !ok {
        return Err(OpError::failed(format!("not a channel path id: {chpid:?}")));
    }
    let d = paths::chp(chpid);
    if !std::path::Path::new(&d).exists() {
        return Err(OpError::failed(format!("no channel path {chpid}")));
    }
    Ok(d)
}

fn state(d: &str) -> Value {
    json!({"status": sys::read_attr(format!("{d}/status")),
           "configure": sys::read_attr(format!("{d}/configure"))})
}

pub fn chp(agent: &Arc<Agent>, chpid: &str, action: ChpAction, hold_ms: Option<u64>) -> OpRes {
    let d = check_chpid(chpid)?;
    let status = format!("{d}/status");
    match action {
        ChpAction::VaryOff => {
            let Some(hold) = hold_ms else {
                return Err(OpError::failed(
                    "vary_off needs hold_ms: the agent's own port is on the path",
                ));
            };
            lock(&agent.varied_off).insert(chpid.to_string());
            sys::write_attr(&status, "offline")?;
            std::thread::sleep(Duration::from_millis(hold));
            let off = state(&d);
            sys::write_attr(&status, "online")
                .map_err(|e| OpError::from(e).with_data(json!({"while_off": off})))?;
            lock(&agent.varied_off).remove(chpid);
            Ok(json!({"while_off": off, "after": state(&d)}))
        }
        ChpAction::VaryOn => {
            sys::write_attr(&status, "online")?;
            lock(&agent.varied_off).remove(chpid);
            Ok(json!({"after": state(&d)}))
        }
        ChpAction::Configure | ChpAction::Deconfigure => {
            let v = if action == ChpAction::Configure {
                "1"
            } else {
                "0"
            };
            sys::write_attr(&format!("{d}/configure"), v)?;
            Ok(json!({"after": state(&d)}))
        }
    }
}

/// The ccw device below a subchannel (io_subchannel's child), by its bus id.
fn ccw_child(schid: &str) -> Result<String, OpError> {
    let d = paths::subchannel(schid);
    sys::dir_names(&d)
        .into_iter()
        .find(|n| n.starts_with("0.") && std::path::Path::new(&format!("{d}/{n}/online")).exists())
        .map(|n| format!("{d}/{n}"))
        .ok_or_else(|| OpError::failed(format!("subchannel {schid} has no ccw device")))
}

pub fn online(agent: &Arc<Agent>, schid: &str, on: bool) -> OpRes {
    let dev = ccw_child(schid)?;
    agent.touch(schid);
    if !on {
        lock(&agent.offline).insert(schid.to_string());
    }
    sys::write_attr(&format!("{dev}/online"), if on { "1" } else { "0" })?;
    if on {
        lock(&agent.offline).remove(schid);
    }
    Ok(json!({"device": dev, "online": sys::read_attr(format!("{dev}/online"))}))
}

/// For `cleanup`: every path varied off goes back on, and every ccw device set offline comes
/// back online (when it is still there and still offline: a rebind may have onlined it).
pub fn restore(agent: &Arc<Agent>) -> Vec<Value> {
    let mut steps = Vec::new();
    let paths_off: Vec<String> = std::mem::take(&mut *lock(&agent.varied_off))
        .into_iter()
        .collect();
    for c in paths_off {
        let r = sys::write_attr(&format!("{}/status", paths::chp(&c)), "online");
        steps.push(json!({"chp": c, "vary_on": r.map_err(|e| e.to_string())}));
    }
    let offline: Vec<String> = std::mem::take(&mut *lock(&agent.offline))
        .into_iter()
        .collect();
    for schid in offline {
        let Ok(dev) = ccw_child(&schid) else {
            steps.push(json!({"schid": schid, "online": "no ccw device"}));
            continue;
        };
        if sys::read_attr(format!("{dev}/online")).as_deref() == Some("0") {
            let r = sys::write_attr(&format!("{dev}/online"), "1");
            steps.push(json!({"schid": schid, "set_online": r.map_err(|e| e.to_string())}));
        }
    }
    steps
}
