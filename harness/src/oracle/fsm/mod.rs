//! The vfio_ccw FSM checker: replays the `vfio_ccw_fsm_event` trace of each subchannel
//! against the kernel version's [`map::FsmMap`] and flags transitions a correct driver
//! cannot make.
//!
//! Rules (see [`Rule`]): no event may find a subchannel alive again after NOT_OPER
//! (resurrection); OPEN only in STANDBY (except the reset pattern CLOSE→OPEN of one task);
//! CLOSE not in STANDBY (except `vfio_ccw_sch_shutdown`, which fires CLOSE then NOT_OPER
//! from the same task whatever the state); no I/O or async request and no interrupt while
//! NOT_OPER or STANDBY; every traced state must be one the previous handler (or a known
//! untraced move) can produce; and a failed I/O request's IDLE store must not overwrite
//! another task's transition (lost update).

mod check;
pub mod map;
mod render;
pub mod trace;

pub use check::check;
pub use map::{map_for_version, map_from_header, map_from_sources, FsmMap};
pub use render::render;
pub use trace::LostEvents;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// An event after NOT_OPER whose traced state is a live one the driver cannot reach.
    Resurrection,
    OpenOutsideStandby,
    CloseInStandby,
    /// IO_REQ or ASYNC_REQ while NOT_OPER or STANDBY.
    RequestWhileClosed,
    /// INTERRUPT while NOT_OPER or STANDBY (`fsm_disabled_irq`: "should not happen") for I/O
    /// vfio_ccw started itself, or whose start the trace does not show.
    InterruptWhileDisabled,
    /// INTERRUPT while NOT_OPER or STANDBY for I/O another driver started on the subchannel
    /// vfio_ccw owns: fsm_disabled_irq is the driver handling that correctly; the finding is
    /// the foreign START SUBCHANNEL (cio's own request racing the bind to vfio_ccw). Its harm
    /// is elsewhere: `cio_start_key` takes the ORB's place from the subchannel's driver data,
    /// which is vfio_ccw's parent device once vfio_ccw's probe has run, and writes the ORB
    /// over its kobject (`scenarios/findings/unbind-vs-ccw-auto-online.md`, outcome 8).
    ForeignIo,
    /// A traced state the previous transition cannot produce.
    ImpossibleState,
    /// A store that overwrote another task's transition: `fsm_io_request`'s error exit
    /// writes IDLE under io_mutex only, over a NOT_OPER (sch->lock) or STANDBY (CLOSE)
    /// set while the request was in CP_PROCESSING.
    LostUpdate,
    /// A state or event integer outside the map: wrong map for this kernel.
    UnknownValue,
    /// An event whose jump-table cell is empty (NULL): the kernel calls address 0.
    NullHandler,
}

impl Rule {
    /// Every rule, in declaration order: the names scenario files may use.
    pub const ALL: [Rule; 10] = [
        Rule::Resurrection,
        Rule::OpenOutsideStandby,
        Rule::CloseInStandby,
        Rule::RequestWhileClosed,
        Rule::InterruptWhileDisabled,
        Rule::ForeignIo,
        Rule::ImpossibleState,
        Rule::LostUpdate,
        Rule::UnknownValue,
        Rule::NullHandler,
    ];

    /// The rule's name in scenario files, titles and keys (`lost_update`).
    pub fn name(self) -> &'static str {
        match self {
            Rule::Resurrection => "resurrection",
            Rule::OpenOutsideStandby => "open_outside_standby",
            Rule::CloseInStandby => "close_in_standby",
            Rule::RequestWhileClosed => "request_while_closed",
            Rule::InterruptWhileDisabled => "interrupt_while_disabled",
            Rule::ForeignIo => "foreign_io",
            Rule::ImpossibleState => "impossible_state",
            Rule::LostUpdate => "lost_update",
            Rule::UnknownValue => "unknown_value",
            Rule::NullHandler => "null_handler",
        }
    }

    /// The rule a scenario names, or None for a name no rule has.
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    pub schid: String,
    pub ts: f64,
    pub rule: Rule,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub ts: f64,
    pub task: String,
    pub pid: u32,
    pub state: String,
    pub event: String,
    pub handler: String,
    /// The states the handler may have left, as the replay settled them: one when the trace
    /// tells (the handler has one outcome, or the next event shows which), several when not.
    /// Empty when the event is not in the map.
    pub next: Vec<String>,
    /// An untraced move that explains how this event's state was reached.
    pub note: Option<String>,
    /// That move, when the note is one.
    pub untraced: Option<map::UntracedMove>,
    pub violation: Option<Violation>,
}

impl Transition {
    /// `next` as fsm.txt and the final states show it: `A|B` when the trace cannot tell,
    /// `?` when the event is not in the map.
    pub fn next_state(&self) -> String {
        match self.next.is_empty() {
            true => "?".into(),
            false => self.next.join("|"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FsmReport {
    pub timelines: BTreeMap<String, Vec<Transition>>,
    pub violations: Vec<Violation>,
    pub final_states: BTreeMap<String, String>,
    /// The ring buffer overran: the replay misses events, so it may report violations that
    /// did not happen and miss ones that did.
    pub lost: Vec<LostEvents>,
}

impl FsmReport {
    /// Events dropped on all CPUs; `None` when at least one CPU could not count them.
    pub fn lost_total(&self) -> Option<u64> {
        self.lost.iter().map(|l| l.count).sum()
    }
}

#[cfg(test)]
mod rule_tests {
    use super::Rule;

    #[test]
    fn rule_names_are_their_serde_names() {
        for r in Rule::ALL {
            let serde = serde_json::to_value(r).expect("serialisable");
            assert_eq!(serde.as_str(), Some(r.name()));
            assert_eq!(Rule::from_name(r.name()), Some(r));
        }
        assert_eq!(Rule::from_name("lost_updates"), None);
    }
}
