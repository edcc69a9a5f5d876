//! QMP: typed commands from the `qapi` crate, with our own line reader.
//!
//! qapi 0.15's schema is QEMU 9.1; its event enum is untagged, so one event QEMU 10 added
//! would end its stream. Each line is therefore decoded as JSON first: replies are routed to
//! the waiting command by id, events are kept as name + data (and decoded to qapi's typed
//! events only where a caller asks for one). Every line in either direction goes to `qmp.log`.

use crate::rundir::Appender;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP connection closed")]
    Closed,
    #[error("QMP I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP {command}: no reply within {ms} ms")]
    Timeout { command: String, ms: u64 },
    #[error("QMP {command}: reply did not decode: {source}")]
    Decode {
        command: String,
        source: serde_json::Error,
    },
    #[error("no QMP event {name} within {ms} ms")]
    EventTimeout { name: String, ms: u64 },
}

/// An event as QEMU sent it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
    /// Host time since the client connected, for ordering against other records.
    pub at_ms: u64,
}

impl QmpEvent {
    /// Decodes into one of qapi's typed events, if this is that event.
    pub fn decode<E: qapi::Event>(&self) -> Option<E> {
        if self.name != E::NAME {
            return None;
        }
        serde_json::from_value(self.data.clone()).ok()
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct Qmp {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    events: Arc<Mutex<Vec<QmpEvent>>>,
    event_seq: watch::Receiver<usize>,
    next_id: std::sync::atomic::AtomicU64,
    log: Arc<Appender>,
    t0: std::time::Instant,
    pub greeting: Value,
}

fn log_line(log: &Appender, t0: std::time::Instant, dir: &str, line: &str) {
    log.line(&format!(
        "{:>9.3} {dir} {}",
        t0.elapsed().as_secs_f64(),
        line.trim_end()
    ));
}

impl Qmp {
    /// Takes a connected stream, reads the greeting and negotiates capabilities.
    pub async fn handshake(stream: UnixStream, log: Appender) -> Result<Qmp, QmpError> {
        let t0 = std::time::Instant::now();
        let log = Arc::new(log);
        let (rd, wr) = stream.into_split();
        let mut lines = BufReader::new(rd).lines();
        let greeting_line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| QmpError::Timeout {
                command: "greeting".into(),
                ms: 30_000,
            })??
            .ok_or(QmpError::Closed)?;
        log_line(&log, t0, "<-", &greeting_line);
        let greeting: Value =
            serde_json::from_str(&greeting_line).map_err(|source| QmpError::Decode {
                command: "greeting".into(),
                source,
            })?;
        let pending: Pending = Arc::default();
        let events: Arc<Mutex<Vec<QmpEvent>>> = Arc::default();
        let (seq_tx, seq_rx) = watch::channel(0usize);
        {
            let pending = pending.clone();
            let events = events.clone();
            let log = log.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    log_line(&log, t0, "<-", &line);
                    let Ok(v) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if let Some(name) = v.get("event").and_then(Value::as_str) {
                        let ev = QmpEvent {
                            name: name.to_string(),
                            data: v.get("data").cloned().unwrap_or(Value::Null),
                            at_ms: t0.elapsed().as_millis() as u64,
                        };
                        let n = {
                            let Ok(mut g) = events.lock() else { break };
                            g.push(ev);
                            g.len()
                        };
                        let _ = seq_tx.send(n);
                    } else if let Some(id) = v.get("id").and_then(Value::as_u64) {
                        let tx = pending.lock().ok().and_then(|mut p| p.remove(&id));
                        if let Some(tx) = tx {
                            let _ = tx.send(v);
                        }
                    }
                }
                // Dropping every pending sender wakes their waiters with Closed.
                if let Ok(mut p) = pending.lock() {
                    p.clear();
                }
            });
        }
        let qmp = Qmp {
            writer: tokio::sync::Mutex::new(wr),
            pending,
            events,
            event_seq: seq_rx,
            next_id: 1.into(),
            log,
            t0,
            greeting,
        };
        qmp.execute(&qapi::qmp::qmp_capabilities { enable: None })
            .await?;
        Ok(qmp)
    }

    /// Runs one typed command and decodes its reply.
    pub async fn execute<C: qapi::Command>(&self, cmd: &C) -> Result<C::Ok, QmpError> {
        self.execute_timeout(cmd, Duration::from_secs(10)).await
    }

    pub async fn execute_timeout<C: qapi::Command>(
        &self,
        cmd: &C,
        timeout: Duration,
    ) -> Result<C::Ok, QmpError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let line = serde_json::to_string(&qapi::Execute::<&C, u64>::new(cmd, Some(id))).map_err(
            |source| QmpError::Decode {
                command: C::NAME.into(),
                source,
            },
        )?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        log_line(&self.log, self.t0, "->", &line);
        {
            let mut w = self.writer.lock().await;
            w.write_all(line.as_bytes()).await?;
            w.write_all(b"\n").await?;
        }
        let reply = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| QmpError::Timeout {
                command: C::NAME.into(),
                ms: timeout.as_millis() as u64,
            })?
            .map_err(|_| QmpError::Closed)?;
        if let Some(err) = reply.get("error") {
            let s = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            return Err(QmpError::Command {
                command: C::NAME.into(),
                class: s("class"),
                desc: s("desc"),
            });
        }
        serde_json::from_value(reply.get("return").cloned().unwrap_or(Value::Null)).map_err(
            |source| QmpError::Decode {
                command: C::NAME.into(),
                source,
            },
        )
    }

    /// All events received so far.
    pub fn events(&self) -> Vec<QmpEvent> {
        self.events.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// How many events have arrived; pass it to [`Qmp::wait_event`] to wait only for newer ones.
    pub fn event_mark(&self) -> usize {
        *self.event_seq.borrow()
    }

    /// Waits for an event named `name` (optionally matching `pred`) among those after `mark`.
    pub async fn wait_event(
        &self,
        name: &str,
        mark: usize,
        timeout: Duration,
        pred: impl Fn(&QmpEvent) -> bool,
    ) -> Result<QmpEvent, QmpError> {
        let mut rx = self.event_seq.clone();
        let find = |from: usize| -> Option<QmpEvent> {
            let g = self.events.lock().ok()?;
            g.iter()
                .skip(from)
                .find(|e| e.name == name && pred(e))
                .cloned()
        };
        let fut = async {
            loop {
                if let Some(e) = find(mark) {
                    return Ok(e);
                }
                if rx.changed().await.is_err() {
                    return find(mark).ok_or(QmpError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| QmpError::EventTimeout {
                name: name.into(),
                ms: timeout.as_millis() as u64,
            })?
    }
}
