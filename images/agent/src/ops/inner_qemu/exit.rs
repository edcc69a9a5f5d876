//! How an inner QEMU ended, as data: exit code or signal, how long it ran, and whether it
//! crashed (a crash signal, or a signal the agent did not send).

use std::time::Duration;

use serde_json::{json, Value};

use super::super::{OpError, OpRes};
use crate::reaper;
use crate::state::inner_qemu::{Exit, ExitCell};
use crate::state::{lock, InnerQemu};
use crate::sys;

/// Signals that mean the inner QEMU crashed, whoever sent them.
const CRASH_SIGNALS: &[i32] = &[
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGABRT,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGSYS,
];

pub(super) fn signal_name(sig: i32) -> String {
    let n = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    n.to_string()
}

pub(super) fn exit_cell_wait(cell: &ExitCell, timeout_ms: u64) -> Option<Exit> {
    let (m, cv) = &**cell;
    let end = sys::monotonic_us() + timeout_ms * 1000;
    let mut g = lock(m);
    loop {
        if let Some(e) = *g {
            return Some(e);
        }
        let left = end.saturating_sub(sys::monotonic_us());
        if left == 0 {
            return None;
        }
        g = match cv.wait_timeout(g, Duration::from_micros(left)) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
}

/// Exit status as data, and whether it was a crash.
pub(super) fn describe(e: Exit, started_us: u64, sent: &[i32]) -> (Value, bool) {
    let (code, sig) = reaper::describe(e.status);
    let crashed = sig.is_some_and(|s| CRASH_SIGNALS.contains(&s) || !sent.contains(&s));
    let v = json!({
        "exit_code": code,
        "signal": sig.map(signal_name),
        "crashed": crashed,
        "ran_ms": e.at_us.saturating_sub(started_us) / 1000,
    });
    (v, crashed)
}

impl InnerQemu {
    pub(super) fn exited(&self) -> Option<Exit> {
        *lock(&self.exit.0)
    }

    pub(super) fn wait_exit(&self, timeout_ms: u64) -> Option<Exit> {
        exit_cell_wait(&self.exit, timeout_ms)
    }

    fn output(&self) -> String {
        lock(&self.output).clone()
    }

    pub(super) fn exit_data(&self, e: Exit) -> (Value, bool) {
        let sent = lock(&self.sent).clone();
        let (mut v, crashed) = describe(e, self.started_us, &sent);
        v["pid"] = json!(self.pid);
        v["output"] = json!(self.output());
        (v, crashed)
    }

    /// The result of an operation that ends with the process gone.
    pub(super) fn exit_result(&self, e: Exit) -> OpRes {
        let (v, crashed) = self.exit_data(e);
        if crashed {
            return Err(OpError::Failed(
                format!(
                    "inner QEMU {} crashed ({})",
                    self.name,
                    v["signal"].as_str().unwrap_or("?")
                ),
                v,
            ));
        }
        Ok(v)
    }

    pub(super) fn require_running(&self) -> Result<(), OpError> {
        match self.exited() {
            None => Ok(()),
            Some(e) => {
                let (v, _) = self.exit_data(e);
                Err(OpError::Failed(
                    format!("inner QEMU {} has exited", self.name),
                    v,
                ))
            }
        }
    }
}
