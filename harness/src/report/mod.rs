//! Reports of runs: JUnit XML for CI systems that do not use nextest, KTAP for kernel test
//! tooling, KCIDB JSON for KernelCI, and the plain-text bug report for a mailing list.

pub mod bundle;
pub mod junit;
pub mod kcidb;
pub mod ktap;
pub mod outcome;
pub mod text;
