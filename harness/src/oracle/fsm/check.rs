use super::map::{handler_outcomes, FsmMap, Next};
use super::trace::{parse_line, parse_lost, TraceEvent, TraceLine};
use super::{FsmReport, Rule, Transition, Violation};
use std::collections::BTreeMap;

/// Events of one subchannel, with the follow-up lines that resolve a handler's outcome.
struct Step {
    line: TraceLine,
    state: i64,
    event: i64,
    /// fsm_io_request traced its error path: the request left the state IDLE.
    io_failed: bool,
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
                io_failed: false,
            }),
            TraceEvent::IoRequest { .. } => {
                if let Some(last) = steps.last_mut() {
                    last.io_failed = true;
                }
            }
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
                report.violations.push(v.clone());
                timeline.push(Transition {
                    ts: step.line.ts,
                    task: step.line.task.clone(),
                    pid: step.line.pid,
                    state: step.state.to_string(),
                    event: step.event.to_string(),
                    handler: "?".into(),
                    next_state: "?".into(),
                    note: None,
                    violation: Some(v),
                });
                after_prev = None;
                continue;
            };
            let mut note = None;
            let mut found: Option<Violation> = None;

            if let Some(prev) = &after_prev {
                if !prev.iter().any(|p| p == state) {
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

            let prev_step = i.checked_sub(1).map(|j| &steps[j]);
            let next_step = steps.get(i + 1);
            let same_task = |o: &Step| o.line.pid == step.line.pid;
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
                    ("OPEN", "NOT_OPER")
                        if prev_step.is_some_and(|p| {
                            same_task(p) && map.event_name(p.event) == Some("CLOSE")
                        }) =>
                    {
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

            let nested_notoper = next_step
                .is_some_and(|n| same_task(n) && map.event_name(n.event) == Some("NOT_OPER"));
            let mut next = possible(map, state, handler, nested_notoper);
            if handler == "fsm_io_request" && step.io_failed {
                next = vec!["IDLE".into()];
            }
            // The following event's state settles an ambiguous outcome.
            if next.len() > 1 {
                if let Some(n) = next_step.and_then(|n| map.state_name(n.state)) {
                    if next.iter().any(|s| s == n) {
                        next = vec![n.to_owned()];
                    }
                }
            }
            if let Some(v) = &found {
                report.violations.push(v.clone());
            }
            timeline.push(Transition {
                ts: step.line.ts,
                task: step.line.task.clone(),
                pid: step.line.pid,
                state: state.to_owned(),
                event: event.to_owned(),
                handler: handler.to_owned(),
                next_state: next.join("|"),
                note,
                violation: found,
            });
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

    // Sequences observed on 6.12.117 (FACTS §5, §7, §9 and the corpus logs), in the exact
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
