//! The rules an event is judged by once the replay knows its state is one the subchannel can
//! be in: which events a state must not take, one row per [`Rule`], and the driver paths that
//! take them there correctly.

use super::super::map::FsmMap;
use super::super::Rule;
use super::states::CLOSED;
use super::steps::{reset_after_close, Step};

/// One event as the rows see it.
pub(super) struct Event<'a> {
    pub(super) state: &'a str,
    pub(super) event: &'a str,
    pub(super) handler: &'a str,
    /// The subchannel's steps; the event is `steps[i]`.
    pub(super) steps: &'a [Step],
    pub(super) i: usize,
    pub(super) map: &'a FsmMap,
}

/// What the rows say about one event.
pub(super) struct Judgement {
    pub(super) violation: Option<(Rule, String)>,
    /// The driver path that explains an event a row would otherwise flag.
    pub(super) note: Option<&'static str>,
}

/// Which states a row's events are wrong in.
enum States {
    In(&'static [&'static str]),
    AllBut(&'static [&'static str]),
}

/// A correct driver path that takes an event where its row forbids it.
#[derive(Clone, Copy)]
enum Excuse {
    /// vfio_ccw_mdev_reset(): CLOSE then OPEN by one task; a CLOSE that failed into NOT_OPER
    /// makes the OPEN a harmless nop.
    ResetAfterFailedClose,
    /// vfio_ccw_sch_shutdown(): CLOSE then NOT_OPER from the same task.
    Shutdown,
    /// A user's write to the I/O or async region of a dead or closed device is answered with
    /// an error by fsm_io_error/fsm_async_error: correct behaviour. Only a request the kernel
    /// issues itself is a violation.
    UserRequest,
}

struct Row {
    rule: Rule,
    events: &'static [&'static str],
    states: States,
    excuse: Option<Excuse>,
    message: fn(&Event) -> String,
}

/// The first row whose events and states match an event decides it.
const ROWS: [Row; 4] = [
    Row {
        rule: Rule::OpenOutsideStandby,
        events: &["OPEN"],
        states: States::AllBut(&["STANDBY"]),
        excuse: Some(Excuse::ResetAfterFailedClose),
        message: |e| format!("OPEN in {}", e.state),
    },
    Row {
        rule: Rule::CloseInStandby,
        events: &["CLOSE"],
        states: States::In(&["STANDBY"]),
        excuse: Some(Excuse::Shutdown),
        message: |_| "CLOSE of a device that is not open".into(),
    },
    Row {
        rule: Rule::RequestWhileClosed,
        events: &["IO_REQ", "ASYNC_REQ"],
        states: States::In(&CLOSED),
        excuse: Some(Excuse::UserRequest),
        message: |e| {
            format!(
                "{} in {} from kernel task {}",
                e.event, e.state, e.steps[e.i].line.task
            )
        },
    },
    Row {
        rule: Rule::InterruptWhileDisabled,
        events: &["INTERRUPT"],
        states: States::In(&CLOSED),
        excuse: None,
        message: |e| format!("interrupt in {} (subchannel should be disabled)", e.state),
    },
];

impl States {
    fn contain(&self, state: &str) -> bool {
        match self {
            States::In(s) => s.contains(&state),
            States::AllBut(s) => !s.contains(&state),
        }
    }
}

impl Excuse {
    fn holds(self, e: &Event) -> bool {
        let step = &e.steps[e.i];
        match self {
            Excuse::ResetAfterFailedClose => {
                e.state == "NOT_OPER" && reset_after_close(&e.steps[..e.i], step.line.pid, e.map)
            }
            Excuse::Shutdown => e.steps.get(e.i + 1).is_some_and(|n| {
                n.line.pid == step.line.pid && e.map.event_name(n.event) == Some("NOT_OPER")
            }),
            Excuse::UserRequest => !kernel_task(&step.line.task),
        }
    }

    /// The timeline's note for an event this excuse explains.
    fn note(self) -> Option<&'static str> {
        match self {
            Excuse::Shutdown => Some("shutdown: CLOSE then NOT_OPER (vfio_ccw_sch_shutdown)"),
            Excuse::ResetAfterFailedClose | Excuse::UserRequest => None,
        }
    }
}

/// Judges an event whose state the replay found reachable.
pub(super) fn judge(e: &Event) -> Judgement {
    if e.handler == "NULL" {
        return Judgement {
            violation: Some((
                Rule::NullHandler,
                format!(
                    "{} in {} has no handler (NULL in vfio_ccw_jumptable)",
                    e.event, e.state
                ),
            )),
            note: None,
        };
    }
    let Some(row) = ROWS
        .iter()
        .find(|r| r.events.contains(&e.event) && r.states.contain(e.state))
    else {
        return Judgement {
            violation: None,
            note: None,
        };
    };
    match row.excuse {
        Some(x) if x.holds(e) => Judgement {
            violation: None,
            note: x.note(),
        },
        _ => Judgement {
            violation: Some(attribute(row.rule, (row.message)(e), e)),
            note: None,
        },
    }
}

/// An interrupt in a closed state names the I/O it ends: another driver's start is the
/// finding (fsm_disabled_irq only cleans up after it); vfio_ccw's own is said as such.
fn attribute(rule: Rule, message: String, e: &Event) -> (Rule, String) {
    match (rule, &e.steps[e.i].io_start) {
        (Rule::InterruptWhileDisabled, Some(s)) if !s.by_vfio_ccw => (
            Rule::ForeignIo,
            format!(
                "{message}: it ends I/O that {} started at {:.6} without vfio_ccw (another \
                 driver's START SUBCHANNEL on a subchannel vfio_ccw owns; started after \
                 vfio_ccw's probe, cio's start wrote its ORB over vfio_ccw's parent device, \
                 which sits in the same driver data)",
                s.task, s.ts
            ),
        ),
        (Rule::InterruptWhileDisabled, Some(s)) => (
            rule,
            format!(
                "{message}: it ends vfio_ccw's own I/O, started by {} at {:.6}",
                s.task, s.ts
            ),
        ),
        _ => (rule, message),
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
