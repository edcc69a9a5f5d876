//! A program's kernel coverage as `coverage.json` keeps it and as [`Coverage`] points: the
//! KCOV PCs its steps' results carried and, on a kernel with GCOV, the counters of vfio-ccw's
//! objects read after its steps.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ccwrig_proto::{Cover, PcSet};
use serde::{Deserialize, Serialize};

use super::gcov::GcovCounts;
use super::{Coverage, Point};
use crate::run::StepRecord;

/// `coverage.json`: the union of a program's steps' PCs and how complete it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramCover {
    /// The bzImage the program ran on; its cache entry holds the vmlinux the PCs belong to
    /// and the sources it was built from.
    pub kernel: PathBuf,
    /// Steps that came back with coverage.
    pub traced: usize,
    /// Of those, steps whose trace buffer filled (their later basic blocks are missing).
    pub full: usize,
    /// Steps sent to the guest that came back without coverage (host steps, abandoned or
    /// still blocked steps), and why the agent could not trace the ones it said so of.
    pub untraced: usize,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unavailable: BTreeSet<String>,
    /// Distinct PCs over all steps (offsets from `_stext`), in the protocol's compact form.
    pub pcs: PcSet,
    /// GCOV counters that moved while the program's steps ran (any context); a VM's
    /// `coverage.json` also counts what ran at boot.
    #[serde(default, skip_serializing_if = "GcovCounts::is_empty")]
    pub gcov: GcovCounts,
}

impl ProgramCover {
    /// The coverage of `records` on `kernel`.
    pub fn of_records(kernel: PathBuf, records: &[StepRecord]) -> ProgramCover {
        let mut all = Vec::new();
        let (mut traced, mut full, mut untraced) = (0, 0, 0);
        let mut unavailable = BTreeSet::new();
        for r in records {
            match &r.cover {
                Some(Cover::Pcs { pcs, full: f, .. }) => {
                    traced += 1;
                    full += usize::from(*f);
                    all.extend_from_slice(pcs.as_slice());
                }
                Some(Cover::Unavailable { reason }) => {
                    untraced += 1;
                    unavailable.insert(reason.clone());
                }
                None => untraced += 1,
            }
        }
        ProgramCover {
            kernel,
            traced,
            full,
            untraced,
            unavailable,
            pcs: PcSet::from_trace(all),
            gcov: GcovCounts::default(),
        }
    }

    /// Bare PCs (a campaign's union), with no step accounting.
    pub fn of_pcs(kernel: PathBuf, pcs: Vec<u64>) -> ProgramCover {
        ProgramCover {
            kernel,
            traced: 0,
            full: 0,
            untraced: 0,
            unavailable: BTreeSet::new(),
            pcs: PcSet::from_trace(pcs),
            gcov: GcovCounts::default(),
        }
    }

    /// Adds another program's coverage (of the same kernel).
    pub fn merge(&mut self, other: &ProgramCover) {
        self.traced += other.traced;
        self.full += other.full;
        self.untraced += other.untraced;
        self.unavailable.extend(other.unavailable.iter().cloned());
        let all = self.pcs.as_slice().iter().chain(other.pcs.as_slice());
        self.pcs = PcSet::from_trace(all.copied());
        self.gcov.merge(&other.gcov);
    }

    /// The PCs and moved arcs as coverage points.
    pub fn coverage(&self) -> Coverage {
        self.pcs
            .as_slice()
            .iter()
            .map(|&pc| Point::Pc { pc })
            .chain(self.gcov.points())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccwrig_proto::{Op, Outcome};

    fn step(cover: Option<Cover>) -> StepRecord {
        StepRecord {
            cover,
            ..StepRecord::for_test(Op::Sleep { ms: 0 }, Outcome::Ok)
        }
    }

    fn pcs(v: &[u64], full: bool) -> Option<Cover> {
        Some(Cover::Pcs {
            pcs: PcSet::from_trace(v.iter().copied()),
            hits: v.len() as u64,
            full,
        })
    }

    #[test]
    fn steps_union_and_say_what_is_missing() {
        let records = [
            step(pcs(&[0x100, 0x120], false)),
            step(pcs(&[0x120, 0x200], true)),
            step(Some(Cover::Unavailable {
                reason: "open /sys/kernel/debug/kcov failed: ENOENT".into(),
            })),
            step(None),
        ];
        let p = ProgramCover::of_records("/k/bzImage".into(), &records);
        assert_eq!(p.pcs.as_slice(), [0x100, 0x120, 0x200]);
        assert_eq!((p.traced, p.full, p.untraced), (2, 1, 2));
        assert_eq!(p.unavailable.len(), 1);
        let c = p.coverage();
        assert_eq!(c.counts(), (3, 0));
        let mut vm = ProgramCover::of_records("/k/bzImage".into(), &records[..1]);
        vm.merge(&p);
        assert_eq!(vm.pcs, p.pcs);
        assert_eq!((vm.traced, vm.full, vm.untraced), (3, 1, 2));
        assert!(c.iter().any(|x| *x == Point::Pc { pc: 0x200 }));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<ProgramCover>(&json).unwrap(), p);
    }
}
