//! Streams /dev/kmsg records. The file is opened at boot, before anything else runs, so the
//! host gets the kernel log from its first record.

use std::fs::File;
use std::io::Read;

use ccwrig_proto::AgentMsg;

use crate::out::Outbox;

pub fn open() -> std::io::Result<File> {
    File::open("/dev/kmsg")
}

/// One read() returns one record. EPIPE means the ring overwrote records we had not read yet;
/// the next read continues at the oldest available one.
pub fn stream(mut f: File, out: Outbox) {
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => std::thread::sleep(std::time::Duration::from_millis(100)),
            Ok(n) => {
                let line = String::from_utf8_lossy(&buf[..n])
                    .trim_end_matches('\n')
                    .to_string();
                out.send(&AgentMsg::Kmsg { line });
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                out.note(
                    "kmsg",
                    "kernel log records were overwritten before they were read",
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                out.note("kmsg", format!("read /dev/kmsg: {e}"));
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}
