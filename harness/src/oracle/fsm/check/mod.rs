//! The FSM trace checker: the trace as steps per subchannel ([`steps`]), each subchannel
//! replayed against the map ([`replay`]) with the states a handler may leave ([`states`]),
//! and the events a state must not take ([`rules`]).

mod replay;
mod rules;
mod states;
mod steps;
#[cfg(test)]
mod tests;

use super::map::FsmMap;
use super::FsmReport;

/// Replays the trace per subchannel against `map`.
pub fn check<'a>(lines: impl Iterator<Item = &'a str>, map: &FsmMap) -> FsmReport {
    let (per_sch, lost) = steps::per_subchannel(lines, map);
    let mut report = FsmReport {
        lost,
        ..FsmReport::default()
    };
    for (schid, steps) in per_sch {
        let timeline = replay::subchannel(&schid, &steps, map);
        report
            .violations
            .extend(timeline.iter().filter_map(|t| t.violation.clone()));
        if let Some(last) = timeline.last() {
            report.final_states.insert(schid.clone(), last.next_state());
        }
        report.timelines.insert(schid, timeline);
    }
    report
}
