//! A real qemu-system-s390x inside the guest (nested image) holding an mdev as its vfio-ccw
//! device: start, QMP commands, signals, exit. What the inner QEMU prints and every QMP line go
//! to the host as notes from `inner-qemu:<name>`; its exit (and whether it crashed) is data in
//! the results and a note the moment it happens.
//!
//! The process is reaped by the reaper thread like every child; a monitor thread turns the
//! status into an `Exit` others wait on with deadlines.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use ccwrig_proto::InnerSignal;
use serde_json::{json, Value};

use super::inner_qemu_qmp::{self as qmp, Qmp, QmpError};
use super::{OpError, OpRes};
use crate::out::Outbox;
use crate::reaper;
use crate::spawn::{self, Child};
use crate::state::{lock, Agent};
use crate::sys::{self, SysError};

/// Where the nested image puts Debian's binary (images/nested.toml `qemu_binary`).
const QEMU: &str = "/usr/bin/qemu-system-s390x";
/// The id of the vfio-ccw device in the inner machine (device_del/device_add refer to it).
const DEVICE_ID: &str = "hostdev0";
/// Deadline of one QMP command; a stopped inner QEMU answers nothing.
const QMP_TIMEOUT_MS: u64 = 5000;
/// How long quit/term/kill/cleanup wait for the process to go.
const EXIT_WAIT_MS: u64 = 10_000;
/// Output kept for results (everything is also streamed as notes).
const KEEP_OUTPUT: usize = 16 * 1024;
/// Signals that mean the inner QEMU crashed, whoever sent them.
const CRASH_SIGNALS: &[i32] = &[
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGABRT,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGSYS,
];

#[derive(Debug, Clone, Copy)]
struct Exit {
    status: i32,
    at_us: u64,
}

type ExitCell = Arc<(Mutex<Option<Exit>>, Condvar)>;

pub struct Inner {
    name: String,
    pid: i32,
    uuid: String,
    devno: String,
    started_us: u64,
    qmp: Qmp,
    exit: ExitCell,
    /// Signals the agent sent (a SIGKILL it sent is not a crash).
    sent: Arc<Mutex<Vec<i32>>>,
    output: Arc<Mutex<String>>,
    /// Event count when the vfio-ccw device was last plugged (start or device_add): a
    /// DEVICE_DELETED after it means the device is gone from the inner machine.
    added_mark: Mutex<usize>,
}

fn registry() -> &'static Mutex<BTreeMap<String, Arc<Inner>>> {
    static R: OnceLock<Mutex<BTreeMap<String, Arc<Inner>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn get(name: &str) -> Result<Arc<Inner>, OpError> {
    lock(registry())
        .get(name)
        .cloned()
        .ok_or_else(|| OpError::failed(format!("no inner QEMU named {name:?} (inner_start first)")))
}

fn signal_name(sig: i32) -> String {
    let n = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    n.to_string()
}

fn exit_cell_wait(cell: &ExitCell, timeout_ms: u64) -> Option<Exit> {
    let (m, cv) = &**cell;
    let end = sys::monotonic_us() + timeout_ms * 1000;
    let mut g = lock(m);
    loop {
        if let Some(e) = *g {
            return Some(e);
        }
        let left = end.saturating_sub(sys::monotonic_us());
        if left == 0 {
            return None;
        }
        g = match cv.wait_timeout(g, Duration::from_micros(left)) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
}

/// Exit status as data, and whether it was a crash.
fn describe(e: Exit, started_us: u64, sent: &[i32]) -> (Value, bool) {
    let (code, sig) = reaper::describe(e.status);
    let crashed = sig.is_some_and(|s| CRASH_SIGNALS.contains(&s) || !sent.contains(&s));
    let v = json!({
        "exit_code": code,
        "signal": sig.map(signal_name),
        "crashed": crashed,
        "ran_ms": e.at_us.saturating_sub(started_us) / 1000,
    });
    (v, crashed)
}

impl Inner {
    fn exited(&self) -> Option<Exit> {
        *lock(&self.exit.0)
    }

    fn wait_exit(&self, timeout_ms: u64) -> Option<Exit> {
        exit_cell_wait(&self.exit, timeout_ms)
    }

    fn output(&self) -> String {
        lock(&self.output).clone()
    }

    fn exit_data(&self, e: Exit) -> (Value, bool) {
        let sent = lock(&self.sent).clone();
        let (mut v, crashed) = describe(e, self.started_us, &sent);
        v["pid"] = json!(self.pid);
        v["output"] = json!(self.output());
        (v, crashed)
    }

    /// The result of an operation that ends with the process gone.
    fn exit_result(&self, e: Exit) -> OpRes {
        let (v, crashed) = self.exit_data(e);
        if crashed {
            return Err(OpError::Failed(
                format!(
                    "inner QEMU {} crashed ({})",
                    self.name,
                    v["signal"].as_str().unwrap_or("?")
                ),
                v,
            ));
        }
        Ok(v)
    }

    fn require_running(&self) -> Result<(), OpError> {
        match self.exited() {
            None => Ok(()),
            Some(e) => {
                let (v, _) = self.exit_data(e);
                Err(OpError::Failed(
                    format!("inner QEMU {} has exited", self.name),
                    v,
                ))
            }
        }
    }

    fn qmp(&self, command: &str, args: Option<&Value>) -> Result<Value, OpError> {
        self.require_running()?;
        self.qmp
            .execute(command, args, QMP_TIMEOUT_MS)
            .map_err(|e| {
                let data =
                    json!({"command": command, "pid": self.pid, "exited": self.exited().is_some()});
                OpError::Failed(format!("inner QEMU {}: {command}: {e}", self.name), data)
            })
    }

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

    fn device_arg(&self) -> String {
        format!(
            "vfio-ccw,sysfsdev=/sys/bus/mdev/devices/{},devno={},id={DEVICE_ID}",
            self.uuid, self.devno
        )
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SysError> {
    let mut p = [0; 2];
    // SAFETY: p is two writable ints.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(SysError::last("pipe2"));
    }
    // SAFETY: fresh fds owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
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
    if let Some(old) = lock(registry()).get(a.name) {
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
        &format!(
            "vfio-ccw,sysfsdev=/sys/bus/mdev/devices/{},devno={},id={DEVICE_ID}",
            m.uuid, a.devno
        ),
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
    let inner = Arc::new(Inner {
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
    lock(registry()).insert(a.name.to_string(), inner);
    Ok(json!({"pid": pid, "qmp_ms": qmp_ms, "qemu": version, "argv": argv}))
}

pub fn qmp_command(name: &str, command: &str, arguments: Option<&Value>) -> OpRes {
    let i = get(name)?;
    let r = i.qmp(command, arguments)?;
    Ok(json!({"return": r}))
}

pub fn quit(name: &str) -> OpRes {
    let i = get(name)?;
    i.require_running()?;
    // QEMU may close the socket before its answer is read: that is a successful quit too.
    match i.qmp.execute("quit", None, QMP_TIMEOUT_MS) {
        Ok(_) | Err(QmpError::Closed) => {}
        Err(e) => {
            return Err(OpError::Failed(
                format!("inner QEMU {}: quit: {e}", i.name),
                json!({"pid": i.pid}),
            ))
        }
    }
    match i.wait_exit(EXIT_WAIT_MS) {
        Some(e) => i.exit_result(e),
        None => Err(OpError::Failed(
            format!(
                "inner QEMU {} still running {EXIT_WAIT_MS} ms after quit",
                i.name
            ),
            json!({"pid": i.pid}),
        )),
    }
}

/// The process state letter from /proc/PID/stat (`T` when stopped).
fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: the state follows the last ')'.
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

pub fn signal(name: &str, sig: InnerSignal) -> OpRes {
    let i = get(name)?;
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

pub fn device_del(name: &str, wait_ms: u64) -> OpRes {
    let i = get(name)?;
    let mark = i.qmp.event_count();
    let t0 = sys::monotonic_us();
    let events = |from: usize| {
        i.qmp
            .events_since(from)
            .iter()
            .map(|e| json!({"event": e.name, "data": e.data}))
            .collect::<Vec<_>>()
    };
    i.require_running()?;
    let by_request = match i.qmp.execute(
        "device_del",
        Some(&json!({"id": DEVICE_ID})),
        QMP_TIMEOUT_MS,
    ) {
        Ok(_) => false,
        // The kernel's device request (a remove or unplug racing this step) made QEMU unplug
        // the device itself a moment earlier: the goal of the step is reached all the same,
        // once its DEVICE_DELETED (which may follow the error) is seen.
        Err(QmpError::Qemu { class, .. }) if class == "DeviceNotFound" => true,
        Err(e) => {
            return Err(OpError::Failed(
                format!("inner QEMU {}: device_del: {e}", i.name),
                json!({"pid": i.pid, "exited": i.exited().is_some()}),
            ))
        }
    };
    let since = if by_request {
        *lock(&i.added_mark)
    } else {
        mark
    };
    match i.qmp.wait_event("DEVICE_DELETED", since, wait_ms) {
        Some(e) => Ok(json!({
            "deleted_after_ms": e.at_us.saturating_sub(t0) / 1000,
            "deleted_by": if by_request { "inner QEMU on the device request" } else { "device_del" },
            "events": events(since),
        })),
        None => Err(OpError::Failed(
            format!(
                "inner QEMU {}: no DEVICE_DELETED within {wait_ms} ms",
                i.name
            ),
            json!({"exited": i.exited().is_some(), "device_not_found": by_request}),
        )),
    }
}

pub fn device_add(name: &str) -> OpRes {
    let i = get(name)?;
    let mut args = json!({"driver": "vfio-ccw", "id": DEVICE_ID, "devno": i.devno});
    args["sysfsdev"] = json!(format!("/sys/bus/mdev/devices/{}", i.uuid));
    let mark = i.qmp.event_count();
    i.qmp("device_add", Some(&args))?;
    *lock(&i.added_mark) = mark;
    Ok(json!({"device": i.device_arg()}))
}

pub fn system_reset(name: &str, count: u32) -> OpRes {
    let i = get(name)?;
    let mut took = Vec::new();
    for _ in 0..count {
        let mark = i.qmp.event_count();
        let t0 = sys::monotonic_us();
        i.qmp("system_reset", None)?;
        // The reset itself runs in QEMU's main loop after the answer; RESET marks its end.
        if i.qmp.wait_event("RESET", mark, QMP_TIMEOUT_MS).is_none() {
            return Err(OpError::Failed(
                format!("inner QEMU {}: no RESET event after system_reset", i.name),
                json!({"resets_done": took.len()}),
            ));
        }
        took.push((sys::monotonic_us() - t0) / 1000);
    }
    Ok(json!({"resets": count, "ms": took}))
}

pub fn wait(name: &str, timeout_ms: u64) -> OpRes {
    let i = get(name)?;
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
pub fn kill_all() -> (Vec<Value>, Vec<String>) {
    let all: Vec<Arc<Inner>> = std::mem::take(&mut *lock(registry()))
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
