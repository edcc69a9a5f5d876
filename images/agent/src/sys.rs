//! Thin, checked wrappers around the system calls the agent makes. Every failure carries the
//! name of the call that failed, because that name is what the host reports (`write remove`,
//! `VFIO_DEVICE_RESET`).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// A failed system call: which call, and the errno it returned.
#[derive(Debug, Clone)]
pub struct SysError {
    pub call: String,
    pub errno: i32,
}

impl SysError {
    pub fn new(call: impl Into<String>, errno: i32) -> Self {
        SysError {
            call: call.into(),
            errno,
        }
    }

    /// The errno of the last failed libc call, attributed to `call`.
    pub fn last(call: impl Into<String>) -> Self {
        Self::new(call, last_errno())
    }

    pub fn from_io(call: impl Into<String>, e: &io::Error) -> Self {
        // An io::Error without an OS code comes from std itself (e.g. a NUL in a path).
        Self::new(call, e.raw_os_error().unwrap_or(libc::EINVAL))
    }
}

impl std::fmt::Display for SysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed: {}",
            self.call,
            ccwrig_proto::errno_name(self.errno)
        )
    }
}

pub type SysResult<T> = Result<T, SysError>;

/// Locks a mutex, recovering the data if a thread panicked while holding it (with
/// panic=abort that cannot happen, but the agent must not depend on the profile).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn cstring(s: &str) -> SysResult<CString> {
    CString::new(s).map_err(|_| SysError::new(format!("path {s:?} contains NUL"), libc::EINVAL))
}

/// A pipe (read end, write end), both close-on-exec: a child gets the write end as its
/// stdout/stderr through spawn's dup2, nothing else inherits it.
pub fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
    let mut p = [0; 2];
    // SAFETY: p is two writable ints.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(SysError::last("pipe2"));
    }
    // SAFETY: fresh fds owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
}

/// CLOCK_MONOTONIC in microseconds (the clock all protocol timestamps use).
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

pub fn open(path: &str, flags: libc::c_int) -> SysResult<OwnedFd> {
    let c = cstring(path)?;
    // SAFETY: c is a valid NUL-terminated string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(SysError::last(format!("open {path}")));
    }
    // SAFETY: fd was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ioctl(fd, req, arg)`; returns the (non-negative) return value.
///
/// # Safety
/// `arg` must be what the kernel expects for `req`: a pointer to a correctly sized struct that
/// stays valid for the call, or an integer.
pub unsafe fn ioctl(fd: RawFd, req: u64, arg: libc::c_ulong, name: &str) -> SysResult<i32> {
    let r = libc::ioctl(fd, req as _, arg);
    if r < 0 {
        return Err(SysError::last(name));
    }
    Ok(r)
}

/// `ioctl` with a pointer to `T` as its argument.
pub fn ioctl_ptr<T>(fd: RawFd, req: u64, arg: &mut T, name: &str) -> SysResult<i32> {
    // SAFETY: arg is a live exclusive reference; callers pass the struct the request expects
    // (layouts live in vfio::abi next to the request numbers).
    unsafe { ioctl(fd, req, arg as *mut T as libc::c_ulong, name) }
}

pub fn pwrite(fd: RawFd, buf: &[u8], off: u64, name: &str) -> SysResult<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let r = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off as libc::off_t) };
    if r < 0 {
        return Err(SysError::last(name));
    }
    Ok(r as usize)
}

pub fn pread(fd: RawFd, buf: &mut [u8], off: u64, name: &str) -> SysResult<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let r = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as libc::off_t) };
    if r < 0 {
        return Err(SysError::last(name));
    }
    Ok(r as usize)
}

/// poll() one fd for POLLIN; `Ok(false)` on timeout. EINTR is retried with the remaining time.
pub fn poll_in(fd: RawFd, timeout_ms: u64, name: &str) -> SysResult<bool> {
    let end = monotonic_us() + timeout_ms * 1000;
    loop {
        let left_ms = end.saturating_sub(monotonic_us()).div_ceil(1000);
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: p is one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, left_ms.min(i32::MAX as u64) as i32) };
        if r < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(SysError::new(name, e));
        }
        return Ok(r > 0);
    }
}

pub fn eventfd() -> SysResult<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(SysError::last("eventfd"));
    }
    // SAFETY: fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads (and so resets) an eventfd counter; 0 when it was not signalled.
pub fn eventfd_take(fd: &impl AsRawFd) -> u64 {
    let mut v = [0u8; 8];
    // SAFETY: v is 8 writable bytes; the fd is non-blocking so this never sleeps.
    let r = unsafe { libc::read(fd.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
    if r == 8 {
        u64::from_ne_bytes(v)
    } else {
        0
    }
}

/// Writes a sysfs/procfs attribute in one write() call, as `echo` would (sysfs attributes act
/// on a single write; a short or split write would change the meaning).
pub fn write_attr(path: &str, value: &str) -> SysResult<()> {
    let fd = open(path, libc::O_WRONLY)?;
    let r = pwrite_plain(fd.as_raw_fd(), value.as_bytes());
    r.map_err(|e| SysError::new(format!("write {path}"), e))
}

fn pwrite_plain(fd: RawFd, buf: &[u8]) -> Result<(), i32> {
    // SAFETY: buf valid for len bytes.
    let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// Reads a small text attribute, trimmed.
pub fn read_attr(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Basename of a symlink's target (`driver` -> `vfio_ccw`).
pub fn link_name(path: impl AsRef<Path>) -> Option<String> {
    let t = fs::read_link(path).ok()?;
    t.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Sorted entry names of a directory; empty when it does not exist.
pub fn dir_names(path: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(path) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

pub fn mount(src: &str, target: &str, fstype: &str, data: Option<&str>) -> SysResult<()> {
    let _ = fs::create_dir_all(target);
    let (s, t, f) = (cstring(src)?, cstring(target)?, cstring(fstype)?);
    let d = match data {
        Some(d) => Some(cstring(d)?),
        None => None,
    };
    let dp = d.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: all pointers are valid NUL-terminated strings or NULL.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, dp) };
    if r < 0 {
        return Err(SysError::last(format!("mount {fstype} on {target}")));
    }
    Ok(())
}

/// Random bytes from the kernel (getrandom without GRND_NONBLOCK may wait for entropy early
/// in boot; the guest has virtio-rng, and GRND_INSECURE is enough for UUIDs).
pub fn random_bytes(buf: &mut [u8]) -> SysResult<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: rest is valid for rest.len() bytes. 0x0004 = GRND_INSECURE.
        let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0x0004) };
        if r < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(SysError::new("getrandom", e));
        }
        done += r as usize;
    }
    Ok(())
}

/// Writes a diagnostic line to the console. Never panics (unlike eprintln!): the agent is
/// PID 1 and a failed console write must not bring the kernel down.
pub fn console(msg: &str) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "ccwrig-agent: {msg}");
}
