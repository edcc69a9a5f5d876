//! ccwrig-agent: PID 1 of the ccwrig guest. Mounts the pseudo filesystems, streams the kernel
//! log and the vfio_ccw trace to the host, and runs the host's operations on the real
//! vfio-ccw driver, each on its own thread with a deadline.
//!
//! Being init: a panic here is a kernel panic, so nothing the kernel or the host controls is
//! unwrapped; failures become results, notes or console lines.

mod boot;
mod dispatch;
mod fault;
mod idle;
mod kcov;
mod observe;
mod ops;
mod out;
mod params;
mod paths;
mod port;
mod qmp;
mod reaper;
mod session;
mod spawn;
mod state;
mod sys;
mod uffd;
mod vfio;

use std::sync::atomic::Ordering;
use std::time::Duration;

use ccwrig_proto::{AgentMsg, AGENT_PORT_NAME, HEARTBEAT_INTERVAL_MS, PROTOCOL_VERSION};

/// How long to wait for the virtio-serial port to show up after boot.
const PORT_WAIT: Duration = Duration::from_secs(30);

fn main() {
    // Boot-to-ready is a benchmarked goal: the note below says where the agent's share went.
    let mut startup = Startup::new();
    reaper::block_sigchld();
    let mut mount_problems = boot::mount_all(boot::CORE_MOUNTS);
    startup.step("core mounts");
    // The other mounts and the tracepoint check run beside the port lookup; the hello waits
    // for both, so "ready" still means every filesystem and tracepoint is in place.
    let helper_started = sys::monotonic_us();
    let helper = std::thread::Builder::new()
        .name("boot-mounts".into())
        .spawn(|| {
            let problems = boot::mount_all(boot::OTHER_MOUNTS);
            let traced = observe::trace::enable();
            (problems, traced, sys::monotonic_us())
        });
    // Opened before anything else so the host gets the log from the first record.
    let kmsg = observe::kmsg::open();
    if let Err(e) = reaper::start() {
        sys::console(&e);
    }
    startup.step("kmsg+reaper");

    let (outbox, queue) = out::Outbox::new();
    let agent = state::Agent::new(outbox.clone());
    startup.step("outbox");
    let (path, port) = match port::open(AGENT_PORT_NAME, PORT_WAIT) {
        Ok(p) => p,
        Err(e) => {
            sys::console(&format!("{e}; running without a host channel"));
            idle_forever();
        }
    };
    startup.step("port wait");
    let port = port::Port::new(AGENT_PORT_NAME, port);
    spawn("writer", {
        let p = port.clone();
        move || out::writer(p, queue)
    });
    startup.step("writer");
    // Without the helper (thread creation failed) its work runs here.
    let (problems, traced, helper_done) = match helper.map(|h| h.join()) {
        Ok(Ok(r)) => r,
        _ => (
            boot::mount_all(boot::OTHER_MOUNTS),
            observe::trace::enable(),
            sys::monotonic_us(),
        ),
    };
    startup.step("join mounts");
    mount_problems.extend(problems);
    for p in &mount_problems {
        outbox.note("boot", p.clone());
    }
    outbox.note("boot", format!("tracepoints enabled: {}", traced.join(" ")));
    if let Some(f) = fault::configure() {
        outbox.note("boot", f);
    }
    outbox.note(
        "boot",
        format!(
            "{}; beside them other mounts+tracepoints {:.1} ms",
            startup.text(),
            helper_done.saturating_sub(helper_started) as f64 / 1000.0
        ),
    );
    if boot::cmdline_has("ccwrig.shell=1") {
        boot::spawn_shell_forever();
    }

    let hello = AgentMsg::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: kernel_release(),
        uptime_ms: sys::monotonic_us() / 1000,
        session: None,
        now_ms: sys::monotonic_us() / 1000,
        problems: Vec::new(),
    };
    outbox.send(&hello);
    // The streams start after the hello: the kernel keeps both logs buffered, so nothing is
    // lost, and thread starts are slow enough under TCG to show in boot-to-ready.
    match kmsg {
        Ok(f) => spawn("kmsg", {
            let o = outbox.clone();
            move || observe::kmsg::stream(f, o)
        }),
        Err(e) => outbox.note("kmsg", format!("open /dev/kmsg: {e}")),
    }
    spawn("trace", {
        let o = outbox.clone();
        move || observe::trace::stream(o)
    });
    sys::console(&format!("ready on {path}"));
    spawn("heartbeat", {
        let a = agent.clone();
        move || {
            let mut seq = 0u64;
            loop {
                std::thread::sleep(Duration::from_millis(HEARTBEAT_INTERVAL_MS));
                seq += 1;
                a.out.offer(&AgentMsg::Heartbeat {
                    seq,
                    uptime_ms: sys::monotonic_us() / 1000,
                    running: a.running.load(Ordering::SeqCst),
                });
            }
        }
    });
    port::read_lines(&port, |line| dispatch::on_line(&agent, line, &hello));
}

/// Guest-side milliseconds of each startup step, from the exec of /init.
struct Startup {
    at_exec_us: u64,
    last_us: u64,
    steps: Vec<(&'static str, u64)>,
}

impl Startup {
    fn new() -> Startup {
        let now = sys::monotonic_us();
        Startup {
            at_exec_us: now,
            last_us: now,
            steps: vec![],
        }
    }

    fn step(&mut self, name: &'static str) {
        let now = sys::monotonic_us();
        self.steps.push((name, now - self.last_us));
        self.last_us = now;
    }

    fn text(&self) -> String {
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|(n, us)| format!("{n} {:.1} ms", *us as f64 / 1000.0))
            .collect();
        format!(
            "startup at uptime {} ms: {}",
            self.at_exec_us / 1000,
            parts.join(", ")
        )
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        sys::console(&format!("cannot start thread {name}: {e}"));
    }
}

/// PID 1 must never exit (the kernel would panic); without a host channel it just stays.
fn idle_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn kernel_release() -> String {
    // SAFETY: utsname is plain data filled by uname.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates release.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}
