//! The inner QEMU as a process: start it (with its QMP socket), stream its output, turn its
//! reaped status into an exit others wait on, signal it, and kill what is left at cleanup.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ccwrig_proto::InnerSignal;
use serde_json::{json, Value};

use super::super::{OpError, OpRes};
use super::device::VfioCcw;
use super::exit::{describe, exit_cell_wait, signal_name};
use super::{get, EXIT_WAIT_MS};
use crate::out::Outbox;
use crate::qmp;
use crate::reaper;
use crate::spawn::{self, Child};
use crate::state::inner_qemu::{Exit, ExitCell};
use crate::state::{lock, Agent, InnerQemu};
use crate::sys::{self, pipe, SysError};

/// Where the nested image puts Debian's binary (images/nested.toml `qemu_binary`).
const QEMU: &str = "/usr/bin/qemu-system-s390x";
/// Output kept for results (everything is also streamed as notes).
const KEEP_OUTPUT: usize = 16 * 1024;

impl InnerQemu {
    fn kill(&self, sig: i32) -> Result<(), OpError> {
        self.require_running()?;
        lock(&self.sent).push(sig);
        // SAFETY: plain syscall. The pid is ours and not yet reaped (checked just above; the
        // reaper may win the race, then the child is a zombie-free ESRCH, reported as such).
        if unsafe { libc::kill(self.pid, sig) } < 0 {
            return Err(SysError::last(format!("kill({}, {})", self.pid, signal_name(sig))).into());
        }
        Ok(())
    }
}

/// Streams the inner QEMU's stdout+stderr to the host line by line and keeps the start of it.
fn pump_output(fd: OwnedFd, keep: Arc<Mutex<String>>, out: Outbox, source: String) {
    let f = std::fs::File::from(fd);
    for line in BufReader::new(f).split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line).into_owned();
        out.note(&source, format!("stderr: {text}"));
        let mut k = lock(&keep);
        if k.len() < KEEP_OUTPUT {
            k.push_str(&text);
            k.push('\n');
        }
    }
}

/// Turns the reaped status into the exit cell and tells the host at once.
fn monitor(
    rx: std::sync::mpsc::Receiver<i32>,
    cell: ExitCell,
    sent: Arc<Mutex<Vec<i32>>>,
    started_us: u64,
    out: Outbox,
    source: String,
    sock: String,
) {
    let Ok(status) = rx.recv() else { return };
    let e = Exit {
        status,
        at_us: sys::monotonic_us(),
    };
    let (v, crashed) = describe(e, started_us, &lock(&sent));
    let _ = std::fs::remove_file(&sock);
    let what = if crashed { "CRASHED" } else { "exited" };
    out.note(&source, format!("{what}: {v}"));
    let (m, cv) = &*cell;
    *lock(m) = Some(e);
    cv.notify_all();
}

fn safe_name(name: &str) -> Result<(), OpError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(OpError::failed(format!(
            "inner QEMU name {name:?}: use 1-32 letters, digits, '-' or '_'"
        )))
    }
}

pub struct StartArgs<'a> {
    pub name: &'a str,
    pub mdev: &'a str,
    pub devno: &'a str,
    pub paused: bool,
    pub memory_mib: u32,
    pub args: &'a [String],
    pub qmp_wait_ms: u64,
}

pub fn start(agent: &Arc<Agent>, a: &StartArgs) -> OpRes {
    safe_name(a.name)?;
    if let Some(old) = lock(&agent.inner_qemus).get(a.name) {
        if old.exited().is_none() {
            return Err(OpError::failed(format!(
                "inner QEMU {:?} is still running (pid {})",
                a.name, old.pid
            )));
        }
    }
    let m = agent
        .mdev(a.mdev)
        .ok_or_else(|| OpError::failed(format!("unknown mdev {:?}", a.mdev)))?;
    let source = format!("inner-qemu:{}", a.name);
    let sock = format!("/run/inner-{}.qmp", a.name);
    let _ = std::fs::remove_file(&sock);
    let mut argv: Vec<String> = [
        QEMU,
        "-machine",
        "s390-ccw-virtio",
        "-accel",
        "tcg,tb-size=64",
        "-m",
        &a.memory_mib.to_string(),
        "-nodefaults",
        "-nographic",
        "-device",
        &VfioCcw {
            uuid: &m.uuid,
            devno: a.devno,
        }
        .arg(),
        "-qmp",
        &format!("unix:{sock},server=on,wait=off"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if a.paused {
        argv.push("-S".into());
    }
    argv.extend(a.args.iter().cloned());

    let null = sys::open("/dev/null", libc::O_RDWR)?;
    let (out_r, out_w) = pipe()?;
    let child = Child {
        stdio: [null.as_raw_fd(), out_w.as_raw_fd(), out_w.as_raw_fd()],
        controlling_tty: false,
    };
    let t0 = sys::monotonic_us();
    let pid = spawn::spawn(&argv, &child)?;
    let status = reaper::wait_for(pid);
    drop((out_w, null));
    agent
        .out
        .note(&source, format!("started pid {pid}: {}", argv.join(" ")));

    let exit: ExitCell = Arc::default();
    let sent: Arc<Mutex<Vec<i32>>> = Arc::default();
    let output: Arc<Mutex<String>> = Arc::default();
    let threads = [
        std::thread::Builder::new()
            .name(format!("iq-{}-out", a.name))
            .spawn({
                let (k, o, s) = (output.clone(), agent.out.clone(), source.clone());
                move || pump_output(out_r, k, o, s)
            })
            .err(),
        std::thread::Builder::new()
            .name(format!("iq-{}-exit", a.name))
            .spawn({
                let (c, se, o, s, so) = (
                    exit.clone(),
                    sent.clone(),
                    agent.out.clone(),
                    source.clone(),
                    sock.clone(),
                );
                move || monitor(status, c, se, t0, o, s, so)
            })
            .err(),
    ];
    if let Some(e) = threads.into_iter().flatten().next() {
        // Without its monitor nobody would notice the exit: do not leave it running.
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(OpError::failed(format!("cannot start a thread: {e}")));
    }

    let alive = || lock(&exit.0).is_none();
    let q = match qmp::connect(&sock, a.qmp_wait_ms, &agent.out, &source, &alive) {
        Ok(q) => q,
        Err(msg) => {
            lock(&sent).push(libc::SIGKILL);
            // SAFETY: plain syscall on our own child (a no-op ESRCH if it already died).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let e = exit_cell_wait(&exit, EXIT_WAIT_MS);
            // Let the output thread collect the last lines (the pipe closes with the process).
            std::thread::sleep(Duration::from_millis(100));
            let mut data = json!({"pid": pid, "argv": argv, "output": lock(&output).clone()});
            if let Some(e) = e {
                let (v, _) = describe(e, t0, &[]);
                data["exit"] = v;
            }
            return Err(OpError::Failed(
                format!("inner QEMU {}: {msg}", a.name),
                data,
            ));
        }
    };
    let qmp_ms = (sys::monotonic_us() - t0) / 1000;
    let version = q.greeting["QMP"]["version"]["qemu"].clone();
    let inner = Arc::new(InnerQemu {
        name: a.name.to_string(),
        pid,
        uuid: m.uuid.clone(),
        devno: a.devno.to_string(),
        started_us: t0,
        qmp: q,
        exit,
        sent,
        output,
        added_mark: Mutex::new(0),
    });
    lock(&agent.inner_qemus).insert(a.name.to_string(), inner);
    Ok(json!({"pid": pid, "qmp_ms": qmp_ms, "qemu": version, "argv": argv}))
}

/// The process state letter from /proc/PID/stat (`T` when stopped).
fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: the state follows the last ')'.
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

pub fn signal(agent: &Agent, name: &str, sig: InnerSignal) -> OpRes {
    let i = get(agent, name)?;
    let (num, wait_stopped) = match sig {
        InnerSignal::Term => (libc::SIGTERM, None),
        InnerSignal::Kill => (libc::SIGKILL, None),
        InnerSignal::Stop => (libc::SIGSTOP, Some(true)),
        InnerSignal::Cont => (libc::SIGCONT, Some(false)),
    };
    i.kill(num)?;
    let Some(want_stopped) = wait_stopped else {
        return match i.wait_exit(EXIT_WAIT_MS) {
            Some(e) => i.exit_result(e),
            None => Err(OpError::Failed(
                format!(
                    "inner QEMU {} still running {EXIT_WAIT_MS} ms after {}",
                    i.name,
                    signal_name(num)
                ),
                json!({"pid": i.pid}),
            )),
        };
    };
    // A signal is delivered asynchronously: answer once the process is (no longer) stopped,
    // so the next step of the scenario really runs against a stopped (running) QEMU.
    let end = sys::monotonic_us() + 2_000_000;
    loop {
        let st = proc_state(i.pid);
        if st.is_some_and(|c| (c == 'T') == want_stopped) {
            return Ok(json!({"pid": i.pid, "state": st.map(String::from)}));
        }
        if i.exited().is_some() || sys::monotonic_us() >= end {
            return Err(OpError::Failed(
                format!(
                    "inner QEMU {}: state {st:?} after {}",
                    i.name,
                    signal_name(num)
                ),
                json!({"pid": i.pid}),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait(agent: &Agent, name: &str, timeout_ms: u64) -> OpRes {
    let i = get(agent, name)?;
    match i.wait_exit(timeout_ms) {
        Some(e) => i.exit_result(e),
        None => Err(OpError::Failed(
            format!("inner QEMU {} still running after {timeout_ms} ms", i.name),
            json!({"pid": i.pid}),
        )),
    }
}

/// For `cleanup`: SIGKILL every inner QEMU still running and forget them all. Returns a step
/// per inner QEMU, and the names of those that crashed at any point (a crash nobody waited for
/// must still fail the program).
pub fn kill_all(agent: &Agent) -> (Vec<Value>, Vec<String>) {
    let all: Vec<Arc<InnerQemu>> = std::mem::take(&mut *lock(&agent.inner_qemus))
        .into_values()
        .collect();
    let mut steps = Vec::new();
    let mut crashed = Vec::new();
    for i in all {
        let was_running = i.exited().is_none();
        if was_running {
            lock(&i.sent).push(libc::SIGKILL);
            // SAFETY: plain syscall on our own, not yet reaped child.
            unsafe { libc::kill(i.pid, libc::SIGKILL) };
        }
        let step = match i.wait_exit(EXIT_WAIT_MS) {
            Some(e) => {
                let (mut v, c) = i.exit_data(e);
                if c {
                    crashed.push(i.name.clone());
                }
                if let Some(o) = v.as_object_mut() {
                    o.remove("output");
                }
                json!({"inner_qemu": i.name, "killed": was_running, "exit": v})
            }
            None => {
                crashed.push(format!("{} (still running after SIGKILL)", i.name));
                json!({"inner_qemu": i.name, "killed": was_running, "error": "still running after SIGKILL"})
            }
        };
        steps.push(step);
    }
    (steps, crashed)
}
