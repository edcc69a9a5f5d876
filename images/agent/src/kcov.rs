//! KCOV around one operation: the kernel PCs the operation's own thread executed.
//!
//! A kcov file descriptor is tied to a thread only between KCOV_ENABLE and KCOV_DISABLE
//! (kernel/kcov.c resets it to its initialised state on disable), so descriptors are pooled
//! and lent to each traced operation's thread: the 2 MB trace buffer is set up once per
//! concurrently traced operation, not once per operation.
//!
//! KCOV reports runtime addresses (on s390 6.12 the kernel runs at 0x3ffe0000000 above its
//! link address, and KASLR moves it further); the agent sends offsets from the runtime
//! `_stext`, the same in every boot of a kernel, and the host adds the link-time `_stext`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use ccwrig_proto::{Cover, PcSet};

use crate::sys::{self, SysError, SysResult};

const PATH: &str = "/sys/kernel/debug/kcov";
/// `_IOR('c', 1, unsigned long)`, `_IO('c', 100)`, `_IO('c', 101)` (include/uapi/linux/kcov.h).
const KCOV_INIT_TRACE: u64 = 0x8008_6301;
const KCOV_ENABLE: u64 = 0x6364;
const KCOV_DISABLE: u64 = 0x6365;
const KCOV_TRACE_PC: libc::c_ulong = 0;
/// Trace buffer words; word 0 is the count, so one fewer PC fits. An operation with many
/// system calls (a snapshot of every subchannel) reaches tens of thousands of basic blocks on
/// a kernel instrumented throughout; a full buffer is reported, not hidden.
const WORDS: usize = 256 * 1024;

/// One initialised kcov descriptor with its buffer mapped.
struct Kcov {
    fd: OwnedFd,
    area: *mut u64,
}

// SAFETY: the mapping belongs to this value alone; it is used by one thread at a time (the
// pool hands each out to one operation).
unsafe impl Send for Kcov {}

impl Kcov {
    fn open() -> SysResult<Kcov> {
        let fd = sys::open(PATH, libc::O_RDWR)?;
        // SAFETY: KCOV_INIT_TRACE takes the buffer size in words as an integer.
        unsafe {
            sys::ioctl(
                fd.as_raw_fd(),
                KCOV_INIT_TRACE,
                WORDS as libc::c_ulong,
                "KCOV_INIT_TRACE",
            )?
        };
        let bytes = WORDS * std::mem::size_of::<u64>();
        // SAFETY: a fresh shared mapping of the descriptor's buffer; checked below.
        let area = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(SysError::last("mmap kcov"));
        }
        Ok(Kcov {
            fd,
            area: area.cast(),
        })
    }

    fn enable(&self) -> SysResult<()> {
        // SAFETY: area maps WORDS words; the kernel writes word 0 only while enabled.
        unsafe { std::ptr::write_volatile(self.area, 0) };
        // SAFETY: KCOV_ENABLE takes the trace mode as an integer.
        unsafe {
            sys::ioctl(
                self.fd.as_raw_fd(),
                KCOV_ENABLE,
                KCOV_TRACE_PC,
                "KCOV_ENABLE",
            )?
        };
        Ok(())
    }

    /// Disables tracing on this thread and reads what it recorded, as offsets from `stext`.
    fn disable(&self, stext: u64) -> SysResult<Cover> {
        // SAFETY: KCOV_DISABLE takes 0.
        unsafe { sys::ioctl(self.fd.as_raw_fd(), KCOV_DISABLE, 0, "KCOV_DISABLE")? };
        // SAFETY: tracing is off; the buffer is ours to read, WORDS words long.
        let hits = unsafe { std::ptr::read_volatile(self.area) };
        let n = (hits as usize).min(WORDS - 1);
        // SAFETY: words 1..=n are within the mapping and were written by the kernel.
        let pcs = unsafe { std::slice::from_raw_parts(self.area.add(1), n) };
        Ok(Cover::Pcs {
            pcs: PcSet::from_trace(pcs.iter().map(|pc| pc.wrapping_sub(stext))),
            hits,
            full: n == WORDS - 1,
        })
    }
}

impl Drop for Kcov {
    fn drop(&mut self) {
        // SAFETY: the mapping made in open, not used after this.
        unsafe { libc::munmap(self.area.cast(), WORDS * std::mem::size_of::<u64>()) };
    }
}

/// The runtime address of `_stext`, from /proc/kallsyms (read once: ~100k lines).
fn runtime_stext() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/kallsyms")
        .map_err(|e| format!("read /proc/kallsyms: {e}"))?;
    text.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let addr = f.next()?;
            let _kind = f.next()?;
            (f.next()? == "_stext").then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .ok_or_else(|| "no _stext in /proc/kallsyms (CONFIG_KALLSYMS?)".to_string())
        // kptr_restrict shows every address as 0.
        .and_then(|a| match a {
            0 => Err("/proc/kallsyms hides addresses (kptr_restrict)".to_string()),
            a => Ok(a),
        })
}

/// Idle kcov descriptors, lent to traced operations.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Kcov>>,
    stext: OnceLock<Result<u64, String>>,
}

impl Pool {
    /// Runs `op` on this thread with KCOV on; the coverage, or why there is none.
    pub fn traced<R>(&self, op: impl FnOnce() -> R) -> (R, Cover) {
        let unavailable = |e: SysError| Cover::Unavailable {
            reason: e.to_string(),
        };
        let stext = match self.stext.get_or_init(runtime_stext) {
            Ok(s) => *s,
            Err(reason) => {
                let reason = reason.clone();
                return (op(), Cover::Unavailable { reason });
            }
        };
        let taken = sys::lock(&self.idle).pop();
        let kcov = match taken.map_or_else(Kcov::open, Ok) {
            Ok(k) => k,
            Err(e) => return (op(), unavailable(e)),
        };
        if let Err(e) = kcov.enable() {
            return (op(), unavailable(e));
        }
        let r = op();
        let cover = kcov.disable(stext).unwrap_or_else(unavailable);
        if matches!(cover, Cover::Pcs { .. }) {
            sys::lock(&self.idle).push(kcov);
        }
        (r, cover)
    }
}
