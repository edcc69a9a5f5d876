//! The virtio-serial port the host talks to. There is no udev in the image, so besides the
//! /dev/virtio-ports symlink the port is found by its `name` attribute in sysfs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sys;

fn find(name: &str) -> Option<String> {
    let link = format!("/dev/virtio-ports/{name}");
    if std::path::Path::new(&link).exists() {
        return Some(link);
    }
    sys::dir_names("/sys/class/virtio-ports")
        .into_iter()
        .find(|p| {
            sys::read_attr(format!("/sys/class/virtio-ports/{p}/name")).as_deref() == Some(name)
        })
        .map(|p| format!("/dev/{p}"))
}

/// The subchannel (`0.0.0003`) whose ccw device carries the port named `name`: its sysfs
/// device is `/sys/devices/css0/<subchannel>/<ccw device>/virtioN`. A cleanup that gives
/// subchannels to vfio_ccw must leave this one alone, or the agent loses its port.
pub fn subchannel_of(name: &str) -> Option<String> {
    let port = sys::dir_names("/sys/class/virtio-ports")
        .into_iter()
        .find(|p| {
            sys::read_attr(format!("/sys/class/virtio-ports/{p}/name")).as_deref() == Some(name)
        })?;
    let dev = std::fs::canonicalize(format!("/sys/class/virtio-ports/{port}/device")).ok()?;
    let mut parts = dev.iter().skip_while(|c| *c != "css0");
    parts.next()?;
    parts.next()?.to_str().map(str::to_string)
}

/// How often to look for the port while virtio-serial is still coming online. The port
/// appears asynchronously (ccw device recognition, then the virtio probe) a few ms to tens of
/// ms after /init starts; every ms slept past that is boot-to-ready time. A look is a few
/// sysfs reads, cheap even under TCG.
const PORT_POLL: Duration = Duration::from_millis(2);

/// Waits (up to `timeout`) for the port to appear and opens it.
pub fn open(name: &str, timeout: Duration) -> Result<(String, File), String> {
    let end = sys::monotonic_us() + timeout.as_micros() as u64;
    loop {
        if let Some(p) = find(name) {
            match OpenOptions::new().read(true).write(true).open(&p) {
                Ok(f) => return Ok((p, f)),
                Err(e) if sys::monotonic_us() > end => return Err(format!("open {p}: {e}")),
                Err(_) => {}
            }
        } else if sys::monotonic_us() > end {
            return Err(format!("no virtio port named {name}"));
        }
        std::thread::sleep(PORT_POLL);
    }
}

/// The open port, shared by the reader and the writer, and renewed when its device goes away:
/// a channel path varied off (`chp`) takes the virtio-ccw device of the port with it, and
/// varying it on brings a new one with the same name. Only one open of a virtio port is
/// allowed, so the two sides share one file; the generation tells a side whether the other
/// has already reopened it.
pub struct Port {
    name: String,
    current: Mutex<(u64, Arc<File>)>,
}

/// How often to look for a port that went away.
const RENEW_POLL: Duration = Duration::from_millis(20);

impl Port {
    pub fn new(name: &str, file: File) -> Arc<Port> {
        Arc::new(Port {
            name: name.to_string(),
            current: Mutex::new((0, Arc::new(file))),
        })
    }

    pub fn get(&self) -> (u64, Arc<File>) {
        let c = sys::lock(&self.current);
        (c.0, c.1.clone())
    }

    /// After `e` on the file of generation `gen`: a gone device (ENODEV) is reopened by name,
    /// waiting as long as it takes; other errors just pause (the host may be reconnecting).
    pub fn recover(&self, gen: u64, e: &std::io::Error, side: &str) {
        if e.raw_os_error() != Some(libc::ENODEV) {
            sys::console(&format!("port {side}: {e}"));
            std::thread::sleep(Duration::from_millis(500));
            return;
        }
        let mut c = sys::lock(&self.current);
        if c.0 != gen {
            return;
        }
        sys::console(&format!(
            "port {side}: {e}; waiting for {} to come back",
            self.name
        ));
        loop {
            if let Some(p) = find(&self.name) {
                if let Ok(f) = OpenOptions::new().read(true).write(true).open(&p) {
                    sys::console(&format!("port reopened: {p}"));
                    *c = (gen + 1, Arc::new(f));
                    return;
                }
            }
            std::thread::sleep(RENEW_POLL);
        }
    }

    /// Writes all of `bytes`, renewing the port as needed.
    pub fn write_all(&self, bytes: &[u8]) {
        loop {
            let (gen, f) = self.get();
            match (&*f).write_all(bytes) {
                Ok(()) => return,
                Err(e) => self.recover(gen, &e, "write"),
            }
        }
    }
}

/// Splits the host's byte stream into lines. A read of 0 means no host is connected (the
/// virtio console answers EOF then); we wait and read again — the host may connect later.
pub fn read_lines(port: &Port, mut on_line: impl FnMut(&str)) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let (gen, f) = port.get();
        match (&*f).read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(100)),
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    let s = String::from_utf8_lossy(&line);
                    let s = s.trim();
                    if !s.is_empty() {
                        on_line(s);
                    }
                }
                // A host that never sends a newline must not make us buffer forever.
                if pending.len() > 1 << 20 {
                    pending.clear();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // A line cut by a gone port is not resumed by the new one.
                pending.clear();
                port.recover(gen, &e, "read");
            }
        }
    }
}
