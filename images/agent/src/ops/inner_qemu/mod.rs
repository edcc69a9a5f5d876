//! A real qemu-system-s390x inside the guest (nested image) holding an mdev as its vfio-ccw
//! device: start, QMP commands, signals, exit. What the inner QEMU prints and every QMP line go
//! to the host as notes from `inner-qemu:<name>`; its exit (and whether it crashed) is data in
//! the results and a note the moment it happens.
//!
//! The process is reaped by the reaper thread like every child; a monitor thread turns the
//! status into an `Exit` others wait on with deadlines.

//!
//! The agent keeps each one in its state ([`crate::state::InnerQemu`]); [`process`] starts,
//! signals and reaps it, [`exit`] says how it ended, [`commands`] speaks QMP to it, and
//! [`device`] describes its vfio-ccw device once for the command line and for `device_add`.

mod commands;
mod device;
mod exit;
mod process;

use std::sync::Arc;

pub use commands::{device_add, device_del, qmp_command, quit, system_reset};
pub use process::{kill_all, signal, start, wait, StartArgs};

use super::OpError;
use crate::state::{Agent, InnerQemu};

/// Deadline of one QMP command; a stopped inner QEMU answers nothing.
const QMP_TIMEOUT_MS: u64 = 5000;
/// How long quit/term/kill/cleanup wait for the process to go.
const EXIT_WAIT_MS: u64 = 10_000;

fn get(agent: &Agent, name: &str) -> Result<Arc<InnerQemu>, OpError> {
    agent
        .inner_qemu(name)
        .ok_or_else(|| OpError::failed(format!("no inner QEMU named {name:?} (inner_start first)")))
}
