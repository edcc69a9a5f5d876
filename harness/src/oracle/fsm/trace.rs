//! trace_pipe / trace lines of the vfio_ccw tracepoints (`drivers/s390/cio/vfio_ccw_trace.h`).

use regex::Regex;
use std::sync::LazyLock;

#[derive(Debug, Clone, PartialEq)]
pub struct TraceLine {
    pub task: String,
    pub pid: u32,
    pub cpu: u32,
    pub ts: f64,
    pub schid: String,
    pub event: TraceEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TraceEvent {
    /// `vfio_ccw_fsm_event: schid=%x.%x.%04x state=%d event=%d` — before the handler runs.
    Fsm { state: i64, event: i64 },
    /// `vfio_ccw_fsm_io_request: ... fctl=0x%x errno=%d info=%s` — only on fsm_io_request's
    /// error path, which leaves the state IDLE.
    IoRequest { fctl: u32, errno: i64, info: String },
    /// `vfio_ccw_fsm_async_request: ... command=0x%x errno=%d`.
    AsyncRequest { command: u32, errno: i64 },
    /// `vfio_ccw_chp_event: ... mask=0x%x event=%d`.
    ChpEvent { mask: u32, event: i64 },
    /// `s390_cio_ssch: schid=%x.%x.%04x cc=%d` (drivers/s390/cio/trace.h): a START
    /// SUBCHANNEL by whichever driver, vfio_ccw's fsm_io_request or cio's own requests.
    Ssch { cc: i64 },
}

// `  task-pid  [cpu] flags  timestamp: event: args`; the flags column and a `(tgid)` column
// come and go with tracer options.
static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+",
        r"(?:[^\s\d]\S*\s+)?(?P<ts>\d+\.\d+):\s+(?P<name>vfio_ccw_\w+|s390_cio_ssch):\s+",
        r"schid=(?P<schid>[0-9a-f]+\.[0-9a-f]+\.[0-9a-f]{4})\s+(?P<args>.*)$"
    ))
    .expect("static regex")
});
static FSM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^state=(-?\d+) event=(-?\d+)").expect("static regex"));
static IO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^fctl=0x([0-9a-f]+) errno=(-?\d+) info=(.*)$").expect("static regex")
});
static ASYNC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^command=0x([0-9a-f]+) errno=(-?\d+)").expect("static regex"));
static SSCH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^cc=(-?\d+)").expect("static regex"));
static CHP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^mask=0x([0-9a-f]+) event=(-?\d+)").expect("static regex"));

/// `CPU:%d [LOST %lu EVENTS]` (or `[LOST EVENTS]` when the ring cannot count): trace_pipe's
/// note that the reader fell behind and the ring buffer overwrote events.
static LOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*CPU:(\d+) \[LOST (?:(\d+) )?EVENTS\]\s*$").expect("static regex")
});

/// Events the ring buffer dropped on one CPU before a reader saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LostEvents {
    pub cpu: u32,
    /// `None`: the kernel could not count them.
    pub count: Option<u64>,
}

/// Parses trace_pipe's lost-events line; anything else gives `None`.
pub fn parse_lost(line: &str) -> Option<LostEvents> {
    let c = LOST.captures(line)?;
    Some(LostEvents {
        cpu: c[1].parse().ok()?,
        count: match c.get(2) {
            Some(n) => Some(n.as_str().parse().ok()?),
            None => None,
        },
    })
}

fn int(s: &str) -> Option<i64> {
    s.parse().ok()
}
fn hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 16).ok()
}

/// Parses one line; anything that is not a vfio_ccw event or a START SUBCHANNEL gives `None`.
pub fn parse_line(line: &str) -> Option<TraceLine> {
    let c = LINE.captures(line)?;
    let args = c.name("args")?.as_str().trim_end();
    let event = match &c["name"] {
        "vfio_ccw_fsm_event" => {
            let a = FSM.captures(args)?;
            TraceEvent::Fsm {
                state: int(&a[1])?,
                event: int(&a[2])?,
            }
        }
        "vfio_ccw_fsm_io_request" => {
            let a = IO.captures(args)?;
            TraceEvent::IoRequest {
                fctl: hex(&a[1])?,
                errno: int(&a[2])?,
                info: a[3].to_owned(),
            }
        }
        "vfio_ccw_fsm_async_request" => {
            let a = ASYNC.captures(args)?;
            TraceEvent::AsyncRequest {
                command: hex(&a[1])?,
                errno: int(&a[2])?,
            }
        }
        "vfio_ccw_chp_event" => {
            let a = CHP.captures(args)?;
            TraceEvent::ChpEvent {
                mask: hex(&a[1])?,
                event: int(&a[2])?,
            }
        }
        "s390_cio_ssch" => TraceEvent::Ssch {
            cc: int(&SSCH.captures(args)?[1])?,
        },
        _ => return None,
    };
    Some(TraceLine {
        task: c["task"].trim().to_owned(),
        pid: c["pid"].parse().ok()?,
        cpu: c["cpu"].parse().ok()?,
        ts: c["ts"].parse().ok()?,
        schid: c["schid"].to_owned(),
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_event_lines() {
        // Both forms from kernel/trace/trace.c print_trace_line(); the first two are real
        // (tests/data/fsm/6.12-lost-events.trace).
        assert_eq!(
            parse_lost("CPU:1 [LOST 48 EVENTS]"),
            Some(LostEvents {
                cpu: 1,
                count: Some(48)
            })
        );
        assert_eq!(
            parse_lost("CPU:0 [LOST 122 EVENTS]"),
            Some(LostEvents {
                cpu: 0,
                count: Some(122)
            })
        );
        assert_eq!(
            parse_lost("CPU:3 [LOST EVENTS]"),
            Some(LostEvents {
                cpu: 3,
                count: None
            })
        );
        assert_eq!(
            parse_lost(
                "  user-57 [001] ..... 1.0: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=1"
            ),
            None
        );
        assert_eq!(parse_lost("CPU:x [LOST 4 EVENTS]"), None);
    }

    #[test]
    fn parses_real_lines() {
        // From the corpus log 6.12-unplug-while-open (trace dumped by the init script).
        let l = parse_line("         kmcheck-40      [001] d....     3.758209: vfio_ccw_fsm_event: schid=0.0.0000 state=2 event=0")
            .expect("fsm line");
        assert_eq!(
            (l.task.as_str(), l.pid, l.cpu, l.schid.as_str()),
            ("kmcheck", 40, 1, "0.0.0000")
        );
        assert_eq!(l.event, TraceEvent::Fsm { state: 2, event: 0 });
        // The task name may contain dashes and spaces; the pid is after the last dash.
        let l = parse_line(" kworker/u8:2-ev-53   (  53) [000] .....  12.500000: vfio_ccw_fsm_io_request: schid=0.0.0001 fctl=0x4 errno=-16 info=cp fsm_io_helper")
            .expect("io line");
        assert_eq!(l.task, "kworker/u8:2-ev");
        assert_eq!(
            l.event,
            TraceEvent::IoRequest {
                fctl: 4,
                errno: -16,
                info: "cp fsm_io_helper".into()
            }
        );
        assert!(parse_line("# tracer: nop").is_none());
        assert!(parse_line("  sh-1 [000] ..... 1.0: tracing_mark_write: hello").is_none());
    }
}
