//! Oracles: pure functions over the text a run leaves behind (console log, trace_pipe,
//! sysfs snapshots) that say whether the kernel misbehaved.
//!
//! - [`crash`]: crash reports in a console log (syzkaller-style titles, guilty frame, dedup key).
//! - [`devices`]: the devices QEMU has against what the guest shows.
//! - [`fsm`]: the vfio_ccw FSM trace, replayed against a per-kernel-version map.
//! - [`leaks`]: compares two guest resource snapshots.
//! - [`stuck`]: tasks left in uninterruptible sleep at the end of a run.
//! - [`triage`]: one JSON line per crash report of a log file.

pub mod crash;
pub mod devices;
mod error;
pub mod fsm;
pub mod leaks;
mod logline;
pub mod stuck;
pub mod triage;

pub use error::OracleError;
