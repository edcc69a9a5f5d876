//! kmemleak around programs (kernels built with it: the debug profile). A scan reports an
//! object only once it is older than kmemleak's minimum age and was unreferenced in the scan;
//! each reading therefore scans, waits out that age, scans again and reads. What was read is
//! then cleared, so every program is judged only on the leaks that appeared since the last
//! reading (boot-time leaks are read and cleared once, right after boot).

use std::time::Duration;

use ccwrig_proto::data::Kmemleak;
use ccwrig_proto::{KmemleakAction, Op, Outcome};

use super::pace::Pace;
use crate::vm::Vm;

/// `MSECS_MIN_AGE` of mm/kmemleak.c (5 s of guest time, which under TCG runs at wall speed),
/// plus a margin.
const MIN_AGE: Duration = Duration::from_millis(5500);

/// A scan walks all of memory; on the debug profile under TCG that takes seconds.
const SCAN_DEADLINE_MS: u64 = 20_000;

async fn request(vm: &Vm, pace: Pace, action: KmemleakAction) -> Result<Kmemleak, String> {
    let (_, r) = vm
        .agent
        .request("check", Op::Kmemleak { action }, pace.ms(SCAN_DEADLINE_MS))
        .await
        .map_err(|e| e.to_string())?;
    if r.outcome != Outcome::Ok {
        return Err(format!("kmemleak {action:?}: {}", r.outcome.short()));
    }
    serde_json::from_value(r.data).map_err(|e| format!("kmemleak {action:?}: {e}"))
}

/// Reads what leaked since the last reading and clears it. `Ok(None)`: the kernel has no
/// kmemleak. `Err`: it has, but the reading failed (the run cannot say there was no leak).
pub(super) async fn read_and_clear(vm: &Vm, pace: Pace) -> Result<Option<String>, String> {
    let first = request(vm, pace, KmemleakAction::Scan).await?;
    if !first.available {
        return Ok(None);
    }
    tokio::time::sleep(MIN_AGE).await;
    let second = request(vm, pace, KmemleakAction::Scan).await?;
    request(vm, pace, KmemleakAction::Clear).await?;
    Ok(Some(second.report))
}
