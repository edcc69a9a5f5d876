//! Host messages in, results out: one thread per operation, and a per-request deadline after
//! which the host gets `Blocked` at once and the final result later as `Late`.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use ccwrig_proto::{AgentMsg, HostMsg, Op, OpResult, Outcome, Request, Side};
use serde_json::Value;

use crate::fault;
use crate::idle;
use crate::ops;
use crate::state::Agent;
use crate::sys;

pub fn on_line(agent: &Arc<Agent>, line: &str, hello: &AgentMsg) {
    match serde_json::from_str::<HostMsg>(line) {
        Ok(HostMsg::Hello { session, .. }) => {
            let problems = crate::session::apply(&session);
            let mut answer = hello.clone();
            if let AgentMsg::Hello {
                session: s,
                now_ms,
                problems: p,
                ..
            } = &mut answer
            {
                *s = Some(session.id);
                *now_ms = sys::monotonic_us() / 1000;
                *p = problems;
            }
            agent.out.send(&answer)
        }
        Ok(HostMsg::Request(r)) => start(agent, r),
        Err(e) => reject(agent, line, &e.to_string()),
    }
}

/// A line that is not a valid message: answered as a failed request when it carries an id,
/// otherwise reported as a note.
fn reject(agent: &Agent, line: &str, err: &str) {
    let id = serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_u64));
    let msg = format!("bad request: {err}");
    match id {
        Some(id) => agent.out.send(&AgentMsg::Result {
            id,
            result: immediate(Outcome::Failed { message: msg }),
        }),
        None => agent.out.note(
            "agent",
            format!("{msg}: {}", line.chars().take(200).collect::<String>()),
        ),
    }
}

fn immediate(outcome: Outcome) -> OpResult {
    OpResult {
        outcome,
        start_us: sys::monotonic_us(),
        duration_us: 0,
        data: Value::Null,
        cover: None,
        fault: None,
    }
}

enum Waited {
    Done(OpResult),
    Blocked { after_ms: u64 },
    Gone,
}

/// The operation's result, or `Blocked` at its deadline, or sooner with `idle_ms` once the
/// guest's CPUs have been idle that long while it runs ([`crate::idle`]).
fn wait(rx: &mpsc::Receiver<OpResult>, deadline_ms: u64, idle_ms: Option<u64>) -> Waited {
    let t0 = std::time::Instant::now();
    let mut watch = idle_ms.map(idle::IdleWatch::new);
    if let Some(w) = &mut watch {
        w.observe(0, idle::read());
    }
    loop {
        let elapsed = t0.elapsed().as_millis() as u64;
        let left = deadline_ms.saturating_sub(elapsed);
        let slice = match watch {
            Some(_) => left.min(idle::POLL_MS),
            None => left,
        };
        match rx.recv_timeout(Duration::from_millis(slice)) {
            Ok(r) => return Waited::Done(r),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Waited::Gone,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let elapsed = t0.elapsed().as_millis() as u64;
        if elapsed >= deadline_ms {
            return Waited::Blocked {
                after_ms: deadline_ms,
            };
        }
        if let Some(w) = &mut watch {
            if w.observe(elapsed, idle::read()) {
                return Waited::Blocked { after_ms: elapsed };
            }
        }
    }
}

fn start(agent: &Arc<Agent>, req: Request) {
    let id = req.id;
    if req.op.side() == Side::Host {
        let o = Outcome::Failed {
            message: format!("host-side op {}", req.op.name()),
        };
        agent.out.send(&AgentMsg::Result {
            id,
            result: immediate(o),
        });
        return;
    }
    let (tx, rx) = mpsc::channel::<OpResult>();
    agent.running.fetch_add(1, Ordering::SeqCst);
    let a = agent.clone();
    let op = req.op.clone();
    let actor = req.actor.clone();
    let cover = req.cover;
    let fail_nth = req.fail_nth;
    let worker = std::thread::Builder::new()
        .name(thread_name(&req.actor, id))
        .spawn(move || {
            let t0 = sys::monotonic_us();
            let run = || {
                let op = || match ops::run(&a, &actor, &op) {
                    Ok(d) => (Outcome::Ok, d),
                    Err(e) => e.into_outcome(),
                };
                match fail_nth {
                    Some(n) => fault::around(n, op),
                    None => (op(), None),
                }
            };
            let (((outcome, data), fault), cover) = match cover {
                true => {
                    let (r, c) = a.kcov.traced(run);
                    (r, Some(c))
                }
                false => (run(), None),
            };
            let result = OpResult {
                outcome,
                start_us: t0,
                duration_us: sys::monotonic_us() - t0,
                data,
                cover,
                fault,
            };
            a.running.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(result);
        });
    if let Err(e) = worker {
        agent.running.fetch_sub(1, Ordering::SeqCst);
        let o = Outcome::Failed {
            message: format!("cannot start a thread: {e}"),
        };
        agent.out.send(&AgentMsg::Result {
            id,
            result: immediate(o),
        });
        return;
    }
    let a = agent.clone();
    let power = match req.op {
        Op::Poweroff => Some(false),
        Op::Reboot => Some(true),
        _ => None,
    };
    let deadline = req.deadline_ms;
    let idle_ms = req.idle_ms;
    let sup = std::thread::Builder::new()
        .name(format!("dl-{id}"))
        .spawn(move || {
            let final_result = match wait(&rx, deadline, idle_ms) {
                Waited::Done(r) => {
                    a.out.send(&AgentMsg::Result {
                        id,
                        result: r.clone(),
                    });
                    Some(r)
                }
                Waited::Blocked { after_ms } => {
                    let blocked = Outcome::Blocked { after_ms };
                    let mut r = immediate(blocked);
                    r.start_us = r.start_us.saturating_sub(after_ms * 1000);
                    r.duration_us = after_ms * 1000;
                    a.out.send(&AgentMsg::Result { id, result: r });
                    let late = rx.recv().ok();
                    if let Some(l) = &late {
                        a.out.send(&AgentMsg::Late {
                            id,
                            result: l.clone(),
                        });
                    }
                    late
                }
                Waited::Gone => None,
            };
            if let (Some(restart), Some(Outcome::Ok)) = (power, final_result.map(|r| r.outcome)) {
                // The host should see the answer before the machine goes away.
                a.out.flush(Duration::from_secs(2));
                let e = ops::power_off(restart);
                a.out.note("poweroff", e.to_string());
            }
        });
    if let Err(e) = sup {
        agent.out.note(
            "agent",
            format!("request {id}: cannot start its deadline thread: {e}"),
        );
    }
}

/// `actor-id`, NUL-free (the kernel keeps the first 15 bytes).
fn thread_name(actor: &str, id: u64) -> String {
    let a: String = actor.chars().filter(|c| *c != '\0').collect();
    format!("{a}-{id}")
}
