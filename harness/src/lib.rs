//! ccwrig: boots an s390x Linux in QEMU, drives vfio-ccw mdev lifecycles through a guest
//! agent and QMP, and judges runs from the kernel log and the vfio_ccw FSM trace.
//!
//! Data flows one way: `kernel` and `image` build what `vm` boots; `scenario` says what to do;
//! `run` does it through `agent` (guest) and `vm::qmp` (host); `oracle` judges the run
//! directory; `report` writes it up. `fuzz` makes scenarios and feeds them to the same runner.

pub use ccwrig_proto as proto;

pub mod agent;
pub mod cache;
pub mod coverage;
pub mod fuzz;
pub mod image;
pub mod kernel;
pub mod machine;
pub mod oracle;
pub mod progress;
pub mod report;
pub mod repro_c;
pub mod run;
pub mod rundir;
pub mod scenario;
pub mod suite;
pub mod symbolize;
pub mod vm;
