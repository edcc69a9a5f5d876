//! The virtio-serial port the host talks to. There is no udev in the image, so besides the
//! /dev/virtio-ports symlink the port is found by its `name` attribute in sysfs.

use std::fs::{File, OpenOptions};
use std::io::Read;
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

/// Splits the host's byte stream into lines. A read of 0 means no host is connected (the
/// virtio console answers EOF then); we wait and read again — the host may connect later.
pub fn read_lines(mut port: File, mut on_line: impl FnMut(&str)) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match port.read(&mut buf) {
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
                sys::console(&format!("port read: {e}"));
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}
