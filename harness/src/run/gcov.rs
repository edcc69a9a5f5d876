//! GCOV around programs (a cover kernel): the counters are zeroed before a program's steps
//! and read after its teardown, so a program's counts are what ran in any context while it
//! did (its cleanup counts for nobody). A VM's first read, before any reset, is its boot.

use ccwrig_proto::data::Gcov;
use ccwrig_proto::{GcovAction, Op};

use super::pace::Pace;
use crate::coverage::gcov::GcovCounts;
use crate::vm::Vm;

/// Six files of a few KB each: quick, but leave a slow kernel room.
const DEADLINE_MS: u64 = 5_000;

async fn request(vm: &Vm, pace: Pace, action: GcovAction) -> Result<Gcov, String> {
    let what = format!("gcov {action:?}");
    super::check_op::request(vm, pace, Op::Gcov { action }, DEADLINE_MS, &what).await
}

/// The counters now, or `None` when the kernel has no GCOV.
pub(super) async fn read(vm: &Vm, pace: Pace) -> Result<Option<GcovCounts>, String> {
    let g = request(vm, pace, GcovAction::Read).await?;
    if !g.available {
        return Ok(None);
    }
    GcovCounts::from_files(&g.files)
        .map(Some)
        .map_err(|e| e.to_string())
}

pub(super) async fn reset(vm: &Vm, pace: Pace) -> Result<(), String> {
    request(vm, pace, GcovAction::Reset).await.map(|_| ())
}

/// The GCOV counters as the boot left them, then zeroed; `None` without GCOV (or when the
/// agent could not read them: the VM then runs without).
pub(super) async fn after_boot(vm: &Vm, pace: Pace) -> Option<GcovCounts> {
    let boot = match read(vm, pace).await {
        Ok(b) => b?,
        Err(e) => {
            tracing::warn!("gcov after boot: {e}; no GCOV in this VM");
            return None;
        }
    };
    match reset(vm, pace).await {
        Ok(()) => Some(boot),
        Err(e) => {
            tracing::warn!("gcov reset after boot: {e}; no GCOV in this VM");
            None
        }
    }
}

/// Zeroes the counters before a program's steps (a failure is logged: the program's counts
/// then include what ran since the last reset).
pub(super) async fn before_program(vm: &Vm, pace: Pace) {
    if let Err(e) = reset(vm, pace).await {
        tracing::warn!("gcov reset: {e}; this program's counts include the last cleanup");
    }
}

/// The program's counters after its teardown; `None` (logged) when they could not be read.
pub(super) async fn after_program(vm: &Vm, pace: Pace) -> Option<GcovCounts> {
    read(vm, pace).await.unwrap_or_else(|e| {
        tracing::warn!("gcov read: {e}");
        None
    })
}
