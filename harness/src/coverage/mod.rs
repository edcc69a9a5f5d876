//! Coverage: what a program made the kernel do, as a set of points a fuzzer can compare.
//!
//! Two signals feed it. KCOV (a `cover` kernel) gives the kernel PCs each operation's own
//! thread executed; it cannot see kworkers, where most of vfio-ccw's work runs (I/O
//! completion, `notoper_work`, the cio workqueue's subchannel events). The vfio_ccw FSM trace
//! sees every context, kworkers included, on any kernel: each (state, event, state the handler
//! left) it shows is a point of its own. GCOV (a `cover` kernel's vfio-ccw objects, see
//! [`gcov`]) counts arcs in every context too: each arc counter a program moved is a point.

pub mod fsm;
pub mod gcov;
pub mod kcov;
pub mod render;
pub mod report;
pub mod scope;
pub mod sites;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error)]
pub enum CoverError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a coverage record: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Elf { path: PathBuf, message: String },
    #[error("{path} has no __sanitizer_cov_trace_pc: not a cover kernel (build with --cover)")]
    NotCover { path: PathBuf },
    #[error("{path}: no _stext symbol to place coverage offsets at")]
    NoStext { path: PathBuf },
    #[error("no coverage.json found: run or fuzz on a cover kernel (--cover) first")]
    NoCoverage,
    #[error("the programs ran on several kernels ({}); report them one kernel at a time", .kernels.iter().map(|k| k.display().to_string()).collect::<Vec<_>>().join(", "))]
    ManyKernels { kernels: Vec<PathBuf> },
    #[error("{kernel}: no vmlinux beside it (not a ccwrig cache entry, or the entry is gone)")]
    NoVmlinux { kernel: PathBuf },
    #[error(transparent)]
    Symbolize(#[from] crate::symbolize::SymbolizeError),
    #[error(transparent)]
    Gcov(#[from] gcov::GcovToolError),
}

/// One thing a program was seen to make the kernel do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Point {
    /// A kernel text address KCOV reported (the return address of the
    /// `__sanitizer_cov_trace_pc` call in a basic block), as an offset from `_stext`: the
    /// same in every boot of a kernel.
    Pc { pc: u64 },
    /// An FSM cell and its outcome: an event the trace shows dispatched in `state` (the
    /// integers the tracepoint prints), and the state its handler left as the FSM replay
    /// settled it (see [`fsm`]): the handler's only outcome, or among several the one the
    /// next event of the same subchannel found; [`Point::UNSETTLED`] when the trace cannot
    /// tell (no later event, or one no outcome explains).
    Fsm { state: u8, event: u8, next: u8 },
    /// A state change the driver makes without a traced event (`io_todo`'s CP_PENDING ->
    /// IDLE after the final interrupt, a new mdev's STANDBY), seen by the replay between two
    /// events: `from` what the previous handler left, `to` what the next event found.
    Untraced { from: u8, to: u8 },
    /// A GCOV arc counter of a profiled vfio-ccw object that moved: `object` indexes
    /// `kernel::gcov::OBJECTS`, `function` is GCC's ident of the function in it, `arc` the
    /// counter's index there. The same in every boot of a kernel build.
    Arc { object: u8, function: u32, arc: u32 },
}

impl Point {
    /// The `next` of an FSM point whose handler outcome the trace does not settle.
    pub const UNSETTLED: u8 = u8::MAX;

    pub fn is_pc(&self) -> bool {
        matches!(self, Point::Pc { .. })
    }

    pub fn is_arc(&self) -> bool {
        matches!(self, Point::Arc { .. })
    }
}

/// A set of points: a program's, a corpus's, a campaign's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Coverage {
    points: BTreeSet<Point>,
}

impl Coverage {
    pub fn new() -> Coverage {
        Coverage::default()
    }

    pub fn insert(&mut self, p: Point) -> bool {
        self.points.insert(p)
    }

    pub fn extend(&mut self, other: &Coverage) {
        self.points.extend(other.points.iter().copied());
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    /// The points of `self` that `seen` lacks: what a program adds to a corpus.
    pub fn beyond(&self, seen: &Coverage) -> Coverage {
        Coverage {
            points: self.points.difference(&seen.points).copied().collect(),
        }
    }

    /// (KCOV PCs, FSM points: cells with their outcomes and untraced moves).
    pub fn counts(&self) -> (usize, usize) {
        let pcs = self.points.iter().filter(|p| p.is_pc()).count();
        (pcs, self.points.len() - pcs - self.arcs())
    }

    /// GCOV arcs.
    pub fn arcs(&self) -> usize {
        self.points.iter().filter(|p| p.is_arc()).count()
    }

    /// Jump-table cells (state, event) seen, whatever their outcome: what
    /// [`fsm::reachable_cells`] counts the other side of.
    pub fn fsm_cells(&self) -> usize {
        let cells: BTreeSet<(u8, u8)> = self
            .points
            .iter()
            .filter_map(|p| match p {
                Point::Fsm { state, event, .. } => Some((*state, *event)),
                _ => None,
            })
            .collect();
        cells.len()
    }

    /// The points both sets have.
    pub fn common(&self, other: &Coverage) -> Coverage {
        Coverage {
            points: self.points.intersection(&other.points).copied().collect(),
        }
    }

    /// Whether every point of `other` is in `self`.
    pub fn covers(&self, other: &Coverage) -> bool {
        other.points.is_subset(&self.points)
    }
}

impl FromIterator<Point> for Coverage {
    fn from_iter<I: IntoIterator<Item = Point>>(iter: I) -> Coverage {
        Coverage {
            points: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_is_what_the_corpus_lacks_and_counts_split_by_signal() {
        let seen: Coverage = [
            Point::Pc { pc: 1 },
            Point::Fsm {
                state: 1,
                event: 2,
                next: 1,
            },
        ]
        .into_iter()
        .collect();
        let new: Coverage = [
            Point::Pc { pc: 1 },
            Point::Pc { pc: 2 },
            Point::Fsm {
                state: 1,
                event: 2,
                next: 3,
            },
        ]
        .into_iter()
        .collect();
        let add = new.beyond(&seen);
        assert_eq!(add.counts(), (1, 1));
        assert!(add.iter().any(|p| *p == Point::Pc { pc: 2 }));
        assert!(seen.beyond(&seen).is_empty());
    }

    #[test]
    fn points_serialize_with_their_kind() {
        let c: Coverage = [Point::Fsm {
            state: 0,
            event: 4,
            next: 2,
        }]
        .into_iter()
        .collect();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"[{"kind":"fsm","state":0,"event":4,"next":2}]"#);
        let back: Coverage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
