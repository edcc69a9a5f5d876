//! The kernel PCs coverage-guided fuzzing counts: those whose call site lies in the driver's
//! own files. A cover kernel instruments the whole kernel (`kernel/configs/README.md` says
//! why), so nearly every program reaches some block of mm/, fs/ or the scheduler that no
//! program before it did; kept as inputs for that, programs would fill the corpus, and its
//! minimisation the VM time, with nothing that concerns vfio-ccw.

use std::collections::HashSet;
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
/// in scope.
#[derive(Debug, Clone, Default)]
pub struct PcScope {
    pcs: HashSet<u64>,
}

impl PcScope {
    /// The scope of `prefixes` in the cover kernel `bzimage` (its vmlinux from the build
    /// record): every `__sanitizer_cov_trace_pc` call site whose line-table file is under one
    /// of them. Code inlined from headers is the header's, as in `ccwrig cover`.
    pub fn of_kernel(bzimage: &Path, prefixes: &[&str]) -> Result<PcScope, CoverError> {
        let k = sites::CoverKernel::open(bzimage)?;
        let mut pcs = HashSet::new();
        for &site in &k.call_sites {
            let Some((file, _)) = k.line(site) else {
                continue;
            };
            if prefixes.iter().any(|p| file.starts_with(p)) {
                pcs.insert((site + CALL_LEN).wrapping_sub(k.stext));
            }
        }
        Ok(PcScope { pcs })
    }

    /// Call sites in scope.
    pub fn len(&self) -> usize {
        self.pcs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pcs.is_empty()
    }

    /// `c` without the PCs outside the scope (FSM points all stay).
    pub fn filter(&self, c: &Coverage) -> Coverage {
        let mut out = Coverage::new();
        for p in c.iter() {
            let keep = match p {
                Point::Pc { pc } => self.pcs.contains(pc),
                Point::Fsm { .. } | Point::Untraced { .. } => true,
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
            pcs: [0x100, 0x200].into_iter().collect(),
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
    }
}
