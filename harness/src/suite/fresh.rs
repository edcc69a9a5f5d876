//! A fresh VM per scenario (`ccwrig run --vm fresh`), up to `jobs` of them at once.
//!
//! A debug scenario spends most of its time in one guest thread (the kmemleak scans, the css
//! walk after a bind to `io_subchannel`), so a second VM on a second core nearly halves the
//! suite's wall time; nextest runs the same scenarios two at a time (`.config/nextest.toml`),
//! so their verdicts are already judged under that load. `--jobs 1` runs them one after the
//! other, for a developer chasing a result that depends on timing.

use std::collections::HashMap;
use std::path::Path;

use crate::run;
use crate::scenario::Scenario;

use super::shared_vm::Done;
use super::{KernelChoice, SuiteError};

/// How many VMs at once when `--jobs` is not given: one per CPU, as nextest runs them.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs each of `scenarios` (under `base/<name>`) in its own VM, at most `jobs` at once, in
/// the shared VMs' order (shapes together, nested ones first), and hands each result to
/// `done` as it finishes.
pub async fn run_all<'a>(
    scenarios: &'a [Scenario],
    kernel: &KernelChoice,
    seed: Option<u64>,
    boot: crate::vm::snapshot::BootMode,
    jobs: usize,
    base: &Path,
    done: &mut impl FnMut(Done<'a>),
) {
    let mut running = tokio::task::JoinSet::new();
    let mut which: HashMap<tokio::task::Id, (&'a Scenario, std::path::PathBuf)> = HashMap::new();
    // Nested ones first: the longest, they would otherwise leave one VM running at the end.
    let mut next = super::shared_vm::grouped(scenarios).into_iter();
    loop {
        while running.len() < jobs.max(1) {
            let Some(sc) = next.next() else { break };
            let dir = base.join(&sc.name);
            let opts = match crate::image::build_for(sc.machine.nested)
                .map_err(SuiteError::from)
                .and_then(|image| super::options_for(sc, kernel, &image, seed, boot, &dir))
            {
                Ok(o) => o,
                Err(e) => {
                    done((sc, dir, Err(e)));
                    continue;
                }
            };
            let owned = sc.clone();
            let task = running.spawn(async move { run::run_scenario(&owned, &opts).await });
            which.insert(task.id(), (sc, dir));
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (id, result) = match joined {
            Ok((id, r)) => (id, r.map_err(SuiteError::from)),
            Err(e) => (e.id(), Err(SuiteError::Task(e.to_string()))),
        };
        if let Some((sc, dir)) = which.remove(&id) {
            done((sc, dir, result));
        }
    }
}
