//! Streams of kernel evidence sent to the host as they happen: the trace pipe and /dev/kmsg.

pub mod kmsg;
pub mod trace;
