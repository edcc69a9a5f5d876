//! kmemleak around programs (kernels built with it: the debug profile). Each program is
//! judged on the unreferenced objects allocated while it ran: its start is dated (guest
//! uptime) and, after cleanup, a reading keeps the reports whose object is younger than the
//! program. kmemleak reports an object only once it is older than its minimum age and its
//! contents did not change between two scans, so a reading scans twice, the second at least
//! that age after the program's end. What was read is then cleared. Objects from before the
//! program (boot, earlier programs) are not its findings.

use std::time::Duration;

use ccwrig_proto::data::Kmemleak;
use ccwrig_proto::{KmemleakAction, Op};

use super::pace::Pace;
use crate::vm::Vm;

/// `MSECS_MIN_AGE` of mm/kmemleak.c (5 s of guest time, which under TCG runs at wall speed),
/// plus a margin.
const MIN_AGE: Duration = Duration::from_millis(5500);

/// A scan walks all of memory: tens of seconds on the debug profile under TCG.
const SCAN_DEADLINE_MS: u64 = 30_000;

async fn request(vm: &Vm, pace: Pace, action: KmemleakAction) -> Result<Kmemleak, String> {
    let what = format!("kmemleak {action:?}");
    super::check_op::request(vm, pace, Op::Kmemleak { action }, SCAN_DEADLINE_MS, &what).await
}

/// Dates a program's start: the kernel's jiffies (`Some(None)` if they could not be read:
/// then nothing is filtered), or `None` when the kernel has no kmemleak. Also stops
/// kmemleak's periodic scanning (see the agent's op).
pub(super) async fn start(vm: &Vm, pace: Pace) -> Result<Option<Option<u64>>, String> {
    let k = request(vm, pace, KmemleakAction::Clear).await?;
    Ok(k.available.then_some(k.jiffies))
}

/// The reports of objects allocated at or after jiffies `since` (all when unknown), then
/// cleared.
pub(super) async fn read_since(vm: &Vm, pace: Pace, since: Option<u64>) -> Result<String, String> {
    // The first scan only records each object's checksum, which needs no age; the age is
    // judged against the start of the second. So the wait runs concurrently with the first
    // scan, which on the debug profile outlasts it.
    let first = tokio::time::Instant::now();
    request(vm, pace, KmemleakAction::Scan).await?;
    let scanned = first.elapsed();
    tokio::time::sleep_until(first + MIN_AGE).await;
    let second = tokio::time::Instant::now();
    let k = request(vm, pace, KmemleakAction::Scan).await?;
    let rescanned = second.elapsed();
    request(vm, pace, KmemleakAction::Clear).await?;
    tracing::debug!(
        "kmemleak scans {} ms and {} ms, reading {} ms",
        scanned.as_millis(),
        rescanned.as_millis(),
        first.elapsed().as_millis()
    );
    Ok(match since {
        Some(j) => allocated_since(&k.report, j),
        None => k.report,
    })
}

/// One reading for the programs that started at jiffies `starts` (in order) since the last
/// one: what each of them left, by [`split_by_start`]. One pair of scans serves them all,
/// which is what makes kmemleak affordable in a fuzzing VM (a reading takes a third of a
/// debug program's time: `kernel/configs/README.md`).
pub(super) async fn read_batch(vm: &Vm, pace: Pace, starts: &[u64]) -> Result<Vec<String>, String> {
    let Some(&first) = starts.first() else {
        return Ok(vec![]);
    };
    let report = read_since(vm, pace, Some(first)).await?;
    Ok(split_by_start(&report, starts))
}

/// The `unreferenced object` reports of `report` whose object was allocated at or after
/// jiffies `since`: each report's `comm "x", pid N, jiffies J` line dates it (older kernels
/// add `(age …)`). A report without a date is kept (it cannot be placed).
pub fn allocated_since(report: &str, since: u64) -> String {
    blocks(report)
        .into_iter()
        .filter(|b| allocated_at(b).is_none_or(|j| j >= since))
        .collect()
}

/// The `unreferenced object` reports of one reading that covered several programs, split by
/// the program each object was allocated in: program `i` ran from jiffies `starts[i]` (in
/// increasing order) until the next one started. Objects allocated before the first start
/// are no program's; a report without a date goes to the last program, the only one that
/// was still running when the reading began.
pub fn split_by_start(report: &str, starts: &[u64]) -> Vec<String> {
    let mut out = vec![String::new(); starts.len()];
    let Some(last) = starts.len().checked_sub(1) else {
        return out;
    };
    for block in blocks(report) {
        let owner = match allocated_at(&block) {
            None => Some(last),
            Some(j) => starts.iter().rposition(|&s| s <= j),
        };
        if let Some(i) = owner {
            out[i].push_str(&block);
        }
    }
    out
}

/// Each `unreferenced object` report of `report`, whole.
fn blocks(report: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block = String::new();
    for line in report.lines() {
        if line.starts_with("unreferenced object") && !block.is_empty() {
            out.push(std::mem::take(&mut block));
        }
        block.push_str(line);
        block.push('\n');
    }
    if !block.is_empty() {
        out.push(block);
    }
    out
}

/// `  comm "x", pid 1, jiffies 4294667296` (optionally ` (age 330.580s)`) -> 4294667296.
fn allocated_at(block: &str) -> Option<u64> {
    let line = block
        .lines()
        .find(|l| l.trim_start().starts_with("comm \""))?;
    let rest = line.rsplit_once(", jiffies ")?.1;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports as kernels print them: the world corpus's real 3.x one (with an age) and the
    /// 6.12 form recorded from the debug profile (without): an object allocated before the
    /// program is dropped, the others are kept whole.
    #[test]
    fn keeps_only_objects_allocated_since_the_program_started() {
        let old =
            include_str!("../../tests/data/reports/world/irati-3.x-kmemleak-serdes-pdu-ser.log");
        assert_eq!(allocated_at(old), Some(4295102675));
        let new = include_str!("../../tests/data/kmemleak/6.12-debug-eventfd-after-close.txt");
        assert_eq!(allocated_at(new), Some(4294943454));
        let both = format!("{old}{new}");
        assert_eq!(allocated_since(&both, 4295000000), old);
        assert_eq!(allocated_since(&both, 4294943454), both);
        assert_eq!(allocated_since(&both, 4295200000), "");
        let undated = "unreferenced object 0x1 (size 8):\n  backtrace:\n";
        assert_eq!(allocated_since(undated, 4295200000), undated);
    }

    /// One reading after three programs: each report goes to the program whose run its
    /// allocation falls in; what is older than the first is nobody's; an undated report is
    /// the last program's.
    #[test]
    fn a_batch_reading_is_split_by_the_program_that_allocated() {
        let old =
            include_str!("../../tests/data/reports/world/irati-3.x-kmemleak-serdes-pdu-ser.log");
        let new = include_str!("../../tests/data/kmemleak/6.12-debug-eventfd-after-close.txt");
        let undated = "unreferenced object 0x1 (size 8):\n  backtrace:\n";
        // new: jiffies 4294943454, old: 4295102675.
        let report = format!("{old}{new}{undated}");
        let split = split_by_start(&report, &[4294900000, 4295000000, 4295200000]);
        assert_eq!(
            split,
            vec![new.to_string(), old.to_string(), undated.to_string()]
        );
        let split = split_by_start(&report, &[4294943455, 4295102675]);
        assert_eq!(split, vec![String::new(), format!("{old}{undated}")]);
        assert!(split_by_start(&report, &[]).is_empty());
    }
}
