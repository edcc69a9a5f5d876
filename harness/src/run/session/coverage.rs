//! A program's coverage on a cover kernel: its `coverage.json` (KCOV PCs of its steps, GCOV
//! counters of vfio-ccw's objects), the VM's running total beside it, and the points the
//! fuzzer's feedback reads.

use super::super::record::StepRecord;
use super::super::verdict::FsmReplay;
use super::Session;
use crate::rundir::{Artifact, RunDir};

impl Session {
    /// `coverage.json` of a program on a cover kernel, and the coverage it holds.
    pub(super) fn write_coverage(
        &self,
        records: &[StepRecord],
        gcov: Option<crate::coverage::gcov::GcovCounts>,
        dir: &RunDir,
    ) -> Option<crate::coverage::kcov::ProgramCover> {
        self.cover.as_ref().map(|kernel| {
            let mut c = crate::coverage::kcov::ProgramCover::of_records(kernel.clone(), records);
            c.gcov = gcov.unwrap_or_default();
            if dir.root() == self.dir.root() && !self.gcov_boot_taken {
                // The VM's only program (`ccwrig run`): its file is the VM's, boot included.
                if let Some(boot) = &self.gcov_boot {
                    c.gcov.merge(boot);
                }
            }
            tracing::info!(
                "coverage: {} PCs from {} traced steps ({} with a full buffer, {} untraced)",
                c.pcs.len(),
                c.traced,
                c.full,
                c.untraced
            );
            dir.write_json(Artifact::Coverage, &c);
            if dir.root() != self.dir.root() {
                let mut g = self.cover_total.lock().unwrap_or_else(|p| p.into_inner());
                let total = g.get_or_insert_with(|| {
                    let mut t =
                        crate::coverage::kcov::ProgramCover::of_records(kernel.clone(), &[]);
                    t.gcov = self.gcov_boot.clone().unwrap_or_default();
                    t
                });
                total.merge(&c);
                self.dir.write_json(Artifact::Coverage, &*total);
            }
            c
        })
    }
}

/// What a program covered: the FSM replay's points (every context) and, on a cover kernel,
/// the KCOV PCs of its steps' own threads.
pub(super) fn program_coverage(
    fsm: &FsmReplay,
    cover: Option<&crate::coverage::kcov::ProgramCover>,
) -> crate::coverage::Coverage {
    let mut coverage = fsm.coverage();
    if let Some(c) = cover {
        coverage.extend(&c.coverage());
    }
    coverage
}
