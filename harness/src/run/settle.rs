//! The end of a program: the guest's snapshot and liveness, and waiting until what the kernel
//! said has reached the host.

use std::time::Duration;

use ccwrig_proto::data::{MarkWritten, Snapshot};
use ccwrig_proto::{Op, Outcome};

use super::pace::Pace;
use super::session::Marks;
use crate::vm::Vm;

/// The agent's snapshot of the guest, typed; None when the agent did not answer or answered
/// with something that is not a snapshot (said in the log: an agent of another version).
pub(super) async fn snapshot(vm: &Vm, pace: Pace) -> Option<Snapshot> {
    match vm.agent.request("check", Op::Snapshot, pace.ms(5000)).await {
        Ok((_, r)) if r.outcome == Outcome::Ok => match serde_json::from_value(r.data) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("the agent's snapshot does not parse: {e}");
                None
            }
        },
        _ => None,
    }
}

/// How long the kernel's streams get to deliver the settle marker.
pub(super) const SETTLE_WAIT: Duration = Duration::from_secs(3);
/// A crashing kernel has finished its report when the console has been this quiet. Under
/// TCG an oops prints a line every few ms, with gaps of ~10 ms (register dumps, code).
pub(super) const CRASH_QUIET: Duration = Duration::from_millis(500);
/// ... or after this long (a kernel that keeps printing: stalls, repeated warnings).
pub(super) const CRASH_PRINT_MAX: Duration = Duration::from_secs(10);

/// After a crash: waits until the kernel has finished printing. A crash is noticed on its
/// first lines, and the settle marker cannot vouch for the rest: written while the oops is
/// still printing, it lands in the middle of it. Judged too early, a report is cut after
/// its header and titled without its function (`illegal operation` instead of `illegal
/// operation in vfio_ccw_mdev_ioctl`), which splits one bug into several findings.
pub(super) async fn await_console_quiet(vm: &Vm) {
    let start = tokio::time::Instant::now();
    let mut len = vm.console.len();
    let mut changed = start;
    while start.elapsed() < CRASH_PRINT_MAX {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = vm.console.len();
        if now != len {
            len = now;
            changed = tokio::time::Instant::now();
        } else if changed.elapsed() >= CRASH_QUIET {
            return;
        }
    }
}

/// Waits until what the kernel logged and traced before now has reached the host: the agent
/// writes a marker to /dev/kmsg and the trace buffer, and its arrival on kmsg, trace and the
/// console (which lags both) proves the lines before it are in. A fixed sleep would either
/// waste time on every program or cut off a slow console mid-oops. Returns the streams that
/// did not show the marker in time; with no agent the console gets a fixed grace period.
pub(super) async fn settle(vm: &Vm, m: Marks, alive: bool, pace: Pace) -> Vec<&'static str> {
    if !alive {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return vec![];
    }
    match mark(vm, pace).await {
        Some(sent) => await_mark(vm, m, &sent, pace).await,
        None => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            vec!["mark"]
        }
    }
}

/// A settle marker the agent wrote, and to which streams.
pub(super) struct SentMark {
    needle: String,
    written: MarkWritten,
}

/// Has the agent write a settle marker; None when it did not answer in time.
pub(super) async fn mark(vm: &Vm, pace: Pace) -> Option<SentMark> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let text = format!(
        "settle {}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mark = vm
        .agent
        .request("check", Op::Mark { text: text.clone() }, pace.ms(2000));
    let written = match tokio::time::timeout(pace.of(SETTLE_WAIT), mark).await {
        Ok(Ok((_, r))) if r.outcome == Outcome::Ok => {
            serde_json::from_value::<MarkWritten>(r.data).unwrap_or_default()
        }
        _ => return None,
    };
    Some(SentMark {
        needle: format!("{}{text}", ccwrig_proto::MARK_PREFIX),
        written,
    })
}

/// Waits for `sent` on each stream it was written to (the console with kmsg), for
/// [`SETTLE_WAIT`] at most; returns the streams it did not reach.
pub(super) async fn await_mark(
    vm: &Vm,
    m: Marks,
    sent: &SentMark,
    pace: Pace,
) -> Vec<&'static str> {
    let (needle, written) = (&sent.needle, &sent.written);
    let until = tokio::time::Instant::now() + pace.of(SETTLE_WAIT);
    loop {
        let mut missing = vec![];
        if written.kmsg {
            if !vm.agent.kmsg_has(m.kmsg, needle) {
                missing.push("kmsg");
            }
            if !vm.console.has(m.console, needle) {
                missing.push("console");
            }
        }
        if written.trace && !vm.agent.trace_has(m.trace, needle) {
            missing.push("trace");
        }
        if missing.is_empty() || tokio::time::Instant::now() >= until {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The agent's heartbeat is recent (no request: for a guest that may be stuck in a crash).
pub(super) fn heartbeat_fresh(vm: &Vm, pace: Pace) -> bool {
    vm.agent
        .heartbeat_age()
        .is_some_and(|a| a < pace.of(Duration::from_secs(2)))
}

/// The guest still answers: a fresh request gets an answer and heartbeats are recent.
pub(super) async fn liveness(vm: &Vm, pace: Pace) -> bool {
    let answered = matches!(
        vm.agent.request("check", Op::Sleep { ms: 0 }, pace.ms(2000)).await,
        Ok((_, r)) if r.outcome == Outcome::Ok
    );
    // Before the agent's first heartbeat (a program that ends right after boot) the answer
    // alone is the evidence.
    answered
        && vm
            .agent
            .heartbeat_age()
            .is_none_or(|a| a < pace.of(Duration::from_secs(5)))
}
