//! `region_access`: any read, write or mmap of a region, at any offset and size, from several
//! threads at once — the accesses a careless or hostile user can make besides QEMU's.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};

use ccwrig_proto::{RegionAccessKind, RegionKind};
use serde_json::json;

use super::device::find_region;
use super::{device_fd, OpError, OpRes};
use crate::state::Handle;
use crate::sys::{self, SysError};

/// Larger accesses are a scenario's mistake, not a test of the driver (the largest region is
/// the 124-byte I/O region; the vfio core checks the offset's region index first).
const MAX_SIZE: u64 = 1 << 16;

pub struct Access {
    pub region: RegionKind,
    pub access: RegionAccessKind,
    pub offset: u64,
    pub size: Option<u64>,
    pub threads: u32,
    pub count: u32,
}

pub fn run(h: &Handle, a: &Access) -> OpRes {
    let r = find_region(h, a.region)?;
    let dev = device_fd(h)?;
    let fd = dev.as_raw_fd();
    let size = a.size.unwrap_or(r.size.saturating_sub(a.offset));
    if size > MAX_SIZE {
        return Err(OpError::failed(format!(
            "size {size} is larger than {MAX_SIZE}"
        )));
    }
    let pos = r.offset + a.offset;
    let call = format!(
        "{:?} {:?} region at +{} size {size}",
        a.access, a.region, a.offset
    )
    .to_lowercase();
    // What a write writes: the range as a read sees it now, so the driver gets its own last
    // ORB or command back rather than zeros it rejects at once.
    let mut data = vec![0u8; size as usize];
    if a.access == RegionAccessKind::Write {
        if let Ok(n) = sys::pread(fd, &mut data, pos, &call) {
            data[n..].fill(0);
        }
    }
    // One thread: this one, whose KCOV buffer records the step's coverage (spawned threads
    // have none, so their accesses are invisible to coverage-guided fuzzing).
    if a.threads <= 1 {
        let mine = (0..a.count.max(1))
            .map(|_| one(fd, a.access, pos, &data))
            .collect();
        return summarize(&call, size, vec![mine]);
    }
    // A thread that cannot be made counts as one access failing with the errno: under a
    // step's `fail_nth` the clone itself may get the injected ENOMEM, and `Scope::spawn` would
    // panic, which aborts the agent (init) and with it the guest.
    let results: Vec<Vec<Result<usize, i32>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..a.threads.max(1))
            .map(|_| {
                let data = &data;
                std::thread::Builder::new().spawn_scoped(s, move || {
                    (0..a.count.max(1))
                        .map(|_| one(fd, a.access, pos, data))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| match w {
                Ok(w) => w.join().unwrap_or_else(|_| vec![Err(libc::EFAULT)]),
                Err(e) => vec![Err(e.raw_os_error().unwrap_or(libc::EAGAIN))],
            })
            .collect()
    });
    summarize(&call, size, results)
}

/// One access; the byte count or the errno.
fn one(fd: RawFd, access: RegionAccessKind, pos: u64, data: &[u8]) -> Result<usize, i32> {
    let r = match access {
        RegionAccessKind::Read => {
            let mut buf = vec![0u8; data.len()];
            sys::pread(fd, &mut buf, pos, "pread")
        }
        RegionAccessKind::Write => sys::pwrite(fd, data, pos, "pwrite"),
        RegionAccessKind::Mmap => map(fd, pos, data.len()),
    };
    r.map_err(|e| e.errno)
}

fn map(fd: RawFd, pos: u64, len: usize) -> sys::SysResult<usize> {
    // SAFETY: a fresh shared mapping at an address of the kernel's choosing, unmapped below
    // before anything could use it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len.max(1),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            pos as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(SysError::last("mmap"));
    }
    // SAFETY: p is the mapping just made, of that length.
    unsafe { libc::munmap(p, len.max(1)) };
    Ok(len)
}

/// Counts results by kind (`ok`, `short`, errno names); fails with the most frequent errno.
fn summarize(call: &str, size: u64, results: Vec<Vec<Result<usize, i32>>>) -> OpRes {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut errnos: BTreeMap<i32, u32> = BTreeMap::new();
    for r in results.iter().flatten() {
        let key = match r {
            Ok(n) if *n as u64 == size => "ok".to_string(),
            Ok(_) => "short".to_string(),
            Err(e) => {
                *errnos.entry(*e).or_default() += 1;
                ccwrig_proto::errno_name(*e)
            }
        };
        *counts.entry(key).or_default() += 1;
    }
    let data = json!({"call": call, "size": size, "results": counts});
    match errnos.iter().max_by_key(|(e, n)| (**n, -**e)) {
        None => Ok(data),
        Some((e, _)) => Err(OpError::Sys(SysError::new(call, *e), data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_frequent_errno_is_the_outcome() {
        let r = summarize(
            "w",
            8,
            vec![
                vec![Ok(8), Err(libc::EAGAIN)],
                vec![Err(libc::EBUSY), Err(libc::EAGAIN)],
            ],
        );
        match r {
            Err(OpError::Sys(e, d)) => {
                assert_eq!(e.errno, libc::EAGAIN);
                assert_eq!(d["results"]["ok"], 1);
                assert_eq!(d["results"]["EBUSY"], 1);
                assert_eq!(d["results"]["EAGAIN"], 2);
            }
            _ => panic!("expected EAGAIN"),
        }
    }

    #[test]
    fn all_whole_is_ok_and_short_is_counted() {
        match summarize("r", 8, vec![vec![Ok(8), Ok(4)]]) {
            Ok(d) => {
                assert_eq!(d["results"]["ok"], 1);
                assert_eq!(d["results"]["short"], 1);
            }
            Err(_) => panic!("no access failed"),
        }
    }
}
