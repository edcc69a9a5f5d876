//! The inner QEMUs the agent started (nested image), by name: what `ops::inner_qemu` needs to
//! reach one again in a later request, and what `cleanup` must kill.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};

use crate::qmp::Qmp;

/// How the inner QEMU's process ended: its wait status and when it was reaped.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub status: i32,
    pub at_us: u64,
}

/// Set once by the monitor thread when the process is reaped; waiters block on the condvar.
pub type ExitCell = Arc<(Mutex<Option<Exit>>, Condvar)>;

pub struct InnerQemu {
    pub name: String,
    pub pid: i32,
    /// The mdev it holds as its vfio-ccw device, and the device number it gave it.
    pub uuid: String,
    pub devno: String,
    pub started_us: u64,
    pub qmp: Qmp,
    pub exit: ExitCell,
    /// Signals the agent sent (a SIGKILL it sent is not a crash).
    pub sent: Arc<Mutex<Vec<i32>>>,
    pub output: Arc<Mutex<String>>,
    /// Event count when the vfio-ccw device was last plugged (start or device_add): a
    /// DEVICE_DELETED after it means the device is gone from the inner machine.
    pub added_mark: Mutex<usize>,
}

pub type InnerQemuMap = Mutex<BTreeMap<String, Arc<InnerQemu>>>;
