//! An open mdev: its file descriptors plus the consumer state built on them.
//!
//! Closing semantics (the choice the brief asks to document): every fd lives in an
//! `Option<Arc<OwnedFd>>`. Operations clone the Arc for as long as they run and never hold a
//! lock across a blocking call. `close` takes the Arc out of the handle; if nobody else holds
//! it, dropping it calls close(2) right there. If another operation is still inside a syscall
//! on that fd, close cannot simply close(2) the number (it could be reused by a later open
//! while the other thread still uses it), so it dup2()s /dev/null over the number instead:
//! that drops the fd table's reference to the vfio file at exactly this step — the same thing
//! a real process's close(2) does while another thread sits in an ioctl — and the kernel's
//! release runs as soon as the in-flight syscall drops its own reference. The number itself
//! (now /dev/null) is closed when the last clone goes.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use ccwrig_proto::{FdPart, OpenVia};
use serde_json::{json, Value};

use crate::sys::{self, lock, SysResult};
use crate::uffd::MissingPage;
use crate::vfio::dma::Dma;
use crate::vfio::Region;

pub type Fd = Arc<OwnedFd>;

#[derive(Default)]
pub struct Fds {
    pub device: Option<Fd>,
    pub group: Option<Fd>,
    /// The type1 container, or /dev/iommu on the iommufd path.
    pub container: Option<Fd>,
}

/// Eventfds registered with VFIO_DEVICE_SET_IRQS, by IRQ index.
#[derive(Default)]
pub struct Irqs {
    pub io: Option<Fd>,
    pub crw: Option<Fd>,
    pub req: Option<Fd>,
}

impl Irqs {
    /// The eventfd slot of IRQ `index` (REQ for anything past CRW: the driver has three).
    pub fn slot(&mut self, index: u32) -> &mut Option<Fd> {
        match index {
            crate::vfio::abi::VFIO_CCW_IO_IRQ_INDEX => &mut self.io,
            crate::vfio::abi::VFIO_CCW_CRW_IRQ_INDEX => &mut self.crw,
            _ => &mut self.req,
        }
    }
}

/// An `io_stall` in flight: the kernel sleeps in a fault on `page` inside the write that
/// `writer` performs, until `io_release` resolves it (or dropping `page` closes the
/// userfaultfd, which fails the kernel's copy).
pub struct Stall {
    pub page: MissingPage,
    pub writer: std::thread::JoinHandle<SysResult<usize>>,
}

pub struct Handle {
    pub name: String,
    pub uuid: String,
    pub via: OpenVia,
    pub ioas_id: Option<u32>,
    pub fds: Mutex<Fds>,
    pub irqs: Mutex<Irqs>,
    /// Regions found by GET_REGION_INFO (cached: they do not change while the fd is open).
    pub regions: Mutex<Option<Vec<Region>>>,
    pub dma: Mutex<Option<Arc<Dma>>>,
    /// Set when the device fd is closed: tells the consumer's watcher thread to stop.
    pub stop: Arc<AtomicBool>,
    /// What the consumer's watcher did (also sent as notes); shown by `snapshot`.
    pub consumer_log: Arc<Mutex<Vec<Value>>>,
    pub stall: Mutex<Option<Stall>>,
}

impl Handle {
    pub fn part(&self, p: FdPart) -> Option<Fd> {
        let f = lock(&self.fds);
        match p {
            FdPart::Device => f.device.clone(),
            FdPart::Group => f.group.clone(),
            FdPart::Container => f.container.clone(),
        }
    }

    pub fn device(&self) -> Option<Fd> {
        self.part(FdPart::Device)
    }

    pub fn open_parts(&self) -> Vec<&'static str> {
        let f = lock(&self.fds);
        let mut v = Vec::new();
        if f.device.is_some() {
            v.push("device");
        }
        if f.group.is_some() {
            v.push("group");
        }
        if f.container.is_some() {
            v.push("container");
        }
        v
    }

    /// Closes one part now (see the module comment); returns what happened.
    pub fn close_part(&self, p: FdPart) -> Value {
        let taken = {
            let mut f = lock(&self.fds);
            match p {
                FdPart::Device => f.device.take(),
                FdPart::Group => f.group.take(),
                FdPart::Container => f.container.take(),
            }
        };
        if p == FdPart::Device {
            self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let Some(fd) = taken else {
            return json!({"part": p, "was_open": false});
        };
        let t0 = sys::monotonic_us();
        let raw = fd.as_raw_fd();
        match Arc::try_unwrap(fd) {
            Ok(owned) => {
                drop(owned);
                json!({"part": p, "was_open": true, "closed_us": sys::monotonic_us() - t0})
            }
            Err(shared) => {
                let users = Arc::strong_count(&shared) - 1;
                let how = match sys::open("/dev/null", libc::O_RDWR) {
                    // SAFETY: raw stays a valid fd number while `shared` lives; dup2 swaps the
                    // file behind it atomically.
                    Ok(null) => match unsafe { libc::dup2(null.as_raw_fd(), raw) } {
                        r if r >= 0 => "dup2 /dev/null over the number".to_string(),
                        _ => format!(
                            "dup2 failed: {}",
                            ccwrig_proto::errno_name(sys::last_errno())
                        ),
                    },
                    Err(e) => format!("{e}"),
                };
                drop(shared);
                json!({"part": p, "was_open": true, "in_flight_users": users, "how": how,
                       "closed_us": sys::monotonic_us() - t0})
            }
        }
    }

    pub fn all_closed(&self) -> bool {
        self.open_parts().is_empty()
    }

    pub fn summary(&self) -> Value {
        json!({
            "uuid": self.uuid, "via": self.via, "open": self.open_parts(),
            "consumer": *lock(&self.consumer_log),
        })
    }
}

pub type HandleMap = Mutex<HashMap<String, Arc<Handle>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd};

    fn handle_with_device(fd: OwnedFd) -> Handle {
        Handle {
            name: "h".into(),
            uuid: "u".into(),
            via: OpenVia::Group,
            ioas_id: None,
            fds: Mutex::new(Fds {
                device: Some(Arc::new(fd)),
                group: None,
                container: None,
            }),
            irqs: Mutex::new(Irqs::default()),
            regions: Mutex::new(None),
            dma: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            consumer_log: Arc::new(Mutex::new(Vec::new())),
            stall: Mutex::new(None),
        }
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut p = [0; 2];
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
    }

    /// With another user holding the fd, close must still drop the file at this step: the
    /// pipe's read end sees EOF once the write end is "closed", although the number lives on.
    #[test]
    fn close_with_a_user_in_flight_releases_the_file_now() {
        let (r, w) = pipe();
        let h = handle_with_device(w);
        let in_flight = h.device().unwrap();
        let v = h.close_part(FdPart::Device);
        assert_eq!(v["in_flight_users"], 1, "{v}");
        let mut b = [0u8; 1];
        let n = unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 0, "write end still open");
        assert!(h.all_closed());
        drop(in_flight);
    }

    #[test]
    fn close_without_users_closes_directly_and_twice_is_harmless() {
        let (_r, w) = pipe();
        let h = handle_with_device(w);
        let v = h.close_part(FdPart::Device);
        assert!(v.get("in_flight_users").is_none(), "{v}");
        assert_eq!(h.close_part(FdPart::Device)["was_open"], false);
        assert!(h.stop.load(std::sync::atomic::Ordering::SeqCst));
    }
}
