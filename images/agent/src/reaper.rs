//! Child reaping for PID 1. SIGCHLD is blocked in every thread (main blocks it before any
//! thread exists) and read from a signalfd by one thread, the only caller of waitpid. Code
//! that needs a child's exit status asks for it here instead of calling waitpid itself —
//! otherwise the reaper and the waiter would steal statuses from each other.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use crate::state::lock;
use crate::sys;

/// Statuses nobody asked for yet (a child can exit before its spawner registers): kept for a
/// later `wait_for`, capped so reaped orphans cannot grow it without bound.
const UNCLAIMED_MAX: usize = 1024;

#[derive(Default)]
struct Reg {
    waiters: HashMap<i32, Sender<i32>>,
    unclaimed: HashMap<i32, i32>,
}

fn reg() -> &'static Mutex<Reg> {
    static R: OnceLock<Mutex<Reg>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Reg::default()))
}

fn sigchld_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        libc::sigaddset(&mut s, libc::SIGCHLD);
        s
    }
}

/// Must run before any other thread is started, so they all inherit the mask.
pub fn block_sigchld() {
    let s = sigchld_set();
    // SAFETY: valid set pointer.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
}

pub fn start() -> Result<(), String> {
    let s = sigchld_set();
    // SAFETY: valid set pointer.
    let fd = unsafe { libc::signalfd(-1, &s, libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "signalfd: {}",
            ccwrig_proto::errno_name(sys::last_errno())
        ));
    }
    // SAFETY: fresh fd.
    let sfd = unsafe { OwnedFd::from_raw_fd(fd) };
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || run(sfd))
        .map(|_| ())
        .map_err(|e| format!("spawn reaper: {e}"))
}

fn run(sfd: OwnedFd) {
    let mut buf = [0u8; 128 * 8];
    loop {
        // SAFETY: buf is writable; signalfd reads whole siginfo records.
        let r = unsafe { libc::read(sfd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 && sys::last_errno() != libc::EINTR {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        reap_all();
    }
}

fn reap_all() {
    loop {
        let mut status = 0;
        // SAFETY: valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        let mut r = lock(reg());
        match r.waiters.remove(&pid) {
            Some(tx) => {
                let _ = tx.send(status);
            }
            None => {
                if r.unclaimed.len() >= UNCLAIMED_MAX {
                    r.unclaimed.clear();
                }
                r.unclaimed.insert(pid, status);
            }
        }
    }
}

/// The exit status (raw wait status) of `pid`, delivered once it has been reaped.
pub fn wait_for(pid: i32) -> Receiver<i32> {
    let (tx, rx) = mpsc::channel();
    let mut r = lock(reg());
    match r.unclaimed.remove(&pid) {
        Some(st) => {
            let _ = tx.send(st);
        }
        None => {
            r.waiters.insert(pid, tx);
        }
    }
    rx
}

/// `{"exit_code": n}` or `{"signal": n}` from a raw wait status.
pub fn describe(status: i32) -> (Option<i32>, Option<i32>) {
    if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    }
}
