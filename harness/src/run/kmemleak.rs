//! kmemleak around programs (kernels built with it: the debug profile). Each program is
//! judged on the unreferenced objects allocated while it ran: its start is dated (guest
//! uptime) and, after cleanup, a reading keeps the reports whose object is younger than the
//! program. kmemleak reports an object only once it is older than its minimum age and its
//! contents did not change between two scans, so a reading waits out that age and scans
//! twice. What was read is then cleared. Objects from before the program (boot, earlier
//! programs) are not its findings.

use std::time::Duration;

use ccwrig_proto::data::Kmemleak;
use ccwrig_proto::{KmemleakAction, Op, Outcome};

use super::pace::Pace;
use crate::vm::Vm;

/// `MSECS_MIN_AGE` of mm/kmemleak.c (5 s of guest time, which under TCG runs at wall speed),
/// plus a margin.
const MIN_AGE: Duration = Duration::from_millis(5500);

/// A scan walks all of memory: tens of seconds on the debug profile under TCG.
const SCAN_DEADLINE_MS: u64 = 30_000;

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

/// Dates a program's start: the guest's uptime in ms, or `None` when the kernel has no
/// kmemleak. Also stops kmemleak's periodic scanning (see the agent's op).
pub(super) async fn start(vm: &Vm, pace: Pace) -> Result<Option<u64>, String> {
    let k = request(vm, pace, KmemleakAction::Clear).await?;
    Ok(k.available.then_some(k.uptime_ms))
}

/// The reports of objects allocated since `since_ms` (guest uptime), then cleared.
pub(super) async fn read_since(vm: &Vm, pace: Pace, since_ms: u64) -> Result<String, String> {
    tokio::time::sleep(MIN_AGE).await;
    request(vm, pace, KmemleakAction::Scan).await?;
    let k = request(vm, pace, KmemleakAction::Scan).await?;
    request(vm, pace, KmemleakAction::Clear).await?;
    Ok(allocated_since(&k.report, k.uptime_ms, since_ms))
}

/// The `unreferenced object` reports of `report` (read at guest uptime `read_ms`) whose
/// object was allocated at or after `since_ms`: `(age N.NNNs)` in each report's `comm` line
/// dates it. A report without an age is kept (it cannot be placed).
pub fn allocated_since(report: &str, read_ms: u64, since_ms: u64) -> String {
    let mut out = String::new();
    let mut block = String::new();
    let keep = |block: &str| match age_ms(block) {
        Some(age) => read_ms.saturating_sub(age) >= since_ms,
        None => true,
    };
    for line in report.lines() {
        if line.starts_with("unreferenced object") && !block.is_empty() {
            if keep(&block) {
                out.push_str(&block);
            }
            block.clear();
        }
        block.push_str(line);
        block.push('\n');
    }
    if !block.is_empty() && keep(&block) {
        out.push_str(&block);
    }
    out
}

/// `comm "x", pid 1, jiffies 4294667296 (age 330.580s)` -> 330580.
fn age_ms(block: &str) -> Option<u64> {
    let rest = block.split_once("(age ")?.1;
    let secs = rest.split_once("s)")?.0;
    let (whole, frac) = secs.split_once('.').unwrap_or((secs, "0"));
    let frac: String = frac.chars().chain("000".chars()).take(3).collect();
    Some(whole.parse::<u64>().ok()? * 1000 + frac.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two reports as a kernel prints them (the first is the world corpus's real one): the
    /// object older than the program is dropped, the younger one kept whole.
    #[test]
    fn keeps_only_objects_younger_than_the_program() {
        let real =
            include_str!("../../tests/data/reports/world/irati-3.x-kmemleak-serdes-pdu-ser.log");
        assert_eq!(age_ms(real), Some(330_580));
        let young = real.replace("(age 330.580s)", "(age 2.5s)");
        let both = format!("{real}{young}");
        // Read at uptime 400 s; the program started at 390 s.
        let kept = allocated_since(&both, 400_000, 390_000);
        assert_eq!(kept, young);
        assert_eq!(allocated_since(&both, 400_000, 0), both);
        assert_eq!(allocated_since("", 400_000, 0), "");
        let no_age = "unreferenced object 0x1 (size 8):\n  comm \"x\", pid 1\n";
        assert_eq!(allocated_since(no_age, 400_000, 390_000), no_age);
    }
}
