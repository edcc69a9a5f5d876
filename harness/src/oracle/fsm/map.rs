//! The vfio_ccw FSM of each kernel version, as data: state and event enums in trace order
//! (the tracepoint prints raw integers), the jump table state × event → handler, what each
//! handler can leave `private->state` as, and the state changes the driver makes without a
//! traced event. Everything version-specific lives in this file.

use crate::oracle::OracleError;
use regex::Regex;
use serde::Serialize;

/// What a handler leaves the state as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    /// Unchanged.
    Same,
    /// The state with this name.
    To(&'static str),
    /// Unchanged, and the handler fires a nested NOT_OPER event at once (traced by the
    /// same task): only possible when that event follows.
    SameThenNotOper,
    /// Unknown handler (from a user tree): any state.
    Any,
}

/// A state change the driver makes without going through `vfio_ccw_fsm_event()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UntracedMove {
    pub from: String,
    pub to: String,
    /// Where in the driver, so a reader can check it against a new kernel.
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsmMap {
    pub version: String,
    /// Index = the integer the tracepoint prints.
    pub states: Vec<String>,
    pub events: Vec<String>,
    /// `table[state][event]` = handler name.
    pub table: Vec<Vec<String>>,
    pub untraced: Vec<UntracedMove>,
}

impl FsmMap {
    pub fn state_name(&self, i: i64) -> Option<&str> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.states.get(i))
            .map(String::as_str)
    }
    pub fn event_name(&self, i: i64) -> Option<&str> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.events.get(i))
            .map(String::as_str)
    }
    pub fn handler(&self, state: i64, event: i64) -> Option<&str> {
        let s = usize::try_from(state).ok()?;
        let e = usize::try_from(event).ok()?;
        self.table.get(s)?.get(e).map(String::as_str)
    }
    pub fn untraced_allows(&self, from: &str, to: &str) -> Option<&UntracedMove> {
        self.untraced.iter().find(|m| m.from == from && m.to == to)
    }
}

/// Outcomes of the handlers of `drivers/s390/cio/vfio_ccw_fsm.c` (identical in 6.1.192 and
/// 6.12.117). `fsm_open`/`fsm_close` leave the state unchanged when they fail and fire a
/// nested NOT_OPER event (traced, with the unchanged state); `fsm_io_request` passes through
/// CP_PROCESSING, which concurrent events (an interrupt, a NOT_OPER from the machine-check
/// worker) can observe, and ends in CP_PENDING after a successful ssch, else IDLE.
pub fn handler_outcomes(handler: &str) -> &'static [Next] {
    use Next::*;
    match handler {
        "fsm_notoper" => &[To("NOT_OPER")],
        "fsm_open" => &[To("IDLE"), SameThenNotOper],
        "fsm_close" => &[To("STANDBY"), SameThenNotOper],
        "fsm_io_request" => &[To("CP_PENDING"), To("IDLE"), To("CP_PROCESSING")],
        "fsm_nop" | "fsm_io_error" | "fsm_io_busy" | "fsm_io_retry" | "fsm_async_error"
        | "fsm_async_retry" | "fsm_disabled_irq" | "fsm_async_request" | "fsm_irq" => &[Same],
        _ => &[Any],
    }
}

/// The driver's FSM states in `enum vfio_ccw_state` order (the built-in maps' state
/// numbers), as the oracle, fsm.txt and scenario files (`expect.fsm_final`) name them.
pub const STATES: &[&str] = &["NOT_OPER", "STANDBY", "IDLE", "CP_PROCESSING", "CP_PENDING"];
const EVENTS: &[&str] = &[
    "NOT_OPER",
    "IO_REQ",
    "INTERRUPT",
    "ASYNC_REQ",
    "OPEN",
    "CLOSE",
];

/// `vfio_ccw_jumptable` in event order NOT_OPER, IO_REQ, INTERRUPT, ASYNC_REQ, OPEN, CLOSE
/// (the same in 6.1.192 and 6.12.117).
const JUMPTABLE: &[(&str, [&str; 6])] = &[
    (
        "NOT_OPER",
        [
            "fsm_nop",
            "fsm_io_error",
            "fsm_disabled_irq",
            "fsm_async_error",
            "fsm_nop",
            "fsm_nop",
        ],
    ),
    (
        "STANDBY",
        [
            "fsm_notoper",
            "fsm_io_error",
            "fsm_disabled_irq",
            "fsm_async_error",
            "fsm_open",
            "fsm_notoper",
        ],
    ),
    (
        "IDLE",
        [
            "fsm_notoper",
            "fsm_io_request",
            "fsm_irq",
            "fsm_async_request",
            "fsm_notoper",
            "fsm_close",
        ],
    ),
    (
        "CP_PROCESSING",
        [
            "fsm_notoper",
            "fsm_io_retry",
            "fsm_irq",
            "fsm_async_retry",
            "fsm_notoper",
            "fsm_close",
        ],
    ),
    (
        "CP_PENDING",
        [
            "fsm_notoper",
            "fsm_io_busy",
            "fsm_irq",
            "fsm_async_request",
            "fsm_notoper",
            "fsm_close",
        ],
    ),
];

fn untraced(moves: &[(&str, &str, &'static str)]) -> Vec<UntracedMove> {
    moves
        .iter()
        .map(|(f, t, why)| UntracedMove {
            from: (*f).into(),
            to: (*t).into(),
            why,
        })
        .collect()
}

const IO_TODO: (&str, &str, &str) = (
    "CP_PENDING",
    "IDLE",
    "vfio_ccw_sch_io_todo(): final interrupt of the channel program (drv.c)",
);

fn v6_12() -> FsmMap {
    build(
        "6.12",
        STATES,
        EVENTS,
        untraced(&[
            IO_TODO,
            (
                "NOT_OPER",
                "STANDBY",
                "vfio_ccw_mdev_init_dev(): a new mdev starts in STANDBY (ops.c)",
            ),
        ]),
    )
}

fn v6_1() -> FsmMap {
    build(
        "6.1",
        STATES,
        EVENTS,
        untraced(&[
            IO_TODO,
            // In 6.1 the private struct belongs to the subchannel, allocated at vfio_ccw bind.
            (
                "NOT_OPER",
                "STANDBY",
                "vfio_ccw_alloc_private(): subchannel (re)bound to vfio_ccw (drv.c)",
            ),
        ]),
    )
}

fn build(version: &str, states: &[&str], events: &[&str], untraced: Vec<UntracedMove>) -> FsmMap {
    let table = states
        .iter()
        .map(|s| {
            let row = JUMPTABLE.iter().find(|(name, _)| name == s).map(|(_, r)| r);
            events
                .iter()
                .map(|e| {
                    let col = EVENTS.iter().position(|x| x == e);
                    match (row, col) {
                        (Some(r), Some(c)) => r[c].to_owned(),
                        _ => "?".to_owned(),
                    }
                })
                .collect()
        })
        .collect();
    FsmMap {
        version: version.to_owned(),
        states: states.iter().map(|s| (*s).to_owned()).collect(),
        events: events.iter().map(|s| (*s).to_owned()).collect(),
        table,
        untraced,
    }
}

static MAP_6_12: std::sync::LazyLock<FsmMap> = std::sync::LazyLock::new(v6_12);
static MAP_6_1: std::sync::LazyLock<FsmMap> = std::sync::LazyLock::new(v6_1);

/// The map of a kernel version whose sources were read (6.1.192, 6.12.117). Other versions:
/// derive one from their `vfio_ccw_private.h` with [`map_from_header`] — the OPEN/CLOSE
/// events only exist since 6.0, so older enums differ.
pub fn map_for_version(major: u32, minor: u32) -> Option<&'static FsmMap> {
    match (major, minor) {
        (6, 12) => Some(&MAP_6_12),
        (6, 1) => Some(&MAP_6_1),
        _ => None,
    }
}

fn enum_members(text: &str, enum_name: &str, prefix: &str) -> Result<Vec<String>, OracleError> {
    let start = text
        .find(&format!("enum {enum_name} {{"))
        .ok_or_else(|| OracleError::Header(format!("no `enum {enum_name}`")))?;
    let body = &text[start..];
    let end = body
        .find('}')
        .ok_or_else(|| OracleError::Header(format!("`enum {enum_name}` not closed")))?;
    let member = Regex::new(&format!(r"(?m)^\s*{prefix}(\w+)\s*(?:=\s*(\d+))?\s*,?"))
        .map_err(|e| OracleError::Header(e.to_string()))?;
    let mut out: Vec<String> = Vec::new();
    for c in member.captures_iter(&body[..end]) {
        // Explicit values would reorder the trace integers; none exist so far, refuse them.
        if let Some(v) = c.get(2) {
            if v.as_str().parse::<usize>().ok() != Some(out.len()) {
                return Err(OracleError::Header(format!(
                    "{prefix}{} has an explicit value",
                    &c[1]
                )));
            }
        }
        out.push(c[1].to_owned());
    }
    if out.is_empty() {
        return Err(OracleError::Header(format!(
            "`enum {enum_name}` has no members"
        )));
    }
    Ok(out)
}

/// Derives a map from a tree's `vfio_ccw_private.h`: the enum order gives the trace integers;
/// the jump table is taken by name from the 6.12 driver (use [`map_from_sources`] when the
/// tree's `vfio_ccw_fsm.c` is at hand). Fails on a state or event 6.12 does not know.
pub fn map_from_header(text: &str) -> Result<FsmMap, OracleError> {
    let states = enum_members(text, "vfio_ccw_state", "VFIO_CCW_STATE_")?;
    let events = enum_members(text, "vfio_ccw_event", "VFIO_CCW_EVENT_")?;
    for s in &states {
        if !STATES.contains(&s.as_str()) {
            return Err(OracleError::Header(format!(
                "state {s} unknown to the 6.12 jump table"
            )));
        }
    }
    for e in &events {
        if !EVENTS.contains(&e.as_str()) {
            return Err(OracleError::Header(format!(
                "event {e} unknown to the 6.12 jump table"
            )));
        }
    }
    let s: Vec<&str> = states.iter().map(String::as_str).collect();
    let e: Vec<&str> = events.iter().map(String::as_str).collect();
    Ok(build("from header", &s, &e, v6_12().untraced))
}

/// Like [`map_from_header`] but reads the jump table from the tree's `vfio_ccw_fsm.c`.
/// Handlers this module does not know get outcome [`Next::Any`].
pub fn map_from_sources(header: &str, fsm_c: &str) -> Result<FsmMap, OracleError> {
    let mut map = map_from_header(header)?;
    let table_start = fsm_c
        .find("vfio_ccw_jumptable[")
        .ok_or_else(|| OracleError::Header("no vfio_ccw_jumptable".into()))?;
    let text = &fsm_c[table_start..];
    let row = Regex::new(r"\[VFIO_CCW_STATE_(\w+)\]\s*=\s*\{([^}]*)\}")
        .map_err(|e| OracleError::Header(e.to_string()))?;
    let cell = Regex::new(r"\[VFIO_CCW_EVENT_(\w+)\]\s*=\s*(\w+)")
        .map_err(|e| OracleError::Header(e.to_string()))?;
    for r in row.captures_iter(text) {
        let Some(si) = map.states.iter().position(|s| s == &r[1]) else {
            continue;
        };
        // A designated initializer leaves unnamed cells NULL: a row that omits an event
        // means the kernel calls through NULL for it, not the 6.12 handler.
        for h in map.table[si].iter_mut() {
            *h = "NULL".to_owned();
        }
        for c in cell.captures_iter(&r[2]) {
            if let Some(ei) = map.events.iter().position(|e| e == &c[1]) {
                map.table[si][ei] = c[2].to_owned();
            }
        }
    }
    map.version = "from sources".into();
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The enums exactly as in 6.12.117's drivers/s390/cio/vfio_ccw_private.h (6.1.192: same).
    const HEADER_6_12: &str = "
enum vfio_ccw_state {
	VFIO_CCW_STATE_NOT_OPER,
	VFIO_CCW_STATE_STANDBY,
	VFIO_CCW_STATE_IDLE,
	VFIO_CCW_STATE_CP_PROCESSING,
	VFIO_CCW_STATE_CP_PENDING,
	/* last element! */
	NR_VFIO_CCW_STATES
};

/*
 * Asynchronous events of the device statemachine.
 */
enum vfio_ccw_event {
	VFIO_CCW_EVENT_NOT_OPER,
	VFIO_CCW_EVENT_IO_REQ,
	VFIO_CCW_EVENT_INTERRUPT,
	VFIO_CCW_EVENT_ASYNC_REQ,
	VFIO_CCW_EVENT_OPEN,
	VFIO_CCW_EVENT_CLOSE,
	/* last element! */
	NR_VFIO_CCW_EVENTS
};
";

    #[test]
    fn header_gives_the_builtin_order() {
        let m = map_from_header(HEADER_6_12).expect("parses");
        let builtin = map_for_version(6, 12).expect("6.12");
        assert_eq!(
            (&m.states, &m.events, &m.table),
            (&builtin.states, &builtin.events, &builtin.table)
        );
        assert_eq!(m.handler(1, 4), Some("fsm_open"));
        assert_eq!(m.handler(2, 5), Some("fsm_close"));
    }

    #[test]
    fn reordered_header_reorders_the_map() {
        // A tree whose enum order differs must change what the integers mean.
        let swapped = HEADER_6_12.replace(
            "\tVFIO_CCW_EVENT_OPEN,\n\tVFIO_CCW_EVENT_CLOSE,",
            "\tVFIO_CCW_EVENT_CLOSE,\n\tVFIO_CCW_EVENT_OPEN,",
        );
        let m = map_from_header(&swapped).expect("parses");
        assert_eq!(m.event_name(4), Some("CLOSE"));
        assert_eq!(m.handler(1, 5), Some("fsm_open"));
        assert!(map_from_header("enum vfio_ccw_state { VFIO_CCW_STATE_BOGUS, };").is_err());
    }

    #[test]
    fn sources_give_the_jump_table() {
        let fsm_c = "fsm_func_t *vfio_ccw_jumptable[NR_VFIO_CCW_STATES][NR_VFIO_CCW_EVENTS] = {
	[VFIO_CCW_STATE_STANDBY] = {
		[VFIO_CCW_EVENT_OPEN]		= fsm_open_v2,
	},
};";
        let m = map_from_sources(HEADER_6_12, fsm_c).expect("parses");
        assert_eq!(m.handler(1, 4), Some("fsm_open_v2"));
        assert_eq!(
            m.handler(1, 5),
            Some("NULL"),
            "cells a row leaves out are NULL"
        );
        assert_eq!(
            m.handler(2, 5),
            Some("fsm_close"),
            "rows left out keep 6.12's"
        );
        assert_eq!(handler_outcomes("fsm_open_v2"), &[Next::Any]);
    }
}
