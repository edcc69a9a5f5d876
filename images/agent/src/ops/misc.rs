//! Small operations: sleep, mark, sysrq, kmemleak, poweroff.

use std::time::Duration;

use serde_json::{json, Value};

use super::{OpError, OpRes};
use crate::sys;

pub fn sleep(ms: u64) -> OpRes {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(Value::Null)
}

/// The marker goes out whole or not at all on each stream: one write() per stream.
pub fn mark(text: &str) -> OpRes {
    if text.contains('\n') {
        return Err(OpError::failed("a mark is one line".to_string()));
    }
    let line = format!("{}{text}\n", ccwrig_proto::MARK_PREFIX);
    let kmsg = sys::write_attr("/dev/kmsg", &format!("<5>{line}")).is_ok();
    let trace = sys::write_attr("/sys/kernel/tracing/trace_marker", &line).is_ok();
    Ok(json!(ccwrig_proto::data::MarkWritten { kmsg, trace }))
}

pub fn sysrq(key: char) -> OpRes {
    if !key.is_ascii_graphic() {
        return Err(OpError::failed(format!("bad sysrq key {key:?}")));
    }
    sys::write_attr("/proc/sysrq-trigger", &key.to_string())?;
    Ok(json!({"key": key.to_string()}))
}

/// Both actions first stop kmemleak's own periodic scanning thread (its scans of all memory
/// take tens of seconds on the debug profile under TCG and would hold the scan lock when
/// ours comes). `scan` writes "scan" (the write returns when the scan is done) and reads the
/// report; `clear` writes "clear". A kernel without kmemleak, or with it disabled, has no
/// such file.
pub fn kmemleak(action: ccwrig_proto::KmemleakAction) -> OpRes {
    use ccwrig_proto::{data::Kmemleak, KmemleakAction};
    let path = crate::paths::KMEMLEAK;
    if !std::path::Path::new(path).exists() {
        return Ok(json!(Kmemleak::default()));
    }
    sys::write_attr(path, "scan=off")?;
    let report = match action {
        KmemleakAction::Scan => {
            sys::write_attr(path, "scan")?;
            std::fs::read_to_string(path)
                .map_err(|e| OpError::failed(format!("reading {path}: {e}")))?
        }
        KmemleakAction::Clear => {
            sys::write_attr(path, "clear")?;
            String::new()
        }
    };
    Ok(json!(Kmemleak {
        available: true,
        report,
        jiffies: jiffies(),
    }))
}

/// The first `jiffies: N` line of /proc/timer_list (one per CPU, all the same counter).
fn jiffies() -> Option<u64> {
    let t = std::fs::read_to_string("/proc/timer_list").ok()?;
    t.lines()
        .find_map(|l| l.trim().strip_prefix("jiffies: "))
        .and_then(|n| n.trim().parse().ok())
}

/// What an init does before it powers off: every other process is killed — here the inner
/// QEMUs — and the files of the dead are closed by the kernel — here the agent's own handles,
/// which stand for the user processes of a real system. Without this the power-off would wait
/// forever in device_shutdown for a device whose removal waits for its user to close, a hang
/// of the agent's making. Then sync; the power-off itself happens after the result went out
/// (see `power_off`).
pub fn poweroff_prepare(agent: &std::sync::Arc<crate::state::Agent>) -> OpRes {
    let (released, crashed) = super::cleanup::release_all(agent);
    // SAFETY: plain syscall.
    unsafe { libc::sync() };
    Ok(json!({"powering_off": true, "released": released, "inner_crashed": crashed}))
}

/// reboot(RB_POWER_OFF), or reboot(RB_AUTOBOOT) for a restart. Only returns if the kernel
/// refused.
pub fn power_off(restart: bool) -> sys::SysError {
    let (cmd, name) = match restart {
        true => (libc::RB_AUTOBOOT, "reboot(RB_AUTOBOOT)"),
        false => (libc::RB_POWER_OFF, "reboot(RB_POWER_OFF)"),
    };
    // SAFETY: plain syscall; we are PID 1 and want the machine off.
    unsafe { libc::reboot(cmd) };
    sys::SysError::last(name)
}
