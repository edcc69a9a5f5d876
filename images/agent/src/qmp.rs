//! A QMP client for the inner QEMU, with a deadline on everything: the inner QEMU may be
//! stopped (SIGSTOP), dead or busy in the kernel, and none of that may hang the agent.
//!
//! One reader thread per connection sorts lines into command answers (by `id`) and events;
//! every line in either direction is also sent to the host as a note, so the run directory
//! keeps the whole exchange.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::out::Outbox;
use crate::sys::{self, lock};

/// A write to a QEMU that stopped reading gives up after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

pub enum QmpError {
    /// No answer in time (the inner QEMU is stopped or stuck).
    Timeout(u64),
    /// The connection ended (the inner QEMU exited).
    Closed,
    /// QEMU answered with an error.
    Qemu { class: String, desc: String },
}

impl std::fmt::Display for QmpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QmpError::Timeout(ms) => write!(f, "no QMP answer within {ms} ms"),
            QmpError::Closed => f.write_str("QMP connection closed"),
            QmpError::Qemu { class, desc } => write!(f, "QMP error {class}: {desc}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
    /// Guest monotonic time when it was read.
    pub at_us: u64,
}

#[derive(Default)]
struct Shared {
    pending: HashMap<u64, Sender<Value>>,
    events: Vec<Event>,
    closed: bool,
}

pub struct Qmp {
    writer: Mutex<UnixStream>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    next_id: AtomicU64,
    out: Outbox,
    source: String,
    pub greeting: Value,
}

/// Connects to the socket (QEMU creates it shortly after start), reads the greeting and
/// negotiates capabilities. `alive` is asked between attempts so a QEMU that died early is
/// reported at once rather than after the whole wait.
pub fn connect(
    path: &str,
    wait_ms: u64,
    out: &Outbox,
    source: &str,
    alive: &dyn Fn() -> bool,
) -> Result<Qmp, String> {
    let end = sys::monotonic_us() + wait_ms * 1000;
    let stream = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) => {
                if !alive() {
                    return Err("exited before its QMP socket accepted".into());
                }
                if sys::monotonic_us() >= end {
                    return Err(format!(
                        "QMP socket {path} not accepting after {wait_ms} ms: {e}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let left = end.saturating_sub(sys::monotonic_us()).max(1000);
    let _ = stream.set_read_timeout(Some(Duration::from_micros(left)));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let reader = stream
        .try_clone()
        .map_err(|e| format!("dup QMP socket: {e}"))?;
    let mut reader = BufReader::new(reader);
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .map_err(|e| format!("reading the QMP greeting: {e}"))?;
    out.note(source, format!("qmp< {}", first.trim_end()));
    let greeting: Value =
        serde_json::from_str(first.trim_end()).map_err(|e| format!("QMP greeting: {e}"))?;
    // From here the reader thread waits for as long as the connection lives.
    let _ = reader.get_ref().set_read_timeout(None);
    let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
    let sh = shared.clone();
    let (o, src) = (out.clone(), source.to_string());
    std::thread::Builder::new()
        .name(format!(
            "qmp-{}",
            source.rsplit(':').next().unwrap_or("inner")
        ))
        .spawn(move || read_loop(reader, sh, o, src))
        .map_err(|e| format!("QMP reader thread: {e}"))?;
    let q = Qmp {
        writer: Mutex::new(stream),
        shared,
        next_id: AtomicU64::new(1),
        out: out.clone(),
        source: source.to_string(),
        greeting,
    };
    let left_ms = end.saturating_sub(sys::monotonic_us()) / 1000;
    q.execute("qmp_capabilities", None, left_ms.max(1000))
        .map_err(|e| format!("qmp_capabilities: {e}"))?;
    Ok(q)
}

fn read_loop(
    reader: BufReader<UnixStream>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    out: Outbox,
    source: String,
) {
    for line in reader.lines() {
        let Ok(line) = line else { break };
        out.note(&source, format!("qmp< {line}"));
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (m, cv) = &*shared;
        let mut g = lock(m);
        if let Some(name) = v.get("event").and_then(Value::as_str) {
            g.events.push(Event {
                name: name.to_string(),
                data: v.get("data").cloned().unwrap_or(Value::Null),
                at_us: sys::monotonic_us(),
            });
            cv.notify_all();
        } else if let Some(id) = v.get("id").and_then(Value::as_u64) {
            if let Some(tx) = g.pending.remove(&id) {
                let _ = tx.send(v);
            }
        }
    }
    let (m, cv) = &*shared;
    let mut g = lock(m);
    g.closed = true;
    // Dropping the senders wakes every waiting command with `Closed`.
    g.pending.clear();
    cv.notify_all();
}

impl Qmp {
    /// Sends a command and waits for its answer; `Ok` is the `return` value.
    pub fn execute(
        &self,
        command: &str,
        arguments: Option<&Value>,
        timeout_ms: u64,
    ) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut msg = json!({"execute": command, "id": id});
        if let Some(a) = arguments {
            msg["arguments"] = a.clone();
        }
        let (tx, rx) = mpsc::channel();
        {
            let (m, _) = &*self.shared;
            let mut g = lock(m);
            if g.closed {
                return Err(QmpError::Closed);
            }
            g.pending.insert(id, tx);
        }
        let line = msg.to_string();
        self.out.note(&self.source, format!("qmp> {line}"));
        let written = {
            let mut w = lock(&self.writer);
            w.write_all(line.as_bytes())
                .and_then(|_| w.write_all(b"\n"))
        };
        if written.is_err() {
            self.forget(id);
            return Err(if self.is_closed() {
                QmpError::Closed
            } else {
                QmpError::Timeout(WRITE_TIMEOUT.as_millis() as u64)
            });
        }
        match rx.recv_timeout(Duration::from_millis(timeout_ms)) {
            Ok(v) => match v.get("error") {
                Some(e) => Err(QmpError::Qemu {
                    class: e.get("class").and_then(Value::as_str).unwrap_or("?").into(),
                    desc: e.get("desc").and_then(Value::as_str).unwrap_or("").into(),
                }),
                None => Ok(v.get("return").cloned().unwrap_or(Value::Null)),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.forget(id);
                Err(QmpError::Timeout(timeout_ms))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(QmpError::Closed),
        }
    }

    fn forget(&self, id: u64) {
        let (m, _) = &*self.shared;
        lock(m).pending.remove(&id);
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.shared.0).closed
    }

    /// How many events have arrived so far (a mark for `wait_event`).
    pub fn event_count(&self) -> usize {
        lock(&self.shared.0).events.len()
    }

    pub fn events_since(&self, mark: usize) -> Vec<Event> {
        let g = lock(&self.shared.0);
        g.events
            .get(mark..)
            .map(<[Event]>::to_vec)
            .unwrap_or_default()
    }

    /// Waits for an event named `name` that arrived after `mark`.
    pub fn wait_event(&self, name: &str, mark: usize, timeout_ms: u64) -> Option<Event> {
        let (m, cv) = &*self.shared;
        let end = sys::monotonic_us() + timeout_ms * 1000;
        let mut g = lock(m);
        loop {
            if let Some(e) = g
                .events
                .get(mark..)
                .and_then(|v| v.iter().find(|e| e.name == name))
            {
                return Some(e.clone());
            }
            let left = end.saturating_sub(sys::monotonic_us());
            if left == 0 || g.closed {
                return None;
            }
            g = match cv.wait_timeout(g, Duration::from_micros(left)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}
