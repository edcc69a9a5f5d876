//! The QMP operations on a running inner QEMU: any command, quit, unplug and replug of its
//! vfio-ccw device, system resets.

use serde_json::{json, Value};

use super::super::{OpError, OpRes};
use super::device::{VfioCcw, DEVICE_ID};
use super::{get, EXIT_WAIT_MS, QMP_TIMEOUT_MS};
use crate::qmp::QmpError;
use crate::state::{lock, Agent, InnerQemu};
use crate::sys;

impl InnerQemu {
    fn qmp(&self, command: &str, args: Option<&Value>) -> Result<Value, OpError> {
        self.require_running()?;
        self.qmp
            .execute(command, args, QMP_TIMEOUT_MS)
            .map_err(|e| {
                let data =
                    json!({"command": command, "pid": self.pid, "exited": self.exited().is_some()});
                OpError::Failed(format!("inner QEMU {}: {command}: {e}", self.name), data)
            })
    }
}

pub fn qmp_command(agent: &Agent, name: &str, command: &str, arguments: Option<&Value>) -> OpRes {
    let i = get(agent, name)?;
    let r = i.qmp(command, arguments)?;
    Ok(json!({"return": r}))
}

pub fn quit(agent: &Agent, name: &str) -> OpRes {
    let i = get(agent, name)?;
    i.require_running()?;
    // QEMU may close the socket before its answer is read: that is a successful quit too.
    match i.qmp.execute("quit", None, QMP_TIMEOUT_MS) {
        Ok(_) | Err(QmpError::Closed) => {}
        Err(e) => {
            return Err(OpError::Failed(
                format!("inner QEMU {}: quit: {e}", i.name),
                json!({"pid": i.pid}),
            ))
        }
    }
    match i.wait_exit(EXIT_WAIT_MS) {
        Some(e) => i.exit_result(e),
        None => Err(OpError::Failed(
            format!(
                "inner QEMU {} still running {EXIT_WAIT_MS} ms after quit",
                i.name
            ),
            json!({"pid": i.pid}),
        )),
    }
}

pub fn device_del(agent: &Agent, name: &str, wait_ms: u64) -> OpRes {
    let i = get(agent, name)?;
    let mark = i.qmp.event_count();
    let t0 = sys::monotonic_us();
    let events = |from: usize| {
        i.qmp
            .events_since(from)
            .iter()
            .map(|e| json!({"event": e.name, "data": e.data}))
            .collect::<Vec<_>>()
    };
    i.require_running()?;
    let by_request = match i.qmp.execute(
        "device_del",
        Some(&json!({"id": DEVICE_ID})),
        QMP_TIMEOUT_MS,
    ) {
        Ok(_) => false,
        // The kernel's device request (a remove or unplug racing this step) made QEMU unplug
        // the device itself a moment earlier: the goal of the step is reached all the same,
        // once its DEVICE_DELETED (which may follow the error) is seen.
        Err(QmpError::Qemu { class, .. }) if class == "DeviceNotFound" => true,
        Err(e) => {
            return Err(OpError::Failed(
                format!("inner QEMU {}: device_del: {e}", i.name),
                json!({"pid": i.pid, "exited": i.exited().is_some()}),
            ))
        }
    };
    let since = if by_request {
        *lock(&i.added_mark)
    } else {
        mark
    };
    match i.qmp.wait_event("DEVICE_DELETED", since, wait_ms) {
        Some(e) => Ok(json!({
            "deleted_after_ms": e.at_us.saturating_sub(t0) / 1000,
            "deleted_by": if by_request { "inner QEMU on the device request" } else { "device_del" },
            "events": events(since),
        })),
        None => Err(OpError::Failed(
            format!(
                "inner QEMU {}: no DEVICE_DELETED within {wait_ms} ms",
                i.name
            ),
            json!({"exited": i.exited().is_some(), "device_not_found": by_request}),
        )),
    }
}

pub fn device_add(agent: &Agent, name: &str) -> OpRes {
    let i = get(agent, name)?;
    let device = VfioCcw {
        uuid: &i.uuid,
        devno: &i.devno,
    };
    let mark = i.qmp.event_count();
    i.qmp("device_add", Some(&device.qmp_args()))?;
    *lock(&i.added_mark) = mark;
    Ok(json!({"device": device.arg()}))
}

pub fn system_reset(agent: &Agent, name: &str, count: u32) -> OpRes {
    let i = get(agent, name)?;
    let mut took = Vec::new();
    for _ in 0..count {
        let mark = i.qmp.event_count();
        let t0 = sys::monotonic_us();
        i.qmp("system_reset", None)?;
        // The reset itself runs in QEMU's main loop after the answer; RESET marks its end.
        if i.qmp.wait_event("RESET", mark, QMP_TIMEOUT_MS).is_none() {
            return Err(OpError::Failed(
                format!("inner QEMU {}: no RESET event after system_reset", i.name),
                json!({"resets_done": took.len()}),
            ));
        }
        took.push((sys::monotonic_us() - t0) / 1000);
    }
    Ok(json!({"resets": count, "ms": took}))
}
