//! Enables the vfio_ccw and cio tracepoints and streams trace_pipe lines.

use std::io::{BufRead, BufReader};

use ccwrig_proto::AgentMsg;

use crate::out::Outbox;
use crate::sys;

const TRACING: &str = "/sys/kernel/tracing";

/// cio tracepoints about subchannel state and channel I/O (`events/s390/s390_cio_*`).
/// stsch and tpi are left off: a css scan issues stsch for all 65536 subchannel ids.
const CIO_EVENTS: &[&str] = &[
    "s390_cio_ssch",
    "s390_cio_hsch",
    "s390_cio_csch",
    "s390_cio_xsch",
    "s390_cio_rsch",
    "s390_cio_msch",
    "s390_cio_tsch",
    "s390_cio_stcrw",
];

/// Returns what was enabled (for the boot note).
pub fn enable() -> Vec<String> {
    let mut on = Vec::new();
    if sys::write_attr(&format!("{TRACING}/events/vfio_ccw/enable"), "1").is_ok() {
        on.push("vfio_ccw".to_string());
    }
    for e in CIO_EVENTS {
        if sys::write_attr(&format!("{TRACING}/events/s390/{e}/enable"), "1").is_ok() {
            on.push((*e).to_string());
        }
    }
    on
}

/// Forwards trace_pipe lines forever (trace_pipe blocks until there is data).
pub fn stream(out: Outbox) {
    let f = match std::fs::File::open(format!("{TRACING}/trace_pipe")) {
        Ok(f) => f,
        Err(e) => {
            out.note("trace", format!("cannot open trace_pipe: {e}"));
            return;
        }
    };
    let mut r = BufReader::new(f);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => std::thread::sleep(std::time::Duration::from_millis(100)),
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                out.send(&AgentMsg::Trace { line });
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                out.note("trace", format!("trace_pipe read: {e}"));
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}
