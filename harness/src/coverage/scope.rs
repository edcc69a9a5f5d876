//! The kernel PCs coverage-guided fuzzing counts: those whose call site lies in the driver's
//! own files. A cover kernel instruments the whole kernel (`kernel/configs/README.md` says
//! why), so nearly every program reaches some block of mm/, fs/ or the scheduler that no
//! program before it did; kept as inputs for that, programs would fill the corpus, and its
//! minimisation the VM time, with nothing that concerns vfio-ccw.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::sites::{self, CALL_LEN};
use super::{CoverError, Coverage, Point};

/// The source trees whose PCs guide fuzzing: vfio-ccw and the cio core it sits on, the vfio
/// core and iommufd, which its lifecycle drives.
pub const FUZZ_PREFIXES: &[&str] = &[
    "drivers/s390/cio/",
    "drivers/vfio/",
    "drivers/iommu/iommufd/",
];

/// The PCs (as KCOV reports them: return addresses, offsets from `_stext`) of the call sites
/// in scope, each with its source line.
#[derive(Debug, Clone, Default)]
pub struct PcScope {
    /// PC -> index of its line in `lines`.
    pcs: HashMap<u64, usize>,
    /// (file, line), each once.
    lines: Vec<(String, u32)>,
}

/// Instrumented lines of some files reached, of all of theirs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinesReached {
    pub covered: usize,
    pub total: usize,
}

impl PcScope {
    /// The scope of `prefixes` in the cover kernel `bzimage` (its vmlinux from the build
    /// record): every `__sanitizer_cov_trace_pc` call site whose line-table file is under one
    /// of them. Code inlined from headers is the header's, as in `ccwrig cover`.
    pub fn of_kernel(bzimage: &Path, prefixes: &[&str]) -> Result<PcScope, CoverError> {
        let k = sites::CoverKernel::open(bzimage)?;
        let mut scope = PcScope::default();
        let mut index: HashMap<(String, u32), usize> = HashMap::new();
        for &site in &k.call_sites {
            let Some(place) = k.line(site) else {
                continue;
            };
            if !prefixes.iter().any(|p| place.0.starts_with(p)) {
                continue;
            }
            let next = scope.lines.len();
            let i = *index.entry(place.clone()).or_insert(next);
            if i == next {
                scope.lines.push(place);
            }
            scope.pcs.insert((site + CALL_LEN).wrapping_sub(k.stext), i);
        }
        Ok(scope)
    }

    /// Call sites in scope.
    pub fn len(&self) -> usize {
        self.pcs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pcs.is_empty()
    }

    /// The lines of the files `of` takes (by path) that the PCs of `seen` reach, of all their
    /// instrumented lines.
    pub fn lines_reached(&self, seen: &Coverage, of: impl Fn(&str) -> bool) -> LinesReached {
        let ours = |i: &usize| of(&self.lines[*i].0);
        let covered: BTreeSet<usize> = seen
            .iter()
            .filter_map(|p| match p {
                Point::Pc { pc } => self.pcs.get(pc).copied(),
                _ => None,
            })
            .filter(ours)
            .collect();
        LinesReached {
            covered: covered.len(),
            total: (0..self.lines.len()).filter(ours).count(),
        }
    }

    /// `c` without the PCs outside the scope (FSM points and GCOV arcs, vfio-ccw's own, all
    /// stay).
    pub fn filter(&self, c: &Coverage) -> Coverage {
        let mut out = Coverage::new();
        for p in c.iter() {
            let keep = match p {
                Point::Pc { pc } => self.pcs.contains_key(pc),
                Point::Fsm { .. } | Point::Untraced { .. } | Point::Arc { .. } => true,
            };
            if keep {
                out.insert(*p);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_fsm_points_and_pcs_in_scope() {
        let scope = PcScope {
            pcs: [(0x100, 0), (0x200, 1), (0x206, 1)].into_iter().collect(),
            lines: vec![
                ("drivers/s390/cio/vfio_ccw_fsm.c".into(), 10),
                ("drivers/s390/cio/device.c".into(), 20),
            ],
        };
        let mut c = Coverage::new();
        c.insert(Point::Pc { pc: 0x100 });
        c.insert(Point::Pc { pc: 0x300 });
        c.insert(Point::Fsm {
            state: 1,
            event: 2,
            next: 1,
        });
        c.insert(Point::Untraced { from: 3, to: 1 });
        let f = scope.filter(&c);
        assert_eq!(f.counts(), (1, 2));
        assert!(f.iter().any(|p| *p == Point::Pc { pc: 0x100 }));
        let vfio = scope.lines_reached(&c, |f| f.starts_with("drivers/s390/cio/vfio_ccw_"));
        assert_eq!((vfio.covered, vfio.total), (1, 1));
        let cio = scope.lines_reached(&c, |f| f.starts_with("drivers/s390/cio/"));
        assert_eq!((cio.covered, cio.total), (1, 2));
    }
}
