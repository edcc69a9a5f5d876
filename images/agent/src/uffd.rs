//! userfaultfd(2) for holding a kernel path inside a page fault (docs/DESIGN.md, 'Why userfaultfd
//! holds a request'): a page that is registered but missing makes the kernel's
//! copy_from_user/copy_to_user sleep until the agent supplies the page. Layouts and request numbers
//! from include/uapi/linux/userfaultfd.h (the generic _IOC encoding, which s390x uses).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sys::{self, SysError, SysResult};
use crate::vfio::abi::{
    UffdioApi, UffdioCopy, UffdioRange, UffdioRegister, UFFDIO_API, UFFDIO_COPY, UFFDIO_REGISTER,
    UFFDIO_REGISTER_MODE_MISSING, UFFD_API, UFFD_EVENT_PAGEFAULT, UFFD_MSG_ADDRESS, UFFD_MSG_SIZE,
};

pub const PAGE: usize = crate::params::PAGE;

/// A userfaultfd with one registered missing page.
pub struct MissingPage {
    fd: OwnedFd,
    pub addr: u64,
}

impl MissingPage {
    /// Registers the page at `addr` (page aligned, currently not present) for missing faults.
    pub fn register(addr: u64) -> SysResult<MissingPage> {
        // Not UFFD_USER_MODE_ONLY: the fault to catch is the kernel's own copy_from_user.
        // SAFETY: plain syscall with flags only.
        let raw =
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if raw < 0 {
            return Err(SysError::last("userfaultfd"));
        }
        // SAFETY: the syscall returned a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        sys::ioctl_ptr(fd.as_raw_fd(), UFFDIO_API, &mut api, "UFFDIO_API")?;
        let mut reg = UffdioRegister {
            range: UffdioRange {
                start: addr,
                len: PAGE as u64,
            },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        sys::ioctl_ptr(fd.as_raw_fd(), UFFDIO_REGISTER, &mut reg, "UFFDIO_REGISTER")?;
        Ok(MissingPage { fd, addr })
    }

    /// Waits up to `timeout_ms` for a fault on the page; returns the faulting address, or
    /// `None` on timeout.
    pub fn wait_fault(&self, timeout_ms: u64) -> SysResult<Option<u64>> {
        if !sys::poll_in(self.fd.as_raw_fd(), timeout_ms, "poll userfaultfd")? {
            return Ok(None);
        }
        let mut msg = [0u8; UFFD_MSG_SIZE];
        // SAFETY: msg is valid for 32 bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), msg.as_mut_ptr().cast(), msg.len()) };
        if n < 0 {
            return Err(SysError::last("read userfaultfd"));
        }
        if n as usize != msg.len() || msg[0] != UFFD_EVENT_PAGEFAULT {
            return Err(SysError::new(
                format!("read userfaultfd: event {:#x}, {n} bytes", msg[0]),
                libc::EPROTO,
            ));
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&msg[UFFD_MSG_ADDRESS..UFFD_MSG_ADDRESS + 8]);
        Ok(Some(u64::from_ne_bytes(a)))
    }

    /// Supplies the page's contents, which wakes the faulting task.
    pub fn resolve(&self, contents: &[u8; PAGE]) -> SysResult<()> {
        let mut c = UffdioCopy {
            dst: self.addr,
            src: contents.as_ptr() as u64,
            len: PAGE as u64,
            mode: 0,
            copy: 0,
        };
        sys::ioctl_ptr(self.fd.as_raw_fd(), UFFDIO_COPY, &mut c, "UFFDIO_COPY")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request numbers as the kernel headers spell them.
    #[test]
    fn request_numbers() {
        assert_eq!(UFFDIO_API, 0xc018_aa3f);
        assert_eq!(UFFDIO_REGISTER, 0xc020_aa00);
        assert_eq!(UFFDIO_COPY, 0xc028_aa03);
    }
}
