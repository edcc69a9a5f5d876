//! fork + execve done by hand. std::process is not usable in this PID 1: its spawn paths
//! call waitpid themselves (and assert on the result), which races the reaper thread.
//! Everything the child needs is prepared before fork(); the child only makes
//! async-signal-safe calls.

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::sys::{self, SysError, SysResult};

const PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin";

pub struct Child {
    /// fds for the child's 0, 1, 2.
    pub stdio: [RawFd; 3],
    /// setsid() and make stdin the controlling terminal (an interactive shell on a tty).
    pub controlling_tty: bool,
}

fn resolve(prog: &str) -> SysResult<CString> {
    let exe = |p: &str| {
        let c = sys::cstring(p).ok()?;
        // SAFETY: valid C string.
        (unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0).then_some(c)
    };
    if prog.contains('/') {
        return exe(prog).ok_or_else(|| SysError::last(format!("exec {prog}")));
    }
    PATH.split(':')
        .find_map(|d| exe(&format!("{d}/{prog}")))
        .ok_or_else(|| SysError::new(format!("exec {prog} (not found in {PATH})"), libc::ENOENT))
}

/// Starts `argv` and returns its pid. Its exit status comes from `reaper::wait_for`.
pub fn spawn(argv: &[String], c: &Child) -> SysResult<i32> {
    let first = argv
        .first()
        .ok_or_else(|| SysError::new("exec: empty argv", libc::EINVAL))?;
    let path = resolve(first)?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| sys::cstring(a))
        .collect::<SysResult<_>>()?;
    let env: Vec<CString> = [
        format!("PATH={PATH}"),
        "HOME=/root".into(),
        "TERM=linux".into(),
    ]
    .iter()
    .map(|e| sys::cstring(e))
    .collect::<SysResult<_>>()?;
    let mut argp: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let stdio = c.stdio;
    let ctty = c.controlling_tty;
    // SAFETY: fork in a multi-threaded process; the child below touches only pre-built data
    // and async-signal-safe calls before execve/_exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError::last("fork"));
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only.
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if ctty {
                libc::setsid();
                libc::ioctl(stdio[0], libc::TIOCSCTTY as _, 0);
            }
            for (i, fd) in stdio.iter().enumerate() {
                if *fd == i as i32 {
                    // dup2 onto itself keeps FD_CLOEXEC; the fd must survive execve.
                    libc::fcntl(*fd, libc::F_SETFD, 0);
                } else {
                    libc::dup2(*fd, i as i32);
                }
            }
            libc::execve(path.as_ptr(), argp.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    Ok(pid)
}
