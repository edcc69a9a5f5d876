//! Runs a program in the guest with its output captured (debugging and setup aid).

use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::json;

use super::{OpError, OpRes};
use crate::reaper;
use crate::spawn::{self, Child};
use crate::sys::{self, pipe};

/// Output kept per stream; the rest is read and discarded so the child never blocks on a full
/// pipe.
const KEEP: usize = 64 * 1024;

pub fn run(argv: &[String]) -> OpRes {
    let null = sys::open("/dev/null", libc::O_RDWR)?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let child = Child {
        stdio: [null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        controlling_tty: false,
    };
    let pid = spawn::spawn(argv, &child)?;
    let status = reaper::wait_for(pid);
    // Our copies of the write ends must go, or the reads below never see EOF.
    drop((out_w, err_w, null));
    let err_thread = std::thread::Builder::new()
        .name(format!("exec-{pid}-err"))
        .spawn(move || drain(err_r));
    let stdout = drain(out_r);
    let stderr = match err_thread {
        Ok(t) => t.join().unwrap_or_default(),
        Err(_) => String::new(),
    };
    let st = status
        .recv()
        .map_err(|_| OpError::failed("reaper went away"))?;
    let (code, sig) = reaper::describe(st);
    let data =
        json!({"pid": pid, "exit_code": code, "signal": sig, "stdout": stdout, "stderr": stderr});
    match code {
        Some(0) => Ok(data),
        _ => Err(OpError::Failed(
            format!("{argv:?} exited with {code:?} (signal {sig:?})"),
            data,
        )),
    }
}

fn drain(fd: OwnedFd) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf writable.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 && sys::last_errno() == libc::EINTR {
            continue;
        }
        if r <= 0 {
            break;
        }
        let n = r as usize;
        let room = KEEP.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buf[..room]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}
