//! The replay of one subchannel: each step's traced state against what the previous
//! transition may have left, other tasks' stores that raced it, then the rows of
//! [`super::rules`].

use super::super::map::{FsmMap, UntracedMove};
use super::super::trace::TraceLine;
use super::super::{Rule, Transition, Violation};
use super::rules::{self, Event};
use super::states::{lost_update, possible, settle, stores, union, InFlight};
use super::steps::{fails_into_notoper, Step};

/// How long after another task's event a dispatch may still have read the state that event's
/// handler had not yet replaced. A traced event records the state *before* its handler runs,
/// and the handlers store without a common lock (io_mutex in the request path, sch->lock in
/// the event and interrupt paths), so two events on two CPUs can both read the same state.
/// The handlers that race here (fsm_notoper, fsm_close, fsm_io_request up to its ssch) take
/// tens to hundreds of microseconds under TCG; a dispatch later than this is judged in order.
const OVERLAP_WINDOW_S: f64 = 0.002;

/// How long fsm_close may run when the subchannel is busy: `vfio_ccw_sch_quiesce` cancels,
/// halts or clears, drops sch->lock and waits up to 3*HZ for the interrupt
/// (`wait_for_completion_timeout`), which fsm_irq delivers in the state the close started from.
const QUIESCE_WAIT_S: f64 = 3.0;

/// How long after `prev`'s dispatch (another task's) a dispatch of `event` may still read the
/// state `prev`'s handler had not yet replaced.
fn overlap_window(prev_handler: &str, event: &str) -> f64 {
    if prev_handler == "fsm_close" && event == "INTERRUPT" {
        QUIESCE_WAIT_S
    } else {
        OVERLAP_WINDOW_S
    }
}

/// The timeline of one subchannel's steps; a transition's violation, if any, is in it.
pub(super) fn subchannel(schid: &str, steps: &[Step], map: &FsmMap) -> Vec<Transition> {
    let mut r = Replay {
        schid,
        steps,
        map,
        timeline: Vec::new(),
        after_prev: None,
    };
    for (i, step) in steps.iter().enumerate() {
        let t = match step.exit_errno {
            Some(errno) => r.error_exit(i, errno),
            None => r.event(i),
        };
        r.timeline.push(t);
    }
    r.timeline
}

struct Replay<'a> {
    schid: &'a str,
    steps: &'a [Step],
    map: &'a FsmMap,
    timeline: Vec<Transition>,
    /// States the previous transition may have left; None before the first event.
    after_prev: Option<Vec<String>>,
}

/// How a step's traced state was reached from what the previous transition left.
#[derive(Default)]
struct Arrival {
    note: Option<String>,
    /// The untraced move the note names, when it names one.
    untraced: Option<UntracedMove>,
    violation: Option<Violation>,
    /// The other task's handler that read the same state and stores concurrently.
    in_flight: Option<InFlight>,
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
        next: Vec::new(),
        note: None,
        untraced: None,
        violation: None,
    }
}

impl<'a> Replay<'a> {
    fn violation(&self, step: &Step, rule: Rule, message: String) -> Violation {
        Violation {
            schid: self.schid.to_owned(),
            ts: step.line.ts,
            rule,
            message,
        }
    }

    /// The state of the step after `steps[i]`, which settles an ambiguous outcome.
    fn following(&self, i: usize) -> Option<&'a str> {
        self.steps
            .get(i + 1)
            .and_then(|n| self.map.state_name(n.state))
    }

    /// `fsm_io_request`'s IDLE store, traced after other tasks' events.
    fn error_exit(&mut self, i: usize, errno: i64) -> Transition {
        let step = &self.steps[i];
        // The other task's store happened after its trace line and before it
        // returned: before or after this IDLE store. The next event tells which.
        let before = self.after_prev.clone().unwrap_or_default();
        let own = vec!["IDLE".to_owned()];
        let (next, found) = if before.is_empty() || before.iter().any(|s| s == "CP_PROCESSING") {
            (own, None)
        } else {
            let in_flight = InFlight {
                states: before.clone(),
                who: self
                    .timeline
                    .last()
                    .map(|t| format!("{} event of {}-{} at {:.6}", t.event, t.task, t.pid, t.ts))
                    .unwrap_or_else(|| "an earlier event".into()),
            };
            let next = settle(union(own.clone(), &before), self.following(i));
            let found = lost_update(&next, &own, &in_flight).map(|m| {
                self.violation(
                    step,
                    Rule::LostUpdate,
                    format!("fsm_io_request's error exit (errno {errno}) {m}"),
                )
            });
            (next, found)
        };
        let t = Transition {
            state: if before.is_empty() {
                "?".into()
            } else {
                before.join("|")
            },
            event: "ERROR_EXIT".into(),
            handler: format!("fsm_io_request err_out, errno {errno}"),
            next: next.clone(),
            violation: found,
            ..at(&step.line)
        };
        self.after_prev = Some(next);
        t
    }

    /// An FSM event: how its state was reached, the rules, and what its handler leaves.
    fn event(&mut self, i: usize) -> Transition {
        let (step, map) = (&self.steps[i], self.map);
        let (Some(state), Some(event), Some(handler)) = (
            map.state_name(step.state),
            map.event_name(step.event),
            map.handler(step.state, step.event),
        ) else {
            let v = self.violation(
                step,
                Rule::UnknownValue,
                format!(
                    "state={} event={} not in the {} map",
                    step.state, step.event, map.version
                ),
            );
            self.after_prev = None;
            return Transition {
                state: step.state.to_string(),
                event: step.event.to_string(),
                handler: "?".into(),
                violation: Some(v),
                ..at(&step.line)
            };
        };
        let Arrival {
            mut note,
            untraced,
            violation: mut found,
            in_flight,
        } = self.arrival(i, state, event);

        if found.is_none() {
            let judged = rules::judge(&Event {
                state,
                event,
                handler,
                steps: self.steps,
                i,
                map,
            });
            if let Some(n) = judged.note {
                note = Some(n.into());
            }
            found = judged
                .violation
                .map(|(rule, message)| self.violation(step, rule, message));
        }

        let nested_notoper = fails_into_notoper(self.steps, i, map);
        let own = match (handler, step.io_failed) {
            ("fsm_io_request", Some(_)) => vec!["IDLE".to_owned()],
            _ => possible(map, state, handler, nested_notoper),
        };
        let following = self.following(i);
        let next = match &in_flight {
            Some(f) => settle(union(own.clone(), &f.states), following),
            None => settle(own.clone(), following),
        };
        // Only a handler that stores can overwrite: after fsm_irq or fsm_nop a vanished
        // store has no traced culprit, and the next event is judged against what is left.
        if found.is_none() && stores(handler) {
            if let Some(m) = in_flight.as_ref().and_then(|f| lost_update(&next, &own, f)) {
                let what = match step.io_failed {
                    Some(errno) => format!("{handler} (error exit, errno {errno})"),
                    None => handler.to_owned(),
                };
                found = Some(self.violation(step, Rule::LostUpdate, format!("{what} {m}")));
            }
        }
        self.after_prev = Some(next.clone());
        Transition {
            state: state.to_owned(),
            event: event.to_owned(),
            handler: handler.to_owned(),
            next,
            note,
            untraced,
            violation: found,
            ..at(&step.line)
        }
    }

    /// Whether `steps[i]`'s `state` is one the previous transition may have left, and if not,
    /// what explains it: another task's handler that read the same state and was still
    /// running, an untraced move, or nothing (a resurrection or an impossible state).
    fn arrival(&self, i: usize, state: &str, event: &str) -> Arrival {
        let (step, map) = (&self.steps[i], self.map);
        let Some(prev) = &self.after_prev else {
            return Arrival::default();
        };
        if prev.iter().any(|p| p == state) {
            return Arrival::default();
        }
        let prev_step = i
            .checked_sub(1)
            .map(|j| &self.steps[j])
            .filter(|p| p.exit_errno.is_none());
        // Dispatched while another task's handler ran: both read the same state.
        let overlap = prev_step.filter(|p| {
            p.line.pid != step.line.pid
                && map.state_name(p.state) == Some(state)
                && step.line.ts - p.line.ts
                    <= overlap_window(map.handler(p.state, p.event).unwrap_or("?"), event)
        });
        if let Some(p) = overlap {
            let (pe, ph) = (
                map.event_name(p.event).unwrap_or("?"),
                map.handler(p.state, p.event).unwrap_or("?"),
            );
            return Arrival {
                note: Some(format!(
                    "dispatched while {ph} ({pe} of {}-{}) ran: both read {state}",
                    p.line.task, p.line.pid
                )),
                untraced: None,
                violation: None,
                in_flight: Some(InFlight {
                    states: possible(map, state, ph, fails_into_notoper(self.steps, i - 1, map)),
                    who: format!(
                        "{pe} event of {}-{} at {:.6}",
                        p.line.task, p.line.pid, p.line.ts
                    ),
                }),
            };
        }
        match prev.iter().find_map(|p| map.untraced_allows(p, state)) {
            Some(m) => Arrival {
                note: Some(format!("untraced {} -> {}: {}", m.from, m.to, m.why)),
                untraced: Some(m.clone()),
                ..Arrival::default()
            },
            None if prev.iter().all(|p| p == "NOT_OPER") => Arrival {
                violation: Some(self.violation(
                    step,
                    Rule::Resurrection,
                    format!("{event} finds state {state} after NOT_OPER"),
                )),
                ..Arrival::default()
            },
            None => Arrival {
                violation: Some(self.violation(
                    step,
                    Rule::ImpossibleState,
                    format!(
                        "state {state}, but the previous transition left {}",
                        prev.join("|")
                    ),
                )),
                ..Arrival::default()
            },
        }
    }
}
