//! FSM points of a program, from the FSM oracle's replay of its slice of the trace.
//!
//! The trace shows every `vfio_ccw_fsm_event()` whatever context fires it (the user's
//! ioctls, the I/O completion's `io_todo` and `notoper_work` kworkers, the cio workqueue's
//! subchannel events), so these points see what per-thread KCOV cannot. Each replayed event
//! gives one [`Point::Fsm`]: the traced state and event, and the state the handler left as
//! the replay settled it ([`crate::oracle::fsm::Transition::next`]: the handler's only
//! outcome; among several, the one the next event of the same subchannel found;
//! [`Point::UNSETTLED`] when the trace cannot tell). Each untraced move the replay needed to
//! explain a state gives one [`Point::Untraced`]. `fsm_io_request`'s error exits (traced as
//! their own line, not an event) and events outside the map give no point.

use super::{Coverage, Point};
use crate::oracle::fsm::{FsmMap, FsmReport};

/// The points of one replayed trace.
pub fn points(report: &FsmReport, map: &FsmMap) -> Coverage {
    let state = |name: &str| index(&map.states, name);
    let mut out = Coverage::new();
    for t in report.timelines.values().flatten() {
        if let Some(m) = &t.untraced {
            if let (Some(from), Some(to)) = (state(&m.from), state(&m.to)) {
                out.insert(Point::Untraced { from, to });
            }
        }
        let (Some(s), Some(e)) = (state(&t.state), index(&map.events, &t.event)) else {
            continue;
        };
        let next = match t.next.as_slice() {
            [one] => state(one).unwrap_or(Point::UNSETTLED),
            _ => Point::UNSETTLED,
        };
        out.insert(Point::Fsm {
            state: s,
            event: e,
            next,
        });
    }
    out
}

/// The jump table's cells with a handler: (state, event) pairs an event can be dispatched in.
/// A NULL cell (a tree whose table leaves it out) is not reachable without a crash.
pub fn reachable_cells(map: &FsmMap) -> usize {
    map.table
        .iter()
        .flatten()
        .filter(|h| !matches!(h.as_str(), "NULL" | "?"))
        .count()
}

fn index(names: &[String], name: &str) -> Option<u8> {
    names
        .iter()
        .position(|n| n == name)
        .and_then(|i| u8::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::fsm::{check, map_for_version};
    use std::path::Path;

    fn replay(rel: &str) -> (Coverage, &'static FsmMap) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        let text = std::fs::read_to_string(&path).expect("trace in the repository");
        let map = map_for_version(6, 12).expect("6.12 map");
        (points(&check(text.lines(), map), map), map)
    }

    /// open, close, open, close of one subchannel (`tests/data/fsm/6.12-vfio-lifecycle`).
    #[test]
    fn lifecycle_trace_gives_open_and_close_cells() {
        let (c, map) = replay("tests/data/fsm/6.12-vfio-lifecycle.trace");
        let want: Coverage = [
            Point::Fsm {
                state: 1,
                event: 4,
                next: 2,
            },
            Point::Fsm {
                state: 2,
                event: 5,
                next: 1,
            },
        ]
        .into_iter()
        .collect();
        assert_eq!(c, want);
        assert_eq!(c.fsm_cells(), 2);
        assert_eq!(reachable_cells(map), 30);
    }

    /// `scenarios/reset_during_io_loop.toml`'s real trace: I/O requests and their interrupts
    /// (the interrupt's kworker context included), the io_todo move back to IDLE.
    #[test]
    fn io_trace_gives_io_cells_and_the_untraced_io_todo_move() {
        let (c, _) = replay("tests/data/fsm/6.12-reset-racing-io-request.trace");
        let (pcs, fsm) = c.counts();
        assert_eq!(pcs, 0);
        assert!(fsm >= 4, "{c:?}");
        // IDLE --IO_REQ--> CP_PENDING, then CP_PENDING --INTERRUPT--> CP_PENDING.
        for p in [
            Point::Fsm {
                state: 2,
                event: 1,
                next: 4,
            },
            Point::Fsm {
                state: 4,
                event: 2,
                next: 4,
            },
            Point::Untraced { from: 4, to: 2 },
        ] {
            assert!(c.iter().any(|q| *q == p), "{p:?} missing in {c:?}");
        }
    }

    /// A fuzz program's real trace (reset racing a hot-unplug): the machine-check thread's
    /// NOT_OPER (kmcheck, no user context) is a cell like the user's own events.
    #[test]
    fn fuzz_trace_gives_the_kernel_thread_s_notoper_cell() {
        let (c, _) = replay("tests/data/fsm/6.12-reset-vs-unplug-overlap.trace");
        for p in [
            Point::Fsm {
                state: 1,
                event: 4,
                next: 2,
            },
            // kmcheck: IDLE --NOT_OPER--> NOT_OPER.
            Point::Fsm {
                state: 2,
                event: 0,
                next: 0,
            },
            // I/O requests and the final CLOSE after it: fsm_io_error, fsm_nop.
            Point::Fsm {
                state: 0,
                event: 1,
                next: 0,
            },
            Point::Fsm {
                state: 0,
                event: 5,
                next: 0,
            },
        ] {
            assert!(c.iter().any(|q| *q == p), "{p:?} missing in {c:?}");
        }
        assert!(c.iter().all(|p| !p.is_pc()));
    }

    #[test]
    fn cells_with_a_null_handler_are_not_reachable() {
        let mut map = map_for_version(6, 12).expect("6.12").clone();
        map.table[1][5] = "NULL".into();
        assert_eq!(reachable_cells(&map), 29);
    }
}
