//! One of the runner's own requests to the agent (kmemleak, gcov): sent as the `check` actor,
//! an outcome other than ok is an error, and the data is read as `T`.

use ccwrig_proto::{Op, Outcome};
use serde::de::DeserializeOwned;

use super::pace::Pace;
use crate::vm::Vm;

/// `op` within `deadline_ms` (fast profile, scaled by `pace`); errors name `what`.
pub(super) async fn request<T: DeserializeOwned>(
    vm: &Vm,
    pace: Pace,
    op: Op,
    deadline_ms: u64,
    what: &str,
) -> Result<T, String> {
    let (_, r) = vm
        .agent
        .request("check", op, pace.ms(deadline_ms))
        .await
        .map_err(|e| e.to_string())?;
    if r.outcome != Outcome::Ok {
        return Err(format!("{what}: {}", r.outcome.short()));
    }
    serde_json::from_value(r.data).map_err(|e| format!("{what}: {e}"))
}
