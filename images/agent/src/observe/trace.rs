//! Makes sure the vfio_ccw and cio tracepoints are on and streams trace_pipe lines.

use std::io::{BufRead, BufReader};

use ccwrig_proto::{AgentMsg, TRACE_EVENTS};

use crate::out::Outbox;
use crate::sys;

const TRACING: &str = "/sys/kernel/tracing";

/// Returns what was enabled (for the boot note).
pub fn enable() -> Vec<String> {
    TRACE_EVENTS
        .iter()
        .filter_map(|ev| {
            let (system, event) = ev.split_once(':')?;
            let path = match event {
                "*" => format!("{TRACING}/events/{system}/enable"),
                e => format!("{TRACING}/events/{system}/{e}/enable"),
            };
            // Already on from the command line: a write would be a no-op, the read is cheaper.
            if sys::read_attr(&path).as_deref() == Some("1") {
                return Some(event.replace('*', system));
            }
            sys::write_attr(&path, "1")
                .ok()
                .map(|_| event.replace('*', system))
        })
        .collect()
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
