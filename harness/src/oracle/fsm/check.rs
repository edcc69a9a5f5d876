use super::map::{handler_outcomes, FsmMap, Next};
use super::trace::{parse_line, parse_lost, TraceEvent, TraceLine};
use super::{FsmReport, Rule, Transition, Violation};
use std::collections::BTreeMap;

/// How long after another task's event a dispatch may still have read the state that event's
/// handler had not yet replaced. A traced event records the state *before* its handler runs,
/// and the handlers store without a common lock (io_mutex in the request path, sch->lock in
/// the event and interrupt paths), so two events on two CPUs can both read the same state.
/// The handlers that race here (fsm_notoper, fsm_close, fsm_io_request up to its ssch) take
/// tens to hundreds of microseconds under TCG; a dispatch later than this is judged in order.
const OVERLAP_WINDOW_S: f64 = 0.002;

/// Events of one subchannel, with the follow-up lines that resolve a handler's outcome.
struct Step {
    line: TraceLine,
    state: i64,
    event: i64,
    /// fsm_io_request traced its error path (errno): the request itself left IDLE.
    io_failed: Option<i64>,
    /// Not an FSM event but the error exit of an earlier IO_REQ of the same task, traced
    /// after other tasks' events: `fsm_io_request` stores IDLE there without looking at the
    /// state (it holds only io_mutex), so what those events stored may be overwritten.
    exit_errno: Option<i64>,
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

/// Another task's store that may land before or after the current step's own.
struct InFlight {
    states: Vec<String>,
    /// `EVENT of task-pid at ts`, for the report.
    who: String,
}

/// States a correct driver never leaves by a store of a concurrent path: the device is gone
/// (NOT_OPER) or closed (STANDBY, by CLOSE).
fn must_survive(state: &str) -> bool {
    matches!(state, "NOT_OPER" | "STANDBY")
}

fn possible(map: &FsmMap, state: &str, handler: &str, nested_notoper: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in handler_outcomes(handler) {
        match n {
            Next::Same => out.push(state.to_owned()),
            Next::SameThenNotOper if nested_notoper => out.push(state.to_owned()),
            Next::SameThenNotOper => {}
            Next::To(s) => out.push((*s).to_owned()),
            Next::Any => return map.states.clone(),
        }
    }
    out.dedup();
    out
}

fn union(mut a: Vec<String>, b: &[String]) -> Vec<String> {
    for s in b {
        if !a.contains(s) {
            a.push(s.clone());
        }
    }
    a
}

/// The following event's state settles an ambiguous outcome.
fn settle(next: Vec<String>, following: Option<&str>) -> Vec<String> {
    match following {
        Some(n) if next.len() > 1 && next.iter().any(|s| s == n) => vec![n.to_owned()],
        _ => next,
    }
}

/// A lost update, when the settled outcome is the current step's own store and a concurrent
/// store it raced was one that must survive.
fn lost_update(settled: &[String], own: &[String], in_flight: &InFlight) -> Option<String> {
    let [n] = settled else { return None };
    // NOT_OPER may replace anything: the device is gone whatever the other path did.
    if n == "NOT_OPER" || in_flight.states.contains(n) || !own.contains(n) {
        return None;
    }
    let over: Vec<&str> = in_flight
        .states
        .iter()
        .map(String::as_str)
        .filter(|s| must_survive(s))
        .collect();
    (!over.is_empty()).then(|| format!("stored {n} over {} ({})", over.join("|"), in_flight.who))
}

/// A transition of `line`'s task; the caller fills in what the replay found.
fn at(line: &TraceLine) -> Transition {
    Transition {
        ts: line.ts,
        task: line.task.clone(),
        pid: line.pid,
        state: String::new(),
        event: String::new(),
        handler: String::new(),
        next_state: String::new(),
        note: None,
        violation: None,
    }
}

/// Appends `t` to the timeline and its violation, if any, to the report.
fn record(report: &mut FsmReport, timeline: &mut Vec<Transition>, t: Transition) {
    if let Some(v) = &t.violation {
        report.violations.push(v.clone());
    }
    timeline.push(t);
}

/// Replays the trace per subchannel against `map`.
pub fn check<'a>(lines: impl Iterator<Item = &'a str>, map: &FsmMap) -> FsmReport {
    let mut per_sch: BTreeMap<String, Vec<Step>> = BTreeMap::new();
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
            TraceEvent::Fsm { state, event } => steps.push(Step {
                line,
                state,
                event,
                io_failed: None,
                exit_errno: None,
            }),
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
                }),
                ErrorExit::Unmatched => {}
            },
            TraceEvent::AsyncRequest { .. } | TraceEvent::ChpEvent { .. } => {}
        }
    }

    let mut report = FsmReport {
        lost,
        ..FsmReport::default()
    };
    for (schid, steps) in per_sch {
        let mut timeline: Vec<Transition> = Vec::new();
        // States the previous transition may have left; None before the first event.
        let mut after_prev: Option<Vec<String>> = None;
        for (i, step) in steps.iter().enumerate() {
            let violation = |rule: Rule, message: String| Violation {
                schid: schid.clone(),
                ts: step.line.ts,
                rule,
                message,
            };
            let next_step = steps.get(i + 1);
            let following = next_step.and_then(|n| map.state_name(n.state));

            if let Some(errno) = step.exit_errno {
                // The other task's store happened after its trace line and before it
                // returned: before or after this IDLE store. The next event tells which.
                let before = after_prev.clone().unwrap_or_default();
                let own = vec!["IDLE".to_owned()];
                let (next, found) = if before.is_empty()
                    || before.iter().any(|s| s == "CP_PROCESSING")
                {
                    (own, None)
                } else {
                    let in_flight = InFlight {
                        states: before.clone(),
                        who: timeline
                            .last()
                            .map(|t| {
                                format!("{} event of {}-{} at {:.6}", t.event, t.task, t.pid, t.ts)
                            })
                            .unwrap_or_else(|| "an earlier event".into()),
                    };
                    let next = settle(union(own.clone(), &before), following);
                    let found = lost_update(&next, &own, &in_flight).map(|m| {
                        violation(
                            Rule::LostUpdate,
                            format!("fsm_io_request's error exit (errno {errno}) {m}"),
                        )
                    });
                    (next, found)
                };
                record(
                    &mut report,
                    &mut timeline,
                    Transition {
                        state: if before.is_empty() {
                            "?".into()
                        } else {
                            before.join("|")
                        },
                        event: "ERROR_EXIT".into(),
                        handler: format!("fsm_io_request err_out, errno {errno}"),
                        next_state: next.join("|"),
                        violation: found,
                        ..at(&step.line)
                    },
                );
                after_prev = Some(next);
                continue;
            }

            let (Some(state), Some(event), Some(handler)) = (
                map.state_name(step.state),
                map.event_name(step.event),
                map.handler(step.state, step.event),
            ) else {
                let v = violation(
                    Rule::UnknownValue,
                    format!(
                        "state={} event={} not in the {} map",
                        step.state, step.event, map.version
                    ),
                );
                record(
                    &mut report,
                    &mut timeline,
                    Transition {
                        state: step.state.to_string(),
                        event: step.event.to_string(),
                        handler: "?".into(),
                        next_state: "?".into(),
                        violation: Some(v),
                        ..at(&step.line)
                    },
                );
                after_prev = None;
                continue;
            };
            let mut note = None;
            let mut found: Option<Violation> = None;
            let mut in_flight: Option<InFlight> = None;

            let prev_step = i
                .checked_sub(1)
                .map(|j| &steps[j])
                .filter(|p| p.exit_errno.is_none());
            let same_task = |o: &Step| o.line.pid == step.line.pid;
            if let Some(prev) = &after_prev {
                if !prev.iter().any(|p| p == state) {
                    // Dispatched while another task's handler ran: both read the same state.
                    let overlap = prev_step.filter(|p| {
                        !same_task(p)
                            && step.line.ts - p.line.ts <= OVERLAP_WINDOW_S
                            && map.state_name(p.state) == Some(state)
                    });
                    if let Some(p) = overlap {
                        let (pe, ph) = (
                            map.event_name(p.event).unwrap_or("?"),
                            map.handler(p.state, p.event).unwrap_or("?"),
                        );
                        note = Some(format!(
                            "dispatched while {ph} ({pe} of {}-{}) ran: both read {state}",
                            p.line.task, p.line.pid
                        ));
                        in_flight = Some(InFlight {
                            states: possible(
                                map,
                                state,
                                ph,
                                fails_into_notoper(&steps, i - 1, map),
                            ),
                            who: format!(
                                "{pe} event of {}-{} at {:.6}",
                                p.line.task, p.line.pid, p.line.ts
                            ),
                        });
                    } else {
                        match prev.iter().find_map(|p| map.untraced_allows(p, state)) {
                            Some(m) => {
                                note = Some(format!("untraced {} -> {}: {}", m.from, m.to, m.why))
                            }
                            None if prev.iter().all(|p| p == "NOT_OPER") => {
                                found = Some(violation(
                                    Rule::Resurrection,
                                    format!("{event} finds state {state} after NOT_OPER"),
                                ))
                            }
                            None => {
                                found = Some(violation(
                                    Rule::ImpossibleState,
                                    format!(
                                        "state {state}, but the previous transition left {}",
                                        prev.join("|")
                                    ),
                                ))
                            }
                        }
                    }
                }
            }

            if found.is_none() && handler == "NULL" {
                found = Some(violation(
                    Rule::NullHandler,
                    format!("{event} in {state} has no handler (NULL in vfio_ccw_jumptable)"),
                ));
            }
            if found.is_none() {
                found = match (event, state) {
                    ("OPEN", "STANDBY") => None,
                    // vfio_ccw_mdev_reset(): CLOSE then OPEN by one task; a CLOSE that failed
                    // into NOT_OPER makes the OPEN a harmless nop.
                    ("OPEN", "NOT_OPER") if reset_after_close(&steps[..i], step.line.pid, map) => {
                        None
                    }
                    ("OPEN", s) => {
                        Some(violation(Rule::OpenOutsideStandby, format!("OPEN in {s}")))
                    }
                    // vfio_ccw_sch_shutdown(): CLOSE then NOT_OPER from the same task.
                    ("CLOSE", "STANDBY")
                        if next_step.is_some_and(|n| {
                            same_task(n) && map.event_name(n.event) == Some("NOT_OPER")
                        }) =>
                    {
                        note = Some("shutdown: CLOSE then NOT_OPER (vfio_ccw_sch_shutdown)".into());
                        None
                    }
                    ("CLOSE", "STANDBY") => Some(violation(
                        Rule::CloseInStandby,
                        "CLOSE of a device that is not open".into(),
                    )),
                    // A user's write to the I/O or async region of a dead or closed device
                    // is answered with an error by fsm_io_error/fsm_async_error: correct
                    // behaviour. Only a request the kernel issues itself is a violation.
                    ("IO_REQ" | "ASYNC_REQ", s @ ("NOT_OPER" | "STANDBY"))
                        if kernel_task(&step.line.task) =>
                    {
                        Some(violation(
                            Rule::RequestWhileClosed,
                            format!("{event} in {s} from kernel task {}", step.line.task),
                        ))
                    }
                    ("INTERRUPT", s @ ("NOT_OPER" | "STANDBY")) => Some(violation(
                        Rule::InterruptWhileDisabled,
                        format!("interrupt in {s} (subchannel should be disabled)"),
                    )),
                    _ => None,
                };
            }

            let nested_notoper = fails_into_notoper(&steps, i, map);
            let own = match (handler, step.io_failed) {
                ("fsm_io_request", Some(_)) => vec!["IDLE".to_owned()],
                _ => possible(map, state, handler, nested_notoper),
            };
            let next = match &in_flight {
                Some(f) => settle(union(own.clone(), &f.states), following),
                None => settle(own.clone(), following),
            };
            // Only a handler that stores can overwrite: after fsm_irq or fsm_nop a vanished
            // store has no traced culprit, and the next event is judged against what is left.
            let stores = handler_outcomes(handler)
                .iter()
                .any(|n| matches!(n, Next::To(_)));
            if found.is_none() && stores {
                if let Some(m) = in_flight.as_ref().and_then(|f| lost_update(&next, &own, f)) {
                    let what = match step.io_failed {
                        Some(errno) => format!("{handler} (error exit, errno {errno})"),
                        None => handler.to_owned(),
                    };
                    found = Some(violation(Rule::LostUpdate, format!("{what} {m}")));
                }
            }
            record(
                &mut report,
                &mut timeline,
                Transition {
                    state: state.to_owned(),
                    event: event.to_owned(),
                    handler: handler.to_owned(),
                    next_state: next.join("|"),
                    note,
                    violation: found,
                    ..at(&step.line)
                },
            );
            after_prev = Some(next);
        }
        if let Some(last) = timeline.last() {
            report
                .final_states
                .insert(schid.clone(), last.next_state.clone());
        }
        report.timelines.insert(schid, timeline);
    }
    report
}

/// Whether the task of `steps[i]` fires NOT_OPER next: fsm_open/fsm_close failed and fired
/// their nested event (other tasks' events may be traced in between).
fn fails_into_notoper(steps: &[Step], i: usize, map: &FsmMap) -> bool {
    let pid = steps[i].line.pid;
    steps[i + 1..]
        .iter()
        .find(|s| s.line.pid == pid && s.exit_errno.is_none())
        .is_some_and(|s| map.event_name(s.event) == Some("NOT_OPER"))
}

/// vfio_ccw_mdev_reset(): this task's OPEN follows its own CLOSE, directly or through the
/// NOT_OPER a failed fsm_close fires (other tasks' events may come between).
fn reset_after_close(before: &[Step], pid: u32, map: &FsmMap) -> bool {
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

/// Whether a trace line's task is a kernel context (worker, machine-check handler, interrupt
/// on the idle task) rather than a user process.
fn kernel_task(task: &str) -> bool {
    [
        "kworker",
        "kmcheck",
        "ksoftirqd",
        "<idle>",
        "rcu_",
        "migration",
    ]
    .iter()
    .any(|p| task.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::super::{map_for_version, Rule};
    use super::check;

    fn rules(trace: &str) -> Vec<Rule> {
        let map = map_for_version(6, 12).expect("6.12 map");
        check(trace.lines(), map)
            .violations
            .iter()
            .map(|v| v.rule)
            .collect()
    }

    // Sequences observed on 6.12.117 (docs/DESIGN.md: 'Binding, creating and opening an mdev',
    // 'The FSM table', 'Channel I/O through the I/O region'; and the corpus logs), in the exact
    // trace_pipe format.
    #[test]
    fn legal_sequences_pass() {
        let open_close = "\
         ccwhold-53      [001] .....     2.383718: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
         ccwhold-53      [001] .....     3.431911: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
         ccwhold-54      [001] .....     3.472817: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
         ccwhold-54      [001] .....     3.473988: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5";
        assert_eq!(rules(open_close), vec![]);
        let unplug = "\
         ccwhold-53      [000] .....     2.424146: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
         ccwhold-53      [000] .....     8.679797: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=5";
        assert_eq!(rules(unplug), vec![]);
        let shutdown_never_opened = "\
        poweroff-60      [000] .....     9.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=5
        poweroff-60      [000] .....     9.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=0";
        assert_eq!(rules(shutdown_never_opened), vec![]);
        let io = "\
            ccwio-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
            ccwio-70      [000] .....     4.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          <idle>-0        [000] d.h..     4.000003: vfio_ccw_fsm_event: schid=0.0.0000 state=4 event=2
            ccwio-70      [000] .....     4.000004: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          <idle>-0        [000] d.h..     4.000005: vfio_ccw_fsm_event: schid=0.0.0000 state=4 event=2
            ccwio-70      [000] .....     4.000006: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5";
        assert_eq!(rules(io), vec![]);
        // A failed request of one task with another task's harmless event in between (an
        // unsolicited interrupt leaves CP_PROCESSING alone) and a failed request that is the
        // last event: both end IDLE, nothing overwritten.
        let failed_io = "\
            ccwio-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
            ccwio-70      [000] .....     4.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          <idle>-0        [000] d.h..     4.000003: vfio_ccw_fsm_event: schid=0.0.0000 state=3 event=2
            ccwio-70      [000] .....     4.000004: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-16 info=cp fsm_io_helper
            ccwio-70      [000] .....     4.000005: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
            ccwio-70      [000] .....     4.000006: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-16 info=cp fsm_io_helper
            ccwio-70      [000] .....     4.000007: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5";
        assert_eq!(rules(failed_io), vec![]);
    }

    #[test]
    fn violations_are_flagged() {
        let open_in_idle = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
            qemu-71      [001] .....     4.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=4";
        assert_eq!(rules(open_in_idle), vec![Rule::OpenOutsideStandby]);
        let resurrection = "\
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
            qemu-70      [000] .....     3.800000: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1";
        assert_eq!(rules(resurrection), vec![Rule::Resurrection]);
        // unplug_during_io_loop on 6.12.117: the hot-unplug's NOT_OPER lands while the
        // request is in CP_PROCESSING; the ssch gets cc 3 and the error exit stores IDLE.
        let lost_update = "\
          user-6-60      [001] .....     1.188281: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
         kmcheck-40      [001] d....     1.191124: vfio_ccw_fsm_event: schid=0.0.0000 state=3 event=0
          user-6-60      [001] .....     1.191831: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-19 info=cp fsm_io_helper
          user-7-63      [001] .....     1.202943: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
          user-7-63      [001] .....     1.203125: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0";
        assert_eq!(rules(lost_update), vec![Rule::LostUpdate]);
        let map = map_for_version(6, 12).expect("6.12 map");
        let report = check(lost_update.lines(), map);
        assert_eq!(report.violations[0].ts, 1.191831);
        assert!(
            report.violations[0]
                .message
                .contains("stored IDLE over NOT_OPER (NOT_OPER event of kmcheck-40 at 1.191124)"),
            "{}",
            report.violations[0].message
        );
        // The same race, other orders (6.12.117 runs of the same scenario). The request reads
        // IDLE while fsm_notoper, dispatched 71 us earlier on the other CPU, has not stored
        // NOT_OPER yet; the CLOSE then finds IDLE: the request's store came last.
        let overlap = "\
         kmcheck-39      [001] d....     1.058072: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
          user-6-60      [000] .....     1.058143: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          user-6-60      [000] .N...     1.058491: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-19 info=cp fsm_io_helper
          user-7-63      [000] .....     1.075509: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
          user-7-63      [000] .....     1.075707: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0";
        assert_eq!(rules(overlap), vec![Rule::LostUpdate]);
        // The error exit is traced after fsm_notoper's event, but its IDLE store landed
        // before fsm_notoper's NOT_OPER store: the CLOSE finds NOT_OPER. Nothing was lost.
        let exit_first = "\
          user-6-59      [001] .....     1.158723: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
         kmcheck-39      [000] d....     1.159057: vfio_ccw_fsm_event: schid=0.0.0000 state=3 event=0
          user-6-59      [001] .N...     1.159357: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-19 info=cp fsm_io_helper
          user-7-62      [000] .....     1.174958: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=5";
        assert_eq!(rules(exit_first), vec![]);
        // Reading the old state long after fsm_notoper ran is no overlap: a resurrection.
        let late = "\
         kmcheck-39      [001] d....     1.058072: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
          user-6-60      [000] .....     1.068143: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1";
        assert_eq!(rules(late), vec![Rule::Resurrection]);
        // A fuzz program's reset races the hot-unplug: the CLOSE and fsm_notoper both read
        // IDLE, the CLOSE fails into its nested NOT_OPER, the reset's OPEN is a nop. Nothing
        // overwrote anything a correct driver must keep.
        let reset_vs_unplug = "\
        setup-18-85      [001] .....     2.286627: vfio_ccw_fsm_event: schid=0.0.0001 state=1 event=4
           g0-19-87      [001] .....     2.293407: vfio_ccw_fsm_event: schid=0.0.0001 state=2 event=5
         kmcheck-40      [000] d....     2.293513: vfio_ccw_fsm_event: schid=0.0.0001 state=2 event=0
           g0-19-87      [001] .....     2.293981: vfio_ccw_fsm_event: schid=0.0.0001 state=0 event=0
           g0-19-87      [001] .....     2.294056: vfio_ccw_fsm_event: schid=0.0.0001 state=0 event=4
           g0-20-90      [000] .....     2.318140: vfio_ccw_fsm_event: schid=0.0.0001 state=0 event=1";
        assert_eq!(rules(reset_vs_unplug), vec![]);
        // reset_during_io_loop: the reset's CLOSE and a request both read IDLE; the CLOSE
        // succeeds (no nested NOT_OPER), the failed request's IDLE store lands last, and the
        // reset's OPEN finds IDLE.
        let close_overlap = "\
    resetter-20-90       [000] .....     1.934061: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
          io-17-84       [001] .....     1.934154: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1
          io-17-84       [001] .....     1.934300: vfio_ccw_fsm_io_request: schid=0.0.0000 fctl=0x4 errno=-19 info=cp fsm_io_helper
    resetter-20-90       [000] .....     1.934523: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=4";
        assert_eq!(
            rules(close_overlap),
            vec![Rule::LostUpdate, Rule::OpenOutsideStandby]
        );
        // An interrupt that read the state a CLOSE had not replaced yet stores nothing: when
        // the STANDBY is gone afterwards, the interrupt is not blamed for it.
        let irq_overlap = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5
          <idle>-0       [001] d.h..     4.000050: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=2
            qemu-70      [000] .....     4.000400: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=4";
        assert_eq!(rules(irq_overlap), vec![Rule::OpenOutsideStandby]);
        let close_standby = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=5";
        assert_eq!(rules(close_standby), vec![Rule::CloseInStandby]);
        let user_io_on_dead = "\
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
            qemu-70      [000] .....     3.800000: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=1";
        assert_eq!(
            rules(user_io_on_dead),
            vec![],
            "a user's I/O on a dead device is rejected correctly"
        );
        let kernel_io_on_dead = "\
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
     kworker/0:1-12      [000] .....     3.800000: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=3";
        assert_eq!(rules(kernel_io_on_dead), vec![Rule::RequestWhileClosed]);
        let impossible = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
            qemu-70      [000] .....     4.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=3 event=5";
        assert_eq!(rules(impossible), vec![Rule::ImpossibleState]);
        let bad_map = "\
            qemu-70      [000] .....     4.000001: vfio_ccw_fsm_event: schid=0.0.0000 state=7 event=4";
        assert_eq!(rules(bad_map), vec![Rule::UnknownValue]);
    }

    #[test]
    fn an_empty_jump_table_cell_is_its_own_violation() {
        // kernel/patches/notoper-open-null: the NOT_OPER row loses [VFIO_CCW_EVENT_OPEN].
        let mut map = map_for_version(6, 12).expect("6.12 map").clone();
        let (s, e) = (
            map.states.iter().position(|s| s == "NOT_OPER").unwrap(),
            map.events.iter().position(|e| e == "OPEN").unwrap(),
        );
        map.table[s][e] = "NULL".into();
        let reset_after_unplug = "\
         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0
            qemu-70      [000] .....     3.800000: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=5
            qemu-70      [000] .....     3.800001: vfio_ccw_fsm_event: schid=0.0.0000 state=0 event=4";
        let v = check(reset_after_unplug.lines(), &map).violations;
        assert_eq!(
            v.iter().map(|v| v.rule).collect::<Vec<_>>(),
            vec![Rule::NullHandler]
        );
        assert!(
            v[0].message.contains("OPEN in NOT_OPER"),
            "{}",
            v[0].message
        );
    }

    #[test]
    fn subchannels_are_separate_and_final_states_known() {
        let map = map_for_version(6, 12).expect("map");
        let r = check(
            "\
 a-1 [000] ..... 1.000000: vfio_ccw_fsm_event: schid=0.0.0000 state=1 event=4
 b-2 [001] ..... 1.000001: vfio_ccw_fsm_event: schid=0.0.0001 state=1 event=4
 a-1 [000] ..... 1.000002: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=5"
                .lines(),
            map,
        );
        assert!(r.violations.is_empty());
        assert_eq!(
            r.final_states.get("0.0.0000").map(String::as_str),
            Some("STANDBY")
        );
        assert_eq!(
            r.final_states.get("0.0.0001").map(String::as_str),
            Some("IDLE")
        );
    }
}
