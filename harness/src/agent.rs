//! The host end of the guest-agent protocol (JSON lines on a virtio-serial port).
//!
//! One reader task decodes every line: results go to the request waiting for them, late
//! results of blocked operations are kept by id, trace and kmsg lines are appended to
//! `trace.txt` / `dmesg.txt` as they arrive (so a killed run still has them), heartbeats
//! update the liveness clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ccwrig_proto::{
    AgentMsg, HostMsg, Op, OpResult, Request, Session, PROTOCOL_VERSION, SESSION_SEED_BYTES,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch};

use crate::rundir::{Appender, Artifact, RunDir};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent connection closed (the guest died or powered off)")]
    Closed,
    #[error("agent I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no hello from the guest agent within {0} ms (see console.log: did the kernel boot and start /init?)")]
    NoHello(u64),
    #[error("guest agent speaks protocol {agent}, this harness {host}: rebuild the image (it is rebuilt automatically from images/agent)")]
    Version { agent: u32, host: u32 },
    #[error("no answer from the agent to request {id} ({op}) within {ms} ms: the guest is not responding")]
    NoAnswer { id: u64, op: String, ms: u64 },
    #[error("the guest agent could not set up the session (clock, random seed): {}", .0.join("; "))]
    Session(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub agent_version: String,
    pub kernel_release: String,
    /// Guest CLOCK_MONOTONIC when the agent became ready (in the boot a snapshot was taken
    /// of, for a restored guest).
    pub uptime_ms: u64,
    /// Guest CLOCK_MONOTONIC when the agent answered this host's handshake.
    pub now_ms: u64,
    /// The session the agent set up: a new id, the host's wall clock, a fresh seed.
    pub session: u64,
}

/// What a guest restored from a VM snapshot had already said before the snapshot was taken:
/// the start of its kernel log and trace, and the host's record of the agent channel. A
/// restored VM's streams begin with it, so its records read as a cold boot's would.
#[derive(Debug, Clone, Default)]
pub struct Preface {
    pub kmsg: Vec<String>,
    pub trace: Vec<String>,
    /// `agent.log` of the boot the snapshot was taken in.
    pub log: String,
}

/// A new session: a random id and seed, the host's wall clock at the time of sending.
fn new_session(id: u64) -> Session {
    let seed: [u8; SESSION_SEED_BYTES] = rand::random();
    let unix_time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Session {
        id,
        unix_time_ns,
        seed: hex::encode(seed),
    }
}

/// How a request is to be answered beside its operation's own result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    /// The agent answers `Blocked` after this long and lets the operation run on.
    pub deadline_ms: u64,
    /// And sooner, once the guest's CPUs have been idle this long with the operation still
    /// running (see `ccwrig_proto::Request::idle_ms`).
    pub idle_ms: Option<u64>,
    /// Trace the operation with KCOV (the result's `cover` then says what it saw, or why it
    /// could not look).
    pub cover: bool,
    /// Make the operation's nth fault point fail (the result's `fault` says whether it did).
    pub fail_nth: Option<u32>,
}

/// A note the agent sent outside any request (e.g. what a consumer did on a device request).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Note {
    pub source: String,
    pub text: String,
    pub at_ms: u64,
}

#[derive(Default)]
struct Shared {
    pending: HashMap<u64, oneshot::Sender<OpResult>>,
    late: HashMap<u64, OpResult>,
    trace: Vec<String>,
    kmsg: Vec<String>,
    notes: Vec<Note>,
    last_heartbeat: Option<Instant>,
    running: u32,
}

pub struct Agent {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    shared: Arc<Mutex<Shared>>,
    hello: watch::Receiver<Option<HelloMsg>>,
    late_seq: watch::Receiver<u64>,
    next_id: AtomicU64,
    t0: Instant,
    closed: Arc<AtomicBool>,
}

/// A hello as received: its protocol, its session (None: the agent's own first hello) and
/// what the agent could not set up.
#[derive(Debug, Clone)]
struct HelloMsg {
    protocol: u32,
    session: Option<u64>,
    problems: Vec<String>,
    hello: Hello,
}

struct Files {
    trace: Appender,
    dmesg: Appender,
    log: Appender,
    /// `inner-qemu.log`, created with the first note of an inner QEMU.
    inner: Appender,
}

impl Agent {
    /// Starts the reader on an accepted agent connection; `dir` receives `trace.txt`,
    /// `dmesg.txt` and `agent.log`, each beginning with `preface` (a restored guest's).
    pub fn start(stream: UnixStream, dir: &RunDir, preface: Preface) -> Agent {
        let t0 = Instant::now();
        let files = Files {
            trace: dir.appender(Artifact::Trace),
            dmesg: dir.appender(Artifact::Dmesg),
            log: dir.appender(Artifact::AgentLog),
            inner: dir.appender(Artifact::InnerQemuLog),
        };
        if !preface.log.is_empty() {
            files.log.bytes(preface.log.as_bytes());
        }
        for l in &preface.kmsg {
            files.dmesg.line(l);
        }
        for l in &preface.trace {
            files.trace.line(l);
        }
        let (rd, wr) = stream.into_split();
        let shared: Arc<Mutex<Shared>> = Arc::new(Mutex::new(Shared {
            kmsg: preface.kmsg,
            trace: preface.trace,
            ..Shared::default()
        }));
        let closed = Arc::new(AtomicBool::new(false));
        let closed_w = closed.clone();
        let (hello_tx, hello_rx) = watch::channel(None);
        let (late_tx, late_rx) = watch::channel(0u64);
        let sh = shared.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(rd).lines();
            let mut late_count = 0u64;
            while let Ok(Some(line)) = lines.next_line().await {
                let msg = match serde_json::from_str::<AgentMsg>(&line) {
                    Ok(m) => m,
                    Err(e) => {
                        files.log.line(&format!(
                            "{:>9.3} undecodable line ({e}): {line}",
                            t0.elapsed().as_secs_f64()
                        ));
                        continue;
                    }
                };
                let Ok(mut g) = sh.lock() else { break };
                match msg {
                    AgentMsg::Hello {
                        protocol,
                        agent_version,
                        kernel_release,
                        uptime_ms,
                        session,
                        now_ms,
                        problems,
                    } => {
                        files
                            .log
                            .line(&format!("{:>9.3} {line}", t0.elapsed().as_secs_f64()));
                        // An answer is as good a sign of life as a beat: a VM restored from its
                        // snapshot is then known alive at once, not half a heartbeat later.
                        g.last_heartbeat = Some(Instant::now());
                        let _ = hello_tx.send(Some(HelloMsg {
                            protocol,
                            session,
                            problems,
                            hello: Hello {
                                agent_version,
                                kernel_release,
                                uptime_ms,
                                now_ms,
                                session: session.unwrap_or(0),
                            },
                        }));
                    }
                    AgentMsg::Heartbeat { running, .. } => {
                        g.last_heartbeat = Some(Instant::now());
                        g.running = running;
                    }
                    AgentMsg::Result { id, result } => {
                        files
                            .log
                            .line(&format!("{:>9.3} {line}", t0.elapsed().as_secs_f64()));
                        if let Some(tx) = g.pending.remove(&id) {
                            let _ = tx.send(result);
                        }
                    }
                    AgentMsg::Late { id, result } => {
                        files
                            .log
                            .line(&format!("{:>9.3} {line}", t0.elapsed().as_secs_f64()));
                        g.late.insert(id, result);
                        late_count += 1;
                        let _ = late_tx.send(late_count);
                    }
                    AgentMsg::Trace { line } => {
                        files.trace.line(&line);
                        g.trace.push(line);
                    }
                    AgentMsg::Kmsg { line } => {
                        files.dmesg.line(&line);
                        g.kmsg.push(line);
                    }
                    AgentMsg::Note { source, text } => {
                        // The nested image's inner QEMU: its output and QMP exchange, on their own.
                        if let Some(name) = source.strip_prefix("inner-qemu:") {
                            files.inner.line(&format!(
                                "{:>9.3} {name}: {text}",
                                t0.elapsed().as_secs_f64()
                            ));
                        }
                        files.log.line(&format!(
                            "{:>9.3} note {source}: {text}",
                            t0.elapsed().as_secs_f64()
                        ));
                        g.notes.push(Note {
                            source,
                            text,
                            at_ms: t0.elapsed().as_millis() as u64,
                        });
                    }
                }
            }
            if let Ok(mut g) = sh.lock() {
                g.pending.clear();
            }
            closed_w.store(true, Ordering::SeqCst);
        });
        Agent {
            writer: tokio::sync::Mutex::new(wr),
            shared,
            hello: hello_rx,
            late_seq: late_rx,
            next_id: AtomicU64::new(1),
            t0,
            closed,
        }
    }

    /// Waits until the guest closed the channel (QEMU exited) and every line it sent is
    /// recorded, up to `timeout`; returns whether it did.
    pub async fn wait_closed(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        while !self.closed.load(Ordering::SeqCst) {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    async fn send(&self, msg: &HostMsg) -> Result<(), AgentError> {
        let line = ccwrig_proto::encode(msg);
        let mut w = self.writer.lock().await;
        w.write_all(line.as_bytes()).await?;
        Ok(())
    }

    /// Opens a session with the agent: a hello with a new session id, the host's wall clock and
    /// a fresh seed, until the agent answers for that session. The hello is sent once, and
    /// again whenever the agent says hello for another session (its own first hello of a cold
    /// boot, or a restored guest answering a hello from before its snapshot), never on a
    /// timer: hellos sent while a guest boots queue up unread, and a snapshot taken then would
    /// make every restored guest answer each of them before this one (measured: 6 s of a
    /// debug restore).
    pub async fn handshake(&self, timeout: Duration) -> Result<Hello, AgentError> {
        let mut rx = self.hello.clone();
        let id = rand::random::<u64>() | 1;
        let hello = || HostMsg::Hello {
            protocol: PROTOCOL_VERSION,
            session: new_session(id),
        };
        let fut = async {
            self.send(&hello()).await?;
            loop {
                if rx.changed().await.is_err() {
                    return Err(AgentError::Closed);
                }
                let Some(h) = rx.borrow_and_update().clone() else {
                    continue;
                };
                if h.protocol != PROTOCOL_VERSION {
                    return Err(AgentError::Version {
                        agent: h.protocol,
                        host: PROTOCOL_VERSION,
                    });
                }
                if h.session == Some(id) {
                    return match h.problems.is_empty() {
                        true => Ok(h.hello),
                        false => Err(AgentError::Session(h.problems)),
                    };
                }
                self.send(&hello()).await?;
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| AgentError::NoHello(timeout.as_millis() as u64))?
    }

    /// How many requests have been sent so far.
    pub fn requests_sent(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    /// Sends a request and waits for its first answer (the final result, or `Blocked` at the
    /// deadline). `id` is returned so a blocked operation's late result can be awaited.
    pub async fn request(
        &self,
        actor: &str,
        op: Op,
        deadline_ms: u64,
    ) -> Result<(u64, OpResult), AgentError> {
        let ask = Ask {
            deadline_ms,
            ..Ask::default()
        };
        self.request_with(actor, op, ask).await
    }

    /// [`Agent::request`] with what a scenario step may ask beside its deadline ([`Ask`]).
    pub async fn request_with(
        &self,
        actor: &str,
        op: Op,
        ask: Ask,
    ) -> Result<(u64, OpResult), AgentError> {
        let Ask {
            deadline_ms,
            idle_ms,
            cover,
            fail_nth,
        } = ask;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = op.name();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut g) = self.shared.lock() {
            g.pending.insert(id, tx);
        }
        self.send(&HostMsg::Request(Request {
            id,
            actor: actor.to_string(),
            deadline_ms,
            idle_ms,
            op,
            cover,
            fail_nth,
        }))
        .await?;
        // The agent answers at the deadline at the latest; beyond that (plus slack for a slow
        // TCG guest) silence means the guest itself is stuck.
        let ms = deadline_ms + 15_000;
        let res = tokio::time::timeout(Duration::from_millis(ms), rx)
            .await
            .map_err(|_| AgentError::NoAnswer {
                id,
                op: name.to_string(),
                ms,
            })?
            .map_err(|_| AgentError::Closed)?;
        Ok((id, res))
    }

    /// Waits for the late result of a request that answered `Blocked`.
    pub async fn wait_late(&self, id: u64, timeout: Duration) -> Option<OpResult> {
        let mut rx = self.late_seq.clone();
        let fut = async {
            loop {
                if let Some(r) = self
                    .shared
                    .lock()
                    .ok()
                    .and_then(|g| g.late.get(&id).cloned())
                {
                    return Some(r);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.ok().flatten()
    }

    /// The late result of `id` if it has arrived.
    pub fn late(&self, id: u64) -> Option<OpResult> {
        self.shared
            .lock()
            .ok()
            .and_then(|g| g.late.get(&id).cloned())
    }

    /// Time since the last heartbeat (None before the first).
    pub fn heartbeat_age(&self) -> Option<Duration> {
        self.shared
            .lock()
            .ok()
            .and_then(|g| g.last_heartbeat)
            .map(|t| t.elapsed())
    }

    /// Operations the agent reported as still running in its last heartbeat.
    pub fn running(&self) -> u32 {
        self.shared.lock().map(|g| g.running).unwrap_or(0)
    }

    pub fn trace_lines(&self) -> Vec<String> {
        self.shared
            .lock()
            .map(|g| g.trace.clone())
            .unwrap_or_default()
    }

    pub fn kmsg_lines(&self) -> Vec<String> {
        self.shared
            .lock()
            .map(|g| g.kmsg.clone())
            .unwrap_or_default()
    }

    /// Whether a kmsg line at index `from` or later contains `needle` (no copy of the log).
    pub fn kmsg_has(&self, from: usize, needle: &str) -> bool {
        self.shared
            .lock()
            .map(|g| g.kmsg.iter().skip(from).any(|l| l.contains(needle)))
            .unwrap_or(false)
    }

    /// Whether a trace line at index `from` or later contains `needle`.
    pub fn trace_has(&self, from: usize, needle: &str) -> bool {
        self.shared
            .lock()
            .map(|g| g.trace.iter().skip(from).any(|l| l.contains(needle)))
            .unwrap_or(false)
    }

    pub fn notes(&self) -> Vec<Note> {
        self.shared
            .lock()
            .map(|g| g.notes.clone())
            .unwrap_or_default()
    }

    /// Milliseconds since this client started, the clock of `steps.jsonl`.
    pub fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }
}
