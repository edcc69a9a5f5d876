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
