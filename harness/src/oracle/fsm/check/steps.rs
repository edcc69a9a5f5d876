//! The trace as steps: each subchannel's FSM events in trace order, with the follow-up lines
//! that resolve a handler's outcome, and the questions the replay asks about a task's own
//! later or earlier steps.

use super::super::map::FsmMap;
use super::super::trace::{parse_line, parse_lost, LostEvents, TraceEvent, TraceLine};
use std::collections::BTreeMap;

/// Events of one subchannel, with the follow-up lines that resolve a handler's outcome.
pub(super) struct Step {
    pub(super) line: TraceLine,
    pub(super) state: i64,
    pub(super) event: i64,
    /// fsm_io_request traced its error path (errno): the request itself left IDLE.
    pub(super) io_failed: Option<i64>,
    /// Not an FSM event but the error exit of an earlier IO_REQ of the same task, traced
    /// after other tasks' events: `fsm_io_request` stores IDLE there without looking at the
    /// state (it holds only io_mutex), so what those events stored may be overwritten.
    pub(super) exit_errno: Option<i64>,
    /// For an INTERRUPT: the subchannel's last successful START SUBCHANNEL before it, the
    /// I/O this interrupt most likely ends.
    pub(super) io_start: Option<IoStart>,
}

/// Who started a subchannel's I/O.
#[derive(Debug, Clone)]
pub(super) struct IoStart {
    pub(super) task: String,
    pub(super) ts: f64,
    /// vfio_ccw's own: the starting task's previous event on this subchannel is the IO_REQ
    /// whose fsm_io_request issued it. Otherwise another driver (cio's own channel programs:
    /// sense ID, path verification) started I/O on a subchannel vfio_ccw owns.
    pub(super) by_vfio_ccw: bool,
}

/// Where a `vfio_ccw_fsm_io_request` (error) line of `pid` belongs: the IO_REQ it ends.
enum ErrorExit {
    /// The request was the subchannel's last event: its outcome is IDLE.
    OfLastStep,
    /// Other events came in between: the IDLE store is a step of its own.
    Later,
    /// No IO_REQ of this task seen (trace cut): nothing to replay.
    Unmatched,
}

fn locate_error_exit(steps: &[Step], pid: u32, map: &FsmMap) -> ErrorExit {
    let Some(i) = steps
        .iter()
        .rposition(|s| s.exit_errno.is_none() && s.line.pid == pid)
    else {
        return ErrorExit::Unmatched;
    };
    if map.event_name(steps[i].event) != Some("IO_REQ")
        || map.handler(steps[i].state, steps[i].event) != Some("fsm_io_request")
    {
        return ErrorExit::Unmatched;
    }
    if i + 1 == steps.len() {
        ErrorExit::OfLastStep
    } else {
        ErrorExit::Later
    }
}

/// The trace's steps per subchannel, and the ring buffer's lost-events lines.
pub(super) fn per_subchannel<'a>(
    lines: impl Iterator<Item = &'a str>,
    map: &FsmMap,
) -> (BTreeMap<String, Vec<Step>>, Vec<LostEvents>) {
    let mut per_sch: BTreeMap<String, Vec<Step>> = BTreeMap::new();
    let mut last_start: BTreeMap<String, IoStart> = BTreeMap::new();
    let mut lost = Vec::new();
    let lines = lines.filter_map(|l| match parse_lost(l) {
        Some(x) => {
            lost.push(x);
            None
        }
        None => parse_line(l),
    });
    for line in lines {
        let steps = per_sch.entry(line.schid.clone()).or_default();
        match line.event {
            TraceEvent::Fsm { state, event } => {
                let io_start = (map.event_name(event) == Some("INTERRUPT"))
                    .then(|| last_start.get(&line.schid).cloned())
                    .flatten();
                steps.push(Step {
                    line,
                    state,
                    event,
                    io_failed: None,
                    exit_errno: None,
                    io_start,
                })
            }
            TraceEvent::Ssch { cc: 0 } => {
                let by_vfio_ccw = steps
                    .iter()
                    .rev()
                    .find(|s| s.line.pid == line.pid && s.exit_errno.is_none())
                    .is_some_and(|s| map.event_name(s.event) == Some("IO_REQ"));
                last_start.insert(
                    line.schid.clone(),
                    IoStart {
                        task: line.task.clone(),
                        ts: line.ts,
                        by_vfio_ccw,
                    },
                );
            }
            TraceEvent::Ssch { .. } => {}
            TraceEvent::IoRequest { errno, .. } => match locate_error_exit(steps, line.pid, map) {
                ErrorExit::OfLastStep => {
                    if let Some(last) = steps.last_mut() {
                        last.io_failed = Some(errno);
                    }
                }
                ErrorExit::Later => steps.push(Step {
                    line,
                    state: -1,
                    event: -1,
                    io_failed: None,
                    exit_errno: Some(errno),
                    io_start: None,
                }),
                ErrorExit::Unmatched => {}
            },
            TraceEvent::AsyncRequest { .. } | TraceEvent::ChpEvent { .. } => {}
        }
    }
    (per_sch, lost)
}

/// Whether the task of `steps[i]` fires NOT_OPER next: fsm_open/fsm_close failed and fired
/// their nested event (other tasks' events may be traced in between).
pub(super) fn fails_into_notoper(steps: &[Step], i: usize, map: &FsmMap) -> bool {
    let pid = steps[i].line.pid;
    steps[i + 1..]
        .iter()
        .find(|s| s.line.pid == pid && s.exit_errno.is_none())
        .is_some_and(|s| map.event_name(s.event) == Some("NOT_OPER"))
}

/// vfio_ccw_mdev_reset(): this task's OPEN follows its own CLOSE, directly or through the
/// NOT_OPER a failed fsm_close fires (other tasks' events may come between).
pub(super) fn reset_after_close(before: &[Step], pid: u32, map: &FsmMap) -> bool {
    let mut mine = before
        .iter()
        .rev()
        .filter(|s| s.line.pid == pid && s.exit_errno.is_none())
        .map(|s| map.event_name(s.event));
    match mine.next() {
        Some(Some("CLOSE")) => true,
        Some(Some("NOT_OPER")) => mine.next() == Some(Some("CLOSE")),
        _ => false,
    }
}
