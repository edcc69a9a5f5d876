//! The host's session, applied at every handshake: the wall clock and a fresh seed for the
//! kernel's random generator. A guest restored from a VM snapshot resumes with the clock and
//! the generator state of the moment the snapshot was taken, the same in every VM restored
//! from it; without this, two such VMs would draw the same mdev UUIDs.

use ccwrig_proto::{Session, SESSION_SEED_BYTES};

use crate::sys;

/// `RNDADDENTROPY` (`_IOW('R', 0x03, int[2])`, include/uapi/linux/random.h): mixes a buffer
/// into the input pool and credits its entropy.
const RNDADDENTROPY: u64 = 0x4008_5203;
/// `RNDRESEEDCRNG` (`_IO('R', 0x07)`): reseeds the generator from the pool now, instead of
/// at its next scheduled reseed (every CPU's generator follows the new base key).
const RNDRESEEDCRNG: u64 = 0x5207;

/// Sets the clock and reseeds; returns what failed, in words, for the host.
pub fn apply(s: &Session) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = set_clock(s.unix_time_ns) {
        problems.push(e.to_string());
    }
    match decode_hex(&s.seed) {
        Some(seed) if seed.len() == SESSION_SEED_BYTES => {
            if let Err(e) = reseed(&seed) {
                problems.push(e.to_string());
            }
        }
        _ => problems.push(format!(
            "session seed {:?} is not {SESSION_SEED_BYTES} bytes of hex",
            s.seed
        )),
    }
    problems
}

fn set_clock(unix_ns: u64) -> sys::SysResult<()> {
    let ts = libc::timespec {
        tv_sec: (unix_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (unix_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: ts is a valid timespec for the duration of the call.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        return Err(sys::SysError::last("clock_settime"));
    }
    Ok(())
}

fn reseed(seed: &[u8]) -> sys::SysResult<()> {
    use std::os::fd::AsRawFd;
    let fd = sys::open("/dev/random", libc::O_WRONLY)?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }, native endian.
    let mut info = Vec::with_capacity(8 + seed.len());
    info.extend_from_slice(&((seed.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(seed.len() as i32).to_ne_bytes());
    info.extend_from_slice(seed);
    // SAFETY: info holds the header and buf_size bytes the kernel reads; it outlives the call.
    unsafe {
        sys::ioctl(
            fd.as_raw_fd(),
            RNDADDENTROPY,
            info.as_ptr() as libc::c_ulong,
            "RNDADDENTROPY",
        )?;
        sys::ioctl(fd.as_raw_fd(), RNDRESEEDCRNG, 0, "RNDRESEEDCRNG")?;
    }
    Ok(())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
