//! The states a step may leave: a handler's possible outcomes, a concurrent store that may
//! land before or after it, and when the one that landed last overwrote what must survive.

use super::super::map::{handler_outcomes, FsmMap, Next};

/// The states of a subchannel whose device is gone (NOT_OPER) or closed (STANDBY, by CLOSE).
pub(super) const CLOSED: [&str; 2] = ["NOT_OPER", "STANDBY"];

/// Another task's store that may land before or after the current step's own.
pub(super) struct InFlight {
    pub(super) states: Vec<String>,
    /// `EVENT of task-pid at ts`, for the report.
    pub(super) who: String,
}

/// States a correct driver never leaves by a store of a concurrent path: the device is gone
/// (NOT_OPER) or closed (STANDBY, by CLOSE).
fn must_survive(state: &str) -> bool {
    CLOSED.contains(&state)
}

/// The states `handler` may leave when dispatched in `state`; `nested_notoper`: its task
/// fires NOT_OPER next, so the handler took its failure path.
pub(super) fn possible(
    map: &FsmMap,
    state: &str,
    handler: &str,
    nested_notoper: bool,
) -> Vec<String> {
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

/// `a` and the states of `b` it lacks, in order.
pub(super) fn union(mut a: Vec<String>, b: &[String]) -> Vec<String> {
    for s in b {
        if !a.contains(s) {
            a.push(s.clone());
        }
    }
    a
}

/// The following event's state settles an ambiguous outcome.
pub(super) fn settle(next: Vec<String>, following: Option<&str>) -> Vec<String> {
    match following {
        Some(n) if next.len() > 1 && next.iter().any(|s| s == n) => vec![n.to_owned()],
        _ => next,
    }
}

/// A lost update, when the settled outcome is the current step's own store and a concurrent
/// store it raced was one that must survive.
pub(super) fn lost_update(
    settled: &[String],
    own: &[String],
    in_flight: &InFlight,
) -> Option<String> {
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

/// Whether `handler` stores a state of its own; fsm_irq or fsm_nop leave the state alone.
pub(super) fn stores(handler: &str) -> bool {
    handler_outcomes(handler)
        .iter()
        .any(|n| matches!(n, Next::To(_)))
}
