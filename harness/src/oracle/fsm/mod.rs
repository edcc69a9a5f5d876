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

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// An event after NOT_OPER whose traced state is a live one the driver cannot reach.
    Resurrection,
    OpenOutsideStandby,
    CloseInStandby,
    /// IO_REQ or ASYNC_REQ while NOT_OPER or STANDBY.
    RequestWhileClosed,
    /// INTERRUPT while NOT_OPER or STANDBY (`fsm_disabled_irq`: "should not happen").
    InterruptWhileDisabled,
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
    /// The state after the handler; `A|B` when the trace cannot tell.
    pub next_state: String,
    /// An untraced move that explains how this event's state was reached.
    pub note: Option<String>,
    pub violation: Option<Violation>,
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
